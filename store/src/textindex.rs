//! A tantivy index per log segment (and for the memtable's logs): the
//! store's answer to full-text log search. Span segments have their own
//! index (`spanindex`): a trace search is exact terms ranked by time.
//!
//! Each document is one row of the segment's Parquet file, tied to it by the
//! `row` fast field (its position in the file). Two indexed fields:
//! - `kv`: exact `key=value` terms (raw tokenizer) for attribute filters;
//! - `text`: tokenized full text (log bodies, string attribute values).
//!
//! Log indexes also carry what a log search filters and sorts on, so that a
//! search is answered by the index alone and Parquet is read only for the rows
//! returned: `time` and `severity` (fast fields: range filters and top-k by
//! time), `service` and `trace` (exact terms).
//!
//! Nothing is stored in the index but positions: the Parquet file holds the data.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::Query;
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument};

use crate::error::{Result, StoreError};

pub(crate) const ROW: &str = "row";
pub(crate) const KV: &str = "kv";
pub(crate) const TEXT_FIELD: &str = "text";
pub(crate) const TIME: &str = "time";
pub(crate) const SEVERITY: &str = "severity";
pub(crate) const SERVICE: &str = "service";
pub(crate) const TRACE: &str = "trace";

/// Memory budget of the single indexing thread.
const WRITER_HEAP: usize = 64 << 20;

/// Which signal an index serves; decides what the `text` field records and
/// which extra fields exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexKind {
    /// `text` records positions too (phrase queries), plus the log fields.
    Logs,
}

/// The fields of an index schema.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub row: Field,
    pub kv: Field,
    pub text: Field,
    /// Log indexes only.
    pub log: Option<LogFields>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct LogFields {
    pub time: Field,
    pub severity: Field,
    pub service: Field,
    pub trace: Field,
}

/// Nothing is scored by field length, so no field norms: they would cost a
/// byte per document per field.
pub(crate) fn schema(kind: IndexKind) -> (Schema, Fields) {
    let mut b = Schema::builder();
    let row = b.add_u64_field(ROW, FAST);
    let exact = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let kv = b.add_text_field(KV, TextOptions::default().set_indexing_options(exact.clone()));
    let record = match kind {
        IndexKind::Logs => IndexRecordOption::WithFreqsAndPositions,
    };
    let words = TextFieldIndexing::default().set_tokenizer("default").set_index_option(record).set_fieldnorms(false);
    let text = b.add_text_field(TEXT_FIELD, TextOptions::default().set_indexing_options(words));
    let log = (kind == IndexKind::Logs).then(|| LogFields {
        time: b.add_i64_field(TIME, FAST),
        severity: b.add_i64_field(SEVERITY, FAST),
        service: b.add_text_field(SERVICE, TextOptions::default().set_indexing_options(exact.clone())),
        trace: b.add_text_field(TRACE, TextOptions::default().set_indexing_options(exact)),
    });
    (b.build(), Fields { row, kv, text, log })
}

/// Builds one index, on disk (a segment's) or in RAM (the memtable's).
pub(crate) struct TextIndexWriter {
    writer: IndexWriter,
    fields: Fields,
}

/// One document under construction.
pub(crate) struct Doc {
    doc: TantivyDocument,
    fields: Fields,
}

impl Doc {
    pub(crate) fn kv(&mut self, term: &str) {
        self.doc.add_text(self.fields.kv, term);
    }
    pub(crate) fn text(&mut self, text: &str) {
        if !text.is_empty() {
            self.doc.add_text(self.fields.text, text);
        }
    }
    /// Log documents: the fields a log search filters and sorts on.
    pub(crate) fn log(&mut self, time: i64, severity: i64, service: &str, trace: Option<&str>) {
        let f = self.fields.log.expect("log fields on a log index");
        self.doc.add_i64(f.time, time);
        self.doc.add_i64(f.severity, severity);
        self.doc.add_text(f.service, service);
        if let Some(t) = trace {
            self.doc.add_text(f.trace, t);
        }
    }
}

impl TextIndexWriter {
    /// A writer for a new index in `dir` (which must not exist yet).
    pub(crate) fn create(dir: &Path, kind: IndexKind) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema(kind);
        let index = Index::create_in_dir(dir, schema)?;
        Self::with_index(index, fields)
    }

    /// A writer for a new in-RAM index, and the index itself (for readers).
    pub(crate) fn create_in_ram(kind: IndexKind) -> Result<(Self, Index)> {
        let (schema, fields) = schema(kind);
        let index = Index::create_in_ram(schema);
        Ok((Self::with_index(index.clone(), fields)?, index))
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self> {
        // The heap is allocated lazily, as documents arrive.
        let writer = index.writer_with_num_threads(1, WRITER_HEAP)?;
        Ok(Self { writer, fields })
    }

    /// Adds the document for row `row`, filled in by `fill`.
    pub(crate) fn add(&mut self, row: u64, fill: impl FnOnce(&mut Doc)) -> Result<()> {
        let mut doc = Doc { doc: TantivyDocument::default(), fields: self.fields };
        doc.doc.add_u64(self.fields.row, row);
        fill(&mut doc);
        self.writer.add_document(doc.doc)?;
        Ok(())
    }

    /// Makes the documents added so far searchable (after a reader reload).
    pub(crate) fn commit(&mut self) -> Result<()> {
        self.writer.commit()?;
        Ok(())
    }

    /// Commits (tantivy fsyncs its files) and waits for merges to finish.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.writer.commit()?;
        self.writer.wait_merging_threads()?;
        Ok(())
    }
}

/// An index opened for search.
pub(crate) struct TextIndex {
    reader: IndexReader,
}

impl TextIndex {
    /// Opens a segment's index after checking every one of its files against
    /// the checksum tantivy keeps in its footer: a flipped or truncated file,
    /// a missing one, or an unreadable `meta.json` is an `Err` naming the
    /// problem, never a panic (tantivy can panic on damaged bytes, so the
    /// whole open runs under `catch_unwind`). Reads the whole index once.
    ///
    /// # Errors
    /// `Corrupt` with the reason.
    pub(crate) fn open_verified(dir: &Path) -> Result<Self> {
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Self> {
            let index = Index::open_in_dir(dir)?;
            let mut damaged = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let name = entry?.file_name();
                let name = name.to_string_lossy();
                if name == "meta.json" || name.starts_with('.') {
                    continue;
                }
                match index.directory().validate_checksum(Path::new(name.as_ref())) {
                    Ok(true) => {}
                    Ok(false) => damaged.push(format!("{name}: checksum mismatch")),
                    Err(e) => damaged.push(format!("{name}: {e}")),
                }
            }
            if !damaged.is_empty() {
                return Err(StoreError::Corrupt(damaged.join("; ")));
            }
            let opened = Self::from_index(index)?;
            // Touch every segment's readers so damage in what the checksum
            // does not cover surfaces here rather than in a query.
            for reader in opened.reader.searcher().segment_readers() {
                reader.fast_fields().u64(ROW)?;
            }
            Ok(opened)
        }));
        match opened {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(e)) => Err(StoreError::Corrupt(format!("{}: {e}", dir.display()))),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(StoreError::Corrupt(format!("{}: tantivy panicked opening it: {what}", dir.display())))
            }
        }
    }

    /// A reader over `index`; call [`TextIndex::reload`] to see later commits.
    pub(crate) fn from_index(index: Index) -> Result<Self> {
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        // An index of another schema is damage, found here rather than in a query.
        let schema = index.schema();
        for name in [ROW, KV, TEXT_FIELD, TIME, SEVERITY, SERVICE, TRACE] {
            schema.get_field(name)?;
        }
        Ok(Self { reader })
    }

    pub(crate) fn reload(&self) -> Result<()> {
        self.reader.reload()?;
        Ok(())
    }

    /// The `limit` newest documents matching `query` (log indexes), as (time,
    /// row), newest first.
    pub(crate) fn newest_rows(&self, query: &dyn Query, limit: usize) -> Result<Vec<(i64, u32)>> {
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(limit.max(1)).order_by_fast_field::<i64>(TIME, Order::Desc);
        let docs = searcher.search(query, &top)?;
        let mut out = Vec::with_capacity(docs.len());
        for (time, addr) in docs {
            let col = searcher.segment_reader(addr.segment_ord).fast_fields().u64(ROW)?;
            if let (Some(time), Some(row)) = (time, col.first(addr.doc_id)) {
                out.push((time, row as u32));
            }
        }
        Ok(out)
    }
}
