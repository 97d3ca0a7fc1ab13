//! Every screen drawn on ratatui's TestBackend from fixtures (one JSON
//! file of the api/ wire types per case, in tests/fixtures/), snapshotted
//! with insta as the plain text `--render-once` prints. Review changes with
//! `cargo insta review`; CI refuses a missing or changed snapshot.

use std::path::Path;
use std::time::Duration;

use seismo_client::api::jaeger::{DependencyLink, Trace};
use seismo_client::api::logs::LogsResponse;
use seismo_client::api::prometheus::QueryResult;
use seismo_client::api::stats::StatsResponse;
use seismo_client::api::toxiproxy::Proxy;
use seismo_client::api::v3::TraceSummaries;
use seismo_tui::action::{Action, Command, Fetched, Loaded, Screen};
use seismo_tui::fetch::{series_of, ChaosData, PanelData, ServicesData};
use seismo_tui::screens::traces::TraceRow;
use seismo_tui::{App, Dashboard};
use serde::de::DeserializeOwned;

const WIDTH: u16 = 150;
const HEIGHT: u16 = 42;
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The fixtures' trace starts at 2026-12-02 01:57:14 UTC; the window is the 60 minutes around it.
const WINDOW_START_US: u64 = 1_796_176_634_000_000 - 50 * 60 * 1_000_000;

fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `data` of a Jaeger envelope.
fn data<T: DeserializeOwned>(name: &str) -> T {
    let mut value: serde_json::Value = fixture(name);
    serde_json::from_value(value["data"].take()).unwrap()
}

fn trace() -> Trace {
    data::<Vec<Trace>>("trace_fault.json").remove(0)
}

fn services_data() -> ServicesData {
    let names: Vec<String> = fixture("services.json");
    let totals: StatsResponse = fixture("stats_window.json");
    let buckets: Vec<StatsResponse> = fixture("stats_buckets.json");
    let links: Vec<DependencyLink> = data("dependencies.json");
    ServicesData::build(&names, &totals, &buckets, &links, WINDOW_START_US, Duration::from_secs(3600))
}

fn summaries() -> Vec<TraceRow> {
    fixture::<TraceSummaries>("trace_summaries.json").summaries.iter().map(TraceRow::from_summary).collect()
}

fn app() -> App {
    App::new(Dashboard::builtin(), "http://127.0.0.1:16686")
}

fn frame(app: &mut App) -> String {
    seismo_tui::render::frame_text(app, WIDTH, HEIGHT)
}

fn load(app: &mut App, loaded: Loaded) {
    let more = app.update(Action::Loaded(loaded));
    assert!(more.is_empty(), "data arriving starts no fetch: {more:?}");
}

fn services_app() -> App {
    let mut app = app();
    let requests = app.start(Screen::Services, None, None);
    assert_eq!(requests.len(), 4, "stats + the three non-stats panels: {requests:?}");
    load(&mut app, Loaded::Services(services_data()));
    load(&mut app, Loaded::Panel(2, PanelData::Series(series_of(fixture::<QueryResult>("promql_range.json")))));
    let mut failed = summaries();
    failed.retain(|r| r.errors > 0);
    load(&mut app, Loaded::Panel(3, PanelData::Traces(failed)));
    load(&mut app, Loaded::Panel(4, PanelData::Logs(fixture::<LogsResponse>("logs.json").data)));
    app
}

#[test]
fn services_screen() {
    insta::assert_snapshot!("services", frame(&mut services_app()));
}

#[test]
fn services_screen_loading_and_failed() {
    let mut app = app();
    app.start(Screen::Services, None, None);
    let loading = frame(&mut app);
    assert!(loading.contains("loading…"), "{loading}");
    app.update(Action::Failed { what: Fetched::Services, error: "connection refused".into() });
    insta::assert_snapshot!("services_failed", frame(&mut app));
}

#[test]
fn traces_screen() {
    let mut app = app();
    app.start(Screen::Traces, Some("frontend".into()), None);
    load(&mut app, Loaded::Traces(summaries()));
    app.update(Action::Command(Command::Down));
    insta::assert_snapshot!("traces", frame(&mut app));
}

#[test]
fn traces_screen_sorted_by_duration() {
    let mut app = app();
    app.start(Screen::Traces, None, None);
    load(&mut app, Loaded::Traces(summaries()));
    app.update(Action::Command(Command::CycleSort));
    insta::assert_snapshot!("traces_slowest", frame(&mut app));
}

fn trace_app() -> App {
    let mut app = app();
    let requests = app.start(Screen::Trace, None, Some(TRACE_ID.into()));
    assert_eq!(requests.len(), 2, "the trace and its logs: {requests:?}");
    load(&mut app, Loaded::Trace(Box::new(trace())));
    load(&mut app, Loaded::TraceLogs { trace_id: TRACE_ID.into(), records: data("trace_logs.json") });
    app
}

#[test]
fn trace_screen_waterfall_fault_and_attribution() {
    insta::assert_snapshot!("trace", frame(&mut trace_app()));
}

#[test]
fn trace_screen_fault_span_selected() {
    let mut app = trace_app();
    app.update(Action::Command(Command::NextFault));
    let text = frame(&mut app);
    assert!(text.contains("injected by the chaos agent"), "{text}");
    insta::assert_snapshot!("trace_fault_selected", text);
}

#[test]
fn trace_screen_collapsed() {
    let mut app = trace_app();
    app.update(Action::Command(Command::Down));
    app.update(Action::Command(Command::ToggleCollapse));
    insta::assert_snapshot!("trace_collapsed", frame(&mut app));
}

#[test]
fn logs_screen() {
    let mut app = app();
    app.start(Screen::Logs, None, None);
    load(&mut app, Loaded::Logs { records: fixture::<LogsResponse>("logs.json").data, query: String::new() });
    insta::assert_snapshot!("logs", frame(&mut app));
}

#[test]
fn logs_enter_opens_the_trace_of_the_line() {
    let mut app = app();
    app.start(Screen::Logs, None, None);
    load(&mut app, Loaded::Logs { records: fixture::<LogsResponse>("logs.json").data, query: String::new() });
    let requests = app.update(Action::Command(Command::Enter));
    assert_eq!(app.screen(), Screen::Trace);
    assert_eq!(requests.len(), 2, "{requests:?}");
}

fn chaos_data(proxies: Result<Vec<Proxy>, String>) -> ChaosData {
    let journals = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journals");
    ChaosData {
        proxies,
        faults: seismo_tui::faults::fault_events(&trace()),
        services: services_data(),
        runs: Some(Ok(seismo_tui::journals::read_dir(&journals).unwrap())),
    }
}

#[test]
fn chaos_screen() {
    let mut app = app();
    app.start(Screen::Chaos, None, None);
    let proxies: std::collections::BTreeMap<String, Proxy> = fixture("proxies.json");
    load(&mut app, Loaded::Chaos(chaos_data(Ok(proxies.into_values().collect()))));
    insta::assert_snapshot!("chaos", frame(&mut app));
    let requests = app.update(Action::Command(Command::Enter));
    assert_eq!(app.screen(), Screen::Traces, "Enter jumps to the traces the faults touched");
    assert!(format!("{requests:?}").contains(TRACE_ID), "{requests:?}");
}

#[test]
fn chaos_screen_agent_unreachable() {
    let mut app = app();
    app.start(Screen::Chaos, None, None);
    load(&mut app, Loaded::Chaos(chaos_data(Err("connection refused".into()))));
    let text = frame(&mut app);
    assert!(text.contains("agent: connection refused"), "{text}");
    // `:run ID` lists the traces the run's journal names.
    let requests = app.update(Action::Run("run exp-42".into()));
    assert_eq!(app.screen(), Screen::Traces);
    assert!(format!("{requests:?}").contains("5a1c0e6b2f0d4c7e9a3b1c2d3e4f5a6b"), "{requests:?}");
}

#[test]
fn chaos_screen_without_journals_says_how_to_get_them() {
    let mut app = app();
    app.start(Screen::Chaos, None, None);
    load(&mut app, Loaded::Chaos(ChaosData { runs: None, ..chaos_data(Ok(Vec::new())) }));
    let text = frame(&mut app);
    assert!(text.contains("no journals folder: start with --journals DIR"), "{text}");
    assert!(text.contains("the agent has no proxy"), "{text}");
}

#[test]
fn help_page_lists_the_keymap() {
    let mut app = services_app();
    app.update(Action::Command(Command::Help));
    insta::assert_snapshot!("help", frame(&mut app));
}

#[test]
fn command_line_opens_a_trace_and_esc_goes_back() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut app = services_app();
    let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
    app.handle_key(key(KeyCode::Char(':')));
    for c in format!("trace {TRACE_ID}").chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    let requests = app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.screen(), Screen::Trace);
    assert_eq!(requests.len(), 2);
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.screen(), Screen::Services);
    app.handle_key(key(KeyCode::Char(':')));
    for c in "nonsense".chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    app.handle_key(key(KeyCode::Enter));
    assert!(frame(&mut app).contains("unknown command :nonsense"));
}

#[test]
fn tab_moves_sideways_and_esc_retraces_drill_downs() {
    let mut app = services_app();
    app.update(Action::Command(Command::NextScreen));
    assert_eq!(app.screen(), Screen::Traces);
    load(&mut app, Loaded::Traces(summaries()));
    app.update(Action::Command(Command::Enter));
    assert_eq!(app.screen(), Screen::Trace, "Enter drills into the selected trace");
    app.update(Action::Command(Command::PrevScreen));
    assert_eq!(app.screen(), Screen::Traces);
    app.update(Action::Command(Command::PrevScreen));
    assert_eq!(app.screen(), Screen::Services);
    app.update(Action::Command(Command::Back));
    assert_eq!(app.screen(), Screen::Traces, "Esc returns to where the drill-down started");
    app.update(Action::Command(Command::Back));
    assert_eq!(app.screen(), Screen::Traces, "no breadcrumb left: Esc stays");
}

#[test]
fn ten_thousand_span_trace_scrolls_to_its_last_span() {
    use seismo_tui::bench::{synthetic_trace, TRACE_ID as BIG};
    let trace = synthetic_trace(10_000);
    let rows = seismo_analysis::SpanTree::new(&trace).rows(&Default::default());
    let last = trace.spans[rows.last().unwrap().span].span_id.clone();
    let mut app = app();
    app.start(Screen::Trace, None, Some(BIG.into()));
    load(&mut app, Loaded::Trace(Box::new(trace)));
    let top = frame(&mut app);
    let root_row = "▾ service-0: operation-0 ";
    assert!(top.contains("10000 spans") && top.contains(root_row), "{top}");
    app.update(Action::Command(Command::Bottom));
    let bottom = frame(&mut app);
    assert!(bottom.contains(&format!("span {last}")), "the last row is selected and detailed:\n{bottom}");
    assert!(!bottom.contains(root_row), "the root row scrolled out of view:\n{bottom}");
    app.update(Action::Command(Command::NextFault));
    assert!(frame(&mut app).contains("injected by the chaos agent"), "n jumps (wrapping) to a fault span");
}

#[test]
fn every_screen_draws_in_a_tiny_terminal_without_panicking() {
    for screen in Screen::ALL {
        let mut app = trace_app();
        load(&mut app, Loaded::Services(services_data()));
        load(&mut app, Loaded::Traces(summaries()));
        load(&mut app, Loaded::Logs { records: fixture::<LogsResponse>("logs.json").data, query: String::new() });
        load(&mut app, Loaded::Chaos(chaos_data(Ok(Vec::new()))));
        app.update(Action::Goto(screen));
        for (w, h) in [(1, 1), (8, 3), (20, 6), (40, 10), (60, 4)] {
            let text = seismo_tui::render::frame_text(&mut app, w, h);
            assert_eq!(text.lines().count(), h as usize, "{screen:?} at {w}x{h}");
            app.update(Action::Command(Command::Help));
            seismo_tui::render::frame_text(&mut app, w, h);
            app.update(Action::Command(Command::Help));
        }
    }
}
