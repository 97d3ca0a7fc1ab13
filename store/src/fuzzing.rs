//! Entry points for the fuzz targets in `fuzz/` (hidden: not an API, no
//! stability promised). Each runs a real path of the store on bytes, without
//! a data directory: start-up's WAL replay, and the validation that turns a
//! decoded request into rows.

use std::path::Path;

use crate::db::{replay_record, Batch};
use crate::error::Result;
use crate::memtable::Memtable;
use crate::model::Signal;
use crate::wal::{self, ReplayReport};

/// What replaying one WAL file's bytes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalReplay {
    /// Sequence numbers of the intact records, in file order.
    pub seqs: Vec<u64>,
    /// Intact records whose payload did not decode or convert (skipped at start-up).
    pub skipped: u64,
    /// Rows the replayed records put into the memtable.
    pub rows: u64,
    /// Damaged stretches skipped between intact frames.
    pub corrupt_regions: u64,
    /// Length of the intact prefix: start-up truncates the file to it.
    pub valid_len: u64,
}

/// Replays `bytes` as the only WAL file of a store with nothing flushed, the
/// way `Store::open` does: frames are scanned, each intact record is decoded,
/// validated and inserted into a memtable.
pub fn replay_wal_file(bytes: &[u8]) -> WalReplay {
    let mut report = ReplayReport::default();
    let mut memtable = Memtable::default();
    let (mut seqs, mut skipped, mut rows) = (Vec::new(), 0, 0);
    let valid_len = wal::replay_file(Path::new("fuzz.log"), bytes, 0, &mut report, &mut |rec| {
        seqs.push(rec.seq);
        match replay_record(&rec, &mut memtable) {
            Ok(added) => rows += added as u64,
            Err(_) => skipped += 1,
        }
    });
    WalReplay { seqs, skipped, rows, corrupt_regions: report.corrupt_regions, valid_len }
}

/// Appends the frame `Store::append` writes for one record to `buf`.
pub fn encode_wal_frame(buf: &mut Vec<u8>, seq: u64, signal: Signal, payload: &[u8]) {
    wal::encode_frame(buf, seq, signal, payload);
}

/// Validates and flattens a decoded request into rows, as `Store::append`
/// does before anything is written; returns (rows, rejected items).
///
/// # Errors
/// What `Store::append` refuses a whole request for (e.g. an id of the wrong
/// length).
pub fn convert(batch: &Batch) -> Result<(usize, u64)> {
    let (rows, rejected, _) = batch.clone().into_rows()?;
    Ok((rows.len(), rejected))
}

/// Reads `bytes` as a trace export request both ways the store can: straight
/// from the bytes (what `Received::from_trace_protobuf` tries first) and with
/// prost and the conversion. Panics when the first takes a request the second
/// refuses, rejects part of, or makes other spans of. Returns whether the
/// first took it.
pub fn check_trace_parse(bytes: &[u8]) -> bool {
    crate::wire::check_against_prost(bytes)
}
