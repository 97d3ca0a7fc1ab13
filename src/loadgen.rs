//! `seismo loadgen*`: the flags of the load generators (crate
//! `seismo-loadgen`) and where their reports go — JSON lines on stdout
//! (prose lines for `loadgen-proxy`), the build summary on stderr.

use clap::Args;
use seismo_loadgen::logs::{LogLoad, LogReport};
use seismo_loadgen::metrics::{MetricLoad, MetricReport};
use seismo_loadgen::proxy::ProxyBench;
use seismo_loadgen::spans::{SpanLoad, SpanReport};
use seismo_loadgen::upstreams::Upstreams;
use serde::Serialize;

#[derive(Args, Debug)]
pub(crate) struct LoadgenArgs {
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

#[derive(Args, Debug)]
pub(crate) struct LogsArgs {
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
pub(crate) struct MetricsArgs {
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

#[derive(Args, Debug)]
pub(crate) struct ProxyArgs {
    /// The chaos agent's API.
    #[arg(long, default_value = "http://127.0.0.1:8474")]
    agent: String,
    /// Round trips per measurement (split into 10 interleaved blocks).
    #[arg(long, default_value_t = 50_000)]
    round_trips: usize,
    /// Bytes for the throughput measurement.
    #[arg(long, default_value_t = 8 << 30)]
    bytes: u64,
    /// Internal: only serve the upstreams and print their addresses.
    #[arg(long, hide = true)]
    upstreams_only: bool,
}

/// One JSON line on stdout.
fn print_json(report: &impl Serialize) {
    match serde_json::to_string(report) {
        Ok(line) => println!("{line}"),
        Err(e) => tracing::error!("a report did not serialize: {e}"),
    }
}

pub(crate) async fn run_spans(args: LoadgenArgs) -> anyhow::Result<()> {
    let load = SpanLoad {
        endpoint: args.endpoint,
        spans: args.spans,
        batch: args.batch,
        concurrency: args.concurrency,
        spans_per_trace: args.spans_per_trace,
        query_url: args.query_url,
        lookups: args.lookups,
        seed: args.seed,
        lookups_only: args.lookups_only,
    };
    load.run(|report| match report {
        SpanReport::Built(summary) => eprintln!("{summary}"),
        SpanReport::Sent(r) => print_json(&r),
        SpanReport::Lookups(r) => print_json(&r),
    })
    .await?;
    Ok(())
}

pub(crate) async fn run_logs(args: LogsArgs) -> anyhow::Result<()> {
    let load = LogLoad {
        endpoint: args.endpoint,
        records: args.records,
        batch: args.batch,
        concurrency: args.concurrency,
        query_url: args.query_url,
        repeat: args.repeat,
    };
    load.run(|report| match report {
        LogReport::Sent(r) => print_json(&r),
        LogReport::Search(r) => print_json(&r),
    })
    .await?;
    Ok(())
}

pub(crate) async fn run_metrics(args: MetricsArgs) -> anyhow::Result<()> {
    let load = MetricLoad {
        endpoint: args.endpoint,
        series: args.series,
        hours: args.hours,
        queries_only: args.queries_only,
        query_url: args.query_url,
        repeat: args.repeat,
    };
    load.run(|report| match report {
        MetricReport::Sent(r) => print_json(&r),
        MetricReport::RangeQuery(r) => print_json(&r),
    })
    .await?;
    Ok(())
}

pub(crate) async fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    if args.upstreams_only {
        println!("{}", Upstreams::serve()?);
        // The upstreams serve on their own threads until the parent kills us.
        return std::future::pending().await;
    }
    let mut upstreams = std::process::Command::new(std::env::current_exe()?);
    upstreams.args(["loadgen-proxy", "--upstreams-only"]);
    let bench = ProxyBench { agent: args.agent, round_trips: args.round_trips, bytes: args.bytes };
    bench.run(upstreams, |report| println!("{report}")).await?;
    Ok(())
}
