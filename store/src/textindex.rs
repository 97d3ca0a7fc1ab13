//! A tantivy index per segment: the store's answer to text predicates.
//!
//! Each document is one row of the segment's Parquet file, tied to it by the
//! `row` fast field (its position in the file). Two indexed fields:
//! - `kv`: exact `key=value` terms (raw tokenizer) for Jaeger tag filters;
//! - `text`: tokenized full text (span names, status messages, string attribute
//!   values, log bodies) for free-text search.
//!
//! Nothing is stored in the index but positions: the Parquet file holds the data.

use std::collections::HashSet;
use std::path::Path;

use tantivy::collector::DocSetCollector;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::Result;

pub const ROW: &str = "row";
pub const KV: &str = "kv";
pub const TEXT_FIELD: &str = "text";

/// Memory budget of the single indexing thread.
const WRITER_HEAP: usize = 64 << 20;

/// How much the `text` field records per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextDetail {
    /// Which documents hold a token: enough for term and boolean queries, and
    /// what span text needs (spans are matched, never ranked).
    Docs,
    /// Frequencies and positions too: phrase queries and ranking (log bodies).
    Positions,
}

/// Nothing is scored by field length, so no field norms: they would cost a
/// byte per document per field.
fn schema(detail: TextDetail) -> (Schema, Field, Field, Field) {
    let mut b = Schema::builder();
    let row = b.add_u64_field(ROW, FAST);
    let exact = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let kv = b.add_text_field(KV, TextOptions::default().set_indexing_options(exact));
    let record = match detail {
        TextDetail::Docs => IndexRecordOption::Basic,
        TextDetail::Positions => IndexRecordOption::WithFreqsAndPositions,
    };
    let words = TextFieldIndexing::default()
        .set_tokenizer("default")
        .set_index_option(record)
        .set_fieldnorms(detail == TextDetail::Positions);
    let text = b.add_text_field(TEXT_FIELD, TextOptions::default().set_indexing_options(words));
    (b.build(), row, kv, text)
}

/// Builds one segment's index in `dir` (which must not exist yet).
pub struct TextIndexWriter {
    writer: IndexWriter,
    row: Field,
    kv: Field,
    text: Field,
}

/// One document under construction.
pub struct Doc<'a> {
    doc: TantivyDocument,
    kv: Field,
    text: Field,
    _owner: std::marker::PhantomData<&'a ()>,
}

impl Doc<'_> {
    pub fn kv(&mut self, term: &str) {
        self.doc.add_text(self.kv, term);
    }
    pub fn text(&mut self, text: &str) {
        if !text.is_empty() {
            self.doc.add_text(self.text, text);
        }
    }
}

impl TextIndexWriter {
    pub fn create(dir: &Path, detail: TextDetail) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (schema, row, kv, text) = schema(detail);
        let index = Index::create_in_dir(dir, schema)?;
        let writer = index.writer_with_num_threads(1, WRITER_HEAP)?;
        Ok(Self { writer, row, kv, text })
    }

    /// Adds the document for row `row`, filled in by `fill`.
    pub fn add(&mut self, row: u64, fill: impl FnOnce(&mut Doc<'_>)) -> Result<()> {
        let mut doc = Doc { doc: TantivyDocument::default(), kv: self.kv, text: self.text, _owner: Default::default() };
        doc.doc.add_u64(self.row, row);
        fill(&mut doc);
        self.writer.add_document(doc.doc)?;
        Ok(())
    }

    /// Commits (tantivy fsyncs its files) and waits for merges to finish.
    pub fn finish(mut self) -> Result<()> {
        self.writer.commit()?;
        self.writer.wait_merging_threads()?;
        Ok(())
    }
}

/// A segment's index opened for search.
pub struct TextIndex {
    reader: IndexReader,
    kv: Field,
}

impl TextIndex {
    pub fn open(dir: &Path) -> Result<Self> {
        let index = Index::open_in_dir(dir)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let kv = index.schema().get_field(KV)?;
        Ok(Self { reader, kv })
    }

    /// Rows whose documents carry every one of `terms` (exact `key=value` terms).
    pub fn rows_with_all_terms(&self, terms: &[String]) -> Result<HashSet<u32>> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let q: Box<dyn Query> =
                    Box::new(TermQuery::new(Term::from_field_text(self.kv, t), IndexRecordOption::Basic));
                (Occur::Must, q)
            })
            .collect();
        self.rows_matching(&BooleanQuery::new(clauses))
    }

    /// Rows whose documents match `query`.
    pub fn rows_matching(&self, query: &dyn Query) -> Result<HashSet<u32>> {
        let searcher = self.reader.searcher();
        let docs = searcher.search(query, &DocSetCollector)?;
        let mut rows = HashSet::with_capacity(docs.len());
        for addr in docs {
            let col = searcher.segment_reader(addr.segment_ord).fast_fields().u64(ROW)?;
            if let Some(row) = col.first(addr.doc_id) {
                rows.insert(row as u32);
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rows_by_all_terms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idx");
        let mut w = TextIndexWriter::create(&path, TextDetail::Docs).unwrap();
        w.add(0, |d| {
            d.kv("http.method=GET");
            d.kv("error=true");
            d.text("GET /cart failed");
        })
        .unwrap();
        w.add(1, |d| d.kv("http.method=GET")).unwrap();
        w.finish().unwrap();
        let idx = TextIndex::open(&path).unwrap();
        let rows = idx.rows_with_all_terms(&["http.method=GET".into()]).unwrap();
        assert_eq!(rows, HashSet::from([0, 1]));
        let rows = idx.rows_with_all_terms(&["http.method=GET".into(), "error=true".into()]).unwrap();
        assert_eq!(rows, HashSet::from([0]));
        assert!(idx.rows_with_all_terms(&["http.method=POST".into()]).unwrap().is_empty());
    }
}
