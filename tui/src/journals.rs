//! Experiment runs for the Chaos screen, read from the journals
//! `seismo chaos run --journal FILE` writes into a folder (`--journals DIR`).
//!
//! The journal's format belongs to the experiment runner; this reads only
//! the few fields the screen shows (run, status, window, faults, exemplar
//! traces), every other field ignored and every list optional, so a newer
//! journal still loads. A file that is not a journal is skipped and
//! counted, not an error: the folder may hold other JSON.

use std::path::Path;

use serde::Deserialize;

/// What the Chaos screen shows of one run.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RunSummary {
    /// The run's id (also the `chaos.experiment.id` of its fault spans).
    pub run_id: String,
    /// The experiment's title.
    #[serde(default)]
    pub title: String,
    /// `completed`, `deviated`, `aborted` or `failed`.
    pub status: String,
    /// Why it ended that way, when it says.
    #[serde(default)]
    pub reason: Option<String>,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms.
    pub end_ms: i64,
    /// The faults it injected.
    #[serde(default)]
    pub faults: Vec<RunFault>,
    /// Traces its faults touched, as examples.
    #[serde(default)]
    pub exemplars: Vec<RunExemplar>,
}

/// One fault of a run.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RunFault {
    /// Toxic type, or `process <action>`.
    pub kind: String,
    /// The proxy, for a toxic.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Applied, Unix ms.
    pub start_ms: i64,
    /// Removed, Unix ms.
    #[serde(default)]
    pub end_ms: Option<i64>,
    /// Requests it touched.
    #[serde(default)]
    pub touched: Option<u64>,
}

/// A trace a run's fault touched.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RunExemplar {
    /// The trace id.
    pub trace_id: String,
}

/// The runs of every `*.json` journal in `dir`, newest first, and how many
/// files were not journals.
///
/// # Errors
/// The folder cannot be read (a file that cannot is skipped and counted).
pub fn read_dir(dir: &Path) -> std::io::Result<(Vec<RunSummary>, usize)> {
    let mut runs = Vec::new();
    let mut skipped = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice::<RunSummary>(&bytes).ok()) {
            Some(run) => runs.push(run),
            None => skipped += 1,
        }
    }
    runs.sort_by(|a, b| b.start_ms.cmp(&a.start_ms).then_with(|| a.run_id.cmp(&b.run_id)));
    Ok((runs, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_read_dir_reads_journals_newest_first_and_counts_the_rest() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journals");
        let (runs, skipped) = read_dir(&dir).unwrap();
        let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["exp-43", "exp-42"]);
        assert_eq!(skipped, 1, "not_a_journal.json");
        assert_eq!(runs[1].faults[0].proxy.as_deref(), Some("payments"));
        assert_eq!(runs[1].exemplars.len(), 2);
    }
}
