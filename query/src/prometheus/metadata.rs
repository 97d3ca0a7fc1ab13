//! The metadata endpoints (`/series`, `/labels`, `/label/{name}/values`),
//! and the answers Grafana probes for (`/status/buildinfo`,
//! `/status/runtimeinfo`, `/query_exemplars`).

use std::collections::BTreeSet;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::Response;
use seismo_api::prometheus::{BuildInfo, ExemplarSeries, RuntimeInfo};
use seismo_promql::{Labels, MAX_TIME_MS, MIN_TIME_MS};

use crate::prometheus::api_error::ApiError;
use crate::prometheus::api_state::ApiState;
use crate::prometheus::envelope::{labels_map, success};
use crate::prometheus::form::Params;
use crate::prometheus::preamble::SeriesSelection;

/// The Prometheus version seismo claims in buildinfo: Grafana picks its
/// Prometheus features from it.
pub(crate) const PROMETHEUS_VERSION: &str = "2.53.0";

/// `GET|POST /api/v1/series?match[]=`: the label sets of the matching series.
pub(crate) async fn series(State(st): State<ApiState>, sel: SeriesSelection<true>) -> Result<Response, ApiError> {
    let limit = sel.limit;
    let found = truncate(matching_series(st, sel).await?.into_iter().collect(), limit);
    Ok(success(found.iter().map(labels_map).collect::<Vec<_>>()))
}

/// `GET|POST /api/v1/labels`: the label names of the matching series.
pub(crate) async fn label_names(State(st): State<ApiState>, sel: SeriesSelection<false>) -> Result<Response, ApiError> {
    let limit = sel.limit;
    let found = matching_series(st, sel).await?;
    let names: BTreeSet<&str> = found.iter().flat_map(|l| l.iter().map(|(n, _)| n.as_str())).collect();
    Ok(success(truncate(names.into_iter().collect(), limit)))
}

/// The `{name}` of `/label/{name}/values`, refused when empty.
pub(crate) struct LabelName(String);

impl<S: Send + Sync> FromRequestParts<S> for LabelName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadData(format!("invalid label name: {e}")))?;
        if name.is_empty() {
            return Err(ApiError::BadData(format!("invalid label name: {name:?}")));
        }
        Ok(LabelName(name))
    }
}

/// `GET /api/v1/label/{name}/values`: the non-empty values of label `name`.
pub(crate) async fn label_values(
    State(st): State<ApiState>,
    LabelName(name): LabelName,
    sel: SeriesSelection<false>,
) -> Result<Response, ApiError> {
    let limit = sel.limit;
    let found = matching_series(st, sel).await?;
    let values: BTreeSet<&str> = found
        .iter()
        .filter_map(|l| l.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()))
        .filter(|v| !v.is_empty())
        .collect();
    Ok(success(truncate(values.into_iter().collect(), limit)))
}

/// The label sets of the series matching any of the selection's matchers,
/// read on the blocking pool.
async fn matching_series<const R: bool>(st: ApiState, sel: SeriesSelection<R>) -> Result<BTreeSet<Labels>, ApiError> {
    let SeriesSelection { sets, start, end, .. } = sel;
    let work = move || {
        let mut out = BTreeSet::new();
        for m in &sets {
            out.extend(st.source.select_labels(m, start, end).map_err(|e| ApiError::Internal(e.to_string()))?);
        }
        Ok(out)
    };
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
}

fn truncate<T>(mut v: Vec<T>, limit: usize) -> Vec<T> {
    if limit > 0 {
        v.truncate(limit);
    }
    v
}

/// `GET|POST /api/v1/query_exemplars`: always empty (seismo keeps no
/// exemplars); the parameters are still checked.
pub(crate) async fn exemplars(p: Params) -> Result<Response, ApiError> {
    p.time_or("start", MIN_TIME_MS)?;
    p.time_or("end", MAX_TIME_MS)?;
    Ok(success(Vec::<ExemplarSeries>::new()))
}

/// `GET /api/v1/status/buildinfo`.
pub(crate) async fn buildinfo() -> Response {
    success(BuildInfo {
        version: PROMETHEUS_VERSION.into(),
        revision: "seismo".into(),
        branch: "HEAD".into(),
        build_user: "seismo".into(),
        build_date: String::new(),
        go_version: "none".into(),
        application: Some("seismo".into()),
        seismo_version: Some(env!("CARGO_PKG_VERSION").into()),
    })
}

/// `GET /api/v1/status/runtimeinfo`.
pub(crate) async fn runtimeinfo() -> Response {
    success(RuntimeInfo { reload_config_success: true, ..RuntimeInfo::default() })
}
