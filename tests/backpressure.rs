//! `seismo serve --max-memtable-bytes`: at the cap a request waits for a flush to make
//! room (`--ingest-wait-secs`) and is taken then; past the wait it gets 429 +
//! `Retry-After` (gRPC `RESOURCE_EXHAUSTED`), and requests are taken again once a
//! flush made room. (The store's unit tests show the same with the flusher running:
//! `db::write::tests`.)

mod common;

use common::{one_span_export, Server};
use prost::Message;

fn post_span(server: &Server, id: u8) -> reqwest::blocking::Response {
    let request = one_span_export(&[id; 16], &[id; 8], "shop", "GET /cart");
    reqwest::blocking::Client::new()
        .post(server.otlp_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .unwrap()
}

/// Polls `done` every 100 ms; fails the test after 30 s.
fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Starts a server over a fresh data directory with `flags`, and makes its
/// flushes fail (its segments directory becomes a file) until [`mend`]: the
/// first request stays unflushed, at a cap of one byte. Returns the server
/// and the data directory.
fn server_that_cannot_flush(dir: &std::path::Path, flags: &[&str]) -> (Server, std::path::PathBuf) {
    let data = dir.join("data");
    let server = Server::start(&data, flags);
    let segments = data.join("segments");
    std::fs::remove_dir(&segments).unwrap();
    std::fs::write(&segments, b"").unwrap();
    assert_eq!(post_span(&server, 1).status().as_u16(), 200);
    poll("a failed flush", || server.metric("seismo_flush_errors_total") >= 1);
    (server, data)
}

/// Gives back the segments directory [`server_that_cannot_flush`] took: the
/// retried flush succeeds.
fn mend(data: &std::path::Path) {
    let segments = data.join("segments");
    std::fs::remove_file(&segments).unwrap();
    std::fs::create_dir(&segments).unwrap();
}

#[test]
fn requests_are_refused_at_the_memtable_cap_and_taken_again_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    // One request fills the cap, and a request at the cap is refused at once.
    // (A memtable at the cap is flushed at once: here the flushes fail.)
    let flags = ["--max-memtable-bytes", "1", "--ingest-wait-secs", "0"];
    let (server, data) = server_that_cannot_flush(dir.path(), &flags);
    assert_eq!(server.metric("seismo_store_max_memtable_bytes"), 1);
    assert!(server.metric("seismo_store_unflushed_bytes") > 0);

    let refused = post_span(&server, 2);
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.text().unwrap().contains("--max-memtable-bytes"));
    assert_eq!(server.metric("seismo_busy_rejections_total"), 1);
    assert_eq!(server.get_json(&format!("/api/traces/{}", hex::encode([1u8; 16]))).0, 200);

    // Once a flush succeeds (it is retried), there is room again, and nothing
    // acknowledged was lost.
    mend(&data);
    poll("the retried flush", || server.metric("seismo_store_unflushed_bytes") == 0);
    assert_eq!(post_span(&server, 2).status().as_u16(), 200);
    server.stop();
    let server = Server::start(&data, &flags);
    assert_eq!(server.get_json(&format!("/api/traces/{}", hex::encode([1u8; 16]))).0, 200);
    assert_eq!(server.get_json(&format!("/api/traces/{}", hex::encode([2u8; 16]))).0, 200);
    server.stop();
}

#[test]
fn a_request_at_the_memtable_cap_waits_for_the_flush_and_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data) =
        server_that_cannot_flush(dir.path(), &["--max-memtable-bytes", "1", "--ingest-wait-secs", "60"]);

    std::thread::scope(|scope| {
        let second = scope.spawn(|| post_span(&server, 2));
        poll("the second request held back", || server.metric("seismo_store_ingest_waits_total") == 1);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!second.is_finished(), "answered while no flush could make room");
        // The retried flush succeeds now, and makes room.
        mend(&data);
        let second = second.join().unwrap();
        assert_eq!(second.status().as_u16(), 200, "{:?}", second.text());
    });
    assert_eq!(server.metric("seismo_store_ingest_waits_total"), 1);
    assert_eq!(server.metric("seismo_busy_rejections_total"), 0);
    assert_eq!(server.get_json(&format!("/api/traces/{}", hex::encode([2u8; 16]))).0, 200);
    server.stop();
}
