//! Fault spans in the victims' traces, through a real `seismo serve`: HTTP/1
//! aborts, plain TCP faults, and gRPC (h2c) aborts.

use super::*;

/// Half the requests aborted at toxicity 0.5; each aborted request's trace in
/// `seismo serve` holds the agent's fault span as a child of the caller's span.
#[test]
fn http_abort_at_half_toxicity_shows_in_the_victims_traces() {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
    use opentelemetry::Context;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let agent = Agent::start(&["--otlp-endpoint", &server.grpc_url(), "--experiment-id", "exp-42"]);
    let mut client = Client::new(&agent);
    let upstream = http_upstream();
    let listen = client.create("checkout_payments", upstream.addr);
    client.add(
        "checkout_payments",
        json!({"type": "http_abort", "name": "pay_503", "toxicity": 0.5, "attributes": {"status": 503, "path_prefix": "/pay"}}),
    );

    // The caller: a real SDK, its client span's context sent as traceparent.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = rt.enter();
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(server.grpc_url()).build().unwrap();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("checkout").build())
        .build();
    let tracer = provider.tracer("checkout");
    let http = reqwest::blocking::Client::new();
    let (mut aborted, mut passed) = (Vec::new(), Vec::new());
    const N: usize = 200;
    for i in 0..N {
        let span = tracer.span_builder("POST /pay").with_kind(SpanKind::Client).start(&tracer);
        let cx = Context::current_with_span(span);
        let mut carrier = std::collections::HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        let r = http
            .post(format!("http://{listen}/pay/{i}"))
            .header("traceparent", carrier["traceparent"].clone())
            .body("{}")
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let sc = cx.span().span_context().clone();
        let ids = (sc.trace_id().to_string(), sc.span_id().to_string(), carrier["traceparent"].clone());
        if status == 503 {
            assert_eq!(r.headers()["x-seismo-chaos-toxic"], "pay_503");
            cx.span().set_status(Status::error("503"));
            aborted.push(ids);
        } else {
            assert_eq!(status, 200);
            passed.push(ids);
        }
        cx.span().end();
    }
    provider.force_flush().unwrap();

    // About half: binomial(200, 0.5) has sd 7; 60..140 is beyond 5 sd.
    assert!((60..=140).contains(&aborted.len()), "{} of {N} aborted", aborted.len());
    // Passed requests reached the upstream; aborted ones did not.
    let hits = upstream.hits.lock().unwrap().clone();
    let seen: Vec<String> = hits.iter().filter_map(|h| h.traceparent.clone()).collect();
    assert_eq!(hits.len(), passed.len());
    assert!(passed.iter().all(|p| seen.contains(&p.2)));
    assert!(aborted.iter().all(|a| !seen.contains(&a.2)));

    // Every aborted request's trace holds the fault span, child of the caller's span.
    let fault_span = |trace: &Value, parent: &str| -> Option<Value> {
        let spans = trace["data"][0]["spans"].as_array()?;
        spans
            .iter()
            .find(|s| {
                s["operationName"] == "chaos http_abort"
                    && s["references"].as_array().is_some_and(|r| r.iter().any(|r| r["spanID"] == parent))
            })
            .cloned()
    };
    for (trace_id, span_id, _) in &aborted {
        let span = eventually(Duration::from_secs(20), || {
            let (status, trace) = server.get_json(&format!("/api/traces/{trace_id}"));
            if status != 200 {
                return None;
            }
            let caller = trace["data"][0]["spans"].as_array()?.iter().any(|s| s["spanID"] == span_id.as_str());
            fault_span(&trace, span_id).filter(|_| caller)
        });
        let tags: std::collections::HashMap<String, Value> = span["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["key"].as_str().unwrap().to_string(), t["value"].clone()))
            .collect();
        assert_eq!(tags["chaos.proxy"], "checkout_payments");
        assert_eq!(tags["chaos.toxic.name"], "pay_503");
        assert_eq!(tags["chaos.toxic.type"], "http_abort");
        assert_eq!(tags["chaos.toxic.status"], 503);
        assert_eq!(tags["chaos.experiment.id"], "exp-42");
        assert_eq!(tags["http.response.status_code"], 503);
        assert_eq!(tags["error"], true);
        assert_eq!(tags["otel.status_code"], "ERROR");
    }
    // Passed requests' traces carry no fault span.
    for (trace_id, span_id, _) in passed.iter().take(10) {
        let (status, trace) = server.get_json(&format!("/api/traces/{trace_id}"));
        assert_eq!(status, 200, "the caller's span is stored");
        assert!(fault_span(&trace, span_id).is_none());
    }
    // http_delay: its span covers the delay, in the caller's trace.
    client.remove("checkout_payments", "pay_503");
    client
        .add("checkout_payments", json!({"type": "http_delay", "attributes": {"delay": 250, "path_prefix": "/slow"}}));
    let span = tracer.span_builder("GET /slow").with_kind(SpanKind::Client).start(&tracer);
    let cx = Context::current_with_span(span);
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let t = std::time::Instant::now();
    let r =
        http.get(format!("http://{listen}/slow")).header("traceparent", carrier["traceparent"].clone()).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(t.elapsed() >= Duration::from_millis(250));
    let (trace_id, span_id) =
        (cx.span().span_context().trace_id().to_string(), cx.span().span_context().span_id().to_string());
    cx.span().end();
    let delayed = eventually(Duration::from_secs(20), || {
        let (_, trace) = server.get_json(&format!("/api/traces/{trace_id}"));
        trace["data"][0]["spans"].as_array()?.iter().find(|s| s["operationName"] == "chaos http_delay").cloned()
    });
    assert_eq!(delayed["references"][0]["spanID"], span_id.as_str());
    assert!(delayed["duration"].as_u64().unwrap() >= 250_000, "{delayed}");

    // And the service list shows the agent.
    let (_, services) = server.get_json("/api/services");
    assert!(services["data"].as_array().unwrap().iter().any(|s| s == "seismo-chaos"), "{services}");
    assert_eq!(agent.faults("checkout_payments", "pay_503", "http_abort"), aborted.len() as u64);
}

/// Plain TCP: one span per affected connection, in a trace of its own.
#[test]
fn tcp_faults_export_one_span_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let agent = Agent::start(&["--otlp-endpoint", &server.grpc_url()]);
    let mut client = Client::new(&agent);
    let listen = client.create("cache", echo_server());
    client.add("cache", json!({"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}}));
    for _ in 0..3 {
        let mut s = connect(listen);
        s.write_all(b"get k").unwrap();
        let _ = s.read(&mut [0u8; 8]);
    }
    let traces = eventually(Duration::from_secs(20), || {
        let (_, v) = server.get_json("/api/traces?service=seismo-chaos&operation=chaos%20reset_peer&lookback=1h");
        let traces = v["data"].as_array()?.clone();
        (traces.len() == 3).then_some(traces)
    });
    for t in traces {
        let span = &t["spans"][0];
        let tags = span["tags"].as_array().unwrap();
        let tag = |k: &str| tags.iter().find(|t| t["key"] == k).map(|t| t["value"].clone());
        assert_eq!(tag("chaos.proxy"), Some(json!("cache")));
        assert_eq!(tag("client.address"), Some(json!("127.0.0.1")));
        assert_eq!(tag("error"), Some(json!(true)));
    }
}

/// gRPC through the agent: passes untouched, then an `http_abort` with
/// `grpc_status` fails the call with that status before it reaches the
/// server, and the fault span lands in the caller's trace.
#[test]
fn grpc_abort_answers_a_grpc_status_and_is_traced() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let agent = Agent::start(&["--otlp-endpoint", &server.grpc_url()]);
    let mut client = Client::new(&agent);
    let listen = client.create("otlp", server.grpc.parse().unwrap());

    let export = |trace: [u8; 16]| common::one_span_export(&trace, &[1, 2, 3, 4, 5, 6, 7, 8], "through-proxy", "work");
    let (passed, aborted, after) = ([0x11u8; 16], [0x22u8; 16], [0x33u8; 16]);
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (first, second, third) = rt.block_on(async {
        let mut grpc = TraceServiceClient::connect(format!("http://{listen}")).await.unwrap();
        let first = grpc.export(export(passed)).await.map(|_| ());
        client.add(
            "otlp",
            json!({"type": "http_abort", "name": "otlp_down", "attributes": {
                "grpc_status": 14, "path_prefix": "/opentelemetry.proto.collector.trace.v1.TraceService/"}}),
        );
        let mut req = tonic::Request::new(export(aborted));
        req.metadata_mut().insert("traceparent", format!("00-{caller_trace}-{caller_span}-01").parse().unwrap());
        let second = grpc.export(req).await.map(|_| ());
        client.remove("otlp", "otlp_down");
        // Same client, same HTTP/2 connection.
        let third = grpc.export(export(after)).await.map(|_| ());
        (first, second, third)
    });
    first.expect("export through the proxy");
    let status = second.expect_err("aborted export");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("seismo chaos"), "{status:?}");
    third.expect("export after the toxic was removed");

    let hex = |b: [u8; 16]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for stored in [passed, after] {
        eventually(Duration::from_secs(10), || {
            (server.get_json(&format!("/api/traces/{}", hex(stored))).0 == 200).then_some(())
        });
    }
    assert_eq!(server.get_json(&format!("/api/traces/{}", hex(aborted))).0, 404, "the aborted export never arrived");

    let span = eventually(Duration::from_secs(20), || {
        let (status, trace) = server.get_json(&format!("/api/traces/{caller_trace}"));
        (status == 200).then(|| trace["data"][0]["spans"][0].clone())
    });
    assert_eq!(span["operationName"], "chaos http_abort");
    assert_eq!(span["references"][0]["spanID"], caller_span);
    let tags = span["tags"].as_array().unwrap();
    let tag = |k: &str| tags.iter().find(|t| t["key"] == k).map(|t| t["value"].clone());
    assert_eq!(tag("rpc.grpc.status_code"), Some(json!(14)));
    assert_eq!(tag("chaos.toxic.grpc_status"), Some(json!(14)));
    assert_eq!(tag("error"), Some(json!(true)));
}
