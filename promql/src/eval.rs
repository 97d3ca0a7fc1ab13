//! The evaluator: walks the parser's AST once over a grid of evaluation
//! steps (one step for an instant query), reading each selector's samples once
//! for the whole grid and answering every step by binary search.
//!
//! Past 600 lines because it is one recursion: the node dispatch, the
//! selectors and the value shapes every operator module shares belong
//! together, and a third of the file is the shared test helpers and tests.

use std::cell::Cell;
use std::collections::HashMap;

use promql_parser::parser::{AtModifier, Expr, Offset};

use crate::budget::Budget;
use crate::error::PromqlError;
use crate::nesting::MAX_NESTING_DEPTH;
use crate::source::{selector_matchers, Labels, Series, SeriesSource};
use crate::timebounds::{millis, system_time_ms};
use crate::{aggregate, binary, functions};

/// How far back an instant selector looks for a sample (Prometheus' default
/// `--query.lookback-delta`).
pub const LOOKBACK_DELTA_MS: i64 = 5 * 60 * 1000;

/// A subquery without a step (`x[1h:]`) uses Prometheus' default evaluation
/// interval.
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Prometheus' staleness marker: a NaN with this exact bit pattern ends a
/// series; it is never a value.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// One element of an instant vector: a series' value at `t` (unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A query's answer, in the four shapes of Prometheus' API.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        v: String,
    },
    Vector(Vec<Sample>),
    /// Series sorted by labels (range queries), each with its points.
    Matrix(Vec<Series>),
}

/// Evaluates `expr` at `t` (unix ms), as Prometheus' `/api/v1/query`, within
/// `budget`. Times and durations in `expr` must have passed
/// [`check_times`](crate::timebounds::check_times) and its nesting
/// [`check_nesting`](crate::nesting::check_nesting).
///
/// # Errors
/// [`PromqlError::Execution`] for queries Prometheus rejects at evaluation time
/// (many-to-many matching, duplicate label sets, unsupported functions),
/// [`PromqlError::TooManySamples`] / [`PromqlError::Timeout`] past the budget and
/// [`PromqlError::Source`] when the store fails.
pub fn instant_query(
    source: &dyn SeriesSource,
    expr: &Expr,
    t: i64,
    budget: &Budget,
) -> Result<QueryValue, PromqlError> {
    let ev = Evaluator::new(source, budget, t, t, 0);
    Ok(match ev.eval(expr, Grid { start: t, end: t, step: 1 })? {
        Value::Scalar(v) => QueryValue::Scalar { t, v: v[0] },
        Value::String(v) => QueryValue::String { t, v },
        Value::Matrix(m) => QueryValue::Matrix(m),
        Value::Vector(series) => QueryValue::Vector(
            series.into_iter().filter_map(|s| s.values[0].map(|v| Sample { labels: s.labels, t, v })).collect(),
        ),
    })
}

/// Evaluates `expr` at `start`, `start + step`, ... up to `end` (unix ms), as
/// Prometheus' `/api/v1/query_range`: a matrix sorted by labels, each series
/// holding only the steps where it has a value.
///
/// # Errors
/// As [`instant_query`]; also when `expr` is a range vector or a string, or
/// `step` is not positive.
pub fn range_query(
    source: &dyn SeriesSource,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    budget: &Budget,
) -> Result<QueryValue, PromqlError> {
    if step <= 0 || end < start {
        return Err(PromqlError::Execution("range query needs step > 0 and end >= start".into()));
    }
    let grid = Grid { start, end, step };
    let ev = Evaluator::new(source, budget, start, end, step);
    let mut out = match ev.eval(expr, grid)? {
        Value::Scalar(v) => vec![Series { labels: Vec::new(), samples: grid.times().zip(v).collect() }],
        Value::Vector(series) => series
            .into_iter()
            .map(|s| Series {
                labels: s.labels,
                samples: grid.times().zip(s.values).filter_map(|(t, v)| v.map(|v| (t, v))).collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect(),
        Value::Matrix(_) | Value::String(_) => {
            return Err(PromqlError::Execution("range queries need a scalar or instant vector expression".into()))
        }
    };
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(QueryValue::Matrix(out))
}

/// The evaluation steps of one (sub)query: `start`, `start + step`, ... `<= end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    /// The number of steps; computed in i128 so that no grid overflows
    /// (a subquery's grid can be far larger than memory: the budget refuses it).
    pub(crate) fn len(&self) -> usize {
        let steps = (i128::from(self.end) - i128::from(self.start)) / i128::from(self.step) + 1;
        usize::try_from(steps.max(0)).unwrap_or(usize::MAX)
    }

    /// The time of step `i < len()`, which lies in `start..=end`.
    pub(crate) fn ts(&self, i: usize) -> i64 {
        let t = i128::from(self.start) + i as i128 * i128::from(self.step);
        i64::try_from(t).unwrap_or(self.end)
    }

    pub(crate) fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).map(|i| self.ts(i))
    }
}

/// An instant vector over a grid: one value per step, `None` where the series
/// has no value at that step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepSeries {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

/// An evaluated node.
#[derive(Debug)]
pub(crate) enum Value {
    /// One value per step.
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<StepSeries>),
    /// Only at the top of an instant query (`x[5m]`, a subquery).
    Matrix(Vec<Series>),
}

impl Value {
    /// The samples this value holds in memory, as the budget counts them:
    /// every slot of every series, present or not (the memory is taken).
    fn samples(&self, steps: usize) -> usize {
        match self {
            Value::Scalar(v) => v.len(),
            Value::String(_) => 1,
            Value::Vector(series) => series.len().saturating_mul(steps),
            Value::Matrix(series) => series.iter().map(|s| s.samples.len()).sum(),
        }
    }
}

/// A range vector argument over a grid: each series' samples, and per step
/// the window `(ends[step] - range, ends[step]]` (left-open, as Prometheus 3).
pub(crate) struct RangeArg {
    pub series: Vec<Series>,
    pub range: i64,
    pub ends: Vec<i64>,
}

impl RangeArg {
    /// The samples of series `i` inside the window of `step`.
    pub(crate) fn window(&self, i: usize, step: usize) -> &[(i64, f64)] {
        let end = self.ends[step];
        let samples = &self.series[i].samples;
        let lo = samples.partition_point(|&(t, _)| t <= end.saturating_sub(self.range));
        let hi = samples.partition_point(|&(t, _)| t <= end);
        &samples[lo..hi.max(lo)]
    }

    /// The window bounds `(start, end)` of `step`; the start is exclusive.
    pub(crate) fn bounds(&self, step: usize) -> (i64, i64) {
        (self.ends[step].saturating_sub(self.range), self.ends[step])
    }
}

pub(crate) struct Evaluator<'a> {
    pub source: &'a dyn SeriesSource,
    /// The samples and time this query may still use.
    pub budget: &'a Budget,
    /// The top-level query's start and end: what `@ start()` / `@ end()` mean
    /// at any depth.
    pub query_start: i64,
    pub query_end: i64,
    /// The top-level step (0 for an instant query): what `step()` means.
    pub query_step: i64,
    /// How many `eval` calls are open: a guard behind the API's lexical
    /// nesting check, so no AST can take the evaluator past its stack.
    depth: Cell<usize>,
}

impl<'a> Evaluator<'a> {
    fn new(source: &'a dyn SeriesSource, budget: &'a Budget, start: i64, end: i64, step: i64) -> Self {
        Evaluator { source, budget, query_start: start, query_end: end, query_step: step, depth: Cell::new(0) }
    }

    /// Evaluates one node over `grid`, within the budget: time is checked
    /// first, the grid's own size is reserved before anything is allocated
    /// for it, and when the node returns the samples held are its result's.
    pub(crate) fn eval(&self, expr: &Expr, grid: Grid) -> Result<Value, PromqlError> {
        self.budget.check_time()?;
        let depth = self.depth.get();
        if depth >= MAX_NESTING_DEPTH {
            return Err(PromqlError::Execution(format!(
                "query is nested too deeply: more than {MAX_NESTING_DEPTH} levels"
            )));
        }
        let held = self.budget.held();
        // Every node answers at least one value per step.
        self.budget.reserve(grid.len())?;
        self.depth.set(depth + 1);
        let value = self.eval_node(expr, grid);
        self.depth.set(depth);
        let value = value?;
        self.budget.settle(held, value.samples(grid.len()))?;
        Ok(value)
    }

    fn eval_node(&self, expr: &Expr, grid: Grid) -> Result<Value, PromqlError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; grid.len()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, grid),
            Expr::Unary(u) => match self.eval(&u.expr, grid)? {
                Value::Scalar(v) => Ok(Value::Scalar(v.into_iter().map(|x| -x).collect())),
                Value::Vector(series) => {
                    let negated = series
                        .into_iter()
                        .map(|mut s| {
                            drop_name(&mut s.labels);
                            s.values.iter_mut().flatten().for_each(|x| *x = -*x);
                            s
                        })
                        .collect();
                    Ok(Value::Vector(merge_same_labels(negated)?))
                }
                other => Err(type_error("unary minus", "scalar or instant vector", &other)),
            },
            Expr::VectorSelector(vs) => {
                let ends = self.eval_times(grid, &vs.at, &vs.offset);
                Ok(Value::Vector(self.select_instant(vs, &ends, false)?))
            }
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if grid.len() != 1 {
                    return Err(PromqlError::Execution("a range vector cannot be evaluated over a range".into()));
                }
                let arg = self.eval_range(expr, grid)?;
                let series = (0..arg.series.len())
                    .map(|i| Series { labels: arg.series[i].labels.clone(), samples: arg.window(i, 0).to_vec() })
                    .filter(|s| !s.samples.is_empty())
                    .collect();
                Ok(Value::Matrix(series))
            }
            Expr::Call(call) => functions::call(self, call, grid),
            Expr::Aggregate(agg) => aggregate::eval(self, agg, grid),
            Expr::Binary(bin) => binary::eval(self, bin, grid),
            Expr::Extension(_) => Err(PromqlError::unsupported("extension expressions")),
        }
    }

    pub(crate) fn eval_vector(&self, expr: &Expr, grid: Grid) -> Result<Vec<StepSeries>, PromqlError> {
        match self.eval(expr, grid)? {
            Value::Vector(v) => Ok(v),
            other => Err(type_error("argument", "instant vector", &other)),
        }
    }

    pub(crate) fn eval_scalar(&self, expr: &Expr, grid: Grid) -> Result<Vec<f64>, PromqlError> {
        match self.eval(expr, grid)? {
            Value::Scalar(v) => Ok(v),
            other => Err(type_error("argument", "scalar", &other)),
        }
    }

    pub(crate) fn eval_string(&self, expr: &Expr) -> Result<String, PromqlError> {
        match expr {
            Expr::StringLiteral(s) => Ok(s.val.clone()),
            Expr::Paren(p) => self.eval_string(&p.expr),
            _ => Err(PromqlError::Execution(format!("expected a string literal, got {expr}"))),
        }
    }

    /// A range vector argument: a matrix selector or a subquery.
    pub(crate) fn eval_range(&self, expr: &Expr, grid: Grid) -> Result<RangeArg, PromqlError> {
        match expr {
            Expr::Paren(p) => self.eval_range(&p.expr, grid),
            Expr::MatrixSelector(ms) => {
                let range = millis(ms.range);
                let ends = self.eval_times(grid, &ms.vs.at, &ms.vs.offset);
                let (lo, hi) = span(&ends);
                let mut series = self.source.select_within(
                    &selector_matchers(&ms.vs),
                    lo.saturating_sub(range - 1),
                    hi,
                    self.budget.remaining(),
                )?;
                self.budget.reserve(series.iter().map(|s| s.samples.len()).sum())?;
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                for s in &mut series {
                    s.samples.retain(|&(_, v)| v.to_bits() != STALE_NAN_BITS);
                }
                Ok(RangeArg { series, range, ends })
            }
            Expr::Subquery(sq) => {
                let range = millis(sq.range);
                let step = sq.step.map(millis).unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
                if step <= 0 {
                    return Err(PromqlError::Execution("subquery step must be positive".into()));
                }
                let ends = self.eval_times(grid, &sq.at, &sq.offset);
                let (lo, hi) = span(&ends);
                // Inner steps sit on multiples of the subquery step, the first
                // one strictly after the earliest window start (Prometheus'
                // subqueryTimeRange). In i128: checked times keep this far
                // inside i64, but the arithmetic must not depend on it.
                let from = i128::from(lo) - i128::from(range);
                let mut start = i128::from(step) * from.div_euclid(i128::from(step));
                if start <= from {
                    start += i128::from(step);
                }
                let start = i64::try_from(start).unwrap_or(i64::MIN);
                let series = if start > hi {
                    Vec::new()
                } else {
                    let inner = Grid { start, end: hi, step };
                    let values = self.eval_vector(&sq.expr, inner)?;
                    values
                        .into_iter()
                        .map(|s| Series {
                            labels: s.labels,
                            samples: inner.times().zip(s.values).filter_map(|(t, v)| v.map(|v| (t, v))).collect(),
                        })
                        .collect()
                };
                Ok(RangeArg { series, range, ends })
            }
            other => Err(PromqlError::Execution(format!("expected a range vector, got {other}"))),
        }
    }

    /// The time each step of `grid` reads data at, after `@` and `offset`.
    pub(crate) fn eval_times(&self, grid: Grid, at: &Option<AtModifier>, offset: &Option<Offset>) -> Vec<i64> {
        // Saturating: checked times make overflow impossible, and a saturated
        // time would only find no samples.
        let off = match offset {
            Some(Offset::Pos(d)) => millis(*d),
            Some(Offset::Neg(d)) => millis(*d).saturating_neg(),
            None => 0,
        };
        match at {
            None => grid.times().map(|t| t.saturating_sub(off)).collect(),
            Some(at) => {
                let t = match at {
                    AtModifier::Start => self.query_start,
                    AtModifier::End => self.query_end,
                    AtModifier::At(st) => system_time_ms(*st),
                };
                vec![t.saturating_sub(off); grid.len()]
            }
        }
    }

    /// An instant selector at each of `ends`: the latest sample in
    /// `(end - lookback, end]` unless it is a staleness marker. With
    /// `timestamps` the value is the sample's time in seconds (`timestamp()`).
    pub(crate) fn select_instant(
        &self,
        vs: &promql_parser::parser::VectorSelector,
        ends: &[i64],
        timestamps: bool,
    ) -> Result<Vec<StepSeries>, PromqlError> {
        let (lo, hi) = span(ends);
        let mut series = self.source.select_within(
            &selector_matchers(vs),
            lo.saturating_sub(LOOKBACK_DELTA_MS - 1),
            hi,
            self.budget.remaining(),
        )?;
        self.budget.reserve(series.iter().map(|s| s.samples.len()).sum())?;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut out = Vec::new();
        for s in series {
            // One slot per step for every series, reserved before it is taken.
            self.budget.reserve(ends.len())?;
            let values: Vec<Option<f64>> = ends
                .iter()
                .map(|&end| {
                    let idx = s.samples.partition_point(|&(t, _)| t <= end);
                    let &(t, v) = s.samples.get(idx.checked_sub(1)?)?;
                    if t <= end.saturating_sub(LOOKBACK_DELTA_MS) || v.to_bits() == STALE_NAN_BITS {
                        None
                    } else if timestamps {
                        Some(t as f64 / 1000.0)
                    } else {
                        Some(v)
                    }
                })
                .collect();
            if values.iter().any(Option::is_some) {
                out.push(StepSeries { labels: s.labels, values });
            }
        }
        Ok(out)
    }
}

fn span(ends: &[i64]) -> (i64, i64) {
    let lo = ends.iter().copied().min().unwrap_or(0);
    let hi = ends.iter().copied().max().unwrap_or(0);
    (lo, hi)
}

fn type_error(context: &str, want: &str, got: &Value) -> PromqlError {
    let got = match got {
        Value::Scalar(_) => "scalar",
        Value::String(_) => "string",
        Value::Vector(_) => "instant vector",
        Value::Matrix(_) => "range vector",
    };
    PromqlError::Execution(format!("{context}: expected {want}, got {got}"))
}

/// Removes `__name__`, as Prometheus does for anything that changes a
/// series' meaning (arithmetic, most functions).
pub(crate) fn drop_name(labels: &mut Labels) {
    labels.retain(|(n, _)| n != "__name__");
}

/// Merges series whose label sets became equal (e.g. after dropping
/// `__name__`) when they never have a value at the same step.
///
/// # Errors
/// Prometheus' `vector cannot contain metrics with the same labelset` when two
/// of them have a value at the same step.
pub(crate) fn merge_same_labels(series: Vec<StepSeries>) -> Result<Vec<StepSeries>, PromqlError> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<StepSeries> = Vec::with_capacity(series.len());
    for s in series {
        match index.get(&s.labels) {
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
            Some(&i) => {
                for (slot, v) in out[i].values.iter_mut().zip(s.values) {
                    if v.is_some() {
                        if slot.is_some() {
                            return Err(same_labelset());
                        }
                        *slot = v;
                    }
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn same_labelset() -> PromqlError {
    PromqlError::Execution("vector cannot contain metrics with the same labelset".into())
}

/// Labels as Prometheus prints them in error messages: `{a="b", c="d"}`.
pub(crate) fn format_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::MemSource;

    /// Builds labels from `name{k="v",...}`-like pairs; `name` may be empty.
    pub(crate) fn labels(name: &str, pairs: &[(&str, &str)]) -> Labels {
        let mut l: Labels = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if !name.is_empty() {
            l.push(("__name__".into(), name.into()));
        }
        l.sort();
        l
    }

    /// A series sampled every `every_s` seconds from t=0 with `values`.
    pub(crate) fn series(name: &str, pairs: &[(&str, &str)], every_s: i64, values: &[f64]) -> Series {
        let samples = values.iter().enumerate().map(|(i, &v)| (i as i64 * every_s * 1000, v)).collect();
        Series { labels: labels(name, pairs), samples }
    }

    pub(crate) fn instant(src: &MemSource, q: &str, t_s: i64) -> Result<QueryValue, PromqlError> {
        instant_query(src, &promql_parser::parser::parse(q).unwrap(), t_s * 1000, &Budget::unlimited())
    }

    /// The instant vector `q` at `t_s` seconds as (labels, value), sorted by labels.
    pub(crate) fn vector(src: &MemSource, q: &str, t_s: i64) -> Vec<(Labels, f64)> {
        match instant(src, q, t_s).unwrap() {
            QueryValue::Vector(v) => {
                let mut out: Vec<_> = v.into_iter().map(|s| (s.labels, s.v)).collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            }
            other => panic!("{q}: not a vector: {other:?}"),
        }
    }

    pub(crate) fn scalar(src: &MemSource, q: &str, t_s: i64) -> f64 {
        match instant(src, q, t_s).unwrap() {
            QueryValue::Scalar { v, .. } => v,
            other => panic!("{q}: not a scalar: {other:?}"),
        }
    }

    pub(crate) fn assert_close(got: f64, want: f64) {
        assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "got {got}, want {want}");
    }

    fn gauge_src() -> MemSource {
        // g{a="1"}: 1, 2, 3, ... every 60 s from t=0 to t=600 (11 samples).
        let values: Vec<f64> = (1..=11).map(f64::from).collect();
        MemSource::new(vec![
            series("g", &[("a", "1")], 60, &values),
            // Stops at t=60: older than 5 m from t=420 on.
            series("old", &[], 60, &[7.0, 8.0]),
        ])
    }

    #[test]
    fn instant_selector_takes_the_latest_sample_in_the_lookback_window() {
        let src = gauge_src();
        // At t=90 s the latest sample is t=60 (value 2); the result is stamped at 90 s.
        match instant(&src, "g", 90).unwrap() {
            QueryValue::Vector(v) => {
                assert_eq!(v, vec![Sample { labels: labels("g", &[("a", "1")]), t: 90_000, v: 2.0 }])
            }
            other => panic!("{other:?}"),
        }
        // old's last sample is at 60 s: the window at 359 s is (59, 359] and holds
        // it; at 360 s the window (60, 360] does not.
        assert_eq!(vector(&src, "old", 359), vec![(labels("old", &[]), 8.0)]);
        assert!(vector(&src, "old", 360).is_empty());
    }

    #[test]
    fn offset_and_at_move_the_read_time() {
        let src = gauge_src();
        // At 600 s offset 2m reads t=480 -> value 9; offset -1m at 300 reads t=360 -> 7.
        assert_eq!(vector(&src, "g offset 2m", 600)[0].1, 9.0);
        assert_eq!(vector(&src, "g offset -1m", 300)[0].1, 7.0);
        // @ 120 reads value 3 at any evaluation time.
        assert_eq!(vector(&src, "g @ 120", 600)[0].1, 3.0);
        assert_eq!(vector(&src, "g @ 120 offset 1m", 600)[0].1, 2.0);
    }

    #[test]
    fn instant_query_of_a_range_selector_is_a_left_open_matrix() {
        let src = gauge_src();
        // (120, 240] holds t=180 and t=240 only.
        match instant(&src, "g[2m]", 240).unwrap() {
            QueryValue::Matrix(m) => assert_eq!(m[0].samples, vec![(180_000, 4.0), (240_000, 5.0)]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn range_query_skips_steps_without_values_and_sorts_series() {
        let src = gauge_src();
        let expr = promql_parser::parser::parse(r#"{__name__=~"g|old"}"#).unwrap();
        let QueryValue::Matrix(m) = range_query(&src, &expr, 300_000, 420_000, 60_000, &Budget::unlimited()).unwrap()
        else {
            panic!()
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].labels, labels("g", &[("a", "1")]));
        assert_eq!(m[0].samples, vec![(300_000, 6.0), (360_000, 7.0), (420_000, 8.0)]);
        // old (last sample at 60 s) is only visible at 300 s.
        assert_eq!(m[1].samples, vec![(300_000, 8.0)]);
    }

    #[test]
    fn scalars_and_unary_minus() {
        let src = gauge_src();
        assert_eq!(scalar(&src, "-(1 + 2) * 3", 0), -9.0);
        // Unary minus on a vector drops the metric name.
        assert_eq!(vector(&src, "-g", 60), vec![(labels("", &[("a", "1")]), -2.0)]);
        match instant(&src, r#""hello""#, 5).unwrap() {
            QueryValue::String { t, v } => assert_eq!((t, v.as_str()), (5000, "hello")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subquery_evaluates_on_its_own_aligned_grid() {
        let src = gauge_src();
        // g[5m:1m] at 600 s: inner steps 360..600 (after 300) -> values 7..11.
        match instant(&src, "g[5m:1m]", 600).unwrap() {
            QueryValue::Matrix(m) => {
                let vals: Vec<f64> = m[0].samples.iter().map(|s| s.1).collect();
                assert_eq!(vals, vec![7.0, 8.0, 9.0, 10.0, 11.0]);
            }
            other => panic!("{other:?}"),
        }
        // max_over_time over a subquery of a rate-free expression.
        assert_eq!(vector(&src, "max_over_time((g * 2)[5m:1m])", 600)[0].1, 22.0);
    }
}
