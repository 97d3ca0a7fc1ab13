//! `GET /api/dependencies`: the service graph the Jaeger UI's "System
//! Architecture" view and Grafana's node graph draw.
//!
//! seismo keeps no precomputed dependency table (Jaeger needs a Spark job or
//! its in-memory store for this). The graph is computed at query time from
//! span parentage over the newest [`DEPENDENCY_TRACE_SAMPLE`] traces of the
//! window: a sample, bounded so the request stays cheap.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::response::Response;
use seismo_api::jaeger as ui;
use seismo_api::Response as Envelope;
use seismo_store::{SpanRow, TraceQuery};

use crate::error::QueryError;
use crate::jaeger_handlers::{blocking, decode, json_reply, now_ns, RawParams};
use crate::params;
use crate::router::QueryState;

/// How many of the newest traces of the window `/api/dependencies` reads.
pub const DEPENDENCY_TRACE_SAMPLE: usize = 1_000;

/// `GET /api/dependencies?endTs=&lookback=&service=` -> `data: [{parent, child,
/// callCount}]`: every parent -> child span edge of the window's newest
/// [`DEPENDENCY_TRACE_SAMPLE`] traces, counted per service pair (as Jaeger's
/// in-memory store counts them, same-service edges included).
pub(crate) async fn dependencies(State(state): State<QueryState>, raw: RawParams) -> Result<Response, QueryError> {
    let params = decode(raw)?;
    let (start_ns, end_ns) = params::parse_dependencies(&params, now_ns())?;
    let service = params.get(params::SERVICE).map(str::to_string);
    let query = TraceQuery {
        start_min_ns: Some(start_ns),
        start_max_ns: Some(end_ns),
        limit: DEPENDENCY_TRACE_SAMPLE,
        ..TraceQuery::default()
    };
    let links = blocking(&state, move |store| Ok(dependency_links(&store.find_traces(&query)?)))
        .await?
        .into_iter()
        .filter(|link| service.as_ref().is_none_or(|s| *s == link.parent || *s == link.child))
        .collect::<Vec<_>>();
    json_reply(&params, &Envelope::new(links))
}

/// Counts parent -> child edges per (parent service, child service), sorted.
pub(crate) fn dependency_links(traces: &[Vec<SpanRow>]) -> Vec<ui::DependencyLink> {
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for spans in traces {
        let service_of: HashMap<_, &str> = spans.iter().map(|s| (s.span_id, s.service_name.as_str())).collect();
        for span in spans {
            let Some(parent) = span.parent_span_id else {
                continue;
            };
            if let Some(parent_service) = service_of.get(&parent) {
                *counts.entry((parent_service.to_string(), span.service_name.clone())).or_default() += 1;
            }
        }
    }
    counts.into_iter().map(|((parent, child), call_count)| ui::DependencyLink { parent, child, call_count }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use seismo_store::{KeyValue, SpanId};

    fn span(trace: &str, id: &str, parent: Option<&str>, service: &str) -> SpanRow {
        SpanRow {
            trace_id: trace.parse().unwrap(),
            span_id: id.parse().unwrap(),
            parent_span_id: parent.map(|p| p.parse::<SpanId>().unwrap()),
            trace_state: String::new(),
            flags: 0,
            service_name: service.into(),
            name: "op".into(),
            kind: 0,
            start_time_unix_nano: 0,
            duration_nano: 0,
            status_code: 0,
            status_message: String::new(),
            attributes: Vec::<KeyValue>::new(),
            resource_attributes: vec![],
            scope_name: String::new(),
            scope_version: String::new(),
            events: vec![],
            links: vec![],
            dropped_attributes_count: 0,
            dropped_events_count: 0,
            dropped_links_count: 0,
        }
    }

    #[test]
    fn dependency_links_count_edges_per_service_pair() {
        let t1 = vec![
            span("1", "1", None, "web"),
            span("1", "2", Some("1"), "api"),
            span("1", "3", Some("2"), "db"),
            span("1", "4", Some("2"), "db"),
            span("1", "5", Some("1"), "web"),
            span("1", "6", Some("99"), "orphan"),
        ];
        let t2 = vec![span("2", "1", None, "web"), span("2", "2", Some("1"), "api")];
        let links = dependency_links(&[t1, t2]);
        let got: Vec<(&str, &str, u64)> =
            links.iter().map(|l| (l.parent.as_str(), l.child.as_str(), l.call_count)).collect();
        assert_eq!(got, [("api", "db", 2), ("web", "api", 2), ("web", "web", 1)]);
    }

    // ---- through the router, against a real store ----

    use crate::router::tests::{assert_jaeger_error, get, test_store};
    use crate::router::{router, QueryState};
    use axum::http::StatusCode;
    use serde_json::json;

    #[tokio::test]
    async fn dependencies_from_span_parentage() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(QueryState::new(test_store(dir.path()).await));
        let (status, body) = get(&app, "/api/dependencies").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"], json!([{"parent": "frontend", "child": "backend", "callCount": 1}]));
        let (_, body) = get(&app, "/api/dependencies?service=nobody").await;
        assert_eq!(body["data"], json!([]));
        let (status, body) = get(&app, "/api/dependencies?endTs=soon").await;
        assert_jaeger_error(status, &body, 400, "'endTs'");
    }
}
