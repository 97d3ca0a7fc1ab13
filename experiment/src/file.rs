//! The experiment file: a TOML model read with serde (unknown fields are
//! errors), then validated as a whole. Every error names the line, column
//! and field, so a typo never silently becomes "no such check".
//!
//! ```toml
//! title = "checkout tolerates a slow payments service"
//! [agent]
//! url = "http://127.0.0.1:8474"
//! [query]
//! url = "http://127.0.0.1:16686"
//! [[steady_state]]
//! name = "checkout stays fast"
//! service = "checkout"
//! p99_ms_below = 300
//! window = "10s"
//! [[method]]
//! name = "slow payments"
//! proxy = "payments"
//! toxic = { type = "latency", attributes = { latency = 400 } }
//! duration = "20s"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use crate::duration::Dur;
use crate::error::{ExperimentError, Result};

pub use seismo_api::toxiproxy::TOXIC_TYPES;

/// A parsed, validated experiment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// What the experiment shows, in a sentence.
    pub title: String,
    /// Longer notes, copied into the journal and report.
    #[serde(default)]
    pub description: Option<String>,
    /// The chaos agent's API.
    pub agent: Endpoint,
    /// seismo's query API.
    pub query: Endpoint,
    /// Timings of the run itself.
    #[serde(default)]
    pub settings: Settings,
    /// Proxies the experiment creates at start and deletes at the end.
    #[serde(default)]
    pub proxies: Vec<Spanned<ProxyDecl>>,
    /// The hypothesis: probes that must hold before, during and after.
    #[serde(default)]
    pub steady_state: Vec<Spanned<Probe>>,
    /// The faults and waits, in order.
    #[serde(default)]
    pub method: Vec<Spanned<Step>>,
    /// Extra clean-up, run after the ledger's own undo.
    #[serde(default)]
    pub rollbacks: Vec<Spanned<Rollback>>,
    /// When to stop early.
    #[serde(default)]
    pub safety: Option<Spanned<Safety>>,
}

/// A base URL, and the bearer token its API wants (when it wants one).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `http://host:port`.
    pub url: Spanned<String>,
    /// Sent as `Authorization: Bearer`; `$NAME` reads the environment variable NAME.
    #[serde(default)]
    pub token: Option<String>,
}

impl Endpoint {
    /// The token, with `$NAME` read from the environment (`None` when unset).
    pub fn resolved_token(&self) -> Option<String> {
        match self.token.as_deref()?.strip_prefix('$') {
            Some(var) => std::env::var(var).ok(),
            None => self.token.clone(),
        }
    }
}

/// `[settings]`: how often probes run and how long telemetry may take to arrive.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Time between continuous (`during`) probes and safety checks (default 1s).
    pub probe_interval: Dur,
    /// Wait after the rollback before the `after` probes, cohorts and
    /// exemplars, so the last spans reach the store (default 2s).
    pub settle: Dur,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { probe_interval: Dur(Duration::from_secs(1)), settle: Dur(Duration::from_secs(2)) }
    }
}

/// `[[proxies]]`: a proxy the run creates (and always deletes).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyDecl {
    /// Its name on the agent.
    pub name: String,
    /// `host:port` it forwards to.
    pub upstream: String,
    /// Where it listens (default: an ephemeral port on all interfaces).
    #[serde(default)]
    pub listen: Option<String>,
}

/// When a probe runs. Litmus' modes map onto these: SOT = `before`, EOT =
/// `after`, Edge = `before` + `after`, OnChaos = `during`, Continuous = all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Before any fault: a deviation here fails the run and nothing is injected.
    Before,
    /// Every `probe_interval` while the method runs.
    During,
    /// After the rollback and the settle time.
    After,
}

fn all_phases() -> Vec<Phase> {
    vec![Phase::Before, Phase::During, Phase::After]
}

/// `[[steady_state]]`: one probe of the hypothesis. Which kind it is follows
/// from its fields: `service` (request stats from the store), `promql` (a
/// PromQL expression against a threshold) or `url` (an HTTP call).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// Shown in the journal and report.
    pub name: String,
    /// When it runs (default: before, during and after).
    #[serde(default = "all_phases")]
    pub when: Vec<Phase>,
    /// Stats probe: the service whose requests are measured.
    #[serde(default)]
    pub service: Option<String>,
    /// Stats probe: only this operation (span name).
    #[serde(default)]
    pub operation: Option<String>,
    /// Stats probe: span kinds counted (default server and consumer).
    #[serde(default)]
    pub span_kind: Option<String>,
    /// Stats probe: the median must stay below this many ms.
    #[serde(default)]
    pub p50_ms_below: Option<f64>,
    /// Stats probe: the 99th percentile must stay below this many ms.
    #[serde(default)]
    pub p99_ms_below: Option<f64>,
    /// Stats probe: the error rate (0..1) must not exceed this.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Stats probe: fewer requests than this in the window is a deviation
    /// (no traffic proves nothing; default 1).
    #[serde(default)]
    pub min_requests: Option<u64>,
    /// Stats probe: how far back each evaluation looks (default 10s; during
    /// the method never before the method's start).
    #[serde(default)]
    pub window: Option<Dur>,
    /// PromQL probe: an instant query; every series' value is checked.
    #[serde(default)]
    pub promql: Option<String>,
    /// PromQL probe: values must be below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// PromQL probe: values must be above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// HTTP probe: the URL called.
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP probe: the method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// HTTP probe: the status expected (default 200).
    #[serde(default)]
    pub status: Option<u16>,
    /// HTTP probe: the answer must come within this many ms.
    #[serde(default)]
    pub latency_ms_below: Option<f64>,
}

/// What a probe measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// `/api/v1/stats` of a service.
    Stats,
    /// `/api/v1/query`.
    PromQl,
    /// An HTTP call.
    Http,
}

impl Probe {
    /// The probe's kind, from its fields (validated: exactly one applies).
    pub fn kind(&self) -> ProbeKind {
        if self.promql.is_some() {
            ProbeKind::PromQl
        } else if self.url.is_some() {
            ProbeKind::Http
        } else {
            ProbeKind::Stats
        }
    }

    /// The stats window (default 10s).
    pub fn window(&self) -> Duration {
        self.window.map_or(Duration::from_secs(10), |w| w.0)
    }
}

/// `[[method]]`: one step. A fault (`toxic` / `toxics` on a `proxy` for a
/// `duration`), a process action (`process` + `action`), or a plain wait
/// (`wait = "5s"`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Shown in the journal and report.
    pub name: String,
    /// The proxy the step's toxics go on (a toxic may name its own).
    #[serde(default)]
    pub proxy: Option<String>,
    /// One toxic.
    #[serde(default)]
    pub toxic: Option<Spanned<ToxicSpec>>,
    /// Several toxics, applied together.
    #[serde(default)]
    pub toxics: Vec<Spanned<ToxicSpec>>,
    /// How long the toxics (or a pause) last; for a kill, how long to wait after it.
    #[serde(default)]
    pub duration: Option<Dur>,
    /// A process the agent started (by name or pid).
    #[serde(default)]
    pub process: Option<String>,
    /// `kill`, `pause` or `resume`.
    #[serde(default)]
    pub action: Option<String>,
    /// For `kill`: the signal (default SIGTERM).
    #[serde(default)]
    pub signal: Option<String>,
    /// A plain wait.
    #[serde(default)]
    pub wait: Option<Dur>,
}

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Toxics for a duration.
    Fault,
    /// A process kill / pause / resume.
    Process,
    /// Nothing, for a while.
    Wait,
}

impl Step {
    /// The step's kind (validated: exactly one applies).
    pub fn kind(&self) -> StepKind {
        if self.toxic.is_some() || !self.toxics.is_empty() {
            StepKind::Fault
        } else if self.process.is_some() {
            StepKind::Process
        } else {
            StepKind::Wait
        }
    }

    /// Its toxics, `toxic` first.
    pub fn all_toxics(&self) -> impl Iterator<Item = &ToxicSpec> {
        self.toxic.iter().chain(self.toxics.iter()).map(Spanned::get_ref)
    }

    /// How long the step lasts: `duration` or `wait`, zero when neither.
    pub fn length(&self) -> Duration {
        self.duration.or(self.wait).map_or(Duration::ZERO, |d| d.0)
    }
}

/// A toxic of a step, as the agent takes it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToxicSpec {
    /// One of [`TOXIC_TYPES`].
    #[serde(rename = "type")]
    pub kind: String,
    /// A suffix of the toxic's name on the agent (default: its type); the run
    /// prefixes `seismo-<run id>-`.
    #[serde(default)]
    pub name: Option<String>,
    /// Its proxy, when not the step's.
    #[serde(default)]
    pub proxy: Option<String>,
    /// `upstream` or `downstream` (default).
    #[serde(default)]
    pub stream: Option<String>,
    /// Probability per connection or request, 0 to 1 (default 1).
    #[serde(default)]
    pub toxicity: Option<f64>,
    /// The type's attributes (`latency`, `status`, `path_prefix`, ...).
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// `[[rollbacks]]`: extra clean-up that always runs: a process action, or an
/// HTTP call.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// Shown in the journal.
    pub name: String,
    /// A process the agent started.
    #[serde(default)]
    pub process: Option<String>,
    /// `kill`, `pause` or `resume`.
    #[serde(default)]
    pub action: Option<String>,
    /// For `kill`: the signal.
    #[serde(default)]
    pub signal: Option<String>,
    /// An URL to call.
    #[serde(default)]
    pub url: Option<String>,
    /// Its method (default POST).
    #[serde(default)]
    pub method: Option<String>,
}

/// `[safety]`: a condition that ends the run early (status `aborted`) and
/// rolls back, checked every `probe_interval` while the method runs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Safety {
    /// The service watched.
    pub service: String,
    /// Only this operation.
    #[serde(default)]
    pub operation: Option<String>,
    /// Abort when the error rate exceeds this...
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// ... or the p99 reaches this many ms...
    #[serde(default)]
    pub p99_ms_below: Option<f64>,
    /// ... over this window (default 5s) ...
    #[serde(default)]
    pub window: Option<Dur>,
    /// ... for at least this long (default 0: the first breach).
    #[serde(default)]
    pub sustained: Option<Dur>,
}

impl Experiment {
    /// Reads and validates the experiment at `path`.
    ///
    /// # Errors
    /// [`ExperimentError::Read`], or [`ExperimentError::Invalid`] naming the
    /// line and field.
    pub fn load(path: &Path) -> Result<Experiment> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ExperimentError::Read { path: path.to_path_buf(), source })?;
        Experiment::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ExperimentError::Invalid`] naming the line and field.
    pub fn parse(text: &str, origin: &str) -> Result<Experiment> {
        let invalid = |span: Option<Range<usize>>, message: String| {
            let (line, column) = line_column(text, span.map_or(0, |s| s.start));
            ExperimentError::Invalid { origin: origin.to_string(), line, column, message }
        };
        let experiment: Experiment =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim().to_string()))?;
        crate::validate::validate(&experiment).map_err(|(span, message)| invalid(Some(span), message))?;
        Ok(experiment)
    }

    /// Every proxy a step or toxic names, each once, in order.
    pub fn proxies_used(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for step in &self.method {
            for toxic in step.get_ref().all_toxics() {
                if let Some(p) = toxic.proxy.as_ref().or(step.get_ref().proxy.as_ref()) {
                    if !out.contains(p) {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const ISSUE_EXAMPLE: &str = r#"
title = "checkout tolerates a slow payments service"
[agent]
url = "http://127.0.0.1:8474"
[query]
url = "http://127.0.0.1:16686"
[[steady_state]]
name = "checkout stays fast"
service = "checkout"
p99_ms_below = 300          # also: max_error_rate = 0.01, operation = "...", min_requests = N
window = "10s"
[[method]]
name = "slow payments"
proxy = "payments"
toxic = { type = "latency", attributes = { latency = 400 } }
duration = "20s"
"#;

    #[test]
    fn the_issues_example_parses() {
        let e = Experiment::parse(ISSUE_EXAMPLE, "x.toml").unwrap();
        assert_eq!(e.title, "checkout tolerates a slow payments service");
        let probe = e.steady_state[0].get_ref();
        assert_eq!(
            (probe.kind(), probe.p99_ms_below, probe.window()),
            (ProbeKind::Stats, Some(300.0), Duration::from_secs(10))
        );
        assert_eq!(probe.when, all_phases());
        let step = e.method[0].get_ref();
        assert_eq!((step.kind(), step.length()), (StepKind::Fault, Duration::from_secs(20)));
        assert_eq!(step.all_toxics().next().unwrap().attributes["latency"], serde_json::json!(400));
        assert_eq!(e.proxies_used(), vec!["payments".to_string()]);
    }

    #[test]
    fn the_example_experiments_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/experiments");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Experiment::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 3, "{seen} examples in {}", dir.display());
    }

    #[test]
    fn line_columns() {
        assert_eq!(line_column("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_column("abc", 0), (1, 1));
    }
}
