//! What every handler of the query API shares.

use seismo_promql::QueryLimits;
use seismo_store::Store;

/// What every handler needs: the store (cheap to clone; shared inside), and
/// the limits PromQL queries run within.
#[derive(Clone)]
pub struct QueryState {
    /// The database every endpoint reads.
    pub store: Store,
    /// The per-query limits of the Prometheus API.
    pub query_limits: QueryLimits,
}

impl QueryState {
    /// A state with Prometheus' default query limits.
    pub fn new(store: Store) -> Self {
        QueryState { store, query_limits: QueryLimits::default() }
    }

    /// Sets the limits PromQL queries run within (`--query-max-samples`,
    /// `--query-timeout`).
    #[must_use]
    pub fn with_query_limits(mut self, limits: QueryLimits) -> Self {
        self.query_limits = limits;
        self
    }
}
