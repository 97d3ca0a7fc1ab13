//! Where `/query` and `/query_range` evaluate: on query threads of their
//! own, a bounded number at once, each with a stack sized for the deepest
//! query [`check_nesting`](seismo_promql::check_nesting) lets through and a
//! [`Budget`] of samples and time from [`QueryLimits`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use seismo_promql::{Budget, PromqlError, QueryLimits};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::prometheus::api_error::ApiError;
use crate::prometheus::api_params::parse_duration;
use crate::prometheus::form::Params;

/// How many queries evaluate at once; more wait in a queue, within their
/// timeout (Prometheus' `--query.max-concurrency` default).
pub(crate) const MAX_CONCURRENT_QUERIES: usize = 20;

/// The stack of a query thread. The parser, the checks and the evaluator
/// recurse once or a few times per level of the AST, and
/// [`check_nesting`](seismo_promql::check_nesting) admits at most
/// [`MAX_NESTING_DEPTH`](seismo_promql::MAX_NESTING_DEPTH) levels; the
/// deepest accepted query needs a few MiB in a debug build (see the test
/// `the_deepest_accepted_query_evaluates_on_a_query_thread`). The memory is
/// reserved, not committed: only pages a query touches are.
const QUERY_STACK_BYTES: usize = 32 << 20;

/// Runs `/query` and `/query_range` work: at most
/// [`MAX_CONCURRENT_QUERIES`] at once, each on its own thread with a
/// [`QUERY_STACK_BYTES`] stack and a [`Budget`] ending at its deadline.
#[derive(Clone)]
pub(crate) struct QueryRunner {
    limits: QueryLimits,
    slots: Arc<Semaphore>,
}

impl QueryRunner {
    pub(crate) fn new(limits: QueryLimits) -> Self {
        QueryRunner { limits, slots: Arc::new(Semaphore::new(MAX_CONCURRENT_QUERIES)) }
    }

    /// The deadline of a query arriving now: the server's `--query-timeout`,
    /// or the request's shorter `timeout` (Prometheus caps it the same way).
    pub(crate) fn deadline(&self, p: &Params) -> Result<Instant, ApiError> {
        let mut timeout = self.limits.timeout;
        let text = p.get("timeout");
        if !text.is_empty() {
            let ms = parse_duration(text).map_err(|e| ApiError::param("timeout", e))?;
            let ms = u64::try_from(ms).map_err(|_| ApiError::param("timeout", "timeout must not be negative"))?;
            timeout = timeout.min(Duration::from_millis(ms));
        }
        // A timeout too far out for the clock means "none": a century.
        let now = Instant::now();
        Ok(now.checked_add(timeout).unwrap_or(now + Duration::from_secs(100 * 365 * 86_400)))
    }

    /// Waits for a slot until `deadline`, then runs `work` on a query thread
    /// and answers what it returns. The slot is held by the thread, so a
    /// client that goes away does not free it before the work stops.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        deadline: Instant,
        work: impl FnOnce(&Budget) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = tokio::time::timeout_at(deadline.into(), self.slots.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::from(PromqlError::Timeout("query queue")))?
            .map_err(|e| ApiError::Internal(format!("query slots closed: {e}")))?;
        let (tx, rx) = oneshot::channel();
        let max_samples = self.limits.max_samples;
        std::thread::Builder::new()
            .name("promql".into())
            .stack_size(QUERY_STACK_BYTES)
            .spawn(move || {
                let _slot: OwnedSemaphorePermit = slot;
                let budget = Budget::new(max_samples, deadline);
                let answer = catch_unwind(AssertUnwindSafe(|| work(&budget)))
                    .unwrap_or_else(|_| Err(ApiError::Internal("query evaluation panicked".into())));
                let _ = tx.send(answer);
            })
            .map_err(|e| ApiError::Internal(format!("cannot start a query thread: {e}")))?;
        rx.await.map_err(|_| ApiError::Internal("query thread ended without an answer".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_query_waiting_past_its_deadline_in_the_queue_times_out() {
        let runner = QueryRunner::new(QueryLimits::default());
        let held = runner.slots.clone().acquire_many_owned(MAX_CONCURRENT_QUERIES as u32).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        let got = runner.run(deadline, |_| Ok(())).await.unwrap_err();
        assert!(matches!(&got, ApiError::Timeout(m) if m == "query timed out in query queue"), "{got:?}");
        drop(held);
        // A free slot runs the work on a query thread, with its budget.
        let deadline = Instant::now() + Duration::from_secs(60);
        let name = runner.run(deadline, |_| Ok(std::thread::current().name().map(str::to_string))).await.unwrap();
        assert_eq!(name.as_deref(), Some("promql"));
    }

    #[tokio::test]
    async fn timeout_parameter_shortens_the_server_limit_only() {
        let runner = QueryRunner::new(QueryLimits { timeout: Duration::from_secs(10), ..QueryLimits::default() });
        let params = |t: &str| Params(vec![("timeout".into(), t.into())]);
        // The deadline is `now + timeout` for a `now` between these two instants.
        let timeout_of = |p: &Params| {
            let before = Instant::now();
            let deadline = runner.deadline(p).unwrap();
            let after = Instant::now();
            (deadline - after, deadline - before)
        };
        let within = |(lo, hi): (Duration, Duration), want: Duration| lo <= want && want <= hi;
        assert!(within(timeout_of(&params("1s")), Duration::from_secs(1)));
        assert!(within(timeout_of(&params("1h")), Duration::from_secs(10)), "capped at the server's 10 s");
        assert!(within(timeout_of(&params("")), Duration::from_secs(10)));
        assert!(runner.deadline(&params("-1")).is_err());
    }
}
