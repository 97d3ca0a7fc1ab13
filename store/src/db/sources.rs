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
use crate::model::{LogRow, MetricPointRow, Signal, SpanRow};
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

    pub(super) fn spans(&self) -> impl Iterator<Item = &SpanRow> {
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
    /// several reads that hit the damage does the work. Takes the catalog
    /// lock, so it must not be called with it held.
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
        drop(catalog);
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
    pub(super) fn walk(&self, scope: &Scope<'_>, mut visit: impl FnMut(Source<'_>) -> Result<ControlFlow<()>>) -> Result<()> {
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
