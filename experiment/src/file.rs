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
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

use crate::error::{ExperimentError, Result};

/// Toxic types the agent knows (Toxiproxy's and seismo's HTTP-aware ones).
pub const TOXIC_TYPES: &[&str] = &[
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "http_abort",
    "http_delay",
];

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

/// A duration written as text: `250ms`, `10s`, `2m`, `1h`, or a sum (`1m30s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `250ms`, `10s`, `1.5s`, `2m`, `1h`, `1m30s`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> std::result::Result<Dur, String> {
        let bad = || format!("invalid duration {text:?} (write e.g. \"500ms\", \"10s\", \"2m\")");
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total = 0f64;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
            let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
            rest = &rest[num_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            total += number * scale;
            rest = &rest[unit_len..];
        }
        Ok(Dur(Duration::from_secs_f64(total)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Dur::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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
        experiment.validate().map_err(|(span, message)| invalid(Some(span), message))?;
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

    fn validate(&self) -> std::result::Result<(), (Range<usize>, String)> {
        if self.title.trim().is_empty() {
            return Err((0..0, "`title` must not be empty".into()));
        }
        for (field, endpoint) in [("agent.url", &self.agent), ("query.url", &self.query)] {
            let url = endpoint.url.get_ref();
            if seismo_client::AgentClient::new(url).is_err() {
                return Err((endpoint.url.span(), format!("`{field}`: {url:?} is not an http(s) URL")));
            }
        }
        if self.settings.probe_interval.0.is_zero() {
            return Err((0..0, "`settings.probe_interval` must be more than 0".into()));
        }
        for (i, p) in self.proxies.iter().enumerate() {
            let at = |m: String| (p.span(), format!("proxies[{i}]: {m}"));
            let decl = p.get_ref();
            if decl.name.is_empty() || decl.upstream.is_empty() {
                return Err(at("`name` and `upstream` must not be empty".into()));
            }
            if self.proxies[..i].iter().any(|q| q.get_ref().name == decl.name) {
                return Err(at(format!("`name`: proxy {:?} is declared twice", decl.name)));
            }
        }
        for (i, probe) in self.steady_state.iter().enumerate() {
            let p = probe.get_ref();
            validate_probe(p).map_err(|m| (probe.span(), format!("steady_state[{i}] ({:?}): {m}", p.name)))?;
        }
        if self.method.is_empty() {
            return Err((0..0, "no `[[method]]` step: an experiment needs at least one".into()));
        }
        for (i, step) in self.method.iter().enumerate() {
            let s = step.get_ref();
            validate_step(s)
                .map_err(|(span, m)| (span.unwrap_or(step.span()), format!("method[{i}] ({:?}): {m}", s.name)))?;
        }
        for (i, rollback) in self.rollbacks.iter().enumerate() {
            let r = rollback.get_ref();
            validate_rollback(r).map_err(|m| (rollback.span(), format!("rollbacks[{i}] ({:?}): {m}", r.name)))?;
        }
        if let Some(safety) = &self.safety {
            let s = safety.get_ref();
            let at = |m: &str| (safety.span(), format!("safety: {m}"));
            if s.max_error_rate.is_none() && s.p99_ms_below.is_none() {
                return Err(at("give `max_error_rate` or `p99_ms_below`"));
            }
            if s.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return Err(at("`max_error_rate` must be between 0 and 1"));
            }
            if s.p99_ms_below.is_some_and(|v| v <= 0.0) {
                return Err(at("`p99_ms_below` must be more than 0"));
            }
        }
        Ok(())
    }
}

fn validate_probe(p: &Probe) -> std::result::Result<(), String> {
    let kinds = [p.service.is_some(), p.promql.is_some(), p.url.is_some()].iter().filter(|&&b| b).count();
    if kinds != 1 {
        return Err("give exactly one of `service` (stats), `promql` or `url` (HTTP)".into());
    }
    if p.when.is_empty() {
        return Err("`when` must name at least one of \"before\", \"during\", \"after\"".into());
    }
    let stats_fields = p.p50_ms_below.is_some()
        || p.p99_ms_below.is_some()
        || p.max_error_rate.is_some()
        || p.min_requests.is_some()
        || p.operation.is_some()
        || p.window.is_some()
        || p.span_kind.is_some();
    match p.kind() {
        ProbeKind::Stats => {
            if !(p.p50_ms_below.is_some() || p.p99_ms_below.is_some() || p.max_error_rate.is_some()) {
                return Err("a stats probe needs `p99_ms_below`, `p50_ms_below` or `max_error_rate`".into());
            }
            for (field, v) in [("p50_ms_below", p.p50_ms_below), ("p99_ms_below", p.p99_ms_below)] {
                if v.is_some_and(|v| v <= 0.0 || !v.is_finite()) {
                    return Err(format!("`{field}` must be a number of ms above 0"));
                }
            }
            if p.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return Err("`max_error_rate` must be between 0 and 1 (0.01 is 1%)".into());
            }
            if p.window.is_some_and(|w| w.0.is_zero()) {
                return Err("`window` must be more than 0".into());
            }
            if p.below.is_some() || p.above.is_some() || p.status.is_some() || p.latency_ms_below.is_some() {
                return Err(
                    "`below`/`above` belong to `promql` probes, `status`/`latency_ms_below` to `url` probes".into()
                );
            }
        }
        ProbeKind::PromQl => {
            if p.below.is_none() && p.above.is_none() {
                return Err("a `promql` probe needs `below` or `above`".into());
            }
            if stats_fields || p.status.is_some() || p.latency_ms_below.is_some() {
                return Err("a `promql` probe takes only `promql`, `below`, `above` and `when`".into());
            }
        }
        ProbeKind::Http => {
            let url = p.url.as_deref().unwrap_or_default();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("`url`: {url:?} is not an http(s) URL"));
            }
            if stats_fields || p.below.is_some() || p.above.is_some() {
                return Err("a `url` probe takes only `url`, `method`, `status`, `latency_ms_below` and `when`".into());
            }
            if let Some(m) = &p.method {
                reqwest::Method::from_bytes(m.as_bytes())
                    .map_err(|_| format!("`method`: {m:?} is not an HTTP method"))?;
            }
        }
    }
    Ok(())
}

/// A step's error: the toxic's span when it is about one toxic, and the message.
type StepError = (Option<Range<usize>>, String);

fn validate_step(s: &Step) -> std::result::Result<(), StepError> {
    let has_toxics = s.toxic.is_some() || !s.toxics.is_empty();
    let kinds = [has_toxics, s.process.is_some(), s.wait.is_some()].iter().filter(|&&b| b).count();
    if kinds > 1 {
        return Err((None, "a step is one of: `toxic`/`toxics` (a fault), `process` + `action`, or `wait`".into()));
    }
    match s.kind() {
        StepKind::Fault => {
            if s.duration.is_none_or(|d| d.0.is_zero()) {
                return Err((None, "a fault step needs a `duration` (e.g. \"20s\")".into()));
            }
            for (j, spanned) in s.toxic.iter().chain(s.toxics.iter()).enumerate() {
                let t = spanned.get_ref();
                let at = |m: String| (Some(spanned.span()), format!("toxic {j} ({}): {m}", t.kind));
                if !TOXIC_TYPES.contains(&t.kind.as_str()) {
                    return Err(at(format!("`type`: unknown toxic type; one of {}", TOXIC_TYPES.join(", "))));
                }
                if t.proxy.is_none() && s.proxy.is_none() {
                    return Err(at("no `proxy`: name it on the step or the toxic".into()));
                }
                if t.toxicity.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
                    return Err(at("`toxicity` must be between 0 and 1".into()));
                }
                if t.stream.as_deref().is_some_and(|x| !matches!(x, "upstream" | "downstream")) {
                    return Err(at("`stream` must be \"upstream\" or \"downstream\"".into()));
                }
                if let Some(name) = &t.name {
                    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        return Err(at(format!("`name`: {name:?} may hold only letters, digits, '_' and '-'")));
                    }
                }
                for (k, v) in &t.attributes {
                    if !(v.is_number() || v.is_string()) {
                        return Err(at(format!("`attributes.{k}` must be a number or a string")));
                    }
                }
            }
            let mut names: Vec<String> = Vec::new();
            for t in s.all_toxics() {
                let key = format!(
                    "{}/{}",
                    t.proxy.as_ref().or(s.proxy.as_ref()).unwrap(),
                    t.name.as_ref().unwrap_or(&t.kind)
                );
                if names.contains(&key) {
                    return Err((None, format!("two toxics named {key:?}: give one a `name`")));
                }
                names.push(key);
            }
        }
        StepKind::Process => {
            match s.action.as_deref() {
                Some("kill" | "pause" | "resume") => {}
                Some(other) => return Err((None, format!("`action`: {other:?} is not kill, pause or resume"))),
                None => return Err((None, "a `process` step needs an `action` (kill, pause or resume)".into())),
            }
            if s.signal.is_some() && s.action.as_deref() != Some("kill") {
                return Err((None, "`signal` goes with `action = \"kill\"` only".into()));
            }
        }
        StepKind::Wait => {
            if s.proxy.is_some() || s.action.is_some() || s.signal.is_some() {
                return Err((None, "`proxy` without `toxic`, or `action`/`signal` without `process`".into()));
            }
            if s.wait.or(s.duration).is_none() {
                return Err((None, "an empty step: give `toxic`, `process` + `action`, or `wait`".into()));
            }
        }
    }
    Ok(())
}

fn validate_rollback(r: &Rollback) -> std::result::Result<(), String> {
    match (&r.process, &r.url) {
        (Some(_), None) => match r.action.as_deref() {
            Some("kill" | "pause" | "resume") => Ok(()),
            _ => Err("`action` must be kill, pause or resume".into()),
        },
        (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => Ok(()),
        (None, Some(url)) => Err(format!("`url`: {url:?} is not an http(s) URL")),
        _ => Err("give one of `process` + `action`, or `url`".into()),
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

    fn error(text: &str) -> (usize, String) {
        match Experiment::parse(text, "x.toml").unwrap_err() {
            ExperimentError::Invalid { line, message, .. } => (line, message),
            other => panic!("{other}"),
        }
    }

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
    fn durations() {
        assert_eq!(Dur::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(Dur::parse("1m30s").unwrap().0, Duration::from_secs(90));
        assert_eq!(Dur::parse("1.5s").unwrap().0, Duration::from_millis(1500));
        assert_eq!(Dur::parse("2h").unwrap().0, Duration::from_secs(7200));
        for bad in ["", "10", "s", "10 parsecs", "-1s"] {
            assert!(Dur::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Dur(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Dur(Duration::from_secs(20)).to_string(), "20s");
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let typo = ISSUE_EXAMPLE.replace("p99_ms_below = 300", "p99_below_ms = 300");
        let (line, message) = error(&typo);
        assert_eq!(line, 10, "{message}");
        assert!(message.contains("unknown field `p99_below_ms`"), "{message}");

        let (line, message) = error(&ISSUE_EXAMPLE.replace("\"latency\", attributes", "\"latncy\", attributes"));
        assert!((12..=16).contains(&line), "{line}");
        assert!(
            message.contains("method[0] (\"slow payments\")") && message.contains("unknown toxic type"),
            "{message}"
        );

        let (line, message) = error(&ISSUE_EXAMPLE.replace("window = \"10s\"", "window = \"10 seconds\""));
        assert_eq!(line, 11);
        assert!(message.contains("invalid duration"), "{message}");

        let (_, message) = error(&ISSUE_EXAMPLE.replace("duration = \"20s\"", ""));
        assert!(message.contains("needs a `duration`"), "{message}");

        let (_, message) = error(&ISSUE_EXAMPLE.replace("p99_ms_below = 300", "max_error_rate = 5"));
        assert!(message.contains("`max_error_rate` must be between 0 and 1"), "{message}");

        let (line, message) = error(&ISSUE_EXAMPLE.replace("http://127.0.0.1:8474", "127.0.0.1:8474"));
        assert_eq!(line, 4);
        assert!(message.contains("`agent.url`"), "{message}");

        let (_, message) =
            error(&ISSUE_EXAMPLE.replace("service = \"checkout\"", "service = \"checkout\"\npromql = \"up\""));
        assert!(message.contains("exactly one of"), "{message}");
    }

    #[test]
    fn every_step_kind_and_probe_kind() {
        let text = format!(
            "{ISSUE_EXAMPLE}{}",
            r#"
[[proxies]]
name = "payments_b"
upstream = "127.0.0.1:9"
[[steady_state]]
name = "up"
promql = "up"
above = 0
when = ["before", "after"]
[[steady_state]]
name = "health"
url = "http://127.0.0.1:1/healthz"
status = 200
latency_ms_below = 50
[[method]]
name = "two at once"
proxy = "payments"
duration = "1s"
toxics = [
  { type = "http_abort", toxicity = 0.5, attributes = { status = 503, path_prefix = "/pay" } },
  { type = "http_delay", proxy = "payments_b", attributes = { delay = 100 } },
]
[[method]]
name = "pause"
process = "payments"
action = "pause"
duration = "1s"
[[method]]
name = "breathe"
wait = "1s"
[[rollbacks]]
name = "resume"
process = "payments"
action = "resume"
[safety]
service = "checkout"
max_error_rate = 0.9
sustained = "2s"
"#
        );
        let e = Experiment::parse(&text, "x.toml").unwrap();
        let kinds: Vec<StepKind> = e.method.iter().map(|s| s.get_ref().kind()).collect();
        assert_eq!(kinds, vec![StepKind::Fault, StepKind::Fault, StepKind::Process, StepKind::Wait]);
        let probes: Vec<ProbeKind> = e.steady_state.iter().map(|p| p.get_ref().kind()).collect();
        assert_eq!(probes, vec![ProbeKind::Stats, ProbeKind::PromQl, ProbeKind::Http]);
        assert_eq!(e.proxies_used(), vec!["payments".to_string(), "payments_b".to_string()]);
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
