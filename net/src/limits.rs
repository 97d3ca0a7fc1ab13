//! What every listener enforces, and the connection budget listeners share.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per-listener timeouts. `Limits::default()` suits every seismo port.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a client may take to send a request head (slow-loris), and how long a
    /// connection may sit without a request in flight before it is closed: HTTP/1
    /// keep-alive connections and HTTP/2 connections with no open stream.
    pub idle_timeout: Duration,
    /// How long a request body may take to arrive in full.
    pub body_timeout: Duration,
    /// How long a graceful stop waits for open requests before closing connections.
    pub drain_timeout: Duration,
    /// The connection budget; usually one shared by all of a process' listeners.
    pub connections: ConnectionLimit,
}

impl Limits {
    /// 30 s to send a head (and to stay idle), as nginx' `client_header_timeout` and
    /// Go's usual `IdleTimeout`; a 20 MiB body has a minute (≈ 350 KB/s at least).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    /// See [`Limits::DEFAULT_IDLE_TIMEOUT`].
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
    /// Requests in flight get this long to finish on shutdown.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            connections: ConnectionLimit::from_open_files_limit(),
        }
    }
}

/// How many client connections may be open at once; clones share one budget.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    max: usize,
    permits: Arc<Semaphore>,
}

/// File descriptors kept back from clients: the WAL, segment files and indexes, the
/// outbound connections of the agent, and headroom.
const RESERVED_FILES_MIN: u64 = 128;
/// Never more than this many client connections by default, whatever the fd limit.
const DEFAULT_MAX_CONNECTIONS: u64 = 16_384;

impl ConnectionLimit {
    /// A budget of `max` connections (at least one).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        ConnectionLimit { max, permits: Arc::new(Semaphore::new(max)) }
    }

    /// Three quarters of the open-files limit (at least 128 kept back), at most 16,384.
    /// Past it the process would fail to open its own files and every new
    /// connection, ingest and queries alike, would stall.
    pub fn from_open_files_limit() -> Self {
        let files = open_files_limit().unwrap_or(1024);
        let reserve = (files / 4).max(RESERVED_FILES_MIN);
        Self::new(files.saturating_sub(reserve).clamp(16, DEFAULT_MAX_CONNECTIONS) as usize)
    }

    /// The budget's size.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// A slot for one more connection, or `None` when the budget is spent.
    pub(crate) fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

// `rlim_t` is `u64` here but not on every platform, hence the casts; getrlimit
// has no safe wrapper in the dependency tree.
#[allow(clippy::unnecessary_cast, unsafe_code)]
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur as u64)
}

/// Raises the soft open-files limit to the hard limit, as Go's runtime does at start:
/// a server holding thousands of connections and segment files needs more than the
/// usual soft default of 1,024. Returns the limit in force afterwards.
#[allow(clippy::unnecessary_cast, unsafe_code)]
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: as in `open_files_limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur as u64);
        }
    }
    Some(limit.rlim_cur as u64)
}

/// Turns transparent huge pages off for this process (Linux). The allocator
/// asks for them (madvise), and a 2 MiB page counts whole in the resident set
/// however little of it is used: serving 10M spans, peak RSS was 543 MB with
/// them and 459 MB without, at the same ingest rate. Returns whether it took.
#[allow(unsafe_code)]
pub fn no_transparent_huge_pages() -> bool {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_by_clones_and_given_back_on_drop() {
        let limit = ConnectionLimit::new(2);
        let other = limit.clone();
        let a = limit.try_admit().unwrap();
        let _b = other.try_admit().unwrap();
        assert!(limit.try_admit().is_none());
        assert_eq!(limit.open(), 2);
        drop(a);
        assert!(other.try_admit().is_some());
    }

    #[test]
    fn the_default_keeps_files_back_for_the_store() {
        let files = open_files_limit().unwrap();
        let max = ConnectionLimit::from_open_files_limit().max() as u64;
        assert!(max <= files.saturating_sub(RESERVED_FILES_MIN).max(16), "{max} of {files}");
        assert!(max <= DEFAULT_MAX_CONNECTIONS);
    }
}
