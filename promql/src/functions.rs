//! Function calls: dispatch by name to the range functions
//! ([`range_functions`](crate::range_functions)), `histogram_quantile`, and
//! the instant-vector and scalar functions implemented here. A function the
//! parser knows but seismo does not implement is an execution error naming
//! it, never a panic.

use promql_parser::label::MatchOp;
use promql_parser::label::Matcher;
use promql_parser::parser::token::T_EQL_REGEX;
use promql_parser::parser::{Call, Expr};

use crate::error::PromqlError;
use crate::eval::{drop_name, merge_same_labels, Evaluator, Grid, StepSeries, Value};
use crate::source::{label_value, Labels};
use crate::{histogram, range_functions};
use chrono::{Datelike, Timelike};

pub(crate) fn call(ev: &Evaluator, call: &Call, grid: Grid) -> Result<Value, PromqlError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| a.as_ref()).collect();
    if let Some((f, keep_name)) = range_functions::lookup(name) {
        return match name {
            "quantile_over_time" => {
                let q = ev.eval_scalar(args[0], grid)?;
                range_functions::eval(ev, grid, args[1], Some(q), f, keep_name)
            }
            "predict_linear" => {
                let t = ev.eval_scalar(args[1], grid)?;
                range_functions::eval(ev, grid, args[0], Some(t), f, keep_name)
            }
            _ => range_functions::eval(ev, grid, args[0], None, f, keep_name),
        };
    }
    if let Some(f) = math_function(name) {
        return map_values(ev.eval_vector(args[0], grid)?, |_, v| Some(f(v)));
    }
    let scalar_arg = |i: usize| ev.eval_scalar(args[i], grid);
    match name {
        "time" => Ok(Value::Scalar(grid.times().map(|t| t as f64 / 1000.0).collect())),
        // The query's own parameters (Prometheus folds these into numbers).
        "start" => Ok(Value::Scalar(vec![ev.query_start as f64 / 1000.0; grid.len()])),
        "end" => Ok(Value::Scalar(vec![ev.query_end as f64 / 1000.0; grid.len()])),
        "range" => Ok(Value::Scalar(vec![(ev.query_end as f64 - ev.query_start as f64) / 1000.0; grid.len()])),
        "step" => Ok(Value::Scalar(vec![ev.query_step as f64 / 1000.0; grid.len()])),
        "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; grid.len()])),
        "vector" => {
            let v = scalar_arg(0)?;
            Ok(Value::Vector(vec![StepSeries { labels: Vec::new(), values: v.into_iter().map(Some).collect() }]))
        }
        "scalar" => {
            let input = ev.eval_vector(args[0], grid)?;
            let values = (0..grid.len())
                .map(|step| {
                    let mut present = input.iter().filter_map(|s| s.values[step]);
                    match (present.next(), present.next()) {
                        (Some(v), None) => v,
                        _ => f64::NAN,
                    }
                })
                .collect();
            Ok(Value::Scalar(values))
        }
        "round" => {
            let to_nearest = if args.len() > 1 { scalar_arg(1)? } else { vec![1.0; grid.len()] };
            map_values(ev.eval_vector(args[0], grid)?, |step, v| {
                // Go divides by the inverse: fewer float surprises (Prometheus' funcRound).
                let inverse = 1.0 / to_nearest[step];
                Some((v * inverse + 0.5).floor() / inverse)
            })
        }
        "clamp" => {
            let (lo, hi) = (scalar_arg(1)?, scalar_arg(2)?);
            // max < min yields nothing at that step.
            map_values(ev.eval_vector(args[0], grid)?, |step, v| {
                (hi[step] >= lo[step]).then(|| lo[step].max(hi[step].min(v)))
            })
        }
        "clamp_min" => {
            let lo = scalar_arg(1)?;
            map_values(ev.eval_vector(args[0], grid)?, |step, v| Some(lo[step].max(v)))
        }
        "clamp_max" => {
            let hi = scalar_arg(1)?;
            map_values(ev.eval_vector(args[0], grid)?, |step, v| Some(hi[step].min(v)))
        }
        "timestamp" => timestamp(ev, args[0], grid),
        "absent" => {
            let input = ev.eval_vector(args[0], grid)?;
            Ok(absent(absent_labels(args[0]), grid, |step| input.iter().any(|s| s.values[step].is_some())))
        }
        "absent_over_time" => {
            let arg = ev.eval_range(args[0], grid)?;
            Ok(absent(absent_labels(args[0]), grid, |step| {
                (0..arg.series.len()).any(|i| !arg.window(i, step).is_empty())
            }))
        }
        "sort" | "sort_desc" => {
            let mut input = ev.eval_vector(args[0], grid)?;
            // Only an instant query has an order; NaN goes last either way.
            if grid.len() == 1 {
                let desc = name == "sort_desc";
                input.sort_by(|a, b| {
                    let (x, y) = (a.values[0].unwrap_or(f64::NAN), b.values[0].unwrap_or(f64::NAN));
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if desc => y.total_cmp(&x),
                        _ => x.total_cmp(&y),
                    }
                });
            }
            Ok(Value::Vector(input))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut input = ev.eval_vector(args[0], grid)?;
            let names = args[1..].iter().map(|a| ev.eval_string(a)).collect::<Result<Vec<_>, _>>()?;
            input.sort_by(|a, b| {
                let by_names = names.iter().map(|n| label_value(&a.labels, n).cmp(label_value(&b.labels, n)));
                let ord = by_names
                    .fold(std::cmp::Ordering::Equal, |acc, o| acc.then(o))
                    .then_with(|| a.labels.cmp(&b.labels));
                if name == "sort_by_label_desc" {
                    ord.reverse()
                } else {
                    ord
                }
            });
            Ok(Value::Vector(input))
        }
        "label_replace" => {
            let input = ev.eval_vector(args[0], grid)?;
            let strings = args[1..5].iter().map(|a| ev.eval_string(a)).collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Vector(label_replace(input, &strings[0], &strings[1], &strings[2], &strings[3])?))
        }
        "label_join" => {
            let input = ev.eval_vector(args[0], grid)?;
            let strings = args[1..].iter().map(|a| ev.eval_string(a)).collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Vector(label_join(input, &strings[0], &strings[1], &strings[2..])?))
        }
        "histogram_quantile" => {
            let q = scalar_arg(0)?;
            let input = ev.eval_vector(args[1], grid)?;
            Ok(Value::Vector(histogram::histogram_quantile(&q, input)?))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute" | "month" | "year" => {
            let input = match args.first() {
                Some(a) => ev.eval_vector(a, grid)?,
                None => vec![StepSeries {
                    labels: Vec::new(),
                    values: grid.times().map(|t| Some((t / 1000) as f64)).collect(),
                }],
            };
            map_values(input, |_, v| Some(date_part(name, v)))
        }
        other => Err(PromqlError::unsupported(&format!("function {other}()"))),
    }
}

fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        _ => return None,
    })
}

/// Applies `f(step, value)` to every value, dropping `__name__` (a function
/// result is no longer the metric).
fn map_values(input: Vec<StepSeries>, f: impl Fn(usize, f64) -> Option<f64>) -> Result<Value, PromqlError> {
    let out = input
        .into_iter()
        .map(|mut s| {
            drop_name(&mut s.labels);
            for (step, v) in s.values.iter_mut().enumerate() {
                *v = v.and_then(|x| f(step, x));
            }
            s
        })
        .filter(|s| s.values.iter().any(Option::is_some))
        .collect();
    Ok(Value::Vector(merge_same_labels(out)?))
}

/// `timestamp(v)`: the time of each value in seconds; for a plain selector
/// the time of the sample itself, not of the evaluation step.
fn timestamp(ev: &Evaluator, arg: &Expr, grid: Grid) -> Result<Value, PromqlError> {
    let input = match arg {
        Expr::VectorSelector(vs) => ev.select_instant(vs, &ev.eval_times(grid, &vs.at, &vs.offset), true)?,
        Expr::Paren(p) => return timestamp(ev, &p.expr, grid),
        other => {
            let mut input = ev.eval_vector(other, grid)?;
            for s in &mut input {
                for (step, v) in s.values.iter_mut().enumerate() {
                    *v = v.map(|_| grid.ts(step) as f64 / 1000.0);
                }
            }
            input
        }
    };
    map_values(input, |_, v| Some(v))
}

/// The labels `absent(x{a="b"})` answers with: the selector's equality
/// matchers (a label matched twice is left out), nothing for other arguments.
fn absent_labels(arg: &Expr) -> Labels {
    let matchers = match arg {
        Expr::VectorSelector(vs) => &vs.matchers.matchers,
        Expr::MatrixSelector(ms) => &ms.vs.matchers.matchers,
        _ => return Vec::new(),
    };
    let mut out: Labels = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in matchers.iter().filter(|m| m.name != "__name__") {
        let first = seen.insert(m.name.clone());
        out.retain(|(n, _)| *n != m.name);
        if first && m.op == MatchOp::Equal {
            out.push((m.name.clone(), m.value.clone()));
        }
    }
    out.sort();
    out
}

fn absent(labels: Labels, grid: Grid, present: impl Fn(usize) -> bool) -> Value {
    let values: Vec<Option<f64>> = (0..grid.len()).map(|step| (!present(step)).then_some(1.0)).collect();
    if values.iter().any(Option::is_some) {
        Value::Vector(vec![StepSeries { labels, values }])
    } else {
        Value::Vector(Vec::new())
    }
}

/// `label_replace(v, dst, replacement, src, regex)`: where the anchored
/// `regex` matches `src`'s value, `dst` becomes `replacement` with `$1`/`${name}`
/// expanded (an empty result removes `dst`).
///
/// # Errors
/// Prometheus' texts for an invalid regex or destination label name, and a
/// duplicate label set in the result.
pub(crate) fn label_replace(
    input: Vec<StepSeries>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Vec<StepSeries>, PromqlError> {
    // promql-parser's regex matcher is anchored like Prometheus' `^(?s:...)$`.
    let invalid_regex = || PromqlError::Execution(format!("invalid regular expression in label_replace(): {regex}"));
    let matcher =
        Matcher::new_matcher(T_EQL_REGEX, src.to_string(), format!("(?s:{regex})")).map_err(|_| invalid_regex())?;
    let MatchOp::Re(re) = &matcher.op else { return Err(invalid_regex()) };
    if dst.is_empty() {
        return Err(PromqlError::Execution(format!("invalid destination label name in label_replace(): {dst}")));
    }
    let out = input
        .into_iter()
        .map(|mut s| {
            if let Some(caps) = re.captures(label_value(&s.labels, src)) {
                let mut value = String::new();
                caps.expand(replacement, &mut value);
                set_label(&mut s.labels, dst, value);
            }
            s
        })
        .collect();
    merge_same_labels(out)
}

/// `label_join(v, dst, separator, src...)`: `dst` becomes the `src` values
/// joined by `separator` (an empty result removes `dst`).
///
/// # Errors
/// An empty label name, or a duplicate label set in the result.
pub(crate) fn label_join(
    input: Vec<StepSeries>,
    dst: &str,
    sep: &str,
    srcs: &[String],
) -> Result<Vec<StepSeries>, PromqlError> {
    if dst.is_empty() {
        return Err(PromqlError::Execution(format!("invalid destination label name in label_join(): {dst}")));
    }
    if let Some(bad) = srcs.iter().find(|s| s.is_empty()) {
        return Err(PromqlError::Execution(format!("invalid source label name in label_join(): {bad}")));
    }
    let out = input
        .into_iter()
        .map(|mut s| {
            let joined = srcs.iter().map(|n| label_value(&s.labels, n)).collect::<Vec<_>>().join(sep);
            set_label(&mut s.labels, dst, joined);
            s
        })
        .collect();
    merge_same_labels(out)
}

/// Sets (or, for an empty value, removes) a label, keeping the set sorted.
pub(crate) fn set_label(labels: &mut Labels, name: &str, value: String) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value,
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_string(), value)),
    }
}

/// The calendar part `name` (UTC) of a unix time in seconds, as Go's `time`.
fn date_part(name: &str, secs: f64) -> f64 {
    // Go: time.Unix(int64(v), 0) truncates toward zero. Times past chrono's
    // calendar (about ±262,000 years) have no date; Prometheus' Go answers
    // nonsense there, seismo NaN.
    let Some(t) = chrono::DateTime::from_timestamp(secs as i64, 0) else {
        return f64::NAN;
    };
    let value = match name {
        "day_of_month" => t.day(),
        "day_of_week" => t.weekday().num_days_from_sunday(),
        "day_of_year" => t.ordinal(),
        "days_in_month" => days_in_month(t.year(), t.month()),
        "hour" => t.hour(),
        "minute" => t.minute(),
        "month" => t.month(),
        _ => return f64::from(t.year()),
    };
    f64::from(value)
}

/// Days in `month` (1-12) of `year`: the day before the first of the next month.
fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1).and_then(|d| d.pred_opt()).map_or(31, |d| d.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tests::{instant, labels, scalar, series, vector};
    use crate::source::MemSource;

    fn src() -> MemSource {
        MemSource::new(vec![
            series("m", &[("src", "host-1:9090"), ("job", "api")], 15, &[-2.5, 3.7]),
            series("m", &[("src", "host-2:9090"), ("job", "db")], 15, &[16.0, 1.5]),
        ])
    }

    #[test]
    fn math_functions_drop_the_name() {
        let s = src();
        assert_eq!(
            vector(&s, "abs(m)", 0),
            vec![
                (labels("", &[("job", "api"), ("src", "host-1:9090")]), 2.5),
                (labels("", &[("job", "db"), ("src", "host-2:9090")]), 16.0)
            ]
        );
        let vals = |q: &str| vector(&s, q, 0).into_iter().map(|(_, v)| v).collect::<Vec<_>>();
        assert_eq!(vals("ceil(m)"), vec![-2.0, 16.0]);
        assert_eq!(vals("floor(m)"), vec![-3.0, 16.0]);
        assert_eq!(vals("sqrt(m)")[1], 4.0);
        assert_eq!(vals("sgn(m)"), vec![-1.0, 1.0]);
        // round ties up: -2.5 -> -2; to the nearest 5: 16 -> 15.
        assert_eq!(vals("round(m)"), vec![-2.0, 16.0]);
        // floor(-2.5 * 0.2 + 0.5) / 0.2 = 0; floor(16 * 0.2 + 0.5) / 0.2 = 15.
        assert_eq!(vals("round(m, 5)"), vec![0.0, 15.0]);
        assert_eq!(vals("clamp(m, 0, 10)"), vec![0.0, 10.0]);
        assert_eq!(vals("clamp_min(m, 0)"), vec![0.0, 16.0]);
        assert_eq!(vals("clamp_max(m, 0)"), vec![-2.5, 0.0]);
        assert!(vals("clamp(m, 10, 0)").is_empty(), "max < min gives nothing");
        assert_eq!(vals("log2(m)")[1], 4.0);
    }

    #[test]
    fn time_scalar_vector_and_timestamp() {
        let s = src();
        assert_eq!(scalar(&s, "time()", 20), 20.0);
        // Two series: scalar() is NaN; one: its value.
        assert!(scalar(&s, "scalar(m)", 0).is_nan());
        assert_eq!(scalar(&s, r#"scalar(m{job="db"})"#, 0), 16.0);
        assert_eq!(vector(&s, "vector(3)", 0), vec![(Vec::new(), 3.0)]);
        // The sample's own time (15 s), not the evaluation time (20 s)...
        assert_eq!(vector(&s, r#"timestamp(m{job="db"})"#, 20)[0].1, 15.0);
        // ...but the step time for a computed vector.
        assert_eq!(vector(&s, r#"timestamp(abs(m{job="db"}))"#, 20)[0].1, 20.0);
    }

    #[test]
    fn absent_answers_with_the_equality_matchers() {
        let s = src();
        assert!(vector(&s, r#"absent(m{job="api"})"#, 0).is_empty());
        assert_eq!(
            vector(&s, r#"absent(nope{job="x", env=~"p.*", zone="a", zone="b"})"#, 0),
            vec![(labels("", &[("job", "x")]), 1.0)]
        );
        assert_eq!(vector(&s, r#"absent_over_time(nope{job="x"}[1m])"#, 0), vec![(labels("", &[("job", "x")]), 1.0)]);
        assert!(vector(&s, "absent_over_time(m[1m])", 0).is_empty());
    }

    #[test]
    fn label_replace_and_join() {
        let s = src();
        let got = vector(&s, r#"label_replace(m, "host", "$1", "src", "(.*):.*")"#, 0);
        assert_eq!(got[0].0, labels("m", &[("host", "host-1"), ("job", "api"), ("src", "host-1:9090")]));
        // No match leaves the series alone; an empty replacement removes dst.
        let got = vector(&s, r#"label_replace(m, "job", "", "src", "host-2.*")"#, 0);
        assert_eq!(got[1].0, labels("m", &[("src", "host-2:9090")]));
        assert_eq!(got[0].0, labels("m", &[("job", "api"), ("src", "host-1:9090")]));
        let got = vector(&s, r#"label_join(m, "both", "/", "job", "src")"#, 0);
        assert_eq!(got[0].0, labels("m", &[("both", "api/host-1:9090"), ("job", "api"), ("src", "host-1:9090")]));
        let err = instant(&s, r#"label_replace(m, "x", "y", "src", "(")"#, 0).unwrap_err();
        assert_eq!(err.to_string(), "invalid regular expression in label_replace(): (");
        // Making both series alike is an error.
        let err = instant(&s, r#"label_replace(m, "src", "", "src", ".*")"#, 0);
        assert!(err.is_ok(), "jobs still differ");
        let err = instant(&s, r#"label_join(label_replace(m, "src", "", "src", ".*"), "job", "", "nope")"#, 0);
        assert_eq!(err.unwrap_err().to_string(), "vector cannot contain metrics with the same labelset");
    }

    #[test]
    fn sort_orders_instant_results() {
        let s = src();
        let order = |q: &str| match instant(&s, q, 0).unwrap() {
            crate::QueryValue::Vector(v) => v.into_iter().map(|x| x.v).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(order("sort_desc(m)"), vec![16.0, -2.5]);
        assert_eq!(order("sort(m)"), vec![-2.5, 16.0]);
        assert_eq!(order(r#"sort_by_label_desc(m, "job")"#), vec![16.0, -2.5]);
    }

    #[test]
    fn date_functions_use_utc() {
        // 2024-02-29T13:45:00Z = 1709214300.
        let t = 1_709_214_300.0;
        let parts = ["year", "month", "day_of_month", "day_of_year", "day_of_week", "hour", "minute", "days_in_month"];
        let got: Vec<f64> = parts.iter().map(|p| date_part(p, t)).collect();
        // Thursday = 4; day of year 31 + 29 = 60.
        assert_eq!(got, vec![2024.0, 2.0, 29.0, 60.0, 4.0, 13.0, 45.0, 29.0]);
        // One second before the epoch: Wednesday 1969-12-31T23:59:59Z.
        let got: Vec<f64> = parts.iter().map(|p| date_part(p, -1.0)).collect();
        assert_eq!(got, vec![1969.0, 12.0, 31.0, 365.0, 3.0, 23.0, 59.0, 31.0]);
        // 2100 is not a leap year; 2000 is.
        assert_eq!(date_part("days_in_month", 4_107_456_000.0), 28.0); // 2100-02-28
        assert_eq!(date_part("days_in_month", 951_782_400.0), 29.0); // 2000-02-29
    }

    #[test]
    fn unknown_functions_are_named() {
        let err = instant(&src(), "double_exponential_smoothing(m[5m], 0.5, 0.5)", 0).unwrap_err();
        assert!(err.to_string().contains("double_exponential_smoothing()"), "{err}");
    }
}
