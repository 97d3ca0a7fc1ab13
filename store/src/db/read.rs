//! The read path: each query says what it does with the rows of a
//! [`Snapshot`] walk. Which memtables and segments hold rows of a signal,
//! and what happens to a segment found damaged, is the walk's business (see
//! `sources`); nothing here names a lock or the quarantine.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;

use super::sources::{Scope, Snapshot, Source};
use super::Store;
use crate::error::Result;
use crate::ids::{SpanId, TraceId};
use crate::logsearch::{self, LogQuery};
use crate::model::*;
use crate::packed::{PackedRef, SpanView};
use crate::query::{Operation, StatsQuery, TraceQuery, EXPERIMENT_ATTRIBUTE};
use crate::spanstats::{self, OpKey, OpStats, Orphan, ParentIndex, StatsBuilder};
use crate::tags;
use crate::textindex::{self, IndexKind};

impl Store {
    /// Service names that sent spans, sorted.
    pub fn services(&self) -> Result<Vec<String>> {
        let mut out: HashSet<String> = HashSet::new();
        self.inner.snapshot().for_each(&Scope::of(Signal::Traces), |source| {
            match source {
                Source::Tail(tail) => {
                    out.extend(tail.tables().flat_map(|m| m.operations()).map(|(s, _)| s.to_string()))
                }
                Source::Segment(seg) => out.extend(seg.meta.services.iter().cloned()),
            }
            Ok(())
        })?;
        let mut v: Vec<String> = out.into_iter().collect();
        v.sort();
        Ok(v)
    }

    /// Distinct (span name, kind) pairs of `service`, sorted.
    pub fn operations(&self, service: &str) -> Result<Vec<Operation>> {
        let mut out: HashSet<Operation> = HashSet::new();
        self.inner.snapshot().for_each(&Scope::of(Signal::Traces), |source| {
            match source {
                Source::Tail(tail) => out
                    .extend(tail.tables().flat_map(|m| m.operations()).filter(|(s, _)| *s == service).map(|(_, o)| o)),
                Source::Segment(seg) => out.extend(
                    seg.meta
                        .operations
                        .iter()
                        .filter(|(svc, _, _)| svc == service)
                        .map(|(_, name, kind)| Operation { name: name.clone(), span_kind: *kind }),
                ),
            }
            Ok(())
        })?;
        let mut v: Vec<Operation> = out.into_iter().collect();
        v.sort();
        Ok(v)
    }

    /// Every stored span of trace `id`, ordered by start time; empty when unknown.
    pub fn trace(&self, id: TraceId) -> Result<Vec<SpanRow>> {
        trace_in(&self.inner.snapshot(), &id)
    }

    /// Traces matching `q` (see [`TraceQuery`]): newest first, each complete.
    ///
    /// The memtables are scanned; segments are visited newest data first, each
    /// answering from its span index with its own newest `limit` traces, and
    /// the walk stops once `limit` traces are newer than everything left.
    pub fn find_traces(&self, q: &TraceQuery) -> Result<Vec<Vec<SpanRow>>> {
        let snap = self.inner.snapshot();
        let limit = q.effective_limit();
        let hits = matching_traces(&snap, q, limit)?;
        let mut ranked: Vec<(i64, TraceId)> = hits.into_iter().map(|(id, t)| (t, id)).collect();
        ranked.sort_by(|a, b| b.cmp(a));
        ranked.truncate(limit);
        // A trace can come back empty when its segment was found damaged
        // between the search and the fetch,
        let mut traces = Vec::with_capacity(ranked.len());
        // and one whose matching span was in that segment no longer matches.
        let ids: Vec<TraceId> = ranked.iter().map(|(_, id)| *id).collect();
        let mut fetched = traces_in(&snap, &ids)?;
        for id in &ids {
            let spans = fetched.remove(id).unwrap_or_default();
            if spans.iter().any(|s| span_matches(s, q)) {
                traces.push(spans);
            }
        }
        Ok(traces)
    }

    /// The newest log records matching `q` (see [`LogQuery`]), newest first.
    ///
    /// Each memtable and segment answers from its index with its own newest
    /// `limit` matches; segments are visited newest first and the walk stops
    /// once `limit` matches are newer than everything left. A second walk
    /// fetches the rows: memtable rows by position, one read per segment.
    ///
    /// # Errors
    /// `InvalidQuery` when `q.text` does not parse; I/O errors from segments.
    pub fn search_logs(&self, q: &LogQuery) -> Result<Vec<LogRow>> {
        let query = logsearch::compile(q, &textindex::schema(IndexKind::Logs).1)?;
        let limit = q.effective_limit();
        let snap = self.inner.snapshot();
        let scope = Scope::of(Signal::Logs)
            .overlapping(q.start_ns, q.end_ns)
            .with_service(q.service.as_deref())
            .newest_data_first();
        let mut hits: Vec<(i64, LogOrigin, u32)> = Vec::new();
        snap.walk(&scope, |source| {
            match source {
                Source::Tail(tail) => {
                    for (i, m) in tail.tables().enumerate() {
                        let newest = m.newest_logs(&*query, limit)?;
                        hits.extend(newest.into_iter().map(|(time, row)| (time, LogOrigin::Memtable(i), row)));
                    }
                }
                Source::Segment(seg) => {
                    if hits.len() >= limit {
                        hits.sort_unstable_by(|a, b| b.cmp(a));
                        hits.truncate(limit);
                        if hits[limit - 1].0 > seg.meta.max_time {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                    let origin = LogOrigin::Segment(Reverse(seg.meta.id));
                    let newest = seg.newest_logs(&*query, limit)?;
                    hits.extend(newest.into_iter().map(|(time, row)| (time, origin, row)));
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        hits.sort_unstable_by(|a, b| b.cmp(a));
        hits.truncate(limit);

        let mut wanted: HashMap<LogOrigin, Vec<u32>> = HashMap::new();
        for (_, origin, row) in &hits {
            wanted.entry(*origin).or_default().push(*row);
        }
        for rows in wanted.values_mut() {
            rows.sort_unstable();
            rows.dedup();
        }
        let mut fetched: HashMap<(LogOrigin, u32), LogRow> = HashMap::with_capacity(hits.len());
        snap.walk(&scope, |source| {
            match source {
                Source::Tail(tail) => {
                    for (i, m) in tail.tables().enumerate() {
                        let origin = LogOrigin::Memtable(i);
                        let rows = wanted.remove(&origin).unwrap_or_default();
                        fetched.extend(rows.into_iter().map(|r| ((origin, r), m.logs[r as usize].clone())));
                    }
                }
                Source::Segment(seg) => {
                    let origin = LogOrigin::Segment(Reverse(seg.meta.id));
                    if let Some(rows) = wanted.get(&origin) {
                        let got = seg.log_rows(rows)?;
                        fetched.extend(rows.iter().map(|&r| (origin, r)).zip(got));
                        wanted.remove(&origin);
                    }
                }
            }
            Ok(if wanted.is_empty() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })?;
        Ok(hits.iter().filter_map(|(_, origin, row)| fetched.remove(&(*origin, *row))).collect())
    }

    /// Request statistics per (service, operation, kind) over the window.
    ///
    /// Segments the window covers whole answer from their footer summaries;
    /// segments cut by the window and the memtables are scanned exactly.
    /// Latency quantiles come from mergeable sketches accurate to 1%.
    ///
    /// # Errors
    /// I/O or format errors from segments.
    ///
    /// With a [`Cohort`](crate::Cohort), the experiment's faulted traces are
    /// found first from the span-attribute index (fault spans starting from
    /// the window's start on, as a fault span starts inside its victim
    /// request), then one exact pass over the window's spans keeps those of
    /// the cohort's side; segment summaries cannot answer a cohort.
    pub fn span_stats(&self, q: &StatsQuery) -> Result<Vec<(OpKey, OpStats)>> {
        let (start, end) = (q.start_ns, q.end_ns);
        let service = q.service.as_deref();
        let mut exact = StatsBuilder::default();
        let mut merged: HashMap<OpKey, OpStats> = HashMap::new();
        let snap = self.inner.snapshot();
        let faulted: Option<(HashSet<TraceId>, bool)> = match &q.cohort {
            None => None,
            Some(cohort) => {
                let search = TraceQuery {
                    tags: vec![(EXPERIMENT_ATTRIBUTE.to_string(), cohort.experiment.clone())],
                    start_min_ns: Some(start),
                    ..TraceQuery::default()
                };
                Some((matching_traces(&snap, &search, usize::MAX)?.into_keys().collect(), cohort.faulted))
            }
        };
        let in_cohort = |id: &TraceId| faulted.as_ref().is_none_or(|(set, want)| set.contains(id) == *want);
        let scope = Scope::of(Signal::Traces).overlapping(Some(start), Some(end)).with_service(service);
        snap.for_each(&scope, |source| {
            match source {
                Source::Tail(tail) => {
                    let in_window = |s: &PackedRef<'_>| s.start() >= start && s.start() <= end;
                    for s in tail
                        .spans()
                        .filter(in_window)
                        .filter(|s| service.is_none_or(|x| x == s.service_name()) && in_cohort(&s.trace_id()))
                    {
                        exact.add_span(&s);
                    }
                }
                Source::Segment(seg) => match seg.op_stats()? {
                    Some(ops) if faulted.is_none() && seg.meta.min_time >= start && seg.meta.max_time <= end => {
                        for (key, stats) in ops.iter() {
                            spanstats::merge(merged.entry(key.clone()).or_default(), stats);
                        }
                    }
                    _ => {
                        let traces = faulted.as_ref().map(|(set, want)| (set, *want));
                        seg.scan_stats(start, end, service, traces, &mut exact)?
                    }
                },
            }
            Ok(())
        })?;
        for (key, stats) in exact.finish() {
            spanstats::merge(merged.entry(key).or_default(), &stats);
        }
        let mut out: Vec<(OpKey, OpStats)> = merged
            .into_iter()
            .filter(|((svc, name, kind), _)| {
                service.is_none_or(|x| x == svc)
                    && q.operation.as_ref().is_none_or(|o| o == name)
                    && (q.span_kinds.is_empty() || q.span_kinds.contains(kind))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Parent -> child service edges (span counts) of spans started in the
    /// window, same-service edges included. Segments count whole when they
    /// overlap the window (a segment spans at most one flush interval);
    /// memtable spans count exactly, their parents looked up in the
    /// memtables and the latest segments.
    ///
    /// # Errors
    /// I/O or format errors from segments.
    pub fn dependencies(&self, start: i64, end: i64) -> Result<Vec<(String, String, u64)>> {
        let snap = self.inner.snapshot();
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        snap.for_each(&Scope::of(Signal::Traces).overlapping(Some(start), Some(end)), |source| {
            match source {
                Source::Tail(tail) => {
                    let spans: Vec<PackedRef<'_>> =
                        tail.spans().filter(|s| s.start() >= start && s.start() <= end).collect();
                    if !spans.is_empty() {
                        let (earlier, pending) = parents_elsewhere(&snap, &spans)?;
                        for (k, n) in spanstats::edges(&spans, &earlier, &pending).0 {
                            *counts.entry(k).or_default() += n;
                        }
                    }
                }
                Source::Segment(seg) => {
                    for (p, c, n) in seg.summary.iter().flat_map(|s| s.edges.iter()) {
                        *counts.entry((p.clone(), c.clone())).or_default() += n;
                    }
                }
            }
            Ok(())
        })?;
        Ok(counts.into_iter().map(|((p, c), n)| (p, c, n)).collect())
    }

    /// Distinct metric streams with points in [start, end] (by segment time
    /// range; the memtables' are always included), sorted.
    pub fn metric_descriptors(&self, start: Option<i64>, end: Option<i64>) -> Vec<MetricDescriptor> {
        let mut out: HashSet<MetricDescriptor> = HashSet::new();
        let walked = self.inner.snapshot().for_each(&Scope::of(Signal::Metrics).overlapping(start, end), |source| {
            match source {
                Source::Tail(tail) => out.extend(tail.tables().flat_map(|m| m.metric_descriptors.iter().cloned())),
                Source::Segment(seg) => out.extend(seg.meta.metrics.iter().cloned()),
            }
            Ok(())
        });
        debug_assert!(walked.is_ok(), "a walk fails only when a visit does, and these read catalog entries");
        let mut v: Vec<MetricDescriptor> = out.into_iter().collect();
        v.sort();
        v
    }

    /// Calls `visit` with every stored point of `names` in the window
    /// (memtables and segments, unordered), borrowed: no row is built or
    /// copied, attribute JSON is parsed once per distinct text.
    pub fn visit_metric_points(
        &self,
        names: &HashSet<String>,
        start: Option<i64>,
        end: Option<i64>,
        visit: &mut dyn FnMut(&MetricPointRef<'_>),
    ) -> Result<()> {
        let in_window = |t: i64| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e);
        self.inner.snapshot().for_each(&Scope::of(Signal::Metrics).overlapping(start, end), |source| {
            match source {
                Source::Tail(tail) => {
                    for r in tail.metrics().filter(|r| in_window(r.time_unix_nano) && names.contains(&r.metric_name)) {
                        visit(&r.as_ref());
                    }
                }
                Source::Segment(seg) => seg.visit_metric_points(names, start, end, visit)?,
            }
            Ok(())
        })
    }

    /// Every stored log record (memtables and segments), unordered. Used by
    /// tests and tools until the logs query API lands.
    pub fn all_logs(&self) -> Result<Vec<LogRow>> {
        let mut out = Vec::new();
        self.inner.snapshot().for_each(&Scope::of(Signal::Logs), |source| {
            match source {
                Source::Tail(tail) => out.extend(tail.logs().cloned()),
                Source::Segment(seg) => out.extend(seg.all_logs()?),
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Every stored metric data point, unordered (see [`Store::all_logs`]).
    pub fn all_metric_points(&self) -> Result<Vec<MetricPointRow>> {
        let mut out = Vec::new();
        self.inner.snapshot().for_each(&Scope::of(Signal::Metrics), |source| {
            match source {
                Source::Tail(tail) => out.extend(tail.metrics().cloned()),
                Source::Segment(seg) => out.extend(seg.all_metrics()?),
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Where a log search hit lives, for the second walk that fetches it. The
/// order breaks ties between hits of one timestamp: segments before
/// memtables, older segments first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum LogOrigin {
    /// Position of the memtable in the snapshot's tail.
    Memtable(usize),
    /// Segment id.
    Segment(Reverse<u64>),
}

/// Opens the index of every span segment, newest data first, so the first
/// searches after a start do not pay for it (verifying a 10M-span store's
/// indexes takes ~0.3 s). Runs on a thread of its own, once, at open; stops
/// when the store closes. A damaged index is rebuilt here as a search would
/// rebuild it; a segment found damaged is left to the first read that meets
/// it (it fails fast then), which sets it aside as usual.
pub(super) fn open_span_indexes(inner: &super::Inner) {
    let started = std::time::Instant::now();
    let mut opened = 0usize;
    let scope = Scope::of(Signal::Traces).segments_only().newest_data_first();
    // Errors are logged, never handed to the walk, which would set the segment aside.
    let _ = inner.snapshot().walk(&scope, |source| {
        if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(ControlFlow::Break(()));
        }
        if let Source::Segment(seg) = source {
            if seg.is_retired() {
                return Ok(ControlFlow::Continue(()));
            }
            match seg.span_index() {
                Ok(_) => opened += 1,
                Err(e) => {
                    tracing::warn!(segment = seg.meta.id, error = %e, "could not open a span index ahead of searches")
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    });
    if opened > 0 {
        tracing::info!(segments = opened, elapsed_ms = started.elapsed().as_millis() as u64, "span indexes opened");
    }
}

/// Traces with a span matching `q`, with the start of their newest matching
/// span: at least the `limit` newest (every one with `usize::MAX`).
fn matching_traces(snap: &Snapshot<'_>, q: &TraceQuery, limit: usize) -> Result<HashMap<TraceId, i64>> {
    let mut hits: HashMap<TraceId, i64> = HashMap::new();
    let add = |hits: &mut HashMap<TraceId, i64>, id: TraceId, t: i64| {
        let e = hits.entry(id).or_insert(t);
        *e = (*e).max(t);
    };
    let scope = Scope::of(Signal::Traces).overlapping(q.start_min_ns, q.start_max_ns).newest_data_first();
    snap.walk(&scope, |source| {
        match source {
            Source::Tail(tail) => {
                for row in tail.spans().filter(|r| span_matches(r, q)) {
                    add(&mut hits, row.trace_id(), row.start());
                }
            }
            Source::Segment(seg) => {
                // The `limit`-th newest trace found so far: older spans cannot
                // bring a new trace into the answer.
                let floor = (limit != usize::MAX && hits.len() >= limit).then(|| {
                    let mut times: Vec<i64> = hits.values().copied().collect();
                    let (_, nth, _) = times.select_nth_unstable_by(limit - 1, |a, b| b.cmp(a));
                    *nth
                });
                if floor.is_some_and(|f| f > seg.meta.max_time) {
                    return Ok(ControlFlow::Break(()));
                }
                for (t, id) in seg.newest_traces(q, limit, floor)? {
                    add(&mut hits, id, t);
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(hits)
}

fn trace_in(snap: &Snapshot<'_>, id: &TraceId) -> Result<Vec<SpanRow>> {
    Ok(traces_in(snap, std::slice::from_ref(id))?.remove(id).unwrap_or_default())
}

/// Every stored span of each of `ids`, ordered by start time: one pass over
/// the sources, one read per segment for all of them.
fn traces_in(snap: &Snapshot<'_>, ids: &[TraceId]) -> Result<HashMap<TraceId, Vec<SpanRow>>> {
    let mut by_trace: HashMap<TraceId, Vec<SpanRow>> = ids.iter().map(|id| (*id, Vec::new())).collect();
    snap.for_each(&Scope::of(Signal::Traces), |source| {
        match source {
            Source::Tail(tail) => {
                for m in tail.tables() {
                    for id in ids {
                        by_trace.get_mut(id).expect("every id has an entry").extend(m.trace(id).map(|r| r.to_row()));
                    }
                }
            }
            Source::Segment(seg) => {
                for span in seg.traces(ids)? {
                    if let Some(spans) = by_trace.get_mut(&span.trace_id) {
                        spans.push(span);
                    }
                }
            }
        }
        Ok(())
    })?;
    for spans in by_trace.values_mut() {
        // An exporter that retried after a lost response sends a span twice.
        let mut seen = HashSet::new();
        spans.retain(|s| seen.insert((s.span_id, s.start_time_unix_nano, s.duration_nano)));
        spans.sort_by_key(|s| (s.start_time_unix_nano, s.span_id));
    }
    Ok(by_trace)
}

fn span_matches(r: &impl SpanView, q: &TraceQuery) -> bool {
    q.service.as_ref().is_none_or(|s| r.service_name() == s)
        && q.operation.as_ref().is_none_or(|o| r.name() == o)
        && q.span_kind.is_none_or(|k| r.kind() == k)
        && q.start_min_ns.is_none_or(|m| r.start() >= m)
        && q.start_max_ns.is_none_or(|m| r.start() <= m)
        && q.min_duration_ns.is_none_or(|m| r.duration() >= m)
        && q.max_duration_ns.is_none_or(|m| r.duration() <= m)
        && tags::matches_all(r, &q.tags)
}

/// How many of the newest span segments are searched for the parents of
/// spans not yet in a segment (and whose orphans those spans may adopt).
pub(super) const RECENT_SEGMENTS: usize = 4;

/// For `spans` (a flush's, or the memtables'): the services of their parents
/// found in the latest span segments of `snap`, and the orphans those
/// segments left. A segment found damaged is skipped by the walk.
///
/// # Errors
/// I/O errors reading the segments.
pub(super) fn parents_elsewhere<S: SpanView>(snap: &Snapshot<'_>, spans: &[S]) -> Result<(ParentIndex, Vec<Orphan>)> {
    let present: foldhash::HashSet<(TraceId, SpanId)> = spans.iter().map(|s| (s.trace_id(), s.span_id())).collect();
    let missing: HashSet<TraceId> = spans
        .iter()
        .filter(|s| s.parent_span_id().is_some_and(|p| !present.contains(&(s.trace_id(), p))))
        .map(|s| s.trace_id())
        .collect();
    let mut earlier = ParentIndex::new();
    let mut pending: Vec<Orphan> = Vec::new();
    snap.for_each(&Scope::of(Signal::Traces).segments_only().latest(RECENT_SEGMENTS), |source| {
        if let Source::Segment(seg) = source {
            // From the footer, read at open: good even when the rows are not.
            pending.extend(seg.summary.iter().flat_map(|s| s.orphans.iter().cloned()));
            if !missing.is_empty() {
                seg.index_parents(&missing, &mut earlier)?;
            }
        }
        Ok(())
    })?;
    Ok((earlier, pending))
}
