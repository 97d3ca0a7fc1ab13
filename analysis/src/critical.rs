//! The critical path: the chain of work whose every microsecond delayed the
//! end of the trace's root span.
//!
//! Walked as Jaeger UI walks it: from the root's end backwards, the child that
//! finished last before the cursor is on the path (and is walked the same way
//! within its own time), the cursor moves to that child's start, and whatever
//! time no child covers is the parent's own. Children are clipped to their
//! parent's time first, so a child that outlives its parent (an asynchronous
//! call) counts only while the parent waited, and one entirely outside its
//! parent counts not at all. Of overlapping siblings, only the one that ended
//! last is on the path: the parent was waiting for it, not for the others.

use seismo_api::jaeger::Trace;

use crate::tags::end_us;
use crate::tree::SpanTree;

/// A stretch of time the trace's end waited on one span's own work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index into `Trace::spans`.
    pub span: usize,
    /// Microseconds since the epoch.
    pub start_us: u64,
    /// Microseconds since the epoch; `> start_us`.
    pub end_us: u64,
}

/// The critical path of a trace: disjoint segments in time order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CriticalPath {
    root: Option<usize>,
    segments: Vec<Segment>,
    time_on: Vec<u64>,
}

impl CriticalPath {
    /// The root span the path was walked from (the longest root; `None` for an empty trace).
    pub fn root(&self) -> Option<usize> {
        self.root
    }

    /// The segments, earliest first; together they cover the root's duration.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Microseconds of the span's own time on the path.
    pub fn time_on(&self, span: usize) -> u64 {
        self.time_on.get(span).copied().unwrap_or(0)
    }

    /// Whether any of the span's own time is on the path.
    pub fn contains(&self, span: usize) -> bool {
        self.time_on(span) > 0
    }
}

/// Computes the critical path of `trace` from its longest root span.
pub fn critical_path(trace: &Trace, tree: &SpanTree) -> CriticalPath {
    let spans = &trace.spans;
    let Some(&root) = tree.roots().iter().max_by_key(|&&r| (spans[r].duration, std::cmp::Reverse(spans[r].start_time)))
    else {
        return CriticalPath::default();
    };
    let mut segments = Vec::new();
    let mut time_on = vec![0u64; spans.len()];
    let mut push = |span: usize, start_us: u64, end_us: u64| {
        if end_us > start_us {
            segments.push(Segment { span, start_us, end_us });
            time_on[span] += end_us - start_us;
        }
    };
    // Each frame: a span and the window of it that is on the path.
    let mut frames = vec![(root, spans[root].start_time, end_us(&spans[root]))];
    let mut kids: Vec<(usize, u64, u64)> = Vec::new();
    while let Some((span, from, to)) = frames.pop() {
        kids.clear();
        for &c in tree.children(span) {
            let start = spans[c].start_time.max(from);
            let end = end_us(&spans[c]).min(to);
            if end > start {
                kids.push((c, start, end));
            }
        }
        // Latest end first; among equal ends the later start (the shorter
        // child) first, then the index, so the walk is deterministic.
        kids.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
        let mut cursor = to;
        for &(child, start, end) in &kids {
            if end > cursor {
                continue; // overlaps the sibling already on the path
            }
            push(span, end, cursor);
            frames.push((child, start, end));
            cursor = start;
        }
        push(span, from, cursor);
    }
    segments.sort_by_key(|s| (s.start_us, s.end_us));
    CriticalPath { root: Some(root), segments, time_on }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{span, trace};

    fn path(t: &Trace) -> Vec<(usize, u64, u64)> {
        let cp = critical_path(t, &SpanTree::new(t));
        cp.segments().iter().map(|s| (s.span, s.start_us, s.end_us)).collect()
    }

    #[test]
    fn sequential_children_are_all_on_the_path() {
        let t = trace(vec![
            span("r", None, "f", "root", 0, 100),
            span("a", Some("r"), "f", "a", 10, 20),
            span("b", Some("r"), "f", "b", 40, 50),
        ]);
        assert_eq!(path(&t), vec![(0, 0, 10), (1, 10, 30), (0, 30, 40), (2, 40, 90), (0, 90, 100)]);
    }

    #[test]
    fn of_overlapping_siblings_only_the_last_to_finish_counts() {
        // a [10,60) and b [20,80) overlap; the root waited for b. a ends
        // after b started, so it is not on the path at all.
        let t = trace(vec![
            span("r", None, "f", "root", 0, 100),
            span("a", Some("r"), "f", "a", 10, 50),
            span("b", Some("r"), "f", "b", 20, 60),
        ]);
        assert_eq!(path(&t), vec![(0, 0, 20), (2, 20, 80), (0, 80, 100)]);
        let cp = critical_path(&t, &SpanTree::new(&t));
        assert!(!cp.contains(1));
        assert_eq!(cp.time_on(2), 60);
        let total: u64 = cp.segments().iter().map(|s| s.end_us - s.start_us).sum();
        assert_eq!(total, 100, "the path covers the root's duration");
    }

    #[test]
    fn a_sibling_that_ended_before_the_last_one_started_is_on_the_path() {
        // a [10,20), b [15,40), c [50,90): c, then b (ended at 40 < 50), then a? a ends 20 > b's start 15: no.
        let t = trace(vec![
            span("r", None, "f", "root", 0, 100),
            span("a", Some("r"), "f", "a", 10, 10),
            span("b", Some("r"), "f", "b", 15, 25),
            span("c", Some("r"), "f", "c", 50, 40),
        ]);
        assert_eq!(path(&t), vec![(0, 0, 15), (2, 15, 40), (0, 40, 50), (3, 50, 90), (0, 90, 100)]);
    }

    #[test]
    fn children_outside_their_parent_are_clipped() {
        // a starts before the root and b ends after it (asynchronous work);
        // c lies entirely after the root and does not count.
        let t = trace(vec![
            span("r", None, "f", "root", 100, 100),
            span("a", Some("r"), "f", "a", 50, 80),
            span("b", Some("r"), "f", "b", 180, 100),
            span("c", Some("r"), "f", "c", 300, 10),
        ]);
        assert_eq!(path(&t), vec![(1, 100, 130), (0, 130, 180), (2, 180, 200)]);
    }

    #[test]
    fn the_path_descends_into_grandchildren() {
        let t = trace(vec![
            span("r", None, "front", "root", 0, 100),
            span("c", Some("r"), "front", "client", 10, 80),
            span("s", Some("c"), "back", "server", 20, 60),
            span("d", Some("s"), "db", "query", 30, 40),
        ]);
        assert_eq!(
            path(&t),
            vec![(0, 0, 10), (1, 10, 20), (2, 20, 30), (3, 30, 70), (2, 70, 80), (1, 80, 90), (0, 90, 100)]
        );
    }

    #[test]
    fn the_longest_root_is_walked_and_an_empty_trace_has_no_path() {
        let t = trace(vec![span("x", None, "f", "short", 0, 5), span("y", None, "f", "long", 0, 50)]);
        let cp = critical_path(&t, &SpanTree::new(&t));
        assert_eq!(cp.root(), Some(1));
        assert!(!cp.contains(0));
        let empty = trace(vec![]);
        assert_eq!(critical_path(&empty, &SpanTree::new(&empty)).segments(), &[]);
    }

    #[test]
    fn zero_length_children_are_not_on_the_path() {
        let t = trace(vec![span("r", None, "f", "root", 0, 10), span("z", Some("r"), "f", "instant", 5, 0)]);
        assert_eq!(path(&t), vec![(0, 0, 10)]);
    }
}
