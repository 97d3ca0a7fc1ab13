//! The method: steps run one after the other. A fault step adds its toxics
//! (each carrying the run id, so its fault spans name the run), holds them
//! for `duration`, and removes them; a process step signals a process the
//! agent started; a wait waits. Everything added goes into the ledger
//! first, so the run's rollback removes whatever a step left behind when it
//! failed, panicked or was cancelled.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use seismo_client::api::toxiproxy::ToxicRequest;
use seismo_client::{AgentClient, ProcessAction};

use crate::file::{Step, StepKind};
use crate::journal::{unix_ms, FaultRecord, StepRecord};
use crate::rollback::{Ledger, Undo};

/// What the method and the run share: the ledger, and what happened so far.
#[derive(Debug, Default)]
pub struct MethodState {
    /// What is still to undo.
    pub ledger: Ledger,
    /// Faults applied.
    pub faults: Vec<FaultRecord>,
    /// Steps started.
    pub steps: Vec<StepRecord>,
}

/// Shared between the method's task and the run.
pub type Shared = Arc<Mutex<MethodState>>;

/// The name a run gives a toxic on the agent: `seismo-<run>-<step>-<name>`,
/// so a leftover says which run left it.
pub fn toxic_name(run_id: &str, step: usize, name: &str) -> String {
    format!("{}{run_id}-{step}-{name}", TOXIC_PREFIX)
}

/// Every toxic a run adds starts with this.
pub const TOXIC_PREFIX: &str = "seismo-";

/// The run id in a toxic name written by [`toxic_name`].
pub fn run_of_toxic(name: &str) -> Option<&str> {
    name.strip_prefix(TOXIC_PREFIX)?.split('-').next()
}

/// Runs `steps` in order; stops at the first that fails.
///
/// # Errors
/// The failing step's index and what went wrong.
pub async fn run_method(agent: AgentClient, run_id: String, steps: Vec<Step>, state: Shared) -> Result<(), String> {
    for (i, step) in steps.iter().enumerate() {
        let kind = match step.kind() {
            StepKind::Fault => "fault",
            StepKind::Process => "process",
            StepKind::Wait => "wait",
        };
        let record = StepRecord {
            name: step.name.clone(),
            kind: kind.into(),
            start_ms: unix_ms(SystemTime::now()),
            end_ms: None,
            outcome: "interrupted".into(),
            error: None,
        };
        let index = {
            let mut s = state.lock().expect("method state");
            s.steps.push(record);
            s.steps.len() - 1
        };
        let outcome = match step.kind() {
            StepKind::Fault => fault_step(&agent, &run_id, i, step, &state).await,
            StepKind::Process => process_step(&agent, i, step, &state).await,
            StepKind::Wait => {
                tokio::time::sleep(step.length()).await;
                Ok(())
            }
        };
        let mut s = state.lock().expect("method state");
        let record = &mut s.steps[index];
        record.end_ms = Some(unix_ms(SystemTime::now()));
        match outcome {
            Ok(()) => record.outcome = "ok".into(),
            Err(e) => {
                record.outcome = "failed".into();
                record.error = Some(e.clone());
                return Err(format!("step {i} ({:?}) failed: {e}", step.name));
            }
        }
    }
    Ok(())
}

async fn fault_step(agent: &AgentClient, run_id: &str, i: usize, step: &Step, state: &Shared) -> Result<(), String> {
    let mut added: Vec<(u64, String, String, usize)> = Vec::new();
    for toxic in step.all_toxics() {
        let proxy = toxic.proxy.clone().or_else(|| step.proxy.clone()).expect("validated: a toxic has a proxy");
        let name = toxic_name(run_id, i, toxic.name.as_deref().unwrap_or(&toxic.kind));
        let request = ToxicRequest {
            name: Some(name.clone()),
            kind: Some(toxic.kind.clone()),
            stream: toxic.stream.clone(),
            toxicity: toxic.toxicity,
            attributes: Some(toxic.attributes.clone()),
            experiment: Some(run_id.to_string()),
        };
        let (id, fault) = {
            let mut s = state.lock().expect("method state");
            let id = s.ledger.record(Undo::RemoveToxic { proxy: proxy.clone(), name: name.clone() });
            s.faults.push(FaultRecord {
                step: i,
                name: name.clone(),
                kind: toxic.kind.clone(),
                proxy: Some(proxy.clone()),
                stream: Some(toxic.stream.clone().unwrap_or_else(|| "downstream".into())),
                toxicity: Some(toxic.toxicity.unwrap_or(1.0)),
                attributes: toxic.attributes.clone(),
                start_ms: unix_ms(SystemTime::now()),
                end_ms: None,
                touched: None,
                touched_is_lower_bound: false,
            });
            (id, s.faults.len() - 1)
        };
        if let Err(e) = agent.add_toxic(&proxy, &request).await {
            let mut s = state.lock().expect("method state");
            s.faults[fault].end_ms = Some(s.faults[fault].start_ms);
            return Err(format!("adding toxic {name} to proxy {proxy}: {e}"));
        }
        added.push((id, proxy, name, fault));
    }
    tokio::time::sleep(step.length()).await;
    for (id, proxy, name, fault) in added {
        match agent.remove_toxic(&proxy, &name).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            // Left in the ledger: the rollback tries again.
            Err(e) => return Err(format!("removing toxic {name} from proxy {proxy}: {e}")),
        }
        let mut s = state.lock().expect("method state");
        s.ledger.settle(id);
        s.faults[fault].end_ms = Some(unix_ms(SystemTime::now()));
    }
    Ok(())
}

async fn process_step(agent: &AgentClient, i: usize, step: &Step, state: &Shared) -> Result<(), String> {
    let target = step.process.clone().expect("validated: a process step names one");
    let action_name = step.action.clone().unwrap_or_default();
    let action = match action_name.as_str() {
        "kill" => ProcessAction::Kill,
        "pause" => ProcessAction::Pause,
        _ => ProcessAction::Resume,
    };
    let (id, fault) = {
        let mut s = state.lock().expect("method state");
        let id =
            (action == ProcessAction::Pause).then(|| s.ledger.record(Undo::ResumeProcess { target: target.clone() }));
        s.faults.push(FaultRecord {
            step: i,
            name: target.clone(),
            kind: format!("process {action_name}"),
            proxy: None,
            stream: None,
            toxicity: None,
            attributes: step.signal.iter().map(|s| ("signal".to_string(), s.clone().into())).collect(),
            start_ms: unix_ms(SystemTime::now()),
            end_ms: None,
            touched: None,
            touched_is_lower_bound: false,
        });
        (id, s.faults.len() - 1)
    };
    agent
        .signal_process(&target, action, step.signal.as_deref())
        .await
        .map_err(|e| format!("{action_name} process {target}: {e}"))?;
    tokio::time::sleep(step.length()).await;
    if let Some(id) = id {
        agent
            .signal_process(&target, ProcessAction::Resume, None)
            .await
            .map_err(|e| format!("resume process {target}: {e}"))?;
        state.lock().expect("method state").ledger.settle(id);
    }
    state.lock().expect("method state").faults[fault].end_ms = Some(unix_ms(SystemTime::now()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxic_names_say_which_run_left_them() {
        let name = toxic_name("k3x9", 2, "latency");
        assert_eq!(name, "seismo-k3x9-2-latency");
        assert_eq!(run_of_toxic(&name), Some("k3x9"));
        assert_eq!(run_of_toxic("latency_downstream"), None);
    }
}
