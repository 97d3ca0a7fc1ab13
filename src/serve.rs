//! `seismo serve`: the store, both OTLP receivers and the query API in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use seismo_collector::CollectorConfig;
use seismo_net::{Access, ConnectionLimit, Endpoint, Limits, Protocol, Role, Tls, TlsFiles, Tokens};
use seismo_query::QueryLimits;
use seismo_store::{Store, StoreConfig};

use crate::config::FileConfig;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
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
    /// Memory that OTLP requests in flight may hold together, in bytes; past it they wait,
    /// then get 429 / RESOURCE_EXHAUSTED with a retry hint [default: 1 GiB]
    #[arg(long)]
    max_inflight_bytes: Option<usize>,
    /// Client connections open at once over all listeners; more are closed at once
    /// [default: three quarters of the open-files limit, at most 16384]
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seconds a client may take to send a request head, and a connection may sit idle
    /// between requests, on every listener [default: 30]
    #[arg(long)]
    idle_timeout_secs: Option<u64>,
    /// Seconds a request body may take to arrive in full [default: 60]
    #[arg(long)]
    body_timeout_secs: Option<u64>,
    /// Flush the memtable to a segment at this many rows [default: 262144]
    #[arg(long)]
    flush_rows: Option<usize>,
    /// Merge segments (spans, logs, metric points) in the background (after
    /// bursts of heavy ingest, not during them) into segments of up to this many
    /// rows; 0 turns compaction off [default: 2000000]
    #[arg(long)]
    compact_rows: Option<u64>,
    /// Flush the memtable when its oldest row is this many seconds old [default: 60]
    #[arg(long)]
    flush_interval_secs: Option<u64>,
    /// Memory the store may hold for data acknowledged but not yet flushed to
    /// segments, in bytes; past it OTLP requests wait for a flush to make room
    /// (see --ingest-wait-secs) [default: 256 MiB]
    #[arg(long)]
    max_memtable_bytes: Option<usize>,
    /// Seconds a request may wait at --max-memtable-bytes for a flush to make room
    /// before it gets 429 / RESOURCE_EXHAUSTED with a retry hint; 0 refuses at once
    /// [default: 5]
    #[arg(long)]
    ingest_wait_secs: Option<u64>,
    /// Most samples one PromQL query may hold in memory at once; past it the
    /// query answers 422 [default: 50000000, as Prometheus]
    #[arg(long, alias = "query.max-samples")]
    query_max_samples: Option<usize>,
    /// Longest a PromQL query may queue and run, as a Prometheus duration
    /// (`2m`, `30s`, `1m30s`); past it the query answers 503 [default: 2m]
    #[arg(long, alias = "query.timeout", value_parser = parse_query_timeout)]
    query_timeout: Option<Duration>,
    /// Delete the oldest segments when the data directory grows past this many
    /// bytes, so the disk never fills up [default: no limit]
    #[arg(long)]
    max_disk_bytes: Option<u64>,
    /// Delete whole segments whose newest data is older than this, as a Prometheus
    /// duration (`7d`, `12h`, `1w2d`) [default: keep everything]
    #[arg(long, value_parser = parse_retention)]
    retention: Option<Duration>,
    /// A bearer token and the roles it grants, as ROLE:TOKEN (roles: ingest, query,
    /// chaos; several joined by +). Repeatable; also SEISMO_AUTH_TOKENS, comma-separated.
    /// With any token set, OTLP needs `ingest` and the query API `query`
    /// (`/healthz` stays open) [default: no tokens, everything open]
    #[arg(
        long = "auth-token",
        value_name = "ROLE:TOKEN",
        env = "SEISMO_AUTH_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    auth_tokens: Vec<String>,
    /// PEM certificate chain: serve TLS on all three listeners (with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate it signed (mutual TLS)
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
}

/// A positive Prometheus duration (`2m`, `1m30s`, `0.5`), as `--query-timeout` takes it.
fn parse_query_timeout(text: &str) -> Result<Duration, String> {
    let ms = seismo_query::parse_prometheus_duration(text)?;
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("query timeout {text:?} must be positive")),
    }
}

/// A positive Prometheus duration (`7d`, `12h`), as `--retention` takes it.
fn parse_retention(text: &str) -> Result<Duration, String> {
    let ms = seismo_query::parse_prometheus_duration(text)?;
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("retention {text:?} must be positive")),
    }
}

struct Settings {
    data_dir: PathBuf,
    collector: CollectorConfig,
    http: SocketAddr,
    store: StoreConfig,
    limits: Limits,
    query_limits: QueryLimits,
    tokens: Tokens,
    tls: Option<TlsFiles>,
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
        if let Some(n) = self.max_inflight_bytes.or(file.max_inflight_bytes) {
            anyhow::ensure!(n > 0, "--max-inflight-bytes must be positive");
            collector.max_inflight_bytes = n;
        }
        let mut limits = Limits::default();
        if let Some(n) = self.max_connections.or(file.max_connections) {
            anyhow::ensure!(n > 0, "--max-connections must be positive");
            limits.connections = ConnectionLimit::new(n);
        }
        if let Some(s) = self.idle_timeout_secs.or(file.idle_timeout_secs) {
            anyhow::ensure!(s > 0, "--idle-timeout-secs must be positive");
            limits.idle_timeout = Duration::from_secs(s);
        }
        if let Some(s) = self.body_timeout_secs.or(file.body_timeout_secs) {
            anyhow::ensure!(s > 0, "--body-timeout-secs must be positive");
            limits.body_timeout = Duration::from_secs(s);
        }
        let http = self.http.or(file.http).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 16686)));
        let mut store = StoreConfig::new(&data_dir);
        if let Some(n) = self.flush_rows.or(file.flush_rows) {
            anyhow::ensure!(n > 0, "--flush-rows must be positive");
            store.flush_rows = n;
        }
        if let Some(n) = self.compact_rows.or(file.compact_rows) {
            store.compact_rows = n;
        }
        if let Some(s) = self.flush_interval_secs.or(file.flush_interval_secs) {
            anyhow::ensure!(s > 0, "--flush-interval-secs must be positive");
            store.flush_interval = Duration::from_secs(s);
        }
        if let Some(n) = self.max_memtable_bytes.or(file.max_memtable_bytes) {
            anyhow::ensure!(n > 0, "--max-memtable-bytes must be positive");
            store.max_memtable_bytes = n;
        }
        if let Some(s) = self.ingest_wait_secs.or(file.ingest_wait_secs) {
            store.ingest_wait = Duration::from_secs(s);
        }
        if let Some(n) = self.max_disk_bytes.or(file.max_disk_bytes) {
            anyhow::ensure!(n > 0, "--max-disk-bytes must be positive");
            store.max_disk_bytes = Some(n);
        }
        store.retention = match (self.retention, file.retention.as_deref()) {
            (Some(t), _) => Some(t),
            (None, Some(text)) => Some(parse_retention(text).map_err(|e| anyhow::anyhow!("retention: {e}"))?),
            (None, None) => None,
        };
        let mut query_limits = QueryLimits::default();
        if let Some(n) = self.query_max_samples.or(file.query_max_samples) {
            anyhow::ensure!(n > 0, "--query-max-samples must be positive");
            query_limits.max_samples = n;
        }
        let timeout = match (self.query_timeout, file.query_timeout.as_deref()) {
            (Some(t), _) => Some(t),
            (None, Some(text)) => Some(parse_query_timeout(text).map_err(|e| anyhow::anyhow!("query_timeout: {e}"))?),
            (None, None) => None,
        };
        if let Some(t) = timeout {
            query_limits.timeout = t;
        }
        // Tokens on the command line (or in the environment) replace the file's.
        let specs = if self.auth_tokens.is_empty() { file.auth.tokens } else { self.auth_tokens };
        let tokens = Tokens::parse(&specs).context("--auth-token")?;
        let tls = match (self.tls_cert.or(file.tls.cert), self.tls_key.or(file.tls.key)) {
            (Some(cert), Some(key)) => {
                Some(TlsFiles { cert, key, client_ca: self.tls_client_ca.or(file.tls.client_ca) })
            }
            (None, None) => {
                anyhow::ensure!(
                    self.tls_client_ca.is_none() && file.tls.client_ca.is_none(),
                    "--tls-client-ca needs --tls-cert and --tls-key"
                );
                None
            }
            _ => anyhow::bail!(
                "TLS needs both a certificate and a key (--tls-cert and --tls-key, or cert and key in [tls])"
            ),
        };
        collector.tls = tls.clone();
        Ok(Settings { data_dir, collector, http, store, limits, query_limits, tokens, tls })
    }
}

/// Says loudly when anyone on the network could read or write, and when the
/// tokens given leave a listener unusable.
fn warn_about_access(tokens: &Tokens, addrs: &[(&str, SocketAddr)]) {
    if tokens.is_empty() {
        let exposed: Vec<String> =
            addrs.iter().filter(|(_, a)| !a.ip().is_loopback()).map(|(name, a)| format!("{name} on {a}")).collect();
        if !exposed.is_empty() {
            tracing::warn!(
                "NO AUTHENTICATION: {} accept(s) requests from anyone who can reach this machine. \
                 Pass --auth-token ingest:TOKEN --auth-token query:TOKEN (or bind to 127.0.0.1) \
                 to keep others from reading or writing telemetry",
                exposed.join(", ")
            );
        }
        return;
    }
    for role in [Role::Ingest, Role::Query] {
        if !tokens.grants_any(role) {
            tracing::warn!("no --auth-token grants the {role} role: every {role} request will be refused");
        }
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Before the limits are sized from it: thousands of clients need more than 1,024 files.
    seismo_net::raise_open_files_limit();
    // Before the store fills memtables: resident memory is what --max-memtable-bytes bounds.
    if !seismo_net::no_transparent_huge_pages() {
        tracing::debug!("cannot turn transparent huge pages off; resident memory may run higher");
    }
    let settings = args.settings()?;
    let store_config = settings.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(store_config))
        .await?
        .with_context(|| format!("opening the store in {}", crate::display_path(&settings.data_dir).display()))?;

    let query_tls =
        settings.tls.as_ref().map(|files| Tls::load(files, Protocol::Http1)).transpose().context("--tls-cert")?;
    let collector = settings.collector.clone().bind(store.clone()).await?;
    let query_listener = tokio::net::TcpListener::bind(settings.http)
        .await
        .with_context(|| format!("binding the query API on {}", settings.http))?;
    let query_addr = query_listener.local_addr()?;
    let router =
        seismo_query::router(seismo_query::QueryState::new(store.clone()).with_query_limits(settings.query_limits));
    warn_about_access(
        &settings.tokens,
        &[("OTLP/gRPC", collector.grpc_addr()), ("OTLP/HTTP", collector.http_addr()), ("the query API", query_addr)],
    );
    let ingest_access = Access::require(settings.tokens.clone(), Role::Ingest);
    let query_access = Access::require(settings.tokens.clone(), Role::Query).allow_path("/healthz");

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
    let collector_task = tokio::spawn(collector.run(settings.limits.clone(), ingest_access, stopped(stop_rx.clone())));
    let query_endpoint =
        Endpoint::new("query API", Protocol::Http1).limits(settings.limits).access(query_access).tls(query_tls);
    let query_task = tokio::spawn(seismo_net::serve(query_listener, query_endpoint, router, stopped(stop_rx)));

    shutdown_signal().await;
    tracing::info!("shutting down: draining requests, flushing the memtable");
    let _ = stop_tx.send(true);
    // Each listener gives in-flight requests the drain timeout, then closes what is
    // left; this outer bound is a safety net, so a stuck server cannot keep the
    // process alive.
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

/// How long a graceful stop waits for the listeners to drain and close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(Limits::DEFAULT_DRAIN_TIMEOUT.as_secs() + 2);

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
