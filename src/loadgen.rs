//! `seismo loadgen`: an OTLP/gRPC load generator for benchmarks.
//!
//! It builds every request before the clock starts (so generation does not
//! count against the server), then sends them with a fixed number of requests
//! in flight and counts only acknowledged spans. The span mix follows Jaeger's
//! published ClickHouse benchmark: traces of 10 spans over several services,
//! 11 attributes per span drawn from 97 keys and 1,000 values. With
//! `--query-url` it then measures trace-by-id latency through the Jaeger API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use rand::{Rng, SeedableRng};

#[derive(Args, Debug)]
pub struct LoadgenArgs {
    /// OTLP/gRPC endpoint
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// Total spans to send
    #[arg(long, default_value_t = 1_000_000)]
    spans: u64,
    /// Spans per export request
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Requests in flight at once
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Spans per trace
    #[arg(long, default_value_t = 10)]
    spans_per_trace: usize,
    /// Jaeger query API base URL; when set, measure trace-by-id latency afterwards
    #[arg(long)]
    query_url: Option<String>,
    /// Trace-by-id lookups to time
    #[arg(long, default_value_t = 500)]
    lookups: usize,
    /// Random seed (runs with the same seed send the same data)
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Build the same data but do not send it: only time lookups of traces an
    /// earlier run with the same seed and span count sent
    #[arg(long)]
    lookups_only: bool,
}

const SERVICES: [&str; 8] =
    ["frontend", "cart", "checkout", "payment", "shipping", "currency", "email", "recommendation"];
const OPERATIONS: [&str; 6] =
    ["GET /api/cart", "POST /api/checkout", "GetQuote", "Charge", "SELECT orders", "publish order"];
const ATTR_KEYS: usize = 97;
const ATTR_VALUES: usize = 1000;
const ATTRS_PER_SPAN: usize = 11;

fn kv(key: String, value: any_value::Value) -> KeyValue {
    KeyValue { key, value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// Builds the requests and the ids of the traces they carry. With
/// `--lookups-only` the requests are generated (the same random sequence, so
/// the same trace ids) but not kept, so 10M-span runs fit in memory twice.
fn build(args: &LoadgenArgs) -> (Vec<ExportTraceServiceRequest>, Vec<[u8; 16]>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let base = now - 600_000_000_000; // ten minutes ago, inside the default search window
    let mut requests = Vec::new();
    let mut trace_ids = Vec::new();
    let mut sent = 0u64;
    let mut trace_id = [0u8; 16];
    let mut parent = Vec::new();
    let mut in_trace = args.spans_per_trace;
    while sent < args.spans {
        let n = (args.spans - sent).min(args.batch as u64) as usize;
        // One ResourceSpans per service keeps resources shared, as SDKs send them.
        let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
        for _ in 0..n {
            if in_trace == args.spans_per_trace {
                rng.fill(&mut trace_id);
                trace_ids.push(trace_id);
                parent.clear();
                in_trace = 0;
            }
            let span_id: [u8; 8] = rng.random();
            let start = base + sent * 10_000 + in_trace as u64 * 1_000;
            let duration = rng.random_range(100_000..200_000_000u64);
            let attributes = (0..ATTRS_PER_SPAN)
                .map(|_| {
                    let k = rng.random_range(0..ATTR_KEYS);
                    let v = rng.random_range(0..ATTR_VALUES);
                    if k % 3 == 0 {
                        kv(format!("attr.key{k}"), any_value::Value::IntValue(v as i64))
                    } else {
                        kv(format!("attr.key{k}"), any_value::Value::StringValue(format!("value-{v}")))
                    }
                })
                .collect();
            let error = rng.random_ratio(1, 50);
            let svc = if in_trace == 0 { 0 } else { rng.random_range(0..SERVICES.len()) };
            by_service[svc].push(Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: parent.clone(),
                name: OPERATIONS[rng.random_range(0..OPERATIONS.len())].to_string(),
                kind: if in_trace == 0 { span::SpanKind::Server as i32 } else { rng.random_range(1..=3) },
                start_time_unix_nano: start,
                end_time_unix_nano: start + duration,
                attributes,
                status: error
                    .then(|| Status { code: status::StatusCode::Error as i32, message: "injected failure".into() }),
                ..Default::default()
            });
            parent = span_id.to_vec();
            in_trace += 1;
            sent += 1;
        }
        let resource_spans = by_service
            .into_iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(i, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name".into(), any_value::Value::StringValue(SERVICES[i].into())),
                        kv("service.version".into(), any_value::Value::StringValue("1.4.2".into())),
                        kv("host.name".into(), any_value::Value::StringValue(format!("node-{}", i % 3))),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "seismo-loadgen".into(),
                        version: "1".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        if !args.lookups_only {
            requests.push(ExportTraceServiceRequest { resource_spans });
        }
    }
    (requests, trace_ids)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.batch > 0 && args.concurrency > 0 && args.spans_per_trace > 0,
        "--batch, --concurrency and --spans-per-trace must be positive"
    );
    let (requests, trace_ids) = build(&args);
    let span_count: u64 = requests
        .iter()
        .map(|r| r.resource_spans.iter().map(|rs| rs.scope_spans[0].spans.len() as u64).sum::<u64>())
        .sum();
    let encoded: usize = requests.iter().map(prost::Message::encoded_len).sum();
    if span_count > 0 {
        eprintln!(
            "loadgen: {} requests, {} spans, {:.1} B/span encoded",
            requests.len(),
            span_count,
            encoded as f64 / span_count as f64
        );
    }

    if !args.lookups_only {
        send(&args, requests).await?;
    }
    if let Some(url) = &args.query_url {
        time_lookups(&args, url, &trace_ids).await?;
    }
    Ok(())
}

async fn send(args: &LoadgenArgs, requests: Vec<ExportTraceServiceRequest>) -> anyhow::Result<()> {
    let client = TraceServiceClient::connect(args.endpoint.clone())
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let acked = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (queue, acked, retries, mut client) = (queue.clone(), acked.clone(), retries.clone(), client.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(req) = queue.lock().unwrap().pop() else { return Ok::<_, anyhow::Error>(()) };
                let n: u64 = req.resource_spans.iter().map(|rs| rs.scope_spans[0].spans.len() as u64).sum();
                loop {
                    match client.export(req.clone()).await {
                        Ok(resp) => {
                            let rejected =
                                resp.into_inner().partial_success.map(|p| p.rejected_spans as u64).unwrap_or(0);
                            acked.fetch_add(n - rejected, Ordering::Relaxed);
                            break;
                        }
                        Err(s)
                            if s.code() == tonic::Code::ResourceExhausted || s.code() == tonic::Code::Unavailable =>
                        {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(s) => return Err(anyhow::anyhow!("export failed: {s}")),
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let elapsed = started.elapsed();
    let acked = acked.load(Ordering::Relaxed);
    let rate = acked as f64 / elapsed.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "spans_acked": acked,
            "seconds": elapsed.as_secs_f64(),
            "spans_per_sec": rate.round(),
            "busy_retries": retries.load(Ordering::Relaxed),
            "batch": args.batch,
            "concurrency": args.concurrency,
        })
    );

    Ok(())
}

async fn time_lookups(args: &LoadgenArgs, url: &str, trace_ids: &[[u8; 16]]) -> anyhow::Result<()> {
    {
        let client = seismo_client::Client::new(url)?.with_timeout(crate::loadgen_signals::QUERY_TIMEOUT);
        let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed ^ 0x5eed);
        let mut latencies = Vec::with_capacity(args.lookups);
        for _ in 0..args.lookups {
            let id = trace_ids[rng.random_range(0..trace_ids.len())];
            let t = Instant::now();
            let trace =
                client.trace(&hex_id(&id)).await.with_context(|| format!("looking up trace {}", hex_id(&id)))?;
            latencies.push(t.elapsed());
            anyhow::ensure!(!trace.spans.is_empty(), "trace {} has no spans", hex_id(&id));
        }
        latencies.sort();
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        println!(
            "{}",
            serde_json::json!({
                "trace_by_id_lookups": latencies.len(),
                "p50_ms": ms(percentile(&latencies, 0.5)),
                "p90_ms": ms(percentile(&latencies, 0.9)),
                "p99_ms": ms(percentile(&latencies, 0.99)),
            })
        );
    }
    Ok(())
}

fn hex_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
