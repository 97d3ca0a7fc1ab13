//! Retention on the flusher thread, the catalog's one writer: whole segments
//! leave the store when their newest data is older than `retention` (age), and
//! the oldest go while the data directory is over `max_disk_bytes` (size). A
//! segment leaves the catalog first (durably), then the set queries read, then
//! its files are deleted: a crash in between leaves only stray files, which
//! start-up removes. The rules themselves are in `crate::retention`.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Inner;
use crate::catalog::Catalog;
use crate::retention::{self, Reason};
use crate::segment::SegmentMeta;

/// Applies both limits: age first (it may free enough for the size limit).
pub(super) fn enforce_retention(inner: &Inner) {
    if let Some(age) = inner.config.retention {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let cutoff = i64::try_from(now.saturating_sub(age).as_nanos()).unwrap_or(i64::MAX);
        drop_expired(inner, cutoff);
    }
    enforce_disk_limit(inner);
}

/// Drops every segment whose newest data (`max_time`) is older than `cutoff` (ns).
fn drop_expired(inner: &Inner, cutoff: i64) {
    let catalog = inner.catalog.lock().unwrap();
    let (expired, kept): (Vec<SegmentMeta>, Vec<SegmentMeta>) =
        catalog.segments.iter().cloned().partition(|meta| retention::is_expired(meta, cutoff));
    if expired.is_empty() {
        return;
    }
    let mut next = catalog.clone();
    next.segments = kept;
    if commit_drop(inner, catalog, next, &expired, Reason::Age) {
        tracing::info!(
            segments = expired.len(),
            freed = expired.iter().map(|m| m.bytes).sum::<u64>(),
            "deleted segments older than --retention"
        );
    }
}

/// Deletes the oldest segments while the data directory is over `max_disk_bytes`.
fn enforce_disk_limit(inner: &Inner) {
    let Some(limit) = inner.config.max_disk_bytes else { return };
    let used = retention::dir_bytes(&inner.config.data_dir);
    if used <= limit {
        return;
    }
    let catalog = inner.catalog.lock().unwrap();
    let count = retention::oldest_to_drop(&catalog.segments, used, limit);
    if count == 0 {
        tracing::warn!(used, limit, "data directory is over --max-disk-bytes, but holds no segment to delete");
        return;
    }
    let mut next = catalog.clone();
    let dropped: Vec<SegmentMeta> = next.segments.drain(..count).collect();
    if commit_drop(inner, catalog, next, &dropped, Reason::Size) {
        let freed: u64 = dropped.iter().map(|m| m.bytes).sum();
        tracing::info!(
            segments = dropped.len(),
            freed,
            used,
            limit,
            "deleted the oldest segments to stay under --max-disk-bytes"
        );
    }
}

/// Stores `next` (the catalog without `dropped`) durably, then takes the
/// segments out of the set queries read and deletes their files. Returns
/// whether it did; on a failed catalog write nothing changes (logged).
fn commit_drop(
    inner: &Inner,
    mut catalog: MutexGuard<'_, Catalog>,
    next: Catalog,
    dropped: &[SegmentMeta],
    reason: Reason,
) -> bool {
    if let Err(e) = next.store(&inner.config.data_dir) {
        tracing::error!(error = %e, "retention cannot update the catalog; keeping every segment for now");
        return false;
    }
    *catalog = next;
    inner.sources.write().unwrap().remove_segments(dropped);
    delete_segment_files(&inner.seg_dir, dropped);
    drop(catalog);
    let counter = match reason {
        Reason::Age => &inner.counters.retention_deleted_segments_age,
        Reason::Size => &inner.counters.retention_deleted_segments_size,
    };
    counter.fetch_add(dropped.len() as u64, Ordering::Relaxed);
    true
}

/// Deletes the files of segments no catalog names any more. Reads through
/// older snapshots keep working on open file handles where the OS allows.
fn delete_segment_files(seg_dir: &Path, dropped: &[SegmentMeta]) {
    for meta in dropped {
        for path in crate::segment::files_of(seg_dir, meta) {
            if let Err(e) = crate::segment::remove_path(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a segment retention dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::super::testing::{has_trace, log_of, one_span, span_of};
    use super::*;
    use crate::db::{Store, StoreConfig};
    use crate::model::Signal;

    #[test]
    fn retention_deletes_the_oldest_segments_past_max_disk_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        for trace in 1..=3 {
            store.append_blocking(one_span(trace)).unwrap();
            store.flush().unwrap();
        }
        let first = store.segments()[0].clone();
        let used = retention::dir_bytes(dir.path());
        store.close().unwrap();

        // Over the limit by less than the oldest segment: that one goes, the rest stays.
        let mut config = StoreConfig::new(dir.path());
        config.max_disk_bytes = Some(used - first.bytes / 2);
        let store = Store::open(config).unwrap();
        enforce_retention(&store.inner);
        assert_eq!(store.segments().len(), 2);
        assert!(!store.segments().iter().any(|s| s.id == first.id));
        assert!(!first.parquet_path(&dir.path().join("segments")).exists());
        assert!(!first.index_path(&dir.path().join("segments")).exists());
        assert!(!has_trace(&store, 1) && has_trace(&store, 2) && has_trace(&store, 3));
        assert_eq!(store.counters().retention_deleted_segments_size.load(Ordering::Relaxed), 1);
        enforce_retention(&store.inner);
        assert_eq!(store.segments().len(), 2, "under the limit now: nothing more goes");
        store.close().unwrap();
        // The catalog was updated first: a restart does not bring the segment back.
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert_eq!(store.segments().len(), 2);
        assert!(!has_trace(&store, 1) && has_trace(&store, 3));
        store.close().unwrap();
    }

    /// `--retention`: exactly the segments whose newest data is older than
    /// now - retention go, whatever their place in the catalog; a segment
    /// with one recent row stays whole; the catalog says so after a restart.
    #[test]
    fn retention_drops_exactly_the_segments_older_than_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let hours_ago = |h: u64| now - h * 3_600_000_000_000;
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        // Segment 1: old spans and an old log (two files, one id). Segment 2: recent.
        // Segment 3: old, after a recent one in the catalog. Segment 4: an old span
        // and a recent one.
        store.append_blocking(span_of("a", 1, 1, None, hours_ago(5))).unwrap();
        store.append_blocking(log_of("a", "old news", hours_ago(5))).unwrap();
        store.flush().unwrap();
        store.append_blocking(span_of("a", 2, 1, None, hours_ago(0))).unwrap();
        store.flush().unwrap();
        store.append_blocking(span_of("a", 3, 1, None, hours_ago(3))).unwrap();
        store.flush().unwrap();
        store.append_blocking(span_of("a", 4, 1, None, hours_ago(4))).unwrap();
        store.append_blocking(span_of("a", 5, 1, None, hours_ago(0))).unwrap();
        store.flush().unwrap();
        let before: Vec<(u64, Signal)> = store.segments().iter().map(|s| (s.id, s.signal)).collect();
        assert_eq!(before.len(), 5, "{before:?}");
        store.close().unwrap();

        let mut config = StoreConfig::new(dir.path());
        config.retention = Some(Duration::from_secs(2 * 3600));
        let store = Store::open(config).unwrap();
        enforce_retention(&store.inner);
        let left: Vec<u64> = store.segments().iter().map(|s| s.id).collect();
        assert_eq!(left, vec![2, 4]);
        let seg_dir = dir.path().join("segments");
        let mut files: Vec<String> =
            std::fs::read_dir(&seg_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        files.sort();
        assert!(
            files.iter().all(|f| f.starts_with("0000000000000002-") || f.starts_with("0000000000000004-")),
            "{files:?}"
        );
        assert!(!has_trace(&store, 1) && !has_trace(&store, 3));
        assert!(has_trace(&store, 2) && has_trace(&store, 4) && has_trace(&store, 5));
        let c = store.counters();
        assert_eq!(c.retention_deleted_segments_age.load(Ordering::Relaxed), 3);
        assert_eq!(c.retention_deleted_segments_size.load(Ordering::Relaxed), 0);
        enforce_retention(&store.inner);
        assert_eq!(c.retention_deleted_segments_age.load(Ordering::Relaxed), 3, "nothing more expired");
        store.close().unwrap();

        // The catalog was updated first: a restart (without retention) does not bring them back.
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert_eq!(store.segments().iter().map(|s| s.id).collect::<Vec<_>>(), vec![2, 4]);
        assert!(!has_trace(&store, 1) && has_trace(&store, 2) && has_trace(&store, 4));
        store.close().unwrap();
    }

    /// The flusher applies `--retention` after a flush by itself: a flush of
    /// old data is dropped without anyone asking.
    #[test]
    fn the_flusher_drops_expired_segments_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.retention = Some(Duration::from_secs(3600));
        let store = Store::open(config).unwrap();
        store.append_blocking(span_of("a", 1, 1, None, 1_000_000_000)).unwrap();
        store.flush().unwrap();
        assert!(store.segments().is_empty());
        assert!(!has_trace(&store, 1));
        assert_eq!(store.counters().retention_deleted_segments_age.load(Ordering::Relaxed), 1);
        store.close().unwrap();
    }
}
