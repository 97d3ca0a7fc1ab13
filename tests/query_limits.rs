//! Issue 14, items 1 and 2, against the real binary: no single query can
//! crash or exhaust the server. Each input below once aborted the process
//! (stack overflow), grew it by gigabytes, or answered 500; now each answers
//! its 4xx/503 in the API's own error shape, and afterwards the server still
//! answers `/healthz` and still acknowledges an OTLP export.

mod common;

use common::{url_encode as enc, Server};
use prost::Message;
use serde_json::Value;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap()
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    let r = client().get(server.query_url(path)).send().expect("the server must answer, not drop the connection");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn post_form(server: &Server, path: &str, form: String) -> (u16, Value) {
    let r = client()
        .post(server.query_url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .expect("the server must answer, not drop the connection");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Asserts a Prometheus error envelope with `status`, `kind` and a message containing `text`.
fn assert_prometheus_error(what: &str, (status, body): (u16, Value), want_status: u16, kind: &str, text: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert_eq!(body["status"], "error", "{what}: {body}");
    assert_eq!(body["errorType"], kind, "{what}: {body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(text), "{what}: {msg:?} should contain {text:?}");
}

/// The server is alive and still ingests: `/healthz` answers 200 and an
/// OTLP/HTTP export is acknowledged and then readable.
fn assert_still_serving(server: &Server, n: u8) {
    let (status, _) = get(server, "/healthz");
    assert_eq!(status, 200, "healthz after the hostile queries");
    let trace_id = [0x14, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n];
    let export = common::one_span_export(&trace_id, &[1, 2, 3, 4, 5, 6, 7, n], "survivor", "after");
    let r = client()
        .post(server.otlp_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(export.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "ingest after the hostile queries");
    let (status, body) = get(server, &format!("/api/traces/{}", hex::encode(trace_id)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["spans"][0]["operationName"], "after");
}

/// Regression: each of these overflowed the stack and aborted the process
/// (SIGABRT), ingest included.
#[test]
fn deeply_nested_queries_answer_400_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let nested = |open: &str, n: usize| format!("{}up{}", open.repeat(n), ")".repeat(n));
    let too_deep = "query is nested too deeply: more than 256 levels";
    for (what, q) in [
        ("abs( 2,000 deep", nested("abs(", 2000)),
        ("sum( 3,000 deep", nested("sum(", 3000)),
        ("1+1+... of 5,000 terms", format!("1{}", "+1".repeat(4999))),
        ("a subquery chain", format!("up{}", "[1m:]".repeat(400))),
    ] {
        let got = get(&server, &format!("/api/v1/query?query={}&time=100", enc(&q)));
        assert_prometheus_error(what, got, 400, "bad_data", too_deep);
        let got = get(&server, &format!("/api/v1/query_range?query={}&start=0&end=100&step=10", enc(&q)));
        assert_prometheus_error(what, got, 400, "bad_data", too_deep);
    }
    let got = post_form(&server, "/api/v1/query", format!("query={}", "(".repeat(100_000)));
    assert_prometheus_error("( 100k deep by POST", got, 400, "bad_data", too_deep);
    let got = get(&server, &format!("/api/v1/series?match[]={}", enc(&nested("(", 2000))));
    assert_prometheus_error("match[] 2,000 deep", got, 400, "bad_data", too_deep);

    // Log search: 800 nested parentheses in `q` (a 1.6 KB URL).
    let q = format!("{}error{}", "(".repeat(800), ")".repeat(800));
    let (status, body) = get(&server, &format!("/api/v1/logs?q={}", enc(&q)));
    assert_eq!(status, 400, "{body}");
    let msg = body["errors"][0]["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("q nests too deeply") && msg.contains("limit of 128"), "{body}");
    assert_eq!(body["errors"][0]["code"], 400);

    // Queries at the limits still answer.
    let deepest = format!("{}vector(1){}", "abs(".repeat(200), ")".repeat(200));
    let (status, body) = get(&server, &format!("/api/v1/query?query={}&time=100", enc(&deepest)));
    assert_eq!((status, &body["data"]["result"][0]["value"][1]), (200, &Value::from("1")), "{body}");
    let q = format!("{}error{}", "(".repeat(100), ")".repeat(100));
    let (status, body) = get(&server, &format!("/api/v1/logs?q={}", enc(&q)));
    assert_eq!(status, 200, "{body}");

    assert_still_serving(&server, 1);
}

/// Regression: `max_over_time(vector(1)[1y:1ms])` grew the process to
/// 13.7 GB in 120 s, `vector(1)[100y:1ms]` to 4.7 GB in 20 s. Now the
/// evaluator refuses them before allocating, as Prometheus'
/// `--query.max-samples` does.
#[test]
fn subqueries_past_the_sample_limit_answer_422() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--query-max-samples", "100000"]);
    let too_many = "query processing would load too many samples into memory in query execution";
    for q in [
        "max_over_time(vector(1)[1y:1ms])",
        "vector(1)[100y:1ms]",
        "count_over_time(vector(1)[2m:1ms])",
        // count_values makes a series per distinct value: more than its input.
        "count_values(\"t\", vector(time()))",
    ] {
        let path = if q.starts_with("count_values") {
            format!("/api/v1/query_range?query={}&start=0&end=10000&step=1", enc(q))
        } else {
            format!("/api/v1/query?query={}&time=1700000000", enc(q))
        };
        assert_prometheus_error(q, get(&server, &path), 422, "execution", too_many);
    }
    // Under the limit the same shapes answer.
    let (status, body) =
        get(&server, &format!("/api/v1/query?query={}&time=1700000000", enc("count_over_time(vector(1)[1m:1s])")));
    assert_eq!((status, &body["data"]["result"][0]["value"][1]), (200, &Value::from("60")), "{body}");
    assert_still_serving(&server, 2);
}

/// `--query-timeout` (and a request's shorter `timeout`) stop a query that
/// would run for minutes: 503 `timeout`, as Prometheus answers.
#[test]
fn slow_queries_answer_503_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // 11,000 steps, each folding a window of 86,400 points: about a billion
    // folds, minutes of work; the limits stop it within a step.
    let slow = format!("/api/v1/query_range?query={}&start=0&end=11000&step=1", enc("max_over_time(vector(1)[1d:1s])"));
    let timed_out = "query timed out in expression evaluation";
    let server = Server::start(dir.path(), &["--query-timeout", "200ms"]);
    assert_prometheus_error("--query-timeout 200ms", get(&server, &slow), 503, "timeout", timed_out);
    // A request cannot raise the server's limit...
    assert_prometheus_error("timeout=1h", get(&server, &format!("{slow}&timeout=1h")), 503, "timeout", timed_out);
    assert_still_serving(&server, 3);
    server.stop();

    // ...and may lower it (the dotted Prometheus flag spelling works too).
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--query.timeout", "2m"]);
    assert_prometheus_error("timeout=100ms", get(&server, &format!("{slow}&timeout=100ms")), 503, "timeout", timed_out);
    let got = get(&server, "/api/v1/query?query=up&timeout=soon");
    assert_prometheus_error("timeout=soon", got, 400, "bad_data", "invalid parameter \"timeout\"");
    assert_still_serving(&server, 4);
}

/// Regression: `start=-9.2e15&end=9.2e15&step=1` overflowed and answered
/// 500 "capacity overflow". Every time parameter out of range answers 400
/// naming it, on every API, and the server stays up.
#[test]
fn out_of_range_times_answer_400_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let prometheus: &[(&str, &str)] = &[
        ("/api/v1/query_range?query=up&start=-9.2e15&end=9.2e15&step=1", "start"),
        ("/api/v1/query_range?query=up&start=0&end=9.2e15&step=1e15", "end"),
        ("/api/v1/query_range?query=up&start=0&end=100&step=1e300", "step"),
        ("/api/v1/query_range?query=up&start=0&end=100&step=NaN", "step"),
        ("/api/v1/query_range?query=up&start=0&end=100&step=-Inf", "step"),
        ("/api/v1/query?query=up&time=1e300", "time"),
        ("/api/v1/query?query=up&time=NaN", "time"),
        ("/api/v1/query?query=up&time=Inf", "time"),
        ("/api/v1/query?query=up&time=9e15", "time"),
        ("/api/v1/query?query=up&time=-9e15", "time"),
        ("/api/v1/query?query=up&time=100&timeout=1e300", "timeout"),
        ("/api/v1/series?match[]=up&start=1e300", "start"),
    ];
    for (path, param) in prometheus {
        let want = format!("invalid parameter \"{param}\"");
        assert_prometheus_error(path, get(&server, path), 400, "bad_data", &want);
    }
    for q in [
        "up offset 1000000y",
        "up offset -1000000y",
        "up offset 1e300",
        "up @ 1e15",
        "up @ -1e15",
        "rate(up[1e300])",
        "rate(up[100000000y])",
        "max_over_time(up[1h:1e300])",
        "max_over_time(up[1e300:1m])",
        "max_over_time(up[1h:0.0001])",
    ] {
        let got = get(&server, &format!("/api/v1/query?query={}&time=100", enc(q)));
        assert_prometheus_error(q, got, 400, "bad_data", "invalid parameter \"query\"");
    }

    // Jaeger legacy, api_v3, logs and stats: 400 naming the parameter.
    let max = i64::MAX.to_string();
    let min = i64::MIN.to_string();
    let jaeger = [
        (format!("/api/traces?service=a&start={max}"), "start"),
        (format!("/api/traces?service=a&end={min}"), "end"),
        ("/api/traces?service=a&lookback=2562048h".to_string(), "lookback"),
        ("/api/traces?service=a&lookback=1e300h".to_string(), "lookback"),
        ("/api/traces?service=a&minDuration=9999999999h".to_string(), "minDuration"),
        ("/api/traces?service=a&maxDuration=-9999999999h".to_string(), "maxDuration"),
        (format!("/api/dependencies?endTs={max}"), "endTs"),
        (format!("/api/dependencies?lookback={max}"), "lookback"),
        (format!("/api/v1/logs?start={max}"), "start"),
        (format!("/api/v1/logs?end={min}"), "end"),
        ("/api/v1/logs?lookback=110000d".to_string(), "lookback"),
        ("/api/v1/logs?start=9999-12-31T23:59:59Z".to_string(), "start"),
        (format!("/api/v1/stats?start={max}"), "start"),
        ("/api/v1/stats?lookback=9223372036854775807ns1h".to_string(), "lookback"),
    ];
    for (path, param) in &jaeger {
        let (status, body) = get(&server, path);
        assert_eq!(status, 400, "{path}: {body}");
        let msg = body["errors"][0]["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(&format!("'{param}'")), "{path}: {msg}");
    }
    let v3 = [
        ("/api/v3/traces?query.startTimeMin=9999-12-31T23:59:59Z&query.startTimeMax=9999-12-31T23:59:59Z", "query.startTimeMin"),
        ("/api/v3/traces?query.startTimeMin=0001-01-01T00:00:00Z&query.startTimeMax=2024-01-01T00:00:00Z", "query.startTimeMin"),
        (
            "/api/v3/traces?query.startTimeMin=2024-01-01T00:00:00Z&query.startTimeMax=2024-01-02T00:00:00Z&query.durationMin=9999999999h",
            "query.durationMin",
        ),
    ];
    for (path, param) in v3 {
        let (status, body) = get(&server, path);
        assert_eq!(status, 400, "{path}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(param), "{path}: {msg}");
    }

    // Extreme values that are valid answer 200: the arithmetic behind them
    // saturates or is checked, it never wraps or panics.
    let promql_edge = [
        "/api/v1/query_range?query=rate(up[292y])&start=-9223372036.854&end=9223372036.854&step=1e9".to_string(),
        format!("/api/v1/query?query={}&time=9223372036.854", enc("max_over_time(up[1h:1m] offset -292y)")),
        format!("/api/v1/query?query={}&time=-9223372036.854", enc("up @ 9223372036.854 offset 292y")),
        format!("/api/v1/query?query={}&time=0", enc("timestamp(vector(1)) - time() + year(vector(9e18))")),
    ];
    let store_edge = [
        "/api/traces?service=a&start=-9223372036854775&end=9223372036854775",
        "/api/traces?service=a&minDuration=2562047h&lookback=2562047h",
        "/api/dependencies?endTs=9223372036854&lookback=9223372036854",
        "/api/v1/logs?start=-9223372036854775&end=9223372036854775",
        "/api/v1/logs?lookback=106000d",
        "/api/v1/stats?start=-9223372036854775&end=9223372036854775",
        "/api/v3/traces?query.startTimeMin=1677-09-22T00:12:44Z&query.startTimeMax=2262-04-11T23:47:16Z",
        "/api/v1/series?match[]=up&start=-9.2e15&end=9.2e15",
        "/api/v1/labels?start=-9.2e15&end=9.2e15",
    ];
    for path in promql_edge.iter().map(String::as_str).chain(store_edge) {
        let (status, body) = get(&server, path);
        assert!(status == 200 || status == 404, "{path}: {status} {body}");
    }
    assert_still_serving(&server, 5);
}
