//! Regression between two runs of one experiment (`--baseline OLD_JOURNAL`,
//! `seismo chaos diff OLD NEW`): what got worse beyond a tolerance — each
//! cohort's p99 and error rate, the status, and services or operations that
//! erred now but not before.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::journal::{CohortStats, Journal, Status};

/// How much worse counts as a regression.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// p99 may grow by this fraction (0.2 = 20%) ...
    pub p99_relative: f64,
    /// ... and by at least this many ms, before it counts.
    pub p99_absolute_ms: f64,
    /// The error rate may grow by this much (0.02 = 2 points).
    pub error_rate: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { p99_relative: 0.2, p99_absolute_ms: 5.0, error_rate: 0.02 }
    }
}

/// One thing that got worse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// What (`checkout faulted p99`, `status`, `new errors in cart GET /x`).
    pub what: String,
    /// Before, as text.
    pub before: String,
    /// After, as text.
    pub after: String,
}

/// Everything that got worse from `old` to `new` (empty: no regression).
pub fn regressions(old: &Journal, new: &Journal, tol: &Tolerance) -> Vec<Regression> {
    let mut out = Vec::new();
    let rank = |s: Status| match s {
        Status::Completed => 0,
        Status::Deviated => 1,
        Status::Aborted => 2,
        Status::Failed => 3,
    };
    if rank(new.status) > rank(old.status) {
        out.push(Regression {
            what: "status".into(),
            before: old.status.as_str().into(),
            after: new.status.as_str().into(),
        });
    }
    for c in &new.cohorts {
        let Some(before) = old.cohorts.iter().find(|o| o.service == c.service && o.operation == c.operation) else {
            continue;
        };
        let name = format!("{}{}", c.service, c.operation.as_deref().map(|o| format!(" {o}")).unwrap_or_default());
        for (side, a, b) in [("faulted", &before.faulted, &c.faulted), ("unfaulted", &before.unfaulted, &c.unfaulted)] {
            cohort_regressions(&format!("{name} {side}"), a, b, tol, &mut out);
        }
    }
    let erred_before: HashSet<(&str, &str)> =
        old.erroring.iter().map(|e| (e.service.as_str(), e.operation.as_str())).collect();
    for e in &new.erroring {
        if !erred_before.contains(&(e.service.as_str(), e.operation.as_str())) {
            out.push(Regression {
                what: format!("new errors in {} {}", e.service, e.operation),
                before: "0 errors".into(),
                after: format!("{} errors of {} requests", e.errors, e.requests),
            });
        }
    }
    out
}

fn cohort_regressions(name: &str, a: &CohortStats, b: &CohortStats, tol: &Tolerance, out: &mut Vec<Regression>) {
    if let (Some(pa), Some(pb)) = (a.p99_ms, b.p99_ms) {
        if pb > pa * (1.0 + tol.p99_relative) && pb - pa > tol.p99_absolute_ms {
            out.push(Regression {
                what: format!("{name} p99"),
                before: format!("{pa:.1} ms"),
                after: format!("{pb:.1} ms"),
            });
        }
    }
    if b.requests > 0 && b.error_rate - a.error_rate > tol.error_rate {
        out.push(Regression {
            what: format!("{name} error rate"),
            before: format!("{:.1}%", a.error_rate * 100.0),
            after: format!("{:.1}%", b.error_rate * 100.0),
        });
    }
}

/// The regressions as lines for stdout.
pub fn render(regressions: &[Regression]) -> String {
    if regressions.is_empty() {
        return "no regression against the baseline\n".into();
    }
    let mut s = format!("{} regression(s) against the baseline:\n", regressions.len());
    for r in regressions {
        s.push_str(&format!("  {}: {} -> {}\n", r.what, r.before, r.after));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::sample;
    use crate::journal::ErroringOperation;

    #[test]
    fn a_run_against_itself_has_no_regression() {
        assert!(regressions(&sample(), &sample(), &Tolerance::default()).is_empty());
    }

    #[test]
    fn slower_faulted_requests_new_errors_and_a_worse_status_are_flagged() {
        let old = {
            let mut j = sample();
            j.status = Status::Completed;
            j
        };
        let mut new = sample();
        new.cohorts[0].faulted.p99_ms = Some(600.0);
        new.cohorts[0].unfaulted.p99_ms = Some(2.5); // +25% but only 0.5 ms: within tolerance
        new.cohorts[0].faulted.error_rate = 0.1;
        new.erroring.push(ErroringOperation {
            service: "cart".into(),
            operation: "GET /cart".into(),
            errors: 3,
            requests: 10,
        });
        let got = regressions(&old, &new, &Tolerance::default());
        let what: Vec<&str> = got.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(
            what,
            vec![
                "status",
                "checkout faulted p99",
                "checkout faulted error rate",
                "new errors in cart GET /x".replace("/x", "/cart").as_str()
            ]
        );
        assert_eq!((got[1].before.as_str(), got[1].after.as_str()), ("412.0 ms", "600.0 ms"));
        assert!(render(&got).starts_with("4 regression(s) against the baseline:\n  status: completed -> deviated\n"));
    }
}
