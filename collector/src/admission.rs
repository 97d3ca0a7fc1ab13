//! Admission by memory: a request reserves, before its body is read, the memory it will
//! hold while it is decoded and stored, from one budget shared by both receivers.
//!
//! Why: a body is held several times over while it is decoded (raw bytes, the decoded
//! request, the rows, the WAL frame), and OTLP/JSON far more than that (a `Value` tree
//! is built first: see `json/mod.rs`). Without a shared bound, sixteen concurrent 19 MiB
//! JSON bodies took 9 GB. With it, requests beyond the budget wait (fairly, in arrival
//! order) for up to [`RESERVE_WAIT`], then are refused with 429 / `RESOURCE_EXHAUSTED`
//! and a retry hint, which exporters honour — while their bodies are still unread.
//!
//! A request larger than the whole budget is admitted when it has the budget to itself,
//! so `max_body_bytes` stays the only size limit a client sees.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::CollectorError;

/// How long a request waits for memory before it is refused as overloaded.
pub(crate) const RESERVE_WAIT: Duration = Duration::from_secs(5);

/// Memory held per byte of a decoded protobuf body, on top of the body itself: the
/// prost request, the rows it becomes and the WAL frame built from the body
/// (`bench/ingest.sh`'s RSS figures; see BENCHMARKS.md).
pub(crate) const PROTOBUF_HELD_PER_BYTE: usize = 4;
/// The same for an OTLP/JSON body: the `serde_json::Value` tree dominates.
pub(crate) const JSON_HELD_PER_BYTE: usize = 24;

/// Budget granularity: permits are KiB, so 4 TiB fit in a `u32` acquisition.
const UNIT: usize = 1024;

/// The memory budget for requests in flight; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct MemoryBudget {
    permits: Arc<Semaphore>,
    capacity: u32,
    wait: Duration,
}

/// Memory reserved by one request; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        let capacity = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).max(1);
        MemoryBudget { permits: Arc::new(Semaphore::new(capacity as usize)), capacity, wait: RESERVE_WAIT }
    }

    /// The same budget with another wait (tests).
    #[cfg(test)]
    fn with_wait(self, wait: Duration) -> Self {
        MemoryBudget { wait, ..self }
    }

    /// Waits for `bytes` of the budget.
    ///
    /// # Errors
    /// [`CollectorError::Overloaded`] when the budget stays spent for [`RESERVE_WAIT`].
    pub(crate) async fn reserve(&self, bytes: usize) -> Result<Reservation, CollectorError> {
        let mut reservation = Reservation { permit: None };
        self.grow(&mut reservation, bytes).await?;
        Ok(reservation)
    }

    /// Adds `bytes` to what `reservation` holds (capped so that one request never needs
    /// more than the whole budget).
    ///
    /// # Errors
    /// As [`MemoryBudget::reserve`].
    pub(crate) async fn grow(&self, reservation: &mut Reservation, bytes: usize) -> Result<(), CollectorError> {
        let held = reservation.permit.as_ref().map_or(0, |p| p.num_permits() as u32);
        let wanted = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).min(self.capacity - held);
        if wanted == 0 {
            return Ok(());
        }
        let acquire = self.permits.clone().acquire_many_owned(wanted);
        let permit = match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => {
                return Err(CollectorError::Overloaded { budget_bytes: self.capacity as usize * UNIT });
            }
        };
        match &mut reservation.permit {
            Some(held) => held.merge(permit),
            None => reservation.permit = Some(permit),
        }
        Ok(())
    }

    /// Bytes of the budget in use now (for self-telemetry and tests).
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        (self.capacity as usize - self.permits.available_permits()) * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_are_given_back_and_capped_at_the_budget() {
        let budget = MemoryBudget::new(10 * UNIT);
        let mut a = budget.reserve(3 * UNIT).await.unwrap();
        assert_eq!(budget.in_use(), 3 * UNIT);
        budget.grow(&mut a, 100 * UNIT).await.unwrap();
        assert_eq!(budget.in_use(), 10 * UNIT, "one request never needs more than the whole budget");
        drop(a);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_after_the_wait() {
        let budget = MemoryBudget::new(4 * UNIT).with_wait(Duration::from_millis(50));
        let _held = budget.reserve(4 * UNIT).await.unwrap();
        let err = budget.reserve(UNIT).await.unwrap_err();
        assert!(matches!(err, CollectorError::Overloaded { budget_bytes } if budget_bytes == 4 * UNIT), "{err}");
    }

    #[tokio::test]
    async fn a_waiting_request_gets_memory_as_soon_as_it_is_given_back() {
        let budget = MemoryBudget::new(4 * UNIT).with_wait(Duration::from_secs(30));
        let held = budget.reserve(4 * UNIT).await.unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(2 * UNIT).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(held);
        waiting.await.unwrap().unwrap();
    }
}
