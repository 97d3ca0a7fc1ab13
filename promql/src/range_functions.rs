//! Functions of a range vector (`rate(x[5m])`, `*_over_time`, subqueries
//! too): each series' window per step is handed to a pure function of its
//! samples, so the extrapolation and counter-reset rules are unit-testable
//! without a query.

use std::collections::HashSet;

use promql_parser::parser::Expr;

use crate::error::PromqlError;
use crate::eval::{drop_name, same_labelset, Evaluator, Grid, StepSeries, Value};
use crate::float_stats;

/// What a range function sees at one step for one series.
pub(crate) struct Window<'a> {
    /// The samples in `(start, end]`, at least one.
    pub samples: &'a [(i64, f64)],
    pub start: i64,
    pub end: i64,
    /// The evaluation time of the step (before `offset`/`@`).
    pub step_ts: i64,
    /// The function's scalar parameter at this step (`quantile_over_time`'s
    /// `q`, `predict_linear`'s `t`), else NaN.
    pub param: f64,
}

/// A range function: its value for one window, or none.
pub(crate) type RangeFn = fn(&Window) -> Option<f64>;

/// The range functions seismo implements, by name, and whether each keeps
/// `__name__` (only `last_over_time` and `first_over_time` do).
pub(crate) fn lookup(name: &str) -> Option<(RangeFn, bool)> {
    let f: RangeFn = match name {
        "rate" => |w| extrapolated_rate(w, true, true),
        "increase" => |w| extrapolated_rate(w, true, false),
        "delta" => |w| extrapolated_rate(w, false, false),
        "irate" => |w| instant_value(w.samples, true),
        "idelta" => |w| instant_value(w.samples, false),
        "resets" => |w| Some(w.samples.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64),
        "changes" => |w| Some(w.samples.windows(2).filter(|p| !same(p[0].1, p[1].1)).count() as f64),
        "deriv" => |w| (w.samples.len() >= 2).then(|| linear_regression(w.samples, w.samples[0].0).0),
        "predict_linear" => |w| {
            (w.samples.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(w.samples, w.step_ts);
                slope * w.param + intercept
            })
        },
        "avg_over_time" => |w| Some(float_stats::mean(&values(w))),
        "sum_over_time" => |w| Some(float_stats::sum(w.samples.iter().map(|s| s.1))),
        "count_over_time" => |w| Some(w.samples.len() as f64),
        "min_over_time" => |w| Some(fold_extreme(w, |cur, v| v < cur)),
        "max_over_time" => |w| Some(fold_extreme(w, |cur, v| v > cur)),
        "last_over_time" => |w| w.samples.last().map(|s| s.1),
        "first_over_time" => |w| w.samples.first().map(|s| s.1),
        "present_over_time" => |_| Some(1.0),
        "stddev_over_time" => |w| Some(float_stats::variance(w.samples.iter().map(|s| s.1)).sqrt()),
        "stdvar_over_time" => |w| Some(float_stats::variance(w.samples.iter().map(|s| s.1))),
        "quantile_over_time" => |w| Some(float_stats::quantile(w.param, &mut values(w))),
        "mad_over_time" => |w| {
            let mut vals = values(w);
            let median = float_stats::quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = vals.iter().map(|v| (v - median).abs()).collect();
            Some(float_stats::quantile(0.5, &mut dev))
        },
        _ => return None,
    };
    Some((f, matches!(name, "last_over_time" | "first_over_time")))
}

/// Evaluates range function `f` over `matrix` at each step of `grid`.
///
/// # Errors
/// `vector cannot contain metrics with the same labelset` when dropping the
/// metric name leaves two series alike (Prometheus checks the whole range).
pub(crate) fn eval(
    ev: &Evaluator,
    grid: Grid,
    matrix: &Expr,
    params: Option<Vec<f64>>,
    f: RangeFn,
    keep_name: bool,
) -> Result<Value, PromqlError> {
    let arg = ev.eval_range(matrix, grid)?;
    let mut out = Vec::with_capacity(arg.series.len());
    for i in 0..arg.series.len() {
        ev.budget.reserve(grid.len())?;
        let mut values: Vec<Option<f64>> = Vec::with_capacity(grid.len());
        for step in 0..grid.len() {
            // A step folds a whole window: wide windows over many steps are
            // where a query's time goes.
            ev.budget.check_time()?;
            let samples = arg.window(i, step);
            values.push(if samples.is_empty() {
                None
            } else {
                let (start, end) = arg.bounds(step);
                let param = params.as_ref().map_or(f64::NAN, |p| p[step]);
                f(&Window { samples, start, end, step_ts: grid.ts(step), param })
            });
        }
        if values.iter().any(Option::is_some) {
            let mut labels = arg.series[i].labels.clone();
            if !keep_name {
                drop_name(&mut labels);
            }
            out.push(StepSeries { labels, values });
        }
    }
    let mut seen = HashSet::with_capacity(out.len());
    if !out.iter().all(|s| seen.insert(&s.labels)) {
        return Err(same_labelset());
    }
    Ok(Value::Vector(out))
}

fn values(w: &Window) -> Vec<f64> {
    w.samples.iter().map(|s| s.1).collect()
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// min/max over time: NaN only when every value is NaN.
fn fold_extreme(w: &Window, better: fn(f64, f64) -> bool) -> f64 {
    let mut cur = w.samples[0].1;
    for &(_, v) in &w.samples[1..] {
        if better(cur, v) || cur.is_nan() {
            cur = v;
        }
    }
    cur
}

/// `rate`, `increase` and `delta` as Prometheus' `extrapolatedRate`: the
/// change between the first and last sample (plus, for counters, every value
/// before a drop), extrapolated towards the window's edges when the samples
/// come close to them (within 1.1 average intervals; else by half an
/// interval), never to below zero for counters; `rate` divides by the range.
pub(crate) fn extrapolated_rate(w: &Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    let s = w.samples;
    if s.len() < 2 {
        return None;
    }
    let (first_t, first_v) = s[0];
    let (last_t, last_v) = s[s.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        for p in s.windows(2) {
            if p[1].1 < p[0].1 {
                result += p[0].1;
            }
        }
    }
    // Differences in f64: a window may start at a saturated time.
    let secs_between = |a: i64, b: i64| (b as f64 - a as f64) / 1000.0;
    let mut to_start = secs_between(w.start, first_t);
    let mut to_end = secs_between(last_t, w.end);
    let sampled = secs_between(first_t, last_t);
    let avg = sampled / (s.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter {
        // A counter cannot have been below zero: stop extrapolating at the zero point.
        let to_zero = if result > 0.0 && first_v >= 0.0 { sampled * (first_v / result) } else { to_start };
        to_start = to_start.min(to_zero);
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = if sampled != 0.0 { (sampled + to_start + to_end) / sampled } else { 1.0 };
    if is_rate {
        factor /= secs_between(w.start, w.end);
    }
    Some(result * factor)
}

/// `irate` and `idelta`: the last two samples' difference (for `irate` per
/// second, and after a counter reset the last value itself).
pub(crate) fn instant_value(s: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (t0, v0) = s[s.len() - 2];
    let (t1, v1) = s[s.len() - 1];
    let interval = t1 - t0;
    if interval == 0 {
        return None;
    }
    let diff = if is_rate && v1 < v0 { v1 } else { v1 - v0 };
    Some(if is_rate { diff / (interval as f64 / 1000.0) } else { diff })
}

/// Least-squares fit of the samples against time in seconds relative to
/// `intercept_t`: `(slope per second, value at intercept_t)`.
pub(crate) fn linear_regression(s: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let init = s[0].1;
    if s.iter().all(|p| p.1 == init) {
        return if init.is_infinite() { (f64::NAN, f64::NAN) } else { (0.0, init) };
    }
    let (mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for &(t, v) in s {
        let x = (t as f64 - intercept_t as f64) / 1000.0;
        (sx, cx) = float_stats::kahan_inc(x, sx, cx);
        (sy, cy) = float_stats::kahan_inc(v, sy, cy);
        (sxy, cxy) = float_stats::kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = float_stats::kahan_inc(x * x, sx2, cx2);
    }
    let n = s.len() as f64;
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tests::{assert_close, labels, series, vector};
    use crate::source::MemSource;

    fn window(samples: &[(i64, f64)], start: i64, end: i64) -> Window<'_> {
        Window { samples, start, end, step_ts: end, param: f64::NAN }
    }

    fn counter_src() -> MemSource {
        // x{job="a"}: 0, 10, 20, ... every 15 s from t=0 to t=600 (41 samples).
        let vals: Vec<f64> = (0..=40).map(|i| i as f64 * 10.0).collect();
        MemSource::new(vec![series("x", &[("job", "a")], 15, &vals)])
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        let src = counter_src();
        // At t=120 the window (60, 120] holds t=75..120: values 50,60,70,80.
        // increase 30 over 45 s sampled; 15 s to the start (< 1.1 * 15 -> extrapolate
        // fully; the zero point is 45*50/30 = 75 s away, further), 0 s to the end:
        // 30 * (45+15)/45 = 40 -> rate 40/60 = 0.666..., exactly 10 per 15 s.
        let got = vector(&src, "rate(x[1m])", 120);
        assert_eq!(got[0].0, labels("", &[("job", "a")]), "rate drops the name");
        assert_close(got[0].1, 40.0 / 60.0);
        assert_close(vector(&src, "increase(x[1m])", 120)[0].1, 40.0);
        // [50s] at t=120: (70, 120] holds the same samples, 5 s to the start:
        // 30 * (45+5+0)/45 = 33.33.
        assert_close(vector(&src, "increase(x[50s])", 120)[0].1, 30.0 * 50.0 / 45.0);
        // At t=130 with [1m]: (70, 130], 5 s to the start and 10 s to the end:
        // 30 * (45+5+10)/45 = 40.
        assert_close(vector(&src, "increase(x[1m])", 130)[0].1, 40.0);
    }

    #[test]
    fn rate_extrapolation_stops_at_the_counter_zero_point() {
        // Samples at 30 s and 45 s, values 1 and 11, window (0, 60]: to_start = 30 s,
        // threshold 16.5 s -> half an interval (7.5 s); zero point 15 * 1/10 = 1.5 s
        // -> start 1.5 s; to_end 15 s < 16.5 -> 15 s.
        // increase = 10 * (15 + 1.5 + 15)/15 = 21.
        let s = [(30_000, 1.0), (45_000, 11.0)];
        assert_close(extrapolated_rate(&window(&s, 0, 60_000), true, false).unwrap(), 21.0);
        // delta (no counter logic): 10 * (15 + 7.5 + 15)/15 = 25.
        assert_close(extrapolated_rate(&window(&s, 0, 60_000), false, false).unwrap(), 25.0);
        // One sample: nothing.
        assert_eq!(extrapolated_rate(&window(&s[..1], 0, 60_000), true, true), None);
    }

    #[test]
    fn counter_resets_add_the_value_before_the_drop() {
        // 10, 20, 5, 15 at 15 s spacing in (0, 60] (t = 15..60): the drop adds 20:
        // 15 - 10 + 20 = 25 over 45 s; to_start 15 s (full), zero point 45*10/25 = 18 s
        // (further), to_end 0: 25 * 60/45 = 33.33.
        let s = [(15_000, 10.0), (30_000, 20.0), (45_000, 5.0), (60_000, 15.0)];
        let w = window(&s, 0, 60_000);
        assert_close(extrapolated_rate(&w, true, false).unwrap(), 25.0 * 60.0 / 45.0);
        assert_eq!(resets(&w), 1.0);
        // irate after a reset: the last value over the interval: (15 - 5)/15; idelta 10.
        assert_close(instant_value(&s, true).unwrap(), 10.0 / 15.0);
        assert_close(instant_value(&s[..3], true).unwrap(), 5.0 / 15.0);
        assert_eq!(instant_value(&s[..3], false).unwrap(), -15.0);
    }

    fn resets(w: &Window) -> f64 {
        (lookup("resets").unwrap().0)(w).unwrap()
    }

    #[test]
    fn over_time_functions() {
        let src = MemSource::new(vec![series("g", &[], 10, &[1.0, 5.0, 2.0, 8.0, 4.0])]);
        // At t=40 with [30s] the window (10, 40] holds 2, 8, 4.
        assert_eq!(vector(&src, "sum_over_time(g[30s])", 40)[0].1, 14.0);
        assert_close(vector(&src, "avg_over_time(g[30s])", 40)[0].1, 14.0 / 3.0);
        assert_eq!(vector(&src, "min_over_time(g[30s])", 40)[0].1, 2.0);
        assert_eq!(vector(&src, "max_over_time(g[30s])", 40)[0].1, 8.0);
        assert_eq!(vector(&src, "count_over_time(g[30s])", 40)[0].1, 3.0);
        assert_eq!(vector(&src, "changes(g[1m])", 40)[0].1, 4.0);
        // quantile 0.5 of 2,4,8 = 4; stdvar: mean 14/3, deviations^2 sum = 56/3 / 3.
        assert_eq!(vector(&src, "quantile_over_time(0.5, g[30s])", 40)[0].1, 4.0);
        assert_close(vector(&src, "stdvar_over_time(g[30s])", 40)[0].1, 56.0 / 9.0);
        // last_over_time keeps the name; others drop it.
        assert_eq!(vector(&src, "last_over_time(g[30s])", 40), vec![(labels("g", &[]), 4.0)]);
        assert_eq!(vector(&src, "present_over_time(g[30s])", 40), vec![(labels("", &[]), 1.0)]);
    }

    #[test]
    fn deriv_and_predict_linear_fit_a_line() {
        // y = 3 + 2 t (t in seconds) sampled at 0, 10, 20, 30.
        let s: Vec<(i64, f64)> = (0..4).map(|i| (i * 10_000, 3.0 + 2.0 * (i * 10) as f64)).collect();
        let (slope, intercept) = linear_regression(&s, 0);
        assert_close(slope, 2.0);
        assert_close(intercept, 3.0);
        let src = MemSource::new(vec![series("g", &[], 10, &[3.0, 23.0, 43.0, 63.0])]);
        assert_close(vector(&src, "deriv(g[1m])", 30)[0].1, 2.0);
        // Value at t=30 is 63; 60 s later 63 + 120 = 183.
        assert_close(vector(&src, "predict_linear(g[1m], 60)", 30)[0].1, 183.0);
    }

    #[test]
    fn duplicate_series_after_dropping_the_name_is_an_error() {
        let src = MemSource::new(vec![
            series("a", &[("j", "1")], 15, &[1.0, 2.0]),
            series("b", &[("j", "1")], 15, &[1.0, 2.0]),
        ]);
        let err = crate::eval::tests::instant(&src, r#"rate({j="1"}[1m])"#, 15).unwrap_err();
        assert_eq!(err.to_string(), "vector cannot contain metrics with the same labelset");
    }
}
