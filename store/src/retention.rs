//! Retention rules. By size (`--max-disk-bytes`): when the data directory
//! grows past its limit, the oldest segments are dropped, so a full disk does
//! not happen in the first place. By age (`--retention`): a segment whose
//! newest data is older than the limit is dropped whole (a segment with one
//! recent row stays whole; data is never cut out of a segment).
//!
//! Only segments are ever dropped: the WAL and the memtables hold data not yet
//! flushed, and the catalog is tiny. The flusher thread (the one writer of the
//! catalog) checks after every flush and every [`CHECK_INTERVAL`]; a segment
//! leaves the catalog first (durably), then its files are deleted, so a crash
//! in between leaves only stray files that start-up removes.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::segment::SegmentMeta;

/// How often the flusher checks the limits when no flush ran.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Why retention dropped a segment (a bounded metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    Age,
    Size,
}

/// Whether everything in the segment is older than `cutoff` (ns since the epoch).
pub(crate) fn is_expired(meta: &SegmentMeta, cutoff: i64) -> bool {
    meta.max_time < cutoff
}

/// Bytes of every file under `dir`, recursively (what `du` would count, by length).
/// Files that vanish while walking are skipped.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// How many of `segments` (oldest first, as the catalog lists them) to drop so
/// that `used` bytes fall to `limit` or below; all of them if even that is not enough.
pub(crate) fn oldest_to_drop(segments: &[SegmentMeta], used: u64, limit: u64) -> usize {
    let mut remaining = used;
    let mut drop = 0;
    for meta in segments {
        if remaining <= limit {
            break;
        }
        remaining = remaining.saturating_sub(meta.bytes);
        drop += 1;
    }
    drop
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Signal;

    fn meta(id: u64, bytes: u64) -> SegmentMeta {
        SegmentMeta {
            id,
            signal: Signal::Traces,
            rows: 1,
            bytes,
            min_time: 0,
            max_time: 0,
            services: Vec::new(),
            operations: Vec::new(),
            metrics: Vec::new(),
            has_index: false,
            compacted_from: Vec::new(),
        }
    }

    #[test]
    fn drops_the_oldest_until_under_the_limit() {
        let segments = [meta(1, 100), meta(2, 100), meta(3, 100)];
        assert_eq!(oldest_to_drop(&segments, 300, 300), 0);
        assert_eq!(oldest_to_drop(&segments, 301, 300), 1);
        assert_eq!(oldest_to_drop(&segments, 350, 200), 2);
        // The WAL alone is over the limit: every segment goes, and that is all retention can do.
        assert_eq!(oldest_to_drop(&segments, 1000, 10), 3);
    }

    #[test]
    fn a_segment_expires_only_when_its_newest_data_is_older_than_the_cutoff() {
        let mut m = meta(1, 100);
        (m.min_time, m.max_time) = (10, 20);
        assert!(is_expired(&m, 21));
        assert!(!is_expired(&m, 20), "data at the cutoff itself is kept");
        assert!(!is_expired(&m, 15), "one row newer than the cutoff keeps the segment");
    }

    #[test]
    fn dir_bytes_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 15);
    }
}
