//! An arbitrary query string sent to every query-API endpoint that reads one, through the
//! real router (`seismo_query::router`, called with tower's `oneshot`, no socket): Jaeger's
//! `/api/traces` (incl. `tag=` and the `tags` JSON), `/api/traces/{id}`, `/api/operations`,
//! `/api/services/{service}/operations`, `/api/dependencies`, api_v3's `/traces`,
//! `/traces/{id}`, `/operations` and `/trace-summaries`, `/api/v1/logs`, `/api/v1/stats`, and
//! the Prometheus API (`/api/v1/query`, `query_range`, `series`, `labels`, label values,
//! exemplars, also as a POSTed form). The store is memtable-only, for speed (segment pruning
//! is the log_query target's), so what parses reaches the scans with extreme windows.
//!
//! The input is used as the query string as it is when it makes a valid URI, and otherwise
//! decoded as a form and re-encoded. Properties: nothing panics (overflow included: the build
//! has overflow checks) but inside promql-parser or tantivy's one known debug assertion (see
//! the hooks in `seismo_fuzz`); no answer is a 500; every 200 is JSON, and a Jaeger or logs
//! answer holds at most `MAX_LIMIT` items (the parsers' own output checks of the old layout
//! can no longer be made: the parsers are private to `seismo-query`).
#![no_main]

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;
use seismo_fuzz::{
    memtable_store, tolerate_promql_parser_panics, tolerate_tantivy_phrase_seek_assertion, Api, KNOWN_PANIC,
};

/// The query API's cap on `limit` (Jaeger's search, logs).
const MAX_LIMIT: usize = 10_000;

const GET_PATHS: &[&str] = &[
    "/api/traces",
    "/api/traces/abababababababababababababababab",
    "/api/operations",
    "/api/services/frontend/operations",
    "/api/dependencies",
    "/api/v3/traces",
    "/api/v3/traces/abababababababababababababababab",
    "/api/v3/operations",
    "/api/v3/trace-summaries",
    "/api/v1/logs",
    "/api/v1/stats",
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/label/job/values",
    "/api/v1/query_exemplars",
];

const POST_PATHS: &[&str] = &["/api/v1/query", "/api/v1/query_range", "/api/v1/series"];

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        // Order matters: the tantivy hook hands every other panic to the promql one.
        tolerate_promql_parser_panics();
        tolerate_tantivy_phrase_seek_assertion();
        Api::new(memtable_store())
    })
}

fn query_string(data: &[u8]) -> Option<String> {
    if let Ok(raw) = std::str::from_utf8(data) {
        if format!("/?{raw}").parse::<Uri>().is_ok() {
            return Some(raw.to_owned());
        }
    }
    let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data).ok()?;
    serde_urlencoded::to_string(pairs).ok()
}

fn check(what: &str, status: StatusCode, body: &[u8]) {
    if status == StatusCode::INTERNAL_SERVER_ERROR && KNOWN_PANIC.swap(false, Ordering::SeqCst) {
        return; // a log search thread died of the known tantivy assertion
    }
    let text = String::from_utf8_lossy(body);
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}: {text}");
    if status == StatusCode::OK {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        if let Some(items) = json.get("data").and_then(|d| d.as_array()) {
            if !what.contains("/api/v1/") || what.contains("/api/v1/logs") {
                assert!(items.len() <= MAX_LIMIT, "{what}: {} items", items.len());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(query) = query_string(data) else { return };
    let api = api();
    for path in GET_PATHS {
        let uri = format!("{path}?{query}");
        let request = Request::get(&uri).body(Body::empty()).expect("a request");
        let (status, body) = api.send(request);
        check(&format!("GET {uri}"), status, &body);
    }
    for path in POST_PATHS {
        let request = Request::builder()
            .method(Method::POST)
            .uri(*path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(data.to_vec()))
            .expect("a request");
        let (status, body) = api.send(request);
        check(&format!("POST {path} {:?}", String::from_utf8_lossy(data)), status, &body);
    }
});
