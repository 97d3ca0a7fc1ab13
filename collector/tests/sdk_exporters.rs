//! The OpenTelemetry Rust SDK's own OTLP exporters (HTTP protobuf, HTTP JSON, gRPC)
//! against a running collector and a real store: what production services will do.
//!
//! The exporters use reqwest's blocking client, which must not run on a runtime thread,
//! so the collector runs on its own runtime and the SDK on the test thread.

use std::net::SocketAddr;

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use seismo_collector::CollectorConfig;
use seismo_store::{Store, StoreConfig};

struct Running {
    runtime: tokio::runtime::Runtime,
    store: Store,
    http: SocketAddr,
    grpc: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = CollectorConfig {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..CollectorConfig::default()
    };
    let collector = runtime.block_on(config.bind(store.clone())).unwrap();
    let (http, grpc) = (collector.http_addr(), collector.grpc_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(
        collector.run(seismo_net::Limits::default(), seismo_net::Access::open(), async { stopped.await.unwrap_or(()) }),
    );
    Running { runtime, store, http, grpc, _stop: stop, _dir: dir }
}

fn resource(service: &'static str) -> Resource {
    Resource::builder().with_service_name(service).build()
}

fn export_one_span(exporter: SpanExporter, service: &'static str) {
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter).with_resource(resource(service)).build();
    let mut span = provider.tracer("sdk-test").start("GET /checkout");
    span.set_attribute(KeyValue::new("big.int", 9_007_199_254_740_993_i64));
    span.set_attribute(KeyValue::new(
        "list",
        opentelemetry::Value::Array(vec![opentelemetry::StringValue::from("a")].into()),
    ));
    span.end();
    provider.shutdown().unwrap();
}

#[test]
fn sdk_span_exporters_reach_the_store_over_every_transport() {
    let running = start();
    let http_url = format!("http://{}/v1/traces", running.http);
    for (protocol, service) in [(Protocol::HttpBinary, "sdk-http-proto"), (Protocol::HttpJson, "sdk-http-json")] {
        let exporter =
            SpanExporter::builder().with_http().with_protocol(protocol).with_endpoint(&http_url).build().unwrap();
        export_one_span(exporter, service);
    }
    {
        // tonic needs a runtime context; its connection tasks run on the runtime's workers.
        let _context = running.runtime.enter();
        let exporter =
            SpanExporter::builder().with_tonic().with_endpoint(format!("http://{}", running.grpc)).build().unwrap();
        export_one_span(exporter, "sdk-grpc");
    }
    let services = running.store.services().unwrap();
    for service in ["sdk-http-proto", "sdk-http-json", "sdk-grpc"] {
        assert!(services.iter().any(|s| s == service), "{service} missing from {services:?}");
    }
}

#[test]
fn sdk_log_and_metric_exporters_reach_the_store_over_http_json() {
    let running = start();
    let logs = LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("http://{}/v1/logs", running.http))
        .build()
        .unwrap();
    let provider = SdkLoggerProvider::builder().with_simple_exporter(logs).with_resource(resource("sdk-logs")).build();
    let logger = provider.logger("sdk-test");
    let mut record = logger.create_log_record();
    record.set_body("payment declined".into());
    record.set_severity_number(Severity::Warn);
    logger.emit(record);
    provider.shutdown().unwrap();
    assert_eq!(running.store.all_logs().unwrap().len(), 1);

    let metrics = MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("http://{}/v1/metrics", running.http))
        .build()
        .unwrap();
    let provider =
        SdkMeterProvider::builder().with_periodic_exporter(metrics).with_resource(resource("sdk-metrics")).build();
    let counter = provider.meter("sdk-test").u64_counter("orders").build();
    counter.add(3, &[KeyValue::new("region", "eu")]);
    let histogram = provider.meter("sdk-test").f64_histogram("latency").with_unit("ms").build();
    histogram.record(12.5, &[]);
    provider.shutdown().unwrap();
    assert!(running.store.all_metric_points().unwrap().len() >= 2);
}
