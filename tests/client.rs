//! `seismo-client` against the real `seismo serve`: spans, logs and metrics
//! are ingested over OTLP/HTTP, then every client method is called and every
//! answer decoded into `seismo-api`'s wire types — a server/wire-type drift
//! fails here as a decode error. Error answers come back typed, with the
//! server's status and message; a server that never answers times out.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{one_span_export, Server};
use prost::Message as _;
use seismo_client::api::jaeger::{RefType, ValueType};
use seismo_client::api::prometheus::{ErrorType, QueryResult};
use seismo_client::api::v3::AnyValue;
use seismo_client::{Client, ClientError, LogQuery, SeriesQuery, StatsQuery, TraceSearch, V3TraceQuery};
use serde_json::json;

const TRACE_A: &str = "5b8efff798038103d269b633813fc60c";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";
const UNKNOWN_TRACE: &str = "0123456789abcdef0123456789abcdef";

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn post(server: &Server, path: &str, content_type: &str, body: Vec<u8>) {
    let response = reqwest::blocking::Client::new()
        .post(server.otlp_url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    let status = response.status();
    assert!(status.is_success(), "{path}: {status} {}", response.text().unwrap_or_default());
}

fn service(name: &str) -> serde_json::Value {
    json!({"attributes": [{"key": "service.name", "value": {"stringValue": name}}]})
}

/// Trace A, a minute ago: frontend `GET /checkout` (server, ERROR, 250 ms,
/// attributes of every OTLP value type, an event, a link to trace B) ->
/// frontend `call backend` (client) -> backend `SELECT` (server). Trace B:
/// `one_span_export` of service `lonely`. A log record of A's backend span;
/// a counter and a gauge of `shop`, two points 15 s apart.
fn ingest(server: &Server) -> u64 {
    let t0 = (now_ns() / 1_000_000_000 - 60) * 1_000_000_000;
    let ts = |offset_ms: u64| (t0 + offset_ms * 1_000_000).to_string();
    let traces = json!({"resourceSpans": [
        {"resource": service("frontend"), "scopeSpans": [{"scope": {"name": "shop", "version": "1.0"}, "spans": [
            {"traceId": TRACE_A, "spanId": "00000000000000a1", "name": "GET /checkout", "kind": 2,
             "startTimeUnixNano": ts(0), "endTimeUnixNano": ts(250),
             "attributes": [
                {"key": "http.status_code", "value": {"intValue": "503"}},
                {"key": "ratio", "value": {"doubleValue": 0.25}},
                {"key": "cached", "value": {"boolValue": false}},
                {"key": "payload", "value": {"bytesValue": "AP8Q"}},
                {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}},
                {"key": "user", "value": {"kvlistValue": {"values": [{"key": "id", "value": {"stringValue": "u1"}}]}}}
             ],
             "events": [{"timeUnixNano": ts(1), "name": "retry", "attributes": [{"key": "attempt", "value": {"intValue": "2"}}]}],
             "links": [{"traceId": TRACE_B, "spanId": "00000000000000c1"}],
             "status": {"code": 2, "message": "upstream down"}},
            {"traceId": TRACE_A, "spanId": "00000000000000a2", "parentSpanId": "00000000000000a1", "name": "call backend",
             "kind": 3, "startTimeUnixNano": ts(5), "endTimeUnixNano": ts(45)}
        ]}]},
        {"resource": service("backend"), "scopeSpans": [{"scope": {"name": "db"}, "spans": [
            {"traceId": TRACE_A, "spanId": "00000000000000b1", "parentSpanId": "00000000000000a2", "name": "SELECT",
             "kind": 2, "startTimeUnixNano": ts(10), "endTimeUnixNano": ts(40)}
        ]}]}
    ]});
    post(server, "/v1/traces", "application/json", traces.to_string().into_bytes());
    let lonely = one_span_export(&hex_bytes(TRACE_B), &hex_bytes("00000000000000c1"), "lonely", "GET /health");
    post(server, "/v1/traces", "application/x-protobuf", lonely.encode_to_vec());

    let logs = json!({"resourceLogs": [{"resource": service("backend"), "scopeLogs": [{"logRecords": [
        {"timeUnixNano": ts(20), "severityNumber": 17, "severityText": "ERROR",
         "body": {"stringValue": "card declined for order 9"},
         "attributes": [{"key": "order.id", "value": {"intValue": "9"}}],
         "traceId": TRACE_A, "spanId": "00000000000000b1"},
        {"timeUnixNano": ts(30), "severityNumber": 9, "severityText": "INFO", "body": {"stringValue": "charged order 8"}}
    ]}]}]});
    post(server, "/v1/logs", "application/json", logs.to_string().into_bytes());

    let point = |offset_ms: u64, value: serde_json::Value| {
        let mut p = json!({"attributes": [{"key": "route", "value": {"stringValue": "/a"}}],
                           "startTimeUnixNano": ts(0), "timeUnixNano": ts(offset_ms)});
        p.as_object_mut().unwrap().extend(value.as_object().unwrap().clone());
        p
    };
    let metrics = json!({"resourceMetrics": [{"resource": service("shop"), "scopeMetrics": [{"metrics": [
        {"name": "orders", "sum": {"aggregationTemporality": 2, "isMonotonic": true,
            "dataPoints": [point(15_000, json!({"asInt": "5"})), point(30_000, json!({"asInt": "12"}))]}},
        {"name": "temperature", "gauge": {"dataPoints": [point(30_000, json!({"asDouble": 21.5}))]}}
    ]}]}]});
    post(server, "/v1/metrics", "application/json", metrics.to_string().into_bytes());
    t0
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn at_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn attribute<'a>(attrs: &'a [seismo_client::api::v3::KeyValue], key: &str) -> &'a AnyValue {
    &attrs.iter().find(|kv| kv.key == key).unwrap_or_else(|| panic!("no attribute {key}")).value
}

#[test]
fn every_client_method_decodes_the_real_servers_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let t0 = ingest(&server);
    let window = V3TraceQuery::window(at_ns(t0) - Duration::from_secs(3600), at_ns(t0) + Duration::from_secs(3600));
    // Auth is coming: a token must not disturb a server that does not check it yet.
    let client = Client::new(&server.query_url("")).unwrap().with_token("not-checked-yet");

    runtime().block_on(async {
        let health = client.health().await.unwrap();
        assert!(health.is_ready(), "{health:?}");

        // ---- Jaeger legacy ----
        assert_eq!(client.services().await.unwrap(), ["backend", "frontend", "lonely"]);
        assert_eq!(client.service_operations("frontend").await.unwrap(), ["GET /checkout", "call backend"]);
        let ops = client.operations("frontend", Some("client")).await.unwrap();
        assert_eq!((ops.len(), ops[0].name.as_str(), ops[0].span_kind.as_str()), (1, "call backend", "client"));

        let mut search = TraceSearch::service("frontend");
        search.tags = BTreeMap::from([("error".to_string(), "true".to_string())]);
        search.lookback = Some(Duration::from_secs(3600));
        let found = client.search_traces(&search).await.unwrap();
        assert_eq!(found.iter().map(|t| t.trace_id.as_str()).collect::<Vec<_>>(), [TRACE_A]);

        let by_id = client.traces_by_id(&[TRACE_A, UNKNOWN_TRACE]).await.unwrap();
        assert_eq!(by_id.found.iter().map(|t| t.trace_id.as_str()).collect::<Vec<_>>(), [TRACE_A]);
        assert_eq!(by_id.missing, [UNKNOWN_TRACE]);

        let trace = client.trace(TRACE_A).await.unwrap();
        assert_eq!(trace.spans.len(), 3);
        let root = trace.spans.iter().find(|s| s.span_id == "00000000000000a1").unwrap();
        assert_eq!((root.operation_name.as_str(), root.duration), ("GET /checkout", 250_000));
        let tag = |key: &str| root.tags.iter().find(|t| t.key == key).unwrap_or_else(|| panic!("no tag {key}"));
        assert_eq!(
            (tag("http.status_code").value_type, &tag("http.status_code").value),
            (ValueType::Int64, &json!(503))
        );
        assert_eq!((tag("error").value_type, &tag("error").value), (ValueType::Bool, &json!(true)));
        assert_eq!(tag("ratio").value_type, ValueType::Float64);
        assert_eq!(root.logs[0].fields[0].value_text(), "retry");
        assert!(root.references.iter().any(|r| r.ref_type == RefType::FollowsFrom && r.trace_id == TRACE_B));
        let select = trace.spans.iter().find(|s| s.operation_name == "SELECT").unwrap();
        assert_eq!(trace.processes[&select.process_id].service_name, "backend");

        let links = client.dependencies(None, None).await.unwrap();
        assert_eq!(
            links.iter().map(|l| (l.parent.as_str(), l.child.as_str(), l.call_count)).collect::<Vec<_>>(),
            [("frontend", "backend", 1), ("frontend", "frontend", 1)]
        );
        let long_ago = client.dependencies(Some(at_ns(t0) - Duration::from_secs(7200)), Some(Duration::from_secs(60)));
        assert_eq!(long_ago.await.unwrap(), []);

        // ---- Jaeger api_v3 ----
        assert_eq!(client.services_v3().await.unwrap(), ["backend", "frontend", "lonely"]);
        let ops = client.operations_v3("backend", None).await.unwrap();
        assert_eq!((ops[0].name.as_str(), ops[0].span_kind.as_str()), ("SELECT", "server"));
        let otlp = client.trace_v3(TRACE_A).await.unwrap();
        assert_eq!(otlp.resource_spans.len(), 2, "one per service");
        let frontend = &otlp.resource_spans[0];
        assert_eq!(*attribute(&frontend.resource.attributes, "service.name"), AnyValue::String("frontend".into()));
        assert_eq!(
            (frontend.scope_spans[0].scope.name.as_str(), frontend.scope_spans[0].scope.version.as_str()),
            ("shop", "1.0")
        );
        let span = &frontend.scope_spans[0].spans[0];
        assert_eq!((span.name.as_str(), span.kind, span.status.code), ("GET /checkout", 2, 2));
        assert_eq!(span.end_time_unix_nano - span.start_time_unix_nano, 250_000_000);
        assert_eq!(*attribute(&span.attributes, "http.status_code"), AnyValue::Int(503));
        assert_eq!(*attribute(&span.attributes, "ratio"), AnyValue::Double(0.25));
        assert_eq!(*attribute(&span.attributes, "cached"), AnyValue::Bool(false));
        assert_eq!(*attribute(&span.attributes, "payload"), AnyValue::Bytes("AP8Q".into()));
        assert_eq!(
            *attribute(&span.attributes, "tags"),
            AnyValue::Array(vec![AnyValue::String("a".into()), AnyValue::Int(2)])
        );
        assert!(matches!(attribute(&span.attributes, "user"), AnyValue::KvList(kvs) if kvs[0].key == "id"));
        assert_eq!((span.events[0].name.as_str(), span.links[0].trace_id.as_str()), ("retry", TRACE_B));

        let all = client.find_traces_v3(&window).await.unwrap();
        let ids: std::collections::BTreeSet<&str> = all
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.trace_id.as_str())
            .collect();
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), [TRACE_B, TRACE_A]);
        let nobody = V3TraceQuery { service: Some("nobody".into()), ..window.clone() };
        assert!(
            client.find_traces_v3(&nobody).await.unwrap().resource_spans.is_empty(),
            "404 'No traces found' is empty"
        );
        let summaries =
            client.trace_summaries(&V3TraceQuery { service: Some("frontend".into()), ..window.clone() }).await.unwrap();
        let summary = summaries.iter().find(|s| s.trace_id == TRACE_A).unwrap();
        assert_eq!(
            (summary.root_service_name.as_str(), summary.span_count, summary.error_span_count),
            ("frontend", 3, 1)
        );
        assert_eq!(summary.max_end_time_unix_nano - summary.min_start_time_unix_nano, 250_000_000);
        assert_eq!(summary.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["backend", "frontend"]);

        // ---- stats and logs ----
        let stats = client.stats(&StatsQuery::default()).await.unwrap();
        let checkout = stats.data.iter().find(|s| s.operation.as_deref() == Some("GET /checkout")).unwrap();
        assert_eq!((checkout.request_count, checkout.error_count, checkout.error_rate), (1, 1, 1.0));
        assert_eq!(checkout.span_kind.as_deref(), Some("server"));
        assert!(checkout.p99_ms.is_some_and(|ms| (ms - 250.0).abs() < 5.0), "{checkout:?}");
        let totals: Vec<_> =
            stats.services.iter().map(|s| (s.service.as_str(), s.operation.is_none(), s.request_count)).collect();
        assert_eq!(totals, [("backend", true, 1), ("frontend", true, 1), ("lonely", true, 1)]);
        let clients = StatsQuery { span_kinds: vec!["client".into()], ..StatsQuery::default() };
        assert_eq!(client.stats(&clients).await.unwrap().data.len(), 1);

        let declined = client.logs(&LogQuery::text("declined")).await.unwrap();
        assert_eq!(declined.len(), 1, "{declined:?}");
        let record = &declined[0];
        assert_eq!((record.severity_text.as_str(), record.severity_number), ("ERROR", 17));
        assert_eq!((record.service_name.as_str(), record.trace_id.as_deref()), ("backend", Some(TRACE_A)));
        assert_eq!((&record.body, &record.attributes["order.id"]), (&json!("card declined for order 9"), &json!(9)));
        assert_eq!(record.time_ns(), Some(t0 as i64 + 20_000_000));
        let by_trace = LogQuery { trace_id: Some(TRACE_A.into()), ..LogQuery::default() };
        assert_eq!(client.logs(&by_trace).await.unwrap().len(), 1);
        let info = LogQuery { severities: vec!["INFO".into()], limit: Some(5), ..LogQuery::default() };
        assert_eq!(client.logs(&info).await.unwrap()[0].trace_id, None);

        // ---- Prometheus ----
        let at = at_ns(t0) + Duration::from_secs(31);
        match client.query("orders_total", Some(at)).await.unwrap() {
            QueryResult::Vector(samples) => {
                assert_eq!(samples.len(), 1);
                assert_eq!(
                    (samples[0].metric["__name__"].as_str(), samples[0].metric["job"].as_str()),
                    ("orders_total", "shop")
                );
                assert_eq!(samples[0].value.v, 12.0);
                assert_eq!(samples[0].value.t_ms, (t0 / 1_000_000) as i64 + 31_000);
            }
            other => panic!("not a vector: {other:?}"),
        }
        assert!(matches!(client.query("1 / 0", None).await.unwrap(), QueryResult::Scalar(p) if p.v == f64::INFINITY));
        assert!(matches!(client.query("\"hi\"", None).await.unwrap(), QueryResult::String(s) if s.v == "hi"));
        let start = at_ns(t0);
        match client
            .query_range("temperature + 0", start, start + Duration::from_secs(60), Duration::from_secs(30))
            .await
            .unwrap()
        {
            QueryResult::Matrix(series) => {
                assert_eq!(series.len(), 1);
                let values: Vec<f64> = series[0].values.iter().map(|p| p.v).collect();
                assert_eq!(values, [21.5, 21.5], "the point at +30 s, then its staleness window");
            }
            other => panic!("not a matrix: {other:?}"),
        }
        let series = client.series(&SeriesQuery::matching("orders_total")).await.unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0]["route"], "/a");
        let labels = client.labels(&SeriesQuery::default()).await.unwrap();
        assert!(labels.iter().any(|l| l == "__name__") && labels.iter().any(|l| l == "route"), "{labels:?}");
        let names = client.label_values("__name__", &SeriesQuery::default()).await.unwrap();
        assert_eq!(names, ["orders_total", "temperature"]);
        assert_eq!(
            client.label_values("route", &SeriesQuery { limit: Some(1), ..SeriesQuery::default() }).await.unwrap(),
            ["/a"]
        );
        assert_eq!(client.query_exemplars("orders_total", start, at).await.unwrap(), []);
        let build = client.buildinfo().await.unwrap();
        assert_eq!(build.application.as_deref(), Some("seismo"));
        assert!(build.seismo_version.is_some() && !build.version.is_empty());
        assert!(client.runtimeinfo().await.unwrap().reload_config_success);
        assert!(client.flags().await.unwrap().is_empty());
        assert!(client.metadata().await.unwrap().is_empty());
    });
}

#[test]
fn error_answers_are_typed_with_the_servers_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    ingest(&server);
    let client = Client::new(&server.query_url("/")).unwrap();

    runtime().block_on(async {
        // Unknown traces: 404 in each API's own envelope.
        let err = client.trace(UNKNOWN_TRACE).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert_eq!(err.server_message(), Some("trace not found"));
        let err = client.trace_v3(UNKNOWN_TRACE).await.unwrap_err();
        assert_eq!((err.status(), err.server_message()), (Some(404), Some("No traces found")));

        // Bad parameters: 400 with the server's words.
        let err = client.trace("not-hex").await.unwrap_err();
        assert!(err.is_bad_request(), "{err:?}");
        let err = client.operations("frontend", Some("sideways")).await.unwrap_err();
        assert!(err.is_bad_request() && err.server_message().unwrap().contains("'spanKind'"), "{err:?}");
        let err = client.operations_v3("frontend", Some("sideways")).await.unwrap_err();
        assert!(err.server_message().unwrap().starts_with("malformed parameter spanKind"), "{err:?}");
        let bad_window = V3TraceQuery::window(SystemTime::now(), SystemTime::now() - Duration::from_secs(60));
        let err = client.trace_summaries(&bad_window).await.unwrap_err();
        assert_eq!(err.server_message(), Some("query.startTimeMin must be before query.startTimeMax"));
        let err = client.logs(&LogQuery { severities: vec!["LOUD".into()], ..LogQuery::default() }).await.unwrap_err();
        assert!(err.is_bad_request() && err.server_message().unwrap().contains("unknown severity \"LOUD\""), "{err:?}");
        let err = client
            .stats(&StatsQuery { span_kinds: vec!["sideways".into()], ..StatsQuery::default() })
            .await
            .unwrap_err();
        assert!(err.server_message().unwrap().contains("unsupported span kind"), "{err:?}");
        let err = client.search_traces(&TraceSearch::service("")).await.unwrap_err();
        assert_eq!(err.server_message(), Some("parameter 'service' is required"));

        // Prometheus: the error class travels too.
        let err = client.query("sum(", None).await.unwrap_err();
        match &err {
            ClientError::Api { status: 400, error_type: Some(ErrorType::BadData), message, .. } => {
                assert!(message.starts_with("invalid parameter \"query\": "), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let err = client.series(&SeriesQuery::default()).await.unwrap_err();
        assert_eq!(err.server_message(), Some("no match[] parameter provided"));
        let now = SystemTime::now();
        let err =
            client.query_range("up", now, now - Duration::from_secs(1), Duration::from_secs(1)).await.unwrap_err();
        assert!(err.server_message().unwrap().contains("end timestamp must not be before start time"), "{err:?}");
        assert!(err.to_string().contains("answered 400"), "{err}");
    });
}

#[test]
fn a_server_that_never_answers_times_out_and_a_closed_port_is_an_http_error() {
    // Connections complete in the listen backlog, but nothing ever reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let closed_url = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    runtime().block_on(async {
        let client = Client::new(&silent_url).unwrap().with_timeout(Duration::from_millis(300));
        // The outer deadline only keeps a broken timeout from hanging the suite.
        let err = tokio::time::timeout(Duration::from_secs(60), client.services())
            .await
            .expect("the client's timeout fired")
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(err.to_string().contains("no answer within 300ms"), "{err}");

        let err = Client::new(&closed_url).unwrap().health().await.unwrap_err();
        assert!(matches!(err, ClientError::Http { .. }), "{err:?}");
    });
    assert!(matches!(Client::new("localhost:16686"), Err(ClientError::InvalidUrl { .. })));
    drop(silent);
}
