//! One service's OpenTelemetry pipeline: `tracing` spans exported as OTLP
//! spans, `tracing` events as OTLP log records (carrying the span's trace
//! id), OTel metrics every few seconds, all over OTLP/gRPC to the collector,
//! under the service's own `service.name`. And the W3C `traceparent`
//! carriers for HTTP headers.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{global, KeyValue};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::logs::{self, BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{self, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::DemoError;

/// How often metrics leave a service: often enough that a short demo shows them.
const METRICS_INTERVAL: Duration = Duration::from_secs(5);

/// How long a finished span or a log record waits to be sent (the SDK's
/// default is 5 s): a fault shows in the dashboard, and in an experiment's
/// "after" probes, within a second.
const EXPORT_DELAY: Duration = Duration::from_millis(500);

/// A service's installed pipeline. [`Telemetry::shutdown`] flushes what is
/// still buffered; dropping it without that may lose the last spans.
pub struct Telemetry {
    tracer: SdkTracerProvider,
    logger: SdkLoggerProvider,
    meter: SdkMeterProvider,
}

impl Telemetry {
    /// Installs the pipeline as this process's `tracing` subscriber, global
    /// meter provider and W3C propagator. Only this crate's spans and events
    /// are exported (the HTTP and gRPC stacks' own would loop back through
    /// the exporter); warnings also go to stderr.
    ///
    /// Must run inside a tokio runtime: the gRPC exporters need it.
    ///
    /// # Errors
    /// When an exporter cannot be built (a malformed endpoint) or a
    /// subscriber is already installed.
    pub fn install(service: &str, otlp_endpoint: &str) -> Result<Telemetry, DemoError> {
        let failed = |e: &dyn std::fmt::Display| DemoError::Telemetry(e.to_string());
        let resource = Resource::builder()
            .with_service_name(service.to_string())
            .with_attribute(KeyValue::new("deployment.environment", "seismo-demo"))
            .build();
        let spans =
            SpanExporter::builder().with_tonic().with_endpoint(otlp_endpoint).build().map_err(|e| failed(&e))?;
        let spans = BatchSpanProcessor::builder(spans)
            .with_batch_config(trace::BatchConfigBuilder::default().with_scheduled_delay(EXPORT_DELAY).build())
            .build();
        let tracer = SdkTracerProvider::builder().with_span_processor(spans).with_resource(resource.clone()).build();
        let logs = LogExporter::builder().with_tonic().with_endpoint(otlp_endpoint).build().map_err(|e| failed(&e))?;
        let logs = BatchLogProcessor::builder(logs)
            .with_batch_config(logs::BatchConfigBuilder::default().with_scheduled_delay(EXPORT_DELAY).build())
            .build();
        let logger = SdkLoggerProvider::builder().with_log_processor(logs).with_resource(resource.clone()).build();
        let metrics =
            MetricExporter::builder().with_tonic().with_endpoint(otlp_endpoint).build().map_err(|e| failed(&e))?;
        let reader = PeriodicReader::builder(metrics).with_interval(METRICS_INTERVAL).build();
        let meter = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();

        global::set_text_map_propagator(TraceContextPropagator::new());
        global::set_meter_provider(meter.clone());
        let exported = || EnvFilter::new("seismo_demo=info");
        tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer().with_tracer(tracer.tracer(service.to_string())).with_filter(exported()),
            )
            .with(OpenTelemetryTracingBridge::new(&logger).with_filter(exported()))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .with_filter(EnvFilter::try_from_env("SEISMO_LOG").unwrap_or_else(|_| EnvFilter::new("warn"))),
            )
            .try_init()
            .map_err(|e| failed(&e))?;
        Ok(Telemetry { tracer, logger, meter })
    }

    /// Flushes and stops the three pipelines. Blocks: call it from
    /// `spawn_blocking` or outside the runtime.
    pub fn shutdown(self) {
        // Errors here mean the collector went away first; nothing is left to do.
        let _ = self.tracer.shutdown();
        let _ = self.logger.shutdown();
        let _ = self.meter.shutdown();
    }
}

/// Reads `traceparent` / `tracestate` from incoming request headers.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes `traceparent` / `tracestate` into outgoing request headers.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
    use opentelemetry::Context;

    use super::*;

    #[test]
    fn a_context_injected_into_headers_is_extracted_unchanged() {
        let propagator = TraceContextPropagator::new();
        let sent = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let mut headers = HeaderMap::new();
        propagator
            .inject_context(&Context::new().with_remote_span_context(sent.clone()), &mut HeaderInjector(&mut headers));
        assert_eq!(headers["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let received = propagator.extract(&HeaderExtractor(&headers));
        assert_eq!(received.span().span_context(), &sent);
    }
}
