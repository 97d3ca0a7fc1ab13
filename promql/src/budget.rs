//! What one PromQL query may cost: Prometheus' `--query.max-samples` and
//! `--query.timeout`, enforced inside the evaluator.
//!
//! Design decisions:
//! - **Samples are counted before they are allocated.** The evaluator holds
//!   a node's value as one slot per series and step, so a node over a grid of
//!   `n` steps costs at least `n` samples; [`Budget::reserve`] is called with
//!   that (and with every series' slots, every loaded sample) *before* the
//!   memory is taken, so `max_over_time(vector(1)[1y:1ms])` (31.5 billion
//!   steps) is refused at once instead of allocating 13 GB.
//! - **What is held, not what was ever made.** When a node returns, the
//!   values of its children are gone; the evaluator resets the count to what
//!   was held before the node plus the node's own result
//!   ([`Budget::settle`]), as Prometheus' engine adds and subtracts
//!   `currentSamples`. The count therefore bounds peak memory to about
//!   `max_samples` × 16 bytes times a small factor (a node's inputs and its
//!   output briefly coexist).
//! - **Time is checked where work is repeated**: at every node and at every
//!   step of the loops that scale with the data (range functions, subqueries,
//!   aggregations), so a query stops within a step of its deadline.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::error::PromqlError;

/// Prometheus' default `--query.max-samples`.
pub const DEFAULT_MAX_SAMPLES: usize = 50_000_000;
/// Prometheus' default `--query.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The per-query limits `seismo serve` is configured with
/// (`--query-max-samples`, `--query-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// The most samples a query may hold in memory at once.
    pub max_samples: usize,
    /// The longest a query may queue and evaluate; a request's `timeout`
    /// parameter may shorten it, never lengthen it (as in Prometheus).
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits { max_samples: DEFAULT_MAX_SAMPLES, timeout: DEFAULT_TIMEOUT }
    }
}

/// The running account of one evaluation. Single-threaded (the evaluator is),
/// hence `Cell`s behind `&self`.
#[derive(Debug)]
pub struct Budget {
    max_samples: usize,
    held: Cell<usize>,
    deadline: Instant,
}

impl Budget {
    pub fn new(max_samples: usize, deadline: Instant) -> Self {
        Budget { max_samples, held: Cell::new(0), deadline }
    }

    /// A budget without limits, for tests of evaluation alone.
    #[cfg(test)]
    pub fn unlimited() -> Self {
        Budget::new(usize::MAX, Instant::now() + Duration::from_secs(86_400 * 365))
    }

    /// Samples held now.
    pub(crate) fn held(&self) -> usize {
        self.held.get()
    }

    /// How many more samples may be held.
    pub(crate) fn remaining(&self) -> usize {
        self.max_samples.saturating_sub(self.held.get())
    }

    /// Accounts for `n` more samples about to be held.
    ///
    /// # Errors
    /// [`PromqlError::TooManySamples`] when that would pass the limit.
    pub(crate) fn reserve(&self, n: usize) -> Result<(), PromqlError> {
        let held = self.held.get().saturating_add(n);
        if held > self.max_samples {
            return Err(PromqlError::TooManySamples);
        }
        self.held.set(held);
        Ok(())
    }

    /// After a node returned: its children's samples are gone; `before`
    /// (held when it started) and its own `result` remain.
    ///
    /// # Errors
    /// [`PromqlError::TooManySamples`] when the result alone passes the limit.
    pub(crate) fn settle(&self, before: usize, result: usize) -> Result<(), PromqlError> {
        self.held.set(before);
        self.reserve(result)
    }

    /// # Errors
    /// [`PromqlError::Timeout`] once the deadline has passed.
    pub(crate) fn check_time(&self) -> Result<(), PromqlError> {
        if Instant::now() > self.deadline {
            return Err(PromqlError::Timeout("expression evaluation"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_fails_past_the_limit_and_settle_releases_children() {
        let b = Budget::new(10, Instant::now() + Duration::from_secs(60));
        b.reserve(6).unwrap();
        b.reserve(4).unwrap();
        assert!(matches!(b.reserve(1), Err(PromqlError::TooManySamples)));
        assert_eq!(b.held(), 10, "a refused reservation holds nothing");
        assert_eq!(b.remaining(), 0);
        b.settle(2, 3).unwrap();
        assert_eq!(b.held(), 5);
        assert!(matches!(b.settle(0, 11), Err(PromqlError::TooManySamples)));
        assert!(matches!(b.reserve(usize::MAX), Err(PromqlError::TooManySamples)));
    }

    #[test]
    fn a_passed_deadline_is_a_timeout_in_expression_evaluation() {
        let b = Budget::new(10, Instant::now() - Duration::from_millis(1));
        let e = b.check_time().unwrap_err();
        assert_eq!(e.to_string(), "query timed out in expression evaluation");
        assert!(Budget::unlimited().check_time().is_ok());
    }
}
