//! What the collector needs to know up front: where to listen and how much to accept.

use std::net::{Ipv4Addr, SocketAddr};

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
}

impl CollectorConfig {
    /// 20 MiB, the OTLP spec's suggested limit after decompression.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 20 * 1024 * 1024;
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
        }
    }
}
