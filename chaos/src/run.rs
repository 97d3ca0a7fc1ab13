//! Running the agent: bind the API, create the `--config` proxies, serve
//! until shutdown, then stop everything and flush the fault spans.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::agent::Agent;
use crate::error::ChaosError;
use crate::faults::{ExportSecurity, FaultSink, OtlpProtocol};
use crate::process::CommandPolicy;
use seismo_net::{Access, Endpoint, Protocol, Role, Tls, TlsFiles, Tokens};

/// How `seismo chaos agent` runs.
pub struct AgentOptions {
    /// The API's listen address (Toxiproxy's default is 127.0.0.1:8474).
    pub api: String,
    /// Where fault spans go; `None`: no spans, counters only.
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// The experiment id on every fault span (a toxic's own wins).
    pub experiment: Option<String>,
    /// A JSON array of proxies to create at start, as `POST /populate` takes.
    pub config: Option<PathBuf>,
    /// Tokens for the API; with any set, requests need one granting `chaos`.
    pub tokens: Tokens,
    /// Serve a non-loopback `--api` without tokens anyway.
    pub insecure: bool,
    /// Which commands `POST /processes` may start.
    pub commands: CommandPolicy,
    /// TLS on the API (`None`: plaintext).
    pub tls: Option<TlsFiles>,
    /// How fault spans reach the collector: a token, a private CA.
    pub export: ExportSecurity,
}

/// Runs the agent until `shutdown` resolves, then closes every listener and
/// connection, resumes paused processes, stops started ones, and flushes spans.
///
/// # Errors
/// The API address cannot be bound, the exporter cannot be built, the
/// `--config` file is unreadable or refused, or the API would listen beyond
/// loopback without tokens ([`ChaosError::Insecure`]; `insecure` allows it).
pub async fn run(opts: AgentOptions, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ChaosError> {
    let io = |context: String| move |source| ChaosError::Io { context, source };
    let tls = match &opts.tls {
        Some(files) => Some(Tls::load(files, Protocol::Http1).map_err(|e| ChaosError::Tls(e.to_string()))?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&opts.api)
        .await
        .map_err(io(format!("cannot listen on {} for the API", opts.api)))?;
    let api_addr = listener.local_addr().map_err(io("API address".into()))?;
    if !api_addr.ip().is_loopback() && opts.tokens.is_empty() {
        if !opts.insecure {
            return Err(ChaosError::Insecure(format!(
                "refusing to serve the chaos API on {api_addr} without a token: anyone who can reach it could \
                 break traffic and start commands. Pass --auth-token chaos:TOKEN, or --insecure on a network \
                 you trust"
            )));
        }
        tracing::warn!(api = %api_addr, "NO AUTHENTICATION on the chaos agent's API (--insecure)");
    }
    if !opts.tokens.is_empty() && !opts.tokens.grants_any(Role::Chaos) {
        tracing::warn!("no --auth-token grants the chaos role: every API request will be refused");
    }
    let faults =
        Arc::new(FaultSink::new(opts.otlp_endpoint.as_deref(), opts.otlp_protocol, &opts.export, opts.experiment)?);
    let agent = Arc::new(Agent::new(faults.clone(), opts.commands));
    let app = crate::api::router(agent.clone());
    if let Some(path) = &opts.config {
        populate_from_file(&app, path).await?;
    }
    println!("seismo chaos agent ready: api={api_addr}");
    tracing::info!(api = %api_addr, otlp = ?opts.otlp_endpoint, "chaos agent listening");
    let endpoint =
        Endpoint::new("chaos agent API", Protocol::Http1).access(Access::require(opts.tokens, Role::Chaos)).tls(tls);
    seismo_net::serve(listener, endpoint, app, shutdown).await.map_err(io("chaos agent API".into()))?;

    agent.stop().await;
    // The exporter blocks while it flushes.
    let _ = tokio::task::spawn_blocking(move || faults.shutdown()).await;
    tracing::info!("chaos agent stopped");
    Ok(())
}

/// `-config` as in Toxiproxy: the file goes through the same path as `POST /populate`.
async fn populate_from_file(app: &axum::Router, path: &Path) -> Result<(), ChaosError> {
    use tower::ServiceExt;
    let config = |message: String| ChaosError::Config { path: path.display().to_string(), message };
    let body = std::fs::read(path).map_err(|e| config(format!("cannot read: {e}")))?;
    let req =
        axum::http::Request::post("/populate").body(axum::body::Body::from(body)).map_err(|e| config(e.to_string()))?;
    let resp = app.clone().oneshot(req).await.map_err(|e| config(e.to_string()))?;
    if !resp.status().is_success() {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.map_err(|e| config(e.to_string()))?;
        return Err(config(String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(())
}
