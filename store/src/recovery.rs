//! Start-up: from the files in the data directory to a catalog and open
//! segments, without ever deleting a segment.
//!
//! - The catalog names the segments of every committed flush. Each is opened
//!   and checked (`Segment::open`); a damaged one is moved to quarantine and
//!   dropped from the catalog, and the store starts with the rest.
//! - Segment files the catalog does not name are either an interrupted flush
//!   (files synced, catalog not yet replaced, WAL not yet trimmed) or
//!   leftovers. A flush whose segments are all present and describe
//!   themselves, with an id the catalog has not used yet, is adopted together
//!   with the WAL sequence it covered — exactly the state the flush was about
//!   to commit. Anything else is moved to quarantine (its data is still in the
//!   WAL, which is trimmed only after a catalog commit).
//! - A missing or unparseable catalog is rebuilt from the segments' own
//!   descriptions (an unparseable one is quarantined first) and written back:
//!   `flushed_seq` is the highest sequence a complete flush covered,
//!   `next_segment_id` one above the highest id seen. A segment written before
//!   segments described themselves cannot be adopted without a catalog and is
//!   quarantined, never deleted.
//!
//! Only `*.tmp` files are deleted: they are half-written copies whose rename
//! never happened, by construction not a segment.
//!
//! Past 600 lines only with its tests: each kind of damage start-up survives
//! has its own, and they share fixtures, so they stay next to the code.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::error::{Result, StoreError};
use crate::model::Signal;
use crate::quarantine::Quarantine;
use crate::segment::{files_of, Segment, SegmentFooter};

/// The catalog and open segments the store starts with.
pub(crate) struct Recovered {
    pub catalog: Catalog,
    pub segments: Vec<Arc<Segment>>,
}

/// One segment's files found on disk.
#[derive(Default)]
struct Found {
    parquet: Option<PathBuf>,
    /// The index, and for an old span segment caught mid-upgrade also its tantivy index.
    index: Vec<PathBuf>,
}

fn parse_name(name: &str) -> Option<(u64, Signal, bool)> {
    let (stem, is_index) = match (name.strip_suffix(".parquet"), name.strip_suffix(".tantivy")) {
        (Some(stem), _) => (stem, false),
        (_, Some(stem)) => (stem, true),
        _ => (name.strip_suffix(".idx")?, true),
    };
    let (id, signal) = stem.split_once('-')?;
    let signal = Signal::ALL.into_iter().find(|s| s.as_str() == signal)?;
    Some((id.parse().ok()?, signal, is_index))
}

/// Lists the segment files of `seg_dir` by (id, signal), deleting `*.tmp`
/// leftovers of interrupted writes.
fn scan(seg_dir: &Path) -> Result<BTreeMap<(u64, Signal), Found>> {
    let mut found: BTreeMap<(u64, Signal), Found> = BTreeMap::new();
    for entry in fs::read_dir(seg_dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".tmp") {
            tracing::info!(path = %path.display(), "removing a half-written file of an interrupted flush");
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            continue;
        }
        match parse_name(&name) {
            Some((id, signal, false)) => found.entry((id, signal)).or_default().parquet = Some(path),
            Some((id, signal, true)) => found.entry((id, signal)).or_default().index.push(path),
            None => tracing::warn!(path = %path.display(), "ignoring a file that is not a segment"),
        }
    }
    Ok(found)
}

/// Loads the catalog, or rebuilds it from the segment files when it is
/// missing or unreadable; opens every segment; quarantines what is damaged;
/// writes the catalog back when anything changed.
///
/// # Errors
/// I/O errors that say nothing about damage (reading the directory, moving a
/// file, writing the catalog); damage itself is never an error.
pub(crate) fn recover(data_dir: &Path, seg_dir: &Path, quarantine: &Arc<Quarantine>) -> Result<Recovered> {
    let mut found = scan(seg_dir)?;
    let loaded = match Catalog::load(data_dir) {
        Ok(c) => c,
        Err(StoreError::Corrupt(reason)) => {
            let moved = quarantine.move_in(&Catalog::file(data_dir))?;
            tracing::error!(
                reason,
                moved_to = ?moved,
                "catalog.json is unreadable: moved it to quarantine; rebuilding the catalog from the segment files"
            );
            None
        }
        Err(e) => return Err(e),
    };
    let rebuilding = loaded.is_none() && !found.is_empty();
    if rebuilding {
        tracing::error!(
            segments = found.len(),
            "no usable catalog.json: rebuilding the catalog from the segment files' own descriptions"
        );
    }
    let mut catalog = loaded.clone().unwrap_or_else(Catalog::empty);
    let mut changed = false;
    let mut segments = Vec::new();

    // 1. What the catalog names.
    let listed = std::mem::take(&mut catalog.segments);
    for meta in listed {
        found.remove(&(meta.id, meta.signal));
        match Segment::open(seg_dir, meta.clone(), quarantine.clone()) {
            Ok(seg) => {
                catalog.segments.push(meta);
                segments.push(Arc::new(seg));
            }
            Err(StoreError::Damaged(reason)) => {
                quarantine.segment(&files_of(seg_dir, &meta), &reason)?;
                changed = true;
            }
            Err(e) => return Err(e),
        }
    }

    // 2. Segments a merge replaced (see `db::compact`): the merged segment
    // (of the same signal) is listed, or, with no catalog to go by, present
    // whole.
    let mut replaced: BTreeSet<(u64, Signal)> =
        catalog.segments.iter().flat_map(|m| m.compacted_from.iter().map(|&id| (id, m.signal))).collect();
    if loaded.is_none() {
        for ((_, signal), files) in &found {
            if let Some(parquet) = &files.parquet {
                if let Ok(Some(footer)) = Segment::read_footer(parquet) {
                    replaced.extend(footer.meta.compacted_from.into_iter().map(|id| (id, *signal)));
                }
            }
        }
    }
    let listed: BTreeSet<(u64, Signal)> = catalog.segments.iter().map(|m| (m.id, m.signal)).collect();

    // 3. Everything else, grouped by the flush that wrote it.
    let mut flushes: BTreeMap<u64, Vec<(SegmentFooter, Found)>> = BTreeMap::new();
    let mut highest_id = catalog.next_segment_id.saturating_sub(1);
    for ((id, signal), files) in std::mem::take(&mut found) {
        highest_id = highest_id.max(id);
        changed = true;
        if replaced.contains(&(id, signal)) {
            tracing::info!(segment = id, signal = signal.as_str(), "removing a segment that a finished merge replaced");
            remove_all(&all(&files))?;
            continue;
        }
        let Some(parquet) = &files.parquet else {
            let reason = "an index without its Parquet file";
            quarantine.segment(&files.index, reason)?;
            continue;
        };
        match Segment::read_footer(parquet) {
            Ok(Some(footer))
                if loaded.is_some()
                    && !footer.meta.compacted_from.is_empty()
                    && footer.meta.compacted_from.iter().all(|&i| listed.contains(&(i, signal))) =>
            {
                tracing::info!(
                    segment = id,
                    "removing the output of a merge that did not finish (its inputs are in use)"
                );
                remove_all(&all(&files))?;
            }
            Ok(Some(footer)) if footer.meta.id == id && footer.meta.signal == signal => {
                flushes.entry(id).or_default().push((footer, files));
            }
            Ok(Some(_)) => quarantine.segment(&all(&files), "its description names another segment")?,
            Ok(None) => quarantine
                .segment(&all(&files), "written before segments described themselves, and no catalog names it")?,
            Err(StoreError::Damaged(reason)) => quarantine.segment(&all(&files), &reason)?,
            Err(e) => return Err(e),
        }
    }
    for (id, members) in flushes {
        let complete = {
            let have: BTreeSet<Signal> = members.iter().map(|(f, _)| f.meta.signal).collect();
            let want: BTreeSet<Signal> = members.iter().flat_map(|(f, _)| f.flush.signals.iter().copied()).collect();
            have == want && members.iter().all(|(f, _)| f.flush.flushed_seq == members[0].0.flush.flushed_seq)
        };
        let fresh = loaded.is_none() || id >= catalog.next_segment_id;
        if loaded.is_some() && !(complete && fresh) {
            let reason = if fresh {
                "part of a flush that did not finish (its data is still in the WAL)"
            } else {
                "not in the catalog and older than it (left over from a removed segment)"
            };
            for (_, files) in &members {
                quarantine.segment(&all(files), reason)?;
            }
            continue;
        }
        let mut opened = Vec::new();
        for (footer, files) in &members {
            let mut meta = footer.meta.clone();
            meta.bytes = all(files).iter().map(|p| size_of(p)).sum();
            match Segment::open(seg_dir, meta.clone(), quarantine.clone()) {
                Ok(seg) => opened.push((meta, seg)),
                Err(StoreError::Damaged(reason)) => quarantine.segment(&all(files), &reason)?,
                Err(e) => return Err(e),
            }
        }
        if loaded.is_some() && opened.len() < members.len() {
            // Adopting part of a flush would claim its WAL range; the WAL still has it all.
            for (meta, _) in &opened {
                quarantine.segment(&files_of(seg_dir, meta), "part of a flush whose other segments are damaged")?;
            }
            continue;
        }
        if opened.len() == members.len() {
            catalog.flushed_seq = catalog.flushed_seq.max(members[0].0.flush.flushed_seq);
        }
        for (meta, seg) in opened {
            tracing::warn!(
                segment = %meta.parquet_path(seg_dir).display(),
                rows = meta.rows,
                "adopted a segment the catalog did not name"
            );
            catalog.segments.push(meta);
            segments.push(Arc::new(seg));
        }
    }

    catalog.next_segment_id = catalog.next_segment_id.max(highest_id + 1);
    catalog.segments.sort_by_key(|m| (m.age_order(), m.signal.tag()));
    segments.sort_by_key(|s| (s.meta.age_order(), s.meta.signal.tag()));
    if rebuilding {
        quarantine.counters().catalog_rebuilds.fetch_add(1, Ordering::Relaxed);
    }
    if changed || rebuilding {
        catalog.store(data_dir)?;
        tracing::warn!(
            segments = catalog.segments.len(),
            flushed_seq = catalog.flushed_seq,
            next_segment_id = catalog.next_segment_id,
            rebuilt = rebuilding,
            "catalog written back after recovery"
        );
    }
    Ok(Recovered { catalog, segments })
}

/// Deletes files and directories that start-up knows to be redundant.
fn remove_all(paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        crate::segment::remove_path(p)?;
    }
    Ok(())
}

fn all(files: &Found) -> Vec<PathBuf> {
    files.parquet.iter().chain(files.index.iter()).cloned().collect()
}

fn size_of(path: &Path) -> u64 {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .map(|it| it.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;
    use crate::db::{Batch, Store, StoreConfig};
    use crate::ids::TraceId;
    use crate::query::TraceQuery;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue("svc".into())) }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn trace_id(n: u32) -> [u8; 16] {
        let mut id = [0x5a; 16];
        id[12..].copy_from_slice(&n.to_be_bytes());
        id
    }

    /// Traces `first..first + count`, one span each, tagged `batch=<first>`.
    fn spans(first: u32, count: u32) -> Batch {
        let spans = (first..first + count)
            .map(|n| Span {
                trace_id: trace_id(n).to_vec(),
                span_id: [1, 2, 3, 4, 5, 6, 7, n as u8 | 1].to_vec(),
                name: "op".into(),
                kind: 2,
                start_time_unix_nano: T0 + n as u64,
                end_time_unix_nano: T0 + n as u64 + 1000,
                attributes: vec![KeyValue {
                    key: "batch".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::IntValue(first as i64)) }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        })
    }

    fn logs(body: &str) -> Batch {
        Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: T0,
                        body: Some(AnyValue { value: Some(any_value::Value::StringValue(body.into())) }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn open(dir: &Path) -> Store {
        Store::open(StoreConfig::new(dir)).unwrap()
    }

    /// Trace numbers the store serves, checking each has exactly its one span.
    fn traces_served(store: &Store, upto: u32) -> HashSet<u32> {
        (0..upto)
            .filter(|&n| {
                let got = store.trace(TraceId::from_slice(&trace_id(n)).unwrap()).unwrap();
                assert!(got.len() <= 1, "trace {n} served {} times", got.len());
                got.len() == 1
            })
            .collect()
    }

    fn all(n: u32) -> HashSet<u32> {
        (0..n).collect()
    }

    fn quarantined(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join(crate::quarantine::DIR_NAME))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Two flushes: traces 0..10 (+ a log) in segment 1, 10..20 in segment 2.
    fn two_flushes(dir: &Path) {
        let store = open(dir);
        store.append_blocking(spans(0, 10)).unwrap();
        store.append_blocking(logs("first flush")).unwrap();
        store.flush().unwrap();
        store.append_blocking(spans(10, 10)).unwrap();
        store.flush().unwrap();
        store.close().unwrap();
    }

    /// Issue 14 item 5: a missing catalog.json made start-up delete every
    /// segment file as an "interrupted flush".
    #[test]
    fn missing_catalog_is_rebuilt_from_the_segments() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let before = Catalog::load(dir.path()).unwrap().unwrap();
        fs::remove_file(Catalog::file(dir.path())).unwrap();
        let store = open(dir.path());
        assert_eq!(traces_served(&store, 20), all(20));
        assert_eq!(store.all_logs().unwrap().len(), 1);
        assert_eq!(store.counters().catalog_rebuilds.load(Ordering::Relaxed), 1);
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
        store.close().unwrap();
        let rebuilt = Catalog::load(dir.path()).unwrap().unwrap();
        assert_eq!(rebuilt.flushed_seq, before.flushed_seq);
        assert_eq!(rebuilt.next_segment_id, before.next_segment_id);
        assert_eq!(
            rebuilt.segments.iter().map(|m| (m.id, m.signal, m.rows)).collect::<Vec<_>>(),
            before.segments.iter().map(|m| (m.id, m.signal, m.rows)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn unparseable_catalog_is_quarantined_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        fs::write(Catalog::file(dir.path()), b"{\"version\": 1, \"flushed_seq\": tr").unwrap();
        let store = open(dir.path());
        assert_eq!(traces_served(&store, 20), all(20));
        assert_eq!(store.counters().catalog_rebuilds.load(Ordering::Relaxed), 1);
        store.close().unwrap();
        assert_eq!(quarantined(dir.path()), vec!["catalog.json".to_string()]);
        assert!(Catalog::load(dir.path()).unwrap().is_some());
    }

    /// The state a crash leaves between a flush's segment sync and its
    /// catalog commit: the old catalog, the new segments, the untrimmed WAL.
    fn interrupted_second_flush(dir: &Path) {
        let store = open(dir);
        store.append_blocking(spans(0, 10)).unwrap();
        store.flush().unwrap();
        let catalog = fs::read(Catalog::file(dir)).unwrap();
        store.append_blocking(spans(10, 10)).unwrap();
        store.append_blocking(logs("second flush")).unwrap();
        let wal: Vec<(PathBuf, Vec<u8>)> = crate::wal::list_files(&dir.join("wal"))
            .unwrap()
            .into_iter()
            .map(|(_, p)| (p.clone(), fs::read(&p).unwrap()))
            .collect();
        store.flush().unwrap();
        store.close().unwrap();
        fs::write(Catalog::file(dir), catalog).unwrap();
        for (path, bytes) in wal {
            fs::write(path, bytes).unwrap();
        }
    }

    #[test]
    fn interrupted_flush_is_adopted_with_its_wal_range() {
        let dir = tempfile::tempdir().unwrap();
        interrupted_second_flush(dir.path());
        let store = open(dir.path());
        // Served once each: adopted from the segment, not replayed again.
        assert_eq!(traces_served(&store, 20), all(20));
        assert_eq!(store.all_logs().unwrap().len(), 1);
        assert_eq!(store.segments().len(), 3);
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
        store.close().unwrap();
    }

    #[test]
    fn incomplete_interrupted_flush_is_quarantined_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        interrupted_second_flush(dir.path());
        // The flush wrote its span segment but not its log segment.
        let seg_dir = dir.path().join("segments");
        fs::remove_file(seg_dir.join(format!("{:016}-logs.parquet", 2))).unwrap();
        fs::remove_dir_all(seg_dir.join(format!("{:016}-logs.tantivy", 2))).unwrap();
        let store = open(dir.path());
        assert_eq!(traces_served(&store, 20), all(20));
        assert_eq!(store.all_logs().unwrap().len(), 1);
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 1);
        store.close().unwrap();
        assert_eq!(
            quarantined(dir.path()),
            vec!["0000000000000002-traces.idx".to_string(), "0000000000000002-traces.parquet".to_string()]
        );
    }

    #[test]
    fn damaged_segments_are_quarantined_and_the_rest_served() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let seg_dir = dir.path().join("segments");
        let first = seg_dir.join(format!("{:016}-traces.parquet", 1));
        let len = fs::metadata(&first).unwrap().len();
        fs::OpenOptions::new().write(true).open(&first).unwrap().set_len(len / 2).unwrap();
        let store = open(dir.path());
        assert_eq!(traces_served(&store, 20), (10..20).collect());
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 1);
        store.close().unwrap();
        let names = quarantined(dir.path());
        assert!(names.contains(&"0000000000000001-traces.parquet".to_string()), "{names:?}");
        assert!(names.contains(&"0000000000000001-traces.idx".to_string()), "{names:?}");
        let catalog = Catalog::load(dir.path()).unwrap().unwrap();
        assert!(!catalog.segments.iter().any(|m| (m.id, m.signal) == (1, Signal::Traces)));
        // A second start finds nothing more to set aside.
        let store = open(dir.path());
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
        assert_eq!(traces_served(&store, 20), (10..20).collect());
        store.close().unwrap();
    }

    #[test]
    fn segment_that_cannot_describe_itself_is_quarantined_without_a_catalog() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        fs::remove_file(Catalog::file(dir.path())).unwrap();
        // A Parquet file as segments were written before they described themselves.
        let old = dir.path().join("segments").join(format!("{:016}-metrics.parquet", 7));
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "x",
            arrow::datatypes::DataType::Int64,
            false,
        )]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(arrow::array::Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(fs::File::create(&old).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let store = open(dir.path());
        assert_eq!(traces_served(&store, 20), all(20));
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 1);
        store.close().unwrap();
        assert_eq!(quarantined(dir.path()), vec!["0000000000000007-metrics.parquet".to_string()]);
        // Its id is not reused.
        assert_eq!(Catalog::load(dir.path()).unwrap().unwrap().next_segment_id, 8);
    }

    /// Issue 14 item 7: a flipped data page went unnoticed and made queries fail.
    #[test]
    fn flipped_column_chunk_is_found_on_read_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let first = dir.path().join("segments").join(format!("{:016}-traces.parquet", 1));
        let mut bytes = fs::read(&first).unwrap();
        // Just past the leading "PAR1": the first column chunk.
        for b in &mut bytes[8..12] {
            *b ^= 0xff;
        }
        fs::write(&first, bytes).unwrap();
        let store = open(dir.path());
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0, "verified lazily");
        let found = store.find_traces(&TraceQuery { service: Some("svc".into()), limit: 100, ..Default::default() });
        assert_eq!(found.unwrap().len(), 10);
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 1);
        assert_eq!(traces_served(&store, 20), (10..20).collect());
        store.close().unwrap();
        assert!(quarantined(dir.path()).contains(&"0000000000000001-traces.parquet".to_string()));
        assert!(!Catalog::load(dir.path())
            .unwrap()
            .unwrap()
            .segments
            .iter()
            .any(|m| m.id == 1 && m.signal == Signal::Traces));
    }

    /// Every byte of the data pages is covered by a chunk checksum: a flip
    /// anywhere in them is found on read, and never served or panicked on.
    #[test]
    fn a_flip_anywhere_in_the_data_pages_is_found() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let first = dir.path().join("segments").join(format!("{:016}-traces.parquet", 1));
        let pristine = fs::read(&first).unwrap();
        let md = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(pristine.clone()))
            .unwrap();
        let data_end = md
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .map(|c| {
                let (start, len) = c.byte_range();
                start + len
            })
            .max()
            .unwrap() as usize;
        let catalog = fs::read(Catalog::file(dir.path())).unwrap();
        let step = ((data_end - 4) / 25).max(1);
        for at in (4..data_end).step_by(step) {
            let mut bytes = pristine.clone();
            bytes[at] ^= 0x5a;
            fs::write(&first, &bytes).unwrap();
            let store = open(dir.path());
            let q = TraceQuery { service: Some("svc".into()), limit: 100, ..Default::default() };
            assert_eq!(store.find_traces(&q).unwrap().len(), 10, "flip at {at}");
            assert_eq!(traces_served(&store, 20), (10..20).collect(), "flip at {at}");
            assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 1, "flip at {at}");
            store.close().unwrap();
            // Put everything back for the next offset.
            let qdir = dir.path().join(crate::quarantine::DIR_NAME);
            fs::rename(qdir.join("0000000000000001-traces.idx"), first.with_extension("idx")).unwrap();
            fs::remove_dir_all(&qdir).unwrap();
            fs::write(&first, &pristine).unwrap();
            fs::write(Catalog::file(dir.path()), &catalog).unwrap();
        }
    }

    /// Rewrites a segment with the same rows and its footer's key-value
    /// metadata passed through `edit`.
    fn rewrite_footer(
        path: &Path,
        edit: impl FnOnce(Vec<parquet::file::metadata::KeyValue>) -> Vec<parquet::file::metadata::KeyValue>,
    ) {
        let builder =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap())
                .unwrap();
        let kvs: Vec<_> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .filter(|kv| kv.key != "ARROW:schema")
            .cloned()
            .collect();
        let schema = builder.schema().clone();
        let batches: Vec<_> = builder.build().unwrap().map(|b| b.unwrap()).collect();
        let props =
            parquet::file::properties::WriterProperties::builder().set_key_value_metadata(Some(edit(kvs))).build();
        let tmp = path.with_extension("rewritten");
        let mut w = parquet::arrow::ArrowWriter::try_new(fs::File::create(&tmp).unwrap(), schema, Some(props)).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        fs::rename(tmp, path).unwrap();
    }

    /// Rewrites a segment as segments were written before they described
    /// themselves: same rows and summary, no description, no checksums.
    fn make_legacy(path: &Path) {
        use crate::segment::{BLOOM_CRC_KEY, CHUNK_CRC_KEY, SEGMENT_KEY};
        rewrite_footer(path, |kvs| {
            kvs.into_iter()
                .filter(|kv| ![SEGMENT_KEY, CHUNK_CRC_KEY, BLOOM_CRC_KEY].contains(&kv.key.as_str()))
                .collect()
        });
        assert!(Segment::read_footer(path).unwrap().is_none());
    }

    /// A segment written by a newer build in a format this one does not know
    /// stops the store from opening, naming the file, and is left in place:
    /// neither quarantined nor rewritten.
    #[test]
    fn a_segment_in_a_newer_format_stops_the_open_and_stays_in_place() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let segments = dir.path().join("segments");
        let (first, second) =
            (segments.join("0000000000000001-traces.parquet"), segments.join("0000000000000002-traces.parquet"));
        let written = Segment::read_footer(&second).unwrap().unwrap();
        assert_eq!(written.format, crate::segment::SEGMENT_FORMAT);
        let logs = Segment::read_footer(&segments.join("0000000000000001-logs.parquet")).unwrap().unwrap();
        assert_eq!(logs.format, 1, "log segments are as the first format wrote them");
        rewrite_footer(&first, |mut kvs| {
            let kv = kvs.iter_mut().find(|kv| kv.key == crate::segment::SEGMENT_KEY).unwrap();
            let mut described: serde_json::Value = serde_json::from_str(kv.value.as_deref().unwrap()).unwrap();
            described["format"] = 99.into();
            kv.value = Some(described.to_string());
            kvs
        });
        let before = fs::read(&first).unwrap();
        let err = Store::open(StoreConfig::new(dir.path())).err().expect("opened a store with a newer segment");
        assert!(
            matches!(&err, StoreError::NewerFormat(m) if m.contains("segment format 99") && m.contains("0000000000000001-traces.parquet")),
            "{err}"
        );
        assert_eq!(fs::read(&first).unwrap(), before);
        assert!(quarantined(dir.path()).is_empty());
    }

    /// A span segment's summary and attribute tables are footer texts, JSON
    /// or packed (format 3 packs them when that is smaller; flushes of a few
    /// spans keep JSON). Either way the segment serves its traces (decoded
    /// through the tables) and statistics (from the summary) alike.
    #[test]
    fn footer_texts_packed_or_as_json_serve_alike() {
        use crate::segment::{
            packed_footer_text, unpack_footer_text, BLOOM_CRC_KEY, CHUNK_CRC_KEY, PACKED, SEGMENT_KEY,
        };
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let everything = crate::query::StatsQuery { start_ns: i64::MIN, end_ns: i64::MAX, ..Default::default() };
        let store = open(dir.path());
        let stats = store.span_stats(&everything).unwrap();
        assert!(!stats.is_empty());
        store.close().unwrap();
        let first = dir.path().join("segments").join(format!("{:016}-traces.parquet", 1));
        let texts = [crate::spanstats::SUMMARY_KEY, crate::attrcodes::TABLES_KEY];
        for pack in [true, false] {
            let mut rewritten = 0;
            rewrite_footer(&first, |kvs| {
                kvs.into_iter()
                    .filter(|kv| ![SEGMENT_KEY, CHUNK_CRC_KEY, BLOOM_CRC_KEY].contains(&kv.key.as_str()))
                    .map(|mut kv| {
                        if texts.contains(&kv.key.as_str()) {
                            let json = unpack_footer_text(kv.value.as_deref().unwrap()).unwrap().into_owned();
                            assert!(json.starts_with('{'), "{json}");
                            kv.value = Some(if pack { packed_footer_text(&json) } else { json });
                            rewritten += 1;
                        }
                        kv
                    })
                    .collect()
            });
            assert_eq!(rewritten, 2);
            let store = open(dir.path());
            assert_eq!(traces_served(&store, 20), all(20), "packed: {pack}");
            assert_eq!(store.span_stats(&everything).unwrap(), stats, "packed: {pack}");
            assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
            store.close().unwrap();
        }
        // Packing is for texts it shrinks.
        let summary =
            format!("{{\"buckets\":[{}]}}", (0..2000).map(|i| format!("[{i},1]")).collect::<Vec<_>>().join(","));
        let packed = crate::segment::pack_footer_text(&summary);
        assert!(
            packed.starts_with(PACKED) && packed.len() * 5 < summary.len(),
            "{} -> {}",
            summary.len(),
            packed.len()
        );
        assert_eq!(unpack_footer_text(&packed).unwrap(), summary);
        assert_eq!(crate::segment::pack_footer_text("{}"), "{}");
    }

    /// A packed text that does not unpack is named as damage, not misread.
    #[test]
    fn a_packed_footer_text_that_does_not_unpack_is_an_error() {
        use crate::segment::{unpack_footer_text, PACKED};
        assert_eq!(unpack_footer_text("{\"keys\":[]}").unwrap(), "{\"keys\":[]}");
        let err = unpack_footer_text(&format!("{PACKED}@@@")).unwrap_err();
        assert!(err.contains("not base64"), "{err}");
        let err = unpack_footer_text(&format!("{PACKED}AAAA")).unwrap_err();
        assert!(err.contains("not zstd"), "{err}");
    }

    #[test]
    fn legacy_segments_named_by_the_catalog_still_open() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        make_legacy(&dir.path().join("segments").join(format!("{:016}-traces.parquet", 1)));
        let store = open(dir.path());
        assert_eq!(traces_served(&store, 20), all(20));
        let q = TraceQuery { tags: vec![("batch".into(), "0".into())], limit: 100, ..Default::default() };
        assert_eq!(store.find_traces(&q).unwrap().len(), 10);
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
        // New flushes next to it describe themselves; the legacy one keeps working.
        store.append_blocking(spans(20, 5)).unwrap();
        store.flush().unwrap();
        store.close().unwrap();
        let store = open(dir.path());
        assert_eq!(traces_served(&store, 25), all(25));
        store.close().unwrap();
    }

    #[test]
    fn legacy_segment_that_fails_to_decode_is_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let first = dir.path().join("segments").join(format!("{:016}-traces.parquet", 1));
        make_legacy(&first);
        let mut bytes = fs::read(&first).unwrap();
        // The first page header of the first column chunk.
        for b in &mut bytes[4..12] {
            *b ^= 0xff;
        }
        fs::write(&first, bytes).unwrap();
        let store = open(dir.path());
        assert_eq!(traces_served(&store, 20), (10..20).collect());
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 1);
        store.close().unwrap();
        assert!(quarantined(dir.path()).contains(&"0000000000000001-traces.parquet".to_string()));
    }

    #[test]
    fn missing_log_index_is_rebuilt_and_searchable() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let index = dir.path().join("segments").join(format!("{:016}-logs.tantivy", 1));
        fs::remove_dir_all(&index).unwrap();
        let store = open(dir.path());
        let q = crate::logsearch::LogQuery { text: Some("first".into()), ..Default::default() };
        let found = store.search_logs(&q).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].body, crate::model::AttrValue::Str("first flush".into()));
        assert_eq!(store.counters().rebuilt_indexes.load(Ordering::Relaxed), 1);
        store.close().unwrap();
        assert!(index.join("meta.json").exists());
        assert!(quarantined(dir.path()).is_empty(), "nothing was there to set aside");
    }

    /// A flip in a bloom filter would hide traces from lookups by id.
    #[test]
    fn flipped_bloom_filter_is_found_at_open() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let first = dir.path().join("segments").join(format!("{:016}-traces.parquet", 1));
        let mut bytes = fs::read(&first).unwrap();
        let md = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(bytes.clone()))
            .unwrap();
        let chunk = md.row_groups()[0].columns().iter().find(|c| c.bloom_filter_offset().is_some()).unwrap();
        let at = chunk.bloom_filter_offset().unwrap() as usize + chunk.bloom_filter_length().unwrap() as usize / 2;
        bytes[at] ^= 0x01;
        fs::write(&first, bytes).unwrap();
        let store = open(dir.path());
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 1);
        assert_eq!(traces_served(&store, 20), (10..20).collect());
        store.close().unwrap();
    }

    #[test]
    fn damaged_or_missing_index_is_rebuilt_from_parquet() {
        for damage in ["flip", "truncate", "missing"] {
            let dir = tempfile::tempdir().unwrap();
            two_flushes(dir.path());
            let index = dir.path().join("segments").join(format!("{:016}-traces.idx", 1));
            let mut bytes = fs::read(&index).unwrap();
            match damage {
                "missing" => fs::remove_file(&index).unwrap(),
                "flip" => {
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0xff;
                    fs::write(&index, bytes).unwrap();
                }
                _ => {
                    bytes.truncate(bytes.len() / 2);
                    fs::write(&index, bytes).unwrap();
                }
            }
            let store = open(dir.path());
            let q = TraceQuery { tags: vec![("batch".into(), "0".into())], limit: 100, ..Default::default() };
            assert_eq!(store.find_traces(&q).unwrap().len(), 10, "{damage}");
            assert_eq!(store.counters().rebuilt_indexes.load(Ordering::Relaxed), 1, "{damage}");
            assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0, "{damage}");
            store.close().unwrap();
            let expected: Vec<String> =
                if damage == "missing" { vec![] } else { vec!["0000000000000001-traces.idx".to_string()] };
            assert_eq!(quarantined(dir.path()), expected, "{damage}");
            // The rebuilt index is whole: a restart uses it as is.
            let store = open(dir.path());
            assert_eq!(store.find_traces(&q).unwrap().len(), 10);
            assert_eq!(store.counters().rebuilt_indexes.load(Ordering::Relaxed), 0);
            store.close().unwrap();
        }
    }

    /// The indexes are opened after a start, before any search asks: a
    /// damaged one is already set aside and rebuilt when the first search comes.
    #[test]
    fn a_damaged_index_is_rebuilt_at_start_without_a_search() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let index = dir.path().join("segments").join(format!("{:016}-traces.idx", 2));
        let mut bytes = fs::read(&index).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&index, bytes).unwrap();
        let store = open(dir.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while store.counters().rebuilt_indexes.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "the damaged index was not rebuilt without a search");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(quarantined(dir.path()), vec!["0000000000000002-traces.idx".to_string()]);
        let q = TraceQuery { tags: vec![("batch".into(), "10".into())], limit: 100, ..Default::default() };
        assert_eq!(store.find_traces(&q).unwrap().len(), 10);
        assert_eq!(store.counters().rebuilt_indexes.load(Ordering::Relaxed), 1);
        store.close().unwrap();
    }

    /// Span segments written before the span index kept a tantivy index: the
    /// first search builds the new index from the Parquet file and removes
    /// the old one; nothing is counted as damage.
    #[test]
    fn a_span_segment_of_the_tantivy_days_gets_its_index_built() {
        let dir = tempfile::tempdir().unwrap();
        two_flushes(dir.path());
        let seg_dir = dir.path().join("segments");
        let legacy = seg_dir.join(format!("{:016}-traces.tantivy", 1));
        fs::remove_file(seg_dir.join(format!("{:016}-traces.idx", 1))).unwrap();
        fs::create_dir(&legacy).unwrap();
        fs::write(legacy.join("meta.json"), "{}").unwrap();
        let store = open(dir.path());
        let q = TraceQuery { tags: vec![("batch".into(), "0".into())], limit: 100, ..Default::default() };
        assert_eq!(store.find_traces(&q).unwrap().len(), 10);
        assert_eq!(store.counters().rebuilt_indexes.load(Ordering::Relaxed), 0);
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
        store.close().unwrap();
        assert!(!legacy.exists());
        assert!(seg_dir.join(format!("{:016}-traces.idx", 1)).exists());
        assert_eq!(quarantined(dir.path()), Vec::<String>::new());
    }
}
