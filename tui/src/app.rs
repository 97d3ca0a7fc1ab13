//! The app: the five screens, the breadcrumbs, the `/` and `:` lines and
//! the `?` page. [`App::handle_key`] and [`App::update`] are the only
//! places state changes; both return the fetches to start, which the event
//! loop (or render-once) runs in the background. [`App::draw`] only reads.

use std::collections::HashSet;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use crate::action::{Action, Command, Fetched, Loaded, Screen};
use crate::dashboard::Dashboard;
use crate::fetch::Request;
use crate::keys;
use crate::screens::chaos::ChaosScreen;
use crate::screens::logs::LogsScreen;
use crate::screens::services::ServicesScreen;
use crate::screens::trace::TraceScreen;
use crate::screens::traces::{TraceFilter, TracesScreen};
use crate::screens::{theme, Component, Effect};

/// The `:` commands, for the `?` page.
pub const COMMANDS: &[(&str, &str)] = &[
    (":service NAME", "traces of a service"),
    (":trace ID", "open a trace"),
    (":traces [SEARCH]", "trace search (as /)"),
    (":logs [QUERY]", "log search"),
    (":run RUN_ID", "traces an experiment run touched"),
    (":services  :chaos", "go to a screen"),
    (":q", "quit"),
];

/// Which line is being typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InputKind {
    Search,
    Command,
}

#[derive(Clone, Debug)]
struct Input {
    kind: InputKind,
    text: String,
}

/// The whole dashboard's state.
pub struct App {
    screen: Screen,
    history: Vec<Screen>,
    visited: HashSet<Screen>,
    services: ServicesScreen,
    traces: TracesScreen,
    trace: TraceScreen,
    logs: LogsScreen,
    chaos: ChaosScreen,
    input: Option<Input>,
    help: bool,
    message: Option<String>,
    source: String,
    quit: bool,
}

impl App {
    /// A new app whose Services screen draws `dashboard`; `source` (the
    /// query URL) is shown in the title bar.
    pub fn new(dashboard: Dashboard, source: impl Into<String>) -> App {
        App {
            screen: Screen::Services,
            history: Vec::new(),
            visited: HashSet::new(),
            services: ServicesScreen::new(dashboard),
            traces: TracesScreen::default(),
            trace: TraceScreen::default(),
            logs: LogsScreen::default(),
            chaos: ChaosScreen::default(),
            input: None,
            help: false,
            message: None,
            source: source.into(),
            quit: false,
        }
    }

    /// The screen shown.
    pub fn screen(&self) -> Screen {
        self.screen
    }

    /// Whether `q` was pressed.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Opens `screen` as the command line asked (`--screen`, `--service`,
    /// `--trace-id`); the fetches to start.
    pub fn start(&mut self, screen: Screen, service: Option<String>, trace_id: Option<String>) -> Vec<Request> {
        let mut requests = Vec::new();
        if let Some(service) = service {
            let filter = TraceFilter { service: Some(service), ..TraceFilter::default() };
            requests.extend(self.traces.set_filter(filter));
            self.visited.insert(Screen::Traces);
        }
        if let Some(id) = trace_id {
            requests.extend(self.trace.open(&id));
            self.visited.insert(Screen::Trace);
        }
        requests.extend(self.goto(screen));
        self.history.clear();
        requests
    }

    fn component(&mut self, screen: Screen) -> &mut dyn Component {
        match screen {
            Screen::Services => &mut self.services,
            Screen::Traces => &mut self.traces,
            Screen::Trace => &mut self.trace,
            Screen::Logs => &mut self.logs,
            Screen::Chaos => &mut self.chaos,
        }
    }

    /// Shows `screen`, leaving a breadcrumb to come back to.
    fn goto(&mut self, screen: Screen) -> Vec<Request> {
        if screen != self.screen {
            self.history.push(self.screen);
        }
        self.switch(screen)
    }

    /// Shows `screen` without a breadcrumb.
    fn switch(&mut self, screen: Screen) -> Vec<Request> {
        self.screen = screen;
        if self.visited.insert(screen) {
            self.component(screen).refresh()
        } else {
            Vec::new()
        }
    }

    /// A key press; the fetches to start.
    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Request> {
        if let Some(input) = &mut self.input {
            match key.code {
                KeyCode::Esc => self.input = None,
                KeyCode::Enter => {
                    let Input { kind, text } = self.input.take().expect("typing");
                    return self.update(match kind {
                        InputKind::Search => Action::Search(text),
                        InputKind::Command => Action::Run(text),
                    });
                }
                KeyCode::Backspace => {
                    input.text.pop();
                }
                KeyCode::Char('c') if key.modifiers == KeyModifiers::CONTROL => self.input = None,
                KeyCode::Char(c) => input.text.push(c),
                _ => {}
            }
            return Vec::new();
        }
        if self.help {
            // Any key closes the help page; q still quits.
            self.help = false;
            if key.code != KeyCode::Char('q') {
                return Vec::new();
            }
        }
        match keys::lookup(self.screen, key) {
            Some(command) => self.update(Action::Command(command)),
            None => Vec::new(),
        }
    }

    /// Applies `action`; the fetches to start.
    pub fn update(&mut self, action: Action) -> Vec<Request> {
        match action {
            Action::Command(command) => self.command(command),
            Action::Goto(screen) => self.goto(screen),
            Action::OpenTrace(id) => {
                let mut requests = self.trace.open(&id);
                self.visited.insert(Screen::Trace);
                requests.extend(self.goto(Screen::Trace));
                requests
            }
            Action::ShowService(service) => {
                let filter = TraceFilter { service: Some(service), ..TraceFilter::default() };
                self.visited.insert(Screen::Traces);
                let mut requests = self.traces.set_filter(filter);
                requests.extend(self.goto(Screen::Traces));
                requests
            }
            Action::ShowTraceIds(ids) => {
                self.visited.insert(Screen::Traces);
                let mut requests = self.traces.set_ids(ids);
                requests.extend(self.goto(Screen::Traces));
                requests
            }
            Action::Search(text) => {
                let effect = self.component(self.screen).search(&text);
                self.effect(effect)
            }
            Action::Run(text) => self.run(&text),
            Action::Tick => match self.screen {
                Screen::Services | Screen::Chaos => self.component(self.screen).refresh(),
                Screen::Logs if self.logs.tail => self.logs.refresh(),
                _ => Vec::new(),
            },
            Action::Loaded(loaded) => {
                self.loaded(loaded);
                Vec::new()
            }
            Action::Failed { what, error } => {
                match what {
                    Fetched::Services => self.services.failed(error),
                    Fetched::Traces => self.traces.failed(error),
                    Fetched::Trace => self.trace.failed(error),
                    Fetched::TraceLogs => self.trace.logs_failed(error),
                    Fetched::Logs => self.logs.failed(error),
                    Fetched::Chaos => self.chaos.failed(error),
                    Fetched::Panel(i) => self.services.panel(i, Err(error)),
                }
                Vec::new()
            }
        }
    }

    fn loaded(&mut self, loaded: Loaded) {
        match loaded {
            Loaded::Services(data) => self.services.loaded(data),
            Loaded::Traces(rows) => self.traces.loaded(rows),
            Loaded::Trace(trace) => self.trace.loaded(*trace),
            Loaded::TraceLogs { trace_id, records } => self.trace.logs_loaded(&trace_id, records),
            Loaded::Logs { records, query } => self.logs.loaded(&query, records),
            Loaded::Chaos(data) => self.chaos.loaded(data),
            Loaded::Panel(i, data) => self.services.panel(i, Ok(data)),
        }
    }

    fn effect(&mut self, effect: Effect) -> Vec<Request> {
        let mut requests = effect.requests;
        if let Some(action) = effect.then {
            requests.extend(self.update(action));
        }
        requests
    }

    fn command(&mut self, command: Command) -> Vec<Request> {
        self.message = None;
        match command {
            Command::Quit => {
                self.quit = true;
                Vec::new()
            }
            Command::Help => {
                self.help = !self.help;
                Vec::new()
            }
            // Tab moves sideways: the breadcrumbs keep only drill-downs, so Esc
            // goes back to where Enter (or a command) came from.
            Command::NextScreen => self.switch(self.screen.cycle(1)),
            Command::PrevScreen => self.switch(self.screen.cycle(-1)),
            Command::Back => {
                if let Some(previous) = self.history.pop() {
                    self.screen = previous;
                }
                Vec::new()
            }
            Command::Search => {
                let text = self.component(self.screen).search_text();
                self.input = Some(Input { kind: InputKind::Search, text });
                Vec::new()
            }
            Command::CommandLine => {
                self.input = Some(Input { kind: InputKind::Command, text: String::new() });
                Vec::new()
            }
            Command::Refresh => self.component(self.screen).refresh(),
            other => {
                let effect = self.component(self.screen).command(other);
                self.effect(effect)
            }
        }
    }

    /// Runs a `:` command.
    fn run(&mut self, text: &str) -> Vec<Request> {
        let text = text.trim();
        let (verb, rest) = text.split_once(' ').map_or((text, ""), |(v, r)| (v, r.trim()));
        match (verb, rest) {
            ("q" | "quit", _) => self.command(Command::Quit),
            ("help", _) => self.command(Command::Help),
            ("service", name) if !name.is_empty() => self.update(Action::ShowService(name.to_string())),
            ("trace", id) if !id.is_empty() => self.update(Action::OpenTrace(id.to_string())),
            ("traces", search) if !search.is_empty() => {
                let mut requests = self.goto(Screen::Traces);
                let effect = self.traces.search(search);
                requests.extend(self.effect(effect));
                requests
            }
            ("run", id) if !id.is_empty() => match self.chaos.run_traces(id) {
                Some(ids) => self.update(Action::ShowTraceIds(ids)),
                None => {
                    self.message = Some(format!("no journal of run {id} (Chaos screen, --journals DIR)"));
                    Vec::new()
                }
            },
            ("logs", query) => {
                self.visited.insert(Screen::Logs);
                let mut requests = self.logs.set_query(query);
                requests.extend(self.goto(Screen::Logs));
                requests
            }
            (name, "") if Screen::parse(name).is_some() => self.goto(Screen::parse(name).expect("checked")),
            _ => {
                self.message = Some(format!("unknown command :{text} (? lists them)"));
                Vec::new()
            }
        }
    }

    /// Draws the whole frame.
    pub fn draw(&mut self, frame: &mut Frame) {
        let [top, body, bottom] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1)]).areas(frame.area());
        self.draw_tabs(frame, top);
        let screen = self.screen;
        self.component(screen).draw(frame, body);
        self.draw_bottom(frame, bottom);
        if self.help {
            self.draw_help(frame, body);
        }
    }

    fn draw_tabs(&self, frame: &mut Frame, area: Rect) {
        let mut spans = vec![Span::styled(" seismo ", Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED))];
        for s in Screen::ALL {
            spans.push(Span::raw(" "));
            let name = format!(" {} ", s.name());
            spans.push(if s == self.screen {
                Span::styled(name, Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED))
            } else {
                Span::styled(name, Style::new().fg(theme::DIM))
            });
        }
        let crumbs: Vec<&str> = self.history.iter().rev().take(3).rev().map(|s| s.name()).collect();
        let right = if crumbs.is_empty() {
            self.source.clone()
        } else {
            format!("{} › {}", crumbs.join(" › "), self.screen.name())
        };
        let [left_area, right_area] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(right.chars().count() as u16 + 1)]).areas(area);
        frame.render_widget(Line::from(spans), left_area);
        frame.render_widget(Line::styled(right, Style::new().fg(theme::DIM)).right_aligned(), right_area);
    }

    fn draw_bottom(&self, frame: &mut Frame, area: Rect) {
        let line = if let Some(input) = &self.input {
            let prompt = match input.kind {
                InputKind::Search => "/",
                InputKind::Command => ":",
            };
            Line::from(vec![
                Span::styled(prompt, Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(input.text.clone()),
                Span::raw("█"),
            ])
        } else if let Some(message) = &self.message {
            Line::styled(message.clone(), Style::new().fg(theme::ERROR))
        } else {
            let mut spans = Vec::new();
            for (key, help) in keys::bar(self.screen) {
                spans.push(Span::styled(format!(" {key}"), Style::new().add_modifier(Modifier::BOLD)));
                spans.push(Span::raw(format!(" {help} ")));
            }
            Line::from(spans)
        };
        frame.render_widget(line, area);
    }

    fn draw_help(&self, frame: &mut Frame, area: Rect) {
        let mut lines = Vec::new();
        let section = |title: &str, bindings: &[keys::Binding], lines: &mut Vec<Line<'static>>| {
            lines.push(Line::styled(title.to_string(), Style::new().add_modifier(Modifier::BOLD)));
            for b in bindings {
                lines.push(Line::from(format!("  {:<12} {}", keys::keys_label(b), b.help)));
            }
        };
        section(&format!("{} screen", self.screen.name()), keys::screen_bindings(self.screen), &mut lines);
        section("moving", keys::MOVES, &mut lines);
        section("everywhere", keys::GLOBAL, &mut lines);
        lines.push(Line::styled("commands", Style::new().add_modifier(Modifier::BOLD)));
        for (cmd, help) in COMMANDS {
            lines.push(Line::from(format!("  {cmd:<18} {help}")));
        }
        let height = (lines.len() as u16 + 2).min(area.height);
        let [popup] = Layout::vertical([Constraint::Length(height)]).flex(Flex::Center).areas(area);
        let [popup] = Layout::horizontal([Constraint::Length(46.min(area.width))]).flex(Flex::Center).areas(popup);
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(lines).block(crate::screens::block("Help · any key closes", &crate::screens::Load::Ready)),
            popup,
        );
    }
}
