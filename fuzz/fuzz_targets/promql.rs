//! PromQL through seismo's engine (`seismo-promql`) over a small in-memory series source
//! (`MemSource`), as the Prometheus API runs a query: `parse_query` (nesting depth checked
//! before the parser sees the text, times checked to fit the engine's arithmetic), then
//! `instant_query` or `range_query` within a budget of 50 000 samples and 2 s, on a thread
//! with the API's query-thread stack (32 MiB). The Prometheus API's HTTP layer
//! (`/api/v1/query` parameters, forms, the query threads' `catch_unwind`) is driven through
//! the real router by the query_params target; it serves the store's metrics, so this target
//! calls the engine directly to reach it with series to evaluate.
//!
//! Input: one mode byte (instant or range query, step), two bytes of time offset, then the
//! query text (UTF-8). Properties: nothing panics outside promql-parser (whose panics
//! `seismo_promql::parse` catches and answers an error, see `tolerate_promql_parser_panics`);
//! a query ends within libFuzzer's `-timeout` although its budget is 2 s; a range query
//! answers only samples on its grid.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use seismo_fuzz::{promql_series, tolerate_promql_parser_panics, NOW_MS};
use seismo_promql::{instant_query, parse_query, range_query, Budget, MemSource, QueryValue};

/// The stack of the query API's query threads.
const QUERY_STACK_BYTES: usize = 32 << 20;
const MAX_SAMPLES: usize = 50_000;
const TIMEOUT: Duration = Duration::from_secs(2);

fn source() -> &'static MemSource {
    static SOURCE: OnceLock<MemSource> = OnceLock::new();
    SOURCE.get_or_init(|| {
        tolerate_promql_parser_panics();
        promql_series()
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, hi, lo, text @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let text = text.to_owned();
    let mode = *mode;
    let t = NOW_MS - i64::from(u16::from_be_bytes([*hi, *lo])) * 100;
    let source = source();
    std::thread::Builder::new()
        .stack_size(QUERY_STACK_BYTES)
        .spawn(move || {
            let Ok(expr) = parse_query(&text) else { return };
            let budget = Budget::new(MAX_SAMPLES, Instant::now() + TIMEOUT);
            if mode % 3 == 2 {
                let step = [15_000, 60_000, 1_000, 500, 300_000][usize::from(mode / 3 % 5)];
                let start = t - 600_000;
                if let Ok(QueryValue::Matrix(series)) = range_query(source, &expr, start, t, step, &budget) {
                    for s in &series {
                        assert!(
                            s.samples.iter().all(|&(at, _)| at >= start && at <= t && (at - start) % step == 0),
                            "{text:?}: a sample off the grid"
                        );
                    }
                }
            } else {
                let _ = instant_query(source, &expr, t, &budget);
            }
        })
        .expect("a query thread")
        .join()
        .expect("the query thread does not panic");
});
