//! Every fault the agent applies becomes an OTLP span: a child of the
//! victim's span when the request carried a W3C `traceparent`, a span of its
//! own otherwise. Counters per toxic back the agent's `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde_json::Value;

use crate::error::ChaosError;
use crate::model::Toxic;

fn exporter_error(e: impl std::fmt::Display) -> ChaosError {
    ChaosError::Exporter(e.to_string())
}

/// How faults leave the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (collector port 4317).
    Grpc,
    /// OTLP/HTTP protobuf (collector port 4318; `/v1/traces` is appended).
    Http,
}

/// What the fault-span exporter presents to the collector.
#[derive(Debug, Clone, Default)]
pub struct ExportSecurity {
    /// Sent as `authorization: Bearer <token>` (a token with the `ingest` role).
    pub token: Option<String>,
    /// PEM CA certificate(s) to trust for an `https://` endpoint, besides the
    /// public roots.
    pub ca_cert: Option<std::path::PathBuf>,
}

/// One applied fault, ready to become a span.
pub struct Fault<'a> {
    pub proxy: &'a str,
    pub toxic: &'a Toxic,
    pub parent: Option<SpanContext>,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Set when the fault failed the request or connection.
    pub error: Option<String>,
    pub attributes: Vec<KeyValue>,
}

pub struct FaultSink {
    provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
    experiment: Option<String>,
    counts: Mutex<BTreeMap<(String, String, &'static str), u64>>,
}

impl FaultSink {
    /// Builds the exporter; must run inside the tokio runtime (tonic needs it).
    ///
    /// # Errors
    /// [`ChaosError::Exporter`] for an exporter that cannot be built (a bad
    /// endpoint, an unreadable CA file, a CA with plain HTTP/protobuf).
    pub fn new(
        endpoint: Option<&str>,
        protocol: OtlpProtocol,
        security: &ExportSecurity,
        experiment: Option<String>,
    ) -> Result<FaultSink, ChaosError> {
        let provider = match endpoint {
            None => None,
            Some(endpoint) => {
                use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
                use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
                use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
                let bearer = security.token.as_ref().map(|t| format!("Bearer {t}"));
                let exporter = match protocol {
                    OtlpProtocol::Grpc => {
                        let mut builder =
                            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint);
                        if let Some(bearer) = &bearer {
                            let mut metadata = MetadataMap::new();
                            metadata.insert("authorization", bearer.parse().map_err(exporter_error)?);
                            builder = builder.with_metadata(metadata);
                        }
                        if let Some(path) = &security.ca_cert {
                            let pem = std::fs::read(path).map_err(|e| {
                                exporter_error(format!("reading --otlp-ca-cert {}: {e}", path.display()))
                            })?;
                            let tls =
                                ClientTlsConfig::new().with_enabled_roots().ca_certificate(Certificate::from_pem(pem));
                            builder = builder.with_tls_config(tls);
                        } else if endpoint.starts_with("https://") {
                            builder = builder.with_tls_config(ClientTlsConfig::new().with_enabled_roots());
                        }
                        builder.build().map_err(exporter_error)?
                    }
                    OtlpProtocol::Http => {
                        let url = if endpoint.ends_with("/v1/traces") {
                            endpoint.to_string()
                        } else {
                            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
                        };
                        if security.ca_cert.is_some() || url.starts_with("https://") {
                            return Err(exporter_error(
                                "fault spans over TLS go through OTLP/gRPC: use --otlp-protocol grpc with an https:// endpoint",
                            ));
                        }
                        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(url);
                        if let Some(bearer) = bearer {
                            builder = builder
                                .with_headers(std::collections::HashMap::from([("authorization".to_string(), bearer)]));
                        }
                        builder.build().map_err(exporter_error)?
                    }
                };
                // Faults should show up while the experiment is still running.
                let config = BatchConfigBuilder::default().with_scheduled_delay(Duration::from_millis(500)).build();
                let processor = BatchSpanProcessor::builder(exporter).with_batch_config(config).build();
                let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "seismo-chaos".to_string());
                Some(
                    SdkTracerProvider::builder()
                        .with_span_processor(processor)
                        .with_resource(Resource::builder().with_service_name(service).build())
                        .build(),
                )
            }
        };
        let tracer = provider.as_ref().map(|p| p.tracer("seismo-chaos"));
        Ok(FaultSink { provider, tracer, experiment, counts: Mutex::new(BTreeMap::new()) })
    }

    pub fn record(&self, fault: Fault<'_>) {
        let toxic = fault.toxic;
        *self
            .counts
            .lock()
            .unwrap()
            .entry((fault.proxy.to_string(), toxic.name.clone(), toxic.kind.type_name()))
            .or_default() += 1;
        let Some(tracer) = &self.tracer else { return };
        let mut attrs = Vec::with_capacity(12);
        if !fault.proxy.is_empty() {
            attrs.push(KeyValue::new("chaos.proxy", fault.proxy.to_string()));
        }
        attrs.extend([
            KeyValue::new("chaos.toxic.name", toxic.name.clone()),
            KeyValue::new("chaos.toxic.type", toxic.kind.type_name()),
            KeyValue::new("chaos.toxic.stream", toxic.stream.as_str()),
            KeyValue::new("chaos.toxic.toxicity", toxic.toxicity as f64),
        ]);
        if let Ok(Value::Object(params)) = serde_json::to_value(toxic.kind.attributes()) {
            for (k, v) in params {
                let key = format!("chaos.toxic.{k}");
                match v {
                    Value::Number(n) => attrs.push(KeyValue::new(key, n.as_i64().unwrap_or_default())),
                    Value::String(s) if !s.is_empty() => attrs.push(KeyValue::new(key, s)),
                    _ => {}
                }
            }
        }
        if let Some(exp) = toxic.experiment.as_ref().or(self.experiment.as_ref()) {
            attrs.push(KeyValue::new("chaos.experiment.id", exp.clone()));
        }
        attrs.extend(fault.attributes);
        let cx = match fault.parent {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        };
        let mut span = tracer
            .span_builder(format!("chaos {}", toxic.kind.type_name()))
            .with_kind(SpanKind::Internal)
            .with_start_time(fault.start)
            .with_attributes(attrs)
            .start_with_context(tracer, &cx);
        if let Some(msg) = fault.error {
            span.set_status(Status::error(msg));
        }
        span.end_with_timestamp(fault.end.max(fault.start));
    }

    /// Counts per (proxy, toxic, type), for `/metrics`.
    pub fn counts(&self) -> Vec<((String, String, &'static str), u64)> {
        self.counts.lock().unwrap().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Sends what is buffered; called on shutdown.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

/// The caller's span from a W3C `traceparent` header, if valid.
pub fn parent_from_headers(headers: &axum::http::HeaderMap) -> Option<SpanContext> {
    struct Headers<'a>(&'a axum::http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_becomes_the_parent() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let sc = parent_from_headers(&h).unwrap();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote());
        h.insert("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().unwrap());
        assert!(parent_from_headers(&h).is_none());
    }
}
