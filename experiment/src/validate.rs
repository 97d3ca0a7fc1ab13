//! Validation of a parsed experiment: what serde's types cannot say (which
//! fields go together, ranges, names). Each error carries the span of the
//! table or toxic it is about, which `file` turns into a line and column.

use std::ops::Range;

use crate::file::{Experiment, Probe, ProbeKind, Rollback, Step, StepKind, TOXIC_TYPES};

/// Checks what serde cannot: which fields go together, ranges, names. The
/// error is the span to point at and the message, naming the field.
pub(crate) fn validate(e: &Experiment) -> Result<(), (Range<usize>, String)> {
    if e.title.trim().is_empty() {
        return Err((0..0, "`title` must not be empty".into()));
    }
    for (field, endpoint) in [("agent.url", &e.agent), ("query.url", &e.query)] {
        let url = endpoint.url.get_ref();
        if seismo_client::AgentClient::new(url).is_err() {
            return Err((endpoint.url.span(), format!("`{field}`: {url:?} is not an http(s) URL")));
        }
    }
    if e.settings.probe_interval.0.is_zero() {
        return Err((0..0, "`settings.probe_interval` must be more than 0".into()));
    }
    for (i, p) in e.proxies.iter().enumerate() {
        let at = |m: String| (p.span(), format!("proxies[{i}]: {m}"));
        let decl = p.get_ref();
        if decl.name.is_empty() || decl.upstream.is_empty() {
            return Err(at("`name` and `upstream` must not be empty".into()));
        }
        if e.proxies[..i].iter().any(|q| q.get_ref().name == decl.name) {
            return Err(at(format!("`name`: proxy {:?} is declared twice", decl.name)));
        }
    }
    for (i, probe) in e.steady_state.iter().enumerate() {
        let p = probe.get_ref();
        validate_probe(p).map_err(|m| (probe.span(), format!("steady_state[{i}] ({:?}): {m}", p.name)))?;
    }
    if e.method.is_empty() {
        return Err((0..0, "no `[[method]]` step: an experiment needs at least one".into()));
    }
    for (i, step) in e.method.iter().enumerate() {
        let s = step.get_ref();
        validate_step(s)
            .map_err(|(span, m)| (span.unwrap_or(step.span()), format!("method[{i}] ({:?}): {m}", s.name)))?;
    }
    for (i, rollback) in e.rollbacks.iter().enumerate() {
        let r = rollback.get_ref();
        validate_rollback(r).map_err(|m| (rollback.span(), format!("rollbacks[{i}] ({:?}): {m}", r.name)))?;
    }
    if let Some(safety) = &e.safety {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExperimentError;
    use crate::file::tests::ISSUE_EXAMPLE;

    fn error(text: &str) -> (usize, String) {
        match Experiment::parse(text, "x.toml").unwrap_err() {
            ExperimentError::Invalid { line, message, .. } => (line, message),
            other => panic!("{other}"),
        }
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
}
