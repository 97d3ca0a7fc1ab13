//! A proxy: one listener, one upstream, its toxics, and its lifecycle (start
//! binds at once so the answer carries the real port; stop closes the
//! listener and every connection). Connections themselves live in
//! `connect.rs` (accept, sniff), `pump.rs` (bytes through the TCP toxics),
//! `turns.rs` (HTTP/1 requests) and `h2c.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::conn::ProxyStats;
use crate::conn::{Chain, ProxyShared};
use crate::error::ChaosError;
use crate::faults::FaultSink;
use crate::model::{Stream, Toxic};
use seismo_api::toxiproxy as wire;

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Stops a proxy's listener and connections; await it to know the port is free.
pub struct Stopping(Option<Running>);

impl Stopping {
    pub async fn wait(self) {
        if let Some(r) = self.0 {
            r.cancel.cancel();
            let _ = r.task.await;
        }
    }
}

pub struct Proxy {
    pub name: String,
    /// The configured listen address until started, then the bound one.
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Arc<Toxic>>,
    pub stats: Arc<ProxyStats>,
    chain_tx: watch::Sender<Arc<Chain>>,
    faults: Arc<FaultSink>,
    /// The agent's connection tasks, awaited on shutdown so their spans get out.
    tasks: TaskTracker,
    running: Option<Running>,
}

impl Proxy {
    pub fn new(name: String, listen: String, upstream: String, faults: Arc<FaultSink>, tasks: TaskTracker) -> Proxy {
        let (chain_tx, _) = watch::channel(Arc::new(Chain::default()));
        Proxy {
            name,
            listen,
            upstream,
            enabled: false,
            toxics: Vec::new(),
            stats: Arc::new(ProxyStats::default()),
            chain_tx,
            faults,
            tasks,
            running: None,
        }
    }

    /// Binds the listener now (so the answer carries the real port) and starts accepting.
    ///
    /// # Errors
    /// [`ChaosError::ListenInUse`] when the address is taken, [`ChaosError::BadListen`]
    /// when it cannot be resolved or bound.
    pub fn start(&mut self) -> Result<(), ChaosError> {
        if self.running.is_some() {
            self.enabled = true;
            return Ok(());
        }
        let addr = resolve_listen(&self.listen)?;
        let std_listener = bind(addr).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                ChaosError::ListenInUse(addr.to_string())
            } else {
                ChaosError::BadListen(format!("cannot listen on {addr}: {e}"))
            }
        })?;
        std_listener.set_nonblocking(true).map_err(|e| ChaosError::BadListen(e.to_string()))?;
        let listener = TcpListener::from_std(std_listener).map_err(|e| ChaosError::BadListen(e.to_string()))?;
        self.listen = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string());
        let cancel = CancellationToken::new();
        let shared = Arc::new(ProxyShared {
            name: self.name.clone(),
            chain: self.chain_tx.subscribe(),
            stats: self.stats.clone(),
            faults: self.faults.clone(),
        });
        let task = tokio::spawn(crate::connect::accept_loop(
            listener,
            shared,
            self.upstream.clone(),
            cancel.clone(),
            self.tasks.clone(),
        ));
        self.running = Some(Running { cancel, task });
        self.enabled = true;
        tracing::info!(proxy = %self.name, listen = %self.listen, upstream = %self.upstream, "proxy started");
        Ok(())
    }

    /// Closes the listener and every connection. Await the result before reusing the port.
    pub fn stop(&mut self) -> Stopping {
        self.enabled = false;
        let running = self.running.take();
        if let Some(r) = &running {
            r.cancel.cancel();
            tracing::info!(proxy = %self.name, "proxy stopped");
        }
        Stopping(running)
    }

    pub fn toxic(&self, name: &str) -> Option<&Arc<Toxic>> {
        self.toxics.iter().find(|t| t.name == name)
    }

    pub fn set_toxics(&mut self, toxics: Vec<Arc<Toxic>>) {
        self.toxics = toxics;
        self.publish();
    }

    fn publish(&self) {
        self.chain_tx.send_replace(Arc::new(Chain { toxics: self.toxics.clone() }));
    }

    /// The proxy as the API answers it.
    pub fn to_wire(&self) -> wire::Proxy {
        wire::Proxy {
            enabled: self.enabled,
            listen: self.listen.clone(),
            name: self.name.clone(),
            toxics: self.toxics_wire(),
            upstream: self.upstream.clone(),
        }
    }

    /// Upstream toxics first, then downstream, each in the order added (as Toxiproxy lists them).
    pub fn toxics_wire(&self) -> Vec<wire::Toxic> {
        let by = |s: Stream| self.toxics.iter().filter(move |t| t.stream == s).map(|t| t.to_wire());
        by(Stream::Upstream).chain(by(Stream::Downstream)).collect()
    }
}

/// Go-style listen addresses: `host:port`, `:port` and empty (all interfaces,
/// IPv6 and IPv4; port 0 when empty). A host name resolves to its IPv4
/// address first, as Go's resolver prefers.
///
/// # Errors
/// [`ChaosError::BadListen`] naming the address.
pub fn resolve_listen(listen: &str) -> Result<SocketAddr, ChaosError> {
    use std::net::ToSocketAddrs;
    let listen = listen.trim();
    let spec = if listen.is_empty() {
        "[::]:0".to_string()
    } else if let Some(port) = listen.strip_prefix(':') {
        format!("[::]:{port}")
    } else {
        listen.to_string()
    };
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| ChaosError::BadListen(format!("invalid listen address {listen:?}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| ChaosError::BadListen(format!("invalid listen address {listen:?}: resolves to nothing")))
}

/// Binds; on a host without IPv6, "all interfaces" falls back to IPv4's.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    match std::net::TcpListener::bind(addr) {
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() && e.kind() != std::io::ErrorKind::AddrInUse => {
            std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], addr.port())))
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_like_go() {
        assert_eq!(resolve_listen("").unwrap().to_string(), "[::]:0");
        assert_eq!(resolve_listen(":8080").unwrap().to_string(), "[::]:8080");
        assert_eq!(resolve_listen("localhost:0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(resolve_listen("127.0.0.1:0").unwrap().to_string(), "127.0.0.1:0");
        assert!(resolve_listen("nonsense").is_err());
    }
}
