//! `seismo serve --retention`: whole segments whose newest data is older than the limit
//! are deleted by the server itself, and `/metrics` shows it.

mod common;

use std::time::Duration;

use common::{eventually, one_span_export, Server};
use prost::Message;

/// Posts one span of trace `[id; 16]` that started `age` ago.
fn post_span(server: &Server, id: u8, age: Duration) {
    let mut request = one_span_export(&[id; 16], &[id; 8], "shop", "GET /cart");
    let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
    span.start_time_unix_nano -= age.as_nanos() as u64;
    span.end_time_unix_nano -= age.as_nanos() as u64;
    let r = reqwest::blocking::Client::new()
        .post(server.otlp_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn trace_status(server: &Server, id: u8) -> u16 {
    server.get_json(&format!("/api/traces/{}", hex::encode([id; 16]))).0
}

#[test]
fn segments_older_than_the_retention_are_deleted_and_recent_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--retention", "1h", "--flush-interval-secs", "1"]);
    assert_eq!(server.metric("seismo_store_retention_seconds"), 3600);

    // Two hours old: acknowledged and served at once, then flushed and deleted.
    post_span(&server, 1, Duration::from_secs(2 * 3600));
    eventually(Duration::from_secs(30), || {
        (server.metric("seismo_retention_deleted_segments_total{reason=\"age\"}") >= 1).then_some(())
    });
    assert_eq!(trace_status(&server, 1), 404);

    // Recent data is flushed into a segment of its own and stays.
    let flushes = server.metric("seismo_flushes_total");
    post_span(&server, 2, Duration::ZERO);
    eventually(Duration::from_secs(30), || (server.metric("seismo_flushes_total") > flushes).then_some(()));
    assert_eq!(server.metric("seismo_segments"), 1);
    assert_eq!(trace_status(&server, 2), 200);
    assert_eq!(trace_status(&server, 1), 404);
    assert_eq!(server.metric("seismo_retention_deleted_segments_total{reason=\"age\"}"), 1);
    assert_eq!(server.metric("seismo_retention_deleted_segments_total{reason=\"size\"}"), 0);

    // Deleted for good: a restart does not bring the old trace back.
    server.stop();
    let server = Server::start(&dir.path().join("data"), &[]);
    assert_eq!(trace_status(&server, 1), 404);
    assert_eq!(trace_status(&server, 2), 200);
    server.stop();
}

#[test]
fn a_retention_that_is_not_a_duration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["serve", "--retention", "7 days", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retention"), "{}", String::from_utf8_lossy(&out.stderr));
}
