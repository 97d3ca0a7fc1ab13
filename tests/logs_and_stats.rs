//! Logs, request statistics and the service graph through the real binary:
//! a real OpenTelemetry SDK exports spans and logs to `seismo serve`; the
//! logs are found by full-text query and by trace id with every field and the
//! trace link intact, `/api/v1/stats` counts the requests, `/api/dependencies`
//! draws the edge — before and after a restart (which moves everything from
//! the memtable into segments).

mod common;

use std::time::{Duration, SystemTime};

use common::Server;
use opentelemetry::logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::{json, Value};

fn resource(service: &str) -> Resource {
    Resource::builder().with_service_name(service.to_string()).build()
}

/// Checkout calls payments 10 times (server span -> client span -> payments
/// server span); requests 3, 6 and 9 fail, and payments logs each attempt.
/// Returns the trace id of the failed request 9.
fn emit(server: &Server) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = rt.enter();
    let tracer_for = |service: &str| {
        let exporter =
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(server.grpc_url()).build().unwrap();
        SdkTracerProvider::builder().with_simple_exporter(exporter).with_resource(resource(service)).build()
    };
    let (checkout, payments) = (tracer_for("checkout"), tracer_for("payments"));
    let log_exporter =
        opentelemetry_otlp::LogExporter::builder().with_tonic().with_endpoint(server.grpc_url()).build().unwrap();
    let logs =
        SdkLoggerProvider::builder().with_simple_exporter(log_exporter).with_resource(resource("payments")).build();
    let logger = logs.logger("payments");
    let (t_checkout, t_payments) = (checkout.tracer("checkout"), payments.tracer("payments"));
    let t0 = SystemTime::now() - Duration::from_secs(30);
    let mut last_failed = String::new();
    for i in 1..=10u64 {
        let start = t0 + Duration::from_secs(i);
        let failed = i % 3 == 0;
        let root = t_checkout
            .span_builder("POST /checkout")
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .start(&t_checkout);
        let cx = Context::current_with_span(root);
        let call = t_checkout
            .span_builder("charge")
            .with_kind(SpanKind::Client)
            .with_start_time(start + Duration::from_millis(1))
            .start_with_context(&t_checkout, &cx);
        let call_cx = cx.with_span(call);
        let mut handler = t_payments
            .span_builder("Charge")
            .with_kind(SpanKind::Server)
            .with_start_time(start + Duration::from_millis(2))
            .start_with_context(&t_payments, &call_cx);
        let sc = handler.span_context().clone();
        let mut record = logger.create_log_record();
        record.set_timestamp(start + Duration::from_millis(3));
        if failed {
            record.set_severity_number(Severity::Error);
            record.set_severity_text("ERROR");
            record.set_body(LogValue::String(format!("card declined for order {i}: insufficient funds").into()));
        } else {
            record.set_severity_number(Severity::Info);
            record.set_severity_text("INFO");
            record.set_body(LogValue::String(format!("charged order {i}").into()));
        }
        record.add_attribute("order.id", i as i64);
        record.add_attribute("payment.provider", "acme");
        record.set_trace_context(sc.trace_id(), sc.span_id(), Some(sc.trace_flags()));
        logger.emit(record);
        if failed {
            handler.set_status(Status::error("declined"));
            last_failed = sc.trace_id().to_string();
        }
        // Latencies 10*i ms for the payments server span.
        handler.end_with_timestamp(start + Duration::from_millis(2 + 10 * i));
        call_cx.span().end_with_timestamp(start + Duration::from_millis(3 + 10 * i));
        cx.span().end_with_timestamp(start + Duration::from_millis(4 + 10 * i));
    }
    for p in [checkout, payments] {
        p.shutdown().unwrap();
    }
    logs.shutdown().unwrap();
    last_failed
}

fn check(server: &Server, failed_trace: &str) {
    // Full text: a phrase across words, newest first.
    let (status, body) = server.get_json("/api/v1/logs?q=%22card+declined%22&lookback=1h");
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{body}");
    let newest = &data[0];
    assert_eq!(newest["body"], "card declined for order 9: insufficient funds");
    assert_eq!(newest["severityText"], "ERROR");
    assert_eq!(newest["severityNumber"], 17);
    assert_eq!(newest["serviceName"], "payments");
    assert_eq!(newest["attributes"], json!({"order.id": 9, "payment.provider": "acme"}));
    assert_eq!(newest["traceId"], failed_trace);
    assert_eq!(newest["spanId"].as_str().unwrap().len(), 16);
    assert!(newest["timeUnixNano"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    assert_eq!(data[1]["attributes"]["order.id"], 6);
    // The trace link opens the trace the log belongs to, holding the log's span.
    let (status, trace) = server.get_json(&format!("/api/traces/{failed_trace}"));
    assert_eq!(status, 200);
    let spans = trace["data"][0]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3);
    assert!(spans.iter().any(|s| s["spanID"] == newest["spanId"]));
    // By trace id alone; limit; severity and attribute filters; boolean syntax.
    let (_, body) = server.get_json(&format!("/api/v1/logs?trace_id={failed_trace}&lookback=1h"));
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (_, body) = server.get_json("/api/v1/logs?q=order&limit=4&lookback=1h");
    let orders: Vec<&Value> = body["data"].as_array().unwrap().iter().map(|l| &l["attributes"]["order.id"]).collect();
    assert_eq!(orders, [&json!(10), &json!(9), &json!(8), &json!(7)]);
    let (_, body) = server.get_json("/api/v1/logs?severity=INFO&service=payments&lookback=1h");
    assert_eq!(body["data"].as_array().unwrap().len(), 7);
    let (_, body) = server.get_json("/api/v1/logs?q=order.id:6+OR+order.id:7&lookback=1h");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (_, body) = server.get_json("/api/v1/logs?q=charged+AND+NOT+order.id:10&lookback=1h");
    assert_eq!(body["data"].as_array().unwrap().len(), 6);
    // A malformed query names the problem.
    let (status, body) = server.get_json("/api/v1/logs?q=%22unclosed+phrase");
    assert_eq!(status, 400);
    assert!(body["errors"][0]["msg"].as_str().unwrap().contains("cannot parse q"), "{body}");
    let (status, _) = server.get_json("/api/v1/logs?severity=LOUD");
    assert_eq!(status, 400);

    // Stats: server spans by default.
    let (status, body) = server.get_json("/api/v1/stats?lookback=1h");
    assert_eq!(status, 200, "{body}");
    let row = |service: &str, op: &str| {
        body["data"].as_array().unwrap().iter().find(|r| r["service"] == service && r["operation"] == op).cloned()
    };
    let charge = row("payments", "Charge").expect("payments stats");
    assert_eq!(charge["spanKind"], "server");
    assert_eq!(charge["requestCount"], 10);
    assert_eq!(charge["errorCount"], 3);
    assert_eq!(charge["errorRate"], 0.3);
    // Latencies 10, 20, ..., 100 ms: p50 is the 5th (50 ms), p95 and p99 the 10th.
    let near = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() <= want * 0.011;
    assert!(near(&charge["p50Ms"], 50.0), "{charge}");
    assert!(near(&charge["p95Ms"], 100.0), "{charge}");
    assert!(near(&charge["p99Ms"], 100.0), "{charge}");
    assert_eq!(row("checkout", "POST /checkout").unwrap()["errorCount"], 0);
    assert!(row("checkout", "charge").is_none(), "client spans are not requests by default");
    let (_, body) = server.get_json("/api/v1/stats?lookback=1h&spanKind=client&service=checkout");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["requestCount"], 10);
    let (status, _) = server.get_json("/api/v1/stats?spanKind=sideways");
    assert_eq!(status, 400);

    // The service graph: checkout -> checkout (server -> client), checkout -> payments.
    let (_, body) = server.get_json("/api/dependencies?lookback=3600000");
    assert_eq!(
        body["data"],
        json!([
            {"parent": "checkout", "child": "checkout", "callCount": 10},
            {"parent": "checkout", "child": "payments", "callCount": 10}
        ])
    );
}

#[test]
fn sdk_logs_are_searchable_and_spans_feed_stats_and_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let failed = emit(&server);
    check(&server, &failed);
    server.stop();
    let server = Server::start(dir.path(), &[]);
    check(&server, &failed);
}

/// Log records and metric points that arrive over many flushes are merged
/// into one segment per signal while the server runs (spans are not the
/// only ones: a server that runs for weeks would otherwise keep a segment
/// per flush of each); searches and PromQL answer the same, before and after
/// a restart.
#[test]
fn log_and_metric_segments_of_many_flushes_merge_and_answer_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--flush-rows", "1", "--compact-rows", "1000"];
    let server = Server::start(dir.path(), &flags);
    let now_ns = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() - 60_000_000_000;
    let service = json!({"attributes": [{"key": "service.name", "value": {"stringValue": "payments"}}]});
    let client = reqwest::blocking::Client::new();
    for round in 0..6u128 {
        let flushes = server.metric("seismo_flushes_total");
        let t = (now_ns + round * 1_000_000_000).to_string();
        let logs = json!({"resourceLogs": [{"resource": service, "scopeLogs": [{"logRecords": [
            {"timeUnixNano": t, "severityNumber": 9, "body": {"stringValue": format!("batch {round} settled")}},
        ]}]}]});
        let points = json!({"resourceMetrics": [{"resource": service, "scopeMetrics": [{"metrics": [{
            "name": "queue.depth", "gauge": {"dataPoints": [{"timeUnixNano": t, "asInt": (round * 10).to_string()}]}
        }]}]}]});
        for (path, body) in [("/v1/logs", logs), ("/v1/metrics", points)] {
            let r = client.post(server.otlp_url(path)).json(&body).send().unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.text().unwrap());
        }
        // Each round in segments of its own.
        common::eventually(Duration::from_secs(30), || (server.metric("seismo_flushes_total") > flushes).then_some(()));
    }
    let merged = |signal: &str| {
        let catalog: Value = serde_json::from_slice(&std::fs::read(dir.path().join("catalog.json")).ok()?).ok()?;
        let segments = catalog["segments"].as_array()?;
        let of_signal: Vec<&Value> = segments.iter().filter(|m| m["signal"] == signal).collect();
        let merged = of_signal.iter().any(|m| m["compacted_from"].as_array().is_some_and(|from| from.len() >= 4));
        (merged && of_signal.len() <= 2).then_some(())
    };
    common::eventually(Duration::from_secs(60), || merged("logs").and(merged("metrics")));
    let check = |server: &Server| {
        let (status, body) = server.get_json("/api/v1/logs?q=settled&lookback=1h");
        assert_eq!(status, 200, "{body}");
        let bodies: Vec<&str> = body["data"].as_array().unwrap().iter().map(|l| l["body"].as_str().unwrap()).collect();
        let want: Vec<String> = (0..6).rev().map(|r| format!("batch {r} settled")).collect();
        assert_eq!(bodies, want, "every record once, newest first");
        let (_, body) = server.get_json("/api/v1/logs?q=%22batch+3%22&lookback=1h");
        assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
        let (status, body) = server.get_json("/api/v1/query?query=count_over_time(queue_depth[1h])");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["result"][0]["value"][1], "6", "{body}");
        let (_, body) = server.get_json("/api/v1/query?query=max_over_time(queue_depth[1h])");
        assert_eq!(body["data"]["result"][0]["value"][1], "50", "{body}");
    };
    check(&server);
    server.stop();
    let server = Server::start(dir.path(), &flags);
    check(&server);
}
