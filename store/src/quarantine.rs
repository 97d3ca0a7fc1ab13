//! `<data-dir>/quarantine/`: where damaged files go instead of being deleted.
//!
//! Damage found at open or at query time never destroys bytes: the damaged
//! segment (Parquet file and index), an unreadable catalog, or a damaged index
//! that was rebuilt from its Parquet file is renamed into this directory, and
//! the store goes on serving everything else. An operator can inspect or
//! salvage what is there, and delete it when done; seismo never does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::db::StoreCounters;
use crate::wal::sync_dir;

pub const DIR_NAME: &str = "quarantine";

/// Moves damaged files aside and counts what it moved.
pub(crate) struct Quarantine {
    dir: PathBuf,
    counters: Arc<StoreCounters>,
}

impl Quarantine {
    pub(crate) fn new(data_dir: &Path, counters: Arc<StoreCounters>) -> Self {
        Self { dir: data_dir.join(DIR_NAME), counters }
    }

    pub(crate) fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    /// Renames `path` (a file or a directory) into the quarantine directory,
    /// under its own name or, when that is taken by an earlier quarantine,
    /// with a numeric suffix. Returns where it went; a path that no longer
    /// exists is not an error (`None`).
    ///
    /// # Errors
    /// I/O errors creating the directory or renaming.
    pub(crate) fn move_in(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        if fs::symlink_metadata(path).is_err() {
            return Ok(None);
        }
        fs::create_dir_all(&self.dir)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "unnamed".into());
        let mut target = self.dir.join(&name);
        let mut n = 1;
        while fs::symlink_metadata(&target).is_ok() {
            target = self.dir.join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(path, &target)?;
        sync_dir(&self.dir)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(Some(target))
    }

    /// Quarantines the files of one damaged segment (whichever of them exist),
    /// logs them with `reason`, and counts the segment.
    ///
    /// # Errors
    /// I/O errors from [`Quarantine::move_in`].
    pub(crate) fn segment(&self, files: &[PathBuf], reason: &str) -> io::Result<()> {
        let mut moved = Vec::new();
        for f in files {
            if let Some(to) = self.move_in(f)? {
                moved.push(format!("{} -> {}", f.display(), to.display()));
            }
        }
        self.counters.quarantined_segments.fetch_add(1, Ordering::Relaxed);
        tracing::error!(files = ?moved, reason, "damaged segment moved to quarantine; serving the others");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_files_and_directories_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(StoreCounters::default());
        let q = Quarantine::new(dir.path(), counters.clone());
        let seg = dir.path().join("0001-traces.parquet");
        let idx = dir.path().join("0001-traces.tantivy");
        fs::write(&seg, b"first").unwrap();
        fs::create_dir(&idx).unwrap();
        fs::write(idx.join("meta.json"), b"{}").unwrap();
        q.segment(&[seg.clone(), idx.clone()], "test").unwrap();
        assert!(!seg.exists() && !idx.exists());
        let qdir = dir.path().join(DIR_NAME);
        assert_eq!(fs::read(qdir.join("0001-traces.parquet")).unwrap(), b"first");
        assert!(qdir.join("0001-traces.tantivy/meta.json").exists());
        // The same name again keeps both.
        fs::write(&seg, b"second").unwrap();
        q.segment(&[seg.clone(), idx.clone()], "test").unwrap();
        assert_eq!(fs::read(qdir.join("0001-traces.parquet")).unwrap(), b"first");
        assert_eq!(fs::read(qdir.join("0001-traces.parquet.1")).unwrap(), b"second");
        assert_eq!(counters.quarantined_segments.load(Ordering::Relaxed), 2);
    }
}
