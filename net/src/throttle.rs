//! Rate-limited logging for events that can come in floods (refused connections,
//! back-pressure answers): the first occurrence is logged, then at most one line per
//! interval carrying how many were not logged in between.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Decides when a repeated event deserves a log line.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// A throttle that lets one line through per `every`.
    pub const fn new(every: Duration) -> Self {
        LogThrottle { every, last: Mutex::new(None), suppressed: AtomicU64::new(0) }
    }

    /// Records one occurrence. `Some(n)` means "log now": `n` occurrences were
    /// swallowed since the previous line.
    pub fn hit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *last {
            Some(at) if now.duration_since(at) < self.every => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_hit_logs_then_counts_until_the_interval_passes() {
        let throttle = LogThrottle::new(Duration::from_millis(50));
        assert_eq!(throttle.hit(), Some(0));
        assert_eq!(throttle.hit(), None);
        assert_eq!(throttle.hit(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(throttle.hit(), Some(2));
        assert_eq!(throttle.hit(), None);
    }
}
