//! Starting and stopping the two receivers.
//!
//! Two steps: [`CollectorConfig::bind`] claims both ports (so a taken port fails startup
//! at once, naming the address, and port 0 can be resolved before serving), then
//! [`Collector::run`] serves until the shutdown future resolves, after which both servers
//! stop accepting, finish the requests in flight, and return.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use seismo_net::{Access, Endpoint, Limits, Protocol, Tls};
use seismo_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admission::MemoryBudget;
use crate::config::CollectorConfig;
use crate::error::{CollectorError, Transport};
use crate::grpc;
use crate::http;
use crate::ingest::BatchSink;

/// Both OTLP receivers, bound and ready to serve.
#[derive(Debug)]
pub struct Collector {
    grpc_listener: TcpListener,
    grpc_addr: SocketAddr,
    grpc_router: Router,
    grpc_tls: Option<Tls>,
    http_listener: TcpListener,
    http_addr: SocketAddr,
    http_router: Router,
    http_tls: Option<Tls>,
}

impl CollectorConfig {
    /// Binds the gRPC and HTTP listeners for a collector writing to `store`.
    ///
    /// # Errors
    /// [`CollectorError::Tls`] for unusable TLS files, [`CollectorError::Bind`] naming
    /// the transport and address that could not be bound.
    pub async fn bind(self, store: Store) -> Result<Collector, CollectorError> {
        bind_with_sink(store, &self).await
    }
}

pub(crate) async fn bind_with_sink<K: BatchSink>(
    sink: K,
    config: &CollectorConfig,
) -> Result<Collector, CollectorError> {
    // TLS files are read before any port is taken, so a bad file fails fast.
    let (grpc_tls, http_tls) = match &config.tls {
        Some(files) => (Some(Tls::load(files, Protocol::Http2)?), Some(Tls::load(files, Protocol::Http1)?)),
        None => (None, None),
    };
    let (grpc_listener, grpc_addr) = listen(Transport::Grpc, config.grpc_addr).await?;
    let (http_listener, http_addr) = listen(Transport::Http, config.http_addr).await?;
    // One budget for both receivers: memory is one resource.
    let budget = MemoryBudget::new(config.max_inflight_bytes);
    Ok(Collector {
        grpc_listener,
        grpc_addr,
        grpc_router: grpc::routes_with_sink(sink.clone(), config.max_body_bytes, budget.clone()),
        grpc_tls,
        http_listener,
        http_addr,
        http_router: http::router_with_sink(sink, config.max_body_bytes, budget),
        http_tls,
    })
}

async fn listen(transport: Transport, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), CollectorError> {
    let bind_error = |source| CollectorError::Bind { transport, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

impl Collector {
    /// The address the gRPC receiver listens on (the real port if 0 was asked for).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The address the HTTP receiver listens on (the real port if 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves OTLP/gRPC and OTLP/HTTP until `shutdown` resolves, then drains both, each
    /// connection under `limits` (timeouts, the shared connection budget) and `access`
    /// (the tokens that may send; see [`seismo_net::Access`]).
    ///
    /// # Errors
    /// [`CollectorError::Serve`] if either server fails; the other is then stopped too.
    pub async fn run(
        self,
        limits: Limits,
        access: Access,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), CollectorError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            // An error means the sender is gone, which also means "stop".
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let serve = |transport: Transport, listener, addr, protocol, tls, router, stop| {
            let endpoint = Endpoint::new(transport.as_listener_name(), protocol)
                .limits(limits.clone())
                .access(access.clone())
                .tls(tls);
            async move {
                seismo_net::serve(listener, endpoint, router, stop).await.map_err(|e| CollectorError::Serve {
                    transport,
                    addr,
                    source: e.into(),
                })
            }
        };
        let grpc = serve(
            Transport::Grpc,
            self.grpc_listener,
            self.grpc_addr,
            Protocol::Http2,
            self.grpc_tls,
            self.grpc_router,
            stopped(stop_rx.clone()),
        );
        let http = serve(
            Transport::Http,
            self.http_listener,
            self.http_addr,
            Protocol::Http1,
            self.http_tls,
            self.http_router,
            stopped(stop_rx),
        );

        tracing::info!(grpc = %self.grpc_addr, http = %self.http_addr, "OTLP receivers listening");
        let servers = async { tokio::try_join!(grpc, http).map(|_| ()) };
        // Poll the caller's shutdown future here rather than spawning it, so it need not be
        // `Send + 'static`. Once it fires it parks forever; the servers then drain and end.
        let trigger = async {
            shutdown.await;
            tracing::info!("OTLP receivers shutting down");
            let _ = stop_tx.send(true);
            std::future::pending::<()>().await;
        };
        tokio::select! {
            result = servers => result,
            () = trigger => unreachable!("the trigger never completes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::testing::{FakeSink, Script};
    use std::time::Duration;

    fn loopback_config() -> CollectorConfig {
        CollectorConfig {
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: 1 << 20,
            max_inflight_bytes: 64 << 20,
            tls: None,
        }
    }

    #[tokio::test]
    async fn a_taken_port_fails_with_its_address() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let config = CollectorConfig { http_addr: addr, ..loopback_config() };
        let err = bind_with_sink(FakeSink::new(Script::Accept), &config).await.unwrap_err();
        assert!(matches!(err, CollectorError::Bind { transport: Transport::Http, .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[tokio::test]
    async fn serves_http_until_shutdown_then_returns() {
        let collector = bind_with_sink(FakeSink::new(Script::Accept), &loopback_config()).await.unwrap();
        let http_addr = collector.http_addr();
        assert_ne!(http_addr.port(), 0);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(collector.run(Limits::default(), Access::open(), async { rx.await.unwrap_or(()) }));

        // A raw HTTP/1.1 request: no client library needed for one POST.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(http_addr).await.unwrap();
        let request = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("{}"), "{response}");

        tx.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), server).await.expect("shutdown hangs");
        result.unwrap().unwrap();
    }

    /// An exporter keeps its gRPC channel open between exports; shutdown must not wait
    /// for it to go away on its own.
    #[tokio::test]
    async fn shutdown_completes_while_a_grpc_client_stays_connected() {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

        let collector = bind_with_sink(FakeSink::new(Script::Accept), &loopback_config()).await.unwrap();
        let url = format!("http://{}", collector.grpc_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(collector.run(Limits::default(), Access::open(), async { rx.await.unwrap_or(()) }));
        let mut client = TraceServiceClient::connect(url).await.unwrap();
        client.export(ExportTraceServiceRequest::default()).await.unwrap();

        tx.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), server).await.expect("shutdown hangs");
        result.unwrap().unwrap();
        drop(client);
    }
}
