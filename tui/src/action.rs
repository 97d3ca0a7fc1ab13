//! What happens in the app, as data: a key press becomes a [`Command`]
//! (through the keymap), a finished background fetch becomes
//! [`Action::Loaded`] or [`Action::Failed`], and the app's `update` is the
//! one place that changes state.

use seismo_client::api::jaeger::Trace;
use seismo_client::api::logs::LogRecord;

use crate::fetch::{ChaosData, PanelData, ServicesData};
use crate::screens::traces::TraceRow;

/// The screens, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Screen {
    /// Per-service rates, errors, latency, dependencies and the dashboard's panels.
    Services,
    /// Trace search results.
    Traces,
    /// One trace: waterfall, span detail, logs, fault attribution.
    Trace,
    /// Log search and live tail.
    Logs,
    /// The agent's proxies and toxics, and the faults it injected.
    Chaos,
}

impl Screen {
    /// Every screen, in Tab order.
    pub const ALL: [Screen; 5] = [Screen::Services, Screen::Traces, Screen::Trace, Screen::Logs, Screen::Chaos];

    /// The name on the tab bar and in `--screen` / `:` commands.
    pub fn name(self) -> &'static str {
        match self {
            Screen::Services => "services",
            Screen::Traces => "traces",
            Screen::Trace => "trace",
            Screen::Logs => "logs",
            Screen::Chaos => "chaos",
        }
    }

    /// The screen called `name` (as [`Screen::name`] writes it).
    pub fn parse(name: &str) -> Option<Screen> {
        Screen::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The next (`step` = 1) or previous (`step` = -1) screen in Tab order.
    pub fn cycle(self, step: isize) -> Screen {
        let i = Screen::ALL.iter().position(|s| *s == self).unwrap_or(0) as isize;
        Screen::ALL[(i + step).rem_euclid(Screen::ALL.len() as isize) as usize]
    }
}

/// What a key can do. The keymap ([`crate::keys`]) binds keys to these; the
/// help bar and the `?` page are drawn from the same table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Leave the app.
    Quit,
    /// Show or hide the help page.
    Help,
    /// Next screen (Tab).
    NextScreen,
    /// Previous screen (Shift-Tab).
    PrevScreen,
    /// Back along the breadcrumbs.
    Back,
    /// Open the `/` search line of the screen.
    Search,
    /// Open the `:` command line.
    CommandLine,
    /// Fetch the screen's data again now.
    Refresh,
    /// Selection up one row.
    Up,
    /// Selection down one row.
    Down,
    /// Selection up one page.
    PageUp,
    /// Selection down one page.
    PageDown,
    /// First row.
    Top,
    /// Last row.
    Bottom,
    /// Drill into the selected row.
    Enter,
    /// Traces: next sort order.
    CycleSort,
    /// Traces: only traces with errors.
    ToggleErrors,
    /// Traces: only traces a fault touched.
    ToggleFaults,
    /// Trace: fold or unfold the selected span's children.
    ToggleCollapse,
    /// Trace: unfold everything.
    ExpandAll,
    /// Trace: jump to the next fault span.
    NextFault,
    /// Logs: live tail on or off.
    ToggleTail,
}

/// Everything the app's `update` handles.
#[derive(Clone, Debug)]
pub enum Action {
    /// A key's command.
    Command(Command),
    /// Show a screen (pushes a breadcrumb).
    Goto(Screen),
    /// Open a trace on the Trace screen.
    OpenTrace(String),
    /// The Traces screen, searching this service.
    ShowService(String),
    /// The Traces screen, listing these traces (the ones faults touched).
    ShowTraceIds(Vec<String>),
    /// A `/` search typed on the current screen.
    Search(String),
    /// A `:` command typed.
    Run(String),
    /// The refresh timer fired.
    Tick,
    /// A background fetch answered.
    Loaded(Loaded),
    /// A background fetch failed; `what` names it for the error line.
    Failed {
        /// Which data (the screen shows the error where the data would be).
        what: Fetched,
        /// The error, as the client words it.
        error: String,
    },
}

/// Which data a fetch was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fetched {
    /// The Services screen's stats and dependencies.
    Services,
    /// The trace list.
    Traces,
    /// One trace.
    Trace,
    /// The logs of the open trace.
    TraceLogs,
    /// The Logs screen.
    Logs,
    /// The agent and the fault spans.
    Chaos,
    /// A dashboard panel (its index).
    Panel(usize),
}

/// The data a fetch brought.
#[derive(Clone, Debug)]
pub enum Loaded {
    /// Stats, buckets and dependencies.
    Services(ServicesData),
    /// Trace summaries, newest first.
    Traces(Vec<TraceRow>),
    /// One trace in Jaeger's model.
    Trace(Box<Trace>),
    /// The log records of one trace.
    TraceLogs {
        /// The trace they belong to (a late answer for another trace is dropped).
        trace_id: String,
        /// Its records, oldest first.
        records: Vec<LogRecord>,
    },
    /// Log search results, newest first; `tail` when a live-tail refresh.
    Logs {
        /// The records.
        records: Vec<LogRecord>,
        /// The query they answer (a late answer for an older query is dropped).
        query: String,
    },
    /// The agent's proxies and recent fault spans.
    Chaos(ChaosData),
    /// A dashboard panel's data.
    Panel(usize, PanelData),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_screen_cycle_wraps_both_ways() {
        assert_eq!(Screen::Services.cycle(1), Screen::Traces);
        assert_eq!(Screen::Chaos.cycle(1), Screen::Services);
        assert_eq!(Screen::Services.cycle(-1), Screen::Chaos);
        for s in Screen::ALL {
            assert_eq!(Screen::parse(s.name()), Some(s));
        }
    }
}
