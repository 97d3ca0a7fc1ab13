//! PromQL through seismo's Prometheus API router, as a request arrives: `/api/v1/query`,
//! `/api/v1/query_range` and `/api/v1/series` over a small in-memory series source, with
//! the server's limits on (nesting depth checked before parsing, a sample budget of 50 000
//! and a 2 s time budget per query, query threads with their own stack).
//!
//! Input: one mode byte (endpoint, step), two bytes of time offset, then the query text
//! (UTF-8). Properties: nothing panics outside promql-parser (whose panics seismo catches
//! and answers 400, see `tolerate_promql_parser_panics`); no answer is a 500; a query ends
//! within libFuzzer's `-timeout` although its budget is 2 s.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use seismo_fuzz::{promql_series, tolerate_promql_parser_panics, NOW_MS};
use seismo_query::promql::{routes, QueryLimits};
use tower::ServiceExt;

fn setup() -> &'static (tokio::runtime::Runtime, Router) {
    static SETUP: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    SETUP.get_or_init(|| {
        tolerate_promql_parser_panics();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let limits = QueryLimits { max_samples: 50_000, timeout: Duration::from_secs(2) };
        (runtime, routes(Arc::new(promql_series()), limits))
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, hi, lo, text @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let offset_ms = i64::from(u16::from_be_bytes([*hi, *lo])) * 100;
    let t = NOW_MS - offset_ms;
    let form = match mode % 4 {
        0 | 1 => serde_urlencoded::to_string([("query", text), ("time", &format!("{}", t as f64 / 1000.0))]),
        2 => {
            let step = ["15s", "1m", "1", "0.5", "5m"][usize::from(mode / 4 % 5)];
            let start = format!("{}", (t - 600_000) / 1000);
            serde_urlencoded::to_string([
                ("query", text),
                ("start", &start),
                ("end", &(t / 1000).to_string()),
                ("step", step),
            ])
        }
        _ => serde_urlencoded::to_string([("match[]", text)]),
    }
    .expect("a form");
    let path = match mode % 4 {
        0 | 1 => "/api/v1/query",
        2 => "/api/v1/query_range",
        _ => "/api/v1/series",
    };
    let (runtime, router) = setup();
    let request = Request::get(format!("{path}?{form}")).body(Body::empty()).expect("a request");
    let (status, body) = runtime.block_on(async {
        let response = router.clone().oneshot(request).await.expect("the router answers");
        let status = response.status();
        (status, response.into_body().collect().await.expect("a body").to_bytes())
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path} {text:?}: {}", String::from_utf8_lossy(&body));
});
