//! The `seismo` binary: CLI wiring only. Each subcommand lives in its own module.

mod chaos;
mod config;
mod loadgen;
mod serve;
mod tui;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Flushes build and drop large Arrow and tantivy buffers every few seconds;
/// glibc's allocator hands that memory back to the kernel and faults it in
/// again (a quarter of ingest CPU went to zeroing fresh pages). mimalloc
/// keeps it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "seismo", version, about = "Observability and chaos testing for distributed systems")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// All-in-one: OTLP collector (gRPC + HTTP) and query API over one store.
    Serve(serve::ServeArgs),
    /// OTLP load generator: sends spans over gRPC and reports what was acknowledged.
    Loadgen(loadgen::LoadgenArgs),
    /// Benchmark: sends log records over gRPC, then times log searches.
    LoadgenLogs(loadgen::LogsArgs),
    /// Benchmark: sends a counter's series over gRPC, then times PromQL range queries.
    LoadgenMetrics(loadgen::MetricsArgs),
    /// Benchmark: what a chaos agent proxy adds (round trips, HTTP requests, throughput).
    LoadgenProxy(loadgen::ProxyArgs),
    /// Chaos testing: the Toxiproxy-compatible fault agent.
    #[command(subcommand)]
    Chaos(chaos::ChaosCommand),
    /// Terminal dashboard: services, traces with their faults, logs, the chaos agent.
    Tui(tui::TuiArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        // The dashboard owns the screen: its log goes to a file.
        Command::Tui(args) => tui::init_logging(args)?,
        _ => init_tracing(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Loadgen(args) => runtime.block_on(loadgen::run_spans(args)),
        Command::LoadgenLogs(args) => runtime.block_on(loadgen::run_logs(args)),
        Command::LoadgenMetrics(args) => runtime.block_on(loadgen::run_metrics(args)),
        Command::LoadgenProxy(args) => runtime.block_on(loadgen::run_proxy(args)),
        Command::Tui(args) => runtime.block_on(tui::run(args)),
        Command::Chaos(command) => {
            drop(runtime);
            chaos::run(command)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SEISMO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Resolves a path relative to the current directory for messages.
pub(crate) fn display_path(p: &std::path::Path) -> PathBuf {
    std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
}
