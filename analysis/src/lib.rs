//! Pure functions over one fetched trace ([`seismo_api::jaeger::Trace`]): the
//! span tree a waterfall draws, the trace's critical path, and what each
//! injected fault cost the request it hit.
//!
//! The TUI's trace screen and the experiment runner's exemplars both answer
//! "which fault hurt this request, and by how much"; they share this crate so
//! the answer is computed one way. No I/O, no async, no dependency beyond the
//! wire types: every function is tested on hand-built traces.
//!
//! | module | what it owns |
//! |---|---|
//! | [`tree`] | parent/child structure, depth, pre-order rows with collapsed subtrees |
//! | [`critical`] | the critical path: the chain of work the trace's end waited on |
//! | [`faults`] | chaos fault spans and their impact: victim hop, time added, on the critical path or not |
//! | [`summary`] | one line per trace for lists: root, duration, errors, faults |
//! | [`tags`] | reading tags, the error flag and the service of a span |
//!
//! Design decisions:
//! - **Spans are named by their index in `Trace::spans`.** Results hold
//!   indexes, never copies, so a caller keeps one `Trace` and looks up what it
//!   needs.
//! - **Iterative walks.** A trace may be 10,000 spans deep (a runaway
//!   recursion in the traced program); nothing here recurses on the call stack.
//! - **Broken traces are normal.** Missing parents make extra roots, children
//!   that start before or end after their parent are clipped to it for the
//!   critical path (as Jaeger UI does), parent cycles are broken.

#![deny(missing_docs)]

pub mod critical;
pub mod faults;
pub mod summary;
pub mod tags;
pub mod tree;

pub use critical::{critical_path, CriticalPath, Segment};
pub use faults::{critical_fault_us, fault_impacts, is_fault_span, FaultImpact};
pub use summary::{summarize, TraceOverview};
pub use tree::{Row, SpanTree};

#[cfg(test)]
pub(crate) mod fixture;
