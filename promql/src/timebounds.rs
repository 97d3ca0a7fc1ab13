//! The engine's time domain: every time and duration a query names is
//! checked once, before evaluation, so the evaluator's millisecond
//! arithmetic cannot overflow.
//!
//! Times (`time`, `start`, `end`, `@ <t>`) must lie within
//! [`MIN_TIME_MS`]..=[`MAX_TIME_MS`] (1677 to 2262: what fits i64
//! nanoseconds, the store's clock), and durations (ranges, subquery ranges and
//! steps, offsets) within [`MAX_DURATION_MS`]. A handful of such terms added
//! together stay far below i64's range, which is what makes the evaluator's
//! `t - offset - range + step` safe. Prometheus accepts wider values and lets
//! Go's integers wrap; seismo answers 400 naming the value instead.

use std::time::{Duration, SystemTime};

use promql_parser::parser::{AtModifier, Expr, Offset};

/// The earliest time the engine evaluates at, and the earliest the metadata
/// endpoints read when `start` is absent. It and [`MAX_TIME_MS`] fit in i64
/// nanoseconds, so a source may convert them.
pub const MIN_TIME_MS: i64 = -(i64::MAX / 1_000_000);
/// The latest time the engine evaluates at (and the metadata endpoints read
/// when `end` is absent).
pub const MAX_TIME_MS: i64 = i64::MAX / 1_000_000;

/// The longest range, subquery step or offset a query may use (292 years).
pub(crate) const MAX_DURATION_MS: i64 = MAX_TIME_MS;

/// Whether `ms` lies in the engine's time domain.
pub fn time_in_range(ms: i64) -> bool {
    (MIN_TIME_MS..=MAX_TIME_MS).contains(&ms)
}

/// The message for a time parameter outside the domain.
pub fn time_out_of_range(ms: i64) -> String {
    format!(
        "timestamp {} is out of range: seismo evaluates queries between {} and {} (years 1677 to 2262)",
        format_timestamp(ms),
        format_timestamp(MIN_TIME_MS),
        format_timestamp(MAX_TIME_MS),
    )
}

/// A unix-ms timestamp as the JSON number of seconds Prometheus writes:
/// `1435781451.781`, `1435781451.5`, `1435781451`.
pub(crate) fn format_timestamp(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    let (secs, frac) = (abs / 1000, abs % 1000);
    if frac == 0 {
        format!("{sign}{secs}")
    } else {
        let f = format!("{frac:03}");
        format!("{sign}{secs}.{}", f.trim_end_matches('0'))
    }
}

/// Checks every time and duration inside `expr`.
///
/// # Errors
/// A message naming the value and the limit.
pub fn check_times(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
        Expr::Paren(p) => check_times(&p.expr),
        Expr::Unary(u) => check_times(&u.expr),
        Expr::Binary(b) => {
            check_times(&b.lhs)?;
            check_times(&b.rhs)
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                check_times(p)?;
            }
            check_times(&a.expr)
        }
        Expr::Call(c) => c.args.args.iter().try_for_each(|a| check_times(a)),
        Expr::VectorSelector(vs) => check_shift(&vs.offset, &vs.at),
        Expr::MatrixSelector(ms) => {
            check_duration("range", ms.range)?;
            check_shift(&ms.vs.offset, &ms.vs.at)
        }
        Expr::Subquery(sq) => {
            check_duration("subquery range", sq.range)?;
            if let Some(step) = sq.step {
                check_duration("subquery step", step)?;
                if millis(step) == 0 {
                    return Err(format!("subquery step {step:?} is shorter than seismo's resolution of 1ms"));
                }
            }
            check_shift(&sq.offset, &sq.at)?;
            check_times(&sq.expr)
        }
    }
}

fn check_duration(what: &str, d: Duration) -> Result<(), String> {
    if millis(d) > MAX_DURATION_MS {
        return Err(format!(
            "{what} {} is out of range: seismo allows at most {}",
            promql_parser::util::display_duration(&d),
            promql_parser::util::display_duration(&Duration::from_millis(MAX_DURATION_MS as u64)),
        ));
    }
    Ok(())
}

fn check_shift(offset: &Option<Offset>, at: &Option<AtModifier>) -> Result<(), String> {
    if let Some(Offset::Pos(d) | Offset::Neg(d)) = offset {
        check_duration("offset", *d)?;
    }
    if let Some(AtModifier::At(t)) = at {
        let ms = system_time_ms(*t);
        if !time_in_range(ms) {
            return Err(format!("@ modifier: {}", time_out_of_range(ms)));
        }
    }
    Ok(())
}

/// Whole milliseconds of `d`, saturating at `i64::MAX`.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unix ms of `t`, saturating far outside i64.
pub(crate) fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => millis(d),
        Err(e) => millis(e.duration()).saturating_neg(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: &str) -> Result<(), String> {
        check_times(&promql_parser::parser::parse(q).unwrap())
    }

    #[test]
    fn timestamps_are_written_as_prometheus_writes_them() {
        assert_eq!(format_timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_timestamp(1_435_781_451_500), "1435781451.5");
        assert_eq!(format_timestamp(1_435_781_451_000), "1435781451");
        assert_eq!(format_timestamp(-1500), "-1.5");
    }

    #[test]
    fn ordinary_times_and_durations_pass() {
        for q in [
            "up",
            "rate(x[5m] offset 1w)",
            "max_over_time(x[1h:1m] @ 1700000000)",
            "x @ -1000000000 offset -5m",
            "sum(rate(x[100y]))",
            "x @ start() offset 1h",
        ] {
            check(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }

    #[test]
    fn far_out_values_are_named() {
        let cases = [
            ("x offset 1000y", "offset 1000y is out of range"),
            ("x offset -1000y", "offset 1000y is out of range"),
            ("rate(x[1000y])", "range 1000y is out of range"),
            ("max_over_time(x[1000y:1m])", "subquery range 1000y is out of range"),
            ("max_over_time(x[1h:1000y])", "subquery step 1000y is out of range"),
            ("max_over_time(x[1h:0.0001])", "subquery step 100µs is shorter than"),
            ("x @ 1e15", "@ modifier: timestamp 1000000000000000 is out of range"),
            ("x @ -1e15", "@ modifier: timestamp -1000000000000000 is out of range"),
            ("sum(abs(x @ 1e15))", "@ modifier"),
        ];
        for (q, want) in cases {
            let e = check(q).unwrap_err();
            assert!(e.contains(want), "{q}: {e}");
        }
    }
}
