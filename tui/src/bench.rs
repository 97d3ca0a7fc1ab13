//! Frame time on a big trace: a synthetic trace of `n` spans (a 4-ary
//! tree over ten services, one chaos fault span per 500), opened on the
//! Trace screen and scrolled one page per frame; each frame is drawn
//! off-screen (layout and widgets, not terminal I/O). Behind the hidden
//! `seismo tui --bench-frames N` flag; the figures go to BENCHMARKS.md.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use seismo_client::api::jaeger::{KeyValue, Process, RefType, Reference, Span, Trace};

use crate::action::{Action, Command, Loaded, Screen};
use crate::app::App;
use crate::dashboard::Dashboard;
use crate::faults::CHAOS_SERVICE;

/// The synthetic trace's id.
pub const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// A trace of `n` spans: span `i`'s parent is `(i - 1) / 4`, each child
/// takes a fifth of its parent's time, every 500th span is a chaos
/// latency fault; starts at 2026-12-02 00:00:00 UTC, 10 s long.
pub fn synthetic_trace(n: usize) -> Trace {
    let mut processes = BTreeMap::new();
    for s in 0..10 {
        processes.insert(format!("p{s}"), Process { service_name: format!("service-{s}"), tags: Vec::new() });
    }
    processes.insert("p10".into(), Process { service_name: CHAOS_SERVICE.into(), tags: Vec::new() });
    let base = 1_796_169_600_000_000u64;
    let mut spans: Vec<Span> = Vec::with_capacity(n);
    for i in 0..n {
        let (start, duration, references) = if i == 0 {
            (base, 10_000_000, Vec::new())
        } else {
            let parent = (i - 1) / 4;
            let k = ((i - 1) % 4) as u64;
            let p = &spans[parent];
            let references =
                vec![Reference { ref_type: RefType::ChildOf, trace_id: TRACE_ID.into(), span_id: p.span_id.clone() }];
            (p.start_time + k * p.duration / 5, (p.duration / 5).max(1), references)
        };
        let fault = i > 0 && i % 500 == 0;
        let mut tags = vec![KeyValue::string("span.kind", if i % 2 == 0 { "server" } else { "client" })];
        if fault {
            tags.push(KeyValue::string("chaos.toxic.type", "latency"));
            tags.push(KeyValue::string("chaos.toxic.name", "slow_db"));
            tags.push(KeyValue::string("chaos.proxy", "db"));
        }
        spans.push(Span {
            trace_id: TRACE_ID.into(),
            span_id: format!("{:016x}", i + 1),
            parent_span_id: None,
            flags: 1,
            operation_name: if fault { "chaos latency".into() } else { format!("operation-{}", i % 37) },
            references,
            start_time: start,
            duration,
            tags,
            logs: Vec::new(),
            process_id: if fault { "p10".into() } else { format!("p{}", i % 10) },
            process: None,
            warnings: None,
        });
    }
    Trace { trace_id: TRACE_ID.into(), spans, processes, warnings: None }
}

/// Frame times of the Trace screen showing a `spans`-span trace.
#[derive(Debug)]
pub struct FrameReport {
    /// Spans in the trace.
    pub spans: usize,
    /// Opening it: span tree, critical path, fault impacts.
    pub open: Duration,
    /// Each frame's draw time (after a page-down scroll), in order.
    pub frames: Vec<Duration>,
    /// The terminal size.
    pub size: (u16, u16),
}

impl FrameReport {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.frames.clone();
        sorted.sort();
        sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or_default()
    }
}

impl std::fmt::Display for FrameReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "trace of {} spans at {}x{}: open {:.2} ms; {} frames: median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.spans,
            self.size.0,
            self.size.1,
            ms(self.open),
            self.frames.len(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.frames.iter().max().copied().unwrap_or_default())
        )
    }
}

/// Opens a synthetic `spans`-span trace and draws `frames` frames of
/// `width`×`height`, scrolling a page (then a row) before each.
pub fn frame_times(spans: usize, frames: usize, width: u16, height: u16) -> FrameReport {
    let trace = synthetic_trace(spans);
    let mut app = App::new(Dashboard::builtin(), "bench");
    let _ = app.start(Screen::Trace, None, Some(TRACE_ID.into()));
    let open = Instant::now();
    let _ = app.update(Action::Loaded(Loaded::Trace(Box::new(trace))));
    let open = open.elapsed();
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).expect("an off-screen terminal");
    let mut times = Vec::with_capacity(frames);
    for i in 0..frames {
        let command = if i % 2 == 0 { Command::PageDown } else { Command::Down };
        let _ = app.update(Action::Command(command));
        let start = Instant::now();
        terminal.draw(|f| app.draw(f)).expect("drawing off-screen");
        times.push(start.elapsed());
    }
    FrameReport { spans, open, frames: times, size: (width, height) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_synthetic_trace_shape() {
        let t = synthetic_trace(1_000);
        assert_eq!(t.spans.len(), 1_000);
        assert_eq!(t.spans[4].references[0].span_id, t.spans[0].span_id);
        assert_eq!(t.spans[5].references[0].span_id, t.spans[1].span_id);
        assert_eq!(t.spans[500].process_id, "p10", "every 500th span is a fault");
        let child = &t.spans[1];
        assert!(child.start_time >= t.spans[0].start_time);
    }

    #[test]
    fn test_frame_times_draws_every_frame() {
        let report = frame_times(2_000, 5, 120, 40);
        assert_eq!(report.frames.len(), 5);
        assert!(report.to_string().contains("5 frames"));
    }
}
