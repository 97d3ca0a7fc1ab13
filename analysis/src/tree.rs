//! The span tree: who is whose parent, in the order a waterfall draws them.

use std::collections::{HashMap, HashSet, VecDeque};

use seismo_api::jaeger::{RefType, Span, Trace};

/// Parent/child structure of a trace's spans, by index into `Trace::spans`.
///
/// A span's parent is its first `CHILD_OF` reference (or the legacy
/// `parentSpanID`) that names a span of this trace; a span whose parent is
/// missing is a root. Children and roots are ordered by start time, then by
/// index, so the order is stable. A parent cycle (corrupt data) is cut at its
/// earliest-starting span, which becomes a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanTree {
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    roots: Vec<usize>,
    depth: Vec<usize>,
}

/// One line of a waterfall: a span at its depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Index into `Trace::spans`.
    pub span: usize,
    /// 0 for a root.
    pub depth: usize,
    /// Whether the span has children (drawn or collapsed).
    pub has_children: bool,
    /// Whether its children are hidden.
    pub collapsed: bool,
}

impl SpanTree {
    /// Builds the tree of `trace`.
    pub fn new(trace: &Trace) -> SpanTree {
        let spans = &trace.spans;
        let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            by_id.entry(span.span_id.as_str()).or_insert(i);
        }
        let mut parent: Vec<Option<usize>> = spans
            .iter()
            .enumerate()
            .map(|(i, span)| parent_id(span).and_then(|id| by_id.get(id).copied()).filter(|&p| p != i))
            .collect();

        let order = |a: &usize, b: &usize| (spans[*a].start_time, *a).cmp(&(spans[*b].start_time, *b));
        let mut depth = vec![usize::MAX; spans.len()];
        let mut children = vec![Vec::new(); spans.len()];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(i);
            }
        }
        let mut roots: Vec<usize> = (0..spans.len()).filter(|&i| parent[i].is_none()).collect();
        roots.sort_by(order);
        for kids in &mut children {
            kids.sort_by(order);
        }
        mark_depths(&roots, &children, &mut depth);

        // Whatever was not reached hangs in a parent cycle: cut each cycle at
        // its earliest span and walk again from there.
        let mut unreached: Vec<usize> = (0..spans.len()).filter(|&i| depth[i] == usize::MAX).collect();
        unreached.sort_by(order);
        for i in unreached {
            if depth[i] != usize::MAX {
                continue;
            }
            if let Some(p) = parent[i].take() {
                children[p].retain(|&c| c != i);
            }
            roots.push(i);
            mark_depths(&[i], &children, &mut depth);
        }
        roots.sort_by(order);
        SpanTree { parent, children, roots, depth }
    }

    /// Number of spans.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// Whether the trace has no spans.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// Spans without a parent in the trace, earliest first.
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// The span's parent, if it is in the trace.
    pub fn parent(&self, span: usize) -> Option<usize> {
        self.parent[span]
    }

    /// The span's children, earliest first.
    pub fn children(&self, span: usize) -> &[usize] {
        &self.children[span]
    }

    /// Distance from the span's root (0 for a root).
    pub fn depth(&self, span: usize) -> usize {
        self.depth[span]
    }

    /// The span's ancestors, nearest first.
    pub fn ancestors(&self, span: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.parent[span], move |&p| self.parent[p])
    }

    /// The waterfall's lines in pre-order (a parent, then its subtrees
    /// earliest first), leaving out the descendants of `collapsed` spans.
    pub fn rows(&self, collapsed: &HashSet<usize>) -> Vec<Row> {
        let mut rows = Vec::with_capacity(self.len());
        let mut stack: Vec<usize> = self.roots.iter().rev().copied().collect();
        while let Some(span) = stack.pop() {
            let kids = &self.children[span];
            let hidden = collapsed.contains(&span);
            rows.push(Row {
                span,
                depth: self.depth[span],
                has_children: !kids.is_empty(),
                collapsed: hidden && !kids.is_empty(),
            });
            if !hidden {
                stack.extend(kids.iter().rev());
            }
        }
        rows
    }
}

/// The id of the span's parent as the span names it.
fn parent_id(span: &Span) -> Option<&str> {
    span.references
        .iter()
        .find(|r| r.ref_type == RefType::ChildOf && r.trace_id == span.trace_id)
        .map(|r| r.span_id.as_str())
        .or(span.parent_span_id.as_deref())
}

/// Breadth-first from `from`, setting depths of spans not yet reached.
fn mark_depths(from: &[usize], children: &[Vec<usize>], depth: &mut [usize]) {
    let mut queue: VecDeque<(usize, usize)> = from.iter().map(|&r| (r, 0)).collect();
    while let Some((span, d)) = queue.pop_front() {
        if depth[span] != usize::MAX {
            continue;
        }
        depth[span] = d;
        queue.extend(children[span].iter().map(|&c| (c, d + 1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{span, trace};

    #[test]
    fn children_follow_their_parent_in_start_order() {
        // root(0) -> b(2) starts before a(1); a -> c(3)
        let t = trace(vec![
            span("r", None, "front", "GET /", 0, 100),
            span("a", Some("r"), "front", "a", 50, 10),
            span("b", Some("r"), "front", "b", 10, 10),
            span("c", Some("a"), "back", "c", 55, 2),
        ]);
        let tree = SpanTree::new(&t);
        assert_eq!(tree.roots(), &[0]);
        assert_eq!(tree.children(0), &[2, 1]);
        assert_eq!(tree.depth(3), 2);
        assert_eq!(tree.ancestors(3).collect::<Vec<_>>(), vec![1, 0]);
        let rows: Vec<(usize, usize)> = tree.rows(&HashSet::new()).iter().map(|r| (r.span, r.depth)).collect();
        assert_eq!(rows, vec![(0, 0), (2, 1), (1, 1), (3, 2)]);
    }

    #[test]
    fn collapsed_spans_hide_their_subtree_only() {
        let t = trace(vec![
            span("r", None, "front", "GET /", 0, 100),
            span("a", Some("r"), "front", "a", 10, 10),
            span("c", Some("a"), "back", "c", 12, 2),
            span("b", Some("r"), "front", "b", 50, 10),
        ]);
        let tree = SpanTree::new(&t);
        let rows = tree.rows(&HashSet::from([1]));
        assert_eq!(rows.iter().map(|r| r.span).collect::<Vec<_>>(), vec![0, 1, 3]);
        assert!(rows[1].collapsed && rows[1].has_children);
        assert!(!rows[2].collapsed && !rows[2].has_children);
        // Collapsing a leaf changes nothing.
        assert!(!tree.rows(&HashSet::from([3]))[3].collapsed);
    }

    #[test]
    fn missing_parents_make_roots_and_self_parents_are_ignored() {
        let t = trace(vec![
            span("a", Some("gone"), "front", "a", 20, 10),
            span("b", None, "front", "b", 10, 10),
            span("c", Some("c"), "front", "c", 30, 10),
        ]);
        let tree = SpanTree::new(&t);
        assert_eq!(tree.roots(), &[1, 0, 2]);
        assert_eq!(tree.rows(&HashSet::new()).len(), 3);
    }

    #[test]
    fn a_parent_cycle_is_cut_at_its_earliest_span() {
        // a -> b -> c -> a, none reachable from a root.
        let t = trace(vec![
            span("a", Some("c"), "front", "a", 30, 10),
            span("b", Some("a"), "front", "b", 10, 10),
            span("c", Some("b"), "front", "c", 20, 10),
        ]);
        let tree = SpanTree::new(&t);
        assert_eq!(tree.roots(), &[1]);
        assert_eq!(tree.rows(&HashSet::new()).iter().map(|r| r.span).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(tree.depth(0), 2);
        assert_eq!(tree.ancestors(0).count(), 2, "no endless ancestor walk");
    }

    #[test]
    fn a_deep_chain_does_not_recurse() {
        let n = 20_000;
        let mut spans = vec![span("0", None, "s", "op", 0, n as u64 * 2)];
        for i in 1..n {
            spans.push(span(&i.to_string(), Some(&(i - 1).to_string()), "s", "op", i as u64, 1));
        }
        let tree = SpanTree::new(&trace(spans));
        assert_eq!(tree.depth(n - 1), n - 1);
        assert_eq!(tree.rows(&HashSet::new()).len(), n);
    }
}
