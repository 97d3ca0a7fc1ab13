//! What the Prometheus API's handlers share.

use std::sync::Arc;

use seismo_promql::SeriesSource;

use crate::prometheus::runner::QueryRunner;

/// The series every endpoint reads, and where queries evaluate.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) source: Arc<dyn SeriesSource>,
    pub(crate) runner: QueryRunner,
}
