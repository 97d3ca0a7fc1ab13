//! Log search through the real router: `GET /api/v1/logs` with a fuzzed `q`, answered by
//! `seismo_query::router` over a store with one flushed segment (Parquet + tantivy) and a
//! memtable (its in-RAM index): the handler parses the parameters, then the store compiles
//! `q` (tantivy's grammar, seismo's field mapping, the nesting limit) and runs it on tokio's
//! blocking pool, as the server does.
//!
//! Input: one selector byte (adds `service`, `severity`, `trace_id`, a window and a small
//! `limit`), then `q` (UTF-8). Properties: nothing panics (but one known tantivy debug
//! assertion, see `tolerate_tantivy_phrase_seek_assertion`) or overflows the stack; no answer
//! is a 500; a 200 holds at most `limit` records, newest first, and only from the service
//! asked for.
#![no_main]

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use seismo_api::logs::LogsResponse;
use seismo_fuzz::{fixture_store, tolerate_tantivy_phrase_seek_assertion, Api, KNOWN_PANIC};

/// The query API's cap on `limit`.
const MAX_LIMIT: usize = 10_000;

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        tolerate_tantivy_phrase_seek_assertion();
        Api::new(fixture_store())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, q)) = data.split_first() else { return };
    let Ok(q) = std::str::from_utf8(q) else { return };
    let mut pairs = vec![("q", q)];
    let mut add = |bit: u8, key: &'static str, value: &'static str| {
        if selector & bit != 0 {
            pairs.push((key, value));
        }
    };
    add(1, "service", "frontend");
    add(2, "severity", "ERROR,warn");
    add(4, "trace_id", "abababababababababababababababab");
    add(8, "lookback", "10m");
    add(16, "limit", "3");
    let limit = if selector & 16 != 0 { 3 } else { MAX_LIMIT };
    let form = serde_urlencoded::to_string(&pairs).expect("a form");
    let request = Request::get(format!("/api/v1/logs?{form}")).body(Body::empty()).expect("a request");
    let (status, body) = api().send(request);
    if status == StatusCode::INTERNAL_SERVER_ERROR && KNOWN_PANIC.swap(false, Ordering::SeqCst) {
        return; // the search thread died of the known tantivy assertion
    }
    let text = String::from_utf8_lossy(&body);
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{q:?}: {text}");
    if status != StatusCode::OK {
        return;
    }
    let rows = serde_json::from_slice::<LogsResponse>(&body).unwrap_or_else(|e| panic!("{q:?}: {e}: {text}")).data;
    assert!(rows.len() <= limit, "{q:?}: {} rows", rows.len());
    let times: Vec<i64> = rows.iter().map(|r| r.time_ns().expect("a decimal time")).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{q:?}: newest first");
    if selector & 1 != 0 {
        assert!(rows.iter().all(|r| r.service_name == "frontend"), "{q:?}: only the service asked for");
    }
});
