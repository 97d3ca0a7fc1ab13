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
//! | [`journals`] | experiment runs from `seismo chaos run --journal` files, for the Chaos screen |
//! | [`dashboard`] | TOML dashboards (`dashboards/`), with errors naming file, line, field |
//! | [`terminal`] | the async event loop; terminal restored on exit and panic |
//! | `launch` | [`Options`], [`run`] and [`render_once`]: the two ways to start |
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
#![warn(unreachable_pub, missing_docs)]

pub mod action;
pub mod app;
pub mod bench;
pub mod dashboard;
pub mod error;
pub mod faults;
pub mod fetch;
pub mod format;
pub mod journals;
pub mod keys;
mod launch;
pub mod render;
pub mod screens;
pub mod terminal;
pub mod waterfall;

pub use action::{Action, Command, Screen};
pub use app::App;
pub use dashboard::Dashboard;
pub use error::TuiError;
pub use fetch::{Clients, Limits};
pub use launch::{render_once, run, Options};
