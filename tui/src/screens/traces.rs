//! The Traces screen: a trace search (service, operation, tags, duration
//! range, errors only, touched by a fault), sortable, with errors and
//! faulted traces marked. Enter opens the trace.

use std::collections::BTreeMap;
use std::time::Duration;

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;
use seismo_client::api::jaeger::Trace;
use seismo_client::api::v3::TraceSummary;

use super::{block, draw_state, theme, Component, Effect, Load, Selection};
use crate::action::{Action, Command};
use crate::faults::CHAOS_SERVICE;
use crate::fetch::Request;
use crate::format;

/// What the trace list searches for. Typed after `/` as words:
/// `checkout op:"POST /pay" min:100ms max:2s http.status_code=503 errors faults limit:50`
/// (a bare word is the service).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceFilter {
    /// Only this service's traces (all services when absent).
    pub service: Option<String>,
    /// Only traces with a span of this name.
    pub operation: Option<String>,
    /// Only traces with a span holding all these tags.
    pub tags: BTreeMap<String, String>,
    /// Only traces with a span at least this long.
    pub min_duration: Option<Duration>,
    /// Only traces with a span at most this long.
    pub max_duration: Option<Duration>,
    /// Only traces with an error.
    pub errors_only: bool,
    /// Only traces a chaos fault touched.
    pub faults_only: bool,
    /// At most this many traces.
    pub limit: Option<usize>,
}

impl TraceFilter {
    /// Parses the `/` search text.
    ///
    /// # Errors
    /// The word that is not understood.
    pub fn parse(text: &str) -> Result<TraceFilter, String> {
        let mut f = TraceFilter::default();
        for word in words(text) {
            if let Some(v) = word.strip_prefix("op:") {
                f.operation = Some(v.to_string());
            } else if let Some(v) = word.strip_prefix("service:") {
                f.service = Some(v.to_string());
            } else if let Some(v) = word.strip_prefix("min:") {
                f.min_duration = Some(format::parse_duration(v).ok_or(format!("bad duration {v:?}"))?);
            } else if let Some(v) = word.strip_prefix("max:") {
                f.max_duration = Some(format::parse_duration(v).ok_or(format!("bad duration {v:?}"))?);
            } else if let Some(v) = word.strip_prefix("limit:") {
                f.limit = Some(v.parse().map_err(|_| format!("bad limit {v:?}"))?);
            } else if word == "errors" || word == "error" {
                f.errors_only = true;
            } else if word == "faults" || word == "fault" {
                f.faults_only = true;
            } else if let Some((k, v)) = word.split_once('=') {
                f.tags.insert(k.to_string(), v.to_string());
            } else if f.service.is_none() {
                f.service = Some(word);
            } else {
                return Err(format!("what is {word:?}? (service, op:, min:, max:, k=v, errors, faults, limit:)"));
            }
        }
        Ok(f)
    }

    /// The filter written back as search text (what `/` starts from).
    pub fn text(&self) -> String {
        let quote = |s: &str| if s.contains(' ') { format!("\"{s}\"") } else { s.to_string() };
        let mut out = Vec::new();
        if let Some(s) = &self.service {
            out.push(quote(s));
        }
        if let Some(op) = &self.operation {
            out.push(format!("op:{}", quote(op)));
        }
        for (k, v) in &self.tags {
            out.push(quote(&format!("{k}={v}")));
        }
        if let Some(d) = self.min_duration {
            out.push(format!("min:{}", format::micros(d.as_micros() as u64)));
        }
        if let Some(d) = self.max_duration {
            out.push(format!("max:{}", format::micros(d.as_micros() as u64)));
        }
        if self.errors_only {
            out.push("errors".into());
        }
        if self.faults_only {
            out.push("faults".into());
        }
        if let Some(l) = self.limit {
            out.push(format!("limit:{l}"));
        }
        out.join(" ")
    }
}

/// Whitespace-separated words; double quotes group (`op:"GET /"`).
fn words(text: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One trace in the list.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRow {
    /// The trace id (32 hex digits, or Jaeger's 16).
    pub trace_id: String,
    /// First span start, µs since the epoch.
    pub start_us: u64,
    /// First start to last end, µs.
    pub duration_us: u64,
    /// The root span's service.
    pub root_service: String,
    /// The root span's name.
    pub root_operation: String,
    /// Spans.
    pub spans: usize,
    /// Spans with status ERROR.
    pub errors: usize,
    /// Whether a chaos fault span is in it.
    pub faulted: bool,
    /// The services in it, sorted.
    pub services: Vec<String>,
}

impl TraceRow {
    /// From an api_v3 trace summary.
    pub fn from_summary(s: &TraceSummary) -> TraceRow {
        let start = (s.min_start_time_unix_nano / 1_000).max(0) as u64;
        let end = (s.max_end_time_unix_nano / 1_000).max(0) as u64;
        TraceRow {
            trace_id: s.trace_id.clone(),
            start_us: start,
            duration_us: end.saturating_sub(start),
            root_service: s.root_service_name.clone(),
            root_operation: s.root_operation_name.clone(),
            spans: s.span_count,
            errors: s.error_span_count,
            faulted: s.services.iter().any(|x| x.name == CHAOS_SERVICE),
            services: s.services.iter().map(|x| x.name.clone()).collect(),
        }
    }

    /// From a whole trace (Jaeger's model).
    pub fn from_trace(t: &Trace) -> TraceRow {
        let o = seismo_analysis::summarize(t, &seismo_analysis::SpanTree::new(t));
        TraceRow {
            trace_id: o.trace_id,
            start_us: o.start_us,
            duration_us: o.duration_us,
            root_service: o.root_service,
            root_operation: o.root_operation,
            spans: o.span_count,
            errors: o.error_count,
            faulted: o.fault_count > 0,
            services: o.services.into_iter().collect(),
        }
    }
}

/// The list's order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    /// Newest first.
    #[default]
    Newest,
    /// Longest first.
    Slowest,
    /// Most errors first.
    Errors,
    /// Most spans first.
    Spans,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Newest => Sort::Slowest,
            Sort::Slowest => Sort::Errors,
            Sort::Errors => Sort::Spans,
            Sort::Spans => Sort::Newest,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Slowest => "slowest",
            Sort::Errors => "errors",
            Sort::Spans => "spans",
        }
    }

    /// Sorts `rows` in this order (ties: newest first, then by id).
    pub fn apply(self, rows: &mut [TraceRow]) {
        rows.sort_by(|a, b| {
            let key = match self {
                Sort::Newest => std::cmp::Ordering::Equal,
                Sort::Slowest => b.duration_us.cmp(&a.duration_us),
                Sort::Errors => b.errors.cmp(&a.errors),
                Sort::Spans => b.spans.cmp(&a.spans),
            };
            key.then(b.start_us.cmp(&a.start_us)).then_with(|| a.trace_id.cmp(&b.trace_id))
        });
    }
}

/// The Traces screen.
#[derive(Debug, Default)]
pub struct TracesScreen {
    /// The search.
    pub filter: TraceFilter,
    /// Set when the list shows given trace ids (from the Chaos screen) rather than a search.
    pub ids: Option<Vec<String>>,
    rows: Vec<TraceRow>,
    sort: Sort,
    selection: Selection,
    load: Load,
    /// A search that did not parse.
    problem: Option<String>,
}

impl TracesScreen {
    /// Takes a fetch's rows.
    pub fn loaded(&mut self, mut rows: Vec<TraceRow>) {
        self.sort.apply(&mut rows);
        self.rows = rows;
        self.load = Load::Ready;
    }

    /// Takes a fetch's failure.
    pub fn failed(&mut self, error: String) {
        self.load = Load::Failed(error);
    }

    /// Searches `filter` from now on.
    pub fn set_filter(&mut self, filter: TraceFilter) -> Vec<Request> {
        self.filter = filter;
        self.ids = None;
        self.selection = Selection::default();
        self.refresh()
    }

    /// Lists exactly these traces from now on.
    pub fn set_ids(&mut self, ids: Vec<String>) -> Vec<Request> {
        self.ids = Some(ids);
        self.selection = Selection::default();
        self.refresh()
    }

    fn title(&self) -> String {
        let what = match &self.ids {
            Some(ids) => format!("{} traces faults touched", ids.len()),
            None if self.filter == TraceFilter::default() => "all services".to_string(),
            None => self.filter.text(),
        };
        format!("Traces · {what} · sort: {} · {} found", self.sort.name(), self.rows.len())
    }
}

impl Component for TracesScreen {
    fn command(&mut self, command: Command) -> Effect {
        if self.selection.apply(command, self.rows.len()) {
            return Effect::none();
        }
        match command {
            Command::Enter => match self.rows.get(self.selection.selected) {
                Some(row) => Effect::then(Action::OpenTrace(row.trace_id.clone())),
                None => Effect::none(),
            },
            Command::CycleSort => {
                self.sort = self.sort.next();
                self.sort.apply(&mut self.rows);
                Effect::none()
            }
            Command::ToggleErrors => {
                let mut f = self.filter.clone();
                f.errors_only = !f.errors_only;
                Effect { requests: self.set_filter(f), then: None }
            }
            Command::ToggleFaults => {
                let mut f = self.filter.clone();
                f.faults_only = !f.faults_only;
                Effect { requests: self.set_filter(f), then: None }
            }
            _ => Effect::none(),
        }
    }

    fn search(&mut self, text: &str) -> Effect {
        match TraceFilter::parse(text) {
            Ok(f) => {
                self.problem = None;
                Effect { requests: self.set_filter(f), then: None }
            }
            Err(e) => {
                self.problem = Some(e);
                Effect::none()
            }
        }
    }

    fn search_text(&self) -> String {
        self.filter.text()
    }

    fn refresh(&mut self) -> Vec<Request> {
        self.load = Load::Loading;
        match &self.ids {
            Some(ids) => vec![Request::TraceIds(ids.clone())],
            None => vec![Request::Traces(self.filter.clone())],
        }
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect) {
        let mut title = self.title();
        if let Some(p) = &self.problem {
            title = format!("{title} · {p}");
        }
        let block = block(title, &self.load);
        if draw_state(frame, area, block.clone(), &self.load, self.rows.is_empty(), "no trace matches") {
            return;
        }
        let height = area.height.saturating_sub(3) as usize;
        let visible = self.selection.fit(self.rows.len(), height);
        let rows = self.rows[visible.clone()].iter().zip(visible).map(|(r, i)| {
            let mark = if r.faulted {
                Span::styled("FAULT", Style::new().fg(theme::FAULT).add_modifier(Modifier::BOLD))
            } else if r.errors > 0 {
                Span::styled("ERR", Style::new().fg(theme::ERROR).add_modifier(Modifier::BOLD))
            } else {
                Span::raw("")
            };
            let errors = if r.errors > 0 {
                Span::styled(r.errors.to_string(), Style::new().fg(theme::ERROR))
            } else {
                Span::raw("0")
            };
            let row = Row::new(vec![
                Cell::from(mark),
                Cell::from(format::clock(r.start_us)),
                Cell::from(Line::from(format::micros(r.duration_us)).right_aligned()),
                Cell::from(Line::from(r.spans.to_string()).right_aligned()),
                Cell::from(Line::from(errors).right_aligned()),
                Cell::from(format!("{}: {}", r.root_service, r.root_operation)),
                Cell::from(r.trace_id.clone()),
            ]);
            if i == self.selection.selected {
                row.style(theme::selected())
            } else {
                row
            }
        });
        let header =
            Row::new(["", "start (UTC)", "duration", "spans", "errors", "root", "trace id"]).style(theme::header());
        let widths = [
            Constraint::Length(5),
            Constraint::Length(12),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Fill(1),
            Constraint::Length(32),
        ];
        frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_every_kind_of_word() {
        let f = TraceFilter::parse(
            r#"checkout op:"POST /pay" min:100ms max:2s http.status_code=503 errors faults limit:50"#,
        )
        .unwrap();
        assert_eq!(f.service.as_deref(), Some("checkout"));
        assert_eq!(f.operation.as_deref(), Some("POST /pay"));
        assert_eq!(f.min_duration, Some(Duration::from_millis(100)));
        assert_eq!(f.max_duration, Some(Duration::from_secs(2)));
        assert_eq!(f.tags.get("http.status_code").map(String::as_str), Some("503"));
        assert!(f.errors_only && f.faults_only);
        assert_eq!(f.limit, Some(50));
        assert_eq!(TraceFilter::parse(&f.text()).unwrap(), f, "text() reads back as the same filter");
    }

    #[test]
    fn test_parse_refuses_what_it_does_not_know() {
        assert!(TraceFilter::parse("min:soon").unwrap_err().contains("soon"));
        assert!(TraceFilter::parse("a b").unwrap_err().contains("\"b\""));
        assert_eq!(TraceFilter::parse("  ").unwrap(), TraceFilter::default());
    }

    fn row(id: &str, start: u64, duration: u64, errors: usize, spans: usize) -> TraceRow {
        TraceRow {
            trace_id: id.into(),
            start_us: start,
            duration_us: duration,
            root_service: String::new(),
            root_operation: String::new(),
            spans,
            errors,
            faulted: false,
            services: Vec::new(),
        }
    }

    #[test]
    fn test_sort_orders() {
        let mut rows = vec![row("a", 1, 50, 0, 3), row("b", 3, 10, 2, 1), row("c", 2, 90, 1, 9)];
        let ids = |rows: &[TraceRow]| rows.iter().map(|r| r.trace_id.clone()).collect::<String>();
        Sort::Newest.apply(&mut rows);
        assert_eq!(ids(&rows), "bca");
        Sort::Slowest.apply(&mut rows);
        assert_eq!(ids(&rows), "cab");
        Sort::Errors.apply(&mut rows);
        assert_eq!(ids(&rows), "bca");
        Sort::Spans.apply(&mut rows);
        assert_eq!(ids(&rows), "cab");
    }
}
