//! The journal: everything a run did and measured, as JSON (`--journal
//! FILE`). It is the run's record for CI, for `seismo chaos diff`, and for
//! the TUI's Chaos screen, so every type here is public, `Serialize +
//! Deserialize`, and read back with unknown fields ignored (a newer journal
//! still loads in an older reader). Times are Unix milliseconds; the run's
//! start and end are also written as RFC 3339.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{ExperimentError, Result};
use crate::file::Phase;

/// The journal format's version; bumped when a field changes meaning.
pub const JOURNAL_VERSION: u32 = 1;

/// How a run ended; each has its own exit code (see [`Status::exit_code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The hypothesis held before, during and after: exit 0.
    Completed,
    /// The hypothesis broke during or after the method: exit 3.
    Deviated,
    /// A safety condition or a signal (Ctrl-C, SIGTERM) ended the run early: exit 4.
    Aborted,
    /// The run could not do what it was asked (steady state broken before the
    /// method, an API unreachable, a step refused): exit 1.
    Failed,
}

impl Status {
    /// The process exit code for this status: 0 completed, 1 failed, 3
    /// deviated, 4 aborted (2 is an invalid file or command line).
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Completed => 0,
            Status::Failed => 1,
            Status::Deviated => 3,
            Status::Aborted => 4,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Deviated => "deviated",
            Status::Aborted => "aborted",
            Status::Failed => "failed",
        }
    }
}

/// The exit code of an experiment file that does not validate (and of a bad
/// command line, as clap uses it).
pub const EXIT_INVALID: i32 = 2;

/// The exit code of a run (or `seismo chaos diff`) that found regressions
/// against its baseline, when it would otherwise have exited 0.
pub const EXIT_REGRESSED: i32 = 5;

/// One run of one experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// [`JOURNAL_VERSION`].
    pub version: u32,
    /// The run id: every toxic the run added carried it, so its fault spans
    /// have `chaos.experiment.id` = this.
    pub run_id: String,
    /// The experiment's title.
    pub title: String,
    /// The experiment's `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The experiment file, as given.
    #[serde(default)]
    pub experiment_file: Option<String>,
    /// How the run ended.
    pub status: Status,
    /// Why, in a sentence, when not `completed`.
    #[serde(default)]
    pub reason: Option<String>,
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// Unix ms.
    pub start_ms: i64,
    /// Unix ms.
    pub end_ms: i64,
    /// The method's window (first fault to rollback), Unix ms.
    #[serde(default)]
    pub method_window_ms: Option<(i64, i64)>,
    /// The agent's base URL.
    pub agent_url: String,
    /// The query API's base URL.
    pub query_url: String,
    /// Every probe evaluation, in time order.
    #[serde(default)]
    pub probes: Vec<ProbeResult>,
    /// Every method step.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// Every fault the run applied, with its window.
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    /// The safety condition, when it ended the run.
    #[serde(default)]
    pub safety: Option<String>,
    /// Faulted vs unfaulted requests over the method's window.
    #[serde(default)]
    pub cohorts: Vec<CohortComparison>,
    /// The worst-hurt faulted requests.
    #[serde(default)]
    pub exemplars: Vec<Exemplar>,
    /// Operations with errors during the method (all services).
    #[serde(default)]
    pub erroring: Vec<ErroringOperation>,
    /// Every undo and `[[rollbacks]]` entry, in the order run.
    #[serde(default)]
    pub rollbacks: Vec<RollbackRecord>,
    /// Whether the agent was seen to hold none of this run's toxics or
    /// proxies after the rollback.
    #[serde(default)]
    pub rollback_verified: bool,
    /// Things worth knowing that did not change the status (leftovers of
    /// other runs, a probe with little traffic, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// What got worse against `--baseline` (absent without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regressions: Option<Vec<crate::diff::Regression>>,
}

/// One evaluation of one probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The probe's name.
    pub name: String,
    /// Before, during or after the method.
    pub phase: Phase,
    /// When it was evaluated, Unix ms.
    pub at_ms: i64,
    /// `stats`, `promql` or `http`.
    pub kind: String,
    /// Whether every measure met its threshold.
    pub ok: bool,
    /// What was measured against what.
    pub measures: Vec<Measure>,
    /// Why the probe could not be evaluated (then `ok` is false).
    #[serde(default)]
    pub error: Option<String>,
    /// During the method only: too few requests in the window to judge
    /// (counted as holding; the next evaluation judges again).
    #[serde(default)]
    pub inconclusive: bool,
}

/// One measured value and its threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// What (`p99_ms`, `error_rate`, `requests`, `status`, `value{job="x"}`, ...).
    pub what: String,
    /// The measured value; `None` when there was nothing to measure.
    pub value: Option<f64>,
    /// `<`, `<=`, `>=`, `>` or `==`.
    pub op: String,
    /// The threshold.
    pub threshold: f64,
    /// Whether `value op threshold` holds.
    pub ok: bool,
}

impl Measure {
    /// Checks `value op threshold`; a missing value never holds.
    pub fn check(what: impl Into<String>, value: Option<f64>, op: &str, threshold: f64) -> Measure {
        let ok = value.is_some_and(|v| match op {
            "<" => v < threshold,
            "<=" => v <= threshold,
            ">=" => v >= threshold,
            ">" => v > threshold,
            _ => v == threshold,
        });
        Measure { what: what.into(), value, op: op.to_string(), threshold, ok }
    }
}

/// One method step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// `fault`, `process` or `wait`.
    pub kind: String,
    /// Unix ms.
    pub start_ms: i64,
    /// Unix ms; `None` when the run never got to its end.
    #[serde(default)]
    pub end_ms: Option<i64>,
    /// `ok`, `failed` or `interrupted`.
    pub outcome: String,
    /// What failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// One fault the run applied: a toxic, or a process action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// The step's index in `[[method]]`.
    pub step: usize,
    /// The toxic's name on the agent (`seismo-<run>-<step>-<name>`), or the process.
    pub name: String,
    /// The toxic type, or `process pause` / `process kill` / `process resume`.
    pub kind: String,
    /// The proxy, for a toxic.
    #[serde(default)]
    pub proxy: Option<String>,
    /// `upstream` or `downstream`, for a toxic.
    #[serde(default)]
    pub stream: Option<String>,
    /// For a toxic.
    #[serde(default)]
    pub toxicity: Option<f64>,
    /// The toxic's attributes as sent.
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// When it was applied, Unix ms.
    pub start_ms: i64,
    /// When it was removed, Unix ms.
    #[serde(default)]
    pub end_ms: Option<i64>,
    /// Requests (traces) it touched, from its fault spans in the store.
    #[serde(default)]
    pub touched: Option<u64>,
    /// Whether `touched` is a lower bound (the search hit its limit).
    #[serde(default)]
    pub touched_is_lower_bound: bool,
}

/// Request count, errors and latency of one cohort.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CohortStats {
    /// Requests counted.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
    /// `errors / requests` (0 without requests).
    pub error_rate: f64,
    /// Median ms.
    #[serde(default)]
    pub p50_ms: Option<f64>,
    /// 99th percentile ms.
    #[serde(default)]
    pub p99_ms: Option<f64>,
}

/// Faulted vs unfaulted requests of one service (and operation) over the
/// method's window: traces holding a fault span of this run vs the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CohortComparison {
    /// The service.
    pub service: String,
    /// The operation, when the probe named one.
    #[serde(default)]
    pub operation: Option<String>,
    /// Requests whose trace holds a fault span of this run.
    pub faulted: CohortStats,
    /// The others.
    pub unfaulted: CohortStats,
    /// faulted − unfaulted error rate.
    pub error_rate_delta: f64,
    /// faulted − unfaulted p50 (ms).
    #[serde(default)]
    pub p50_ms_delta: Option<f64>,
    /// faulted − unfaulted p99 (ms).
    #[serde(default)]
    pub p99_ms_delta: Option<f64>,
}

/// A faulted request worth opening: its trace, and what the fault cost it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    /// The trace id (hex), as the query API serves it.
    pub trace_id: String,
    /// The toxic's name on the agent.
    #[serde(default)]
    pub toxic: Option<String>,
    /// The toxic type.
    pub kind: String,
    /// The proxy.
    #[serde(default)]
    pub proxy: Option<String>,
    /// The service whose call the fault hit.
    pub victim_service: String,
    /// Its operation.
    pub victim_operation: String,
    /// Milliseconds the run's fault spans held the request.
    pub added_ms: f64,
    /// Of which on the trace's critical path (what the request's end waited on).
    pub critical_ms: f64,
    /// Whether any fault time lay on the critical path.
    pub on_critical_path: bool,
    /// Whether a fault failed the request.
    pub error: bool,
    /// The whole trace's duration, ms.
    pub trace_ms: f64,
}

/// An operation with errors during the method's window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErroringOperation {
    /// The service.
    pub service: String,
    /// The operation.
    pub operation: String,
    /// Errors.
    pub errors: u64,
    /// Requests.
    pub requests: u64,
}

/// One clean-up action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// What was undone (`remove toxic X from proxy P`, ...).
    pub what: String,
    /// Unix ms.
    pub at_ms: i64,
    /// Whether it is undone (also when it was already gone).
    pub ok: bool,
    /// Why not.
    #[serde(default)]
    pub error: Option<String>,
}

impl Journal {
    /// Writes the journal as pretty JSON.
    ///
    /// # Errors
    /// [`ExperimentError::Journal`] when the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a journal is JSON");
        std::fs::write(path, text + "\n")
            .map_err(|e| ExperimentError::Journal { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Reads a journal back.
    ///
    /// # Errors
    /// [`ExperimentError::Journal`] when the file is missing or not a journal.
    pub fn read(path: &Path) -> Result<Journal> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ExperimentError::Journal { path: path.to_path_buf(), message: e.to_string() })?;
        serde_json::from_str(&text)
            .map_err(|e| ExperimentError::Journal { path: path.to_path_buf(), message: e.to_string() })
    }

    /// The probe evaluations of one phase.
    pub fn probes_in(&self, phase: Phase) -> impl Iterator<Item = &ProbeResult> {
        self.probes.iter().filter(move |p| p.phase == phase)
    }
}

/// Unix ms of `t`.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The time of Unix ms `ms`.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + std::time::Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - std::time::Duration::from_millis(ms.unsigned_abs())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A journal of a deviated run, for the report and diff tests.
    pub(crate) fn sample() -> Journal {
        Journal {
            version: JOURNAL_VERSION,
            run_id: "abc123".into(),
            title: "checkout tolerates a slow payments service".into(),
            description: None,
            experiment_file: Some("slow.toml".into()),
            status: Status::Deviated,
            reason: Some("steady state deviated during the method: checkout stays fast".into()),
            start: "2026-12-02T02:00:00.000000000Z".into(),
            end: "2026-12-02T02:00:30.000000000Z".into(),
            start_ms: 1_796_176_800_000,
            end_ms: 1_796_176_830_000,
            method_window_ms: Some((1_796_176_801_000, 1_796_176_821_000)),
            agent_url: "http://127.0.0.1:8474".into(),
            query_url: "http://127.0.0.1:16686".into(),
            probes: vec![ProbeResult {
                name: "checkout stays fast".into(),
                phase: Phase::During,
                at_ms: 1_796_176_802_000,
                kind: "stats".into(),
                ok: false,
                measures: vec![Measure::check("p99_ms", Some(412.5), "<", 300.0)],
                error: None,
                inconclusive: false,
            }],
            steps: vec![StepRecord {
                name: "slow payments".into(),
                kind: "fault".into(),
                start_ms: 1_796_176_801_000,
                end_ms: Some(1_796_176_821_000),
                outcome: "ok".into(),
                error: None,
            }],
            faults: vec![FaultRecord {
                step: 0,
                name: "seismo-abc123-0-latency".into(),
                kind: "latency".into(),
                proxy: Some("payments".into()),
                stream: Some("downstream".into()),
                toxicity: Some(1.0),
                attributes: [("latency".to_string(), serde_json::json!(400))].into(),
                start_ms: 1_796_176_801_000,
                end_ms: Some(1_796_176_821_000),
                touched: Some(180),
                touched_is_lower_bound: false,
            }],
            safety: None,
            cohorts: vec![CohortComparison {
                service: "checkout".into(),
                operation: None,
                faulted: CohortStats {
                    requests: 180,
                    errors: 0,
                    error_rate: 0.0,
                    p50_ms: Some(401.0),
                    p99_ms: Some(412.0),
                },
                unfaulted: CohortStats {
                    requests: 20,
                    errors: 0,
                    error_rate: 0.0,
                    p50_ms: Some(1.0),
                    p99_ms: Some(2.0),
                },
                error_rate_delta: 0.0,
                p50_ms_delta: Some(400.0),
                p99_ms_delta: Some(410.0),
            }],
            exemplars: vec![Exemplar {
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                toxic: Some("seismo-abc123-0-latency".into()),
                kind: "latency".into(),
                proxy: Some("payments".into()),
                victim_service: "checkout".into(),
                victim_operation: "POST /pay".into(),
                added_ms: 401.2,
                critical_ms: 401.2,
                on_critical_path: true,
                error: false,
                trace_ms: 403.0,
            }],
            erroring: vec![],
            rollbacks: vec![RollbackRecord {
                what: "remove toxic seismo-abc123-0-latency from proxy payments".into(),
                at_ms: 1_796_176_821_000,
                ok: true,
                error: None,
            }],
            rollback_verified: true,
            warnings: vec![],
            regressions: None,
        }
    }

    #[test]
    fn a_journal_reads_back_as_written() {
        let j = sample();
        let dir = std::env::temp_dir().join(format!("seismo-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.json");
        j.write(&path).unwrap();
        assert_eq!(Journal::read(&path).unwrap(), j);
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["status"], "deviated");
        assert_eq!(v["probes"][0]["phase"], "during");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes: Vec<i32> =
            [Status::Completed, Status::Deviated, Status::Aborted, Status::Failed].map(Status::exit_code).into();
        assert_eq!(codes, vec![0, 3, 4, 1]);
        assert!(!codes.contains(&EXIT_INVALID));
        assert!(!Measure::check("p99_ms", None, "<", 1.0).ok);
        assert!(Measure::check("error_rate", Some(0.01), "<=", 0.01).ok);
    }
}
