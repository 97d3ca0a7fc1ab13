//! The agent's state behind the API: its proxies, the fault sink every
//! proxy reports to, the processes it started, and its connection tasks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::faults::FaultSink;
use crate::process::{CommandPolicy, Processes};
use crate::proxy::Proxy;

/// The agent's state behind the API.
pub struct Agent {
    pub(crate) proxies: Mutex<BTreeMap<String, Proxy>>,
    /// Serializes changes that wait for a listener to close.
    pub(crate) ops: tokio::sync::Mutex<()>,
    pub(crate) faults: Arc<FaultSink>,
    pub(crate) processes: Processes,
    pub(crate) tasks: TaskTracker,
}

impl Agent {
    pub(crate) fn new(faults: Arc<FaultSink>, commands: CommandPolicy) -> Agent {
        Agent {
            proxies: Mutex::new(BTreeMap::new()),
            ops: tokio::sync::Mutex::new(()),
            faults,
            processes: Processes::new(commands),
            tasks: TaskTracker::new(),
        }
    }

    /// Closes every listener and connection, resumes paused processes and
    /// stops started ones. Spans still have to be flushed (`FaultSink::shutdown`).
    pub(crate) async fn stop(&self) {
        let stopping: Vec<_> = self.proxies.lock().unwrap().values_mut().map(|p| p.stop()).collect();
        for s in stopping {
            s.wait().await;
        }
        // Connections were cancelled with their proxies; let them export their spans.
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await.is_err() {
            tracing::warn!("connections still closing after 2 s");
        }
        self.processes.shutdown();
    }
}
