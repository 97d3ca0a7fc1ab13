//! The Markdown report (`--report FILE.md`) and the short summary printed on
//! stdout: the same journal, for a person.

use std::fmt::Write;

use crate::file::Phase;
use crate::journal::{Journal, Measure, Status};

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.1} ms"))
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn measure(m: &Measure) -> String {
    let value = m
        .value
        .map_or_else(|| "none".into(), |v| format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string());
    format!("{} = {value} ({} {}) {}", m.what, m.op, m.threshold, if m.ok { "✓" } else { "✗" })
}

/// A few lines for stdout: status, why, probes that failed, cohorts, exemplars.
pub fn summary(j: &Journal) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "experiment {:?} run {}: {}", j.title, j.run_id, j.status.as_str().to_uppercase());
    if let Some(reason) = &j.reason {
        let _ = writeln!(s, "  reason: {reason}");
    }
    for phase in [Phase::Before, Phase::During, Phase::After] {
        let all: Vec<_> = j.probes_in(phase).collect();
        if all.is_empty() {
            continue;
        }
        let failed = all.iter().filter(|p| !p.ok).count();
        let _ = writeln!(s, "  {phase:?} probes: {} evaluated, {failed} deviated", all.len());
        if let Some(p) = all.iter().find(|p| !p.ok) {
            let detail = p
                .error
                .clone()
                .unwrap_or_else(|| p.measures.iter().filter(|m| !m.ok).map(measure).collect::<Vec<_>>().join(", "));
            let _ = writeln!(s, "    first deviation: {:?}: {detail}", p.name);
        }
    }
    for f in &j.faults {
        let touched = f.touched.map_or_else(String::new, |t| {
            format!(", touched {t}{} requests", if f.touched_is_lower_bound { "+" } else { "" })
        });
        let _ = writeln!(s, "  fault {} ({}){}", f.name, f.kind, touched);
    }
    for c in &j.cohorts {
        let _ = writeln!(
            s,
            "  cohorts {}{}: faulted {} req, {} errors, p99 {} | unfaulted {} req, {} errors, p99 {}",
            c.service,
            c.operation.as_deref().map(|o| format!(" {o}")).unwrap_or_default(),
            c.faulted.requests,
            pct(c.faulted.error_rate),
            ms(c.faulted.p99_ms),
            c.unfaulted.requests,
            pct(c.unfaulted.error_rate),
            ms(c.unfaulted.p99_ms)
        );
    }
    for e in j.exemplars.iter().take(3) {
        let _ = writeln!(
            s,
            "  exemplar trace {}: {} on {} {} added {:.1} ms ({:.1} ms on the critical path){}",
            e.trace_id,
            e.kind,
            e.victim_service,
            e.victim_operation,
            e.added_ms,
            e.critical_ms,
            if e.error { ", failed the request" } else { "" }
        );
    }
    let undone = j.rollbacks.iter().filter(|r| r.ok).count();
    let _ = writeln!(
        s,
        "  rollback: {}{}",
        if j.rollbacks.is_empty() {
            "nothing was left to undo".to_string()
        } else {
            format!("{undone}/{} undone", j.rollbacks.len())
        },
        if j.rollback_verified { ", agent verified clean" } else { ", NOT verified clean" }
    );
    for w in &j.warnings {
        let _ = writeln!(s, "  warning: {w}");
    }
    s
}

/// The whole journal as Markdown.
pub fn markdown(j: &Journal) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", j.title);
    if let Some(description) = &j.description {
        let _ = writeln!(s, "{}\n", description.trim());
    }
    let badge = match j.status {
        Status::Completed => "✅ completed",
        Status::Deviated => "❌ deviated",
        Status::Aborted => "⛔ aborted",
        Status::Failed => "⚠️ failed",
    };
    let _ = writeln!(s, "**Status: {badge}** (exit code {})\n", j.status.exit_code());
    if let Some(reason) = &j.reason {
        let _ = writeln!(s, "> {reason}\n");
    }
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| run id | `{}` |", j.run_id);
    if let Some(f) = &j.experiment_file {
        let _ = writeln!(s, "| experiment | `{f}` |");
    }
    let _ = writeln!(s, "| start | {} |\n| end | {} |", j.start, j.end);
    let _ = writeln!(s, "| duration | {:.1} s |", (j.end_ms - j.start_ms) as f64 / 1000.0);
    let _ = writeln!(s, "| agent | {} |\n| query API | {} |\n", j.agent_url, j.query_url);

    let _ = writeln!(s, "## Steady-state hypothesis\n");
    if j.probes.is_empty() {
        let _ = writeln!(s, "No probe was evaluated.\n");
    } else {
        let _ = writeln!(s, "| phase | probe | at | result | measured |\n|---|---|---|---|---|");
        for p in &j.probes {
            let measured =
                p.error.clone().unwrap_or_else(|| p.measures.iter().map(measure).collect::<Vec<_>>().join("; "));
            let at = format!("+{:.1} s", (p.at_ms - j.start_ms) as f64 / 1000.0);
            let _ = writeln!(
                s,
                "| {:?} | {} | {at} | {} | {} |",
                p.phase,
                p.name,
                if p.ok { "ok" } else { "**deviated**" },
                measured.replace('|', "\\|")
            );
        }
        s.push('\n');
    }

    let _ = writeln!(s, "## Method\n");
    for step in &j.steps {
        let took = step
            .end_ms
            .map_or_else(|| "not finished".into(), |e| format!("{:.1} s", (e - step.start_ms) as f64 / 1000.0));
        let _ = write!(s, "- **{}** ({}): {} in {took}", step.name, step.kind, step.outcome);
        if let Some(e) = &step.error {
            let _ = write!(s, " — {e}");
        }
        s.push('\n');
    }
    if j.steps.is_empty() {
        let _ = writeln!(s, "The method did not run.");
    }
    s.push('\n');

    let _ = writeln!(s, "## Faults\n");
    if j.faults.is_empty() {
        let _ = writeln!(s, "No fault was applied.\n");
    } else {
        let _ =
            writeln!(s, "| fault | type | proxy | toxicity | window | requests touched |\n|---|---|---|---|---|---|");
        for f in &j.faults {
            let window = format!(
                "+{:.1} s → {}",
                (f.start_ms - j.start_ms) as f64 / 1000.0,
                f.end_ms.map_or_else(|| "?".into(), |e| format!("+{:.1} s", (e - j.start_ms) as f64 / 1000.0))
            );
            let touched = f
                .touched
                .map_or_else(|| "–".into(), |t| format!("{t}{}", if f.touched_is_lower_bound { "+" } else { "" }));
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {window} | {touched} |",
                f.name,
                f.kind,
                f.proxy.as_deref().unwrap_or("–"),
                f.toxicity.map_or_else(|| "–".into(), |t| t.to_string())
            );
        }
        s.push('\n');
    }
    if let Some(safety) = &j.safety {
        let _ = writeln!(s, "**Safety abort:** {safety}\n");
    }

    let _ = writeln!(s, "## Faulted vs unfaulted requests\n");
    if j.cohorts.is_empty() {
        let _ = writeln!(s, "No cohort comparison (no stats probe, or the method did not run).\n");
    } else {
        let _ = writeln!(
            s,
            "Requests in the method's window whose trace holds a fault span of run `{}` against all the others.\n",
            j.run_id
        );
        let _ = writeln!(
            s,
            "| service | cohort | requests | errors | error rate | p50 | p99 |\n|---|---|---|---|---|---|---|"
        );
        for c in &j.cohorts {
            let name =
                format!("{}{}", c.service, c.operation.as_deref().map(|o| format!(" / {o}")).unwrap_or_default());
            for (label, st) in [("faulted", &c.faulted), ("unfaulted", &c.unfaulted)] {
                let _ = writeln!(
                    s,
                    "| {name} | {label} | {} | {} | {} | {} | {} |",
                    st.requests,
                    st.errors,
                    pct(st.error_rate),
                    ms(st.p50_ms),
                    ms(st.p99_ms)
                );
            }
            let _ = writeln!(
                s,
                "| {name} | **difference** | | | {:+.1} pts | {} | {} |",
                c.error_rate_delta * 100.0,
                c.p50_ms_delta.map_or_else(|| "–".into(), |d| format!("{d:+.1} ms")),
                c.p99_ms_delta.map_or_else(|| "–".into(), |d| format!("{d:+.1} ms"))
            );
        }
        s.push('\n');
    }

    let _ = writeln!(s, "## Worst-hurt requests\n");
    if j.exemplars.is_empty() {
        let _ = writeln!(s, "No fault span of this run was found in the store.\n");
    } else {
        let _ =
            writeln!(s, "| trace | fault | victim | added | on critical path | failed |\n|---|---|---|---|---|---|");
        for e in &j.exemplars {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} {} | {:.1} ms | {} | {} |",
                e.trace_id,
                e.toxic.as_deref().unwrap_or(&e.kind),
                e.victim_service,
                e.victim_operation,
                e.added_ms,
                if e.on_critical_path { format!("yes, {:.1} ms", e.critical_ms) } else { "no".into() },
                if e.error { "yes" } else { "no" }
            );
        }
        s.push('\n');
    }
    if !j.erroring.is_empty() {
        let _ = writeln!(s, "## Operations with errors during the method\n");
        for e in &j.erroring {
            let _ = writeln!(s, "- {} {}: {} errors of {} requests", e.service, e.operation, e.errors, e.requests);
        }
        s.push('\n');
    }

    let _ = writeln!(s, "## Rollback\n");
    if j.rollbacks.is_empty() {
        let _ = writeln!(s, "Nothing was left to undo: every step removed what it added.");
    }
    for r in &j.rollbacks {
        let _ = writeln!(
            s,
            "- {} {}{}",
            if r.ok { "✓" } else { "✗" },
            r.what,
            r.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default()
        );
    }
    let _ = writeln!(
        s,
        "\n{}",
        if j.rollback_verified {
            "The agent holds nothing this run added."
        } else {
            "**The agent could not be verified clean.**"
        }
    );
    if let Some(found) = &j.regressions {
        let _ = writeln!(s, "\n## Against the baseline\n");
        if found.is_empty() {
            let _ = writeln!(s, "No regression.");
        }
        for r in found {
            let _ = writeln!(s, "- **{}**: {} → {}", r.what, r.before, r.after);
        }
    }
    if !j.warnings.is_empty() {
        let _ = writeln!(s, "\n## Warnings\n");
        for w in &j.warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::sample;

    #[test]
    fn the_report_shows_status_probes_cohorts_and_exemplars() {
        let md = markdown(&sample());
        assert!(md.starts_with("# checkout tolerates a slow payments service\n"), "{md}");
        assert!(md.contains("**Status: ❌ deviated** (exit code 3)"), "{md}");
        assert!(
            md.contains("| During | checkout stays fast | +2.0 s | **deviated** | p99_ms = 412.5 (< 300) ✗ |"),
            "{md}"
        );
        assert!(md.contains("| `seismo-abc123-0-latency` | latency | payments | 1 | +1.0 s → +21.0 s | 180 |"), "{md}");
        assert!(md.contains("| checkout | faulted | 180 | 0 | 0.0% | 401.0 ms | 412.0 ms |"), "{md}");
        assert!(md.contains("| checkout | **difference** | | | +0.0 pts | +400.0 ms | +410.0 ms |"), "{md}");
        assert!(md.contains("| `0af7651916cd43dd8448eb211c80319c` | seismo-abc123-0-latency | checkout POST /pay | 401.2 ms | yes, 401.2 ms | no |"), "{md}");
        assert!(md.contains("The agent holds nothing this run added."), "{md}");
        assert!(!md.contains("Against the baseline"), "{md}");
        let mut j = sample();
        j.regressions = Some(vec![crate::diff::Regression {
            what: "checkout faulted p99".into(),
            before: "412.0 ms".into(),
            after: "600.0 ms".into(),
        }]);
        assert!(markdown(&j).contains("## Against the baseline\n\n- **checkout faulted p99**: 412.0 ms → 600.0 ms"));
    }

    #[test]
    fn the_summary_names_the_first_deviation() {
        let text = summary(&sample());
        assert!(
            text.starts_with("experiment \"checkout tolerates a slow payments service\" run abc123: DEVIATED\n"),
            "{text}"
        );
        assert!(text.contains("first deviation: \"checkout stays fast\": p99_ms = 412.5 (< 300) ✗"), "{text}");
        assert!(text.contains("touched 180 requests"), "{text}");
    }
}
