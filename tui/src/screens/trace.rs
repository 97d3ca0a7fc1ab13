//! The Trace screen: the waterfall (span tree with time bars, fold and
//! unfold, keyboard scrolling), the critical path marked, the selected
//! span's detail (attributes, events, resource) and its logs beside it,
//! and — when chaos faults hit the trace — the fault attribution panel:
//! which fault (proxy, toxic, experiment) hit which hop, whether it lay on
//! the critical path, and how much it added.
//!
//! The tree, the critical path and the fault impacts come from
//! `seismo-analysis`, computed once when the trace arrives; a frame lays
//! out only the rows on screen ([`crate::waterfall`]).

use std::collections::HashSet;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;
use seismo_analysis::tags::{is_error, service};
use seismo_analysis::{critical_path, fault_impacts, is_fault_span, CriticalPath, FaultImpact, Row, SpanTree};
use seismo_client::api::jaeger::Trace;
use seismo_client::api::logs::LogRecord;

use super::logs::{body_text, severity_style};
use super::{block, draw_state, theme, Component, Effect, Load, Selection};
use crate::action::Command;
use crate::fetch::Request;
use crate::format;
use crate::waterfall::{axis_ticks, bar_columns, TimeWindow};

/// A bar on the critical path.
const CRITICAL_BAR: char = '█';
/// A bar off the critical path.
const OTHER_BAR: char = '▒';
/// A chaos fault's bar.
const FAULT_BAR: char = '▓';

/// A trace and everything computed from it once.
#[derive(Debug)]
struct TraceView {
    trace: Trace,
    tree: SpanTree,
    path: CriticalPath,
    impacts: Vec<FaultImpact>,
    window: TimeWindow,
    fault: Vec<bool>,
    error: Vec<bool>,
}

impl TraceView {
    fn new(trace: Trace) -> TraceView {
        let tree = SpanTree::new(&trace);
        let path = critical_path(&trace, &tree);
        let impacts = fault_impacts(&trace, &tree, &path);
        let window = TimeWindow::covering(trace.spans.iter().map(|s| (s.start_time, s.duration)))
            .unwrap_or(TimeWindow::new(0, 1));
        let fault = trace.spans.iter().map(|s| is_fault_span(&trace, s)).collect();
        let error = trace.spans.iter().map(is_error).collect();
        TraceView { trace, tree, path, impacts, window, fault, error }
    }

    fn label(&self, span: usize) -> String {
        let s = &self.trace.spans[span];
        if self.fault[span] {
            let impact = self.impacts.iter().find(|i| i.span == span);
            let on = impact.and_then(|i| i.proxy.clone()).map_or(String::new(), |p| format!(" on {p}"));
            format!("⚡ FAULT {}{on}", impact.map_or(s.operation_name.as_str(), |i| i.kind.as_str()))
        } else {
            format!("{}: {}", service(&self.trace, s), s.operation_name)
        }
    }
}

/// Jaeger writes a trace id without its leading zero half; compare ids as numbers do.
fn same_trace_id(a: &str, b: &str) -> bool {
    a.trim_start_matches('0').eq_ignore_ascii_case(b.trim_start_matches('0'))
}

/// The Trace screen.
#[derive(Debug, Default)]
pub struct TraceScreen {
    trace_id: Option<String>,
    view: Option<TraceView>,
    rows: Vec<Row>,
    collapsed: HashSet<usize>,
    selection: Selection,
    load: Load,
    logs: Vec<LogRecord>,
    logs_load: Load,
    search: String,
}

impl TraceScreen {
    /// Opens trace `id`: the fetches of the trace and its logs.
    pub fn open(&mut self, id: &str) -> Vec<Request> {
        *self = TraceScreen { trace_id: Some(id.to_string()), ..TraceScreen::default() };
        self.refresh()
    }

    /// Takes the trace (dropped if another one was opened meanwhile).
    pub fn loaded(&mut self, trace: Trace) {
        if !self.trace_id.as_deref().is_some_and(|id| same_trace_id(id, &trace.trace_id)) {
            return;
        }
        self.view = Some(TraceView::new(trace));
        self.collapsed.clear();
        self.rebuild_rows();
        self.load = Load::Ready;
    }

    /// Takes the trace's failure.
    pub fn failed(&mut self, error: String) {
        self.load = Load::Failed(error);
    }

    /// Takes the trace's log records.
    pub fn logs_loaded(&mut self, trace_id: &str, records: Vec<LogRecord>) {
        if self.trace_id.as_deref().is_some_and(|id| same_trace_id(id, trace_id)) {
            self.logs = records;
            self.logs_load = Load::Ready;
        }
    }

    /// Takes the logs' failure.
    pub fn logs_failed(&mut self, error: String) {
        self.logs_load = Load::Failed(error);
    }

    fn rebuild_rows(&mut self) {
        let keep = self.rows.get(self.selection.selected).map(|r| r.span);
        self.rows = self.view.as_ref().map_or_else(Vec::new, |v| v.tree.rows(&self.collapsed));
        if let Some(span) = keep {
            self.selection.selected = self.rows.iter().position(|r| r.span == span).unwrap_or(0);
        }
    }

    fn selected_span(&self) -> Option<usize> {
        self.rows.get(self.selection.selected).map(|r| r.span)
    }

    /// Selects the first row after the selection (wrapping) whose span passes `pick`.
    fn select_next(&mut self, pick: impl Fn(&TraceView, usize) -> bool) -> bool {
        let Some(view) = &self.view else { return false };
        let n = self.rows.len();
        let found = (1..=n).map(|k| (self.selection.selected + k) % n).find(|&i| pick(view, self.rows[i].span));
        if let Some(i) = found {
            self.selection.selected = i;
        }
        found.is_some()
    }

    fn draw_waterfall(&mut self, frame: &mut Frame, area: Rect) {
        let Some(view) = &self.view else { return };
        let title = format!(
            "Waterfall · {} spans · {} critical path  {} other  {} fault",
            view.trace.spans.len(),
            CRITICAL_BAR,
            OTHER_BAR,
            FAULT_BAR
        );
        let block = block(title, &self.load);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.height < 2 || inner.width < 10 {
            return;
        }
        let name_w = (inner.width as usize * 2 / 5).clamp(8, 60);
        let bar_w = (inner.width as usize).saturating_sub(name_w + 1) as u16;
        // The axis.
        let mut axis = vec![' '; bar_w as usize];
        let mut axis_line = format!("{:<name_w$} ", "");
        for (column, at) in axis_ticks(view.window, bar_w, 4) {
            let label = format!("|{}", format::micros(at));
            let start = (column as usize).min((bar_w as usize).saturating_sub(label.chars().count()));
            for (k, c) in label.chars().enumerate() {
                if let Some(slot) = axis.get_mut(start + k) {
                    *slot = c;
                }
            }
        }
        axis_line.extend(axis);
        let mut lines = vec![Line::styled(axis_line, Style::new().fg(theme::DIM))];
        let height = inner.height as usize - 1;
        let visible = self.selection.fit(self.rows.len(), height);
        for i in visible {
            let row = self.rows[i];
            let span = &view.trace.spans[row.span];
            let fold = match (row.has_children, row.collapsed) {
                (false, _) => "  ",
                (true, true) => "▸ ",
                (true, false) => "▾ ",
            };
            let indent = "  ".repeat(row.depth.min(name_w / 4));
            // A gutter mark as well as the reversed style: the selection reads without colour
            // (render-once text, monochrome terminals).
            let mark = if i == self.selection.selected { '›' } else { ' ' };
            let name = format::fit(&format!("{mark}{indent}{fold}{}", view.label(row.span)), name_w);
            let on_path = view.path.contains(row.span);
            let (bar_char, colour) = if view.fault[row.span] {
                (FAULT_BAR, theme::FAULT)
            } else if view.error[row.span] {
                (if on_path { CRITICAL_BAR } else { OTHER_BAR }, theme::ERROR)
            } else if on_path {
                (CRITICAL_BAR, theme::CRITICAL)
            } else {
                (OTHER_BAR, theme::BAR)
            };
            let cols = bar_columns(view.window, span.start_time, span.duration, bar_w);
            let before = " ".repeat(cols.start as usize);
            let bar: String = std::iter::repeat_n(bar_char, cols.len()).collect();
            let label = format!(" {}", format::micros(span.duration));
            let after_room = (bar_w as usize).saturating_sub(cols.end as usize);
            let after = if label.chars().count() <= after_room { label } else { String::new() };
            let name_style = if view.fault[row.span] {
                Style::new().fg(theme::FAULT).add_modifier(Modifier::BOLD)
            } else if view.error[row.span] {
                Style::new().fg(theme::ERROR)
            } else {
                Style::new()
            };
            let mut line = Line::from(vec![
                Span::styled(format!("{name:<name_w$} "), name_style),
                Span::raw(before),
                Span::styled(bar, Style::new().fg(colour)),
                Span::styled(after, Style::new().fg(theme::DIM)),
            ]);
            if i == self.selection.selected {
                line = line.style(theme::selected());
            }
            lines.push(line);
        }
        frame.render_widget(Paragraph::new(lines), inner);
    }

    fn draw_detail(&self, frame: &mut Frame, area: Rect) {
        let (Some(view), Some(i)) = (&self.view, self.selected_span()) else { return };
        let span = &view.trace.spans[i];
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let mut lines = vec![Line::styled(view.label(i), if view.fault[i] { bold.fg(theme::FAULT) } else { bold })];
        if view.fault[i] {
            lines.push(Line::styled("injected by the chaos agent", Style::new().fg(theme::FAULT)));
        }
        let offset = span.start_time.saturating_sub(view.window.start_us);
        lines.push(Line::from(format!(
            "start +{}  duration {}  span {}",
            format::micros(offset),
            format::micros(span.duration),
            span.span_id
        )));
        let on_path = view.path.time_on(i);
        if on_path > 0 {
            lines.push(Line::styled(
                format!("critical path: {} of its own time", format::micros(on_path)),
                Style::new().fg(theme::CRITICAL),
            ));
        }
        if view.error[i] {
            lines.push(Line::styled("status: ERROR", Style::new().fg(theme::ERROR)));
        }
        lines.push(Line::styled("attributes", bold));
        for t in &span.tags {
            lines.push(Line::from(format!("  {} = {}", t.key, t.value_text())));
        }
        if !span.logs.is_empty() {
            lines.push(Line::styled("events", bold));
            for e in &span.logs {
                let fields: Vec<String> = e.fields.iter().map(|f| format!("{}={}", f.key, f.value_text())).collect();
                lines.push(Line::from(format!(
                    "  +{} {}",
                    format::micros(e.timestamp.saturating_sub(span.start_time)),
                    fields.join(" ")
                )));
            }
        }
        let process = span.process.as_ref().or_else(|| view.trace.processes.get(&span.process_id));
        if let Some(p) = process {
            lines.push(Line::styled("resource", bold));
            lines.push(Line::from(format!("  service.name = {}", p.service_name)));
            for t in &p.tags {
                lines.push(Line::from(format!("  {} = {}", t.key, t.value_text())));
            }
        }
        let mine: Vec<&LogRecord> =
            self.logs.iter().filter(|r| r.span_id.as_deref() == Some(span.span_id.as_str())).collect();
        let logs_h = if mine.is_empty() { 3 } else { (mine.len() as u16 + 2).min(area.height / 2) };
        let [top, bottom] = Layout::vertical([Constraint::Fill(1), Constraint::Length(logs_h)]).areas(area);
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block("Span", &Load::Ready)), top);
        let logs_block =
            block(format!("Logs of this span · {} of {} in the trace", mine.len(), self.logs.len()), &self.logs_load);
        if draw_state(frame, bottom, logs_block.clone(), &self.logs_load, mine.is_empty(), "no log record of this span")
        {
            return;
        }
        let lines: Vec<Line> = mine
            .iter()
            .map(|r| {
                let at = r.time_ns().map_or(String::new(), |ns| format::clock((ns / 1_000).max(0) as u64));
                Line::from(vec![
                    Span::styled(format!("{at} "), Style::new().fg(theme::DIM)),
                    Span::styled(format!("{} ", r.severity_text), severity_style(r.severity_number)),
                    Span::raw(body_text(&r.body)),
                ])
            })
            .collect();
        frame.render_widget(Paragraph::new(lines).block(logs_block), bottom);
    }

    fn draw_attribution(&self, frame: &mut Frame, area: Rect) {
        let Some(view) = &self.view else { return };
        let total = view.path.segments().iter().map(|s| s.end_us - s.start_us).sum::<u64>().max(1);
        let added: u64 = seismo_analysis::critical_fault_us(&view.impacts);
        let title = format!(
            "Fault attribution · {} added {} to this request ({:.0}% of its critical path)",
            format::count(view.impacts.len(), "fault"),
            format::micros(added),
            added as f64 * 100.0 / total as f64
        );
        let mut lines = Vec::new();
        for f in &view.impacts {
            let who = [
                f.proxy.as_ref().map(|p| format!("proxy {p}")),
                f.toxic.as_ref().map(|t| format!("toxic {t}")),
                f.experiment.as_ref().map(|e| format!("experiment {e}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            let hop = if f.target_service.is_empty() {
                format!("{}: {}", f.victim_service, f.victim_operation)
            } else {
                format!("{}: {} → {}", f.victim_service, f.victim_operation, f.target_service)
            };
            let critical = if f.on_critical_path() {
                Span::styled(
                    format!("ON critical path: +{}", format::micros(f.critical_us)),
                    Style::new().fg(theme::CRITICAL).add_modifier(Modifier::BOLD),
                )
            } else {
                Span::styled("off the critical path: +0", Style::new().fg(theme::DIM))
            };
            let mut spans = vec![
                Span::styled(format!("⚡ {:<12}", f.kind), Style::new().fg(theme::FAULT).add_modifier(Modifier::BOLD)),
                Span::raw(format!(" {who} · hit {hop} · held it {} · ", format::micros(f.added_us))),
                critical,
            ];
            if f.error {
                let why = f.message.as_deref().map_or(String::new(), |m| format!(" ({m})"));
                spans.push(Span::styled(format!(" · failed the request{why}"), Style::new().fg(theme::ERROR)));
            }
            lines.push(Line::from(spans));
        }
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block(title, &Load::Ready)), area);
    }
}

impl Component for TraceScreen {
    fn command(&mut self, command: Command) -> Effect {
        if self.selection.apply(command, self.rows.len()) {
            return Effect::none();
        }
        match command {
            Command::ToggleCollapse => {
                if let Some(row) = self.rows.get(self.selection.selected).copied() {
                    if row.has_children && !self.collapsed.remove(&row.span) {
                        self.collapsed.insert(row.span);
                    }
                    self.rebuild_rows();
                }
            }
            Command::ExpandAll => {
                self.collapsed.clear();
                self.rebuild_rows();
            }
            Command::NextFault => {
                self.select_next(|v, span| v.fault[span]);
            }
            _ => {}
        }
        Effect::none()
    }

    fn search(&mut self, text: &str) -> Effect {
        self.search = text.trim().to_string();
        let needle = self.search.to_lowercase();
        if !needle.is_empty() {
            self.select_next(|v, span| v.label(span).to_lowercase().contains(&needle));
        }
        Effect::none()
    }

    fn search_text(&self) -> String {
        self.search.clone()
    }

    fn refresh(&mut self) -> Vec<Request> {
        match self.trace_id.clone() {
            Some(id) => {
                self.load = Load::Loading;
                self.logs_load = Load::Loading;
                vec![Request::Trace(id.clone()), Request::TraceLogs(id)]
            }
            None => Vec::new(),
        }
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect) {
        let Some(id) = self.trace_id.clone() else {
            let text = "no trace open: Enter on a trace in the trace list, or :trace ID";
            frame.render_widget(Paragraph::new(text).block(block("Trace", &Load::Ready)), area);
            return;
        };
        let empty = self.view.is_none();
        if empty {
            let block = block(format!("Trace {id}"), &self.load);
            draw_state(frame, area, block, &self.load, true, "");
            return;
        }
        let view = self.view.as_ref().expect("checked");
        let root = view.path.root().or_else(|| view.tree.roots().first().copied());
        let errors = view.error.iter().filter(|e| **e).count();
        let header = format!(
            "Trace {} · {} · {} UTC · {} · {} · {} · {}",
            view.trace.trace_id,
            root.map_or(String::new(), |r| view.label(r)),
            format::date_time(view.window.start_us),
            format::micros(view.window.duration_us),
            format::count(view.trace.spans.len(), "span"),
            format::count(errors, "error"),
            format::count(view.impacts.len(), "fault")
        );
        let attribution_h =
            if view.impacts.is_empty() { 0 } else { (view.impacts.len() as u16 * 2 + 2).min(area.height / 3) };
        let [head, main, bottom] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(attribution_h)])
                .areas(area);
        frame.render_widget(Line::styled(header, Style::new().add_modifier(Modifier::BOLD)), head);
        let [left, right] = Layout::horizontal([Constraint::Percentage(64), Constraint::Percentage(36)]).areas(main);
        self.draw_waterfall(frame, left);
        self.draw_detail(frame, right);
        if attribution_h > 0 {
            self.draw_attribution(frame, bottom);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_same_trace_id_ignores_leading_zeros_and_case() {
        assert!(same_trace_id("00000000000000004bf92f3577b34da6", "4bf92f3577b34da6"));
        assert!(same_trace_id("4BF92F", "4bf92f"));
        assert!(!same_trace_id("4bf92f", "4bf92e"));
    }
}
