//! Log load (`seismo loadgen-logs`): templated log lines over OTLP/gRPC, then
//! timed log searches through `/api/v1/logs`.
//!
//! The data is synthetic but shaped like a service fleet's: 8 services, 60%
//! INFO access lines, cache misses, retries, declined payments, refused
//! connections and timeouts, each with high-cardinality ids, spread evenly
//! over the hour before now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::{Rng, SeedableRng};
use seismo_client::{Client, LogQuery};
use serde::Serialize;

use crate::otlp::{self, kv};
use crate::query;
use crate::stats::p50_p99_ms;
use crate::LoadgenError;

pub(crate) const SERVICES: [&str; 8] =
    ["frontend", "cart", "checkout", "payment", "shipping", "currency", "email", "recommendation"];
pub(crate) const ROUTES: [&str; 10] = [
    "/api/cart",
    "/api/checkout",
    "/api/products",
    "/api/quote",
    "/api/pay",
    "/api/ship",
    "/",
    "/login",
    "/search",
    "/ads",
];
const REASONS: [&str; 4] = ["insufficient funds", "card expired", "fraud suspected", "limit exceeded"];
const HOUR_NS: u64 = 3600 * 1_000_000_000;
/// Every run sends the same records.
const SEED: u64 = 42;

/// What to send and what to time.
#[derive(Debug, Clone)]
pub struct LogLoad {
    /// OTLP/gRPC endpoint, `http://host:port`.
    pub endpoint: String,
    /// Log records to send, spread evenly over the hour before now; 0 = only time searches.
    pub records: u64,
    /// Records per export request.
    pub batch: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// The query API; when set, log searches are timed after sending.
    pub query_url: Option<String>,
    /// Repetitions of each timed search.
    pub repeat: usize,
}

/// One step's outcome, in the order the run reaches them.
#[derive(Debug, Clone)]
pub enum LogReport {
    /// Every record is acknowledged.
    Sent(LogSendReport),
    /// One search is timed.
    Search(LogSearchReport),
}

/// Ingest throughput.
#[derive(Debug, Clone, Serialize)]
pub struct LogSendReport {
    /// Records acknowledged.
    pub logs_acked: u64,
    /// Acknowledged records per second, rounded.
    pub logs_per_sec: f64,
    /// Wall time of the whole send.
    pub seconds: f64,
}

/// One search's latency.
#[derive(Debug, Clone, Serialize)]
pub struct LogSearchReport {
    /// The search, as the query string it stands for.
    pub log_search: &'static str,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Records the search found (at most 100).
    pub results: usize,
}

/// One timed log search: its label (the query string it stands for, as
/// earlier benchmark reports name it) and its parameters.
struct LogSearch {
    label: &'static str,
    text: Option<&'static str>,
    severity: Option<&'static str>,
    service: Option<&'static str>,
}

impl LogSearch {
    const fn new(label: &'static str, text: Option<&'static str>) -> Self {
        LogSearch { label, text, severity: None, service: None }
    }

    /// The search over the two hours the load covers, 100 records at most.
    fn query(&self) -> LogQuery {
        LogQuery {
            text: self.text.map(str::to_string),
            severities: self.severity.map(str::to_string).into_iter().collect(),
            service: self.service.map(str::to_string),
            lookback: Some(Duration::from_secs(2 * 3600)),
            limit: Some(100),
            ..LogQuery::default()
        }
    }
}

const LOG_SEARCHES: [LogSearch; 8] = [
    LogSearch::new("q=refused", Some("refused")),
    LogSearch::new("q=%22payment+declined%22", Some("\"payment declined\"")),
    LogSearch::new("q=timeout+AND+service:checkout", Some("timeout AND service:checkout")),
    LogSearch {
        severity: Some("ERROR"),
        service: Some("payment"),
        ..LogSearch::new("q=declined&severity=ERROR&service=payment", Some("declined"))
    },
    LogSearch::new("q=retrying+AND+NOT+attempt", Some("retrying AND NOT attempt")),
    LogSearch::new("q=http.route:%22/api/pay%22+AND+refused", Some("http.route:\"/api/pay\" AND refused")),
    LogSearch::new("q=deadbeef", Some("deadbeef")),
    LogSearch { severity: Some("WARN"), ..LogSearch::new("severity=WARN", None) },
];

impl LogLoad {
    /// Sends and times as the settings say, handing each step's report to
    /// `report` as soon as it is known.
    ///
    /// # Errors
    /// Settings out of range, an unreachable endpoint, an export failure other
    /// than "busy", or a failed search.
    pub async fn run(&self, mut report: impl FnMut(LogReport)) -> Result<(), LoadgenError> {
        if self.batch == 0 || self.concurrency == 0 {
            return Err(LoadgenError::Settings("--batch and --concurrency must be positive"));
        }
        if self.records > 0 {
            report(LogReport::Sent(self.send().await?));
        }
        if let Some(url) = &self.query_url {
            let client = query::client(url)?;
            for search in &LOG_SEARCHES {
                report(LogReport::Search(self.time_search(&client, search).await?));
            }
        }
        Ok(())
    }

    async fn send(&self) -> Result<LogSendReport, LoadgenError> {
        let client = LogsServiceClient::new(otlp::connect(&self.endpoint).await?)
            .max_encoding_message_size(otlp::MAX_MESSAGE_BYTES);
        let next = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let t_end = otlp::now_ns();
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..self.concurrency {
            let (next, acked, mut client) = (next.clone(), acked.clone(), client.clone());
            let (n, batch) = (self.records, self.batch);
            workers.push(tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= n {
                        return Ok::<_, LoadgenError>(());
                    }
                    let count = batch.min(n - first);
                    let req = logs_request(first, count, n, t_end);
                    loop {
                        match client.export(req.clone()).await {
                            Ok(_) => break,
                            Err(s) if otlp::is_busy(&s) => tokio::time::sleep(otlp::BUSY_PAUSE).await,
                            Err(s) => return Err(s.into()),
                        }
                    }
                    acked.fetch_add(count, Ordering::Relaxed);
                }
            }));
        }
        for w in workers {
            w.await??;
        }
        let seconds = started.elapsed().as_secs_f64();
        let acked = acked.load(Ordering::Relaxed);
        Ok(LogSendReport { logs_acked: acked, logs_per_sec: (acked as f64 / seconds).round(), seconds })
    }

    async fn time_search(&self, client: &Client, search: &LogSearch) -> Result<LogSearchReport, LoadgenError> {
        let query = search.query();
        let mut times = Vec::with_capacity(self.repeat);
        let mut found = 0;
        for _ in 0..self.repeat {
            let t = Instant::now();
            let records =
                client.logs(&query).await.map_err(LoadgenError::client(format!("log search {}", search.label)))?;
            times.push(t.elapsed());
            found = records.len();
        }
        let (p50_ms, p99_ms) = p50_p99_ms(times);
        Ok(LogSearchReport { log_search: search.label, p50_ms, p99_ms, results: found })
    }
}

/// Record `i` of `n`: a templated line with ids, severity by template.
fn log_record(rng: &mut impl Rng, i: u64, n: u64, t_end: u64) -> (usize, LogRecord) {
    let service = rng.random_range(0..SERVICES.len());
    let route = ROUTES[rng.random_range(0..ROUTES.len())];
    let req: u32 = rng.random();
    let roll = rng.random_range(0..100);
    let (severity, text, body) = match roll {
        0..=59 => (
            9,
            "INFO",
            format!(
                "GET {route} 200 in {}ms req={req:08x} user={}",
                rng.random_range(1..500),
                rng.random_range(0..10_000)
            ),
        ),
        60..=74 => (5, "DEBUG", format!("cache miss for key {route}:{} req={req:08x}", rng.random_range(0..100_000))),
        75..=84 => (
            13,
            "WARN",
            format!(
                "retrying request to {} attempt {} req={req:08x}",
                SERVICES[rng.random_range(0..8)],
                rng.random_range(1..5)
            ),
        ),
        85..=89 => (
            17,
            "ERROR",
            format!(
                "payment declined for order {}: {} req={req:08x}",
                rng.random_range(0..1_000_000),
                REASONS[rng.random_range(0..4)]
            ),
        ),
        90..=94 => (17, "ERROR", format!("connection refused by redis-{}:6379 req={req:08x}", rng.random_range(0..4))),
        _ => (
            13,
            "WARN",
            format!(
                "timeout after {}ms calling {} req={req:08x}",
                rng.random_range(100..5000),
                SERVICES[rng.random_range(0..8)]
            ),
        ),
    };
    let time = t_end - HOUR_NS + i * (HOUR_NS / n.max(1));
    let traced = rng.random_bool(0.5);
    let record = LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        severity_number: severity,
        severity_text: text.into(),
        body: otlp::string(body),
        attributes: vec![
            kv("http.route", route),
            kv("user.id", rng.random_range(0..10_000u32).to_string()),
            kv("cloud.region", ["eu-west-1", "us-east-1", "ap-south-1"][rng.random_range(0..3)]),
        ],
        trace_id: if traced { rng.random::<[u8; 16]>().to_vec() } else { vec![] },
        span_id: if traced { rng.random::<[u8; 8]>().to_vec() } else { vec![] },
        ..Default::default()
    };
    (service, record)
}

/// Records `first..first + count` of `n`, a resource per service; the same
/// range always gives the same records.
fn logs_request(first: u64, count: u64, n: u64, t_end: u64) -> ExportLogsServiceRequest {
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED ^ first);
    let mut by_service: Vec<Vec<LogRecord>> = vec![Vec::new(); SERVICES.len()];
    for i in first..first + count {
        let (svc, r) = log_record(&mut rng, i, n, t_end);
        by_service[svc].push(r);
    }
    ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(svc, log_records)| ResourceLogs {
                resource: Some(Resource { attributes: vec![kv("service.name", SERVICES[svc])], ..Default::default() }),
                scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_holds_its_range_of_records_within_the_last_hour() {
        let t_end = 10 * HOUR_NS;
        let req = logs_request(100, 50, 1000, t_end);
        let records: Vec<&LogRecord> = req.resource_logs.iter().flat_map(|rl| &rl.scope_logs[0].log_records).collect();
        assert_eq!(records.len(), 50);
        assert!(records.iter().all(|r| (t_end - HOUR_NS..t_end).contains(&r.time_unix_nano)));
        assert!(records.iter().all(|r| matches!(r.severity_text.as_str(), "INFO" | "DEBUG" | "WARN" | "ERROR")));
        // Deterministic: the same range gives the same records.
        assert_eq!(logs_request(100, 50, 1000, t_end), req);
    }

    #[test]
    fn searches_cover_two_hours_and_at_most_100_records() {
        let q = LOG_SEARCHES[3].query();
        assert_eq!(q.text.as_deref(), Some("declined"));
        assert_eq!(q.severities, ["ERROR"]);
        assert_eq!(q.service.as_deref(), Some("payment"));
        assert_eq!((q.lookback, q.limit), (Some(Duration::from_secs(7200)), Some(100)));
    }
}
