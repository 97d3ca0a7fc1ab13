//! The run's lifecycle: check the APIs, create the experiment's proxies,
//! probe the steady state, run the method while probing continuously and
//! watching the safety condition, **always** roll back, settle, probe
//! again, then compare cohorts and find exemplars — and write it all into
//! the [`Journal`].
//!
//! Rollback guarantees: the method runs in its own task and everything it
//! adds is in the ledger before the call that adds it. Whether the method
//! ends, fails, panics, is aborted by the safety condition or by a signal,
//! the run's own task undoes the ledger; signals that arrive during the
//! rollback only count (the caller's signal handler keeps the process
//! alive), so a second Ctrl-C does not leave faults behind.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use rand::Rng;
use seismo_client::api::toxiproxy::ProxyRequest;
use seismo_client::{AgentClient, Client, Cohort, StatsQuery};
use tokio::sync::watch;

use crate::cohort::{self, Target};
use crate::exemplar;
use crate::file::{Experiment, Phase, ProbeKind};
use crate::journal::{unix_ms, Journal, Status, JOURNAL_VERSION};
use crate::method::{self, run_of_toxic, Shared, TOXIC_PREFIX};
use crate::probe::{self, ProbeContext};
use crate::rollback::{self, Undo};

/// How a run is told about signals: the count of interrupts so far (the
/// first stops the method, later ones are only reported).
pub type Interrupts = watch::Receiver<u32>;

/// Options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The file, for the journal.
    pub experiment_file: Option<String>,
    /// How many exemplar traces to keep (default 5).
    pub exemplars: usize,
    /// The run id; a fresh one when `None`.
    pub run_id: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { experiment_file: None, exemplars: 5, run_id: None }
    }
}

/// A fresh run id: 10 lowercase letters and digits (no `-`, so a toxic name
/// `seismo-<run>-<step>-<name>` parses back).
pub fn new_run_id() -> String {
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(10).map(|c| (c as char).to_ascii_lowercase()).collect()
}

/// What the main phase ended with, before the rollback.
struct Ending {
    failed: Option<String>,
    aborted: Option<String>,
    method_window: Option<(SystemTime, SystemTime)>,
    interrupted: bool,
}

/// Runs `experiment` to the end and returns its journal. `progress` gets a
/// line for each thing the run does (for stderr).
pub async fn run(
    experiment: &Experiment,
    options: &RunOptions,
    mut interrupts: Interrupts,
    progress: &(dyn Fn(&str) + Sync),
) -> Journal {
    let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
    let start = SystemTime::now();
    let timeout = Duration::from_secs(10);
    let agent_url = experiment.agent.url.get_ref().clone();
    let query_url = experiment.query.url.get_ref().clone();
    let mut agent = AgentClient::new(&agent_url).expect("validated URL").with_timeout(timeout);
    if let Some(token) = experiment.agent.resolved_token() {
        agent = agent.with_token(token);
    }
    let mut query = Client::new(&query_url).expect("validated URL").with_timeout(timeout);
    if let Some(token) = experiment.query.resolved_token() {
        query = query.with_token(token);
    }
    let ctx = ProbeContext::new(query.clone());
    let mut journal = Journal {
        version: JOURNAL_VERSION,
        run_id: run_id.clone(),
        title: experiment.title.clone(),
        description: experiment.description.clone(),
        experiment_file: options.experiment_file.clone(),
        status: Status::Completed,
        reason: None,
        start: seismo_client::rfc3339(start),
        end: String::new(),
        start_ms: unix_ms(start),
        end_ms: 0,
        method_window_ms: None,
        agent_url,
        query_url,
        probes: Vec::new(),
        steps: Vec::new(),
        faults: Vec::new(),
        safety: None,
        cohorts: Vec::new(),
        exemplars: Vec::new(),
        erroring: Vec::new(),
        rollbacks: Vec::new(),
        rollback_verified: false,
        warnings: Vec::new(),
        regressions: None,
    };
    progress(&format!("run {run_id}: {}", experiment.title));
    let state = Shared::default();
    let ending = main_phase(experiment, &run_id, &agent, &ctx, &state, &mut journal, &mut interrupts, progress).await;

    // Always: undo the ledger, then the file's own rollbacks.
    let (pending, added_anything) = {
        let mut s = state.lock().expect("method state");
        (s.ledger.take_pending(), s.ledger.ever_recorded())
    };
    if !pending.is_empty() {
        progress(&format!("rolling back {} change(s)", pending.len()));
    }
    journal.rollbacks = rollback::undo_all(&agent, pending).await;
    if ending.method_window.is_some() && !experiment.rollbacks.is_empty() {
        let extra: Vec<_> = experiment.rollbacks.iter().map(|r| r.get_ref().clone()).collect();
        journal.rollbacks.extend(rollback::run_extra(&agent, &ctx.http, &extra).await);
    }
    {
        let mut s = state.lock().expect("method state");
        let now = unix_ms(SystemTime::now());
        for f in s.faults.iter_mut().filter(|f| f.end_ms.is_none()) {
            f.end_ms = Some(now);
        }
        journal.faults = std::mem::take(&mut s.faults);
        journal.steps = std::mem::take(&mut s.steps);
    }
    // Nothing added, nothing to verify (the agent may not even answer).
    journal.rollback_verified =
        !added_anything || verify_clean(&agent, &run_id, experiment, &mut journal.warnings).await;
    if !journal.rollback_verified {
        progress("WARNING: the agent may still hold something this run added (see the journal's warnings)");
    }

    // After the rollback: settle, probe again, and read what the faults did.
    let mut ending = ending;
    if let (Some((m_start, m_end)), false) = (ending.method_window, ending.interrupted) {
        journal.method_window_ms = Some((unix_ms(m_start), unix_ms(m_end)));
        progress(&format!("settling for {}", experiment.settings.settle));
        let settled = tokio::select! {
            _ = tokio::time::sleep(experiment.settings.settle.0) => true,
            _ = interrupts.changed() => false,
        };
        if settled {
            if ending.failed.is_none() && ending.aborted.is_none() {
                for p in experiment.steady_state.iter().map(|p| p.get_ref()).filter(|p| p.when.contains(&Phase::After))
                {
                    let r = probe::evaluate(&ctx, p, Phase::After, Some(m_end)).await;
                    progress(&format!("after: {} {}", r.name, if r.ok { "ok" } else { "DEVIATED" }));
                    journal.probes.push(r);
                }
            }
            analyse(experiment, &run_id, &query, options, m_start, m_end, &mut journal).await;
        } else if ending.failed.is_none() && ending.aborted.is_none() {
            ending.aborted = Some("interrupted by a signal after the method, before the after probes".into());
        }
    } else if let Some((m_start, m_end)) = ending.method_window {
        journal.method_window_ms = Some((unix_ms(m_start), unix_ms(m_end)));
    }

    let deviated: Vec<String> = journal
        .probes
        .iter()
        .filter(|p| p.phase != Phase::Before && !p.ok)
        .map(|p| format!("{:?} ({:?})", p.name, p.phase).to_lowercase())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    (journal.status, journal.reason) = if !journal.rollback_verified {
        // Faults may still be live: that outranks any verdict on the hypothesis.
        let left: Vec<&str> = journal.rollbacks.iter().filter_map(|r| r.error.as_deref()).collect();
        (Status::Failed, Some(format!("the rollback is incomplete, faults may still be active: {}", left.join("; "))))
    } else if let Some(reason) = ending.failed {
        (Status::Failed, Some(reason))
    } else if let Some(reason) = ending.aborted {
        (Status::Aborted, Some(reason))
    } else if !deviated.is_empty() {
        (Status::Deviated, Some(format!("the steady state deviated: {}", deviated.join(", "))))
    } else {
        (Status::Completed, None)
    };
    let end = SystemTime::now();
    journal.end = seismo_client::rfc3339(end);
    journal.end_ms = unix_ms(end);
    journal
}

/// Pre-flight, proxies, the `before` probes and the method. Returns early
/// (without touching the agent further) at the first thing that fails.
#[allow(clippy::too_many_arguments)]
async fn main_phase(
    experiment: &Experiment,
    run_id: &str,
    agent: &AgentClient,
    ctx: &ProbeContext,
    state: &Shared,
    journal: &mut Journal,
    interrupts: &mut Interrupts,
    progress: &(dyn Fn(&str) + Sync),
) -> Ending {
    let mut ending = Ending { failed: None, aborted: None, method_window: None, interrupted: false };
    let interrupted = |i: &Interrupts| *i.borrow() > 0;

    // 1. Both APIs answer; the proxies the method uses exist (or are ours to create).
    if let Err(e) = agent.version().await {
        ending.failed = Some(format!("the agent does not answer: {e}"));
        return ending;
    }
    if let Err(e) = ctx.query.services().await {
        ending.failed = Some(format!("the query API does not answer: {e}"));
        return ending;
    }
    let proxies = match agent.proxies().await {
        Ok(p) => p,
        Err(e) => {
            ending.failed = Some(format!("listing the agent's proxies: {e}"));
            return ending;
        }
    };
    for (name, proxy) in &proxies {
        for toxic in &proxy.toxics {
            if let Some(other) = run_of_toxic(&toxic.name) {
                journal.warnings.push(format!(
                    "proxy {name} holds toxic {} of run {other}, which did not roll back (or still runs); remove it with DELETE /proxies/{name}/toxics/{}",
                    toxic.name, toxic.name
                ));
            }
        }
    }
    let declared: Vec<&str> = experiment.proxies.iter().map(|p| p.get_ref().name.as_str()).collect();
    for used in experiment.proxies_used() {
        if !proxies.contains_key(&used) && !declared.contains(&used.as_str()) {
            ending.failed = Some(format!(
                "the method uses proxy {used:?}, which the agent does not have and [[proxies]] does not create"
            ));
            return ending;
        }
    }
    for name in &declared {
        if proxies.contains_key(*name) {
            ending.failed = Some(format!("[[proxies]] {name:?} already exists on the agent; the run creates its own"));
            return ending;
        }
    }

    // 2. The experiment's own proxies.
    for p in &experiment.proxies {
        let p = p.get_ref();
        state.lock().expect("method state").ledger.record(Undo::DeleteProxy { name: p.name.clone() });
        let request = ProxyRequest {
            name: Some(p.name.clone()),
            upstream: Some(p.upstream.clone()),
            listen: p.listen.clone(),
            enabled: Some(true),
        };
        match agent.create_proxy(&request).await {
            Ok(created) => progress(&format!("created proxy {} on {}", created.name, created.listen)),
            Err(e) => {
                ending.failed = Some(format!("creating proxy {:?}: {e}", p.name));
                return ending;
            }
        }
    }

    // 3. The steady state before: a deviation here fails the run, nothing is injected.
    let mut broken = Vec::new();
    for p in experiment.steady_state.iter().map(|p| p.get_ref()).filter(|p| p.when.contains(&Phase::Before)) {
        let r = probe::evaluate(ctx, p, Phase::Before, None).await;
        progress(&format!("before: {} {}", r.name, if r.ok { "ok" } else { "DEVIATED" }));
        if !r.ok {
            broken.push(format!("{:?}", r.name));
        }
        journal.probes.push(r);
    }
    if !broken.is_empty() {
        ending.failed = Some(format!("the steady state did not hold before the method: {}", broken.join(", ")));
        return ending;
    }
    if interrupted(interrupts) {
        ending.aborted = Some("interrupted before the method".into());
        ending.interrupted = true;
        return ending;
    }

    // 4. The method, probed continuously, watched by the safety condition.
    let method_start = SystemTime::now();
    progress(&format!("method: {} step(s)", experiment.method.len()));
    let steps: Vec<_> = experiment.method.iter().map(|s| s.get_ref().clone()).collect();
    let mut task = tokio::spawn(method::run_method(agent.clone(), run_id.to_string(), steps, state.clone()));
    let during: Vec<_> =
        experiment.steady_state.iter().map(|p| p.get_ref()).filter(|p| p.when.contains(&Phase::During)).collect();
    let safety = experiment.safety.as_ref().map(|s| s.get_ref());
    let mut ticker = tokio::time::interval(experiment.settings.probe_interval.0);
    ticker.tick().await; // the first tick is immediate: probe one interval in
    let mut breach_since: Option<SystemTime> = None;
    let outcome = loop {
        tokio::select! {
            done = &mut task => break Some(done),
            _ = interrupts.changed() => {
                progress("interrupted: stopping the method and rolling back (further interrupts do not stop the rollback)");
                ending.aborted = Some("interrupted by a signal during the method".into());
                ending.interrupted = true;
                break None;
            }
            _ = ticker.tick() => {
                for p in &during {
                    let r = probe::evaluate(ctx, p, Phase::During, Some(method_start)).await;
                    if !r.ok {
                        progress(&format!("during: {} DEVIATED", r.name));
                    }
                    journal.probes.push(r);
                }
                if let Some(safety) = safety {
                    let (breached, measures) = probe::safety_breached(ctx, safety, method_start).await;
                    let now = SystemTime::now();
                    if !breached {
                        breach_since = None;
                    } else {
                        let since = *breach_since.get_or_insert(now);
                        let sustained = safety.sustained.map_or(Duration::ZERO, |d| d.0);
                        if now.duration_since(since).unwrap_or_default() >= sustained {
                            let what: Vec<String> = measures.iter().filter(|m| !m.ok).map(|m| {
                                format!("{} {} = {:.3} (limit {} {})", safety.service, m.what, m.value.unwrap_or(f64::NAN), m.op, m.threshold)
                            }).collect();
                            let text = format!("{} for {}", what.join(", "), crate::file::Dur(sustained));
                            progress(&format!("safety: {text}: aborting"));
                            journal.safety = Some(text.clone());
                            ending.aborted = Some(format!("safety condition breached: {text}"));
                            break None;
                        }
                    }
                }
            }
        }
    };
    if outcome.is_none() {
        task.abort();
        let _ = (&mut task).await;
    }
    match outcome {
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(step_error))) => ending.failed = Some(step_error),
        Some(Err(join)) if join.is_panic() => ending.failed = Some("a method step panicked".into()),
        Some(Err(join)) => ending.failed = Some(format!("the method stopped: {join}")),
        None => {}
    }
    ending.method_window = Some((method_start, SystemTime::now()));
    ending
}

/// Cohorts, exemplars (and each fault's touched count) and erroring
/// operations over the method's window. Failures become warnings: the
/// verdict stands without them.
async fn analyse(
    experiment: &Experiment,
    run_id: &str,
    query: &Client,
    options: &RunOptions,
    m_start: SystemTime,
    m_end: SystemTime,
    journal: &mut Journal,
) {
    let mut targets: Vec<Target> = experiment
        .steady_state
        .iter()
        .map(|p| p.get_ref())
        .filter(|p| p.kind() == ProbeKind::Stats)
        .map(|p| Target { service: p.service.clone().unwrap_or_default(), operation: p.operation.clone() })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if targets.is_empty() {
        // No stats probe: every service the faults reached.
        let q = StatsQuery {
            start: Some(m_start),
            end: Some(m_end),
            cohort: Some(Cohort { experiment: run_id.to_string(), faulted: true }),
            ..StatsQuery::default()
        };
        if let Ok(answer) = query.stats(&q).await {
            targets = answer
                .services
                .into_iter()
                .filter(|s| s.service != seismo_analysis::faults::CHAOS_SERVICE)
                .map(|s| Target { service: s.service, operation: None })
                .collect();
        }
    }
    match cohort::cohorts(query, run_id, &targets, m_start, m_end).await {
        Ok(c) => journal.cohorts = c,
        Err(e) => journal.warnings.push(format!("cohorts: {e}")),
    }
    let search_end = m_end + experiment.settings.settle.0;
    match exemplar::exemplars(query, run_id, m_start, search_end, &mut journal.faults, options.exemplars).await {
        Ok(e) => journal.exemplars = e,
        Err(e) => journal.warnings.push(format!("exemplars: {e}")),
    }
    match cohort::erroring(query, m_start, m_end).await {
        Ok(e) => journal.erroring = e,
        Err(e) => journal.warnings.push(format!("erroring operations: {e}")),
    }
}

/// Whether the agent holds no toxic of this run and no proxy the run created.
async fn verify_clean(agent: &AgentClient, run_id: &str, experiment: &Experiment, warnings: &mut Vec<String>) -> bool {
    let prefix = format!("{TOXIC_PREFIX}{run_id}-");
    match agent.proxies().await {
        Ok(proxies) => {
            let mut clean = true;
            for (name, proxy) in &proxies {
                if experiment.proxies.iter().any(|p| &p.get_ref().name == name) {
                    warnings.push(format!("proxy {name}, created by this run, is still on the agent"));
                    clean = false;
                }
                for toxic in proxy.toxics.iter().filter(|t| t.name.starts_with(&prefix)) {
                    warnings.push(format!("toxic {} of this run is still on proxy {name}", toxic.name));
                    clean = false;
                }
            }
            clean
        }
        Err(e) => {
            warnings.push(format!("could not verify the rollback: {e}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_parse_back_from_toxic_names() {
        let id = new_run_id();
        assert_eq!(id.len(), 10);
        assert!(id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(run_of_toxic(&method::toxic_name(&id, 0, "latency")), Some(id.as_str()));
    }
}
