//! [`Client`]: the query API on `--http` (default :16686) — Jaeger legacy
//! and api_v3, logs, stats, dependencies, the Prometheus API, health.

use std::time::{Duration, SystemTime};

use reqwest::Method;
use seismo_api::health::Health;
use seismo_api::jaeger::{DependencyLink, Operation, Trace};
use seismo_api::logs::{LogRecord, LogsResponse};
use seismo_api::prometheus::{
    BuildInfo, ExemplarSeries, Flags, Labels, Metadata, PromResponse, QueryResult, RuntimeInfo,
};
use seismo_api::stats::StatsResponse;
use seismo_api::v3::{self, Operations, Services, TraceSummaries, TraceSummary, TracesData, TracesResult};
use seismo_api::Response as Envelope;
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::requests::{
    millis, prometheus_duration, prometheus_time, LogQuery, SeriesQuery, StatsQuery, TraceSearch, V3TraceQuery,
};
use crate::transport::{decode, Transport};

/// The answer of [`Client::traces_by_id`].
#[derive(Clone, Debug, PartialEq)]
pub struct TracesById {
    /// The traces found.
    pub found: Vec<Trace>,
    /// The ids not found, in Jaeger's form (leading zero half dropped).
    pub missing: Vec<String>,
}

/// A client of seismo's query API. Cheap to clone (connections are pooled
/// and shared by clones).
///
/// ```no_run
/// # async fn demo() -> Result<(), seismo_client::ClientError> {
/// use std::time::Duration;
/// let client = seismo_client::Client::new("http://127.0.0.1:16686")?
///     .with_timeout(Duration::from_secs(5))
///     .with_token("s3cret");
/// for service in client.services().await? {
///     println!("{service}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    transport: Transport,
}

impl Client {
    /// A client of the query API at `base_url` (`http://host:16686`, or with
    /// a path prefix when behind a proxy), with a 30 s timeout and no token.
    ///
    /// `https` URLs are accepted, but the workspace builds reqwest without a
    /// TLS stack yet (TLS is coming with auth): until then a request to one
    /// fails with [`ClientError::Http`].
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] when `base_url` is not an absolute
    /// `http(s)` URL without query or fragment.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Ok(Client { transport: Transport::new(base_url)? })
    }

    crate::transport::transport_setters!();

    async fn get<T: DeserializeOwned>(&self, path: &[&str], params: &[(&str, String)]) -> Result<T, ClientError> {
        let request = self.transport.request(Method::GET, self.transport.url(path)).query(params);
        self.transport.send(request).await?.json()
    }

    /// A Prometheus API call as a form POST (no URL length limit for long
    /// queries): its `data` out of the envelope.
    async fn prometheus<T: DeserializeOwned>(&self, path: &[&str], form: &[(&str, String)]) -> Result<T, ClientError> {
        self.prometheus_send(self.transport.request(Method::POST, self.transport.url(path)).form(form)).await
    }

    /// A Prometheus API call as a GET (endpoints served on GET only).
    async fn prometheus_get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        params: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.prometheus_send(self.transport.request(Method::GET, self.transport.url(path)).query(params)).await
    }

    async fn prometheus_send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let answer = self.transport.send(request).await?;
        let url = answer.url.clone();
        let envelope: PromResponse<T> = answer.json()?;
        envelope.data.ok_or_else(|| ClientError::Api {
            url,
            status: 200,
            message: "a successful answer without data".into(),
            error_type: envelope.error_type,
        })
    }

    // ---- health ----

    /// `GET /healthz`: whether the server accepts writes, and if not why.
    /// A 503 with its reason is an answer here, not an error.
    ///
    /// # Errors
    /// Any other status, a timeout, or no answer.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let request = self.transport.request(Method::GET, self.transport.url(&["healthz"]));
        let answer = self.transport.send(request).await?;
        match answer.status {
            503 => decode(answer.url, &answer.body),
            _ => answer.json(),
        }
    }

    // ---- Jaeger legacy API ----

    /// `GET /api/services`: every service name, sorted.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn services(&self) -> Result<Vec<String>, ClientError> {
        Ok(self.get::<Envelope<Vec<String>>>(&["api", "services"], &[]).await?.data)
    }

    /// `GET /api/services/{service}/operations`: the span names of `service`,
    /// each once, sorted (Jaeger's legacy form).
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn service_operations(&self, service: &str) -> Result<Vec<String>, ClientError> {
        Ok(self.get::<Envelope<Vec<String>>>(&["api", "services", service, "operations"], &[]).await?.data)
    }

    /// `GET /api/operations`: the operations of `service`, of one span kind
    /// (`server`, `client`, ...) or all.
    ///
    /// # Errors
    /// 400 for an unknown span kind.
    pub async fn operations(&self, service: &str, span_kind: Option<&str>) -> Result<Vec<Operation>, ClientError> {
        let mut params = vec![("service", service.to_string())];
        if let Some(kind) = span_kind {
            params.push(("spanKind", kind.to_string()));
        }
        Ok(self.get::<Envelope<Vec<Operation>>>(&["api", "operations"], &params).await?.data)
    }

    /// `GET /api/traces?service=...`: matching traces, newest first.
    ///
    /// # Errors
    /// 400 naming a bad parameter.
    pub async fn search_traces(&self, search: &TraceSearch) -> Result<Vec<Trace>, ClientError> {
        Ok(self.get::<Envelope<Vec<Trace>>>(&["api", "traces"], &search.params()).await?.data)
    }

    /// `GET /api/traces?traceID=..&traceID=..`: several traces at once; the
    /// ids the server does not know are listed in [`TracesById::missing`]
    /// (as Jaeger reports them), not an error.
    ///
    /// # Errors
    /// 400 for an id that is not 1 to 32 hex digits.
    pub async fn traces_by_id(&self, trace_ids: &[&str]) -> Result<TracesById, ClientError> {
        let params: Vec<(&str, String)> = trace_ids.iter().map(|id| ("traceID", id.to_string())).collect();
        let envelope = self.get::<Envelope<Vec<Trace>>>(&["api", "traces"], &params).await?;
        let missing = envelope.errors.unwrap_or_default().into_iter().filter_map(|e| e.trace_id).collect();
        Ok(TracesById { found: envelope.data, missing })
    }

    /// `GET /api/traces/{id}`: one trace in Jaeger's model.
    ///
    /// # Errors
    /// 404 ([`ClientError::is_not_found`]) for an unknown trace; 400 for an
    /// id that is not 1 to 32 hex digits.
    pub async fn trace(&self, trace_id: &str) -> Result<Trace, ClientError> {
        let url = self.transport.url(&["api", "traces", trace_id]).to_string();
        let envelope = self.get::<Envelope<Vec<Trace>>>(&["api", "traces", trace_id], &[]).await?;
        envelope.data.into_iter().next().ok_or_else(|| ClientError::Api {
            url,
            status: 404,
            message: "trace not found (an empty answer)".into(),
            error_type: None,
        })
    }

    /// `GET /api/dependencies`: service-to-service call counts of the window
    /// ending at `end` (default now) and `lookback` long (default 1 day).
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn dependencies(
        &self,
        end: Option<SystemTime>,
        lookback: Option<Duration>,
    ) -> Result<Vec<DependencyLink>, ClientError> {
        let mut params = Vec::new();
        if let Some(end) = end {
            params.push(("endTs", millis(end)));
        }
        if let Some(lookback) = lookback {
            params.push(("lookback", lookback.as_millis().to_string()));
        }
        Ok(self.get::<Envelope<Vec<DependencyLink>>>(&["api", "dependencies"], &params).await?.data)
    }

    // ---- Jaeger api_v3 ----

    /// `GET /api/v3/services`.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn services_v3(&self) -> Result<Vec<String>, ClientError> {
        Ok(self.get::<Services>(&["api", "v3", "services"], &[]).await?.services)
    }

    /// `GET /api/v3/operations`: unspecified kinds are listed as `internal`.
    ///
    /// # Errors
    /// 400 for an unknown span kind.
    pub async fn operations_v3(
        &self,
        service: &str,
        span_kind: Option<&str>,
    ) -> Result<Vec<v3::Operation>, ClientError> {
        let mut params = vec![("service", service.to_string())];
        if let Some(kind) = span_kind {
            params.push(("spanKind", kind.to_string()));
        }
        Ok(self.get::<Operations>(&["api", "v3", "operations"], &params).await?.operations)
    }

    /// `GET /api/v3/traces/{id}`: one trace as OTLP/JSON.
    ///
    /// # Errors
    /// 404 for an unknown trace; 400 for a malformed id.
    pub async fn trace_v3(&self, trace_id: &str) -> Result<TracesData, ClientError> {
        Ok(self.get::<TracesResult>(&["api", "v3", "traces", trace_id], &[]).await?.result)
    }

    /// `GET /api/v3/traces?query.*=`: matching traces as OTLP/JSON. The
    /// server answers 404 when none matches (as Jaeger); that is an empty
    /// answer here.
    ///
    /// # Errors
    /// 400 naming a bad parameter.
    pub async fn find_traces_v3(&self, query: &V3TraceQuery) -> Result<TracesData, ClientError> {
        match self.get::<TracesResult>(&["api", "v3", "traces"], &query.params()).await {
            Ok(found) => Ok(found.result),
            Err(e) if e.is_not_found() => Ok(TracesData::default()),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v3/trace-summaries?query.*=`: one summary per matching trace.
    ///
    /// # Errors
    /// 400 naming a bad parameter.
    pub async fn trace_summaries(&self, query: &V3TraceQuery) -> Result<Vec<TraceSummary>, ClientError> {
        Ok(self.get::<TraceSummaries>(&["api", "v3", "trace-summaries"], &query.params()).await?.summaries)
    }

    // ---- seismo's own ----

    /// `GET /api/v1/stats`: request counts, error rates and latency
    /// percentiles per operation and per service.
    ///
    /// # Errors
    /// 400 naming a bad parameter.
    pub async fn stats(&self, query: &StatsQuery) -> Result<StatsResponse, ClientError> {
        self.get(&["api", "v1", "stats"], &query.params()).await
    }

    /// `GET /api/v1/logs`: matching log records, newest first.
    ///
    /// # Errors
    /// 400 naming a bad parameter (also a malformed full-text query).
    pub async fn logs(&self, query: &LogQuery) -> Result<Vec<LogRecord>, ClientError> {
        Ok(self.get::<LogsResponse>(&["api", "v1", "logs"], &query.params()).await?.data)
    }

    // ---- Prometheus API ----

    /// `/api/v1/query`: evaluates PromQL `expr` at `time` (default now).
    ///
    /// # Errors
    /// 400 (`bad_data`) for a malformed query, 422 (`execution`) when it
    /// cannot be evaluated, 503 (`timeout`); the class is in
    /// [`ClientError::Api::error_type`](ClientError::Api).
    pub async fn query(&self, expr: &str, time: Option<SystemTime>) -> Result<QueryResult, ClientError> {
        let mut form = vec![("query", expr.to_string())];
        if let Some(time) = time {
            form.push(("time", prometheus_time(time)));
        }
        self.prometheus(&["api", "v1", "query"], &form).await
    }

    /// `/api/v1/query_range`: evaluates `expr` at every `step` from `start` to `end`.
    ///
    /// # Errors
    /// As [`Client::query`]; also 400 for more than 11,000 steps.
    pub async fn query_range(
        &self,
        expr: &str,
        start: SystemTime,
        end: SystemTime,
        step: Duration,
    ) -> Result<QueryResult, ClientError> {
        let form = [
            ("query", expr.to_string()),
            ("start", prometheus_time(start)),
            ("end", prometheus_time(end)),
            ("step", prometheus_duration(step)),
        ];
        self.prometheus(&["api", "v1", "query_range"], &form).await
    }

    /// `/api/v1/series`: the label sets of the selected series.
    ///
    /// # Errors
    /// 400 when `matchers` is empty or holds something that is not a series selector.
    pub async fn series(&self, query: &SeriesQuery) -> Result<Vec<Labels>, ClientError> {
        self.prometheus(&["api", "v1", "series"], &query.params()).await
    }

    /// `/api/v1/labels`: the label names of the selected series, sorted.
    ///
    /// # Errors
    /// 400 for a malformed selector.
    pub async fn labels(&self, query: &SeriesQuery) -> Result<Vec<String>, ClientError> {
        self.prometheus(&["api", "v1", "labels"], &query.params()).await
    }

    /// `GET /api/v1/label/{name}/values`: the values of label `name` in the
    /// selected series, sorted (`__name__` lists metric names).
    ///
    /// # Errors
    /// 400 for a malformed selector.
    pub async fn label_values(&self, name: &str, query: &SeriesQuery) -> Result<Vec<String>, ClientError> {
        // Prometheus serves this one on GET only.
        self.prometheus_get(&["api", "v1", "label", name, "values"], &query.params()).await
    }

    /// `/api/v1/query_exemplars` (seismo keeps none: always empty).
    ///
    /// # Errors
    /// 400 for a malformed time.
    pub async fn query_exemplars(
        &self,
        expr: &str,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<Vec<ExemplarSeries>, ClientError> {
        let form = [("query", expr.to_string()), ("start", prometheus_time(start)), ("end", prometheus_time(end))];
        self.prometheus(&["api", "v1", "query_exemplars"], &form).await
    }

    /// `GET /api/v1/status/buildinfo`: the Prometheus version claimed, and seismo's.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn buildinfo(&self) -> Result<BuildInfo, ClientError> {
        self.prometheus_get(&["api", "v1", "status", "buildinfo"], &[]).await
    }

    /// `GET /api/v1/status/runtimeinfo`.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn runtimeinfo(&self) -> Result<RuntimeInfo, ClientError> {
        self.prometheus_get(&["api", "v1", "status", "runtimeinfo"], &[]).await
    }

    /// `GET /api/v1/status/flags`.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn flags(&self) -> Result<Flags, ClientError> {
        self.prometheus_get(&["api", "v1", "status", "flags"], &[]).await
    }

    /// `GET /api/v1/metadata`.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn metadata(&self) -> Result<Metadata, ClientError> {
        self.prometheus_get(&["api", "v1", "metadata"], &[]).await
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    /// A one-shot HTTP server answering `status` + `body`, reporting the request head it got.
    fn answer_once(status: &str, body: &'static str) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let status = status.to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(response.as_bytes()).unwrap();
        });
        (url, rx)
    }

    #[tokio::test]
    async fn token_travels_as_bearer_and_segments_are_encoded() {
        let (url, head) = answer_once("200 OK", r#"{"data":["GET /"],"total":1,"limit":0,"offset":0,"errors":null}"#);
        let client = Client::new(&url).unwrap().with_token("s3cret");
        assert_eq!(client.service_operations("a b/c").await.unwrap(), ["GET /"]);
        let head = head.recv().unwrap();
        assert!(head.starts_with("GET /api/services/a%20b%2Fc/operations HTTP/1.1\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains("authorization: bearer s3cret\r\n"), "{head}");
    }

    #[tokio::test]
    async fn a_shape_the_client_does_not_know_is_a_decode_error() {
        let (url, _head) = answer_once("200 OK", r#"{"data":{"not":"a list"}}"#);
        let err = Client::new(&url).unwrap().services().await.unwrap_err();
        assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn health_reads_the_reason_of_a_503() {
        let (url, _head) =
            answer_once("503 Service Unavailable", r#"{"reason":"disk full: 0 B free","status":"disk_full"}"#);
        let health = Client::new(&url).unwrap().health().await.unwrap();
        assert_eq!((health.status.as_str(), health.reason.as_deref()), ("disk_full", Some("disk full: 0 B free")));
    }
}
