//! The catalog: which segments exist and how far the WAL has been flushed.
//!
//! One small JSON file, replaced atomically (write temp, fsync, rename, fsync
//! directory). A segment's files are written and synced before the catalog
//! names them, and WAL files are deleted only after the catalog that covers
//! them is durable, so a crash at any point leaves either the old state plus a
//! WAL that replays, or the new state.
//!
//! The catalog is an index of what the segment files say about themselves
//! (see `segment::SegmentFooter`): when it is missing or unreadable it is
//! rebuilt from them (`recovery`), never trusted to decide that a segment file
//! is garbage.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::segment::SegmentMeta;
use crate::wal::sync_dir;

pub(crate) const FILE_NAME: &str = "catalog.json";
pub(crate) const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Catalog {
    pub version: u32,
    /// Every WAL record with `seq <= flushed_seq` is in a segment.
    pub flushed_seq: u64,
    pub next_segment_id: u64,
    pub segments: Vec<SegmentMeta>,
}

impl Catalog {
    fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// An empty catalog, for a new data directory.
    pub(crate) fn empty() -> Self {
        Catalog { version: FORMAT_VERSION, flushed_seq: 0, next_segment_id: 1, segments: Vec::new() }
    }

    /// Where the catalog of the data directory `dir` lives.
    pub(crate) fn file(dir: &Path) -> PathBuf {
        Self::path(dir)
    }

    /// Loads the catalog; `Ok(None)` when there is no catalog file.
    ///
    /// # Errors
    /// `Corrupt` when the file exists but does not parse; I/O errors reading it.
    pub(crate) fn load(dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(dir);
        match fs::read(&path) {
            Ok(bytes) => {
                let c: Catalog = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
                if c.version != FORMAT_VERSION {
                    return Err(StoreError::Corrupt(format!(
                        "{}: unsupported catalog version {}",
                        path.display(),
                        c.version
                    )));
                }
                Ok(Some(c))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Durably replaces the catalog file.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = path.with_extension("json.tmp");
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(&serde_json::to_vec_pretty(self).expect("catalog serializes"))?;
            f.sync_all()
        });
        if let Err(e) = written {
            // A half-written temporary file holds space a full disk needs back.
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        fs::rename(&tmp, &path)?;
        sync_dir(dir)?;
        Ok(())
    }
}
