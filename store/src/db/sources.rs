//! Where rows are read from: the live set of memtables and segments
//! ([`Sources`]), and the frozen view of it that one read walks ([`Snapshot`]).
//!
//! Every read asks the same two questions: which memtables and segments may
//! hold rows of signal S in [min, max], and what happens when a segment turns
//! out damaged half-way through. Both are answered here, once. A read method
//! names a [`Scope`] and says what it does with each [`Source`];
//! [`Snapshot::walk`] picks and orders the sources and sets aside a segment
//! whose read fails verification: the read goes on without it, and the
//! segment is quarantined when the snapshot is dropped (after every memtable
//! lock of the read is released, so quarantine never waits on a lock the
//! reader holds).
//!
//! The live set changes only through [`Sources`]' methods: a flush swaps a
//! frozen memtable for its segments, quarantine and retention take segments
//! out. Compaction (swap several segments for one) belongs next to them.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::ops::ControlFlow;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::Inner;
use crate::error::{Result, StoreError};
use crate::memtable::Memtable;
use crate::model::{LogRow, MetricPointRow, Signal};
use crate::packed::PackedRef;
use crate::segment::{Segment, SegmentMeta};

/// A memtable, shared between the writer thread, the flusher and queries.
pub(super) type Table = Arc<RwLock<Memtable>>;

/// A memtable frozen for flushing.
pub(super) struct Frozen {
    pub(super) table: Table,
    /// Highest WAL sequence number the table holds.
    pub(super) last_seq: u64,
}

/// Everything queries read: the active memtable (the writer thread's), the
/// memtables frozen for flushing (oldest first) and the open segments in
/// catalog order (oldest flush first).
pub(super) struct Sources {
    active: Table,
    frozen: Vec<Frozen>,
    segments: Vec<Arc<Segment>>,
}

impl Sources {
    pub(super) fn new(active: Memtable, segments: Vec<Arc<Segment>>) -> Self {
        Self { active: Arc::new(RwLock::new(active)), frozen: Vec::new(), segments }
    }

    /// The memtable appends go to.
    pub(super) fn active(&self) -> &Table {
        &self.active
    }

    /// Memory held by the active and frozen memtables (see [`Memtable::held_bytes`]).
    pub(super) fn unflushed_bytes(&self) -> usize {
        let frozen: usize = self.frozen.iter().map(|f| f.table.read().unwrap().held_bytes()).sum();
        frozen + self.active.read().unwrap().held_bytes()
    }

    /// Memtables waiting to be flushed, oldest first.
    pub(super) fn frozen(&self) -> &[Frozen] {
        &self.frozen
    }

    /// The open segments, oldest flush first.
    pub(super) fn segments(&self) -> &[Arc<Segment>] {
        &self.segments
    }

    /// Moves the active memtable to the frozen list and gives appends a new,
    /// empty one. The caller rotated the WAL at `last_seq`.
    pub(super) fn freeze_active(&mut self, last_seq: u64) {
        let table = std::mem::replace(&mut self.active, Arc::new(RwLock::new(Memtable::default())));
        self.frozen.push(Frozen { table, last_seq });
    }

    /// A flush committed `table` to the catalog as `segments`: they replace it.
    pub(super) fn flushed(&mut self, table: &Table, segments: Vec<Arc<Segment>>) {
        self.frozen.retain(|f| !Arc::ptr_eq(&f.table, table));
        self.segments.extend(segments);
    }

    /// Takes `seg` out of the live set; false when it was already out.
    pub(super) fn remove_segment(&mut self, seg: &Arc<Segment>) -> bool {
        let before = self.segments.len();
        self.segments.retain(|s| !Arc::ptr_eq(s, seg));
        self.segments.len() != before
    }

    /// Takes out the segments `dropped` names (the catalog no longer does).
    /// A compaction committed `merged` to the catalog in place of `inputs`:
    /// it takes the first input's place.
    pub(super) fn merged(&mut self, inputs: &[Arc<Segment>], merged: Arc<Segment>) {
        let is_input = |s: &Arc<Segment>| inputs.iter().any(|i| Arc::ptr_eq(i, s));
        let at = self.segments.iter().position(is_input).unwrap_or(self.segments.len());
        self.segments.retain(|s| !is_input(s));
        self.segments.insert(at.min(self.segments.len()), merged);
    }

    pub(super) fn remove_segments(&mut self, dropped: &[SegmentMeta]) {
        let gone = |s: &Arc<Segment>| dropped.iter().any(|m| m.id == s.meta.id && m.signal == s.meta.signal);
        self.segments.retain(|s| !gone(s));
    }
}

/// Which sources of a snapshot a read wants. Segments are pruned by their
/// catalog entry; the memtables are visited whole (first) unless
/// [`Scope::segments_only`], and the visitor filters their rows itself.
#[derive(Clone, Copy, Debug)]
pub(super) struct Scope<'q> {
    signal: Signal,
    min: Option<i64>,
    max: Option<i64>,
    service: Option<&'q str>,
    tail: bool,
    latest: Option<usize>,
    newest_data_first: bool,
}

impl<'q> Scope<'q> {
    /// Every source of `signal`: the memtables, then all its segments, oldest flush first.
    pub(super) fn of(signal: Signal) -> Self {
        Self { signal, min: None, max: None, service: None, tail: true, latest: None, newest_data_first: false }
    }

    /// Only segments whose time range overlaps [min, max] (`None`: open end).
    pub(super) fn overlapping(self, min: Option<i64>, max: Option<i64>) -> Self {
        Self { min, max, ..self }
    }

    /// Only segments holding rows of `service`, when one is given.
    pub(super) fn with_service(self, service: Option<&'q str>) -> Self {
        Self { service, ..self }
    }

    /// Segments only, not the memtables.
    pub(super) fn segments_only(self) -> Self {
        Self { tail: false, ..self }
    }

    /// Only the `n` most recently flushed segments of the signal (chosen
    /// before the other filters apply).
    pub(super) fn latest(self, n: usize) -> Self {
        Self { latest: Some(n), ..self }
    }

    /// Segments with the newest data first (by their newest row), so that a
    /// walk that has its newest N rows can stop.
    pub(super) fn newest_data_first(self) -> Self {
        Self { newest_data_first: true, ..self }
    }

    fn admits(&self, meta: &SegmentMeta) -> bool {
        meta.overlaps(self.min, self.max) && self.service.is_none_or(|svc| meta.services.iter().any(|s| s == svc))
    }
}

/// One place rows of a signal live, as a walk hands it to a read.
pub(super) enum Source<'a> {
    /// The memtables: rows acknowledged since the last flush.
    Tail(&'a Tail<'a>),
    /// A segment the scope admits.
    Segment(&'a Segment),
}

/// The memtables of a snapshot, read-locked together for one visit, so a
/// read can relate rows across them (a parent in a frozen table, its child
/// in the active one).
pub(super) struct Tail<'a> {
    tables: Vec<RwLockReadGuard<'a, Memtable>>,
}

impl Tail<'_> {
    /// The active memtable first, then the frozen ones; a table's position
    /// is the same in every walk of one snapshot.
    pub(super) fn tables(&self) -> impl Iterator<Item = &Memtable> {
        self.tables.iter().map(|t| &**t)
    }

    pub(super) fn spans(&self) -> impl Iterator<Item = PackedRef<'_>> {
        self.tables().flat_map(|m| m.spans.iter())
    }

    pub(super) fn logs(&self) -> impl Iterator<Item = &LogRow> {
        self.tables().flat_map(|m| m.logs.iter())
    }

    pub(super) fn metrics(&self) -> impl Iterator<Item = &MetricPointRow> {
        self.tables().flat_map(|m| m.metrics.iter())
    }
}

/// A frozen view for one read: the memtables and segments live when it was
/// taken (`Arc`s, so a flush or quarantine meanwhile does not disturb it).
pub(super) struct Snapshot<'s> {
    inner: &'s Inner,
    tables: Vec<Table>,
    segments: Vec<Arc<Segment>>,
    /// Segments a walk found damaged: skipped by later walks of this
    /// snapshot, quarantined when it is dropped.
    damaged: RefCell<Vec<(Arc<Segment>, String)>>,
}

impl Inner {
    /// Takes a [`Snapshot`] under a brief read lock of the live set.
    pub(super) fn snapshot(&self) -> Snapshot<'_> {
        let sources = self.sources.read().unwrap();
        let mut tables = Vec::with_capacity(1 + sources.frozen.len());
        tables.push(sources.active.clone());
        tables.extend(sources.frozen.iter().map(|f| f.table.clone()));
        Snapshot { inner: self, tables, segments: sources.segments.clone(), damaged: RefCell::default() }
    }

    /// Sets aside a segment a read found damaged: out of the catalog (so a
    /// restart does not trust it), out of the live set (so queries stop
    /// reading it), then its files into quarantine. Idempotent: the first of
    /// several reads that hit the damage does the work, under the catalog
    /// lock, so the others return once it is done (files moved, counted).
    /// Takes that lock, so it must not be called with it held.
    pub(super) fn quarantine_damaged(&self, seg: &Arc<Segment>, why: &str) {
        let mut catalog = self.catalog.lock().unwrap();
        if !self.sources.write().unwrap().remove_segment(seg) {
            return;
        }
        let mut next = catalog.clone();
        next.segments.retain(|m| (m.id, m.signal) != (seg.meta.id, seg.meta.signal));
        if let Err(e) = next.store(&self.config.data_dir) {
            tracing::error!(error = %e, reason = why, "could not drop a damaged segment from the catalog; it stays in place");
            return;
        }
        *catalog = next;
        if let Err(e) = self.quarantine.segment(&seg.files(), why) {
            tracing::error!(error = %e, reason = why, "could not move a damaged segment to quarantine");
        }
    }
}

impl Snapshot<'_> {
    /// Hands `visit` the sources `scope` admits: the memtables first (unless
    /// segments only), then the segments. `visit` may stop the walk with
    /// `ControlFlow::Break`.
    ///
    /// A segment whose visit fails with `StoreError::Damaged` is set aside
    /// (quarantined when this snapshot drops) and the walk goes on: one
    /// damaged file costs only its own rows. A visit that fails half-way may
    /// have used some of the segment's rows, as a read that races the damage
    /// would have.
    ///
    /// # Errors
    /// Any other error of `visit`, which ends the walk.
    pub(super) fn walk(
        &self,
        scope: &Scope<'_>,
        mut visit: impl FnMut(Source<'_>) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        if scope.tail {
            let tail = Tail { tables: self.tables.iter().map(|t| t.read().unwrap()).collect() };
            if visit(Source::Tail(&tail))?.is_break() {
                return Ok(());
            }
        }
        for seg in self.segments_in(scope) {
            match visit(Source::Segment(seg)) {
                Ok(ControlFlow::Continue(())) => {}
                Ok(ControlFlow::Break(())) => break,
                Err(StoreError::Damaged(why)) => self.damaged.borrow_mut().push((seg.clone(), why)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// [`Snapshot::walk`] over every admitted source.
    ///
    /// # Errors
    /// As [`Snapshot::walk`].
    pub(super) fn for_each(&self, scope: &Scope<'_>, mut visit: impl FnMut(Source<'_>) -> Result<()>) -> Result<()> {
        self.walk(scope, |source| visit(source).map(ControlFlow::Continue))
    }

    /// The segments a walk of `scope` visits, in order; without those found damaged.
    fn segments_in(&self, scope: &Scope<'_>) -> Vec<&Arc<Segment>> {
        let damaged = self.damaged.borrow();
        let mut chosen: Vec<&Arc<Segment>> = self.segments.iter().filter(|s| s.meta.signal == scope.signal).collect();
        if let Some(n) = scope.latest {
            chosen.drain(..chosen.len().saturating_sub(n));
        }
        chosen.retain(|s| scope.admits(&s.meta) && !damaged.iter().any(|(d, _)| Arc::ptr_eq(d, s)));
        if scope.newest_data_first {
            chosen.sort_by_key(|s| Reverse(s.meta.max_time));
        }
        chosen
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        for (seg, why) in self.damaged.get_mut().drain(..) {
            self.inner.quarantine_damaged(&seg, &why);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::catalog::Catalog;
    use crate::db::testing::{log_of, span_of};
    use crate::db::{Store, StoreConfig};
    use crate::ids::TraceId;
    use crate::logsearch::LogQuery;
    use crate::query::TraceQuery;

    const SECOND: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SECOND;

    /// Segment 1: a span of "a" at T0+1s. Segment 2: a span and a log of "b"
    /// at T0+2s. Segment 3: a span of "a" at T0+3s. Unflushed: a span of "a"
    /// at T0+4s. Trace n's span is `[n; 8]`.
    fn three_flushes(dir: &Path) -> Store {
        let store = Store::open(StoreConfig::new(dir)).unwrap();
        store.append_blocking(span_of("a", 1, 1, None, T0 + SECOND)).unwrap();
        store.flush().unwrap();
        store.append_blocking(span_of("b", 2, 2, None, T0 + 2 * SECOND)).unwrap();
        store.append_blocking(log_of("b", "second flush", T0 + 2 * SECOND)).unwrap();
        store.flush().unwrap();
        store.append_blocking(span_of("a", 3, 3, None, T0 + 3 * SECOND)).unwrap();
        store.flush().unwrap();
        store.append_blocking(span_of("a", 4, 4, None, T0 + 4 * SECOND)).unwrap();
        store
    }

    /// What a walk of `scope` visits, in order: "tail" or a segment id.
    fn visited(snap: &Snapshot<'_>, scope: Scope<'_>) -> Vec<String> {
        let mut seen = Vec::new();
        snap.for_each(&scope, |source| {
            seen.push(match source {
                Source::Tail(_) => "tail".to_string(),
                Source::Segment(seg) => seg.meta.id.to_string(),
            });
            Ok(())
        })
        .unwrap();
        seen
    }

    fn live(store: &Store, id: u64, signal: Signal) -> bool {
        store.segments().iter().any(|m| m.id == id && m.signal == signal)
    }

    #[test]
    fn a_walk_visits_the_tail_then_the_segments_its_scope_admits() {
        let dir = tempfile::tempdir().unwrap();
        let store = three_flushes(dir.path());
        let snap = store.inner.snapshot();
        let t = |s: u64| Some((T0 + s * SECOND) as i64);
        let traces = Scope::of(Signal::Traces);
        assert_eq!(visited(&snap, traces), ["tail", "1", "2", "3"]);
        assert_eq!(visited(&snap, Scope::of(Signal::Logs)), ["tail", "2"]);
        assert_eq!(visited(&snap, traces.overlapping(t(2), None)), ["tail", "2", "3"]);
        assert_eq!(visited(&snap, traces.overlapping(None, t(1))), ["tail", "1"]);
        assert_eq!(visited(&snap, traces.overlapping(t(5), t(9))), ["tail"], "the tail is always visited");
        assert_eq!(visited(&snap, traces.with_service(Some("a"))), ["tail", "1", "3"]);
        assert_eq!(visited(&snap, traces.segments_only()), ["1", "2", "3"]);
        assert_eq!(visited(&snap, traces.segments_only().latest(2)), ["2", "3"]);
        // The latest are chosen before the other filters.
        assert_eq!(visited(&snap, traces.latest(2).with_service(Some("a"))), ["tail", "3"]);
        assert_eq!(visited(&snap, traces.newest_data_first()), ["tail", "3", "2", "1"]);

        let mut seen = Vec::new();
        snap.walk(&traces, |source| {
            Ok(match source {
                Source::Tail(tail) => {
                    seen.push(tail.spans().count() as u64 * 100);
                    ControlFlow::Continue(())
                }
                Source::Segment(seg) => {
                    seen.push(seg.meta.id);
                    ControlFlow::Break(())
                }
            })
        })
        .unwrap();
        assert_eq!(seen, [100, 1], "a break ends the walk");
        drop(snap);
        store.close().unwrap();
    }

    /// The walk, not each read, handles damage: the read goes on, later walks
    /// of the snapshot skip the segment, and it is quarantined once the
    /// snapshot is dropped, not while the read holds memtable locks (a read
    /// that quarantined from inside its memtable visit could deadlock with
    /// the writer thread and an append's pressure check).
    #[test]
    fn a_segment_found_damaged_is_skipped_and_quarantined_when_the_read_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = three_flushes(dir.path());
        let snap = store.inner.snapshot();
        let traces = Scope::of(Signal::Traces);
        let mut outer = Vec::new();
        snap.for_each(&traces, |source| {
            match source {
                Source::Tail(_) => {
                    // As `dependencies` does: a walk of segments inside the memtable visit.
                    let mut inner = Vec::new();
                    snap.for_each(&traces.segments_only(), |source| {
                        let Source::Segment(seg) = source else { unreachable!("segments only") };
                        if seg.meta.id == 2 {
                            return Err(StoreError::Damaged("test: segment 2 is damaged".into()));
                        }
                        inner.push(seg.meta.id);
                        Ok(())
                    })?;
                    assert_eq!(inner, [1, 3], "the walk goes on past the damage");
                    assert!(live(&store, 2, Signal::Traces), "not quarantined while the memtables are locked");
                }
                Source::Segment(seg) => outer.push(seg.meta.id),
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(outer, [1, 3], "later walks of the snapshot skip it");
        assert!(live(&store, 2, Signal::Traces));
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);

        drop(snap);
        assert!(!live(&store, 2, Signal::Traces));
        assert!(live(&store, 2, Signal::Logs), "only the damaged signal's segment goes");
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 1);
        assert!(dir.path().join(crate::quarantine::DIR_NAME).join("0000000000000002-traces.parquet").exists());
        let catalog = Catalog::load(dir.path()).unwrap().unwrap();
        assert!(!catalog.segments.iter().any(|m| m.id == 2 && m.signal == Signal::Traces));
        assert!(store.trace(TraceId([2; 16])).unwrap().is_empty());
        assert_eq!(store.trace(TraceId([3; 16])).unwrap().len(), 1);
        store.close().unwrap();
    }

    #[test]
    fn any_other_error_ends_the_walk_and_quarantines_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = three_flushes(dir.path());
        let snap = store.inner.snapshot();
        let mut seen = Vec::new();
        let walked = snap.for_each(&Scope::of(Signal::Traces).segments_only(), |source| {
            let Source::Segment(seg) = source else { unreachable!("segments only") };
            seen.push(seg.meta.id);
            Err(StoreError::Corrupt("test: not damage".into()))
        });
        assert!(matches!(walked, Err(StoreError::Corrupt(_))), "{walked:?}");
        assert_eq!(seen, [1]);
        drop(snap);
        assert_eq!(store.segments().len(), 4);
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
        store.close().unwrap();
    }

    /// Segment 1 (a span of trace 1 from "a", a log) with its first data
    /// chunks flipped, segment 2 (a span of trace 2), and in the memtable a
    /// child of trace 1's span from "b".
    fn damaged_first_flush() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.append_blocking(span_of("a", 1, 1, None, T0 + SECOND)).unwrap();
        store.append_blocking(log_of("a", "first flush", T0 + SECOND)).unwrap();
        store.flush().unwrap();
        store.append_blocking(span_of("a", 2, 2, None, T0 + 2 * SECOND)).unwrap();
        store.flush().unwrap();
        store.close().unwrap();
        for signal in ["traces", "logs"] {
            let path = dir.path().join("segments").join(format!("{:016}-{signal}.parquet", 1));
            let mut bytes = std::fs::read(&path).unwrap();
            // Just past the leading "PAR1": the first column chunk.
            for b in &mut bytes[8..12] {
                *b ^= 0xff;
            }
            std::fs::write(&path, bytes).unwrap();
        }
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.append_blocking(span_of("b", 1, 9, Some(1), T0 + 3 * SECOND)).unwrap();
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0, "verified lazily");
        (dir, store)
    }

    fn quarantined(store: &Store) -> u64 {
        store.counters().quarantined_segments.load(Ordering::Relaxed)
    }

    /// Every read that reads rows goes through the walk, so each one answers
    /// from the rest of the store when it finds a segment damaged.
    #[test]
    fn every_row_read_goes_on_without_a_damaged_segment() {
        let (_dir, store) = damaged_first_flush();
        let spans = store.trace(TraceId([1; 16])).unwrap();
        assert_eq!(spans.iter().map(|s| s.span_id.0[0]).collect::<Vec<_>>(), [9], "the memtable's span only");
        assert_eq!(quarantined(&store), 1);
        assert_eq!(store.trace(TraceId([2; 16])).unwrap().len(), 1);

        let (_dir, store) = damaged_first_flush();
        let found = store.find_traces(&TraceQuery { service: Some("a".into()), limit: 10, ..Default::default() });
        assert_eq!(found.unwrap().iter().map(|t| t[0].trace_id.0[0]).collect::<Vec<_>>(), [2]);
        assert_eq!(quarantined(&store), 1);

        // The memtable's child looks for its parent in the latest segments.
        let (_dir, store) = damaged_first_flush();
        assert_eq!(store.dependencies(0, i64::MAX).unwrap(), []);
        assert_eq!(quarantined(&store), 1);

        let (_dir, store) = damaged_first_flush();
        assert_eq!(store.all_logs().unwrap(), []);
        assert_eq!(quarantined(&store), 1);

        // The index is intact: the damage shows when the rows are fetched.
        let (_dir, store) = damaged_first_flush();
        assert_eq!(store.search_logs(&LogQuery::default()).unwrap(), []);
        assert_eq!(quarantined(&store), 1);
        store.close().unwrap();
    }
}
