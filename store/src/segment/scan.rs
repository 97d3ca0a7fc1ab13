//! Reading a segment: trace lookups, searches, stats scans and row fetches,
//! each touching only the row groups and columns it needs. Every read goes
//! through `Segment::read`, which verifies the chunks first.

use std::collections::{HashMap, HashSet};

use arrow::array::Array;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::file::statistics::Statistics;

use super::Segment;
use crate::error::{Result, StoreError};
use crate::ids::TraceId;
use crate::model::*;
use crate::query::TraceQuery;
use crate::schema::{self, col, Columns};
use crate::spanstats::{ParentIndex, StatsBuilder, STATUS_ERROR};
use crate::tags;

impl Segment {
    /// Row groups that may hold `id`, by min/max statistics and bloom filter.
    fn row_groups_for_trace(&self, id: &TraceId) -> Vec<usize> {
        (0..self.trace_ranges.len()).filter(|&rg| self.may_hold_trace(rg, id)).collect()
    }

    /// All spans of trace `id` in this segment.
    pub(crate) fn trace(&self, id: &TraceId) -> Result<Vec<SpanRow>> {
        let mut out = Vec::new();
        for rg in self.row_groups_for_trace(id) {
            // Find the trace's rows from the id column alone, then fetch just them.
            let ids = self.read(vec![rg], Some(&[col::TRACE_ID]), None)?;
            let mut hits = Vec::new();
            let mut pos = 0usize;
            for batch in &ids {
                let arr = Columns(batch).fixed(col::TRACE_ID)?;
                for i in 0..arr.len() {
                    if arr.value(i) == id.as_bytes() {
                        hits.push(pos + i);
                    }
                }
                pos += batch.num_rows();
            }
            if hits.is_empty() {
                continue;
            }
            let selection = selection_for(&hits, pos);
            for batch in self.read(vec![rg], None, Some(selection))? {
                out.extend(schema::batch_to_spans(&batch)?);
            }
        }
        Ok(out)
    }

    /// Adds to `hits` (trace id -> newest matching span start) every trace with
    /// a span in this segment that matches `q`.
    pub(crate) fn search_traces(&self, q: &TraceQuery, hits: &mut HashMap<TraceId, i64>) -> Result<()> {
        if !self.meta.overlaps(q.start_min_ns, q.start_max_ns) {
            return Ok(());
        }
        if let Some(s) = &q.service {
            if !self.meta.services.iter().any(|x| x == s) {
                return Ok(());
            }
        }
        if let Some(op) = &q.operation {
            if !self.meta.operations.iter().any(|(s, n, _)| n == op && q.service.as_ref().is_none_or(|qs| qs == s)) {
                return Ok(());
            }
        }
        let allowed: Option<HashSet<u32>> = match (self.meta.has_index, q.tags.is_empty()) {
            (_, true) => None,
            (true, false) => {
                let index = self.index()?;
                let terms: Vec<String> = q.tags.iter().map(|(k, v)| tags::term(k, v)).collect();
                if terms.iter().any(|t| t.len() > tags::MAX_TERM_BYTES) {
                    return Ok(());
                }
                let rows = index.rows_with_all_terms(&terms)?;
                if rows.is_empty() {
                    return Ok(());
                }
                Some(rows)
            }
            (false, false) => return Err(StoreError::Corrupt(format!("span segment {} has no index", self.meta.id))),
        };
        let md = self.reader_meta.metadata();
        let start_idx = md.file_metadata().schema_descr().columns().iter().position(|c| c.name() == col::START_TIME);
        let mut base = 0usize;
        for (rg_idx, rg) in md.row_groups().iter().enumerate() {
            let rg_rows = rg.num_rows() as usize;
            let rg_base = base;
            base += rg_rows;
            if let Some(ci) = start_idx {
                if let Some(Statistics::Int64(s)) = rg.column(ci).statistics() {
                    let below = matches!((q.start_min_ns, s.max_opt()), (Some(m), Some(mx)) if *mx < m);
                    let above = matches!((q.start_max_ns, s.min_opt()), (Some(m), Some(mn)) if *mn > m);
                    if below || above {
                        continue;
                    }
                }
            }
            if let Some(rows) = &allowed {
                if !rows.iter().any(|r| (*r as usize) >= rg_base && (*r as usize) < rg_base + rg_rows) {
                    continue;
                }
            }
            let cols = [col::TRACE_ID, col::START_TIME, col::DURATION, col::SERVICE_NAME, col::NAME, col::KIND];
            let mut pos = rg_base;
            for batch in self.read(vec![rg_idx], Some(&cols), None)? {
                let c = Columns(&batch);
                let (tid, start, dur) = (c.fixed(col::TRACE_ID)?, c.i64(col::START_TIME)?, c.i64(col::DURATION)?);
                let (svc, name, kind) = (c.str(col::SERVICE_NAME)?, c.str(col::NAME)?, c.i32(col::KIND)?);
                for i in 0..batch.num_rows() {
                    let row = (pos + i) as u32;
                    let st = start.value(i);
                    let d = dur.value(i);
                    let ok = allowed.as_ref().is_none_or(|a| a.contains(&row))
                        && q.start_min_ns.is_none_or(|m| st >= m)
                        && q.start_max_ns.is_none_or(|m| st <= m)
                        && q.min_duration_ns.is_none_or(|m| d >= m)
                        && q.max_duration_ns.is_none_or(|m| d <= m)
                        && q.service.as_ref().is_none_or(|s| svc.value(i) == s)
                        && q.operation.as_ref().is_none_or(|o| name.value(i) == o)
                        && q.span_kind.is_none_or(|k| kind.value(i) == k);
                    if ok {
                        let id = TraceId::from_slice(tid.value(i))?;
                        let e = hits.entry(id).or_insert(st);
                        *e = (*e).max(st);
                    }
                }
                pos += batch.num_rows();
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
