//! A real OpenTelemetry SDK (the Rust `opentelemetry-otlp` exporter, as a new
//! user would configure it) exports to the real `seismo serve` over gRPC,
//! HTTP/protobuf and HTTP/JSON; every span must come back through the Jaeger
//! API with its structure, timings, types and status intact. Logs and metrics
//! exported by the SDK must land in the store.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Server;
use opentelemetry::logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, Value as OtelValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;

fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_string())
        .with_attribute(KeyValue::new("deployment.environment", "e2e"))
        .build()
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

struct Emitted {
    trace_id: String,
    root_span_id: String,
    t0: SystemTime,
}

/// One trace: a server root span with typed attributes and a failing client
/// child with an event, at exact timestamps.
fn emit_trace(provider: &SdkTracerProvider, transport: &str) -> Emitted {
    let scope = InstrumentationScope::builder("e2e-tests").with_version("1.2.3").build();
    let tracer = provider.tracer_with_scope(scope);
    let t0 = SystemTime::now() - Duration::from_secs(5);
    let root = tracer
        .span_builder("GET /checkout")
        .with_kind(SpanKind::Server)
        .with_start_time(t0)
        .with_attributes(vec![
            KeyValue::new("http.method", "GET"),
            KeyValue::new("http.status_code", 200i64),
            KeyValue::new("ratio", 0.25f64),
            KeyValue::new("cached", true),
            KeyValue::new("transport", transport.to_string()),
            KeyValue::new("big", 9_007_199_254_740_993i64),
            KeyValue::new("labels", OtelValue::Array(Array::String(vec!["a".into(), "b".into()]))),
        ])
        .start(&tracer);
    let ctx = Context::current_with_span(root);
    let root_ref = ctx.span();
    let trace_id = root_ref.span_context().trace_id().to_string();
    let root_span_id = root_ref.span_context().span_id().to_string();
    let mut child = tracer
        .span_builder("charge card")
        .with_kind(SpanKind::Client)
        .with_start_time(t0 + Duration::from_millis(2))
        .start_with_context(&tracer, &ctx);
    child.add_event_with_timestamp("retrying", t0 + Duration::from_millis(3), vec![KeyValue::new("attempt", 2i64)]);
    child.set_status(Status::error("card declined"));
    child.end_with_timestamp(t0 + Duration::from_millis(12));
    root_ref.end_with_timestamp(t0 + Duration::from_millis(20));
    Emitted { trace_id, root_span_id, t0 }
}

fn tag<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key)
        .unwrap_or_else(|| panic!("span {} has no tag {key}: {}", span["operationName"], span["tags"]))
}

fn assert_tag(span: &Value, key: &str, ty: &str, value: Value) {
    let t = tag(span, key);
    assert_eq!(t["type"], ty, "type of {key}");
    assert_eq!(t["value"], value, "value of {key}");
}

fn check_trace(server: &Server, service: &str, e: &Emitted) {
    let (status, body) = common::eventually(Duration::from_secs(5), || {
        let (s, b) = server.get_json(&format!("/api/traces/{}", e.trace_id));
        (s == 200).then_some((s, b))
    });
    assert_eq!(status, 200);
    let trace = &body["data"][0];
    assert_eq!(trace["traceID"], e.trace_id);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{body}");
    let root = spans.iter().find(|s| s["operationName"] == "GET /checkout").unwrap();
    let child = spans.iter().find(|s| s["operationName"] == "charge card").unwrap();

    // Structure.
    assert_eq!(root["spanID"], e.root_span_id);
    assert!(root["references"].as_array().unwrap().is_empty());
    assert_eq!(child["references"][0]["refType"], "CHILD_OF");
    assert_eq!(child["references"][0]["spanID"], e.root_span_id);
    assert_eq!(child["references"][0]["traceID"], e.trace_id);

    // Timings (µs).
    let t0 = micros(e.t0);
    assert_eq!(root["startTime"], t0);
    assert_eq!(root["duration"], 20_000);
    assert_eq!(child["startTime"], t0 + 2_000);
    assert_eq!(child["duration"], 10_000);

    // Types.
    assert_tag(root, "http.method", "string", "GET".into());
    assert_tag(root, "http.status_code", "int64", 200.into());
    assert_tag(root, "ratio", "float64", 0.25.into());
    assert_tag(root, "cached", "bool", true.into());
    let big = tag(root, "big");
    assert_eq!(big["type"], "int64");
    assert_eq!(big["value"].to_string().trim_matches('"'), "9007199254740993", "int64 must stay exact");
    assert_tag(root, "span.kind", "string", "server".into());
    assert_tag(root, "otel.scope.name", "string", "e2e-tests".into());
    assert_tag(root, "otel.scope.version", "string", "1.2.3".into());

    // Status and kind.
    assert_tag(child, "error", "bool", true.into());
    assert_tag(child, "otel.status_code", "string", "ERROR".into());
    assert_tag(child, "otel.status_description", "string", "card declined".into());
    assert_tag(child, "span.kind", "string", "client".into());
    assert!(root["tags"].as_array().unwrap().iter().all(|t| t["key"] != "error"));

    // Events as logs.
    let log = &child["logs"][0];
    assert_eq!(log["timestamp"], t0 + 3_000);
    let fields = log["fields"].as_array().unwrap();
    assert!(fields.iter().any(|f| f["key"] == "event" && f["value"] == "retrying"), "{log}");
    assert!(fields.iter().any(|f| f["key"] == "attempt" && f["type"] == "int64" && f["value"] == 2), "{log}");

    // Resource as process.
    let process = &trace["processes"][root["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], service);
    let ptags = process["tags"].as_array().unwrap();
    assert!(ptags.iter().any(|t| t["key"] == "deployment.environment" && t["value"] == "e2e"), "{process}");
    assert!(ptags.iter().any(|t| t["key"] == "telemetry.sdk.language" && t["value"] == "rust"), "{process}");

    // Found by search, by service and by tag.
    let transport = tag(root, "transport")["value"].as_str().unwrap().to_string();
    let tags = format!("%7B%22transport%22%3A%22{transport}%22%7D");
    let (s, found) = server.get_json(&format!("/api/traces?service={service}&tags={tags}&lookback=1h"));
    assert_eq!(s, 200, "{found}");
    let ids: Vec<&str> = found["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![e.trace_id.as_str()]);
}

#[test]
fn sdk_exports_over_grpc_http_protobuf_and_http_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    // gRPC: tonic needs a runtime; the simple processor exports on this thread.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let grpc = {
        let _guard = rt.enter();
        let exporter =
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(server.grpc_url()).build().unwrap();
        let provider =
            SdkTracerProvider::builder().with_simple_exporter(exporter).with_resource(resource("e2e-grpc")).build();
        let e = emit_trace(&provider, "grpc");
        provider.shutdown().unwrap();
        e
    };

    let http = |protocol: Protocol, service: &str, transport: &str| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(server.otlp_url("/v1/traces"))
            .build()
            .unwrap();
        let provider =
            SdkTracerProvider::builder().with_simple_exporter(exporter).with_resource(resource(service)).build();
        let e = emit_trace(&provider, transport);
        provider.shutdown().unwrap();
        e
    };
    let proto = http(Protocol::HttpBinary, "e2e-http-proto", "http-proto");
    let json = http(Protocol::HttpJson, "e2e-http-json", "http-json");

    check_trace(&server, "e2e-grpc", &grpc);
    check_trace(&server, "e2e-http-proto", &proto);
    check_trace(&server, "e2e-http-json", &json);
    // The SDK's protobuf requests (a span each) are read straight from their bytes, an
    // array attribute, an event and a status included; only OTLP/JSON is decoded first.
    assert_eq!(server.metric("seismo_ingest_trace_requests_total{read=\"bytes\"}"), 4);
    assert_eq!(server.metric("seismo_ingest_trace_requests_total{read=\"decoded\"}"), 2);

    let (_, services) = server.get_json("/api/services");
    for s in ["e2e-grpc", "e2e-http-proto", "e2e-http-json"] {
        assert!(services["data"].as_array().unwrap().iter().any(|x| x == s), "{services}");
    }
    let (_, ops) = server.get_json("/api/operations?service=e2e-grpc&spanKind=client");
    assert_eq!(ops["data"], serde_json::json!([{"name": "charge card", "spanKind": "client"}]));

    // Everything survives a restart (graceful stop flushes to segments).
    server.stop();
    let server = Server::start(dir.path(), &[]);
    check_trace(&server, "e2e-grpc", &grpc);
    check_trace(&server, "e2e-http-json", &json);
}

#[test]
fn sdk_logs_over_grpc_and_metrics_over_http_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    {
        let _guard = rt.enter();
        let exporter =
            opentelemetry_otlp::LogExporter::builder().with_tonic().with_endpoint(server.grpc_url()).build().unwrap();
        let provider =
            SdkLoggerProvider::builder().with_simple_exporter(exporter).with_resource(resource("e2e-logs")).build();
        let logger = provider.logger("e2e-logger");
        let mut record = logger.create_log_record();
        record.set_severity_number(Severity::Error);
        record.set_severity_text("ERROR");
        record.set_body(LogValue::String("payment declined for order 42".into()));
        record.add_attribute("order.id", 42i64);
        logger.emit(record);
        provider.shutdown().unwrap();
    }

    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(server.otlp_url("/v1/metrics"))
        .build()
        .unwrap();
    let provider =
        SdkMeterProvider::builder().with_periodic_exporter(exporter).with_resource(resource("e2e-metrics")).build();
    let meter = provider.meter("e2e-meter");
    let counter = meter.u64_counter("orders.placed").build();
    counter.add(3, &[KeyValue::new("route", "/checkout")]);
    counter.add(2, &[KeyValue::new("route", "/checkout")]);
    let histogram = meter.f64_histogram("http.server.duration").with_unit("ms").build();
    histogram.record(12.0, &[]);
    histogram.record(250.0, &[]);
    let updown = meter.i64_up_down_counter("queue.depth").build();
    updown.add(7, &[]);
    updown.add(-2, &[]);
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();

    server.stop();
    let store = seismo_store::Store::open(seismo_store::StoreConfig::new(dir.path())).unwrap();
    let logs = store.all_logs().unwrap();
    let log = logs.iter().find(|l| l.service_name == "e2e-logs").expect("log stored");
    assert_eq!(log.severity_number, 17);
    assert_eq!(log.severity_text, "ERROR");
    assert_eq!(log.body, seismo_store::AttrValue::Str("payment declined for order 42".into()));
    assert_eq!(seismo_store::attr(&log.attributes, "order.id"), Some(&seismo_store::AttrValue::Int(42)));

    let points = store.all_metric_points().unwrap();
    let find = |name: &str| {
        points
            .iter()
            .rfind(|p| p.metric_name == name && p.service_name == "e2e-metrics")
            .unwrap_or_else(|| panic!("no {name} in {points:?}"))
    };
    let orders = find("orders.placed");
    assert_eq!(orders.kind, seismo_store::MetricKind::Sum);
    assert!(orders.is_monotonic);
    assert_eq!(orders.value_int, Some(5));
    let duration = find("http.server.duration");
    assert_eq!(duration.kind, seismo_store::MetricKind::Histogram);
    assert_eq!(duration.unit, "ms");
    assert_eq!(duration.count, Some(2));
    assert_eq!(duration.sum, Some(262.0));
    let depth = find("queue.depth");
    assert!(!depth.is_monotonic);
    assert_eq!(depth.value_int, Some(5));
    store.close().unwrap();
}
