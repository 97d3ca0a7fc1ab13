//! `seismo chaos run`: chaos experiments with a verdict. An experiment file
//! (TOML) states a steady-state hypothesis over the collected telemetry and
//! a method of faults; a run checks the hypothesis, applies the faults
//! through the chaos agent while probing, always rolls back, and writes a
//! journal that compares faulted with unfaulted requests of the same window
//! and names the traces each fault hurt.
//!
//! | module | what it owns |
//! |---|---|
//! | [`file`] | the TOML model (errors name line and field; checks in `validate`) |
//! | [`duration`] | `10s`, `500ms`, `1m30s` |
//! | [`plan`] | the `--dry-run` plan |
//! | [`probe`] | stats, PromQL and HTTP probes; the safety check |
//! | [`method`] | the steps: toxics for a duration, process actions, waits |
//! | [`rollback`] | the ledger of what the run added, undone whatever happens |
//! | [`cohort`] | faulted vs unfaulted requests, from the store |
//! | [`exemplar`] | the worst-hurt faulted traces and what each fault cost |
//! | [`run`] | the lifecycle |
//! | [`journal`] | the JSON record of a run (also read by the TUI) |
//! | [`report`] | Markdown report and stdout summary |
//! | [`diff`] | regressions between two journals |
//!
//! Design decisions:
//! - **A client, not a component.** The runner speaks to the agent and the
//!   query API over HTTP (`seismo-client`) and imports neither, so it works
//!   against remote deployments.
//! - **Every toxic carries the run id** (the toxic's `experiment` field), so
//!   the agent's fault spans have `chaos.experiment.id` = the run, and the
//!   store can split the window into cohorts; toxic names start with
//!   `seismo-<run id>-`, so a leftover says which run left it (a run warns
//!   about other runs' leftovers and does not touch them).
//! - **Rollback is a ledger, not a `finally`.** Whatever is added is written
//!   down first; the run undoes what is still open after the method, however
//!   the method ended.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cohort;
pub mod diff;
pub mod duration;
pub mod error;
pub mod exemplar;
pub mod file;
pub mod journal;
pub mod method;
pub mod plan;
pub mod probe;
pub mod report;
pub mod rollback;
pub mod run;
mod validate;

pub use error::{ExperimentError, Result};
pub use file::Experiment;
pub use journal::{Journal, Status, EXIT_INVALID, EXIT_REGRESSED};
pub use run::{run, Interrupts, RunOptions};
