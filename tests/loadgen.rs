//! `seismo loadgen*` end to end: each load generator, with small settings,
//! against the real `seismo serve` and the real chaos agent, as the bench/
//! scripts run them. Checks the flags still parse, the reports are the JSON
//! lines (or prose lines) the scripts and BENCHMARKS.md read, and that what a
//! generator says it sent is what the server stored.

#[path = "chaos_agent/agent.rs"]
mod agent;
mod common;

use std::process::{Command, Output};
use std::time::Duration;

use agent::Agent;
use common::{eventually, Server};
use serde_json::Value;

fn seismo(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_seismo")).args(args).env("SEISMO_LOG", "warn").output().unwrap();
    assert!(
        out.status.success(),
        "seismo {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Stdout as JSON lines.
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {l:?}: {e}")))
        .collect()
}

#[test]
fn loadgen_sends_spans_and_times_lookups_of_the_traces_it_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (grpc, http) = (server.grpc_url(), server.query_url(""));
    let out = seismo(&[
        "loadgen",
        "--endpoint",
        &grpc,
        "--spans",
        "200",
        "--batch",
        "50",
        "--concurrency",
        "2",
        "--query-url",
        &http,
        "--lookups",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loadgen: 4 requests, 200 spans, "), "{stderr}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["spans_acked"], 200);
    assert_eq!((lines[0]["batch"].as_u64(), lines[0]["concurrency"].as_u64()), (Some(50), Some(2)));
    assert!(lines[0]["spans_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[1]["trace_by_id_lookups"], 5);
    assert!(lines[1]["p99_ms"].as_f64().unwrap() >= lines[1]["p50_ms"].as_f64().unwrap());
    // The same seed and span count rebuild the same trace ids: lookups only.
    let again = seismo(&[
        "loadgen",
        "--endpoint",
        &grpc,
        "--spans",
        "200",
        "--batch",
        "50",
        "--lookups-only",
        "--query-url",
        &http,
        "--lookups",
        "3",
    ]);
    let lines = json_lines(&again);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["trace_by_id_lookups"], 3);
}

#[test]
fn loadgen_logs_sends_records_and_times_every_search() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (grpc, http) = (server.grpc_url(), server.query_url(""));
    let out = seismo(&[
        "loadgen-logs",
        "--endpoint",
        &grpc,
        "--records",
        "400",
        "--batch",
        "100",
        "--query-url",
        &http,
        "--repeat",
        "1",
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1 + 8, "{lines:?}");
    assert_eq!(lines[0]["logs_acked"], 400);
    let searches: Vec<&str> = lines[1..].iter().map(|l| l["log_search"].as_str().unwrap()).collect();
    assert_eq!(searches[0], "q=refused");
    assert_eq!(searches[7], "severity=WARN");
    // 400 templated lines hold some WARN records (a quarter of the mix) and
    // no "deadbeef"; searches see acknowledged data at once.
    assert!(lines[8]["results"].as_u64().unwrap() > 0, "{:?}", lines[8]);
    assert_eq!(lines[7]["results"], 0, "{:?}", lines[7]);
}

#[test]
fn loadgen_metrics_sends_series_and_times_range_queries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (grpc, http) = (server.grpc_url(), server.query_url(""));
    let out = seismo(&[
        "loadgen-metrics",
        "--endpoint",
        &grpc,
        "--series",
        "20",
        "--hours",
        "1",
        "--query-url",
        &http,
        "--repeat",
        "1",
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1 + 3, "{lines:?}");
    assert_eq!(lines[0]["points_acked"], 20 * 240);
    // `http_server_requests_total` raw: every series comes back.
    assert_eq!(lines[2]["query_range"], "http_server_requests_total");
    assert_eq!(lines[2]["series_out"], 20);
    // sum by route: the 10 routes.
    assert_eq!(lines[1]["series_out"], 10);
    // topk(5, ...) per step: at least 5 series, ties may pick others at other steps.
    assert!((5..=20).contains(&lines[3]["series_out"].as_u64().unwrap()), "{:?}", lines[3]);
}

#[test]
fn loadgen_proxy_measures_through_the_agent_and_removes_its_proxies() {
    let agent = Agent::start(&[]);
    let out = seismo(&["loadgen-proxy", "--agent", &agent.url(""), "--round-trips", "100", "--bytes", "4194304"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("tcp 64B round trip (100 samples each): direct p50 "), "{text}");
    assert!(lines[1].starts_with("http/1.1 keep-alive request (100 samples each): "), "{text}");
    assert!(
        lines[2].starts_with("throughput single stream: direct ") && lines[2].ends_with("(4 MiB through the proxy)"),
        "{text}"
    );
    let proxies = eventually(Duration::from_secs(10), || {
        let (status, body) = agent.request("GET", "/proxies", None);
        (status == 200 && body.as_object().is_some_and(|m| m.is_empty())).then_some(body)
    });
    assert_eq!(proxies, serde_json::json!({}));
}
