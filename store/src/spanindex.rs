//! The search index of a span segment: one file, `<id>-traces.idx`, written
//! next to the Parquet file at flush and answering "the newest traces with a
//! span matching these terms" without reading the Parquet file.
//!
//! Why not tantivy (used for logs, where full text and phrases matter): a
//! Jaeger search is a conjunction of exact terms ranked by time, and the
//! general-purpose index cost ~20 µs per span at flush and 41 B per span on
//! disk while still leaving the ranking to a scan. Here every span gets a
//! **time rank** (0 = the segment's newest span start), and every posting
//! list holds ranks in ascending order. So:
//! - intersecting lists is a merge over one shared order;
//! - the first ranks of an intersection are the newest matching spans, and a
//!   search stops as soon as it has found `limit` traces, or reaches spans
//!   older than what other segments already found;
//! - a time window is a range of ranks, found from the rank-ordered start
//!   times.
//!
//! Terms (see [`Term`]): the service, (service, span name), and every Jaeger
//! tag pair of the span (`tags::for_each_pair`: attributes, resource and
//! event attributes, derived tags), as `key=value` text.
//!
//! Layout (little endian), each section right after the previous one:
//! ```text
//! header     "SPIX" | version u32 | rows u32 | traces u32 | terms u32 | blocks u32
//! rank_row   rows x `width(rows)` bits, + 8 bytes of padding: the row (Parquet position) of each rank
//! trace_row  [u32; traces]        first row of each trace (rows are sorted by trace)
//! trace_id   [[u8; 16]; traces]  versions 2 and 3 only: from 4 on, the ids are read from
//!                                 the segment's `trace_id` column (see [`SpanIndex::with_trace_ids`])
//! block_base [i64; blocks]        start time of each block's first rank
//! block_off  [u32; blocks + 1]    offset of each block in `times`
//! times      per block of BLOCK ranks: a Rice parameter byte, then (previous start - start)
//!            Rice-coded (see `rice`), after its base
//! term table per term, sorted by bytes: len u16 | bytes | count u32 | offset u64 | length u32
//! postings   per term: varint first rank, then a Rice parameter byte and the gaps
//!            (rank - previous rank - 1) Rice-coded;
//!            terms whose lists encode to the same bytes share one copy
//! trailer    crc32 of everything above u32 | "SPIX"
//! ```
//! The file is verified whole (CRC) when a segment first uses it; it is
//! derived data, rebuilt from the Parquet file when damaged or missing.
//! Only the term table and the trace table (ids and first rows, 20 B per
//! trace; the ids come from the Parquet file, which holds them anyway) stay
//! in memory; ranks, times and postings are read with
//! positioned reads as a search needs them. The trace table also answers
//! "which rows hold trace T" exactly, without touching the Parquet file.

use std::collections::hash_map::Entry;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Result, StoreError};
use crate::ids::TraceId;
use crate::packed::SpanView;
use crate::tags;

const MAGIC: &[u8; 4] = b"SPIX";
const VERSION: u32 = 4;
/// The version that kept its own copy of the trace ids (1.6 B per span on
/// the trace benchmark, as much as the Parquet column), still read.
const VERSION_OWN_IDS: u32 = 3;
/// The version before Rice codes (fixed-width blocks of gaps, varint
/// times), still read.
const VERSION_FIXED: u32 = 2;
const HEADER_BYTES: usize = 24;
/// Ranks per block of start times.
const BLOCK: usize = 128;

/// What a posting list is about. The kind byte keeps a service from ever
/// colliding with a tag pair.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Term<'a> {
    Service(&'a str),
    Operation(&'a str, &'a str),
    Tag(&'a str, &'a str),
}

impl Term<'_> {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Writes the term's bytes into `out` (cleared first).
    fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, a, b) = match *self {
            Term::Service(s) => (1u8, s, None),
            Term::Operation(s, n) => (2u8, s, Some(n)),
            Term::Tag(k, v) => (3u8, k, Some(v)),
        };
        out.clear();
        out.push(kind);
        out.extend_from_slice(a.as_bytes());
        if let Some(b) = b {
            out.push(if kind == 3 { b'=' } else { 0 });
            out.extend_from_slice(b.as_bytes());
        }
    }
}

/// Bits needed to write `max`: 0 for 0.
fn width(max: u32) -> u32 {
    32 - max.leading_zeros()
}

fn mask(w: u32) -> u64 {
    (1u64 << w) - 1
}

/// Appends `values`, each `w` bits (little-endian bit order), padded to a byte.
fn pack(values: &[u32], w: u32, out: &mut Vec<u8>) {
    if w == 0 {
        return;
    }
    let (mut acc, mut bits) = (0u64, 0u32);
    for &v in values {
        acc |= u64::from(v) << bits;
        bits += w;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

/// The `i`th `w`-bit value of `packed` (as written by [`pack`]).
fn unpack(packed: &[u8], w: u32, i: usize) -> u32 {
    if w == 0 {
        return 0;
    }
    let bit = i * w as usize;
    let mut word = [0u8; 8];
    let from = bit / 8;
    let to = (from + 8).min(packed.len());
    word[..to - from].copy_from_slice(&packed[from..to]);
    ((u64::from_le_bytes(word) >> (bit % 8)) & mask(w)) as u32
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes one varint at `*pos`; `None` past the end or on an overlong one.
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Builds the index of `rows`, which must be in the segment's row order
/// (sorted by trace id), and writes it to `path` through a temporary file,
/// fsynced. Returns the file's size.
pub(crate) fn write<S: SpanView>(path: &Path, rows: &[S]) -> Result<u64> {
    let mut b = Builder::default();
    for r in rows {
        b.add(r)?;
    }
    b.write(path)
}

/// An index built one row at a time, in the segment's row order (a flush
/// hands it a sorted memtable, a compaction the rows of a k-way merge).
/// Holds a start time per row and the posting lists (row numbers until
/// `finish` turns them into ranks).
#[derive(Default)]
pub(crate) struct Builder {
    starts: Vec<i64>,
    trace_row: Vec<u32>,
    trace_ids: Vec<TraceId>,
    /// Term -> its list in `lists`.
    slots: foldhash::HashMap<Vec<u8>, u32>,
    lists: Vec<RowList>,
    /// The term being looked up, reused so a known term costs no allocation.
    scratch: Vec<u8>,
    /// For rows of a packed memtable (see [`SpanView::attribute_ids`]): its
    /// attribute pair id -> slot + 1 of the pair's term (0: not seen yet,
    /// `u32::MAX`: no term), so a pair seen before costs no text, hash or
    /// lookup. `pairs_of` names the table the ids belong to.
    pair_slots: Vec<u32>,
    pairs_of: usize,
    /// The same for a packed span's other terms, by its [`Shape`]: the
    /// service and operation lists, and the lists of its derived and
    /// resource tags.
    operation_slots: foldhash::HashMap<(u32, u32), (u32, u32)>,
    tag_slots: foldhash::HashMap<(u32, i32, i32, u32, u32), Vec<u32>>,
    /// Tests write the previous versions, to read them back.
    #[cfg(test)]
    version: Option<u32>,
}

/// A pair whose term is too long to index (see [`tags::MAX_TERM_BYTES`]).
const NO_TERM: u32 = u32::MAX;

/// A term's rows while the index is built: ascending, held as varint gaps
/// (under half the memory of `u32`s here: a merge of 2M spans holds some
/// 30M postings until it writes them).
#[derive(Default)]
struct RowList {
    gaps: Vec<u8>,
    last: u32,
    count: u32,
}

impl RowList {
    /// Adds `row`, not below the last one; a row already there is kept once.
    fn push(&mut self, row: u32) {
        if self.count > 0 && row == self.last {
            return;
        }
        let gap = if self.count == 0 { row } else { row - self.last };
        put_varint(&mut self.gaps, u64::from(gap));
        self.last = row;
        self.count += 1;
    }

    fn rows(&self) -> impl Iterator<Item = u32> + '_ {
        let mut pos = 0;
        let mut row = 0u32;
        (0..self.count).map(move |_| {
            row += get_varint(&self.gaps, &mut pos).expect("a gap per row") as u32;
            row
        })
    }
}

impl Builder {
    /// Adds the next row.
    ///
    /// # Errors
    /// `Corrupt` when rows come out of trace order or past 2^32 rows.
    pub(crate) fn add(&mut self, r: &impl SpanView) -> Result<()> {
        let row = u32::try_from(self.starts.len())
            .map_err(|_| StoreError::Corrupt("a segment holds at most 2^32 spans".into()))?;
        self.starts.push(r.start());
        let trace_id = r.trace_id();
        if self.trace_ids.last() != Some(&trace_id) {
            if self.trace_ids.last().is_some_and(|last| last > &trace_id) {
                return Err(StoreError::Corrupt("span index: rows are not sorted by trace id".into()));
            }
            self.trace_row.push(row);
            self.trace_ids.push(trace_id);
        }
        // As `tags::term(k, v).len()`, without building it.
        let fits = |k: &str, v: &str| k.len() + 1 + v.len() <= tags::MAX_TERM_BYTES;
        match r.attribute_ids() {
            Some((table, ids)) => {
                if self.pairs_of != table {
                    self.pairs_of = table;
                    self.pair_slots.clear();
                    self.operation_slots.clear();
                    self.tag_slots.clear();
                }
                let shape = r.shape().expect("a span with attribute ids has a shape");
                match self.operation_slots.get(&shape.operation) {
                    Some(&(service, operation)) => {
                        self.lists[service as usize].push(row);
                        self.lists[operation as usize].push(row);
                    }
                    None => {
                        let service = self.add_term(Term::Service(r.service_name()), row);
                        let operation = self.add_term(Term::Operation(r.service_name(), r.name()), row);
                        self.operation_slots.insert(shape.operation, (service, operation));
                    }
                }
                for (&id, kv) in ids.iter().zip(r.attributes()) {
                    let id = id as usize;
                    if id >= self.pair_slots.len() {
                        self.pair_slots.resize(id + 1, 0);
                    }
                    match self.pair_slots[id] {
                        0 => {
                            let mut slot = NO_TERM;
                            tags::attribute_pair(kv, |k, v| {
                                if fits(k, v) {
                                    slot = self.add_term(Term::Tag(k, v), row);
                                }
                            });
                            self.pair_slots[id] = if slot == NO_TERM { NO_TERM } else { slot + 1 };
                        }
                        NO_TERM => {}
                        slot => self.lists[slot as usize - 1].push(row),
                    }
                }
                if let Some(slots) = shape.tags.and_then(|key| self.tag_slots.get(&key)) {
                    for &slot in slots {
                        self.lists[slot as usize].push(row);
                    }
                } else {
                    let mut slots = Vec::new();
                    tags::for_each_pair_but_attributes(r, |k, v| {
                        if fits(k, v) {
                            slots.push(self.add_term(Term::Tag(k, v), row));
                        }
                    });
                    if let Some(key) = shape.tags {
                        self.tag_slots.insert(key, slots);
                    }
                }
            }
            None => {
                self.add_term(Term::Service(r.service_name()), row);
                self.add_term(Term::Operation(r.service_name(), r.name()), row);
                tags::for_each_pair(r, |k, v| {
                    if fits(k, v) {
                        self.add_term(Term::Tag(k, v), row);
                    }
                });
            }
        }
        Ok(())
    }

    /// Adds `row` to `term`'s list; returns the list's slot.
    fn add_term(&mut self, term: Term<'_>, row: u32) -> u32 {
        term.encode_into(&mut self.scratch);
        let slot = match self.slots.get(self.scratch.as_slice()) {
            Some(slot) => *slot,
            None => {
                self.lists.push(RowList::default());
                let slot = self.lists.len() as u32 - 1;
                self.slots.insert(self.scratch.clone(), slot);
                slot
            }
        };
        self.lists[slot as usize].push(row);
        slot
    }

    /// Writes the index to `path` through a temporary file, fsynced.
    /// Returns the file's size.
    pub(crate) fn write(self, path: &Path) -> Result<u64> {
        let tmp = path.with_extension("idx.tmp");
        let file = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut out = Checksummed { file, crc: crc32fast::Hasher::new(), len: 0 };
        self.finish(&mut out)?;
        let Checksummed { file, crc, len } = out;
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        file.write_all(&crc.finalize().to_le_bytes())?;
        file.write_all(MAGIC)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(len + 4 + MAGIC.len() as u64)
    }

    /// Writes the index up to its checksum (see [`Checksummed`]).
    fn finish(self, out: &mut Checksummed) -> std::io::Result<()> {
        #[cfg(test)]
        let version = self.version.unwrap_or(VERSION);
        #[cfg(not(test))]
        let version = VERSION;
        let fixed = version == VERSION_FIXED;
        let Builder { starts, trace_row, trace_ids, slots, mut lists, .. } = self;
        let n = starts.len() as u32;
        // Ranks: newest start first; ties in row order, so the order is total.
        let mut by_rank: Vec<u32> = (0..n).collect();
        by_rank.sort_unstable_by_key(|&r| (std::cmp::Reverse(starts[r as usize]), r));
        let blocks = starts.len().div_ceil(BLOCK);
        out.write_all(MAGIC)?;
        for v in [version, n, trace_ids.len() as u32, slots.len() as u32, blocks as u32] {
            out.write_all(&v.to_le_bytes())?;
        }
        // Sections are written, and their inputs let go, as they are done:
        // a merge of millions of spans would otherwise hold them all at once.
        let mut buf = Vec::with_capacity(by_rank.len() * 4 + 8);
        pack(&by_rank, width(n.saturating_sub(1)), &mut buf);
        buf.extend_from_slice(&[0u8; 8]);
        out.write_all(&buf)?;
        buf.clear();
        trace_row.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        if version < VERSION {
            trace_ids.iter().for_each(|t| buf.extend_from_slice(t.as_bytes()));
        }
        out.write_all(&buf)?;
        drop((trace_row, trace_ids));

        let mut block_base = Vec::with_capacity(blocks);
        let mut block_off = Vec::with_capacity(blocks + 1);
        let mut times = Vec::with_capacity(starts.len() * 3);
        let mut steps = Vec::with_capacity(BLOCK);
        for chunk in by_rank.chunks(BLOCK) {
            let base = starts[chunk[0] as usize];
            block_base.push(base);
            block_off.push(times.len() as u32);
            steps.clear();
            steps.extend(chunk.windows(2).map(|w| starts[w[0] as usize].wrapping_sub(starts[w[1] as usize]) as u64));
            if fixed {
                steps.iter().for_each(|&v| put_varint(&mut times, v));
            } else {
                rice::write(&steps, 64, &mut times);
            }
        }
        block_off.push(times.len() as u32);
        drop(starts);
        buf.clear();
        block_base.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        block_off.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        out.write_all(&buf)?;
        out.write_all(&times)?;
        drop((buf, times));

        let mut rank_of = vec![0u32; by_rank.len()];
        for (rank, &row) in by_rank.iter().enumerate() {
            rank_of[row as usize] = rank as u32;
        }
        drop(by_rank);
        let mut terms: Vec<(Vec<u8>, u32)> = slots.into_iter().collect();
        terms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut postings = Vec::new();
        let mut table = Vec::new();
        let mut rows = Vec::new();
        let mut gaps = Vec::new();
        // A list's hash -> where its first copy starts.
        let mut shared: foldhash::HashMap<u64, u64> = foldhash::HashMap::default();
        let hasher = foldhash::fast::FixedState::default();
        for (term, slot) in &terms {
            // Taken, so each list is freed as its postings are written.
            let list = std::mem::take(&mut lists[*slot as usize]);
            rows.clear();
            rows.extend(list.rows().map(|r| rank_of[r as usize]));
            rows.sort_unstable();
            let start = postings.len() as u64;
            put_varint(&mut postings, u64::from(rows[0]));
            gaps.clear();
            gaps.extend(rows.windows(2).map(|w| u64::from(w[1] - w[0] - 1)));
            if fixed {
                for block in gaps.chunks(BLOCK) {
                    let block: Vec<u32> = block.iter().map(|&g| g as u32).collect();
                    let w = width(block.iter().copied().max().unwrap_or(0));
                    postings.push(w as u8);
                    pack(&block, w, &mut postings);
                }
            } else {
                rice::write(&gaps, 32, &mut postings);
            }
            // Terms with the same spans (a service and its `service.name`
            // tag, `error=true` and `otel.status_code=ERROR`) share one copy.
            let len = postings.len() - start as usize;
            let start = match shared.entry(hasher.hash_one(&postings[start as usize..])) {
                Entry::Occupied(e) if postings[*e.get() as usize..][..len] == postings[start as usize..] => {
                    postings.truncate(start as usize);
                    *e.get()
                }
                Entry::Occupied(_) => start,
                Entry::Vacant(e) => *e.insert(start),
            };
            table.extend_from_slice(&(term.len() as u16).to_le_bytes());
            table.extend_from_slice(term);
            table.extend_from_slice(&(rows.len() as u32).to_le_bytes());
            table.extend_from_slice(&start.to_le_bytes());
            table.extend_from_slice(&(len as u32).to_le_bytes());
        }
        out.write_all(&table)?;
        out.write_all(&postings)?;
        Ok(())
    }
}

/// The index file being written, checksummed (CRC-32 of every byte before
/// the checksum itself) as it goes, so it is never whole in memory.
struct Checksummed {
    file: std::io::BufWriter<File>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Checksummed {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
        self.file.write_all(bytes)
    }
}

/// Where a term's postings are in the file.
#[derive(Clone, Copy, Debug)]
struct Posting {
    count: u32,
    offset: u64,
    len: u32,
}

/// An open span index: the term table, trace boundaries and block bases in
/// memory, the rest read on demand.
pub(crate) struct SpanIndex {
    version: u32,
    file: File,
    rows: u32,
    trace_row: Vec<u32>,
    /// Sorted, as the rows are.
    trace_ids: Vec<TraceId>,
    block_base: Vec<i64>,
    block_off: Vec<u32>,
    terms: TermTable,
    rank_row_at: u64,
    rank_width: u32,
    times_at: u64,
    postings_at: u64,
}

/// The term table as the file has it (entries sorted by term: `u16` length,
/// term, `u32` count, `u64` offset, `u32` length), found by binary search:
/// a third of the memory of a hash map of boxed terms, and every open
/// segment keeps one.
struct TermTable {
    bytes: Vec<u8>,
    /// Where each entry starts in `bytes`.
    at: Vec<u32>,
}

impl TermTable {
    fn term(&self, at: u32) -> &[u8] {
        let at = at as usize;
        let len = u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]]) as usize;
        &self.bytes[at + 2..at + 2 + len]
    }

    fn get(&self, term: &[u8]) -> Option<Posting> {
        let i = self.at.binary_search_by(|&at| self.term(at).cmp(term)).ok()?;
        let at = self.at[i] as usize + 2 + self.term(self.at[i]).len();
        let mut c = Cursor { buf: &self.bytes, pos: at };
        Some(Posting { count: c.u32().ok()?, offset: c.u64().ok()?, len: c.u32().ok()? })
    }
}

/// Little-endian reads from a verified byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(short)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

fn short() -> StoreError {
    StoreError::Corrupt("span index: truncated".into())
}

impl SpanIndex {
    /// Opens and verifies the index at `path` against the segment's row count.
    ///
    /// # Errors
    /// `Corrupt` (with the reason) for a missing, damaged or mismatched file.
    pub(crate) fn open_verified(path: &Path, rows: u64) -> Result<Self> {
        let corrupt = |why: String| StoreError::Corrupt(format!("{}: {why}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| corrupt(e.to_string()))?;
        if bytes.len() < HEADER_BYTES + 8 || &bytes[bytes.len() - 4..] != MAGIC || &bytes[..4] != MAGIC {
            return Err(corrupt("not a span index".into()));
        }
        let body = &bytes[..bytes.len() - 8];
        let crc = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().expect("4 bytes"));
        if crc32fast::hash(body) != crc {
            return Err(corrupt("checksum mismatch".into()));
        }
        let mut c = Cursor { buf: body, pos: 4 };
        let parsed = (|| -> Result<Self> {
            let version = c.u32()?;
            if ![VERSION, VERSION_OWN_IDS, VERSION_FIXED].contains(&version) {
                return Err(StoreError::Corrupt(format!("span index: version {version}")));
            }
            let (n, traces, n_terms, blocks) = (c.u32()?, c.u32()? as usize, c.u32()? as usize, c.u32()? as usize);
            if u64::from(n) != rows || blocks != (n as usize).div_ceil(BLOCK) {
                return Err(StoreError::Corrupt(format!("span index: {n} rows, the segment holds {rows}")));
            }
            let rank_row_at = c.pos as u64;
            let rank_width = width(n.saturating_sub(1));
            c.take((n as usize * rank_width as usize).div_ceil(8) + 8)?;
            let trace_row =
                c.take(traces * 4)?.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
            let trace_ids = if version < VERSION {
                c.take(traces * 16)?.chunks_exact(16).map(TraceId::from_slice).collect::<Result<Vec<_>>>()?
            } else {
                Vec::new()
            };
            let block_base: Vec<i64> =
                c.take(blocks * 8)?.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
            let block_off: Vec<u32> =
                c.take((blocks + 1) * 4)?.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
            let times_at = c.pos as u64;
            let times_len = *block_off.last().unwrap_or(&0) as usize;
            if block_off.windows(2).any(|w| w[0] > w[1]) {
                return Err(StoreError::Corrupt("span index: block offsets out of order".into()));
            }
            c.take(times_len)?;
            let table_at = c.pos;
            let mut at = Vec::with_capacity(n_terms);
            let mut table = Vec::with_capacity(n_terms);
            let mut last: Option<&[u8]> = None;
            for _ in 0..n_terms {
                at.push((c.pos - table_at) as u32);
                let len = c.u16()? as usize;
                let term_at = c.pos;
                c.take(len)?;
                let term = &body[term_at..term_at + len];
                if last.is_some_and(|l| l >= term) {
                    return Err(StoreError::Corrupt("span index: terms out of order".into()));
                }
                last = Some(term);
                table.push(Posting { count: c.u32()?, offset: c.u64()?, len: c.u32()? });
            }
            let terms = TermTable { bytes: body[table_at..c.pos].to_vec(), at };
            let postings_at = c.pos as u64;
            let postings_len = (body.len() - c.pos) as u64;
            if table.iter().any(|p| p.offset.checked_add(u64::from(p.len)).is_none_or(|end| end > postings_len)) {
                return Err(StoreError::Corrupt("span index: a posting list lies outside the file".into()));
            }
            Ok(SpanIndex {
                version,
                file: File::open(path)?,
                rows: n,
                trace_row,
                trace_ids,
                block_base,
                block_off,
                terms,
                rank_row_at,
                rank_width,
                times_at,
                postings_at,
            })
        })();
        parsed.map_err(|e| corrupt(e.to_string()))
    }

    /// The index with its trace ids: from version 4 on the file leaves them
    /// to the segment's Parquet file, and `ids` is asked for the ids at the
    /// first row of each trace (ascending rows). Older files have their own.
    ///
    /// # Errors
    /// What `ids` returns; `Corrupt` when they are not one per trace in
    /// ascending order, i.e. not the traces this index was built from.
    pub(crate) fn with_trace_ids(mut self, ids: impl FnOnce(&[u32]) -> Result<Vec<TraceId>>) -> Result<Self> {
        if self.version < VERSION {
            return Ok(self);
        }
        let found = ids(&self.trace_row)?;
        if found.len() != self.trace_row.len() || found.windows(2).any(|w| w[0] >= w[1]) {
            return Err(StoreError::Corrupt(format!(
                "span index: its {} traces are not those of the segment",
                self.trace_row.len()
            )));
        }
        self.trace_ids = found;
        Ok(self)
    }

    pub(crate) fn rows(&self) -> u32 {
        self.rows
    }

    fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, at)?;
        Ok(buf)
    }

    /// The ranks holding `term`, ascending; empty when the segment has none.
    pub(crate) fn postings(&self, term: Term<'_>) -> Result<Vec<u32>> {
        let Some(p) = self.terms.get(&term.encode()) else { return Ok(Vec::new()) };
        let buf = self.read_at(self.postings_at + p.offset, p.len as usize)?;
        let mut out = Vec::with_capacity(p.count as usize);
        let mut pos = 0usize;
        let first = get_varint(&buf, &mut pos).ok_or_else(short)?;
        let mut prev = u32::try_from(first).map_err(|_| short())?;
        out.push(prev);
        let mut left = p.count.saturating_sub(1) as usize;
        if self.version == VERSION_FIXED {
            while left > 0 {
                let n = left.min(BLOCK);
                let w = u32::from(*buf.get(pos).ok_or_else(short)?);
                pos += 1;
                let bytes = (n * w as usize).div_ceil(8);
                let packed = buf.get(pos..pos + bytes).ok_or_else(short)?;
                for i in 0..n {
                    prev = prev.checked_add(unpack(packed, w, i) + 1).ok_or_else(short)?;
                    out.push(prev);
                }
                pos += bytes;
                left -= n;
            }
        } else if left > 0 {
            rice::read(&buf[pos..], left, 32, |gap| {
                prev = u32::try_from(gap).ok().and_then(|g| prev.checked_add(g)?.checked_add(1)).ok_or_else(short)?;
                out.push(prev);
                Ok(())
            })?;
        }
        if out.last().is_some_and(|&r| r >= self.rows) {
            return Err(short());
        }
        Ok(out)
    }

    /// How many spans hold `term` (0 when none).
    pub(crate) fn count(&self, term: Term<'_>) -> u32 {
        self.terms.get(&term.encode()).map_or(0, |p| p.count)
    }

    /// The row (Parquet position) of `rank`.
    pub(crate) fn row_of(&self, rank: u32) -> Result<u32> {
        if rank >= self.rows {
            return Err(short());
        }
        let bit = u64::from(rank) * u64::from(self.rank_width);
        let b = self.read_at(self.rank_row_at + bit / 8, 8)?;
        let word = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let row = ((word >> (bit % 8)) & mask(self.rank_width)) as u32;
        if row >= self.rows {
            return Err(short());
        }
        Ok(row)
    }

    /// The trace (its ordinal in the segment) that row `row` belongs to.
    pub(crate) fn trace_of(&self, row: u32) -> usize {
        self.trace_row.partition_point(|&first| first <= row).saturating_sub(1)
    }

    /// The id of trace ordinal `trace`.
    pub(crate) fn trace_id(&self, trace: usize) -> Result<TraceId> {
        self.trace_ids.get(trace).copied().ok_or_else(short)
    }

    /// The rows holding trace `id` (contiguous: rows are sorted by trace).
    pub(crate) fn rows_of_trace(&self, id: &TraceId) -> Option<std::ops::Range<u32>> {
        let t = self.trace_ids.binary_search(id).ok()?;
        let end = self.trace_row.get(t + 1).copied().unwrap_or(self.rows);
        Some(self.trace_row[t]..end)
    }

    /// Start times of every rank of block `block`, newest first.
    fn block_times(&self, block: usize) -> Result<Vec<i64>> {
        let (from, to) = (self.block_off[block], self.block_off[block + 1]);
        let buf = self.read_at(self.times_at + u64::from(from), (to - from) as usize)?;
        let in_block = (self.rows as usize - block * BLOCK).min(BLOCK);
        let mut out = Vec::with_capacity(in_block);
        let mut t = self.block_base[block];
        out.push(t);
        if self.version == VERSION_FIXED {
            let mut pos = 0;
            for _ in 1..in_block {
                t = t.wrapping_sub(get_varint(&buf, &mut pos).ok_or_else(short)? as i64);
                out.push(t);
            }
        } else if in_block > 1 {
            rice::read(&buf, in_block - 1, 64, |step| {
                t = t.wrapping_sub(step as i64);
                out.push(t);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// The first rank whose start is at or before `t` (`rows` when none).
    pub(crate) fn first_rank_at_or_before(&self, t: i64) -> Result<u32> {
        // Blocks are in descending time; the first block whose base is <= t,
        // or an earlier one ending inside it, holds the answer.
        let b = self.block_base.partition_point(|&base| base > t);
        if b == 0 {
            return Ok(0);
        }
        let times = self.block_times(b - 1)?;
        let i = times.partition_point(|&x| x > t);
        Ok(((b - 1) * BLOCK + i) as u32)
    }

    /// The start time of `rank`.
    #[cfg(test)]
    pub(crate) fn time_of(&self, rank: u32) -> Result<i64> {
        let (first, times) = self.block_of(rank)?;
        times.get((rank - first) as usize).copied().ok_or_else(short)
    }

    /// The block holding `rank`: its first rank and the start times of its ranks.
    pub(crate) fn block_of(&self, rank: u32) -> Result<(u32, Vec<i64>)> {
        if rank >= self.rows {
            return Err(short());
        }
        let block = rank as usize / BLOCK;
        Ok(((block * BLOCK) as u32, self.block_times(block)?))
    }
}

/// The ranks in every one of `lists` (each ascending), ascending.
pub(crate) fn intersect(mut lists: Vec<Vec<u32>>) -> Vec<u32> {
    lists.sort_by_key(Vec::len);
    let mut it = lists.into_iter();
    let Some(mut acc) = it.next() else { return Vec::new() };
    for list in it {
        let mut j = 0usize;
        acc.retain(|&r| {
            // Gallop: the lists are long, the accumulated one short.
            let mut step = 1;
            while j + step < list.len() && list[j + step] < r {
                j += step;
                step *= 2;
            }
            while j < list.len() && list[j] < r {
                j += 1;
            }
            j < list.len() && list[j] == r
        });
        if acc.is_empty() {
            break;
        }
    }
    acc
}

/// Limited Rice codes: a value `v` with parameter `k` is `v >> k` in unary
/// (that many 0 bits, then a 1), then its `k` low bits; a quotient of
/// [`rice::LIMIT`] or more is written as `LIMIT` 0 bits and the value in full.
/// Bits go least significant first. For gaps between positions drawn
/// at random (a term's spans, start times one after another) this is
/// within a few percent of their entropy, where fixed-width blocks paid the
/// widest gap of each block for every gap in it.
mod rice {
    use super::mask;
    use crate::error::Result;

    /// Quotients from which values are written in full.
    pub(super) const LIMIT: u64 = 32;

    /// Bits `value` takes with parameter `k`, values of `full` bits written in full.
    fn cost(value: u64, k: u32, full: u32) -> u64 {
        let q = value >> k;
        if q < LIMIT {
            q + 1 + u64::from(k)
        } else {
            LIMIT + u64::from(full)
        }
    }

    /// Appends `values` (each under 2^`full`): a byte with the parameter, the
    /// codes, and padding to the next byte.
    pub(super) fn write(values: &[u64], full: u32, out: &mut Vec<u8>) {
        // The best parameter is near log2 of the mean value: the total is
        // counted there and one each way.
        let mean = values.iter().map(|&v| u128::from(v)).sum::<u128>() / values.len().max(1) as u128;
        let guess = 64 - (mean as u64).leading_zeros();
        let k = (guess.saturating_sub(1)..=(guess + 1).min(full - 1))
            .min_by_key(|&k| values.iter().map(|&v| cost(v, k, full)).sum::<u64>())
            .unwrap_or(0);
        out.push(k as u8);
        let mut w = Bits { out, acc: 0, n: 0 };
        for &v in values {
            let q = v >> k;
            if q < LIMIT {
                w.zeros(q as u32);
                w.put(1, 1);
                w.put(v & mask(k), k);
            } else {
                w.zeros(LIMIT as u32);
                w.put(v, full);
            }
        }
        w.flush();
    }

    struct Bits<'a> {
        out: &'a mut Vec<u8>,
        acc: u64,
        n: u32,
    }

    impl Bits<'_> {
        /// Appends the `w` low bits of `v`.
        fn put(&mut self, v: u64, w: u32) {
            if w > 32 {
                self.put(v & 0xffff_ffff, 32);
                self.put(v >> 32, w - 32);
                return;
            }
            self.acc |= v << self.n;
            self.n += w;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        fn zeros(&mut self, mut n: u32) {
            while n > 0 {
                let step = n.min(32);
                self.put(0, step);
                n -= step;
            }
        }
        fn flush(&mut self) {
            if self.n > 0 {
                self.out.push(self.acc as u8);
            }
        }
    }

    /// Hands `each` the `count` values [`write`] wrote at the start of `buf`.
    ///
    /// # Errors
    /// `Corrupt` when `buf` ends first; what `each` returns.
    pub(super) fn read(buf: &[u8], count: usize, full: u32, mut each: impl FnMut(u64) -> Result<()>) -> Result<()> {
        let (&k, bits) = buf.split_first().ok_or_else(super::short)?;
        let k = u32::from(k);
        if k >= full {
            return Err(super::short());
        }
        let end = bits.len() as u64 * 8;
        let mut at = 0u64;
        // The 57 or more bits from bit `at` on (zeros past the end).
        let peek = |at: u64| {
            let from = (at / 8) as usize;
            let word = match bits.get(from..from + 8) {
                Some(eight) => u64::from_le_bytes(eight.try_into().unwrap_or_default()),
                None => {
                    let mut word = [0u8; 8];
                    let tail = bits.get(from..).unwrap_or_default();
                    word[..tail.len()].copy_from_slice(tail);
                    u64::from_le_bytes(word)
                }
            };
            word >> (at % 8)
        };
        // The `w` (at most 64) bits from bit `*at` on, moving past them.
        let take = |at: &mut u64, w: u32| {
            let lo = peek(*at) & mask(w.min(32));
            let hi = if w > 32 { peek(*at + 32) & mask(w - 32) } else { 0 };
            *at += u64::from(w);
            (hi << 32) | lo
        };
        for _ in 0..count {
            let word = peek(at);
            let q = u64::from(word.trailing_zeros()).min(LIMIT);
            let v = if q < LIMIT && q + 1 + u64::from(k) <= 57 {
                // The whole code is in the word already read.
                at += q + 1 + u64::from(k);
                (q << k) | ((word >> (q + 1)) & mask(k))
            } else if q < LIMIT {
                at += q + 1;
                (q << k) | take(&mut at, k)
            } else {
                at += LIMIT;
                take(&mut at, full)
            };
            if at > end {
                return Err(super::short());
            }
            each(v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SpanId;
    use crate::model::SpanRow;
    use crate::model::{AttrValue, KeyValue, SpanEvent};

    fn span_of(service: &str, trace: u8, span: u8) -> SpanRow {
        SpanRow {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([span; 8]),
            service_name: service.into(),
            ..SpanRow::default()
        }
    }

    fn rows() -> Vec<SpanRow> {
        // Trace n (id [n;16]) has spans at n*10 + i seconds for i in 0..3.
        let mut rows = Vec::new();
        for t in 1..=5u8 {
            for i in 0..3u8 {
                let mut r = span_of(if t % 2 == 0 { "even" } else { "odd" }, t, t * 10 + i);
                r.start_time_unix_nano = i64::from(t) * 10_000 + i64::from(i) * 1000;
                r.name = format!("op{i}");
                r.attributes.push(KeyValue { key: "i".into(), value: AttrValue::Int(i64::from(i)) });
                rows.push(r);
            }
        }
        rows.sort_by_key(|r| (r.trace_id, r.start_time_unix_nano));
        rows
    }

    fn index(dir: &Path, rows: &[SpanRow]) -> SpanIndex {
        let path = dir.join("1-traces.idx");
        let refs: Vec<&SpanRow> = rows.iter().collect();
        write(&path, &refs).unwrap();
        open(&path, rows)
    }

    /// Opens the index at `path` of `rows`, its trace ids taken from them as
    /// a segment takes them from its Parquet file.
    fn open(path: &Path, rows: &[SpanRow]) -> SpanIndex {
        SpanIndex::open_verified(path, rows.len() as u64)
            .unwrap()
            .with_trace_ids(|firsts| Ok(firsts.iter().map(|&r| rows[r as usize].trace_id).collect()))
            .unwrap()
    }

    /// A flush indexes packed rows through their pair ids (each pair's term
    /// made once); the file must be the one their plain rows give.
    #[test]
    fn rice_codes_come_back_whatever_the_spread() {
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for full in [32u32, 64] {
            let top = if full == 32 { u64::from(u32::MAX) } else { u64::MAX };
            let sets: Vec<Vec<u64>> = vec![
                vec![],
                vec![0; 300],
                (0..1000).map(|_| next() % 20).collect(),
                (0..1000).map(|_| next() % 100_000).collect(),
                // Mostly small, a few past the unary limit: written in full.
                (0..1000).map(|i| if i % 97 == 0 { top - (next() % 5) } else { next() % 8 }).collect(),
                (0..100).map(|_| next() & top).collect(),
            ];
            for values in sets {
                let mut buf = Vec::new();
                rice::write(&values, full, &mut buf);
                let mut back = Vec::new();
                rice::read(&buf, values.len(), full, |v| {
                    back.push(v);
                    Ok(())
                })
                .unwrap();
                assert_eq!(back, values, "{full} bits");
                if !values.is_empty() {
                    assert!(rice::read(&buf[..buf.len() - 1], values.len(), full, |_| Ok(())).is_err(), "cut short");
                }
            }
        }
    }

    #[test]
    fn indexes_of_the_previous_versions_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = Vec::new();
        for t in 1..=40u8 {
            for i in 0..7u8 {
                let mut r = span_of(if t % 3 == 0 { "a" } else { "b" }, t, i);
                r.start_time_unix_nano =
                    i64::from(t) * 1_000_003 + i64::from(i) * 77 - if t == 9 { 1 << 40 } else { 0 };
                r.attributes.push(KeyValue { key: "k".into(), value: AttrValue::Int(i64::from((t + i) % 5)) });
                rows.push(r);
            }
        }
        let refs: Vec<&SpanRow> = rows.iter().collect();
        let written: Vec<SpanIndex> = [Some(VERSION_FIXED), Some(VERSION_OWN_IDS), None]
            .into_iter()
            .map(|version| {
                let path = dir.path().join(format!("{version:?}-traces.idx"));
                let mut b = Builder { version, ..Builder::default() };
                refs.iter().try_for_each(|r| b.add(r)).unwrap();
                b.write(&path).unwrap();
                open(&path, &rows)
            })
            .collect();
        let new = &written[2];
        assert_eq!(new.version, VERSION);
        let own_ids = std::fs::metadata(dir.path().join("Some(3)-traces.idx")).unwrap().len();
        let no_ids = std::fs::metadata(dir.path().join("None-traces.idx")).unwrap().len();
        assert_eq!(own_ids - no_ids, 40 * 16, "version 4 leaves the 40 trace ids out");
        for old in &written[..2] {
            assert_eq!(old.trace_ids, new.trace_ids);
            for term in [Term::Service("a"), Term::Service("b"), Term::Tag("k", "3"), Term::Operation("a", "")] {
                assert_eq!(old.postings(term).unwrap(), new.postings(term).unwrap());
            }
            for rank in 0..rows.len() as u32 {
                assert_eq!(old.time_of(rank).unwrap(), new.time_of(rank).unwrap());
                assert_eq!(old.row_of(rank).unwrap(), new.row_of(rank).unwrap());
            }
        }
        // An older file keeps its own ids: the segment is not asked.
        let v3 = SpanIndex::open_verified(&dir.path().join("Some(3)-traces.idx"), rows.len() as u64).unwrap();
        assert_eq!(v3.with_trace_ids(|_| panic!("asked for ids")).unwrap().trace_ids, new.trace_ids);
        // Ids that are not one per trace, ascending, are not this index's.
        let reopen = || SpanIndex::open_verified(&dir.path().join("None-traces.idx"), rows.len() as u64).unwrap();
        let short =
            reopen().with_trace_ids(|firsts| Ok(firsts[1..].iter().map(|&r| rows[r as usize].trace_id).collect()));
        assert!(matches!(short, Err(StoreError::Corrupt(m)) if m.contains("not those of the segment")));
        let reversed =
            reopen().with_trace_ids(|firsts| Ok(firsts.iter().rev().map(|&r| rows[r as usize].trace_id).collect()));
        assert!(reversed.is_err());
    }

    #[test]
    fn packed_rows_index_byte_for_byte_as_their_plain_rows() {
        let mut rows = rows();
        let long = "x".repeat(tags::MAX_TERM_BYTES);
        for (i, r) in rows.iter_mut().enumerate() {
            let kv = |k: &str, v: AttrValue| KeyValue { key: k.into(), value: v };
            r.attributes.push(kv("s", AttrValue::Str(format!("v{}", i % 3))));
            r.attributes.push(kv("s", AttrValue::Str(format!("v{}", i % 3))));
            r.attributes.push(kv("b", AttrValue::Bool(i % 2 == 0)));
            r.attributes.push(kv("d", AttrValue::Double(i as f64 / 2.0)));
            r.attributes.push(kv("long", AttrValue::Str(long.clone())));
            r.resource_attributes.push(kv("s", AttrValue::Str("v1".into())));
            // The rest by trace: the spans of a trace share a shape (the cached path).
            let t = usize::from(r.trace_id.0[0]);
            r.kind = (t % 3) as i32;
            r.status_code = (t % 3) as i32;
            r.scope_name = format!("lib{}", t % 2);
            r.scope_version = if t % 4 == 0 { String::new() } else { "1.0".into() };
            // Spans whose derived tags are not shared: a status message, an event.
            if i % 5 == 0 {
                r.status_message = format!("boom {i}");
            }
            if i % 7 == 0 {
                r.events.push(SpanEvent {
                    time_unix_nano: 1,
                    name: "e".into(),
                    attributes: vec![kv("ev", AttrValue::Int(7))],
                });
            }
            if t % 2 == 0 {
                r.resource_attributes.push(kv("host", AttrValue::Str(format!("h{}", t % 4))));
            }
        }
        let mut packed = crate::packed::PackedSpans::default();
        for r in &rows {
            packed.push(r.clone());
        }
        let views: Vec<_> = packed.iter().collect();
        assert!(views[0].attribute_ids().is_some());
        let dir = tempfile::tempdir().unwrap();
        let (plain, from_packed) = (dir.path().join("plain.idx"), dir.path().join("packed.idx"));
        write(&plain, &rows).unwrap();
        write(&from_packed, &views).unwrap();
        assert_eq!(std::fs::read(&plain).unwrap(), std::fs::read(&from_packed).unwrap());
    }

    /// Terms with the same spans point at one copy of their list; terms whose
    /// lists differ keep their own, even where the bytes of one begin those
    /// of another (a list's count says where it ends).
    #[test]
    fn terms_with_the_same_spans_share_one_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = rows();
        for (i, r) in rows.iter_mut().enumerate() {
            let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: AttrValue::Str(v.into()) };
            r.resource_attributes.push(kv("service.name", &r.service_name.clone()));
            // Consecutive ranks 0..n: the same bytes for every n (first rank, gaps of 0 at width 0).
            for n in 1..=4 {
                if rank_of_row(i) < n {
                    r.attributes.push(kv("newest", &n.to_string()));
                }
            }
        }
        let idx = index(dir.path(), &rows);
        for service in ["even", "odd"] {
            let (a, b) = (Term::Service(service), Term::Tag("service.name", service));
            assert_eq!(idx.postings(a).unwrap(), idx.postings(b).unwrap());
            let (pa, pb) = (idx.terms.get(&a.encode()).unwrap(), idx.terms.get(&b.encode()).unwrap());
            assert_eq!((pa.offset, pa.len), (pb.offset, pb.len), "one copy for {service}");
        }
        for n in 1..=4u32 {
            let want: Vec<u32> = (0..n).collect();
            assert_eq!(idx.postings(Term::Tag("newest", &n.to_string())).unwrap(), want);
        }
    }

    /// The rank of row `i` of [`rows`]: how many spans started after it.
    fn rank_of_row(i: usize) -> usize {
        let (t, s) = (i / 3 + 1, i % 3);
        let start = t * 10_000 + s * 1000;
        (0..15).filter(|&j| (j / 3 + 1) * 10_000 + (j % 3) * 1000 > start).count()
    }

    #[test]
    fn ranks_run_newest_first_and_lead_back_to_rows_traces_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let rows = rows();
        let idx = index(dir.path(), &rows);
        let newest = idx.row_of(0).unwrap();
        assert_eq!(rows[newest as usize].start_time_unix_nano, 52_000);
        assert_eq!(idx.time_of(0).unwrap(), 52_000);
        assert_eq!(idx.time_of(14).unwrap(), 10_000);
        for rank in 0..15 {
            let row = idx.row_of(rank).unwrap();
            assert_eq!(idx.time_of(rank).unwrap(), rows[row as usize].start_time_unix_nano);
            assert_eq!(idx.trace_id(idx.trace_of(row)).unwrap(), rows[row as usize].trace_id);
        }
        assert_eq!(idx.first_rank_at_or_before(i64::MAX).unwrap(), 0);
        assert_eq!(idx.first_rank_at_or_before(41_500).unwrap(), 4, "after 52, 51, 50 and 42 thousand");
        assert_eq!(idx.first_rank_at_or_before(0).unwrap(), 15);
    }

    #[test]
    fn posting_lists_hold_every_span_of_a_term_in_rank_order() {
        let dir = tempfile::tempdir().unwrap();
        let rows = rows();
        let idx = index(dir.path(), &rows);
        let even = idx.postings(Term::Service("even")).unwrap();
        assert_eq!(even.len(), 6);
        assert!(even.windows(2).all(|w| w[0] < w[1]));
        let i2 = idx.postings(Term::Tag("i", "2")).unwrap();
        let both = intersect(vec![even.clone(), i2]);
        let times: Vec<i64> = both.iter().map(|&r| idx.time_of(r).unwrap()).collect();
        assert_eq!(times, [42_000, 22_000]);
        assert_eq!(idx.postings(Term::Operation("odd", "op1")).unwrap().len(), 3);
        assert!(idx.postings(Term::Tag("i", "9")).unwrap().is_empty());
        assert_eq!(idx.count(Term::Service("nobody")), 0);
        // A service named like a tag pair is a different term.
        assert!(idx.postings(Term::Service("i=2")).unwrap().is_empty());
    }

    #[test]
    fn blocks_of_times_cover_more_than_one_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows: Vec<SpanRow> = (0..300u32)
            .map(|i| {
                let mut r = span_of("s", (i % 7) as u8, (i % 251) as u8);
                r.start_time_unix_nano = i64::from(i * 37 % 300) * 1_000_000;
                r
            })
            .collect();
        rows.sort_by_key(|r| (r.trace_id, r.start_time_unix_nano));
        let idx = index(dir.path(), &rows);
        let mut times: Vec<i64> = rows.iter().map(|r| r.start_time_unix_nano).collect();
        times.sort_by(|a, b| b.cmp(a));
        for (rank, t) in times.iter().enumerate() {
            assert_eq!(idx.time_of(rank as u32).unwrap(), *t);
        }
        assert_eq!(idx.postings(Term::Service("s")).unwrap(), (0..300).collect::<Vec<u32>>(), "three blocks");
        let odd: Vec<u32> = idx.postings(Term::Tag("span.kind", "x")).unwrap();
        assert!(odd.is_empty());
        assert_eq!(idx.first_rank_at_or_before(150_000_000).unwrap(), 149);
        assert_eq!(idx.first_rank_at_or_before(150_500_000).unwrap(), 149);
    }

    #[test]
    fn damage_anywhere_is_found_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let rows = rows();
        index(dir.path(), &rows);
        let path = dir.path().join("1-traces.idx");
        let clean = std::fs::read(&path).unwrap();
        for at in [0, 10, clean.len() / 2, clean.len() - 6, clean.len() - 1] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
            assert!(SpanIndex::open_verified(&path, rows.len() as u64).is_err(), "flip at {at}");
        }
        std::fs::write(&path, &clean[..clean.len() - 3]).unwrap();
        assert!(SpanIndex::open_verified(&path, rows.len() as u64).is_err());
        std::fs::write(&path, &clean).unwrap();
        assert!(SpanIndex::open_verified(&path, rows.len() as u64 + 1).is_err(), "row count must agree");
        assert!(SpanIndex::open_verified(&dir.path().join("none.idx"), 1).is_err());
    }

    #[test]
    fn packed_values_come_back_at_every_width() {
        for w in 0..=32u32 {
            let max = if w == 0 { 0 } else { u32::MAX >> (32 - w) };
            // Every other value is the widest there is; the rest are spread below it.
            let values: Vec<u32> =
                (0..300u32).map(|i| if i % 2 == 1 { max } else { i.wrapping_mul(2_654_435_761) & max }).collect();
            let mut out = Vec::new();
            pack(&values, w, &mut out);
            assert_eq!(out.len(), (values.len() * w as usize).div_ceil(8));
            for (i, v) in values.iter().enumerate() {
                assert_eq!(unpack(&out, w, i), *v, "width {w}, value {i}");
            }
        }
        assert_eq!((width(0), width(1), width(2), width(255), width(256), width(u32::MAX)), (0, 1, 2, 8, 9, 32));
    }

    #[test]
    fn intersections_keep_what_every_list_holds() {
        assert_eq!(intersect(vec![vec![1, 3, 5, 7, 9], vec![3, 4, 5, 9, 10, 11], vec![0, 5, 9]]), [5, 9]);
        assert_eq!(intersect(vec![vec![1, 2], vec![]]), Vec::<u32>::new());
        assert_eq!(intersect(vec![]), Vec::<u32>::new());
        let long: Vec<u32> = (0..10_000).collect();
        assert_eq!(intersect(vec![long, vec![0, 4_095, 9_999]]), [0, 4_095, 9_999]);
    }
}
