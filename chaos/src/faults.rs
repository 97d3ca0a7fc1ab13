//! Every fault the agent applies becomes an OTLP span: a child of the
//! victim's span when the request carried a W3C `traceparent`, a span of its
//! own otherwise. Counters per toxic back the agent's `/metrics`.

use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use seismo_api::toxiproxy::Attributes;

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

/// The labels of `seismo_chaos_faults_total`: which proxy, toxic and fault type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FaultLabels {
    pub(crate) proxy: String,
    pub(crate) toxic: String,
    pub(crate) kind: &'static str,
}

impl EncodeLabelSet for FaultLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("proxy", self.proxy.as_str()), ("toxic", self.toxic.as_str()), ("type", self.kind)].encode(encoder)
    }
}

/// Faults applied, per (proxy, toxic, type).
pub(crate) type FaultCounts = Family<FaultLabels, Counter>;

pub struct FaultSink {
    provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
    experiment: Option<String>,
    counts: FaultCounts,
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
        Ok(FaultSink { provider, tracer, experiment, counts: FaultCounts::default() })
    }

    pub fn record(&self, fault: Fault<'_>) {
        let toxic = fault.toxic;
        let labels =
            FaultLabels { proxy: fault.proxy.to_string(), toxic: toxic.name.clone(), kind: toxic.kind.type_name() };
        self.counts.get_or_create(&labels).inc();
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
        attrs.extend(parameter_attributes(toxic.kind.attributes()));
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

    /// Faults applied per (proxy, toxic, type), for `/metrics`.
    pub(crate) fn counts(&self) -> &FaultCounts {
        &self.counts
    }

    /// Sends what is buffered; called on shutdown.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

/// A toxic's parameters as span attributes `chaos.toxic.<name>`, in the
/// attributes' alphabetical order: the numbers the type has, and its
/// non-empty strings (an HTTP toxic's empty matcher fields match everything
/// and say nothing). Destructured field by field, so a new attribute in the
/// wire type does not compile until it is given a span attribute here.
fn parameter_attributes(attributes: Attributes) -> Vec<KeyValue> {
    let Attributes {
        average_size,
        bytes,
        delay,
        grpc_status,
        header,
        jitter,
        latency,
        method,
        path_prefix,
        rate,
        signal,
        size_variation,
        status,
        timeout,
    } = attributes;
    let int = |name: &str, v: Option<i64>| v.map(|v| KeyValue::new(format!("chaos.toxic.{name}"), v));
    let text = |name: &str, v: Option<String>| {
        v.filter(|v| !v.is_empty()).map(|v| KeyValue::new(format!("chaos.toxic.{name}"), v))
    };
    [
        int("average_size", average_size),
        int("bytes", bytes),
        int("delay", delay),
        int("grpc_status", grpc_status.map(i64::from)),
        text("header", header),
        int("jitter", jitter),
        int("latency", latency),
        text("method", method),
        text("path_prefix", path_prefix),
        int("rate", rate),
        int("signal", signal.map(i64::from)),
        int("size_variation", size_variation),
        int("status", status.map(i64::from)),
        int("timeout", timeout),
    ]
    .into_iter()
    .flatten()
    .collect()
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
    fn a_toxics_parameters_become_span_attributes() {
        let kv = |attrs: Vec<KeyValue>| -> Vec<String> {
            attrs.into_iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect()
        };
        let latency = Attributes { latency: Some(100), jitter: Some(0), ..Attributes::default() };
        assert_eq!(kv(parameter_attributes(latency)), ["chaos.toxic.jitter=0", "chaos.toxic.latency=100"]);
        let abort = Attributes {
            status: Some(503),
            grpc_status: Some(14),
            method: Some("GET".into()),
            path_prefix: Some(String::new()),
            header: Some(String::new()),
            ..Attributes::default()
        };
        assert_eq!(
            kv(parameter_attributes(abort)),
            ["chaos.toxic.grpc_status=14", "chaos.toxic.method=GET", "chaos.toxic.status=503"]
        );
    }

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
