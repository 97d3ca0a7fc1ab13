//! seismo's chaos agent: a Toxiproxy-compatible fault proxy. Toxiproxy's API,
//! toxics and semantics, plus HTTP-aware toxics, process faults, and an OTLP
//! span for every fault inside the trace of the request it hit.

pub mod api;
pub mod faults;
mod h1;
mod http;
pub mod model;
pub mod process;
pub mod proxy;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use faults::OtlpProtocol;

pub struct AgentOptions {
    pub api: String,
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    pub experiment: Option<String>,
    /// A JSON array of proxies to create at start, as `POST /populate` takes.
    pub config: Option<PathBuf>,
}

/// The agent's state behind the API.
pub struct Agent {
    pub(crate) proxies: Mutex<BTreeMap<String, proxy::Proxy>>,
    /// Serializes changes that wait for a listener to close.
    pub(crate) ops: tokio::sync::Mutex<()>,
    pub(crate) faults: Arc<faults::FaultSink>,
    pub(crate) processes: process::Processes,
    pub(crate) tasks: tokio_util::task::TaskTracker,
}

/// Runs the agent until `shutdown` resolves, then closes every listener and
/// connection, resumes paused processes, stops started ones, and flushes spans.
pub async fn run(opts: AgentOptions, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let faults = Arc::new(faults::FaultSink::new(opts.otlp_endpoint.as_deref(), opts.otlp_protocol, opts.experiment)?);
    let agent = Arc::new(Agent {
        proxies: Mutex::new(BTreeMap::new()),
        ops: tokio::sync::Mutex::new(()),
        faults: faults.clone(),
        processes: process::Processes::default(),
        tasks: tokio_util::task::TaskTracker::new(),
    });
    let listener = tokio::net::TcpListener::bind(&opts.api)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for the API: {e}", opts.api))?;
    let api_addr = listener.local_addr()?;
    let app = api::router(agent.clone());
    if let Some(path) = &opts.config {
        populate_from_file(&app, path).await?;
    }
    println!("seismo chaos agent ready: api={api_addr}");
    tracing::info!(api = %api_addr, otlp = ?opts.otlp_endpoint, "chaos agent listening");
    let limits = seismo_net::Limits::default();
    seismo_net::serve(listener, "chaos agent API", seismo_net::Protocol::Http1, app, limits, shutdown).await?;

    let stopping: Vec<_> = agent.proxies.lock().unwrap().values_mut().map(|p| p.stop()).collect();
    for s in stopping {
        s.wait().await;
    }
    // Connections were cancelled with their proxies; let them export their spans.
    agent.tasks.close();
    if tokio::time::timeout(std::time::Duration::from_secs(2), agent.tasks.wait()).await.is_err() {
        tracing::warn!("connections still closing after 2 s");
    }
    agent.processes.shutdown();
    tokio::task::spawn_blocking(move || faults.shutdown()).await?;
    tracing::info!("chaos agent stopped");
    Ok(())
}

/// `-config` as in Toxiproxy: the file goes through the same path as `POST /populate`.
async fn populate_from_file(app: &axum::Router, path: &std::path::Path) -> anyhow::Result<()> {
    use tower::ServiceExt;
    let body = std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let req = axum::http::Request::post("/populate").body(axum::body::Body::from(body))?;
    let resp = app.clone().oneshot(req).await?;
    if !resp.status().is_success() {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await?;
        anyhow::bail!("{}: {}", path.display(), String::from_utf8_lossy(&bytes));
    }
    Ok(())
}
