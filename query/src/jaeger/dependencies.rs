//! `GET /api/dependencies`: the service graph the Jaeger UI's "System
//! Architecture" view and Grafana's node graph draw.
//!
//! Every parent -> child span edge of the window, counted per service pair
//! (as Jaeger's in-memory store counts them, same-service edges included).
//! The store keeps the edges of each span segment in its footer, resolved
//! across flushes, so a day-long window is a merge of small summaries (see
//! `Store::dependencies`); segments count whole when they overlap the window.

use axum::extract::State;
use axum::response::Response;
use seismo_api::jaeger as ui;
use seismo_api::Response as Envelope;

use crate::error::QueryError;
use crate::jaeger::search_params::parse_dependencies;
use crate::request::query_params::SERVICE;
use crate::request::{blocking, json_reply, now_ns, QueryParams};
use crate::state::QueryState;

/// `GET /api/dependencies?endTs=&lookback=&service=` -> `data: [{parent, child,
/// callCount}]`, sorted by (parent, child); `service` keeps the edges touching it.
pub(crate) async fn dependencies(State(state): State<QueryState>, params: QueryParams) -> Result<Response, QueryError> {
    let (start_ns, end_ns) = parse_dependencies(&params, now_ns())?;
    let service = params.get(SERVICE).map(str::to_string);
    let links = blocking(&state, move |store| store.dependencies(start_ns, end_ns))
        .await?
        .into_iter()
        .filter(|(parent, child, _)| service.as_ref().is_none_or(|s| s == parent || s == child))
        .map(|(parent, child, call_count)| ui::DependencyLink { parent, child, call_count })
        .collect::<Vec<_>>();
    json_reply(&params, &Envelope::new(links))
}

#[cfg(test)]
mod tests {
    // ---- through the router, against a real store ----

    use crate::router::router;
    use crate::router::tests::{assert_jaeger_error, get, test_store};
    use crate::state::QueryState;
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
