//! `seismo serve`: the store, both OTLP receivers and the query API in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use seismo_collector::CollectorConfig;
use seismo_store::{Store, StoreConfig};

use crate::config::FileConfig;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the WAL, segments and catalog live [default: ./seismo-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 0.0.0.0:4317]
    #[arg(long)]
    otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 0.0.0.0:4318]
    #[arg(long)]
    otlp_http: Option<SocketAddr>,
    /// Query API (Jaeger-compatible) listen address [default: 0.0.0.0:16686]
    #[arg(long)]
    http: Option<SocketAddr>,
    /// TOML file with the same settings; flags win over it
    #[arg(long)]
    config: Option<PathBuf>,
    /// Largest OTLP request accepted after decompression, in bytes [default: 20 MiB]
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Flush the memtable to a segment at this many rows [default: 262144]
    #[arg(long)]
    flush_rows: Option<usize>,
    /// Flush the memtable when its oldest row is this many seconds old [default: 60]
    #[arg(long)]
    flush_interval_secs: Option<u64>,
    /// Delete the oldest segments when the data directory grows past this many
    /// bytes, so the disk never fills up [default: no limit]
    #[arg(long)]
    max_disk_bytes: Option<u64>,
}

struct Settings {
    data_dir: PathBuf,
    collector: CollectorConfig,
    http: SocketAddr,
    store: StoreConfig,
}

impl ServeArgs {
    fn settings(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let data_dir = self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("seismo-data"));
        let mut collector = CollectorConfig::default();
        if let Some(a) = self.otlp_grpc.or(file.otlp_grpc) {
            collector.grpc_addr = a;
        }
        if let Some(a) = self.otlp_http.or(file.otlp_http) {
            collector.http_addr = a;
        }
        if let Some(n) = self.max_body_bytes.or(file.max_body_bytes) {
            anyhow::ensure!(n > 0, "--max-body-bytes must be positive");
            collector.max_body_bytes = n;
        }
        let http = self.http.or(file.http).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 16686)));
        let mut store = StoreConfig::new(&data_dir);
        if let Some(n) = self.flush_rows.or(file.flush_rows) {
            anyhow::ensure!(n > 0, "--flush-rows must be positive");
            store.flush_rows = n;
        }
        if let Some(s) = self.flush_interval_secs.or(file.flush_interval_secs) {
            anyhow::ensure!(s > 0, "--flush-interval-secs must be positive");
            store.flush_interval = Duration::from_secs(s);
        }
        if let Some(n) = self.max_disk_bytes.or(file.max_disk_bytes) {
            anyhow::ensure!(n > 0, "--max-disk-bytes must be positive");
            store.max_disk_bytes = Some(n);
        }
        Ok(Settings { data_dir, collector, http, store })
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let store_config = settings.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(store_config))
        .await?
        .with_context(|| format!("opening the store in {}", crate::display_path(&settings.data_dir).display()))?;

    let collector = settings.collector.clone().bind(store.clone()).await?;
    let query_listener = tokio::net::TcpListener::bind(settings.http)
        .await
        .with_context(|| format!("binding the query API on {}", settings.http))?;
    let query_addr = query_listener.local_addr()?;
    let router = seismo_query::router(seismo_query::QueryState::new(store.clone()));

    // One line on stdout that scripts and tests can wait for.
    println!(
        "seismo ready: otlp-grpc={} otlp-http={} http={} data-dir={}",
        collector.grpc_addr(),
        collector.http_addr(),
        query_addr,
        crate::display_path(&settings.data_dir).display()
    );
    tracing::info!(otlp_grpc = %collector.grpc_addr(), otlp_http = %collector.http_addr(), http = %query_addr, "seismo serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let collector_task = tokio::spawn(collector.run(stopped(stop_rx.clone())));
    let query_task =
        tokio::spawn(async move { axum::serve(query_listener, router).with_graceful_shutdown(stopped(stop_rx)).await });

    shutdown_signal().await;
    tracing::info!("shutting down: draining requests, flushing the memtable");
    let _ = stop_tx.send(true);
    // In-flight requests get DRAIN_TIMEOUT to finish; a client that holds a
    // connection open without using it must not keep the process alive.
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { (collector_task.await, query_task.await) }).await;
    // Everything acknowledged is in the WAL already; closing flushes it to segments.
    tokio::task::spawn_blocking(move || store.close()).await??;
    match drained {
        Ok((collector_result, query_result)) => {
            collector_result??;
            query_result?.context("query API server failed")?;
        }
        Err(_) => tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closed them"),
    }
    Ok(())
}

/// How long a graceful stop waits for open requests and connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
