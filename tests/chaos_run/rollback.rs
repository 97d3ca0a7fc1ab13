//! Rollback guarantees: nothing the run added stays on the agent after a
//! SIGINT mid-method (and a second one during the rollback), a failing
//! step, or a safety abort; `--dry-run` touches nothing.

use super::*;
use seismo_experiment::Status;

/// Interrupted twice in the middle of a 60 s fault: exit 4 (aborted), the
/// toxic and the proxy the run created are gone.
#[test]
fn sigint_mid_method_rolls_back_everything() {
    let lab = Lab::start();
    let file = lab.experiment(
        "interrupted",
        &format!(
            r#"
[[proxies]]
name = "payments_direct"
upstream = "{}"
[[method]]
name = "slow for a long time"
proxy = "payments"
toxics = [
  {{ type = "latency", attributes = {{ latency = 50 }} }},
  {{ type = "http_delay", proxy = "payments_direct", attributes = {{ delay = 10 }} }},
]
duration = "60s"
"#,
            lab.upstream
        ),
    );
    let journal = lab.journal_path("interrupted");
    let child = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["chaos", "run", file.to_str().unwrap(), "--journal", journal.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until both toxics are on, then interrupt twice.
    eventually(Duration::from_secs(30), || (lab.agent_state().0.len() == 2).then_some(()));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let out = child.wait_with_output().unwrap();
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!(code, 4, "aborted exits 4\nstdout:\n{stdout}\nstderr:\n{stderr}");
    lab.assert_clean();
    let journal = Journal::read(&journal).unwrap();
    assert_eq!(journal.status, Status::Aborted);
    assert!(journal.reason.as_deref().unwrap().contains("interrupted"), "{:?}", journal.reason);
    assert!(journal.rollback_verified);
    assert!(journal.rollbacks.iter().all(|r| r.ok), "{:?}", journal.rollbacks);
    assert!(journal.rollbacks.iter().any(|r| r.what == "delete proxy payments_direct"), "{:?}", journal.rollbacks);
    assert_eq!(journal.steps[0].outcome, "interrupted");
}

/// The second toxic of a step is refused by the agent: the step fails
/// (exit 1) and the first toxic, already added, is removed. A toxic another
/// run left behind is reported and left alone.
#[test]
fn a_failing_step_rolls_back_what_it_added() {
    let lab = Lab::start();
    let leftover = r#"{"name": "seismo-otherrun00-0-latency", "type": "latency", "attributes": {"latency": 0}}"#;
    assert_eq!(lab.agent.request("POST", "/proxies/payments/toxics", Some(leftover)).0, 200);
    let file = lab.experiment(
        "refused",
        r#"
[[method]]
name = "one good, one refused"
proxy = "payments"
duration = "30s"
toxics = [
  { type = "latency", attributes = { latency = 10 } },
  { type = "bandwidth", attributes = { rate = "fast" } },
]
"#,
    );
    let (code, stdout, stderr, journal) = lab.run(&file, &[]);
    assert_eq!(code, 1, "failed exits 1\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(journal.status, Status::Failed);
    assert!(journal.reason.as_deref().unwrap().contains("bandwidth"), "{:?}", journal.reason);
    assert_eq!(journal.steps[0].outcome, "failed");
    assert!(
        journal.rollbacks.iter().any(|r| r.what.contains("-0-latency from proxy payments") && r.ok),
        "{:?}",
        journal.rollbacks
    );
    assert!(
        journal.warnings.iter().any(|w| w.contains("seismo-otherrun00-0-latency of run otherrun00")),
        "{:?}",
        journal.warnings
    );
    assert_eq!(lab.agent_state().0, vec!["payments/seismo-otherrun00-0-latency".to_string()]);
    assert_eq!(lab.agent.request("DELETE", "/proxies/payments/toxics/seismo-otherrun00-0-latency", None).0, 204);
    lab.assert_clean();
}

/// Every request fails while payments aborts them all: the safety condition
/// (error rate above 50% for 1 s) ends a 60 s method early, exit 4.
#[test]
fn a_breached_safety_condition_aborts_and_rolls_back() {
    let lab = Lab::start();
    let file = lab.experiment(
        "unsafe",
        r#"
[[method]]
name = "payments down"
proxy = "payments"
toxic = { type = "http_abort", attributes = { status = 503 } }
duration = "60s"
[safety]
service = "checkout"
max_error_rate = 0.5
window = "2s"
sustained = "1s"
"#,
    );
    let (code, stdout, stderr, journal) = lab.run(&file, &[]);
    assert_eq!(code, 4, "aborted exits 4\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(journal.status, Status::Aborted);
    let safety = journal.safety.as_deref().unwrap();
    assert!(safety.contains("checkout error_rate"), "{safety}");
    assert!(journal.reason.as_deref().unwrap().starts_with("safety condition breached"), "{:?}", journal.reason);
    lab.assert_clean();
}

/// `--dry-run` prints the plan and exits 0 without contacting anything: the
/// agent named in the file does not even exist.
#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dry.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/experiments/slow-payments.toml"))
        .unwrap()
        .replace("http://127.0.0.1:8474", "http://127.0.0.1:1");
    std::fs::write(&file, text).unwrap();
    let journal = dir.path().join("dry.json");
    let out = seismo(&["chaos", "run", file.to_str().unwrap(), "--dry-run", "--journal", journal.to_str().unwrap()]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("nothing is contacted, nothing injected"), "{stdout}");
    assert!(stdout.contains("add latency on payments (downstream, latency=400) for 20s, then remove"), "{stdout}");
    assert!(!journal.exists(), "a dry run writes no journal");
}

/// A process the agent started, paused by a step for 60 s: a SIGTERM in the
/// middle resumes it (exit 4), and a short pause resumes it on its own.
#[test]
fn a_paused_process_is_resumed_whatever_happens() {
    let lab = Lab::start();
    let (status, started) =
        lab.agent.request("POST", "/processes", Some(r#"{"name": "sleeper", "command": ["sleep", "120"]}"#));
    assert_eq!(status, 201, "{started}");
    let state = || lab.agent.request("GET", "/processes/sleeper", None).1["state"].as_str().unwrap().to_string();

    let short = lab.experiment(
        "short-pause",
        "[[method]]\nname = \"freeze\"\nprocess = \"sleeper\"\naction = \"pause\"\nduration = \"1s\"\n[[method]]\nname = \"breathe\"\nwait = \"500ms\"\n",
    );
    let (code, stdout, stderr, journal) = lab.run(&short, &[]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(journal.faults[0].kind, "process pause");
    assert!(journal.faults[0].end_ms.unwrap() - journal.faults[0].start_ms >= 1000);
    assert_eq!(journal.steps.iter().map(|s| s.outcome.as_str()).collect::<Vec<_>>(), vec!["ok", "ok"]);
    assert_eq!(state(), "running");

    let long = lab.experiment(
        "long-pause",
        "[[method]]\nname = \"freeze\"\nprocess = \"sleeper\"\naction = \"pause\"\nduration = \"60s\"\n",
    );
    let journal_path = lab.journal_path("long-pause");
    let child = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["chaos", "run", long.to_str().unwrap(), "--journal", journal_path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(30), || (state() == "stopped").then_some(()));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let (code, stdout, stderr) = outcome(&child.wait_with_output().unwrap());
    assert_eq!(code, 4, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(state(), "running");
    let journal = Journal::read(&journal_path).unwrap();
    assert!(journal.rollbacks.iter().any(|r| r.what == "resume process sleeper" && r.ok), "{:?}", journal.rollbacks);
}
