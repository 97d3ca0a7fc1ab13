//! The rollback ledger: everything the run added to the agent, written down
//! *before* the call that adds it (so an interruption between the call and
//! its answer still cleans it up), crossed off when the run removes it
//! itself, and undone in reverse order at the end whatever happened.
//! Undoing something already gone (404) counts as undone.

use std::time::Duration;

use seismo_client::{AgentClient, ClientError, ProcessAction};

use crate::file::Rollback;
use crate::journal::{unix_ms, RollbackRecord};

/// One thing to undo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Undo {
    /// A toxic the run added.
    RemoveToxic {
        /// Its proxy.
        proxy: String,
        /// Its name.
        name: String,
    },
    /// A proxy the run created.
    DeleteProxy {
        /// Its name.
        name: String,
    },
    /// A process the run paused.
    ResumeProcess {
        /// Its name or pid.
        target: String,
    },
}

impl Undo {
    /// What undoing it does, in words.
    pub fn describe(&self) -> String {
        match self {
            Undo::RemoveToxic { proxy, name } => format!("remove toxic {name} from proxy {proxy}"),
            Undo::DeleteProxy { name } => format!("delete proxy {name}"),
            Undo::ResumeProcess { target } => format!("resume process {target}"),
        }
    }

    async fn apply(&self, agent: &AgentClient) -> Result<(), ClientError> {
        let done = match self {
            Undo::RemoveToxic { proxy, name } => agent.remove_toxic(proxy, name).await,
            Undo::DeleteProxy { name } => agent.delete_proxy(name).await,
            Undo::ResumeProcess { target } => agent.signal_process(target, ProcessAction::Resume, None).await.map(drop),
        };
        match done {
            // Already gone (or, for a process, already exited): undone.
            Err(e) if e.is_not_found() || e.status() == Some(410) => Ok(()),
            other => other,
        }
    }
}

/// What the run added and has not removed yet.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Vec<(u64, Undo)>,
    next: u64,
}

impl Ledger {
    /// Writes `undo` down; the id crosses it off with [`Ledger::settle`].
    pub fn record(&mut self, undo: Undo) -> u64 {
        self.next += 1;
        self.entries.push((self.next, undo));
        self.next
    }

    /// Crosses off an entry the run undid itself.
    pub fn settle(&mut self, id: u64) {
        self.entries.retain(|(i, _)| *i != id);
    }

    /// Takes every open entry, newest first (the order to undo them in).
    pub fn take_pending(&mut self) -> Vec<Undo> {
        let mut out: Vec<Undo> = self.entries.drain(..).map(|(_, u)| u).collect();
        out.reverse();
        out
    }

    /// Whether anything was ever recorded (settled or not).
    pub fn ever_recorded(&self) -> bool {
        self.next > 0
    }

    /// How many entries are open.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is open.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Undoes `pending` in order. Each undo is tried up to three times (a
/// transport error may be a blip); one that still fails is reported and the
/// rest go on.
pub async fn undo_all(agent: &AgentClient, pending: Vec<Undo>) -> Vec<RollbackRecord> {
    let mut out = Vec::with_capacity(pending.len());
    for undo in pending {
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            match undo.apply(agent).await {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e.to_string()),
            }
        }
        out.push(RollbackRecord {
            what: undo.describe(),
            at_ms: unix_ms(std::time::SystemTime::now()),
            ok: last.is_none(),
            error: last,
        });
    }
    out
}

/// Runs the file's `[[rollbacks]]`, each once, in order; a failure is
/// reported and the rest go on.
pub async fn run_extra(agent: &AgentClient, http: &reqwest::Client, rollbacks: &[Rollback]) -> Vec<RollbackRecord> {
    let mut out = Vec::with_capacity(rollbacks.len());
    for r in rollbacks {
        let outcome: Result<(), String> = match (&r.process, &r.url) {
            (Some(target), _) => {
                let action = match r.action.as_deref() {
                    Some("kill") => ProcessAction::Kill,
                    Some("pause") => ProcessAction::Pause,
                    _ => ProcessAction::Resume,
                };
                agent.signal_process(target, action, r.signal.as_deref()).await.map(drop).map_err(|e| e.to_string())
            }
            (None, Some(url)) => {
                let method = reqwest::Method::from_bytes(r.method.as_deref().unwrap_or("POST").as_bytes())
                    .unwrap_or(reqwest::Method::POST);
                match http.request(method, url).send().await {
                    Ok(a) if a.status().is_success() => Ok(()),
                    Ok(a) => Err(format!("{url} answered {}", a.status())),
                    Err(e) => Err(format!("{url}: {e}")),
                }
            }
            (None, None) => Ok(()),
        };
        out.push(RollbackRecord {
            what: format!("rollback {:?}", r.name),
            at_ms: unix_ms(std::time::SystemTime::now()),
            ok: outcome.is_ok(),
            error: outcome.err(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_undoes_what_is_open_newest_first() {
        let mut ledger = Ledger::default();
        let proxy = ledger.record(Undo::DeleteProxy { name: "p".into() });
        let a = ledger.record(Undo::RemoveToxic { proxy: "p".into(), name: "a".into() });
        ledger.record(Undo::RemoveToxic { proxy: "p".into(), name: "b".into() });
        ledger.settle(a);
        assert_eq!(ledger.len(), 2);
        let pending = ledger.take_pending();
        assert_eq!(
            pending,
            vec![Undo::RemoveToxic { proxy: "p".into(), name: "b".into() }, Undo::DeleteProxy { name: "p".into() }]
        );
        assert!(ledger.is_empty());
        ledger.settle(proxy);
        assert_eq!(pending[0].describe(), "remove toxic b from proxy p");
    }
}
