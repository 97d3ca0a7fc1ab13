//! Log search: `/api/v1/logs` parameters parsed as the handler does, then the store
//! compiling `q` (tantivy's grammar, seismo's field mapping, the nesting limit) and running
//! it over a memtable's in-RAM index and a segment's tantivy index, on a thread with the
//! stack of tokio's blocking pool (2 MiB), where the query API runs searches.
//!
//! Input: one selector byte (adds `service`, `severity`, `trace_id`, a window and a small
//! `limit`), then `q` (UTF-8). Properties: nothing panics (but one known tantivy debug
//! assertion, see `tolerate_tantivy_phrase_seek_assertion`) or overflows the stack; at most
//! `limit` records come back, newest first, and only from the service asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::atomic::Ordering;

use seismo_fuzz::{fixture_store, tolerate_tantivy_phrase_seek_assertion, KNOWN_PANIC, NOW_NS};
use seismo_query::logs::parse_log_query;
use seismo_query::params::QueryParams;

/// tokio's default thread stack, which the query API's blocking pool runs with.
const BLOCKING_STACK_BYTES: usize = 2 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, q)) = data.split_first() else { return };
    let Ok(q) = std::str::from_utf8(q) else { return };
    let mut pairs = vec![("q".to_string(), q.to_string())];
    let mut add = |bit: u8, key: &str, value: &str| {
        if selector & bit != 0 {
            pairs.push((key.into(), value.into()));
        }
    };
    add(1, "service", "frontend");
    add(2, "severity", "ERROR,warn");
    add(4, "trace_id", "abababababababababababababababab");
    add(8, "lookback", "10m");
    add(16, "limit", "3");
    let Ok(query) = parse_log_query(&QueryParams::new(pairs), NOW_NS) else { return };
    tolerate_tantivy_phrase_seek_assertion();
    let store = fixture_store();
    let searched = std::thread::Builder::new()
        .stack_size(BLOCKING_STACK_BYTES)
        .spawn(move || store.search_logs(&query).map(|rows| (rows, query)))
        .expect("a search thread")
        .join();
    let Ok(rows) = searched else {
        assert!(KNOWN_PANIC.swap(false, Ordering::SeqCst), "only the known tantivy assertion may end a search");
        return;
    };
    if let Ok((rows, query)) = rows {
        assert!(rows.len() <= query.effective_limit());
        assert!(rows.windows(2).all(|w| w[0].time_unix_nano >= w[1].time_unix_nano), "newest first");
        if let Some(service) = &query.service {
            assert!(rows.iter().all(|r| &r.service_name == service));
        }
    }
});
