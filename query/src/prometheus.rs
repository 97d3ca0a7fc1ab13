//! The Prometheus HTTP API (`/api/v1/...`) over a [`SeriesSource`]: what
//! Grafana's Prometheus data source, promtool and scripts call. Parameters
//! come from the query string and, for POST, a form body (merged like Go's
//! `r.FormValue`, body first: [`form`]), read by extractors ([`preamble`]);
//! answers use Prometheus' JSON envelope ([`envelope`]) and its error types
//! ([`api_error`]: `bad_data` 400, `execution` 422, `timeout` 503, `internal`
//! 500). The engine itself is `seismo-promql`.
//!
//! `/query` and `/query_range` run on query threads of their own (see
//! [`runner`]): a bounded number at once, each with a stack sized for the
//! deepest query the nesting check lets through and a budget of samples and
//! time from [`QueryLimits`].

mod api_error;
mod api_params;
mod api_state;
mod envelope;
mod evaluate;
mod form;
mod metadata;
mod preamble;
mod runner;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use seismo_api::prometheus::{Flags, Metadata};
use seismo_promql::{QueryLimits, SeriesSource};

pub use api_params::parse_duration;
use api_state::ApiState;
use envelope::success;
use runner::QueryRunner;

/// The Prometheus API routes, with their own state, to merge into a router of
/// any state type: `/api/v1/query`, `/query_range`, `/series`, `/labels`,
/// `/label/{name}/values` (GET and form POST), and the answers Grafana probes
/// for (`/status/buildinfo`, `/status/runtimeinfo`, `/status/flags`,
/// `/metadata`, `/query_exemplars`). Queries run within `limits`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(
    source: Arc<dyn SeriesSource>,
    limits: QueryLimits,
) -> Router<S> {
    Router::new()
        .route("/api/v1/query", get(evaluate::query).post(evaluate::query))
        .route("/api/v1/query_range", get(evaluate::query_range).post(evaluate::query_range))
        .route("/api/v1/series", get(metadata::series).post(metadata::series))
        .route("/api/v1/labels", get(metadata::label_names).post(metadata::label_names))
        .route("/api/v1/label/{name}/values", get(metadata::label_values))
        .route("/api/v1/status/buildinfo", get(metadata::buildinfo))
        .route("/api/v1/status/runtimeinfo", get(metadata::runtimeinfo))
        .route("/api/v1/status/flags", get(|| async { success(Flags::new()) }))
        .route("/api/v1/metadata", get(|| async { success(Metadata::new()) }))
        .route("/api/v1/query_exemplars", get(metadata::exemplars).post(metadata::exemplars))
        .with_state(ApiState { source, runner: QueryRunner::new(limits) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::{header, StatusCode};
    use http_body_util::BodyExt;
    use metadata::PROMETHEUS_VERSION;
    use seismo_promql::{Labels, MemSource, Series};
    use tower::ServiceExt;

    fn app() -> Router {
        app_with(QueryLimits::default())
    }

    fn app_with(limits: QueryLimits) -> Router {
        let labels = |pairs: &[(&str, &str)]| {
            let mut l: Labels = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            l.sort();
            l
        };
        // up{job="api"} = 1 and up{job="db"} = 0 every 15 s over 0..=600 s;
        // http_requests_total{job="api"} counts 0, 15, 30, ... (1 per second).
        let every_15s = |f: fn(i64) -> f64| (0..=40).map(|i| (i * 15_000, f(i))).collect::<Vec<_>>();
        let source = MemSource::new(vec![
            Series { labels: labels(&[("__name__", "up"), ("job", "api")]), samples: every_15s(|_| 1.0) },
            Series { labels: labels(&[("__name__", "up"), ("job", "db")]), samples: every_15s(|_| 0.0) },
            Series {
                labels: labels(&[("__name__", "http_requests_total"), ("job", "api")]),
                samples: every_15s(|i| (i * 15) as f64),
            },
        ]);
        routes(Arc::new(source), limits)
    }

    async fn call(req: Request<Body>) -> (StatusCode, serde_json::Value, String) {
        call_app(app(), req).await
    }

    async fn call_app(app: Router, req: Request<Body>) -> (StatusCode, serde_json::Value, String) {
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        (status, json, text)
    }

    async fn get(uri: &str) -> (StatusCode, serde_json::Value, String) {
        call(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn post(uri: &str, form: &str) -> (StatusCode, serde_json::Value, String) {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap();
        call(req).await
    }

    #[tokio::test]
    async fn instant_query_answers_prometheus_exact_envelope() {
        let (status, _, text) = get("/api/v1/query?query=up%7Bjob%3D%22api%22%7D&time=600.5").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            text,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"api"},"value":[600.5,"1"]}]}}"#
        );
        let (_, _, text) = get("/api/v1/query?query=1%2F0&time=1").await;
        assert_eq!(text, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#);
    }

    #[tokio::test]
    async fn post_form_and_rfc3339_time() {
        // 1970-01-01T00:09:00+00:00 is 540 s: the counter's value there is 540; its
        // rate over [1m] is 1 per second up to float rounding (45 * (60/45) / 60).
        let form = "query=http_requests_total%20%2B%200&time=1970-01-01T00:09:00%2B00:00";
        let (status, json, _) = post("/api/v1/query", form).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["data"]["result"][0]["metric"], serde_json::json!({"job": "api"}));
        assert_eq!(json["data"]["result"][0]["value"], serde_json::json!([540, "540"]));
        let (_, json, _) = post("/api/v1/query", "query=rate(http_requests_total[1m])&time=600").await;
        let rate: f64 = json["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!((rate - 1.0).abs() < 1e-12, "{rate}");
    }

    #[tokio::test]
    async fn range_query_returns_a_matrix_per_step() {
        let (status, json, _) = post("/api/v1/query_range", "query=sum(up)&start=0&end=60&step=30s").await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["data"]["resultType"], "matrix");
        assert_eq!(json["data"]["result"][0]["metric"], serde_json::json!({}));
        assert_eq!(json["data"]["result"][0]["values"], serde_json::json!([[0, "1"], [30, "1"], [60, "1"]]));
        // Query string and body merge; the body wins for a repeated single value.
        let (_, json, _) = post("/api/v1/query_range?query=up&step=1h", "start=0&end=60&step=15").await;
        assert_eq!(json["data"]["result"][0]["values"].as_array().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn bad_requests_are_bad_data_with_prometheus_wording() {
        let (status, json, _) = get("/api/v1/query_range?query=up&start=x&end=60&step=15").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json,
            serde_json::json!({"status": "error", "errorType": "bad_data",
                "error": "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"})
        );
        let (status, json, _) = get("/api/v1/query_range?query=up&start=0&end=86400&step=1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json["error"],
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
        );
        let (status, json, _) = get("/api/v1/query_range?query=up&start=10&end=0&step=1").await;
        assert_eq!(
            (status, json["error"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, "invalid parameter \"end\": end timestamp must not be before start time")
        );
        let (_, json, _) = get("/api/v1/query_range?query=up&start=0&end=10&step=0").await;
        assert!(json["error"].as_str().unwrap().starts_with("invalid parameter \"step\": zero or negative"), "{json}");
        let (status, json, _) = get("/api/v1/query?query=sum(").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["errorType"], "bad_data");
        assert!(json["error"].as_str().unwrap().starts_with("invalid parameter \"query\": "), "{json}");
        let (status, json, _) = get("/api/v1/query_range?query=up%5B5m%5D&start=0&end=10&step=1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json["error"],
            "invalid parameter \"query\": invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
        );
        let (status, _, _) = get("/api/v1/query?query=up&time=soon").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // The label-name extractor answers in Prometheus' envelope too.
        let (status, json, _) = get("/api/v1/label/%FF/values").await;
        assert_eq!((status, &json["errorType"]), (StatusCode::BAD_REQUEST, &serde_json::json!("bad_data")), "{json}");
        assert!(json["error"].as_str().unwrap().starts_with("invalid label name"), "{json}");
    }

    #[tokio::test]
    async fn evaluation_errors_are_execution_errors() {
        // on() matches both `up` series to the one `vector(1)` series: one-to-one
        // matching with two left series is "multiple matches", a 422.
        let (status, json, _) = get("/api/v1/query?query=up%20%2B%20on()%20vector(1)&time=10").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json["errorType"], "execution");
    }

    #[tokio::test]
    async fn instant_query_of_a_range_selector_is_a_matrix() {
        let (_, json, _) = get("/api/v1/query?query=up%7Bjob%3D%22db%22%7D%5B30s%5D&time=600").await;
        assert_eq!(json["data"]["resultType"], "matrix");
        assert_eq!(json["data"]["result"][0]["values"], serde_json::json!([[585, "0"], [600, "0"]]));
    }

    #[tokio::test]
    async fn series_with_repeated_match_params() {
        let (status, json, _) =
            get("/api/v1/series?match[]=up%7Bjob%3D%22db%22%7D&match%5B%5D=http_requests_total&start=0&end=600").await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(
            json["data"],
            serde_json::json!([{"__name__": "http_requests_total", "job": "api"}, {"__name__": "up", "job": "db"}])
        );
        let (status, json, _) = post("/api/v1/series", "match[]=up&match[]=up").await;
        assert_eq!((status, json["data"].as_array().unwrap().len()), (StatusCode::OK, 2));
        let (status, json, _) = get("/api/v1/series").await;
        assert_eq!(
            (status, json["error"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, "no match[] parameter provided")
        );
        // No sample in the range: no series.
        let (_, json, _) = get("/api/v1/series?match[]=up&start=10000&end=20000").await;
        assert_eq!(json["data"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn label_names_and_values() {
        let (_, json, _) = get("/api/v1/labels").await;
        assert_eq!(json["data"], serde_json::json!(["__name__", "job"]));
        let (_, json, _) = get("/api/v1/label/__name__/values").await;
        assert_eq!(json["data"], serde_json::json!(["http_requests_total", "up"]));
        let (_, json, _) = get("/api/v1/label/job/values?match[]=http_requests_total").await;
        assert_eq!(json["data"], serde_json::json!(["api"]));
        let (_, json, _) = get("/api/v1/label/job/values?limit=1").await;
        assert_eq!(json["data"], serde_json::json!(["api"]));
    }

    #[tokio::test]
    async fn probes_grafana_sends() {
        let (status, json, _) = get("/api/v1/status/buildinfo").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["data"]["version"], PROMETHEUS_VERSION);
        assert_eq!(json["data"]["seismoVersion"], env!("CARGO_PKG_VERSION"));
        let (_, _, text) = get("/api/v1/metadata").await;
        assert_eq!(text, r#"{"status":"success","data":{}}"#);
        let (_, _, text) = post("/api/v1/query_exemplars", "query=up&start=0&end=10").await;
        assert_eq!(text, r#"{"status":"success","data":[]}"#);
    }

    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// Regression (issue 14): these overflowed the stack and aborted the process.
    #[tokio::test]
    async fn too_deep_queries_are_bad_data_before_parsing() {
        for q in [
            format!("{}up{}", "abs(".repeat(2000), ")".repeat(2000)),
            format!("1{}", "+1".repeat(4999)),
            "(".repeat(100_000),
        ] {
            let (status, json, _) = post("/api/v1/query", &format!("query={}", enc(&q))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(json["errorType"], "bad_data");
            let msg = json["error"].as_str().unwrap();
            assert!(msg.starts_with("invalid parameter \"query\": query is nested too deeply: more than 256"), "{msg}");
        }
        let (status, json, _) = post("/api/v1/series", &format!("match[]={}", enc(&"(".repeat(5000)))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    }

    /// The stack of a query thread holds the deepest queries the nesting
    /// check accepts, of every recursive shape (in a debug build the deepest
    /// needs about 4 MiB; the thread has 32).
    #[tokio::test]
    async fn the_deepest_accepted_query_evaluates_on_a_query_thread() {
        let n = seismo_promql::MAX_NESTING_DEPTH - 2;
        for q in [
            format!("{}vector(1){}", "abs(".repeat(n), ")".repeat(n)),
            format!("{}vector(1){}", "sum(".repeat(n), ")".repeat(n)),
            format!("{}vector(1){}", "topk(1,".repeat(n), ")".repeat(n)),
            format!("{}vector(1){}", "clamp(".repeat(n), ",0,1)".repeat(n)),
            format!("{}vector(1){}", "label_replace(".repeat(n), r#","a","b","c","d")"#.repeat(n)),
            format!("{}vector(1){}", "(".repeat(n), ")".repeat(n)),
            format!("vector(1){}", " or vector(1)".repeat(n)),
            format!("1{}", "+1".repeat(n)),
            format!("{}vector(1){}", "max_over_time((".repeat(n / 3), ")[1m:10s])".repeat(n / 3)),
        ] {
            seismo_promql::check_nesting(&q).unwrap();
            let (status, json, _) = get(&format!("/api/v1/query_range?query={}&start=0&end=60&step=15", enc(&q))).await;
            assert_eq!(status, StatusCode::OK, "{json}");
        }
    }

    #[tokio::test]
    async fn sample_limit_is_an_execution_error_before_allocating() {
        let small = || app_with(QueryLimits { max_samples: 1000, ..QueryLimits::default() });
        let too_many = "query processing would load too many samples into memory in query execution";
        for uri in [
            // 31.5 billion inner steps: refused before the grid is allocated.
            format!("/api/v1/query?query={}&time=600", enc("max_over_time(vector(1)[1y:1ms])")),
            format!("/api/v1/query?query={}&time=600", enc("vector(1)[100y:1ms]")),
            // 3 series x 2,001 steps of a range query.
            format!("/api/v1/query_range?query={}&start=0&end=2000&step=1", enc("up + 0")),
        ] {
            let (status, json, _) = call_app(small(), Request::get(&uri).body(Body::empty()).unwrap()).await;
            assert_eq!((status, json["errorType"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("execution")));
            assert_eq!(json["error"], too_many);
        }
        // Samples a selector loads count too: 2 series x 41 samples > 50.
        let tiny = app_with(QueryLimits { max_samples: 50, ..QueryLimits::default() });
        let uri = format!("/api/v1/query?query={}&time=600", enc("count_over_time(up[10m])"));
        let (status, json, _) = call_app(tiny, Request::get(&uri).body(Body::empty()).unwrap()).await;
        assert_eq!((status, json["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(too_many)));
        let uri = format!("/api/v1/query?query={}&time=600", enc("count_over_time(up[5m:1s])"));
        let (status, json, _) = call_app(small(), Request::get(&uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["data"]["result"][0]["value"][1], "300");
    }

    #[tokio::test]
    async fn out_of_range_times_and_durations_are_bad_data() {
        for (uri, param) in [
            ("/api/v1/query_range?query=up&start=-9.2e15&end=9.2e15&step=1", "start"),
            ("/api/v1/query?query=up&time=9e15", "time"),
            ("/api/v1/query?query=up%20offset%201e300", "query"),
            ("/api/v1/query?query=rate(up%5B1e300%5D)", "query"),
            ("/api/v1/query?query=up%20offset%201000000y", "query"),
            ("/api/v1/query?query=up%20%40%201e15", "query"),
            ("/api/v1/query?query=up&timeout=-1s", "timeout"),
        ] {
            let (status, json, _) = get(uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {json}");
            let msg = json["error"].as_str().unwrap();
            assert!(msg.starts_with(&format!("invalid parameter \"{param}\"")), "{uri}: {msg}");
        }
    }
}
