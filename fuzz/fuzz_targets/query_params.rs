//! The query API's parameter parsers on an arbitrary query string, decoded the way axum's
//! `Query` extractor decodes it: Jaeger's `/api/traces` (incl. `tag=` and the `tags` JSON),
//! `/api/traces/{id}`, `/api/operations`, `/api/dependencies`, api_v3's `/traces` and
//! trace ids, `/api/v1/logs` and `/api/v1/stats` (time bounds, lookbacks, durations), and
//! the Go- and Prometheus-style scalar parsers on every value. What parses (but log searches) is then run
//! against a small store (memtable only, for speed: segment pruning is the log_query target's), so
//! extreme windows reach the scans.
//!
//! Properties: nothing panics (overflow included: the build has overflow checks), and what
//! a parser accepts is well-formed (windows ordered, limits within 1..=MAX_LIMIT, severity
//! ranges within 1..=24).
#![no_main]

use libfuzzer_sys::fuzz_target;
use seismo_fuzz::{memtable_store, NOW_NS};
use seismo_query::params::{self, QueryParams, MAX_LIMIT};
use seismo_query::{duration, jaeger_v3, logs, promql, stats};

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) else { return };
    let p = QueryParams::new(pairs.clone());
    let store = memtable_store();

    if let Ok(search) = params::parse_trace_search(&p, NOW_NS) {
        let q = &search.query;
        assert!(q.start_min_ns <= q.start_max_ns, "{q:?}");
        assert!((1..=MAX_LIMIT).contains(&q.limit), "{q:?}");
        assert!(q.min_duration_ns != Some(0) && q.max_duration_ns != Some(0), "{q:?}");
        let found = store.find_traces(q).expect("a parsed search runs");
        assert!(found.len() <= q.limit);
    }
    let _ = params::parse_get_trace(&p);
    if let Ok((service, _)) = params::parse_operations(&p) {
        let _ = store.operations(&service).expect("operations of any service");
    }
    if let Ok((start, end)) = params::parse_dependencies(&p, NOW_NS) {
        assert!(start <= end);
        store.dependencies(start, end).expect("dependencies of a parsed window");
    }
    if let Ok(q) = jaeger_v3::parse_find_traces(&p) {
        assert!(q.start_min_ns < q.start_max_ns, "{q:?}");
        assert!((1..=MAX_LIMIT).contains(&q.limit), "{q:?}");
        store.find_traces(&q).expect("a parsed v3 search runs");
    }
    if let Ok(q) = logs::parse_log_query(&p, NOW_NS) {
        assert!(q.start_ns <= q.end_ns, "{q:?}");
        assert!((1..=MAX_LIMIT).contains(&q.limit), "{q:?}");
        assert!(q.severities.iter().all(|&(lo, hi)| 1 <= lo && lo <= hi && hi <= 24), "{q:?}");
        // Not searched here: a search costs a tantivy searcher, and `q` is the log_query target's.
    }
    if let Ok(q) = stats::parse_stats_query(&p, NOW_NS) {
        assert!(q.start_ns <= q.end_ns, "{q:?}");
        store.span_stats(&q).expect("stats of a parsed window");
    }
    for (_, value) in &pairs {
        let v = value.as_str();
        if let Ok(ns) = duration::parse_go_duration(v) {
            let _ = ns;
        }
        let _ = duration::parse_lookback(v);
        let _ = duration::parse_go_int(v, 32).map(|n| assert!(i32::try_from(n).is_ok()));
        let _ = duration::parse_go_int(v, 64);
        let _ = duration::parse_go_bool(v);
        let _ = duration::parse_rfc3339_nano(v);
        let _ = jaeger_v3::parse_trace_id(v);
        let _ = promql::params::parse_time(v);
        let _ = promql::params::parse_duration(v);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = promql::params::parse_form(text);
    }
});
