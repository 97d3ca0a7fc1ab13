//! What the collector needs to know up front: where to listen and how much to accept.

use std::net::{Ipv4Addr, SocketAddr};

use seismo_net::TlsFiles;

/// Configuration of both OTLP receivers.
///
/// Build it, then call [`CollectorConfig::bind`] (which claims the ports) and
/// [`Collector::run`](crate::Collector::run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorConfig {
    /// OTLP/gRPC listen address (the OTLP default port is 4317).
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address (the OTLP default port is 4318).
    pub http_addr: SocketAddr,
    /// Largest request accepted, in bytes, both as received and after decompression.
    /// HTTP answers 413 above it, gRPC `RESOURCE_EXHAUSTED`.
    pub max_body_bytes: usize,
    /// Memory that requests in flight on both receivers may hold together (their bodies
    /// and what decoding makes of them); beyond it requests wait briefly, then get 429 /
    /// `RESOURCE_EXHAUSTED` with a retry hint.
    pub max_inflight_bytes: usize,
    /// TLS on both receivers (`None`: plaintext); the gRPC one offers ALPN `h2`.
    pub tls: Option<TlsFiles>,
}

impl CollectorConfig {
    /// 20 MiB, the OTLP spec's suggested limit after decompression.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 20 * 1024 * 1024;
    /// 1 GiB: a few maximum-size protobuf requests, or one maximum-size JSON one, at once.
    pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 1 << 30;
    /// The OTLP/gRPC port.
    pub const DEFAULT_GRPC_PORT: u16 = 4317;
    /// The OTLP/HTTP port.
    pub const DEFAULT_HTTP_PORT: u16 = 4318;
}

impl Default for CollectorConfig {
    /// All interfaces on the OTLP ports, like Jaeger's all-in-one: exporters in other
    /// containers or hosts must reach us. Restrict with explicit addresses if needed.
    fn default() -> Self {
        let any = Ipv4Addr::UNSPECIFIED.into();
        CollectorConfig {
            grpc_addr: SocketAddr::new(any, Self::DEFAULT_GRPC_PORT),
            http_addr: SocketAddr::new(any, Self::DEFAULT_HTTP_PORT),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_inflight_bytes: Self::DEFAULT_MAX_INFLIGHT_BYTES,
            tls: None,
        }
    }
}
