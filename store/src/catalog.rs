//! The catalog: which segments exist and how far the WAL has been flushed.
//!
//! One small JSON file, replaced atomically (write temp, fsync, rename, fsync
//! directory). A segment's files are written and synced before the catalog
//! names them, and WAL files are deleted only after the catalog that covers
//! them is durable, so a crash at any point leaves either the old state plus a
//! WAL that replays, or the new state.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::segment::SegmentMeta;
use crate::wal::sync_dir;

pub const FILE_NAME: &str = "catalog.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
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

    /// Loads the catalog, or an empty one for a new data directory.
    ///
    /// # Errors
    /// `Corrupt` when the file exists but does not parse.
    pub fn load(dir: &Path) -> Result<Self> {
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
                Ok(c)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Catalog { version: FORMAT_VERSION, flushed_seq: 0, next_segment_id: 1, segments: Vec::new() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Durably replaces the catalog file.
    pub fn store(&self, dir: &Path) -> Result<()> {
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
