//! The Logs screen: full-text search (tantivy syntax, as the API takes it)
//! and a live tail that refetches the newest records on every refresh
//! tick. Enter on a record opens its trace.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;
use seismo_client::api::logs::LogRecord;

use super::{block, draw_state, theme, Component, Effect, Load, Selection};
use crate::action::{Action, Command};
use crate::fetch::Request;
use crate::format;

/// A log body as one line of text: strings as they are, anything else as JSON.
pub fn body_text(body: &serde_json::Value) -> String {
    match body {
        serde_json::Value::String(s) => s.replace('\n', " ⏎ "),
        other => other.to_string(),
    }
}

/// The colour of a severity number (OTLP: 17+ error, 13+ warn).
pub fn severity_style(number: i32) -> Style {
    match number {
        17.. => Style::new().fg(theme::ERROR).add_modifier(Modifier::BOLD),
        13..=16 => Style::new().fg(theme::CRITICAL),
        _ => Style::new(),
    }
}

/// The Logs screen.
#[derive(Debug, Default)]
pub struct LogsScreen {
    query: String,
    records: Vec<LogRecord>,
    selection: Selection,
    load: Load,
    /// Whether every refresh tick refetches.
    pub tail: bool,
}

impl LogsScreen {
    /// Takes a fetch's records (dropped if they answer an older query).
    pub fn loaded(&mut self, query: &str, records: Vec<LogRecord>) {
        if query != self.query {
            return;
        }
        self.records = records;
        self.load = Load::Ready;
    }

    /// Takes a fetch's failure.
    pub fn failed(&mut self, error: String) {
        self.load = Load::Failed(error);
    }

    /// Searches `query` from now on.
    pub fn set_query(&mut self, query: &str) -> Vec<Request> {
        self.query = query.trim().to_string();
        self.selection = Selection::default();
        self.refresh()
    }
}

impl Component for LogsScreen {
    fn command(&mut self, command: Command) -> Effect {
        if self.selection.apply(command, self.records.len()) {
            return Effect::none();
        }
        match command {
            Command::Enter => match self.records.get(self.selection.selected).and_then(|r| r.trace_id.clone()) {
                Some(id) => Effect::then(Action::OpenTrace(id)),
                None => Effect::none(),
            },
            Command::ToggleTail => {
                self.tail = !self.tail;
                if self.tail {
                    Effect { requests: self.refresh(), then: None }
                } else {
                    Effect::none()
                }
            }
            _ => Effect::none(),
        }
    }

    fn search(&mut self, text: &str) -> Effect {
        Effect { requests: self.set_query(text), then: None }
    }

    fn search_text(&self) -> String {
        self.query.clone()
    }

    fn refresh(&mut self) -> Vec<Request> {
        if self.load != Load::Ready {
            self.load = Load::Loading;
        }
        vec![Request::Logs(self.query.clone())]
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect) {
        let what = if self.query.is_empty() { "newest".to_string() } else { format!("matching {:?}", self.query) };
        let tail = if self.tail { " · LIVE TAIL" } else { "" };
        let block = block(format!("Logs · {what} · {} records{tail}", self.records.len()), &self.load);
        if draw_state(frame, area, block.clone(), &self.load, self.records.is_empty(), "no log record matches") {
            return;
        }
        let height = area.height.saturating_sub(3) as usize;
        let visible = self.selection.fit(self.records.len(), height);
        let rows = self.records[visible.clone()].iter().zip(visible).map(|(r, i)| {
            let at = r.time_ns().map_or(String::new(), |ns| format::clock((ns / 1_000).max(0) as u64));
            let severity =
                if r.severity_text.is_empty() { r.severity_number.to_string() } else { r.severity_text.clone() };
            let trace = r.trace_id.as_deref().map_or(String::new(), |t| t.chars().take(8).collect());
            let row = Row::new(vec![
                Cell::from(at),
                Cell::from(Span::styled(severity, severity_style(r.severity_number))),
                Cell::from(r.service_name.clone()),
                Cell::from(Span::styled(trace, Style::new().fg(theme::DIM))),
                Cell::from(body_text(&r.body)),
            ]);
            if i == self.selection.selected {
                row.style(theme::selected())
            } else {
                row
            }
        });
        let header = Row::new(["time (UTC)", "level", "service", "trace", "body"]).style(theme::header());
        let widths = [
            Constraint::Length(12),
            Constraint::Length(5),
            Constraint::Length(14),
            Constraint::Length(8),
            Constraint::Fill(1),
        ];
        frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
    }
}
