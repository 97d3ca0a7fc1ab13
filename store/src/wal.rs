//! Write-ahead log: the durability boundary.
//!
//! A WAL is a directory of files `wal-<first seq, 20 digits>.log`. Each file is a
//! sequence of frames:
//!
//! ```text
//! [magic: 4 bytes][len: u32 LE][crc32: u32 LE][seq: u64 LE][signal: u8][payload: len-9 bytes]
//! ```
//!
//! `len` counts everything after the crc; the crc covers `len` and those bytes,
//! so every frame verifies on its own. The payload is the protobuf encoding of
//! the OTLP export request, so replay runs the very conversion that ingest ran.
//! Files are only ever appended to by the one writer thread and are rotated
//! when the memtables are frozen for a flush, so a whole file can be deleted
//! once a flush has covered its last sequence.
//!
//! Replay tells damage from a torn write:
//! - a frame that fails to verify but is followed, somewhere later in the file,
//!   by a frame that does is damage in the middle: its bytes are skipped and
//!   reported (file, offset, the sequence numbers lost) and every later intact
//!   frame is replayed. The magic number is what lets replay find the next
//!   frame when a damaged length hides where it starts.
//! - bad bytes with no valid frame after them are a write torn by a crash,
//!   never acknowledged (acks wait for fsync): the file is truncated there.
//!
//! A group whose write or fsync fails (a full disk) is cut off again before the
//! writer appends anything else: see [`WalWriter::repair`] for why that is the
//! safe way back after a failed fsync.
//!
//! Files written before frames had a magic number (`[len][crc][seq][signal]
//! [payload]`, the crc over the bytes after it) are still read: a file whose
//! frames do not start with the magic is read in that format.
//!
//! Past 600 lines only with its tests (framing, torn writes, damage in the
//! middle, repair), which share fixtures with each other, not with other files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::model::Signal;

/// First bytes of every frame. Its last byte is >= 0x40, so as a legacy
/// frame's little-endian length it would exceed `MAX_FRAME`: the two formats
/// cannot be mistaken for each other.
const MAGIC: [u8; 4] = *b"sW\x02\xa7";
const HEADER: usize = 12; // magic + len + crc
const LEGACY_HEADER: usize = 8; // len + crc
const FIXED: usize = 9; // seq + signal
/// A frame larger than this is treated as corruption (requests are capped far lower).
const MAX_FRAME: usize = 1 << 30;

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WalRecord {
    pub seq: u64,
    pub signal: Signal,
    pub payload: Vec<u8>,
}

/// Appends frames to the newest WAL file.
pub(crate) struct WalWriter {
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

/// Appends the frame of one record to `buf` (see the module doc for the layout).
pub(crate) fn encode_frame(buf: &mut Vec<u8>, seq: u64, signal: Signal, payload: &[u8]) {
    let len = (FIXED + payload.len()) as u32;
    let start = buf.len();
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.push(signal.tag());
    buf.extend_from_slice(payload);
    let crc = frame_crc(&buf[start + 4..start + 8], &buf[start + HEADER..]);
    buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Makes a directory entry (a new or renamed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// WAL files in `dir`, ordered by their first sequence number.
pub(crate) fn list_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
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
    pub(crate) fn create(dir: &Path, next_seq: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(dir.join(file_name(next_seq)))?;
        sync_dir(dir)?;
        Ok(Self { dir: dir.to_path_buf(), file, next_seq, synced_len: 0, torn: false })
    }

    /// The sequence number the next appended record gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Encodes one record into `buf` and returns its sequence number. Nothing is
    /// written until [`WalWriter::write_and_sync`].
    pub(crate) fn encode(&mut self, buf: &mut Vec<u8>, signal: Signal, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        encode_frame(buf, seq, signal, payload);
        seq
    }

    /// Writes a group of encoded frames and fsyncs: on `Ok` they are durable.
    ///
    /// # Errors
    /// The write's or the fsync's error; the group is then not durable and must
    /// not be acknowledged, and the file stays marked torn until
    /// [`WalWriter::repair`] succeeds (which this calls first).
    pub(crate) fn write_and_sync(&mut self, buf: &[u8]) -> io::Result<()> {
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
    pub(crate) fn is_torn(&self) -> bool {
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
    pub(crate) fn repair(&mut self) -> io::Result<()> {
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
    pub(crate) fn rotate(&mut self) -> io::Result<()> {
        self.repair()?;
        self.file.sync_all()?;
        *self = Self::create(&self.dir, self.next_seq)?;
        Ok(())
    }
}

/// What replay found besides the records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReplayReport {
    /// The highest sequence number seen (or `after` if none).
    pub last_seq: u64,
    /// Damaged stretches skipped in the middle of files (later frames replayed).
    pub corrupt_regions: u64,
    /// Bytes of torn tails truncated away.
    pub truncated_bytes: u64,
}

/// Reads every intact record with `seq > after` in order, calling `f` for each.
/// Damage in the middle of a file is skipped and reported; a torn tail is
/// truncated away (see the module doc).
///
/// # Errors
/// I/O errors reading the directory or a file, or truncating a torn tail.
pub(crate) fn replay(dir: &Path, after: u64, mut f: impl FnMut(WalRecord)) -> io::Result<ReplayReport> {
    let mut report = ReplayReport { last_seq: after, ..Default::default() };
    for (_, path) in list_files(dir)? {
        // A file holds at most one memtable's worth of requests (it is rotated
        // at every flush), so reading it whole is bounded like the memtable.
        let bytes = fs::read(&path)?;
        let valid_len = replay_file(&path, &bytes, after, &mut report, &mut f);
        if valid_len < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                valid_len,
                file_len = bytes.len(),
                "WAL ends in a torn frame with nothing valid after it; truncating (it was never acknowledged)"
            );
            report.truncated_bytes += bytes.len() as u64 - valid_len;
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
    }
    Ok(report)
}

/// Replays the bytes of one WAL file (`path` only names it in the log): calls
/// `f` with every intact record with `seq > after` and counts damage in
/// `report`. Returns the length of the file's intact prefix; what lies beyond
/// it is a torn tail for the caller to truncate.
pub(crate) fn replay_file(
    path: &Path,
    bytes: &[u8],
    after: u64,
    report: &mut ReplayReport,
    f: &mut impl FnMut(WalRecord),
) -> u64 {
    let mut last_good: Option<u64> = None;
    let scan = scan_frames(bytes, |offset, frame| match frame {
        Scanned::Frame(rec) => {
            report.last_seq = report.last_seq.max(rec.seq);
            last_good = Some(rec.seq);
            if rec.seq > after {
                f(rec);
            }
        }
        Scanned::Corrupt { len, next_seq } => {
            report.corrupt_regions += 1;
            let lost = match (last_good, next_seq) {
                // Checked: a crafted or unlucky frame may carry any sequence number.
                (Some(a), b) if b > a.saturating_add(1) => format!("{}..={}", a + 1, b - 1),
                (None, b) if b > 1 => format!("..={}", b - 1),
                _ => "none".to_string(),
            };
            tracing::error!(
                path = %path.display(),
                offset,
                bytes = len,
                lost_seqs = %lost,
                "WAL frame damaged in the middle of the file: skipped it and replayed the intact frames after it"
            );
        }
    });
    scan.valid_len
}

/// What the scanner met at an offset.
enum Scanned {
    Frame(WalRecord),
    /// `len` bytes that verify as no frame, followed by the frame with `next_seq`.
    Corrupt {
        len: u64,
        next_seq: u64,
    },
}

struct Scan {
    /// Where the last intact frame ends: the file is torn beyond it.
    valid_len: u64,
}

/// The crc of a frame: over its length field and everything after the crc.
fn frame_crc(len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// Decodes the frame body (`seq`, `signal`, payload) once its checksum passed.
fn record(body: &[u8]) -> Option<WalRecord> {
    let seq = u64::from_le_bytes(body[0..8].try_into().unwrap());
    let signal = Signal::from_tag(body[8])?;
    Some(WalRecord { seq, signal, payload: body[FIXED..].to_vec() })
}

/// The frame starting at `at`, if one verifies there, with its total length.
fn frame_at(b: &[u8], at: usize) -> Option<(WalRecord, usize)> {
    let head = b.get(at..at + HEADER)?;
    if head[..4] != MAGIC {
        return None;
    }
    let len = u32_at(head, 4);
    if !(FIXED..=MAX_FRAME).contains(&len) {
        return None;
    }
    let body = b.get(at + HEADER..at + HEADER + len)?;
    if frame_crc(&head[4..8], body) != u32_at(head, 8) as u32 {
        return None;
    }
    Some((record(body)?, HEADER + len))
}

/// A frame in the format without magic numbers.
fn legacy_frame_at(b: &[u8], at: usize) -> Option<(WalRecord, usize)> {
    let head = b.get(at..at + LEGACY_HEADER)?;
    let len = u32_at(head, 0);
    if !(FIXED..=MAX_FRAME).contains(&len) {
        return None;
    }
    let body = b.get(at + LEGACY_HEADER..at + LEGACY_HEADER + len)?;
    if crc32fast::hash(body) != u32_at(head, 4) as u32 {
        return None;
    }
    Some((record(body)?, LEGACY_HEADER + len))
}

/// The next offset after `from` where a frame verifies.
fn next_frame(b: &[u8], from: usize) -> Option<(usize, WalRecord, usize)> {
    let mut at = from;
    while at + HEADER <= b.len() {
        let rel = b[at..].windows(4).position(|w| w == MAGIC)?;
        at += rel;
        if let Some((rec, len)) = frame_at(b, at) {
            return Some((at, rec, len));
        }
        at += 1;
    }
    None
}

/// Walks the frames of one file's bytes, calling `visit` with each intact
/// frame and each damaged stretch that has an intact frame after it.
fn scan_frames(b: &[u8], mut visit: impl FnMut(u64, Scanned)) -> Scan {
    let legacy = !b.is_empty() && !b.starts_with(&MAGIC) && next_frame(b, 0).is_none();
    if legacy {
        return scan_legacy(b, visit);
    }
    let mut at = 0usize;
    while at < b.len() {
        if let Some((rec, len)) = frame_at(b, at) {
            visit(at as u64, Scanned::Frame(rec));
            at += len;
            continue;
        }
        let Some((next, rec, len)) = next_frame(b, at + 1) else { break };
        visit(at as u64, Scanned::Corrupt { len: (next - at) as u64, next_seq: rec.seq });
        visit(next as u64, Scanned::Frame(rec));
        at = next + len;
    }
    Scan { valid_len: at as u64 }
}

/// Legacy frames carry no magic to resynchronise on: a frame whose checksum
/// fails is skipped by its length when the frame after it verifies; anything
/// else ends the file as a torn tail, as this format always did.
fn scan_legacy(b: &[u8], mut visit: impl FnMut(u64, Scanned)) -> Scan {
    let mut at = 0usize;
    while at < b.len() {
        if let Some((rec, len)) = legacy_frame_at(b, at) {
            visit(at as u64, Scanned::Frame(rec));
            at += len;
            continue;
        }
        let skip = b.get(at..at + LEGACY_HEADER).map(|h| LEGACY_HEADER + u32_at(h, 0));
        let after = skip.filter(|s| (LEGACY_HEADER + FIXED..=LEGACY_HEADER + MAX_FRAME).contains(s)).map(|s| at + s);
        let Some((rec, len)) = after.and_then(|next| legacy_frame_at(b, next)) else { break };
        let next = after.unwrap();
        visit(at as u64, Scanned::Corrupt { len: (next - at) as u64, next_seq: rec.seq });
        visit(next as u64, Scanned::Frame(rec));
        at = next + len;
    }
    Scan { valid_len: at as u64 }
}

/// Deletes WAL files every record of which has `seq <= flushed`. The newest file
/// is always kept (the writer appends to it).
pub(crate) fn remove_flushed(dir: &Path, flushed: u64) -> io::Result<()> {
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
        let report = replay(dir, after, |r| recs.push(r)).unwrap();
        (recs, report.last_seq)
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
    fn corrupt_last_frame_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &[b"first", b"second"]);
        let path = dir.path().join(file_name(1));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let mut recs = Vec::new();
        let report = replay(dir.path(), 0, |r| recs.push(r)).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(report.corrupt_regions, 0);
        assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER + FIXED + 5) as u64);
    }

    /// Offsets of the frames of a file written by `write`.
    fn frame_offsets(payloads: &[&[u8]]) -> Vec<usize> {
        let mut at = 0;
        payloads
            .iter()
            .map(|p| {
                let o = at;
                at += HEADER + FIXED + p.len();
                o
            })
            .collect()
    }

    const FOUR: [&[u8]; 4] = [b"frame zero", b"frame one", b"frame two", b"frame three"];

    /// Issue 14 item 6: 4 bytes flipped in frame 1 of 4 discarded frames 2 and 3,
    /// which were intact and acknowledged.
    #[test]
    fn corrupt_middle_frame_is_skipped_and_later_frames_replayed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &FOUR);
        let path = dir.path().join(file_name(1));
        let mut bytes = fs::read(&path).unwrap();
        let len = bytes.len();
        let payload_at = frame_offsets(&FOUR)[1] + HEADER + FIXED;
        for b in &mut bytes[payload_at..payload_at + 4] {
            *b ^= 0xff;
        }
        fs::write(&path, &bytes).unwrap();
        let mut recs = Vec::new();
        let report = replay(dir.path(), 0, |r| recs.push(r)).unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert_eq!(recs[2].payload, b"frame three");
        assert_eq!(report, ReplayReport { last_seq: 4, corrupt_regions: 1, truncated_bytes: 0 });
        // Nothing intact is truncated away.
        assert_eq!(fs::metadata(&path).unwrap().len(), len as u64);
    }

    #[test]
    fn corrupt_length_resynchronises_on_the_next_magic() {
        for bad_len in [u32::MAX, 3, 200, (FIXED + 2) as u32] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), 1, &FOUR);
            let path = dir.path().join(file_name(1));
            let mut bytes = fs::read(&path).unwrap();
            let at = frame_offsets(&FOUR)[1] + 4;
            bytes[at..at + 4].copy_from_slice(&bad_len.to_le_bytes());
            fs::write(&path, &bytes).unwrap();
            let mut recs = Vec::new();
            let report = replay(dir.path(), 0, |r| recs.push(r)).unwrap();
            assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 3, 4], "len {bad_len}");
            assert_eq!(report.corrupt_regions, 1);
        }
    }

    /// Found by the `wal_replay` fuzz target: damage after an intact frame
    /// whose sequence number is `u64::MAX` overflowed `seq + 1` while naming
    /// the lost sequence numbers (a panic in a build with overflow checks).
    #[test]
    fn damage_after_the_largest_sequence_number_does_not_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, u64::MAX, Signal::Traces, b"last");
        bytes.extend_from_slice(b"damaged bytes");
        encode_frame(&mut bytes, 7, Signal::Logs, b"after");
        fs::write(dir.path().join(file_name(1)), &bytes).unwrap();
        let mut recs = Vec::new();
        let report = replay(dir.path(), 0, |r| recs.push(r)).unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![u64::MAX, 7]);
        assert_eq!(report, ReplayReport { last_seq: u64::MAX, corrupt_regions: 1, truncated_bytes: 0 });
    }

    #[test]
    fn garbage_after_the_last_good_frame_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &FOUR);
        let path = dir.path().join(file_name(1));
        let good = fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        // A torn frame: magic and a length, then too few bytes.
        f.write_all(&MAGIC).unwrap();
        f.write_all(&100u32.to_le_bytes()).unwrap();
        f.write_all(b"\0\0\0\0partial").unwrap();
        drop(f);
        let mut recs = Vec::new();
        let report = replay(dir.path(), 0, |r| recs.push(r)).unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(report.corrupt_regions, 0);
        assert_eq!(fs::metadata(&path).unwrap().len(), good);
        // The writer can append after the truncation and replay sees it all.
        let mut w = WalWriter {
            dir: dir.path().to_path_buf(),
            file: OpenOptions::new().append(true).open(&path).unwrap(),
            next_seq: 5,
            synced_len: good,
            torn: false,
        };
        let mut buf = Vec::new();
        w.encode(&mut buf, Signal::Traces, b"five");
        w.write_and_sync(&buf).unwrap();
        let (recs, last) = collect(dir.path(), 0);
        assert_eq!((recs.len(), last), (5, 5));
    }

    /// Frames as written before they carried a magic number.
    fn legacy_frames(first: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let mut body = (first + i as u64).to_le_bytes().to_vec();
            body.push(Signal::Traces.tag());
            body.extend_from_slice(p);
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    #[test]
    fn legacy_files_still_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(1));
        fs::write(&path, legacy_frames(1, &FOUR)).unwrap();
        let (recs, last) = collect(dir.path(), 0);
        assert_eq!(last, 4);
        assert_eq!(recs.iter().map(|r| r.payload.as_slice()).collect::<Vec<_>>(), FOUR.to_vec());

        // A damaged payload with an intact length is skipped by its length.
        let mut bytes = legacy_frames(1, &FOUR);
        let at = LEGACY_HEADER + FIXED + FOUR[0].len() + LEGACY_HEADER + FIXED;
        bytes[at] ^= 0xff;
        let len = bytes.len();
        bytes.extend_from_slice(b"torn");
        fs::write(&path, &bytes).unwrap();
        let mut recs = Vec::new();
        let report = replay(dir.path(), 0, |r| recs.push(r)).unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert_eq!(report.corrupt_regions, 1);
        assert_eq!(fs::metadata(&path).unwrap().len(), len as u64);
    }

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
