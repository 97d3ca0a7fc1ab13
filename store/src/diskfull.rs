//! "The disk is full" as a state of the store, not an end.
//!
//! When a WAL write, an fsync or a flush fails because the file system (or the
//! user's quota) has no room, the store enters the disk-full state: appends are
//! refused at once with [`StoreError::DiskFull`] without touching the disk,
//! queries go on, and the writer thread probes about once a second
//! ([`probe`]) until there is room again; the first probe that succeeds ends
//! the state and ingest resumes by itself.
//!
//! A probe asks for more than "one byte free": the free space `statvfs`
//! reports must cover what the failed write needed plus [`HEADROOM_BYTES`]
//! (so the state does not flap on the next group), and a real write + fsync of
//! a small file must succeed (a quota is invisible to `statvfs`).

use std::error::Error;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::StoreError;

/// How often the writer thread probes while the disk is full.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Free space a probe asks for beyond what the failed write needed.
pub(crate) const HEADROOM_BYTES: u64 = 1 << 20;
/// Bytes a probe writes and fsyncs.
const PROBE_BYTES: usize = 64 << 10;
/// The probe's file, in the WAL directory (WAL replay ignores other names).
const PROBE_FILE: &str = "disk-probe.tmp";

/// Whether `error` (or an error it wraps) means "no space left" (ENOSPC) or
/// "quota exceeded" (EDQUOT).
///
/// Parquet and tantivy wrap the I/O error in their own types, sometimes only
/// as text, so the source chain is walked and, as a last resort, the message
/// is matched against the OS's wording of the two errors.
pub(crate) fn is_out_of_space(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io_out_of_space(io) {
                return true;
            }
        }
        next = e.source();
    }
    let text = error.to_string();
    text.contains("No space left on device") || text.contains("Disk quota exceeded")
}

fn io_out_of_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
#[allow(unsafe_code)] // statvfs: no safe wrapper in the dependency tree
pub(crate) fn free_bytes(dir: &Path) -> io::Result<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stat` is a properly
    // sized out-parameter that statvfs fills on success.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialized `stat`.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Whether the file system holding `dir` has room for `needed` bytes again:
/// `statvfs` says so and a small file can be written and fsynced there.
///
/// # Errors
/// Errors other than "no space" from statvfs or the probe file.
pub(crate) fn probe(dir: &Path, needed: u64) -> io::Result<bool> {
    if free_bytes(dir)? < needed {
        return Ok(false);
    }
    let path = dir.join(PROBE_FILE);
    let written = (|| {
        let mut file = File::create(&path)?;
        // Not zeros: a compressing file system would store them for free.
        let block: Vec<u8> = (0..PROBE_BYTES).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect();
        file.write_all(&block)?;
        file.sync_all()
    })();
    let _ = fs::remove_file(&path);
    match written {
        Ok(()) => Ok(true),
        Err(e) if io_out_of_space(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The shared disk-full state: set by the writer (WAL) and the flusher
/// (segments), cleared by the writer's probe.
#[derive(Debug, Default)]
pub(crate) struct DiskFullState {
    full: AtomicBool,
    detail: Mutex<Option<Full>>,
}

#[derive(Debug)]
struct Full {
    /// What failed, with the OS's error: "writing the WAL: No space left on device (os error 28)".
    reason: String,
    /// Free bytes a probe must find before writes resume.
    needed: u64,
    since: Instant,
}

impl DiskFullState {
    /// Cheap check for the append path.
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Why writes are refused, while they are.
    pub(crate) fn reason(&self) -> Option<String> {
        self.detail.lock().unwrap().as_ref().map(|f| f.reason.clone())
    }

    /// The error an append gets while the disk is full.
    pub(crate) fn refusal(&self) -> Option<StoreError> {
        self.reason().map(StoreError::DiskFull)
    }

    /// Enters (or stays in) the state; `needed` is the room the failed write
    /// asked for (the probe adds [`HEADROOM_BYTES`]).
    pub(crate) fn enter(&self, reason: String, needed: u64) {
        let needed = needed.saturating_add(HEADROOM_BYTES);
        let mut detail = self.detail.lock().unwrap();
        match detail.as_mut() {
            Some(full) => {
                full.needed = full.needed.max(needed);
                full.reason = reason;
            }
            None => {
                tracing::error!(reason = %reason, needed, "disk full: refusing writes until there is room again; queries go on");
                *detail = Some(Full { reason, needed, since: Instant::now() });
                self.full.store(true, Ordering::Release);
            }
        }
    }

    /// Free bytes the next probe must find (0 when not full).
    pub(crate) fn needed(&self) -> u64 {
        self.detail.lock().unwrap().as_ref().map_or(0, |f| f.needed)
    }

    /// After a successful flush freed its WAL files, the flush's own estimate
    /// no longer matters: only the headroom is asked for.
    pub(crate) fn forget_needed(&self) {
        if let Some(full) = self.detail.lock().unwrap().as_mut() {
            full.needed = HEADROOM_BYTES;
        }
    }

    /// Leaves the state (a probe found room).
    pub(crate) fn clear(&self) {
        if let Some(full) = self.detail.lock().unwrap().take() {
            self.full.store(false, Ordering::Release);
            tracing::warn!(
                after_secs = full.since.elapsed().as_secs(),
                "disk has room again: accepting writes (was: {})",
                full.reason
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_edquot_are_out_of_space_also_when_wrapped() {
        let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(is_out_of_space(&enospc));
        assert!(is_out_of_space(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_out_of_space(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(StoreError::Io(io::Error::from_raw_os_error(libc::ENOSPC)).is_out_of_space());
        // Parquet keeps the io::Error as its source; tantivy sometimes only its text.
        let parquet = StoreError::Parquet(parquet::errors::ParquetError::External(Box::new(enospc)));
        assert!(parquet.is_out_of_space(), "{parquet}");
        let text = StoreError::Corrupt(format!("writing: {}", io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(text.is_out_of_space(), "{text}");
        assert!(!StoreError::Io(io::Error::from_raw_os_error(libc::EIO)).is_out_of_space());
    }

    #[test]
    fn state_needs_room_for_the_failed_write_plus_headroom() {
        let state = DiskFullState::default();
        assert!(!state.is_full() && state.refusal().is_none() && state.needed() == 0);
        state.enter("writing the WAL: no space".into(), 10);
        state.enter("flushing: no space".into(), 5);
        assert!(state.is_full());
        assert_eq!(state.needed(), 10 + HEADROOM_BYTES);
        let refusal = state.refusal().unwrap();
        assert_eq!(refusal.to_string(), "disk full: flushing: no space");
        state.forget_needed();
        assert_eq!(state.needed(), HEADROOM_BYTES);
        state.clear();
        assert!(!state.is_full() && state.reason().is_none());
    }

    #[test]
    fn probe_finds_room_in_a_roomy_directory_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(probe(dir.path(), 1).unwrap());
        assert!(!probe(dir.path(), u64::MAX).unwrap());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
