//! The plan `--dry-run` prints: what a run would do, in order, from the
//! validated file alone. Nothing is contacted.

use std::fmt::Write;
use std::time::Duration;

use crate::file::{Experiment, Phase, Probe, ProbeKind, StepKind};

fn describe_probe(p: &Probe) -> String {
    match p.kind() {
        ProbeKind::Stats => {
            let mut checks = Vec::new();
            if let Some(v) = p.p50_ms_below {
                checks.push(format!("p50 < {v} ms"));
            }
            if let Some(v) = p.p99_ms_below {
                checks.push(format!("p99 < {v} ms"));
            }
            if let Some(v) = p.max_error_rate {
                checks.push(format!("error rate <= {v}"));
            }
            checks.push(format!("at least {} request(s)", p.min_requests.unwrap_or(1)));
            let op = p.operation.as_deref().map(|o| format!(" {o}")).unwrap_or_default();
            format!(
                "{}{op} over the last {}s: {}",
                p.service.as_deref().unwrap_or_default(),
                p.window().as_secs_f64(),
                checks.join(", ")
            )
        }
        ProbeKind::PromQl => {
            let mut checks = Vec::new();
            if let Some(v) = p.below {
                checks.push(format!("< {v}"));
            }
            if let Some(v) = p.above {
                checks.push(format!("> {v}"));
            }
            format!("PromQL {:?} {}", p.promql.as_deref().unwrap_or_default(), checks.join(" and "))
        }
        ProbeKind::Http => format!(
            "{} {} answers {}{}",
            p.method.as_deref().unwrap_or("GET"),
            p.url.as_deref().unwrap_or_default(),
            p.status.unwrap_or(200),
            p.latency_ms_below.map(|l| format!(" within {l} ms")).unwrap_or_default()
        ),
    }
}

/// The plan as text.
pub fn plan(e: &Experiment) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "plan for {:?} (dry run: nothing is contacted, nothing injected)", e.title);
    let _ = writeln!(s, "  agent {}  query API {}", e.agent.url.get_ref(), e.query.url.get_ref());
    let mut n = 1;
    let mut line = |s: &mut String, text: String| {
        let _ = writeln!(s, "  {n}. {text}");
        n += 1;
    };
    line(&mut s, "check the agent and the query API answer; warn about toxics left by other runs".into());
    for p in &e.proxies {
        let p = p.get_ref();
        line(
            &mut s,
            format!(
                "create proxy {} -> {}{}",
                p.name,
                p.upstream,
                p.listen.as_deref().map(|l| format!(" on {l}")).unwrap_or_default()
            ),
        );
    }
    for p in e.steady_state.iter().map(|p| p.get_ref()).filter(|p| p.when.contains(&Phase::Before)) {
        line(&mut s, format!("before: probe {:?}: {}", p.name, describe_probe(p)));
    }
    let during: Vec<&Probe> =
        e.steady_state.iter().map(|p| p.get_ref()).filter(|p| p.when.contains(&Phase::During)).collect();
    let mut total = Duration::ZERO;
    for (i, step) in e.method.iter().enumerate() {
        let step = step.get_ref();
        total += step.length();
        let text = match step.kind() {
            StepKind::Fault => {
                let toxics: Vec<String> = step
                    .all_toxics()
                    .map(|t| {
                        let proxy = t.proxy.as_ref().or(step.proxy.as_ref()).map(String::as_str).unwrap_or_default();
                        let attrs: Vec<String> = t.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        format!(
                            "{} on {proxy} ({}{}{})",
                            t.kind,
                            t.stream.as_deref().unwrap_or("downstream"),
                            t.toxicity.map(|x| format!(", toxicity {x}")).unwrap_or_default(),
                            if attrs.is_empty() { String::new() } else { format!(", {}", attrs.join(" ")) }
                        )
                    })
                    .collect();
                format!(
                    "method[{i}] {:?}: add {} for {}s, then remove",
                    step.name,
                    toxics.join(" + "),
                    step.length().as_secs_f64()
                )
            }
            StepKind::Process => format!(
                "method[{i}] {:?}: {} process {}{}",
                step.name,
                step.action.as_deref().unwrap_or_default(),
                step.process.as_deref().unwrap_or_default(),
                if step.length().is_zero() {
                    String::new()
                } else {
                    format!(", hold {}s", step.length().as_secs_f64())
                }
            ),
            StepKind::Wait => format!("method[{i}] {:?}: wait {}s", step.name, step.length().as_secs_f64()),
        };
        line(&mut s, text);
    }
    if !during.is_empty() {
        let names: Vec<String> = during.iter().map(|p| format!("{:?}", p.name)).collect();
        line(&mut s, format!("during the method, every {}: probe {}", e.settings.probe_interval, names.join(", ")));
    }
    if let Some(safety) = &e.safety {
        let safety = safety.get_ref();
        line(
            &mut s,
            format!(
                "safety: abort if {} breaches{}{} for {}",
                safety.service,
                safety.max_error_rate.map(|v| format!(" error rate > {v}")).unwrap_or_default(),
                safety.p99_ms_below.map(|v| format!(" p99 >= {v} ms")).unwrap_or_default(),
                safety.sustained.unwrap_or_default()
            ),
        );
    }
    line(&mut s, "roll back everything the run added (also on failure, Ctrl-C, SIGTERM)".into());
    for r in &e.rollbacks {
        line(&mut s, format!("rollback {:?}", r.get_ref().name));
    }
    line(&mut s, format!("wait {} for telemetry to settle", e.settings.settle));
    for p in e.steady_state.iter().map(|p| p.get_ref()).filter(|p| p.when.contains(&Phase::After)) {
        line(&mut s, format!("after: probe {:?}: {}", p.name, describe_probe(p)));
    }
    line(&mut s, "compare faulted and unfaulted requests; find the worst-hurt traces".into());
    let _ = writeln!(s, "  the method lasts about {}s", total.as_secs_f64());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_lists_every_phase_in_order() {
        let e = Experiment::parse(crate::file::tests::ISSUE_EXAMPLE, "x.toml").unwrap();
        let text = plan(&e);
        let before =
            text.find("before: probe \"checkout stays fast\": checkout over the last 10s: p99 < 300 ms").unwrap();
        let method = text
            .find("method[0] \"slow payments\": add latency on payments (downstream, latency=400) for 20s, then remove")
            .unwrap();
        let after = text.find("after: probe \"checkout stays fast\"").unwrap();
        assert!(before < method && method < after, "{text}");
        assert!(text.contains("nothing is contacted"), "{text}");
    }
}
