//! Reading a segment: trace lookups, searches, stats scans and row fetches,
//! each touching only the row groups and columns it needs. Every read goes
//! through `Segment::read`, which verifies the chunks first.

use std::collections::HashSet;

use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::file::statistics::Statistics;

use super::Segment;
use crate::error::{Result, StoreError};
use crate::ids::TraceId;
use crate::model::*;
use crate::query::TraceQuery;
use crate::schema::{self, col, Columns};
use crate::spanindex::{intersect, SpanIndex, Term};
use crate::spanstats::{ParentIndex, StatsBuilder, STATUS_ERROR};
use crate::tags;

impl Segment {
    /// All spans of the traces `ids` in this segment, in one read: the span
    /// index names each trace's rows (after the bloom filters rule most
    /// segments out without loading it), and only the pages holding them
    /// are decoded.
    pub(crate) fn traces(&self, ids: &[TraceId]) -> Result<Vec<SpanRow>> {
        let maybe: Vec<&TraceId> =
            ids.iter().filter(|id| (0..self.trace_ranges.len()).any(|rg| self.may_hold_trace(rg, id))).collect();
        if maybe.is_empty() {
            return Ok(Vec::new());
        }
        let idx = self.span_index()?;
        let mut rows: Vec<usize> =
            maybe.iter().filter_map(|id| idx.rows_of_trace(id)).flatten().map(|r| r as usize).collect();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        rows.sort_unstable();
        rows.dedup();
        // Only the row groups holding the rows, and the selection relative to them.
        let md = self.reader_meta.metadata();
        let mut groups = Vec::new();
        let mut selected = Vec::new();
        let (mut base, mut kept) = (0usize, 0usize);
        let mut next = 0usize;
        for (rg, meta) in md.row_groups().iter().enumerate() {
            let n = meta.num_rows() as usize;
            let start = next;
            while next < rows.len() && rows[next] < base + n {
                next += 1;
            }
            if next > start {
                groups.push(rg);
                selected.extend(rows[start..next].iter().map(|r| r - base + kept));
                kept += n;
            }
            base += n;
        }
        // The rows of a trace are all selected: parents given by position resolve.
        schema::whole_traces(&self.read(groups, None, Some(selection_for(&selected, kept)))?, &*self.attributes()?)
    }

    /// This segment's newest traces with a span matching `q`: at most
    /// `limit` (start of the trace's newest matching span here, trace id),
    /// newest first, none whose matching spans all started before `floor`.
    ///
    /// From the span index (see `spanindex`): the intersection of the query's
    /// posting lists, walked in rank order (newest span first) from the
    /// window's end, stops after `limit` traces or at `floor`. Predicates
    /// the index has no terms for (duration, span kind, a span name without
    /// its service) are checked against the Parquet columns of the candidate
    /// rows only.
    pub(crate) fn newest_traces(
        &self,
        q: &TraceQuery,
        limit: usize,
        floor: Option<i64>,
    ) -> Result<Vec<(i64, TraceId)>> {
        let oldest = match (q.start_min_ns, floor) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if limit == 0 || !self.meta.overlaps(oldest, q.start_max_ns) {
            return Ok(Vec::new());
        }
        if let Some(s) = &q.service {
            if !self.meta.services.iter().any(|x| x == s) {
                return Ok(Vec::new());
            }
        }
        if let Some(op) = &q.operation {
            if !self.meta.operations.iter().any(|(s, n, _)| n == op && q.service.as_ref().is_none_or(|qs| qs == s)) {
                return Ok(Vec::new());
            }
        }
        if q.tags.iter().any(|(k, v)| tags::term(k, v).len() > tags::MAX_TERM_BYTES) {
            return Ok(Vec::new());
        }
        let idx = self.span_index()?;
        let mut terms: Vec<Term<'_>> = q.tags.iter().map(|(k, v)| Term::Tag(k, v)).collect();
        match (&q.service, &q.operation) {
            (Some(s), Some(o)) => terms.push(Term::Operation(s, o)),
            (Some(s), None) => terms.push(Term::Service(s)),
            _ => {}
        }
        if terms.iter().any(|t| idx.count(*t) == 0) {
            return Ok(Vec::new());
        }
        let first = match q.start_max_ns {
            Some(t) => idx.first_rank_at_or_before(t)?,
            None => 0,
        };
        let end = match oldest {
            Some(t) if t > i64::MIN => idx.first_rank_at_or_before(t - 1)?,
            _ => idx.rows(),
        };
        if first >= end {
            return Ok(Vec::new());
        }
        let candidates: Box<dyn Iterator<Item = u32>> = if terms.is_empty() {
            Box::new(first..end)
        } else {
            let lists = terms.iter().map(|t| idx.postings(*t)).collect::<Result<Vec<_>>>()?;
            let ranks = intersect(lists);
            let from = ranks.partition_point(|&r| r < first);
            let to = ranks.partition_point(|&r| r < end);
            Box::new(ranks.into_iter().skip(from).take(to - from))
        };
        let exact = q.min_duration_ns.is_some()
            || q.max_duration_ns.is_some()
            || q.span_kind.is_some()
            || (q.operation.is_some() && q.service.is_none());
        let mut seen: HashSet<usize> = HashSet::new();
        let mut found: Vec<(i64, usize)> = Vec::new();
        let mut pending: Vec<(u32, u32, usize)> = Vec::new();
        let mut times = BlockTimes::default();
        for rank in candidates {
            let row = idx.row_of(rank)?;
            let trace = idx.trace_of(row);
            if seen.contains(&trace) {
                continue;
            }
            if !exact {
                seen.insert(trace);
                found.push((times.of(&idx, rank)?, trace));
                if found.len() >= limit {
                    break;
                }
                continue;
            }
            pending.push((rank, row, trace));
            if pending.len() >= EXACT_BATCH {
                self.check_exact(q, &idx, &mut pending, &mut times, &mut seen, &mut found)?;
                if found.len() >= limit {
                    break;
                }
            }
        }
        if !pending.is_empty() {
            self.check_exact(q, &idx, &mut pending, &mut times, &mut seen, &mut found)?;
        }
        found.truncate(limit);
        found.into_iter().map(|(t, trace)| Ok((t, idx.trace_id(trace)?))).collect()
    }

    /// Moves to `found` (in rank order) the `pending` candidates whose row
    /// passes the predicates the index cannot answer; the others' traces stay
    /// unseen, so a later span of theirs may still match.
    fn check_exact(
        &self,
        q: &TraceQuery,
        idx: &SpanIndex,
        pending: &mut Vec<(u32, u32, usize)>,
        times: &mut BlockTimes,
        seen: &mut HashSet<usize>,
        found: &mut Vec<(i64, usize)>,
    ) -> Result<()> {
        let mut rows: Vec<usize> = pending.iter().map(|p| p.1 as usize).collect();
        rows.sort_unstable();
        rows.dedup();
        let groups = (0..self.reader_meta.metadata().num_row_groups()).collect();
        let cols = [col::DURATION, col::NAME, col::KIND];
        let mut passed: HashSet<u32> = HashSet::new();
        let mut at = 0usize;
        for batch in self.read(groups, Some(&cols), Some(selection_for(&rows, self.meta.rows as usize)))? {
            let c = Columns(&batch);
            let (dur, name, kind) = (c.i64(col::DURATION)?, c.str(col::NAME)?, c.i32(col::KIND)?);
            for i in 0..batch.num_rows() {
                let d = dur.value(i);
                let ok = q.min_duration_ns.is_none_or(|m| d >= m)
                    && q.max_duration_ns.is_none_or(|m| d <= m)
                    && q.operation.as_ref().is_none_or(|o| name.value(i) == o)
                    && q.span_kind.is_none_or(|k| kind.value(i) == k);
                if ok {
                    passed.insert(rows[at + i] as u32);
                }
            }
            at += batch.num_rows();
        }
        for (rank, row, trace) in pending.drain(..) {
            if passed.contains(&row) && seen.insert(trace) {
                found.push((times.of(idx, rank)?, trace));
            }
        }
        Ok(())
    }

    /// Adds to `stats` every span of this segment with start time in [start,
    /// end] (and of `service`, when given), reading only the narrow columns.
    /// With `traces = Some((set, inside))`, only spans whose trace is in
    /// `set` (`inside`) or not in it (`!inside`) count.
    pub(crate) fn scan_stats(
        &self,
        start: i64,
        end: i64,
        service: Option<&str>,
        traces: Option<(&HashSet<TraceId>, bool)>,
        stats: &mut StatsBuilder,
    ) -> Result<()> {
        let md = self.reader_meta.metadata();
        let start_idx = md.file_metadata().schema_descr().columns().iter().position(|c| c.name() == col::START_TIME);
        let mut cols = vec![col::START_TIME, col::DURATION, col::SERVICE_NAME, col::NAME, col::KIND, col::STATUS_CODE];
        if traces.is_some() {
            cols.push(col::TRACE_ID);
        }
        for (rg_idx, rg) in md.row_groups().iter().enumerate() {
            if let Some(Statistics::Int64(s)) = start_idx.and_then(|ci| rg.column(ci).statistics()) {
                if s.max_opt().is_some_and(|mx| *mx < start) || s.min_opt().is_some_and(|mn| *mn > end) {
                    continue;
                }
            }
            for batch in self.read(vec![rg_idx], Some(&cols), None)? {
                let c = Columns(&batch);
                let (st, dur, svc) = (c.i64(col::START_TIME)?, c.i64(col::DURATION)?, c.str(col::SERVICE_NAME)?);
                let (name, kind, status) = (c.str(col::NAME)?, c.i32(col::KIND)?, c.i32(col::STATUS_CODE)?);
                let tid = match traces {
                    Some(_) => Some(c.fixed(col::TRACE_ID)?),
                    None => None,
                };
                for i in 0..batch.num_rows() {
                    let t = st.value(i);
                    if t < start || t > end || service.is_some_and(|s| s != svc.value(i)) {
                        continue;
                    }
                    if let (Some((set, inside)), Some(tid)) = (traces, &tid) {
                        if set.contains(&TraceId::from_slice(tid.value(i))?) != inside {
                            continue;
                        }
                    }
                    stats.add(
                        svc.value(i),
                        name.value(i),
                        kind.value(i),
                        status.value(i) == STATUS_ERROR,
                        dur.value(i),
                    );
                }
            }
        }
        Ok(())
    }

    /// Adds to `index` the service of every span of this segment whose trace
    /// is in `traces` (parents for children of a later flush).
    pub(crate) fn index_parents(&self, traces: &HashSet<TraceId>, index: &mut ParentIndex) -> Result<()> {
        let groups: Vec<usize> =
            (0..self.trace_ranges.len()).filter(|&rg| traces.iter().any(|t| self.may_hold_trace(rg, t))).collect();
        if groups.is_empty() {
            return Ok(());
        }
        for batch in self.read(groups, Some(&[col::TRACE_ID, col::SPAN_ID, col::SERVICE_NAME]), None)? {
            let c = Columns(&batch);
            let (tid, sid, svc) = (c.fixed(col::TRACE_ID)?, c.fixed(col::SPAN_ID)?, c.str(col::SERVICE_NAME)?);
            for i in 0..batch.num_rows() {
                let trace = TraceId::from_slice(tid.value(i))?;
                if traces.contains(&trace) {
                    index.insert((trace, crate::ids::SpanId::from_slice(sid.value(i))?), svc.value(i).to_string());
                }
            }
        }
        Ok(())
    }

    fn may_hold_trace(&self, rg: usize, id: &TraceId) -> bool {
        let in_range = match &self.trace_ranges[rg] {
            Some((lo, hi)) => lo.as_slice() <= id.as_bytes() && id.as_bytes() <= hi.as_slice(),
            None => true,
        };
        in_range && self.blooms[rg].as_ref().is_none_or(|b| b.check(id.as_bytes()))
    }

    /// The `limit` newest log records matching `query`, as (time, row), newest first.
    pub(crate) fn newest_logs(&self, query: &dyn tantivy::query::Query, limit: usize) -> Result<Vec<(i64, u32)>> {
        if !self.meta.has_index {
            return Err(StoreError::Corrupt(format!("log segment {} has no index", self.meta.id)));
        }
        self.index()?.newest_rows(query, limit)
    }

    /// The log records at row positions `rows` (sorted, distinct), in that order.
    pub(crate) fn log_rows(&self, rows: &[u32]) -> Result<Vec<LogRow>> {
        let hits: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
        let total = self.meta.rows as usize;
        let groups = (0..self.reader_meta.metadata().num_row_groups()).collect();
        let mut out = Vec::with_capacity(rows.len());
        for b in self.read(groups, None, Some(selection_for(&hits, total)))? {
            out.extend(schema::batch_to_logs(&b)?);
        }
        Ok(out)
    }

    /// Every row of a log segment.
    pub(crate) fn all_logs(&self) -> Result<Vec<LogRow>> {
        let groups = (0..self.reader_meta.metadata().num_row_groups()).collect();
        let mut out = Vec::new();
        for b in self.read(groups, None, None)? {
            out.extend(schema::batch_to_logs(&b)?);
        }
        Ok(out)
    }

    /// Every point of `names` in the window, borrowed row by row (see
    /// [`schema::visit_metrics`]): row groups pruned by the name statistics,
    /// then only the matching rows read.
    pub(crate) fn visit_metric_points(
        &self,
        names: &HashSet<String>,
        start: Option<i64>,
        end: Option<i64>,
        visit: &mut dyn FnMut(&MetricPointRef<'_>),
    ) -> Result<()> {
        if !self.meta.overlaps(start, end) || !self.meta.metrics.iter().any(|d| names.contains(&d.name)) {
            return Ok(());
        }
        let md = self.reader_meta.metadata();
        let name_idx = md.file_metadata().schema_descr().columns().iter().position(|c| c.name() == col::METRIC_NAME);
        for (rg_idx, rg) in md.row_groups().iter().enumerate() {
            if let Some(Statistics::ByteArray(s)) = name_idx.and_then(|ci| rg.column(ci).statistics()) {
                if let (Some(lo), Some(hi)) = (s.min_bytes_opt(), s.max_bytes_opt()) {
                    if !names.iter().any(|n| lo <= n.as_bytes() && n.as_bytes() <= hi) {
                        continue;
                    }
                }
            }
            let mut hits = Vec::new();
            let mut pos = 0usize;
            for batch in self.read(vec![rg_idx], Some(&[col::METRIC_NAME, col::TIME]), None)? {
                let c = Columns(&batch);
                let (name, time) = (c.str(col::METRIC_NAME)?, c.i64(col::TIME)?);
                for i in 0..batch.num_rows() {
                    let t = time.value(i);
                    if start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e) && names.contains(name.value(i)) {
                        hits.push(pos + i);
                    }
                }
                pos += batch.num_rows();
            }
            if hits.is_empty() {
                continue;
            }
            for b in self.read(vec![rg_idx], None, Some(selection_for(&hits, pos)))? {
                // Each row passed the name and time test above.
                schema::visit_metrics(&b, visit)?;
            }
        }
        Ok(())
    }

    /// Every row of a metric segment.
    pub(crate) fn all_metrics(&self) -> Result<Vec<MetricPointRow>> {
        let groups = (0..self.reader_meta.metadata().num_row_groups()).collect();
        let mut out = Vec::new();
        for b in self.read(groups, None, None)? {
            out.extend(schema::batch_to_metrics(&b)?);
        }
        Ok(out)
    }
}

/// Candidates whose rows are checked against Parquet in one read.
const EXACT_BATCH: usize = 256;

/// The start times of the last block of ranks looked at: a walk goes
/// through the ranks in order, so it decodes each block once.
#[derive(Default)]
struct BlockTimes {
    first: u32,
    times: Vec<i64>,
}

impl BlockTimes {
    fn of(&mut self, idx: &SpanIndex, rank: u32) -> Result<i64> {
        if rank < self.first || rank - self.first >= self.times.len() as u32 {
            (self.first, self.times) = idx.block_of(rank)?;
        }
        Ok(self.times[(rank - self.first) as usize])
    }
}

/// A row selection choosing the sorted row positions `hits` out of `total`.
fn selection_for(hits: &[usize], total: usize) -> RowSelection {
    let mut selectors = Vec::new();
    let mut cursor = 0;
    for &h in hits {
        if h > cursor {
            selectors.push(RowSelector::skip(h - cursor));
        }
        selectors.push(RowSelector::select(1));
        cursor = h + 1;
    }
    if total > cursor {
        selectors.push(RowSelector::skip(total - cursor));
    }
    RowSelection::from(selectors)
}
