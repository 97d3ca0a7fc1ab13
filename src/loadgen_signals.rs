//! `seismo loadgen-logs` and `seismo loadgen-metrics`: load logs or metric
//! series over OTLP/gRPC, then time the queries that read them (log search
//! through `/api/v1/logs`, PromQL range queries through
//! `/api/v1/query_range`). Benchmarks only; data is synthetic but shaped like
//! a service fleet's: templated log lines with high-cardinality ids, a
//! counter with 1,000 series.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::{Rng, SeedableRng};
use seismo_client::api::prometheus::QueryResult;
use seismo_client::{Client, LogQuery};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// OTLP/gRPC endpoint
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// Log records to send (spread evenly over the hour before now); 0 = only time searches
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Records per export request
    #[arg(long, default_value_t = 2000)]
    batch: u64,
    /// Requests in flight at once
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Query API base URL; when set, time log searches afterwards
    #[arg(long)]
    query_url: Option<String>,
    /// Repetitions of each timed search
    #[arg(long, default_value_t = 20)]
    repeat: usize,
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// OTLP/gRPC endpoint
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// Series of the counter (routes x instances)
    #[arg(long, default_value_t = 1000)]
    series: u64,
    /// Hours of history, one point per series every 15 s, ending now
    #[arg(long, default_value_t = 1)]
    hours: u64,
    /// Skip sending: only time queries
    #[arg(long)]
    queries_only: bool,
    /// Query API base URL; when set, time PromQL range queries afterwards
    #[arg(long)]
    query_url: Option<String>,
    /// Repetitions of each timed query
    #[arg(long, default_value_t = 20)]
    repeat: usize,
}

const SERVICES: [&str; 8] =
    ["frontend", "cart", "checkout", "payment", "shipping", "currency", "email", "recommendation"];
const ROUTES: [&str; 10] = [
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

/// How long a timed query may take before the benchmark gives up on it:
/// generous, because a benchmark measures slow queries too.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

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

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn s(v: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) })
}

fn kv(key: &str, v: impl Into<String>) -> KeyValue {
    KeyValue { key: key.into(), value: s(v), ..Default::default() }
}

/// Record `i` of `n`: a templated line with ids, severity by template.
fn log_record(rng: &mut rand::rngs::StdRng, i: u64, n: u64, t_end: u64) -> (usize, LogRecord) {
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
        body: s(body),
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

fn logs_request(seed: u64, first: u64, count: u64, n: u64, t_end: u64) -> ExportLogsServiceRequest {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ first);
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

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let at = |p: f64| ms(v[((v.len() - 1) as f64 * p).round() as usize]);
    (at(0.5), at(0.99))
}

pub async fn run_logs(args: LogsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch > 0 && args.concurrency > 0, "--batch and --concurrency must be positive");
    if args.records > 0 {
        let client = LogsServiceClient::connect(args.endpoint.clone())
            .await
            .with_context(|| format!("connecting to {}", args.endpoint))?
            .max_encoding_message_size(64 << 20);
        let next = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let t_end = now_ns();
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..args.concurrency {
            let (next, acked, mut client) = (next.clone(), acked.clone(), client.clone());
            let (n, batch) = (args.records, args.batch);
            workers.push(tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= n {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let count = batch.min(n - first);
                    let req = logs_request(42, first, count, n, t_end);
                    loop {
                        match client.export(req.clone()).await {
                            Ok(_) => break,
                            Err(s) if matches!(s.code(), tonic::Code::ResourceExhausted | tonic::Code::Unavailable) => {
                                tokio::time::sleep(Duration::from_millis(50)).await
                            }
                            Err(s) => return Err(anyhow::anyhow!("export failed: {s}")),
                        }
                    }
                    acked.fetch_add(count, Ordering::Relaxed);
                }
            }));
        }
        for w in workers {
            w.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        let acked = acked.load(Ordering::Relaxed);
        println!(
            "{}",
            serde_json::json!({"logs_acked": acked, "seconds": secs, "logs_per_sec": (acked as f64 / secs).round()})
        );
    }
    if let Some(url) = &args.query_url {
        let client = Client::new(url)?.with_timeout(QUERY_TIMEOUT);
        for search in &LOG_SEARCHES {
            let query = search.query();
            let mut times = Vec::with_capacity(args.repeat);
            let mut found = 0;
            for _ in 0..args.repeat {
                let t = Instant::now();
                let records = client.logs(&query).await.with_context(|| format!("log search {}", search.label))?;
                times.push(t.elapsed());
                found = records.len();
            }
            let (p50, p99) = percentiles(times);
            println!(
                "{}",
                serde_json::json!({"log_search": search.label, "results": found, "p50_ms": p50, "p99_ms": p99})
            );
        }
    }
    Ok(())
}

const STEP_NS: u64 = 15_000_000_000;

/// Every series' point at `t`: cumulative counts growing by a per-series rate.
fn metrics_request(series: u64, t: u64, step: u64) -> ExportMetricsServiceRequest {
    let per_instance = series.div_ceil(ROUTES.len() as u64);
    let data_points = (0..series)
        .map(|i| NumberDataPoint {
            attributes: vec![
                kv("http.route", ROUTES[(i % ROUTES.len() as u64) as usize]),
                kv("instance.slot", format!("slot-{}", i / ROUTES.len() as u64 % per_instance)),
            ],
            start_time_unix_nano: t - step * STEP_NS,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsInt((step * (1 + i % 7)) as i64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv("service.name", "frontend")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.requests".into(),
                    data: Some(metric::Data::Sum(Sum { data_points, aggregation_temporality: 2, is_monotonic: true })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub async fn run_metrics(args: MetricsArgs) -> anyhow::Result<()> {
    let steps = args.hours * 3600 / 15;
    let t_end = now_ns() / STEP_NS * STEP_NS;
    if !args.queries_only {
        let mut client = MetricsServiceClient::connect(args.endpoint.clone())
            .await
            .with_context(|| format!("connecting to {}", args.endpoint))?
            .max_encoding_message_size(64 << 20);
        let started = Instant::now();
        for step in 1..=steps {
            let t = t_end - (steps - step) * STEP_NS;
            client.export(metrics_request(args.series, t, step)).await.context("export")?;
        }
        let points = steps * args.series;
        println!(
            "{}",
            serde_json::json!({"points_acked": points, "series": args.series, "seconds": started.elapsed().as_secs_f64()})
        );
    }
    if let Some(url) = &args.query_url {
        let end = UNIX_EPOCH + Duration::from_nanos(t_end);
        let start = end - Duration::from_secs(args.hours * 3600);
        let queries = [
            ("sum by (http_route) (rate(http_server_requests_total[5m]))", 15),
            ("http_server_requests_total", 60),
            ("topk(5, rate(http_server_requests_total[1m]))", 15),
        ];
        let client = Client::new(url)?.with_timeout(QUERY_TIMEOUT);
        for (q, step) in queries {
            let mut times = Vec::with_capacity(args.repeat);
            let mut series = 0;
            for _ in 0..args.repeat {
                let t = Instant::now();
                let result = client
                    .query_range(q, start, end, Duration::from_secs(step))
                    .await
                    .with_context(|| format!("range query {q}"))?;
                times.push(t.elapsed());
                series = match result {
                    QueryResult::Matrix(series) => series.len(),
                    other => anyhow::bail!("range query {q} answered {other:?}, not a matrix"),
                };
            }
            let (p50, p99) = percentiles(times);
            println!(
                "{}",
                serde_json::json!({"query_range": q, "step_s": step, "hours": args.hours, "series_out": series, "p50_ms": p50, "p99_ms": p99})
            );
        }
    }
    Ok(())
}
