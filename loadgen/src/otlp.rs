//! What every OTLP load shares: the gRPC channel, attribute values, the clock
//! and the "busy, try again" rule.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use tonic::transport::{Channel, Endpoint};

use crate::LoadgenError;

/// Largest OTLP request a load sends (and answer it reads): far above the
/// batches the generators build, so the size limit tested is the server's.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How long a worker waits before resending a request the server was too
/// busy to take.
pub(crate) const BUSY_PAUSE: Duration = Duration::from_millis(50);

/// A connected gRPC channel to `endpoint` (`http://host:port`).
pub(crate) async fn connect(endpoint: &str) -> Result<Channel, LoadgenError> {
    let connect_error = |source| LoadgenError::Connect { endpoint: endpoint.to_string(), source };
    Endpoint::from_shared(endpoint.to_string()).map_err(connect_error)?.connect().await.map_err(connect_error)
}

/// Whether the server declined an export only because it is busy (back-pressure
/// asks the client to retry; anything else is a real failure).
pub(crate) fn is_busy(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::ResourceExhausted | tonic::Code::Unavailable)
}

/// Now, in ns since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

pub(crate) fn string(v: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) })
}

/// A string attribute.
pub(crate) fn kv(key: impl Into<String>, v: impl Into<String>) -> KeyValue {
    KeyValue { key: key.into(), value: string(v), ..Default::default() }
}

/// An attribute of any type.
pub(crate) fn kv_any(key: impl Into<String>, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}
