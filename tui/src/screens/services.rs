//! The Services screen: per service request rate, error rate, p50/p99 and
//! sparklines over the window; the dependency edges with call counts and
//! the callee's error rate; and the dashboard's panels beneath.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::{block, draw_state, theme, Component, Effect, Load, Selection};
use crate::action::{Action, Command};
use crate::dashboard::{Dashboard, Panel, PanelQuery, StatsMetric, View};
use crate::fetch::{PanelData, Request, ServicesData};
use crate::format;

/// A sparkline as text: one of `▁▂▃▄▅▆▇█` per value, scaled to the
/// largest; zeros are a space-like `▁` only when the series is not all zero.
pub fn spark(values: &[f64]) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    values
        .iter()
        .map(|v| {
            if max <= 0.0 || !v.is_finite() || *v <= 0.0 {
                if max <= 0.0 {
                    ' '
                } else {
                    LEVELS[0]
                }
            } else {
                LEVELS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

fn spark_u64(values: &[u64]) -> String {
    spark(&values.iter().map(|v| *v as f64).collect::<Vec<_>>())
}

/// A horizontal bar of `value / max` of `width` cells.
pub fn bar(value: f64, max: f64, width: usize) -> String {
    let n = if max > 0.0 && value.is_finite() { ((value / max) * width as f64).round() as usize } else { 0 };
    "█".repeat(n.min(width))
}

/// The Services screen.
#[derive(Debug)]
pub struct ServicesScreen {
    data: ServicesData,
    load: Load,
    filter: String,
    selection: Selection,
    dashboard: Dashboard,
    panels: Vec<(Load, Option<PanelData>)>,
}

impl ServicesScreen {
    /// A screen drawing `dashboard` under the service table.
    pub fn new(dashboard: Dashboard) -> Self {
        let panels = vec![(Load::Idle, None); dashboard.panels.len()];
        ServicesScreen {
            data: ServicesData::default(),
            load: Load::Idle,
            filter: String::new(),
            selection: Selection::default(),
            dashboard,
            panels,
        }
    }

    /// Takes the stats.
    pub fn loaded(&mut self, data: ServicesData) {
        self.data = data;
        self.load = Load::Ready;
    }

    /// Takes the stats' failure.
    pub fn failed(&mut self, error: String) {
        self.load = Load::Failed(error);
    }

    /// Takes panel `i`'s data or failure.
    pub fn panel(&mut self, i: usize, result: Result<PanelData, String>) {
        if let Some(slot) = self.panels.get_mut(i) {
            *slot = match result {
                Ok(d) => (Load::Ready, Some(d)),
                Err(e) => (Load::Failed(e), slot.1.take()),
            };
        }
    }

    fn visible(&self) -> Vec<&crate::fetch::ServiceRow> {
        self.data.rows.iter().filter(|r| r.name.contains(&self.filter)).collect()
    }

    fn draw_table(&mut self, frame: &mut Frame, area: Rect) {
        let window_us = self.data.bucket_us * self.data.rows.first().map_or(0, |r| r.requests_series.len()) as u64;
        let window = if window_us > 0 { format!(" · last {}", format::micros(window_us)) } else { String::new() };
        let title = if self.filter.is_empty() {
            format!("Services{window}")
        } else {
            format!("Services matching {:?}{window}", self.filter)
        };
        let block = block(title, &self.load);
        let rows_len = self.visible().len();
        if draw_state(frame, area, block.clone(), &self.load, rows_len == 0, "no service has sent spans in the window")
        {
            return;
        }
        let height = area.height.saturating_sub(3) as usize;
        let range = self.selection.fit(rows_len, height);
        let selected = self.selection.selected;
        let rows: Vec<Row> = self.visible()[range.clone()]
            .iter()
            .zip(range)
            .map(|(r, i)| {
                let err_style = if r.error_rate > 0.0 { Style::new().fg(theme::ERROR) } else { Style::new() };
                let row = Row::new(vec![
                    Cell::from(r.name.clone()),
                    Cell::from(Line::from(format::per_second(r.rate)).right_aligned()),
                    Cell::from(Span::styled(spark_u64(&r.requests_series), Style::new().fg(theme::BAR))),
                    Cell::from(Line::from(Span::styled(format::percent(r.error_rate), err_style)).right_aligned()),
                    Cell::from(Span::styled(spark_u64(&r.errors_series), Style::new().fg(theme::ERROR))),
                    Cell::from(Line::from(format::millis(r.p50_ms)).right_aligned()),
                    Cell::from(Line::from(format::millis(r.p99_ms)).right_aligned()),
                    Cell::from(Span::styled(spark_u64(&r.p99_series), Style::new().fg(theme::CRITICAL))),
                ]);
                if i == selected {
                    row.style(theme::selected())
                } else {
                    row
                }
            })
            .collect();
        let n = self.data.rows.first().map_or(12, |r| r.requests_series.len()).max(4) as u16;
        let widths = [
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(n),
            Constraint::Length(6),
            Constraint::Length(n),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(n),
        ];
        let header = Row::new(["service", "req/s", "requests", "err%", "errors", "p50", "p99", "p99 trend"])
            .style(theme::header());
        frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
    }

    fn draw_edges(&self, frame: &mut Frame, area: Rect) {
        let block = block("Dependencies", &self.load);
        if draw_state(frame, area, block.clone(), &self.load, self.data.edges.is_empty(), "no calls between services") {
            return;
        }
        let rows = self.data.edges.iter().map(|e| {
            let rate = e.child_error_rate.map_or("-".to_string(), format::percent);
            let style =
                if e.child_error_rate.unwrap_or(0.0) > 0.0 { Style::new().fg(theme::ERROR) } else { Style::new() };
            Row::new(vec![
                Cell::from(format!("{} → {}", e.parent, e.child)),
                Cell::from(Line::from(e.calls.to_string()).right_aligned()),
                Cell::from(Line::from(Span::styled(rate, style)).right_aligned()),
            ])
        });
        let header = Row::new(["caller → callee", "calls", "err%"]).style(theme::header());
        let widths = [Constraint::Fill(1), Constraint::Length(7), Constraint::Length(6)];
        frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
    }

    fn draw_panel(&self, frame: &mut Frame, area: Rect, panel: &Panel, load: &Load, data: Option<&PanelData>) {
        let (load, empty) = match panel.query {
            // Stats panels draw from the screen's own data.
            PanelQuery::Stats(_) => (&self.load, self.data.rows.is_empty()),
            _ => (load, data.is_none_or(panel_data_empty)),
        };
        let block = block(panel.title.clone(), load);
        if draw_state(frame, area, block.clone(), load, empty, "no data in the window") {
            return;
        }
        let width = area.width.saturating_sub(2) as usize;
        let label_w = (width / 3).clamp(6, 28);
        let lines: Vec<Line> = match (&panel.query, data) {
            (PanelQuery::Stats(metric), _) => self.stats_lines(*metric, panel.view, width, label_w),
            (PanelQuery::PromQl(_), Some(PanelData::Series(series))) => {
                series_lines(series, panel.view, width, label_w)
            }
            (PanelQuery::Traces(_), Some(PanelData::Traces(rows))) => {
                let max = rows.iter().map(|r| r.duration_us).max().unwrap_or(0) as f64;
                rows.iter()
                    .map(|r| {
                        let name = format::fit(&format!("{}: {}", r.root_service, r.root_operation), label_w);
                        let mark = if r.faulted {
                            "FAULT"
                        } else if r.errors > 0 {
                            "ERR"
                        } else {
                            ""
                        };
                        let body = match panel.view {
                            View::Bar => bar(r.duration_us as f64, max, width.saturating_sub(label_w + 16)),
                            _ => format::clock(r.start_us),
                        };
                        Line::from(vec![
                            Span::raw(format!("{name:<label_w$} ")),
                            Span::styled(
                                format!("{mark:<6}"),
                                Style::new().fg(if r.faulted { theme::FAULT } else { theme::ERROR }),
                            ),
                            Span::raw(format!("{:>8} ", format::micros(r.duration_us))),
                            Span::styled(body, Style::new().fg(theme::BAR)),
                        ])
                    })
                    .collect()
            }
            (PanelQuery::Logs(_), Some(PanelData::Logs(records))) => records
                .iter()
                .map(|r| {
                    let at = r.time_ns().map_or(String::new(), |ns| format::clock((ns / 1_000).max(0) as u64));
                    Line::from(vec![
                        Span::styled(format!("{at} "), Style::new().fg(theme::DIM)),
                        Span::raw(format!("{:<5} ", format::fit(&r.severity_text, 5))),
                        Span::raw(format!("{} ", r.service_name)),
                        Span::raw(crate::screens::logs::body_text(&r.body)),
                    ])
                })
                .collect(),
            _ => Vec::new(),
        };
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn stats_lines(&self, metric: StatsMetric, view: View, width: usize, label_w: usize) -> Vec<Line<'static>> {
        let value = |r: &crate::fetch::ServiceRow| match metric {
            StatsMetric::Rate => r.rate,
            StatsMetric::ErrorRate => r.error_rate,
            StatsMetric::P50 => r.p50_ms.unwrap_or(0.0),
            StatsMetric::P99 => r.p99_ms.unwrap_or(0.0),
        };
        let shown = |v: f64| match metric {
            StatsMetric::Rate => format::per_second(v),
            StatsMetric::ErrorRate => format::percent(v),
            StatsMetric::P50 | StatsMetric::P99 => format::millis(Some(v)),
        };
        let rows: Vec<_> = self.data.rows.iter().filter(|r| r.requests > 0).collect();
        let max = rows.iter().map(|r| value(r)).fold(0.0, f64::max);
        rows.iter()
            .map(|r| {
                let v = value(r);
                let body = match view {
                    View::Bar => bar(v, max, width.saturating_sub(label_w + 10)),
                    View::Sparkline => match metric {
                        StatsMetric::Rate => spark_u64(&r.requests_series),
                        StatsMetric::ErrorRate => spark(
                            &r.errors_series
                                .iter()
                                .zip(&r.requests_series)
                                .map(|(e, n)| if *n == 0 { 0.0 } else { *e as f64 / *n as f64 })
                                .collect::<Vec<_>>(),
                        ),
                        StatsMetric::P50 | StatsMetric::P99 => spark_u64(&r.p99_series),
                    },
                    View::Table => String::new(),
                };
                Line::from(vec![
                    Span::raw(format!("{:<label_w$} ", format::fit(&r.name, label_w))),
                    Span::raw(format!("{:>8} ", shown(v))),
                    Span::styled(body, Style::new().fg(theme::BAR)),
                ])
            })
            .collect()
    }
}

fn panel_data_empty(d: &PanelData) -> bool {
    match d {
        PanelData::Stats => false,
        PanelData::Series(s) => s.is_empty(),
        PanelData::Traces(t) => t.is_empty(),
        PanelData::Logs(l) => l.is_empty(),
    }
}

fn series_lines(series: &[(String, Vec<f64>)], view: View, width: usize, label_w: usize) -> Vec<Line<'static>> {
    let last = |v: &Vec<f64>| v.iter().rev().find(|x| x.is_finite()).copied().unwrap_or(0.0);
    let max = series.iter().map(|(_, v)| last(v)).fold(0.0, f64::max);
    series
        .iter()
        .map(|(name, values)| {
            let body = match view {
                View::Sparkline => {
                    let keep = width.saturating_sub(label_w + 10).max(1);
                    spark(&values[values.len().saturating_sub(keep)..])
                }
                View::Bar => bar(last(values), max, width.saturating_sub(label_w + 10)),
                View::Table => String::new(),
            };
            Line::from(vec![
                Span::raw(format!("{:<label_w$} ", format::fit(name, label_w))),
                Span::raw(format!("{:>8.3} ", last(values))),
                Span::styled(body, Style::new().fg(theme::BAR)),
            ])
        })
        .collect()
}

impl Component for ServicesScreen {
    fn command(&mut self, command: Command) -> Effect {
        let len = self.visible().len();
        if self.selection.apply(command, len) {
            return Effect::none();
        }
        match command {
            Command::Enter => match self.visible().get(self.selection.selected) {
                Some(r) => Effect::then(Action::ShowService(r.name.clone())),
                None => Effect::none(),
            },
            _ => Effect::none(),
        }
    }

    fn search(&mut self, text: &str) -> Effect {
        self.filter = text.trim().to_string();
        self.selection = Selection::default();
        Effect::none()
    }

    fn search_text(&self) -> String {
        self.filter.clone()
    }

    fn refresh(&mut self) -> Vec<Request> {
        // A live refresh keeps what is shown (no flicker); only missing or
        // failed data says it is loading.
        if self.load != Load::Ready {
            self.load = Load::Loading;
        }
        let mut requests = vec![Request::Services];
        for (i, panel) in self.dashboard.panels.iter().enumerate() {
            if !matches!(panel.query, PanelQuery::Stats(_)) {
                if self.panels[i].0 != Load::Ready {
                    self.panels[i].0 = Load::Loading;
                }
                requests.push(Request::Panel(i, panel.clone()));
            }
        }
        requests
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect) {
        let services_h = (self.data.rows.len() as u16 + 3).clamp(5, (area.height / 2).max(5));
        let [top, bottom] = Layout::vertical([Constraint::Length(services_h), Constraint::Fill(1)]).areas(area);
        let [table, edges] = Layout::horizontal([Constraint::Percentage(68), Constraint::Percentage(32)]).areas(top);
        self.draw_table(frame, table);
        self.draw_edges(frame, edges);
        let n = self.dashboard.panels.len();
        if n == 0 || bottom.height < 3 {
            return;
        }
        let rows = n.div_ceil(2);
        let row_areas = Layout::vertical(vec![Constraint::Fill(1); rows]).split(bottom);
        for (r, row_area) in row_areas.iter().enumerate() {
            let cells = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).split(*row_area);
            for c in 0..2 {
                let i = r * 2 + c;
                let Some(panel) = self.dashboard.panels.get(i) else { continue };
                let (load, data) = &self.panels[i];
                let area = if i + 1 == n && c == 0 { *row_area } else { cells[c] };
                self.draw_panel(frame, area, panel, load, data.as_ref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_spark_scales_to_the_largest() {
        assert_eq!(spark(&[0.0, 1.0, 2.0, 4.0, 8.0]), "▁▂▃▅█");
        assert_eq!(spark(&[0.0, 0.0]), "  ", "all zero: blank, not a flat line");
        assert_eq!(spark(&[f64::NAN, 3.0]), "▁█");
    }

    #[test]
    fn test_bar_width() {
        assert_eq!(bar(5.0, 10.0, 8), "████");
        assert_eq!(bar(10.0, 10.0, 8).chars().count(), 8);
        assert_eq!(bar(1.0, 0.0, 8), "");
    }
}
