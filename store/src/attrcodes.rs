//! Span attributes as small numbers: each segment keeps, in its Parquet
//! footer, a table of its attribute keys (sorted) and per key a table of the
//! values seen with it, and its rows hold positions in those tables.
//!
//! Why: Parquet's dictionary codes have one width per page, set by the
//! largest, so with every value of every key in one dictionary each value
//! cost ~10 bits on the trace benchmark (1,000 distinct values), even for a
//! key with 3 values. A position within the key's own table is as small as
//! that key's cardinality, and written `BYTE_STREAM_SPLIT` + zstd each byte
//! plane is entropy-coded by its own statistics. Keys are stored in table
//! order (sorted by text) and written as the step from the previous key, so
//! eleven keys out of a hundred cost ~4 bits each instead of 7. On the
//! benchmark: 23.6 -> ~16 bytes per span.
//!
//! Three parallel list columns (same lengths in every row) and one value a row:
//! - `attr_key_codes`: 0 for a key not in the table, else for the first
//!   coded key of the row its position + 1, for the next ones the step from
//!   the previous coded key + 1 (0 when a key repeats);
//! - `attr_keys`: the key's text where it is not in the table, else null;
//! - `attr_value_bits`: the row's value codes, one per coded key in the row's
//!   order (0 for a value not in its key's table, else its position + 1),
//!   each in as many bits as its key's table needs (`width`: 2 bits for a key
//!   of 3 values, 10 for one of 700), packed from the lowest bit up and padded
//!   to a byte;
//! - `attr_values`: the value as tagged text (see `schema::tagged_text`)
//!   where it is not in the table, else null.
//!
//! The widths are those of the finished tables, so a segment's tables are
//! complete before its first row is written: a flush codes every value of its
//! rows first, a merge starts from the union of its inputs' tables, and a
//! value that finds no room is written out as text.
//!
//! Segments of format 2 have `attr_value_codes` instead of the bits: a list
//! of the same codes as `u32`s, written `BYTE_STREAM_SPLIT` + zstd. zstd codes
//! each byte plane with one set of statistics for the values of every key, so
//! a value cost ~7.3 bits on the trace benchmark where its key's table asked
//! for ~5 (10.1 B per span against ~8 now).
//!
//! A row's attributes are stored in key order (coded keys by their position,
//! which is text order, then the others as given); OTLP attributes are a
//! map, and Jaeger's UI sorts them anyway. The tables are bounded
//! ([`MAX_KEYS`], [`MAX_VALUES_PER_KEY`], [`MAX_TABLE_BYTES`]): past those,
//! keys and values are written as text, so a key with a distinct value per
//! span (a URL, an id) costs what it did before and the footer stays small.
//! Segments written before the code columns hold every key and value as
//! text and read as before.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, ListArray, ListBuilder, StringArray, StringBuilder, UInt32Array,
    UInt32Builder,
};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::model::{AttrValue, KeyValue};
use crate::packed::SpanView;
use crate::schema::{col, parse_tagged, tagged_text};

/// The footer key of a span segment's tables.
pub(crate) const TABLES_KEY: &str = "seismo.attribute_tables";
/// Keys a segment's table holds at most (the most frequent ones).
const MAX_KEYS: usize = 4096;
/// Values a key's table holds at most (the first seen).
const MAX_VALUES_PER_KEY: usize = 4096;
/// Bytes of value text all tables of a segment hold at most.
pub(crate) const MAX_TABLE_BYTES: usize = 1 << 20;

/// The tables as the footer stores them.
#[derive(Serialize, Deserialize, Default)]
struct Stored {
    /// Sorted, distinct.
    keys: Vec<String>,
    /// Occurrences of each key in the segment (a merge keeps the most frequent).
    counts: Vec<u64>,
    /// Per key, its values as tagged text, by position.
    values: Vec<Vec<String>>,
}

/// A segment's tables, for reading its rows.
#[derive(Default, Debug)]
pub(crate) struct AttrTables {
    keys: Vec<String>,
    counts: Vec<u64>,
    values: Vec<Vec<AttrValue>>,
    /// Bits of each key's value codes (see [`width`]).
    widths: Vec<u32>,
}

/// Bits of a value code of a key whose table holds `values` values: codes
/// run from 0 (not in the table) to `values`.
fn width(values: usize) -> u32 {
    usize::BITS - values.leading_zeros()
}

impl AttrTables {
    /// Parses the footer's tables.
    ///
    /// # Errors
    /// `Corrupt` when they do not parse or do not fit together.
    pub(crate) fn parse(json: &str) -> Result<Self> {
        let bad = |why: String| StoreError::Corrupt(format!("attribute tables: {why}"));
        let s: Stored = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        if s.counts.len() != s.keys.len() || s.values.len() != s.keys.len() {
            return Err(bad("keys, counts and values differ in number".into()));
        }
        if s.keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("keys are not sorted".into()));
        }
        let values = s
            .values
            .iter()
            .map(|vs| vs.iter().map(|v| parse_tagged(v)).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let widths = values.iter().map(|v| width(v.len())).collect();
        Ok(Self { keys: s.keys, counts: s.counts, values, widths })
    }

    /// The keys of the table with their occurrences; empty for a segment
    /// written before the tables.
    pub(crate) fn keys(&self) -> impl Iterator<Item = (&str, u64)> {
        self.keys.iter().map(String::as_str).zip(self.counts.iter().copied())
    }
}

/// The attribute columns of a span batch, read a row at a time.
pub(crate) struct AttrReader<'a> {
    keys: (&'a ListArray, &'a StringArray),
    values: (&'a ListArray, &'a StringArray),
    /// Absent in segments written before the codes.
    codes: Option<(&'a UInt32Array, ValueCodes<'a>, &'a AttrTables)>,
}

/// Where a batch's value codes are.
#[derive(Clone, Copy)]
enum ValueCodes<'a> {
    /// Format 3 on: per row, packed in its keys' widths.
    Bits(&'a BinaryArray),
    /// Format 2: a `u32` per attribute.
    Listed(&'a UInt32Array),
}

/// One row's value codes, read in order.
enum RowCodes<'a> {
    /// The row's packed bits, and how many of them are read.
    Bits(&'a [u8], usize),
    Listed(&'a UInt32Array),
}

impl RowCodes<'_> {
    /// The value code of attribute `j`, whose key's codes are `width` bits
    /// (`None` for a key not in the table: no bits); `None` past the bits.
    fn next(&mut self, j: usize, width: Option<u32>) -> Option<usize> {
        let (bytes, bit, w) = match (self, width) {
            (RowCodes::Listed(codes), _) => return Some(codes.value(j) as usize),
            (RowCodes::Bits(..), None | Some(0)) => return Some(0),
            (RowCodes::Bits(bytes, bit), Some(w)) => (*bytes, bit, w),
        };
        let end = *bit + w as usize;
        if end > bytes.len() * 8 {
            return None;
        }
        let from = *bit / 8;
        let to = (from + 8).min(bytes.len());
        let mut word = [0u8; 8];
        word[..to - from].copy_from_slice(&bytes[from..to]);
        let v = (u64::from_le_bytes(word) >> (*bit % 8)) & ((1u64 << w) - 1);
        *bit = end;
        Some(v as usize)
    }

    /// Whether every bit of the row was read (a listed row always is).
    fn all_read(&self) -> bool {
        match self {
            RowCodes::Bits(bytes, bit) => bit.div_ceil(8) == bytes.len(),
            RowCodes::Listed(_) => true,
        }
    }
}

fn list<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ListArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        .ok_or_else(|| StoreError::Corrupt(format!("segment lacks column {name} of the expected type")))
}

fn items<'a, T: 'static>(list: &'a ListArray, name: &str) -> Result<&'a T> {
    list.values()
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| StoreError::Corrupt(format!("column {name} holds items of the wrong type")))
}

impl<'a> AttrReader<'a> {
    pub(crate) fn of(batch: &'a RecordBatch, tables: &'a AttrTables) -> Result<Self> {
        let (k, v) = (list(batch, col::ATTR_KEYS)?, list(batch, col::ATTR_VALUES)?);
        let codes = match batch.column_by_name(col::ATTR_KEY_CODES) {
            None => None,
            Some(_) => {
                let kc = list(batch, col::ATTR_KEY_CODES)?;
                let values = match batch.column_by_name(col::ATTR_VALUE_BITS) {
                    Some(bits) => ValueCodes::Bits(bits.as_any().downcast_ref::<BinaryArray>().ok_or_else(|| {
                        StoreError::Corrupt(format!("column {} is not binary", col::ATTR_VALUE_BITS))
                    })?),
                    None => {
                        let vc = list(batch, col::ATTR_VALUE_CODES)?;
                        if vc.value_offsets() != k.value_offsets() {
                            return Err(StoreError::Corrupt("attribute columns differ in length".into()));
                        }
                        ValueCodes::Listed(items(vc, col::ATTR_VALUE_CODES)?)
                    }
                };
                if kc.value_offsets() != k.value_offsets() {
                    return Err(StoreError::Corrupt("attribute columns differ in length".into()));
                }
                Some((items(kc, col::ATTR_KEY_CODES)?, values, tables))
            }
        };
        if v.value_offsets() != k.value_offsets() {
            return Err(StoreError::Corrupt("attribute keys and values differ in number".into()));
        }
        Ok(Self { keys: (k, items(k, col::ATTR_KEYS)?), values: (v, items(v, col::ATTR_VALUES)?), codes })
    }

    /// Row `i`'s attributes.
    pub(crate) fn row(&self, i: usize) -> Result<Vec<KeyValue>> {
        let offsets = self.keys.0.value_offsets();
        let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
        let (keys, values) = (self.keys.1, self.values.1);
        let Some((key_codes, value_codes, tables)) = self.codes else {
            return (from..to)
                .map(|j| {
                    Ok(KeyValue {
                        key: text(keys, j, "key")?.to_string(),
                        value: parse_tagged(text(values, j, "value")?)?,
                    })
                })
                .collect();
        };
        let mut out = Vec::with_capacity(to - from);
        let mut key: Option<usize> = None;
        let mut codes = match value_codes {
            ValueCodes::Bits(b) if b.len() > i => RowCodes::Bits(b.value(i), 0),
            ValueCodes::Bits(_) => return Err(StoreError::Corrupt("attribute value bits are missing rows".into())),
            ValueCodes::Listed(c) => RowCodes::Listed(c),
        };
        let misfit = || StoreError::Corrupt("attribute value codes of a row do not fit the tables".into());
        for j in from..to {
            let kc = key_codes.value(j) as usize;
            let (name, table, vc) = if kc == 0 {
                (text(keys, j, "key")?.to_string(), None, codes.next(j, None).ok_or_else(misfit)?)
            } else {
                let at = key.map_or(kc - 1, |k| k + kc - 1);
                let name = tables
                    .keys
                    .get(at)
                    .ok_or_else(|| StoreError::Corrupt(format!("attribute key {at} is not in the table")))?;
                key = Some(at);
                (name.clone(), Some(&tables.values[at]), codes.next(j, Some(tables.widths[at])).ok_or_else(misfit)?)
            };
            let value = match (vc, table) {
                (0, _) => parse_tagged(text(values, j, "value")?)?,
                (vc, Some(table)) => table.get(vc - 1).cloned().ok_or_else(|| {
                    StoreError::Corrupt(format!("attribute value {vc} of {name} is not in the table"))
                })?,
                (_, None) => return Err(StoreError::Corrupt(format!("value of uncoded key {name} is coded"))),
            };
            out.push(KeyValue { key: name, value });
        }
        if !codes.all_read() {
            return Err(misfit());
        }
        Ok(out)
    }
}

/// Item `j` of a text column written out where it is not coded.
fn text<'a>(a: &'a StringArray, j: usize, what: &str) -> Result<&'a str> {
    if a.is_null(j) {
        Err(StoreError::Corrupt(format!("attribute {what} is neither coded nor written out")))
    } else {
        Ok(a.value(j))
    }
}

/// What a pair of a packed table was coded as: (key code or [`UNCODED`],
/// value code or 0).
type PairCode = (u32, u32);
const UNCODED: u32 = u32::MAX;
const UNSEEN: PairCode = (u32::MAX - 1, 0);

/// The tables of a segment being written: keys fixed at the start, values
/// added until the first row is written ([`AttrCoder::learn`],
/// [`AttrCoder::learn_tables`]). [`AttrCoder::columns`] turns rows into the
/// four columns, [`AttrCoder::footer`] the tables into the footer entry.
pub(crate) struct AttrCoder {
    keys: Vec<String>,
    key_code: foldhash::HashMap<String, u32>,
    counts: Vec<u64>,
    values: Vec<Vec<String>>,
    value_code: Vec<foldhash::HashMap<String, u32>>,
    table_bytes: usize,
    /// Set by the first [`AttrCoder::columns`]: the widths of the codes
    /// written are those of the tables then, so nothing is added after.
    frozen: bool,
}

impl AttrCoder {
    /// A coder for keys with these occurrence counts (a key may come more
    /// than once, as in the tables of a merge's inputs, see
    /// [`AttrTables::keys`]; its counts add up): the [`MAX_KEYS`] most frequent.
    pub(crate) fn with_keys<'k>(keys: impl Iterator<Item = (&'k str, u64)>) -> Self {
        let mut counted: foldhash::HashMap<&str, u64> = foldhash::HashMap::default();
        for (k, n) in keys {
            *counted.entry(k).or_default() += n;
        }
        let mut keys: Vec<(&str, u64)> = counted.into_iter().collect();
        if keys.len() > MAX_KEYS {
            keys.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            keys.truncate(MAX_KEYS);
        }
        keys.sort_unstable();
        let key_code = keys.iter().enumerate().map(|(i, (k, _))| (k.to_string(), i as u32)).collect();
        Self {
            keys: keys.iter().map(|(k, _)| k.to_string()).collect(),
            key_code,
            counts: vec![0; keys.len()],
            values: vec![Vec::new(); keys.len()],
            value_code: vec![foldhash::HashMap::default(); keys.len()],
            table_bytes: 0,
            frozen: false,
        }
    }

    /// A coder for a flush of `rows`: every key they use.
    pub(crate) fn of_rows<S: SpanView>(rows: &[S]) -> Self {
        let mut counted: foldhash::HashMap<&str, u64> = foldhash::HashMap::default();
        // Packed rows are counted by pair id, then by key.
        let mut by_id: Vec<(u64, &str)> = Vec::new();
        let mut owner = None;
        fn fold<'k>(by_id: &mut Vec<(u64, &'k str)>, counted: &mut foldhash::HashMap<&'k str, u64>) {
            for (n, key) in by_id.drain(..).filter(|(n, _)| *n > 0) {
                *counted.entry(key).or_default() += n;
            }
        }
        for r in rows {
            match r.attribute_ids() {
                Some((table, ids)) => {
                    if owner != Some(table) {
                        fold(&mut by_id, &mut counted);
                        owner = Some(table);
                    }
                    for (&id, kv) in ids.iter().zip(r.attributes()) {
                        let id = id as usize;
                        if id >= by_id.len() {
                            by_id.resize(id + 1, (0, ""));
                        }
                        by_id[id] = (by_id[id].0 + 1, kv.key.as_str());
                    }
                }
                None => {
                    for kv in r.attributes() {
                        *counted.entry(kv.key.as_str()).or_default() += 1;
                    }
                }
            }
        }
        fold(&mut by_id, &mut counted);
        let mut coder = Self::with_keys(counted.into_iter());
        coder.learn(rows);
        coder
    }

    /// Adds the values of `rows` to the tables, while there is room.
    pub(crate) fn learn<S: SpanView>(&mut self, rows: &[S]) {
        let mut text = String::new();
        // Packed rows name their pairs by id: each pair is looked up once.
        let (mut pairs_of, mut seen) = (None, Vec::new());
        for r in rows {
            match r.attribute_ids() {
                Some((owner, ids)) => {
                    if pairs_of != Some(owner) {
                        pairs_of = Some(owner);
                        seen.clear();
                    }
                    for (&id, kv) in ids.iter().zip(r.attributes()) {
                        let id = id as usize;
                        if id >= seen.len() {
                            seen.resize(id + 1, false);
                        }
                        if !seen[id] {
                            seen[id] = true;
                            self.code(kv, &mut text);
                        }
                    }
                }
                None => r.attributes().for_each(|kv| {
                    self.code(kv, &mut text);
                }),
            }
        }
    }

    /// Adds the values of another segment's tables (a merge's input) to
    /// these, while there is room.
    pub(crate) fn learn_tables(&mut self, tables: &AttrTables) {
        let mut text = String::new();
        for (key, values) in tables.keys.iter().zip(&tables.values) {
            for v in values {
                text.clear();
                tagged_text(v, &mut text);
                self.learn_text(key, &text);
            }
        }
    }

    /// Adds value `text` (tagged, see `schema::tagged_text`) of `key` to
    /// the tables, while there is room and the key is coded.
    pub(crate) fn learn_text(&mut self, key: &str, text: &str) {
        if let Some(&k) = self.key_code.get(key) {
            self.value_code_of(k as usize, text);
        }
    }

    /// The footer entry of the tables.
    pub(crate) fn footer(&self) -> (&'static str, String) {
        let stored = Stored { keys: self.keys.clone(), counts: self.counts.clone(), values: self.values.clone() };
        (TABLES_KEY, serde_json::to_string(&stored).expect("tables serialize"))
    }

    /// The codes of `kv`: its key's, or [`UNCODED`], and its value's, or 0
    /// (a new value is added to its key's table while there is room).
    fn code(&mut self, kv: &KeyValue, text: &mut String) -> PairCode {
        let Some(&key) = self.key_code.get(kv.key.as_str()) else { return (UNCODED, 0) };
        text.clear();
        tagged_text(&kv.value, text);
        (key, self.value_code_of(key as usize, text))
    }

    /// The code of value `text` of key `k`: its position + 1 in the key's
    /// table, where it is added if new and there is room (and the tables are
    /// not frozen); else 0.
    fn value_code_of(&mut self, k: usize, text: &str) -> u32 {
        if let Some(&v) = self.value_code[k].get(text) {
            return v + 1;
        }
        if self.frozen || self.values[k].len() >= MAX_VALUES_PER_KEY || self.table_bytes + text.len() > MAX_TABLE_BYTES
        {
            return 0;
        }
        let v = self.values[k].len() as u32;
        self.table_bytes += text.len();
        self.values[k].push(text.to_string());
        self.value_code[k].insert(text.to_string(), v);
        v + 1
    }

    /// The four attribute columns of `rows`, in the order of the span schema:
    /// key codes, keys, value bits, values. The tables are frozen from the
    /// first call on.
    pub(crate) fn columns<S: SpanView>(&mut self, rows: &[S]) -> [ArrayRef; 4] {
        self.frozen = true;
        let widths: Vec<u32> = self.values.iter().map(|v| width(v.len())).collect();
        let n: usize = rows.iter().map(|r| r.attributes().count()).sum();
        let mut key_codes = ListBuilder::new(UInt32Builder::with_capacity(n));
        let mut keys = ListBuilder::new(StringBuilder::new());
        let mut value_bits = BinaryBuilder::with_capacity(rows.len(), n);
        let mut packed: Vec<u8> = Vec::new();
        let mut values = ListBuilder::new(StringBuilder::new());
        let mut text = String::new();
        let mut row: Vec<(PairCode, usize, &KeyValue)> = Vec::new();
        // Packed rows name their pairs by id: each pair is coded once. The
        // ids hold only while `rows` borrow their table (a merge refills
        // one table at the same address batch after batch), so the codes
        // found are kept for this call only.
        let mut pairs_of = None;
        let mut pair_codes: Vec<PairCode> = Vec::new();
        for r in rows {
            row.clear();
            match r.attribute_ids() {
                Some((owner, ids)) => {
                    if pairs_of != Some(owner) {
                        pairs_of = Some(owner);
                        pair_codes.clear();
                    }
                    for (j, (&id, kv)) in ids.iter().zip(r.attributes()).enumerate() {
                        let id = id as usize;
                        if id >= pair_codes.len() {
                            pair_codes.resize(id + 1, UNSEEN);
                        }
                        if pair_codes[id] == UNSEEN {
                            pair_codes[id] = self.code(kv, &mut text);
                        }
                        row.push((pair_codes[id], j, kv));
                    }
                }
                None => {
                    for (j, kv) in r.attributes().enumerate() {
                        row.push((self.code(kv, &mut text), j, kv));
                    }
                }
            }
            // Coded keys in table order, the others after them as given.
            row.sort_unstable_by_key(|&((key, _), j, _)| (key, j));
            let mut previous: Option<u32> = None;
            let (mut acc, mut bits) = (0u64, 0u32);
            packed.clear();
            for &((key, value), _, kv) in &row {
                if key == UNCODED {
                    key_codes.values().append_value(0);
                    keys.values().append_value(&kv.key);
                } else {
                    self.counts[key as usize] += 1;
                    key_codes.values().append_value(previous.map_or(key + 1, |p| key - p + 1));
                    keys.values().append_null();
                    previous = Some(key);
                    acc |= u64::from(value) << bits;
                    bits += widths[key as usize];
                    while bits >= 8 {
                        packed.push(acc as u8);
                        acc >>= 8;
                        bits -= 8;
                    }
                }
                if value == 0 {
                    text.clear();
                    tagged_text(&kv.value, &mut text);
                    values.values().append_value(&text);
                } else {
                    values.values().append_null();
                }
            }
            if bits > 0 {
                packed.push(acc as u8);
            }
            key_codes.append(true);
            keys.append(true);
            value_bits.append_value(&packed);
            values.append(true);
        }
        [
            Arc::new(key_codes.finish()),
            Arc::new(keys.finish()),
            Arc::new(value_bits.finish()),
            Arc::new(values.finish()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SpanId, TraceId};
    use crate::model::{Signal, SpanRow};
    use crate::packed::PackedSpans;
    use crate::schema;
    use crate::segment::{FlushInfo, Segment};
    use crate::spanstats::SegmentSummary;

    fn kv(k: &str, v: AttrValue) -> KeyValue {
        KeyValue { key: k.into(), value: v }
    }

    fn span(i: u32, attributes: Vec<KeyValue>) -> SpanRow {
        let mut trace = [0u8; 16];
        trace[12..].copy_from_slice(&(i / 4 + 1).to_be_bytes());
        SpanRow {
            trace_id: TraceId(trace),
            span_id: SpanId(u64::from(i + 1).to_be_bytes()),
            service_name: "svc".into(),
            name: "op".into(),
            start_time_unix_nano: i64::from(i),
            attributes,
            ..SpanRow::default()
        }
    }

    /// `rows` written as a segment and read back whole, in segment order.
    fn round_trip(rows: &[SpanRow]) -> (Vec<SpanRow>, Arc<AttrTables>) {
        let dir = tempfile::tempdir().unwrap();
        let flush = FlushInfo { flushed_seq: 1, signals: vec![Signal::Traces] };
        let meta = crate::segment::write_spans(dir.path(), 1, rows, &SegmentSummary::default(), &flush).unwrap();
        let quarantine = Arc::new(crate::quarantine::Quarantine::new(dir.path(), Default::default()));
        let seg = Segment::open(dir.path(), meta, quarantine).unwrap();
        let mut ids: Vec<TraceId> = rows.iter().map(|r| r.trace_id).collect();
        ids.dedup();
        let mut back = seg.traces(&ids).unwrap();
        back.sort_by_key(|r| r.span_id);
        (back, seg.attributes().unwrap())
    }

    /// The order attributes come back in: keys in the table by text, then
    /// the others as given.
    fn stored_order(mut r: SpanRow, coded: impl Fn(&str) -> bool) -> SpanRow {
        r.attributes.sort_by(|a, b| match (coded(&a.key), coded(&b.key)) {
            (true, true) => a.key.cmp(&b.key),
            (x, y) => y.cmp(&x),
        });
        r
    }

    #[test]
    fn every_kind_of_value_comes_back_with_its_key_in_key_order() {
        let values = [
            AttrValue::Str("GET".into()),
            AttrValue::Int(-7),
            AttrValue::Double(0.1),
            AttrValue::Bool(true),
            AttrValue::Bytes("00ff".into()),
            AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("a".into())]),
            AttrValue::Map(vec![kv("inner", AttrValue::Bool(false))]),
            AttrValue::Empty,
        ];
        let rows: Vec<SpanRow> = (0..40u32)
            .map(|i| {
                let mut attrs: Vec<KeyValue> = (0..5)
                    .map(|j| kv(&format!("key.{}", (i * 7 + j * 3) % 11), values[((i + j) % 8) as usize].clone()))
                    .collect();
                // The same key twice, in one span, keeps both.
                attrs.push(kv("key.0", AttrValue::Int(i64::from(i))));
                span(i, attrs)
            })
            .collect();
        let (back, tables) = round_trip(&rows);
        let want: Vec<SpanRow> = rows.into_iter().map(|r| stored_order(r, |_| true)).collect();
        assert_eq!(back, want);
        assert_eq!(tables.keys.len(), 11);
    }

    #[test]
    fn keys_and_values_past_the_tables_bounds_are_written_out() {
        // One key with more values than a table holds; more keys than the
        // table holds, each used once but "common", in every span.
        let rows: Vec<SpanRow> = (0..(MAX_VALUES_PER_KEY as u32 + 40))
            .map(|i| {
                span(
                    i,
                    vec![
                        kv("zz.rare", AttrValue::Int(i64::from(i))),
                        kv(&format!("unique.{i:05}"), AttrValue::Str("x".into())),
                        kv("common", AttrValue::Str(format!("v{}", i % 3))),
                    ],
                )
            })
            .collect();
        let (back, tables) = round_trip(&rows);
        assert_eq!(tables.keys.len(), MAX_KEYS);
        assert!(tables.keys.iter().any(|k| k == "common") && tables.keys.iter().any(|k| k == "zz.rare"));
        let rare = tables.keys.iter().position(|k| k == "zz.rare").unwrap();
        assert_eq!(tables.values[rare].len(), MAX_VALUES_PER_KEY);
        let coded = |k: &str| tables.keys.binary_search_by(|t| t.as_str().cmp(k)).is_ok();
        let want: Vec<SpanRow> = rows.into_iter().map(|r| stored_order(r, coded)).collect();
        assert_eq!(back, want);
    }

    /// Rewrites span segment `path` as segments were before the attribute
    /// tables: every key and value as text, no code columns, no tables (and,
    /// as before segments described themselves, no description or checksums).
    fn make_pre_table(path: &std::path::Path, tables: &AttrTables) {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
        let kvs: Vec<_> = builder.metadata().file_metadata().key_value_metadata().unwrap().clone();
        let kvs = kvs.into_iter().filter(|kv| kv.key == crate::spanstats::SUMMARY_KEY).collect();
        let mut out = Vec::new();
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let (mut keys, mut values) =
                (ListBuilder::new(StringBuilder::new()), ListBuilder::new(StringBuilder::new()));
            for row in schema::batch_to_spans(&batch, tables).unwrap() {
                for a in &row.attributes {
                    let mut text = String::new();
                    tagged_text(&a.value, &mut text);
                    keys.values().append_value(&a.key);
                    values.values().append_value(text);
                }
                keys.append(true);
                values.append(true);
            }
            let (keys, values): (ArrayRef, ArrayRef) = (Arc::new(keys.finish()), Arc::new(values.finish()));
            let schema = batch.schema();
            let columns = schema.fields().iter().zip(batch.columns()).filter_map(|(f, c)| match f.name().as_str() {
                col::ATTR_KEY_CODES | col::ATTR_VALUE_BITS => None,
                col::ATTR_KEYS => Some((f.name().clone(), keys.clone())),
                col::ATTR_VALUES => Some((f.name().clone(), values.clone())),
                _ => Some((f.name().clone(), c.clone())),
            });
            out.push(RecordBatch::try_from_iter(columns).unwrap());
        }
        let props = parquet::file::properties::WriterProperties::builder().set_key_value_metadata(Some(kvs)).build();
        let file = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, out[0].schema(), Some(props)).unwrap();
        out.iter().for_each(|b| w.write(b).unwrap());
        w.close().unwrap();
    }

    /// A merge of segments written before the tables codes their values too:
    /// its tables are complete before its first row, from the inputs' text.
    #[test]
    fn merged_segments_from_before_the_tables_get_their_values_coded() {
        let dir = tempfile::tempdir().unwrap();
        let flush = FlushInfo { flushed_seq: 1, signals: vec![Signal::Traces] };
        let quarantine = Arc::new(crate::quarantine::Quarantine::new(dir.path(), Default::default()));
        let (mut all, mut inputs) = (Vec::new(), Vec::new());
        for id in 1..=2u32 {
            let rows: Vec<SpanRow> = (0..500u32)
                .map(|i| {
                    let n = (id - 1) * 500 + i;
                    span(
                        n,
                        vec![kv("k", AttrValue::Int(i64::from(n % 7))), kv("s", AttrValue::Str(format!("v{}", n % 3)))],
                    )
                })
                .collect();
            let meta =
                crate::segment::write_spans(dir.path(), u64::from(id), &rows, &SegmentSummary::default(), &flush)
                    .unwrap();
            let written = Segment::open(dir.path(), meta.clone(), quarantine.clone()).unwrap();
            make_pre_table(&meta.parquet_path(dir.path()), &written.attributes().unwrap());
            let old = Segment::open(dir.path(), meta, quarantine.clone()).unwrap();
            assert_eq!(old.attributes().unwrap().keys().count(), 0, "no tables");
            inputs.push(Arc::new(old));
            all.extend(rows);
        }
        merged_as_written(dir.path(), &inputs, all, quarantine);
    }

    /// Merges `inputs` (holding the rows `all`) and checks the merged
    /// segment: every attribute value coded (its tables start as the union
    /// of its inputs'), every span read back as written. Returns it.
    fn merged_as_written(
        dir: &std::path::Path,
        inputs: &[Arc<Segment>],
        all: Vec<SpanRow>,
        quarantine: Arc<crate::quarantine::Quarantine>,
    ) -> Segment {
        let meta = crate::segment::merge(dir, 3, Signal::Traces, inputs, &|| Ok(())).unwrap();
        let file = std::fs::File::open(meta.parquet_path(dir)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let texts = batch.column_by_name(col::ATTR_VALUES).unwrap().as_any().downcast_ref::<ListArray>().unwrap();
            assert_eq!(texts.values().null_count(), texts.values().len(), "a value is written out");
        }
        let merged = Segment::open(dir, meta, quarantine).unwrap();
        let mut ids: Vec<TraceId> = all.iter().map(|r| r.trace_id).collect();
        ids.dedup();
        let mut back = merged.traces(&ids).unwrap();
        back.sort_by_key(|r| r.span_id);
        let want: Vec<SpanRow> = all.into_iter().map(|r| stored_order(r, |_| true)).collect();
        assert_eq!(back.len(), want.len());
        for (got, want) in back.iter().zip(&want) {
            assert_eq!(got, want);
        }
        merged
    }

    #[test]
    fn merged_segments_read_the_same_across_many_batches() {
        // More rows than a merge writes per batch, with pairs that change
        // from batch to batch: codes found for one batch's pairs must not
        // be reused for the next one's.
        let dir = tempfile::tempdir().unwrap();
        let flush = FlushInfo { flushed_seq: 1, signals: vec![Signal::Traces] };
        let quarantine = Arc::new(crate::quarantine::Quarantine::new(dir.path(), Default::default()));
        let mut all = Vec::new();
        let mut inputs = Vec::new();
        for id in 1..=2u32 {
            let rows: Vec<SpanRow> = (0..9000u32)
                .map(|i| {
                    let n = (id - 1) * 9000 + i;
                    span(
                        n,
                        vec![
                            kv(&format!("k{}", n % 13), AttrValue::Int(i64::from(n / 97 % 50))),
                            kv("batch", AttrValue::Str(format!("b{}", n / 1000))),
                        ],
                    )
                })
                .collect();
            let meta =
                crate::segment::write_spans(dir.path(), u64::from(id), &rows, &SegmentSummary::default(), &flush)
                    .unwrap();
            inputs.push(Arc::new(Segment::open(dir.path(), meta, quarantine.clone()).unwrap()));
            all.extend(rows);
        }
        let merged = merged_as_written(dir.path(), &inputs, all, quarantine);
        assert_eq!(merged.attributes().unwrap().keys().count(), 14);
    }

    #[test]
    fn packed_rows_code_as_their_plain_rows() {
        let rows: Vec<SpanRow> = (0..30u32)
            .map(|i| {
                span(i, vec![kv("b", AttrValue::Int(i64::from(i % 4))), kv("a", AttrValue::Str(format!("s{}", i % 5)))])
            })
            .collect();
        let mut packed = PackedSpans::default();
        for r in &rows {
            packed.push(r.clone());
        }
        let views: Vec<_> = packed.iter().collect();
        assert!(views[0].attribute_ids().is_some());
        let parents = vec![None; rows.len()];
        let (mut plain, mut from_packed) = (AttrCoder::of_rows(&rows), AttrCoder::of_rows(&views));
        let a = schema::spans_to_batch(&rows, &parents, &mut plain).unwrap();
        let b = schema::spans_to_batch(&views, &parents, &mut from_packed).unwrap();
        assert_eq!(a, b);
        assert_eq!(plain.footer(), from_packed.footer());
        let tables = AttrTables::parse(&plain.footer().1).unwrap();
        let back = schema::batch_to_spans(&a, &tables).unwrap();
        assert_eq!(back[3].attributes, vec![kv("a", AttrValue::Str("s3".into())), kv("b", AttrValue::Int(3))]);
    }

    #[test]
    fn segments_written_before_the_codes_read_their_text() {
        let mut keys = ListBuilder::new(StringBuilder::new());
        let mut values = ListBuilder::new(StringBuilder::new());
        for (k, v) in [("z", "i5"), ("a", "sx")] {
            keys.values().append_value(k);
            values.values().append_value(v);
        }
        keys.append(true);
        values.append(true);
        let batch = RecordBatch::try_from_iter([
            (col::ATTR_KEYS, Arc::new(keys.finish()) as ArrayRef),
            (col::ATTR_VALUES, Arc::new(values.finish()) as ArrayRef),
        ])
        .unwrap();
        let tables = AttrTables::default();
        let got = AttrReader::of(&batch, &tables).unwrap().row(0).unwrap();
        assert_eq!(got, vec![kv("z", AttrValue::Int(5)), kv("a", AttrValue::Str("x".into()))]);
    }

    #[test]
    fn codes_outside_the_tables_are_refused() {
        // Key "a" has three values: codes 1 to 3 in two bits each.
        let rows: Vec<SpanRow> =
            (0..3).map(|i| span(i, vec![kv("a", AttrValue::Int(i64::from(i))), kv("b", AttrValue::Int(2))])).collect();
        let mut coder = AttrCoder::of_rows(&rows);
        let batch = schema::spans_to_batch(&rows, &[None, None, None], &mut coder).unwrap();
        let mut stored: Stored = serde_json::from_str(&coder.footer().1).unwrap();
        // Two values still take two bits: the third row's code 3 is past them.
        stored.values[0].pop();
        let short = AttrTables::parse(&serde_json::to_string(&stored).unwrap()).unwrap();
        let err = schema::batch_to_spans(&batch, &short).unwrap_err().to_string();
        assert!(err.contains("not in the table"), "{err}");
        // Bits the tables do not account for.
        stored.values[0].push("i7".into());
        stored.values[1].extend((0..300).map(|i| format!("i{i}")));
        let long = AttrTables::parse(&serde_json::to_string(&stored).unwrap()).unwrap();
        let err = schema::batch_to_spans(&batch, &long).unwrap_err().to_string();
        assert!(err.contains("do not fit the tables"), "{err}");
        stored.keys.pop();
        assert!(AttrTables::parse(&serde_json::to_string(&stored).unwrap()).is_err(), "counts and keys differ");
    }

    /// The bytes of each row's value codes: its keys' widths, added up.
    fn value_bytes(batch: &RecordBatch) -> Vec<usize> {
        let bits = batch.column_by_name(col::ATTR_VALUE_BITS).unwrap().as_any().downcast_ref::<BinaryArray>().unwrap();
        (0..bits.len()).map(|i| bits.value(i).len()).collect()
    }

    #[test]
    fn a_value_code_takes_the_bits_of_its_keys_table() {
        // "three" has 3 values (2 bits), "ten" 10 (4 bits), "one" 1 (1 bit),
        // "big" 150 (8 bits): 15 bits in the rows with "big", 7 in the others.
        let rows: Vec<SpanRow> = (0..300u32)
            .map(|i| {
                let mut attrs = vec![
                    kv("three", AttrValue::Int(i64::from(i % 3))),
                    kv("ten", AttrValue::Str(format!("t{}", i % 10))),
                    kv("one", AttrValue::Bool(true)),
                ];
                if i % 2 == 0 {
                    attrs.push(kv("big", AttrValue::Int(i64::from(i))));
                }
                span(i, attrs)
            })
            .collect();
        // Written in two batches, as a flush writes more rows than a batch.
        let mut coder = AttrCoder::of_rows(&rows);
        let (first, second) = rows.split_at(100);
        let batches = [
            schema::spans_to_batch(first, &vec![None; first.len()], &mut coder).unwrap(),
            schema::spans_to_batch(second, &vec![None; second.len()], &mut coder).unwrap(),
        ];
        let tables = AttrTables::parse(&coder.footer().1).unwrap();
        assert_eq!(tables.keys, ["big", "one", "ten", "three"]);
        assert_eq!(tables.widths, vec![8, 1, 4, 2]);
        let mut back = Vec::new();
        for batch in &batches {
            let sizes = value_bytes(batch);
            assert!(sizes.iter().enumerate().all(|(i, &n)| n == if i % 2 == 0 { 2 } else { 1 }), "{sizes:?}");
            let texts = batch.column_by_name(col::ATTR_VALUES).unwrap().as_any().downcast_ref::<ListArray>().unwrap();
            assert_eq!(texts.values().null_count(), texts.values().len(), "every value is coded");
            back.extend(schema::batch_to_spans(batch, &tables).unwrap());
        }
        let want: Vec<SpanRow> = rows.into_iter().map(|r| stored_order(r, |_| true)).collect();
        assert_eq!(back, want);
    }

    #[test]
    fn a_value_first_seen_after_the_first_rows_are_written_is_written_out() {
        let rows: Vec<SpanRow> = (0..4u32).map(|i| span(i, vec![kv("k", AttrValue::Int(i64::from(i % 2)))])).collect();
        let mut coder = AttrCoder::of_rows(&rows[..2]);
        let first = schema::spans_to_batch(&rows[..2], &[None, None], &mut coder).unwrap();
        let late = [span(9, vec![kv("k", AttrValue::Int(7))])];
        let second = schema::spans_to_batch(&late, &[None], &mut coder).unwrap();
        let tables = AttrTables::parse(&coder.footer().1).unwrap();
        assert_eq!(tables.values[0], vec![AttrValue::Int(0), AttrValue::Int(1)], "the tables were frozen");
        assert_eq!(schema::batch_to_spans(&first, &tables).unwrap(), rows[..2].to_vec());
        assert_eq!(schema::batch_to_spans(&second, &tables).unwrap(), late.to_vec());
        assert_eq!(value_bytes(&second), vec![1], "code 0 in the key's 2 bits");
    }

    /// Format 2 kept the value codes as a list of `u32`s.
    #[test]
    fn segments_of_format_2_read_their_listed_value_codes() {
        let texts = |items: [Option<&str>; 2]| {
            let mut b = ListBuilder::new(StringBuilder::new());
            items.iter().for_each(|t| b.values().append_option(*t));
            b.append(true);
            Arc::new(b.finish()) as ArrayRef
        };
        let codes = |items: [u32; 2]| {
            let mut b = ListBuilder::new(UInt32Builder::new());
            items.iter().for_each(|c| b.values().append_value(*c));
            b.append(true);
            Arc::new(b.finish()) as ArrayRef
        };
        let batch = RecordBatch::try_from_iter([
            (col::ATTR_KEY_CODES, codes([1, 2])),
            (col::ATTR_KEYS, texts([None, None])),
            (col::ATTR_VALUE_CODES, codes([2, 0])),
            (col::ATTR_VALUES, texts([None, Some("sfree")])),
        ])
        .unwrap();
        let stored = Stored {
            keys: vec!["a".into(), "b".into()],
            counts: vec![1, 1],
            values: vec![vec!["i1".into(), "i2".into()], vec!["sx".into()]],
        };
        let tables = AttrTables::parse(&serde_json::to_string(&stored).unwrap()).unwrap();
        let got = AttrReader::of(&batch, &tables).unwrap().row(0).unwrap();
        assert_eq!(got, vec![kv("a", AttrValue::Int(2)), kv("b", AttrValue::Str("free".into()))]);
    }
}
