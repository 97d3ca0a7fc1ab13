//! What `seismo tui` was asked to do ([`Options`]) and the two ways to do
//! it: the interactive dashboard ([`run`]) and one frame as text
//! ([`render_once`]). Both build the same app, clients and limits.

use std::path::PathBuf;
use std::time::Duration;

use crate::action::Screen;
use crate::app::App;
use crate::dashboard::Dashboard;
use crate::error::TuiError;
use crate::fetch::{Clients, Limits};
use crate::{render, terminal};

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
    /// A folder of experiment journals for the Chaos screen (`--journals`).
    pub journals: Option<PathBuf>,
    /// A folder of dashboards replacing the built-in one (`--dashboards`).
    pub dashboards: Option<PathBuf>,
    /// How often live screens refetch (`--refresh`).
    pub refresh: Duration,
    /// The window every screen looks back over (`--lookback`).
    pub lookback: Duration,
    /// Scroll lists with the mouse wheel (`--mouse`; takes text selection
    /// away from the terminal while the dashboard runs).
    pub mouse: bool,
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
        let clients = Clients { query, agent, journals: self.journals.clone() };
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
    terminal::run(options.mouse, app, clients, limits, options.refresh, first).await
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
