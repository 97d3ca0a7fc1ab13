//! Per-operation request statistics and the service graph, summarized once
//! per span segment at flush so that large windows cost a merge of small
//! summaries, not a scan of every span.
//!
//! A span segment carries a [`SegmentSummary`] in its Parquet footer (key
//! [`SUMMARY_KEY`]): per (service, operation, kind) the span count, error
//! count and a latency sketch, and the parent -> child service edges of its
//! spans. A window that covers a segment whole uses the summary; a segment cut
//! by the window's edge, and the memtable, are scanned exactly.
//!
//! Edges across flushes: a child span's parent often arrives in a later flush
//! (a parent ends, and is exported, after its children) or sits in an earlier
//! one. A flush resolves its children against the spans of the last few
//! segments, and the "orphans" those segments left (children whose parent had
//! not arrived) against its own spans; what stays unresolved is recorded as
//! this segment's orphans for later flushes.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::ids::{SpanId, TraceId};
use crate::packed::SpanView;

/// Parquet footer key holding a span segment's summary (JSON).
pub(crate) const SUMMARY_KEY: &str = "seismo.span_summary";

/// Relative accuracy of latency quantiles.
const SKETCH_ALPHA: f64 = 0.01;

/// A log-bucketed latency sketch (DDSketch's mapping): a value `v` lands in
/// bucket `ceil(ln v / ln γ)`, γ = (1+α)/(1-α), and any quantile read back is
/// within α (1%) of a true sample. Mergeable by adding bucket counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySketch {
    /// Durations ≤ 0 ns.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub zeros: u64,
    /// (bucket index, count), sorted by index. Narrow types (8 bytes a
    /// bucket, not 16): every segment keeps a sketch per operation in memory,
    /// and indexes stay below 2,200 (1 ns to i64::MAX ns), counts of one
    /// bucket below 2^32 (they saturate).
    pub buckets: Vec<(i16, u32)>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn gamma() -> f64 {
    (1.0 + SKETCH_ALPHA) / (1.0 - SKETCH_ALPHA)
}

impl LatencySketch {
    pub fn count(&self) -> u64 {
        self.zeros + self.buckets.iter().map(|(_, c)| u64::from(*c)).sum::<u64>()
    }

    /// A sketch under construction: a map is cheaper to add to.
    fn add_to(map: &mut BTreeMap<i16, u32>, zeros: &mut u64, nanos: i64) {
        if nanos <= 0 {
            *zeros += 1;
        } else {
            let idx = ((nanos as f64).ln() / gamma().ln()).ceil() as i16;
            let c = map.entry(idx).or_default();
            *c = c.saturating_add(1);
        }
    }

    fn from_map(map: BTreeMap<i16, u32>, zeros: u64) -> Self {
        LatencySketch { zeros, buckets: map.into_iter().collect() }
    }

    /// The `q`-quantile (0..=1) in ns, by nearest rank; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        if rank <= self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        let g = gamma();
        for (idx, c) in &self.buckets {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(2.0 * g.powi(i32::from(*idx)) / (g + 1.0));
            }
        }
        None
    }
}

/// The statistics of one (service, operation, kind).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    pub spans: u64,
    pub errors: u64,
    pub latency: LatencySketch,
}

/// (service, span name, span kind).
pub type OpKey = (String, String, i32);

/// One operation's counts under construction: spans, errors, zero
/// durations, latency buckets (a map is cheaper to add to).
type Acc = (u64, u64, u64, BTreeMap<i16, u32>);

/// Accumulates [`OpStats`] from spans. Keyed service -> name -> kind so a
/// span finds its operation by `&str` lookups, without allocating.
#[derive(Default)]
pub(crate) struct StatsBuilder {
    ops: foldhash::HashMap<String, foldhash::HashMap<String, Vec<(i32, Acc)>>>,
}

impl StatsBuilder {
    pub(crate) fn add(&mut self, service: &str, name: &str, kind: i32, is_error: bool, duration_ns: i64) {
        if !self.ops.contains_key(service) {
            self.ops.insert(service.to_string(), Default::default());
        }
        let names = self.ops.get_mut(service).expect("inserted above");
        if !names.contains_key(name) {
            names.insert(name.to_string(), Vec::new());
        }
        let kinds = names.get_mut(name).expect("inserted above");
        let i = match kinds.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None => {
                kinds.push((kind, Acc::default()));
                kinds.len() - 1
            }
        };
        let entry = &mut kinds[i].1;
        entry.0 += 1;
        entry.1 += is_error as u64;
        LatencySketch::add_to(&mut entry.3, &mut entry.2, duration_ns);
    }

    pub(crate) fn add_span(&mut self, s: &impl SpanView) {
        self.add(s.service_name(), s.name(), s.kind(), s.status_code() == STATUS_ERROR, s.duration());
    }

    pub(crate) fn finish(self) -> Vec<(OpKey, OpStats)> {
        let mut out: Vec<(OpKey, OpStats)> = Vec::new();
        for (service, names) in self.ops {
            for (name, kinds) in names {
                for (kind, (spans, errors, zeros, map)) in kinds {
                    let stats = OpStats { spans, errors, latency: LatencySketch::from_map(map, zeros) };
                    out.push(((service.clone(), name.clone(), kind), stats));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// OTLP status code ERROR.
pub(crate) const STATUS_ERROR: i32 = 2;

/// Merges `from` into `into`.
pub fn merge(into: &mut OpStats, from: &OpStats) {
    into.spans += from.spans;
    into.errors += from.errors;
    into.latency.zeros += from.latency.zeros;
    let mut map: BTreeMap<i16, u32> = into.latency.buckets.iter().copied().collect();
    for (i, c) in &from.latency.buckets {
        let sum = map.entry(*i).or_default();
        *sum = sum.saturating_add(*c);
    }
    into.latency.buckets = map.into_iter().collect();
}

/// A child span whose parent was not found when its segment was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Orphan {
    pub trace_id: TraceId,
    pub parent_span_id: SpanId,
    pub child_service: String,
}

/// What a span segment's footer summarizes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegmentSummary {
    pub ops: Vec<(OpKey, OpStats)>,
    /// (parent service, child service, span count), including edges found by
    /// resolving other segments' orphans against this segment's spans.
    pub edges: Vec<(String, String, u64)>,
    pub orphans: Vec<Orphan>,
}

/// Where parents are looked for: spans of recent segments, by (trace, span).
pub(crate) type ParentIndex = HashMap<(TraceId, SpanId), String>;

/// Counts parent -> child edges among `spans`, resolving the children whose
/// parent is not among them through `earlier` (spans of recent segments), and
/// `pending` (recent segments' orphans) against `spans`. Returns the edges
/// and the children still without a parent.
pub(crate) fn edges<S: SpanView>(
    spans: &[S],
    earlier: &ParentIndex,
    pending: &[Orphan],
) -> (BTreeMap<(String, String), u64>, Vec<Orphan>) {
    let service_of: foldhash::HashMap<(TraceId, SpanId), &str> =
        spans.iter().map(|s| ((s.trace_id(), s.span_id()), s.service_name())).collect();
    // parent -> child -> spans, found by `&str` without allocating per span.
    let mut by_parent: foldhash::HashMap<String, foldhash::HashMap<String, u64>> = Default::default();
    let mut add = |parent: &str, child: &str| {
        if !by_parent.contains_key(parent) {
            by_parent.insert(parent.to_string(), Default::default());
        }
        let children = by_parent.get_mut(parent).expect("inserted above");
        match children.get_mut(child) {
            Some(n) => *n += 1,
            None => {
                children.insert(child.to_string(), 1);
            }
        }
    };
    let mut orphans = Vec::new();
    for s in spans {
        let Some(parent) = s.parent_span_id() else { continue };
        let key = (s.trace_id(), parent);
        if let Some(p) = service_of.get(&key) {
            add(p, s.service_name());
        } else if let Some(p) = earlier.get(&key) {
            add(p, s.service_name());
        } else {
            orphans.push(Orphan {
                trace_id: s.trace_id(),
                parent_span_id: parent,
                child_service: s.service_name().to_string(),
            });
        }
    }
    let mut resolved: foldhash::HashSet<&Orphan> = Default::default();
    for o in pending {
        if let Some(p) = service_of.get(&(o.trace_id, o.parent_span_id)) {
            if resolved.insert(o) {
                add(p, &o.child_service);
            }
        }
    }
    let counts = by_parent
        .into_iter()
        .flat_map(|(p, children)| children.into_iter().map(move |(c, n)| ((p.clone(), c), n)))
        .collect();
    (counts, orphans)
}

/// Summarizes the spans of a segment about to be written.
pub(crate) fn summarize<S: SpanView>(spans: &[S], earlier: &ParentIndex, pending: &[Orphan]) -> SegmentSummary {
    let mut b = StatsBuilder::default();
    for s in spans {
        b.add_span(s);
    }
    let (edges, orphans) = edges(spans, earlier, pending);
    SegmentSummary { ops: b.finish(), edges: edges.into_iter().map(|((p, c), n)| (p, c, n)).collect(), orphans }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SpanRow;

    #[test]
    fn sketch_quantiles_are_within_one_percent() {
        let mut b = StatsBuilder::default();
        // 1..=1000 ms: p50 = 500 ms, p99 = 990 ms, p100 = 1000 ms.
        for ms in 1..=1000i64 {
            b.add("cart", "GET /cart", 2, ms % 10 == 0, ms * 1_000_000);
        }
        let ops = b.finish();
        assert_eq!(ops.len(), 1);
        let s = &ops[0].1;
        assert_eq!((s.spans, s.errors), (1000, 100));
        for (q, want) in [(0.5, 500e6), (0.99, 990e6), (1.0, 1000e6), (0.0, 1e6)] {
            let got = s.latency.quantile(q).unwrap();
            assert!((got - want).abs() / want <= 0.0101, "q{q}: {got} vs {want}");
        }
        let mut merged = s.clone();
        merge(&mut merged, s);
        assert_eq!(merged.spans, 2000);
        assert!((merged.latency.quantile(0.5).unwrap() - 500e6).abs() / 500e6 <= 0.0101);
        assert_eq!(LatencySketch::default().quantile(0.5), None);
    }

    fn span(trace: u8, id: u8, parent: Option<u8>, service: &str) -> SpanRow {
        SpanRow {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            service_name: service.into(),
            ..SpanRow::default()
        }
    }

    #[test]
    fn edges_resolve_across_segments_both_ways() {
        // Segment 1 holds a child whose parent (frontend, span 1) comes later.
        let seg1 = [span(1, 2, Some(1), "cart"), span(1, 3, Some(2), "redis")];
        let s1 = summarize(&seg1, &ParentIndex::new(), &[]);
        assert_eq!(s1.edges, vec![("cart".into(), "redis".into(), 1)]);
        assert_eq!(s1.orphans.len(), 1);
        // Segment 2 holds the parent, and a child of segment 1's cart span.
        let earlier: ParentIndex = seg1.iter().map(|s| ((s.trace_id, s.span_id), s.service_name.clone())).collect();
        let seg2 = [span(1, 1, None, "frontend"), span(1, 4, Some(2), "db")];
        let s2 = summarize(&seg2, &earlier, &s1.orphans);
        assert_eq!(s2.edges, vec![("cart".into(), "db".into(), 1), ("frontend".into(), "cart".into(), 1)]);
        assert!(s2.orphans.is_empty());
    }
}
