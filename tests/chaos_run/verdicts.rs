//! Verdicts: a fault that breaks the hypothesis deviates, a harmless one
//! completes; cohorts split by the run's fault spans; exemplars are real
//! traces holding the run's fault spans; a slower second run regresses
//! against the first.

use super::*;
use seismo_experiment::Status;

/// The issue's experiment, with seconds instead of tens of seconds: a 400 ms
/// latency on payments breaks "checkout p99 < 300 ms" while it lasts.
#[test]
fn a_latency_fault_that_breaks_the_hypothesis_deviates() {
    let lab = Lab::start();
    let file = lab.experiment(
        "slow-payments",
        r#"
[[steady_state]]
name = "checkout stays fast"
service = "checkout"
p99_ms_below = 300
window = "2s"
[[method]]
name = "slow payments"
proxy = "payments"
toxic = { type = "latency", attributes = { latency = 400 } }
duration = "3s"
"#,
    );
    let (code, stdout, stderr, journal) = lab.run(&file, &[]);
    assert_eq!(code, 3, "deviated exits 3\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(journal.status, Status::Deviated);
    assert!(stdout.contains("DEVIATED"), "{stdout}");
    // Before held; some evaluation during the method measured p99 past 300 ms.
    assert!(journal.probes.iter().filter(|p| p.phase == seismo_experiment::file::Phase::Before).all(|p| p.ok));
    let broken = journal
        .probes
        .iter()
        .find(|p| p.phase == seismo_experiment::file::Phase::During && !p.ok)
        .unwrap_or_else(|| panic!("no deviation during the method: {:#?}", journal.probes));
    let p99 = broken.measures.iter().find(|m| m.what == "p99_ms").unwrap();
    assert!(p99.value.unwrap() >= 300.0 && p99.threshold == 300.0, "{p99:?}");
    // The fault is recorded with its window, and nothing is left on the agent.
    let fault = &journal.faults[0];
    assert_eq!((fault.kind.as_str(), fault.proxy.as_deref()), ("latency", Some("payments")));
    assert!(fault.name.starts_with(&format!("seismo-{}-0-", journal.run_id)), "{}", fault.name);
    assert!(fault.end_ms.unwrap() > fault.start_ms);
    assert!(journal.rollback_verified);
    lab.assert_clean();
}

/// A 20 ms delay on /pay leaves checkout well under 300 ms: completed, exit 0.
/// Every request was faulted, so the exemplars are traces holding this run's
/// `chaos http_delay` spans, on the critical path. Then the same experiment
/// with a 150 ms delay, against the first journal: its faulted p99 regressed.
#[test]
fn a_harmless_fault_completes_and_a_slower_rerun_regresses() {
    let lab = Lab::start();
    let body = |delay: u32| {
        format!(
            r#"
[[steady_state]]
name = "checkout stays fast"
service = "checkout"
p99_ms_below = 300
window = "2s"
[[method]]
name = "a little slower"
proxy = "payments"
toxic = {{ type = "http_delay", attributes = {{ delay = {delay}, path_prefix = "/pay" }} }}
duration = "3s"
"#
        )
    };
    let file = lab.experiment("harmless", &body(20));
    let report = lab.dir.path().join("harmless.md");
    let (code, stdout, stderr, journal) = lab.run(&file, &["--report", report.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(journal.status, Status::Completed);
    assert!(journal.probes.iter().all(|p| p.ok), "{:#?}", journal.probes);
    assert!(journal.probes.iter().any(|p| p.phase == seismo_experiment::file::Phase::After));
    let markdown = std::fs::read_to_string(&report).unwrap();
    eprintln!("{stdout}\n{markdown}");
    assert!(markdown.contains("**Status: ✅ completed** (exit code 0)"), "{markdown}");

    // Exemplars: real traces, each with a fault span of this run.
    assert!(!journal.exemplars.is_empty(), "{journal:#?}");
    for e in &journal.exemplars {
        let trace = lab.trace(&e.trace_id);
        let faults = spans_with_tag(&trace, "chaos.experiment.id", &journal.run_id);
        assert!(!faults.is_empty(), "trace {} has no fault span of run {}", e.trace_id, journal.run_id);
        assert!(faults.iter().all(|s| s["operationName"] == "chaos http_delay"));
        assert_eq!(e.victim_service, "checkout");
        assert!(e.added_ms >= 19.0, "{e:?}");
        assert!(e.on_critical_path && e.critical_ms > 0.0, "{e:?}");
    }
    assert!(journal.faults[0].touched.unwrap() > 0);
    let cohort = &journal.cohorts[0];
    assert_eq!(cohort.service, "checkout");
    assert!(cohort.faulted.requests > 0, "{cohort:?}");

    // A slower rerun against the first: completed, but its faulted p99 regressed.
    let baseline = file.with_extension("json");
    let slower = lab.experiment("slower", &body(150));
    let (code, stdout, stderr, rerun) = lab.run(&slower, &["--baseline", baseline.to_str().unwrap()]);
    assert_eq!(rerun.status, Status::Completed, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(code, 5, "a regression exits 5\nstdout:\n{stdout}");
    let regressions = rerun.regressions.as_ref().unwrap();
    assert!(regressions.iter().any(|r| r.what == "checkout faulted p99"), "{regressions:?}");
    assert!(stdout.contains("regression(s) against the baseline"), "{stdout}");
    // And `seismo chaos diff` says the same of the two journals.
    let out = seismo(&["chaos", "diff", baseline.to_str().unwrap(), slower.with_extension("json").to_str().unwrap()]);
    let (code, stdout, _) = outcome(&out);
    assert_eq!(code, 5, "{stdout}");
    assert!(stdout.contains("checkout faulted p99"), "{stdout}");
    let out = seismo(&["chaos", "diff", baseline.to_str().unwrap(), baseline.to_str().unwrap()]);
    assert_eq!(outcome(&out).0, 0);
    lab.assert_clean();
}

/// `http_abort` at toxicity 0.5: about half the requests carry this run's
/// fault span, and all of those failed; the others did not.
#[test]
fn an_abort_at_half_toxicity_splits_the_requests_into_two_cohorts() {
    let lab = Lab::start();
    let file = lab.experiment(
        "half-aborts",
        &r#"
[[steady_state]]
name = "checkout answers"
service = "checkout"
max_error_rate = 1.0
window = "2s"
[[steady_state]]
name = "payments is up"
url = "http://{upstream}/healthz"
status = 200
when = ["before", "after"]
[[steady_state]]
name = "the PromQL engine answers"
promql = "vector(1)"
above = 0
when = ["before"]
[[method]]
name = "payments fails half the time"
proxy = "payments"
toxic = { type = "http_abort", toxicity = 0.5, attributes = { status = 503, path_prefix = "/pay" } }
duration = "4s"
"#
        .replace("{upstream}", &lab.upstream),
    );
    let (code, stdout, stderr, journal) = lab.run(&file, &[]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The HTTP and PromQL probes ran and held.
    let kinds: std::collections::BTreeSet<&str> = journal.probes.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["http", "promql", "stats"].into());
    assert!(journal.probes.iter().all(|p| p.ok), "{:#?}", journal.probes);
    let c = &journal.cohorts[0];
    // Binomial: with at least 30 requests, 0.2..0.8 is beyond 3 sd of 0.5.
    let total = c.faulted.requests + c.unfaulted.requests;
    assert!(total >= 30, "too little traffic to judge: {c:?}");
    let share = c.faulted.requests as f64 / total as f64;
    assert!((0.2..=0.8).contains(&share), "faulted share {share}: {c:?}");
    // Injected: every faulted request failed, no unfaulted one did.
    assert_eq!(c.faulted.error_rate, 1.0, "{c:?}");
    assert_eq!(c.unfaulted.error_rate, 0.0, "{c:?}");
    assert_eq!(c.error_rate_delta, 1.0);
    // The fault touched as many requests as the faulted cohort holds (give
    // or take requests at the window's edges).
    let touched = journal.faults[0].touched.unwrap();
    assert!(touched >= c.faulted.requests / 2, "touched {touched}, faulted {}", c.faulted.requests);
    for e in &journal.exemplars {
        assert!(e.error, "{e:?}");
        let trace = lab.trace(&e.trace_id);
        let faults = spans_with_tag(&trace, "chaos.experiment.id", &journal.run_id);
        assert!(faults.iter().any(|s| s["operationName"] == "chaos http_abort"), "{trace}");
    }
    assert!(!journal.exemplars.is_empty());
    assert!(journal.erroring.iter().any(|e| e.service == "checkout"), "{:?}", journal.erroring);
    lab.assert_clean();
}
