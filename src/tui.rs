//! `seismo tui`: the terminal dashboard (crate `seismo-tui`). This module is
//! its command line and where its log goes: a file, never the screen.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use seismo_tui::{Options, Screen};

#[derive(Args, Debug)]
pub(crate) struct TuiArgs {
    /// The query API of `seismo serve`.
    #[arg(long, default_value = "http://127.0.0.1:16686", env = "SEISMO_QUERY_URL")]
    query_url: String,
    /// The chaos agent's API.
    #[arg(long, default_value = "http://127.0.0.1:8474", env = "SEISMO_AGENT_URL")]
    agent_url: String,
    /// Bearer token for the query API (a `query` token of `seismo serve --auth-token`).
    #[arg(long, env = "SEISMO_QUERY_TOKEN", hide_env_values = true)]
    query_token: Option<String>,
    /// Bearer token for the chaos agent's API (a `chaos` token).
    #[arg(long, env = "SEISMO_AGENT_TOKEN", hide_env_values = true)]
    agent_token: Option<String>,
    /// A folder of dashboard definitions (*.toml) replacing the built-in one;
    /// its default.toml (else the first file) is drawn on the Services screen.
    #[arg(long, value_name = "DIR")]
    dashboards: Option<PathBuf>,
    /// A folder of experiment journals (`seismo chaos run --journal DIR/run.json`):
    /// the Chaos screen lists their runs.
    #[arg(long, value_name = "DIR")]
    journals: Option<PathBuf>,
    /// Scroll lists with the mouse wheel (the terminal's own text selection
    /// then needs Shift, as in most terminal apps that take the mouse).
    #[arg(long)]
    mouse: bool,
    /// Print one frame of WIDTHxHEIGHT as plain text and exit.
    #[arg(long, value_name = "WxH")]
    render_once: Option<String>,
    /// The screen to open: services, traces, trace, logs or chaos.
    #[arg(long, default_value = "services", value_parser = parse_screen)]
    screen: Screen,
    /// Open the trace list of this service.
    #[arg(long)]
    service: Option<String>,
    /// Open this trace.
    #[arg(long)]
    trace_id: Option<String>,
    /// How often live screens (services, chaos, logs tail) refetch.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    refresh: Duration,
    /// The window every screen looks back over.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    lookback: Duration,
    /// Where the dashboard's own log goes (default: $XDG_STATE_HOME/seismo/tui.log,
    /// else seismo-tui.log in the temp dir).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Benchmark: draw this many frames of a synthetic 10,000-span trace,
    /// scrolling, and print the frame times.
    #[arg(long, hide = true, value_name = "FRAMES")]
    bench_frames: Option<usize>,
}

fn parse_screen(text: &str) -> Result<Screen, String> {
    Screen::parse(text).ok_or_else(|| format!("{text:?} is not one of services, traces, trace, logs, chaos"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    seismo_tui::format::parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a duration (500ms, 5s, 15m, 1h)"))
}

fn default_log_file() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(state) => PathBuf::from(state).join("seismo").join("tui.log"),
        None => std::env::temp_dir().join("seismo-tui.log"),
    }
}

/// Sends the process's `tracing` output to the log file (appending): the
/// screen is the dashboard's, and a log line on it would corrupt it.
pub(crate) fn init_logging(args: &TuiArgs) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let path = args.log_file.clone().unwrap_or_else(default_log_file);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    let filter = EnvFilter::try_from_env("SEISMO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::sync::Mutex::new(file)).with_ansi(false).init();
    Ok(())
}

pub(crate) async fn run(args: TuiArgs) -> anyhow::Result<()> {
    if let Some(frames) = args.bench_frames {
        let (w, h) = seismo_tui::render::parse_size(args.render_once.as_deref().unwrap_or("160x50"))?;
        let report = seismo_tui::bench::frame_times(10_000, frames, w, h);
        println!("{report}");
        return Ok(());
    }
    let options = Options {
        query_url: args.query_url,
        agent_url: args.agent_url,
        query_token: args.query_token,
        agent_token: args.agent_token,
        dashboards: args.dashboards,
        journals: args.journals,
        refresh: args.refresh,
        lookback: args.lookback,
        mouse: args.mouse,
        screen: args.screen,
        service: args.service,
        trace_id: args.trace_id,
    };
    match args.render_once {
        Some(size) => {
            let size = seismo_tui::render::parse_size(&size)?;
            print!("{}", seismo_tui::render_once(options, size).await?);
        }
        None => seismo_tui::run(options).await?,
    }
    Ok(())
}
