//! The Chaos screen: the agent's proxies and toxics (live), the fault
//! spans of the window, and the affected services' error rate and p99 with
//! the buckets that held a fault marked. Enter on a fault lists the traces
//! that the same toxic touched.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;
use seismo_client::api::toxiproxy::Toxic;

use super::services::spark;
use super::{block, draw_state, theme, Component, Effect, Load, Selection};
use crate::action::{Action, Command};
use crate::faults::FaultEvent;
use crate::fetch::{ChaosData, Request};
use crate::format;

/// A toxic in a few words: `pay_503 http_abort↓ 50% status=503 path_prefix=/pay`.
pub fn toxic_text(t: &Toxic) -> String {
    let arrow = match t.stream {
        seismo_client::api::toxiproxy::Stream::Upstream => "↑",
        seismo_client::api::toxiproxy::Stream::Downstream => "↓",
    };
    let attrs = serde_json::to_value(&t.attributes).ok();
    let attrs: Vec<String> = attrs
        .as_ref()
        .and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                // Matchers left empty match everything: not worth a word.
                .filter(|(_, v)| !(v.is_null() || v.as_str() == Some("")))
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
                .collect()
        })
        .unwrap_or_default();
    let exp = t.experiment.as_deref().map_or(String::new(), |e| format!(" exp={e}"));
    format!("{} {}{arrow} {:.0}% {}{exp}", t.name, t.kind, t.toxicity * 100.0, attrs.join(" "))
}

/// What a fault cost its request: the time it added on the critical path, and a failure.
fn cost(f: &FaultEvent) -> Span<'static> {
    let added = if f.critical_us > 0 { format!("+{}", format::micros(f.critical_us)) } else { "+0 (off path)".into() };
    if f.error {
        Span::styled(format!("{added} failed"), Style::new().fg(theme::ERROR))
    } else {
        Span::raw(added)
    }
}

/// Which buckets of a window (`start_us`, `bucket_us` each, `n` of them)
/// hold the start of one of `faults`.
pub fn fault_buckets(faults: &[&FaultEvent], start_us: u64, bucket_us: u64, n: usize) -> Vec<bool> {
    let mut marks = vec![false; n];
    for f in faults {
        if f.start_us >= start_us && bucket_us > 0 {
            let i = ((f.start_us - start_us) / bucket_us) as usize;
            if let Some(m) = marks.get_mut(i) {
                *m = true;
            }
        }
    }
    marks
}

/// The Chaos screen.
#[derive(Debug, Default)]
pub struct ChaosScreen {
    data: ChaosData,
    load: Load,
    selection: Selection,
}

impl ChaosScreen {
    /// Takes a fetch's data.
    pub fn loaded(&mut self, data: ChaosData) {
        self.data = data;
        self.load = Load::Ready;
    }

    /// Takes a fetch's failure.
    pub fn failed(&mut self, error: String) {
        self.load = Load::Failed(error);
    }

    /// The traces run `run_id`'s journal names as touched by its faults.
    pub fn run_traces(&self, run_id: &str) -> Option<Vec<String>> {
        let (runs, _) = self.data.runs.as_ref()?.as_ref().ok()?;
        let run = runs.iter().find(|r| r.run_id == run_id)?;
        Some(run.exemplars.iter().map(|e| e.trace_id.clone()).collect())
    }

    fn draw_runs(&self, frame: &mut Frame, area: Rect) {
        let (load, runs, skipped) = match (&self.load, &self.data.runs) {
            (_, None) => {
                let text = "no journals folder: start with --journals DIR (seismo chaos run --journal DIR/run.json)";
                let block = block("Experiment runs", &Load::Ready);
                frame
                    .render_widget(Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true }).block(block), area);
                return;
            }
            (Load::Ready, Some(Err(e))) => (Load::Failed(e.clone()), &[][..], 0),
            (load, Some(Ok((runs, skipped)))) => (load.clone(), &runs[..], *skipped),
            (load, Some(Err(_))) => (load.clone(), &[][..], 0),
        };
        let extra =
            if skipped > 0 { format!(" · {} skipped", format::count(skipped, "other file")) } else { String::new() };
        let block = block(format!("Experiment runs · {}{extra} · :run ID lists its traces", runs.len()), &load);
        if draw_state(frame, area, block.clone(), &load, runs.is_empty(), "no journal in the folder") {
            return;
        }
        let lines: Vec<Line> = runs
            .iter()
            .map(|r| {
                let colour = match r.status.as_str() {
                    "completed" => ratatui::style::Color::Green,
                    "deviated" | "failed" => theme::ERROR,
                    _ => theme::CRITICAL,
                };
                let start = (r.start_ms.max(0) as u64) * 1_000;
                let lasted = (r.end_ms - r.start_ms).max(0) as u64 * 1_000;
                let faults: Vec<String> = r
                    .faults
                    .iter()
                    .map(|f| {
                        let on = f.proxy.as_ref().map_or(String::new(), |p| format!(" on {p}"));
                        let touched = f.touched.map_or(String::new(), |n| format!(" ({n} req)"));
                        format!("{}{on}{touched}", f.kind)
                    })
                    .collect();
                Line::from(vec![
                    Span::styled(format!("{:<9} ", r.status), Style::new().fg(colour).add_modifier(Modifier::BOLD)),
                    Span::raw(format!("{} {} {} · ", format::clock(start), r.run_id, format::micros(lasted))),
                    Span::styled(format!("⚡ {}", faults.join(", ")), Style::new().fg(theme::FAULT)),
                    Span::raw(format!(" · {}", r.title)),
                ])
            })
            .collect();
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn draw_proxies(&self, frame: &mut Frame, area: Rect) {
        let (load, proxies) = match (&self.load, &self.data.proxies) {
            (Load::Ready, Err(e)) => (Load::Failed(format!("agent: {e}")), &[][..]),
            (load, Ok(p)) => (load.clone(), &p[..]),
            (load, Err(_)) => (load.clone(), &[][..]),
        };
        let block = block(format!("Agent proxies · {}", proxies.len()), &load);
        if draw_state(frame, area, block.clone(), &load, proxies.is_empty(), "the agent has no proxy") {
            return;
        }
        let mut lines = Vec::new();
        for p in proxies {
            let state = if p.enabled { Span::raw("on ") } else { Span::styled("off", Style::new().fg(theme::DIM)) };
            lines.push(Line::from(vec![
                state,
                Span::styled(format!(" {}", p.name), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!("  {} → {}", p.listen, p.upstream)),
            ]));
            if p.toxics.is_empty() {
                lines.push(Line::styled("    no toxic", Style::new().fg(theme::DIM)));
            }
            for t in &p.toxics {
                lines.push(Line::styled(format!("    ⚡ {}", toxic_text(t)), Style::new().fg(theme::FAULT)));
            }
        }
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn draw_impact(&self, frame: &mut Frame, area: Rect) {
        let block = block("Affected services · error rate, p99 · ▲ = a fault in that bucket", &self.load);
        let mut victims: Vec<&str> =
            self.data.faults.iter().map(|f| f.victim.as_str()).filter(|v| !v.is_empty()).collect();
        victims.sort();
        victims.dedup();
        if draw_state(frame, area, block.clone(), &self.load, victims.is_empty(), "no fault in the window") {
            return;
        }
        let s = &self.data.services;
        let mut lines = Vec::new();
        for v in victims {
            let Some(row) = s.rows.iter().find(|r| r.name == v) else { continue };
            let faults: Vec<&FaultEvent> = self.data.faults.iter().filter(|f| f.victim == v).collect();
            let marks: String = fault_buckets(&faults, s.start_us, s.bucket_us, row.requests_series.len())
                .into_iter()
                .map(|m| if m { '▲' } else { ' ' })
                .collect();
            let err: Vec<f64> = row
                .errors_series
                .iter()
                .zip(&row.requests_series)
                .map(|(e, n)| if *n == 0 { 0.0 } else { *e as f64 / *n as f64 })
                .collect();
            let p99: Vec<f64> = row.p99_series.iter().map(|v| *v as f64).collect();
            lines.push(Line::from(vec![
                Span::styled(format!("{:<16}", format::fit(v, 16)), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!(" err {:>6} ", format::percent(row.error_rate))),
                Span::styled(spark(&err), Style::new().fg(theme::ERROR)),
                Span::raw(format!("  p99 {:>7} ", format::millis(row.p99_ms))),
                Span::styled(spark(&p99), Style::new().fg(theme::CRITICAL)),
            ]));
            let pad = 16 + 12;
            lines.push(Line::from(vec![
                Span::raw(" ".repeat(pad)),
                Span::styled(marks.clone(), Style::new().fg(theme::FAULT)),
                Span::raw(" ".repeat(14)),
                Span::styled(marks, Style::new().fg(theme::FAULT)),
            ]));
        }
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn draw_faults(&mut self, frame: &mut Frame, area: Rect) {
        let block = block(
            format!("Injected faults · {} in the window", format::count(self.data.faults.len(), "fault span")),
            &self.load,
        );
        if draw_state(
            frame,
            area,
            block.clone(),
            &self.load,
            self.data.faults.is_empty(),
            "no fault span in the window",
        ) {
            return;
        }
        let height = area.height.saturating_sub(3) as usize;
        let visible = self.selection.fit(self.data.faults.len(), height);
        let rows = self.data.faults[visible.clone()].iter().zip(visible).map(|(f, i)| {
            let row = Row::new(vec![
                Cell::from(format::clock(f.start_us)),
                Cell::from(Span::styled(
                    format!("⚡ {}", f.kind),
                    Style::new().fg(theme::FAULT).add_modifier(Modifier::BOLD),
                )),
                Cell::from(f.proxy.clone()),
                Cell::from(f.toxic.clone()),
                Cell::from(f.experiment.clone()),
                Cell::from(f.victim.clone()),
                Cell::from(Line::from(format::micros(f.duration_us)).right_aligned()),
                Cell::from(cost(f)),
                Cell::from(f.trace_id.chars().take(16).collect::<String>()),
            ]);
            if i == self.selection.selected {
                row.style(theme::selected())
            } else {
                row
            }
        });
        let header = Row::new([
            "time (UTC)",
            "fault",
            "proxy",
            "toxic",
            "experiment",
            "victim",
            "held",
            "cost to request",
            "trace",
        ])
        .style(theme::header());
        let widths = [
            Constraint::Length(12),
            Constraint::Length(13),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(16),
        ];
        frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
    }
}

impl Component for ChaosScreen {
    fn command(&mut self, command: Command) -> Effect {
        if self.selection.apply(command, self.data.faults.len()) {
            return Effect::none();
        }
        match command {
            Command::Enter => {
                let Some(f) = self.data.faults.get(self.selection.selected) else { return Effect::none() };
                let same = |g: &&FaultEvent| g.proxy == f.proxy && g.toxic == f.toxic && g.experiment == f.experiment;
                let mut ids: Vec<String> = self.data.faults.iter().filter(same).map(|g| g.trace_id.clone()).collect();
                ids.dedup();
                ids.truncate(100);
                Effect::then(Action::ShowTraceIds(ids))
            }
            _ => Effect::none(),
        }
    }

    fn search(&mut self, _text: &str) -> Effect {
        Effect::none()
    }

    fn search_text(&self) -> String {
        String::new()
    }

    fn refresh(&mut self) -> Vec<Request> {
        // A live refresh keeps what is shown; only missing or failed data says it is loading.
        if self.load != Load::Ready {
            self.load = Load::Loading;
        }
        vec![Request::Chaos]
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect) {
        let runs = match &self.data.runs {
            Some(Ok((runs, _))) => runs.len() as u16,
            _ => 1,
        };
        let [top, middle, bottom] = Layout::vertical([
            Constraint::Percentage(40),
            Constraint::Length((runs + 2).clamp(3, 8)),
            Constraint::Fill(1),
        ])
        .areas(area);
        let [left, right] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);
        self.draw_proxies(frame, left);
        self.draw_impact(frame, right);
        self.draw_runs(frame, middle);
        self.draw_faults(frame, bottom);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(start_us: u64) -> FaultEvent {
        FaultEvent {
            trace_id: "t".into(),
            span_id: "s".into(),
            start_us,
            duration_us: 1,
            critical_us: 0,
            error: false,
            kind: "latency".into(),
            proxy: "p".into(),
            toxic: "x".into(),
            experiment: String::new(),
            victim: "api".into(),
        }
    }

    #[test]
    fn test_fault_buckets_marks_the_bucket_of_each_start() {
        let (a, b, c, d) = (fault(1_000), fault(1_250), fault(1_399), fault(5_000));
        let marks = fault_buckets(&[&a, &b, &c, &d], 1_000, 100, 4);
        assert_eq!(marks, [true, false, true, true], "after the window (5,000): no mark");
        assert_eq!(fault_buckets(&[&fault(10)], 1_000, 100, 4), [false; 4], "before the window: no mark");
    }
}
