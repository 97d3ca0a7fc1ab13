//! `seismo tui`: the terminal dashboard where a person watches a system
//! under chaos — services, traces, a waterfall with the injected faults
//! marked and what each cost, logs, and the chaos agent's state.
//!
//! It is a client of seismo's HTTP APIs through `seismo-client` only (query
//! API and chaos agent), never of the store; the trace analysis (span tree,
//! critical path, fault impact) is `seismo-analysis`, shared with the
//! experiment runner.
//!
//! | module | what it owns |
//! |---|---|
//! | [`app`] | state: screens, breadcrumbs, `/` and `:` lines, `?` page; `update` and `draw` |
//! | [`action`] | the [`Action`] and [`Command`] enums everything goes through |
//! | [`keys`] | keybindings as data: the lookup, the help bar and `?` read the same tables |
//! | [`screens`] | one component per screen, and the shared list/loading pieces |
//! | [`waterfall`] | pure geometry of the trace view: bar columns, row windows, axis |
//! | [`fetch`] | background fetches: one request in, one action out |
//! | [`dashboard`] | TOML dashboards (`dashboards/`), with errors naming file, line, field |
//! | [`terminal`] | the async event loop; terminal restored on exit and panic |
//! | [`render`] | `--render-once`: one frame as plain text |
//! | [`bench`] | frame time on a synthetic 10,000-span trace |
//!
//! Design decisions:
//! - **The UI never waits on the network.** `update` returns fetch requests;
//!   the loop spawns them and their answers come back as actions. Every data
//!   panel shows loading and error states in place.
//! - **Frames cost the screen, not the data.** Lists and the waterfall lay
//!   out only their visible rows, so a 10,000-span trace draws like a short one.
//! - **Render-once is the same app.** It awaits the same fetches in turn and
//!   draws the same `App` off-screen, so its text is what the terminal shows.
//! - **Logs never reach the screen.** The crate logs through `tracing`; the
//!   binary points the subscriber at a file for `seismo tui`.

#![forbid(unsafe_code)]

pub mod action;
pub mod app;
pub mod bench;
pub mod dashboard;
pub mod error;
pub mod faults;
pub mod fetch;
pub mod format;
pub mod keys;
pub mod render;
pub mod screens;
pub mod terminal;
pub mod waterfall;

use std::path::PathBuf;
use std::time::Duration;

pub use action::{Action, Command, Screen};
pub use app::App;
pub use dashboard::Dashboard;
pub use error::TuiError;
pub use fetch::{Clients, Limits};

/// What `seismo tui` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The query API (`--query-url`).
    pub query_url: String,
    /// The chaos agent's API (`--agent-url`).
    pub agent_url: String,
    /// Bearer token for the query API.
    pub query_token: Option<String>,
    /// Bearer token for the agent's API.
    pub agent_token: Option<String>,
    /// A folder of dashboards replacing the built-in one (`--dashboards`).
    pub dashboards: Option<PathBuf>,
    /// How often live screens refetch (`--refresh`).
    pub refresh: Duration,
    /// The window every screen looks back over (`--lookback`).
    pub lookback: Duration,
    /// The screen to open (`--screen`).
    pub screen: Screen,
    /// Open the trace list of this service (`--service`).
    pub service: Option<String>,
    /// Open this trace (`--trace-id`).
    pub trace_id: Option<String>,
}

impl Options {
    fn prepare(&self) -> Result<(App, Clients, Limits), TuiError> {
        let dashboard = match &self.dashboards {
            Some(dir) => Dashboard::load_dir(dir)?.remove(0),
            None => Dashboard::builtin(),
        };
        let mut query = seismo_client::Client::new(&self.query_url)?.with_timeout(Duration::from_secs(10));
        if let Some(token) = &self.query_token {
            query = query.with_token(token);
        }
        let mut agent = seismo_client::AgentClient::new(&self.agent_url)?.with_timeout(Duration::from_secs(5));
        if let Some(token) = &self.agent_token {
            agent = agent.with_token(token);
        }
        let clients = Clients { query, agent };
        let limits = Limits { lookback: self.lookback, ..Limits::default() };
        Ok((App::new(dashboard, self.query_url.clone()), clients, limits))
    }
}

/// Runs the interactive dashboard until `q`.
///
/// # Errors
/// A malformed dashboard, a bad URL, or a terminal that cannot be driven.
pub async fn run(options: Options) -> Result<(), TuiError> {
    let (mut app, clients, limits) = options.prepare()?;
    let first = app.start(options.screen, options.service.clone(), options.trace_id.clone());
    terminal::run(app, clients, limits, options.refresh, first).await
}

/// Fetches what the chosen screen shows and returns one `width`×`height`
/// frame as plain text. Fetch errors are part of the frame, not an error.
///
/// # Errors
/// A malformed dashboard or a bad URL.
pub async fn render_once(options: Options, size: (u16, u16)) -> Result<String, TuiError> {
    let (mut app, clients, limits) = options.prepare()?;
    let first = app.start(options.screen, options.service.clone(), options.trace_id.clone());
    render::render_after(&mut app, &clients, limits, first, size).await
}
