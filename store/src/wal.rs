//! Write-ahead log: the durability boundary.
//!
//! A WAL is a directory of files `wal-<first seq, 20 digits>.log`. Each file is a
//! sequence of frames:
//!
//! ```text
//! [len: u32 LE][crc32: u32 LE][seq: u64 LE][signal: u8][payload: len-9 bytes]
//! ```
//!
//! `len` counts everything after the crc; the crc covers the same bytes. The
//! payload is the protobuf encoding of the OTLP export request, so replay runs
//! the very conversion that ingest ran. Files are only ever appended to by the
//! one writer thread and are rotated when the memtables are frozen for a flush,
//! so a whole file can be deleted once a flush has covered its last sequence.
//!
//! Replay stops at the first frame that is short or fails its checksum: that is
//! a write torn by a crash, never acknowledged (acks wait for fsync), and the
//! file is truncated there.
//!
//! A group whose write or fsync fails (a full disk) is cut off again before the
//! writer appends anything else: see [`WalWriter::repair`] for why that is the
//! safe way back after a failed fsync.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::model::Signal;

const HEADER: usize = 8; // len + crc
const FIXED: usize = 9; // seq + signal
/// A frame larger than this is treated as corruption (requests are capped far lower).
const MAX_FRAME: usize = 1 << 30;

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub seq: u64,
    pub signal: Signal,
    pub payload: Vec<u8>,
}

/// Appends frames to the newest WAL file.
pub struct WalWriter {
    dir: PathBuf,
    file: File,
    next_seq: u64,
    /// File length covered by the last successful fsync: everything up to here is
    /// acknowledged, nothing after it is.
    synced_len: u64,
    /// A write or fsync failed after `synced_len`: the tail must be cut off
    /// ([`WalWriter::repair`]) before anything else is appended.
    torn: bool,
}

fn file_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?.strip_suffix(".log")?.parse().ok()
}

/// Makes a directory entry (a new or renamed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// WAL files in `dir`, ordered by their first sequence number.
pub fn list_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_file_name) {
            files.push((seq, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

impl WalWriter {
    /// Starts a new WAL file whose first record will be `next_seq`.
    pub fn create(dir: &Path, next_seq: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(dir.join(file_name(next_seq)))?;
        sync_dir(dir)?;
        Ok(Self { dir: dir.to_path_buf(), file, next_seq, synced_len: 0, torn: false })
    }

    /// The sequence number the next appended record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Encodes one record into `buf` and returns its sequence number. Nothing is
    /// written until [`WalWriter::write_and_sync`].
    pub fn encode(&mut self, buf: &mut Vec<u8>, signal: Signal, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let len = (FIXED + payload.len()) as u32;
        let start = buf.len();
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.push(signal.tag());
        buf.extend_from_slice(payload);
        let crc = crc32fast::hash(&buf[start + HEADER..]);
        buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        seq
    }

    /// Writes a group of encoded frames and fsyncs: on `Ok` they are durable.
    ///
    /// # Errors
    /// The write's or the fsync's error; the group is then not durable and must
    /// not be acknowledged, and the file stays marked torn until
    /// [`WalWriter::repair`] succeeds (which this calls first).
    pub fn write_and_sync(&mut self, buf: &[u8]) -> io::Result<()> {
        self.repair()?;
        let written = self.file.write_all(buf).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => self.synced_len += buf.len() as u64,
            Err(_) => self.torn = true,
        }
        written
    }

    /// Whether a failed group still has to be cut off the file.
    #[cfg(test)]
    pub fn is_torn(&self) -> bool {
        self.torn
    }

    /// After a failed write or fsync: truncates the file back to what the last
    /// successful fsync covered, fsyncs that, and moves the write position there.
    ///
    /// Why truncate rather than retry the fsync or carry on behind the failed
    /// group: after a failed fsync Linux may already have dropped the dirty pages
    /// (marked clean, never written), and a second fsync then reports success for
    /// data that is not on disk ("fsyncgate"). So the failed group is treated as
    /// never written: its callers were refused, the bytes after `synced_len` are
    /// cut off, and the cut is made durable. What precedes `synced_len` was
    /// fsynced before and is untouched. The failed group's sequence numbers are
    /// not reused (gaps are harmless), so even a crash before the cut cannot give
    /// two frames one number. Nothing is appended until the cut succeeds.
    ///
    /// # Errors
    /// I/O errors of truncate / seek / fsync; the file stays torn, call again later.
    pub fn repair(&mut self) -> io::Result<()> {
        if !self.torn {
            return Ok(());
        }
        self.file.set_len(self.synced_len)?;
        self.file.seek(SeekFrom::Start(self.synced_len))?;
        self.file.sync_all()?;
        self.torn = false;
        Ok(())
    }

    /// Test hook: writes half of `buf` (a write torn by a full disk), then fails with `error`.
    #[cfg(test)]
    pub(crate) fn write_half_then_fail(&mut self, buf: &[u8], error: io::Error) -> io::Result<()> {
        self.repair()?;
        self.file.write_all(&buf[..buf.len() / 2])?;
        self.torn = true;
        Err(error)
    }

    /// Closes the current file and starts a new one at the next sequence number.
    pub fn rotate(&mut self) -> io::Result<()> {
        self.repair()?;
        self.file.sync_all()?;
        *self = Self::create(&self.dir, self.next_seq)?;
        Ok(())
    }
}

/// Reads every intact record with `seq > after` in order, calling `f` for each,
/// and returns the highest sequence number seen (or `after` if none).
/// A torn tail is truncated away.
pub fn replay(dir: &Path, after: u64, mut f: impl FnMut(WalRecord)) -> io::Result<u64> {
    let mut last = after;
    for (_, path) in list_files(dir)? {
        let (records, valid_len, file_len) = read_file(&path)?;
        for rec in records {
            last = last.max(rec.seq);
            if rec.seq > after {
                f(rec);
            }
        }
        if valid_len < file_len {
            tracing::warn!(
                path = %path.display(),
                valid_len,
                file_len,
                "WAL ends in a torn or corrupt frame; truncating (it was never acknowledged)"
            );
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
    }
    Ok(last)
}

fn read_file(path: &Path) -> io::Result<(Vec<WalRecord>, u64, u64)> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut records = Vec::new();
    let mut offset = 0u64;
    loop {
        let mut header = [0u8; HEADER];
        if !read_full(&mut reader, &mut header)? {
            break;
        }
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
        if !(FIXED..=MAX_FRAME).contains(&len) || offset + (HEADER + len) as u64 > file_len {
            break;
        }
        let mut body = vec![0u8; len];
        if !read_full(&mut reader, &mut body)? || crc32fast::hash(&body) != crc {
            break;
        }
        let seq = u64::from_le_bytes(body[0..8].try_into().unwrap());
        let Some(signal) = Signal::from_tag(body[8]) else { break };
        body.drain(..FIXED);
        records.push(WalRecord { seq, signal, payload: body });
        offset += (HEADER + len) as u64;
    }
    Ok((records, offset, file_len))
}

/// Fills `buf`; `Ok(false)` on a clean or partial end of file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Deletes WAL files every record of which has `seq <= flushed`. The newest file
/// is always kept (the writer appends to it).
pub fn remove_flushed(dir: &Path, flushed: u64) -> io::Result<()> {
    let files = list_files(dir)?;
    for pair in files.windows(2) {
        let (_, path) = &pair[0];
        let (next_first, _) = pair[1];
        if next_first <= flushed + 1 {
            fs::remove_file(path)?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, first: u64, payloads: &[&[u8]]) -> WalWriter {
        let mut w = WalWriter::create(dir, first).unwrap();
        let mut buf = Vec::new();
        for p in payloads {
            w.encode(&mut buf, Signal::Traces, p);
        }
        w.write_and_sync(&buf).unwrap();
        w
    }

    fn collect(dir: &Path, after: u64) -> (Vec<WalRecord>, u64) {
        let mut recs = Vec::new();
        let last = replay(dir, after, |r| recs.push(r)).unwrap();
        (recs, last)
    }

    #[test]
    fn round_trip_and_skip_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = write(dir.path(), 1, &[b"a", b"bb", b"ccc"]);
        w.rotate().unwrap();
        let mut buf = Vec::new();
        w.encode(&mut buf, Signal::Logs, b"dddd");
        w.write_and_sync(&buf).unwrap();
        let (recs, last) = collect(dir.path(), 0);
        assert_eq!(last, 4);
        assert_eq!(recs.iter().map(|r| r.payload.len()).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(recs[3].signal, Signal::Logs);
        let (recs, _) = collect(dir.path(), 2);
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &[b"first", b"second"]);
        let path = dir.path().join(file_name(1));
        let full = fs::metadata(&path).unwrap().len();
        // Simulate a crash in the middle of the second frame.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 3).unwrap();
        let (recs, last) = collect(dir.path(), 0);
        assert_eq!(recs.len(), 1);
        assert_eq!(last, 1);
        assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER + FIXED + 5) as u64);
    }

    #[test]
    fn corrupt_checksum_stops_replay() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &[b"first", b"second"]);
        let path = dir.path().join(file_name(1));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (recs, _) = collect(dir.path(), 0);
        assert_eq!(recs.len(), 1);
    }

    /// Issue 14 item 8: after a write torn by a full disk, the failed group is
    /// cut off, so later groups land right behind the last synced one.
    #[test]
    fn a_failed_group_is_cut_off_before_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = write(dir.path(), 1, &[b"acked"]);
        let mut buf = Vec::new();
        w.encode(&mut buf, Signal::Traces, b"refused because the disk was full");
        let full = io::Error::from_raw_os_error(28);
        assert!(w.write_half_then_fail(&buf, full).is_err());
        assert!(w.is_torn());
        w.repair().unwrap();
        assert!(!w.is_torn());
        let path = dir.path().join(file_name(1));
        assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER + FIXED + 5) as u64);
        buf.clear();
        w.encode(&mut buf, Signal::Traces, b"after");
        w.write_and_sync(&buf).unwrap();
        let (recs, last) = collect(dir.path(), 0);
        assert_eq!(recs.iter().map(|r| r.payload.as_slice()).collect::<Vec<_>>(), vec![&b"acked"[..], b"after"]);
        // The refused group's sequence number is not reused.
        assert_eq!((recs[0].seq, recs[1].seq, last), (1, 3, 3));
    }

    #[test]
    fn remove_flushed_keeps_unflushed_and_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = write(dir.path(), 1, &[b"a", b"b"]);
        w.rotate().unwrap(); // wal-3
        let mut buf = Vec::new();
        w.encode(&mut buf, Signal::Traces, b"c");
        w.write_and_sync(&buf).unwrap();
        w.rotate().unwrap(); // wal-4
        remove_flushed(dir.path(), 2).unwrap();
        let names: Vec<u64> = list_files(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(names, vec![3, 4]);
        remove_flushed(dir.path(), 3).unwrap();
        let names: Vec<u64> = list_files(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(names, vec![4]);
    }
}
