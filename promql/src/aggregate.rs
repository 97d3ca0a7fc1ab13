//! Aggregation operators (`sum by (route) (...)`): series are grouped once
//! for the whole grid (a group's labels never change between steps), then
//! each group is folded step by step, so a range query costs one pass over
//! the values.

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::error::PromqlError;
use crate::eval::{Evaluator, Grid, StepSeries, Value};
use crate::float_stats;
use crate::functions::set_label;
use crate::source::Labels;
use seismo_api::prometheus::format_value;

pub(crate) fn eval(ev: &Evaluator, agg: &AggregateExpr, grid: Grid) -> Result<Value, PromqlError> {
    let op = agg.op.id();
    let input = ev.eval_vector(&agg.expr, grid)?;
    let groups = group(&input, agg.modifier.as_ref());
    let steps = grid.len();
    let out = match op {
        T_TOPK | T_BOTTOMK => {
            let k = ev.eval_scalar(param(agg)?, grid)?;
            top_k(input, &groups, &k, op == T_TOPK, steps)?
        }
        T_QUANTILE => {
            let q = ev.eval_scalar(param(agg)?, grid)?;
            fold_groups(&input, groups, steps, |step, vals| Some(float_stats::quantile(q[step], vals)))
        }
        T_COUNT_VALUES => {
            let label = ev.eval_string(param(agg)?)?;
            count_values(ev, &input, groups, steps, &label)?
        }
        T_SUM => fold_groups(&input, groups, steps, |_, vals| Some(float_stats::sum(vals.iter().copied()))),
        T_AVG => fold_groups(&input, groups, steps, |_, vals| Some(float_stats::mean(vals))),
        T_COUNT => fold_groups(&input, groups, steps, |_, vals| Some(vals.len() as f64)),
        T_GROUP => fold_groups(&input, groups, steps, |_, _| Some(1.0)),
        T_MIN => fold_groups(&input, groups, steps, |_, vals| Some(extreme(vals, |cur, v| v < cur))),
        T_MAX => fold_groups(&input, groups, steps, |_, vals| Some(extreme(vals, |cur, v| v > cur))),
        T_STDDEV => fold_groups(&input, groups, steps, |_, vals| Some(variance(vals).sqrt())),
        T_STDVAR => fold_groups(&input, groups, steps, |_, vals| Some(variance(vals))),
        _ => return Err(PromqlError::unsupported(&format!("aggregation {}", agg.op))),
    };
    Ok(Value::Vector(out))
}

fn param(agg: &AggregateExpr) -> Result<&promql_parser::parser::Expr, PromqlError> {
    agg.param.as_deref().ok_or_else(|| PromqlError::Execution(format!("{} needs a parameter", agg.op)))
}

/// Series indices by group, groups in order of their labels. `by` keeps only
/// the listed labels; `without` drops them and `__name__`; no clause is `by ()`.
fn group(input: &[StepSeries], modifier: Option<&LabelModifier>) -> Vec<(Labels, Vec<usize>)> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    for (i, s) in input.iter().enumerate() {
        let key: Labels = match modifier {
            None => Vec::new(),
            Some(LabelModifier::Include(l)) => s.labels.iter().filter(|(n, _)| l.labels.contains(n)).cloned().collect(),
            Some(LabelModifier::Exclude(l)) => {
                s.labels.iter().filter(|(n, _)| n != "__name__" && !l.labels.contains(n)).cloned().collect()
            }
        };
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups
}

/// Folds each group's present values at each step with `f`; a group with no
/// value at a step has none in the result.
fn fold_groups(
    input: &[StepSeries],
    groups: Vec<(Labels, Vec<usize>)>,
    steps: usize,
    f: impl Fn(usize, &mut [f64]) -> Option<f64>,
) -> Vec<StepSeries> {
    let mut vals = Vec::new();
    groups
        .into_iter()
        .map(|(labels, members)| {
            let values = (0..steps)
                .map(|step| {
                    vals.clear();
                    vals.extend(members.iter().filter_map(|&i| input[i].values[step]));
                    if vals.is_empty() {
                        None
                    } else {
                        f(step, &mut vals)
                    }
                })
                .collect();
            StepSeries { labels, values }
        })
        .collect()
}

/// min/max: NaN only when all values are NaN (Prometheus replaces a NaN
/// running value by any later value).
fn extreme(vals: &[f64], better: fn(f64, f64) -> bool) -> f64 {
    let mut cur = vals[0];
    for &v in &vals[1..] {
        if better(cur, v) || cur.is_nan() {
            cur = v;
        }
    }
    cur
}

/// stddev/stdvar: a NaN or infinite input makes the group NaN.
fn variance(vals: &[f64]) -> f64 {
    if vals.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    float_stats::variance(vals.iter().copied())
}

/// topk/bottomk: per group and step the `k` largest (smallest) values, NaN
/// least preferred; the chosen series keep all their labels. An instant
/// result is ordered by value (descending for topk), as Prometheus answers.
fn top_k(
    mut input: Vec<StepSeries>,
    groups: &[(Labels, Vec<usize>)],
    k: &[f64],
    largest: bool,
    steps: usize,
) -> Result<Vec<StepSeries>, PromqlError> {
    let mut chosen: Vec<Vec<bool>> = vec![vec![false; steps]; input.len()];
    let mut candidates: Vec<(f64, usize)> = Vec::new();
    for (_, members) in groups {
        for step in 0..steps {
            if k[step].is_nan() {
                return Err(PromqlError::Execution("Parameter value is NaN".into()));
            }
            let want = if k[step] >= members.len() as f64 { members.len() } else { k[step].max(0.0) as usize };
            if want == 0 {
                continue;
            }
            candidates.clear();
            candidates.extend(members.iter().filter_map(|&i| input[i].values[step].map(|v| (v, i))));
            candidates.sort_by(|a, b| rank_order(a.0, b.0, largest));
            for &(_, i) in candidates.iter().take(want) {
                chosen[i][step] = true;
            }
        }
    }
    for (s, keep) in input.iter_mut().zip(&chosen) {
        for (v, &keep) in s.values.iter_mut().zip(keep) {
            if !keep {
                *v = None;
            }
        }
    }
    input.retain(|s| s.values.iter().any(Option::is_some));
    if steps == 1 {
        input.sort_by(|a, b| rank_order(a.values[0].unwrap_or(f64::NAN), b.values[0].unwrap_or(f64::NAN), largest));
    }
    Ok(input)
}

/// Preferred first: larger (or smaller) values, NaN last; stable for ties.
fn rank_order(a: f64, b: f64, largest: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if largest => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// count_values("label", v): per group, one series per distinct value (the
/// value, formatted as Prometheus does, in `label`), counting its series.
///
/// Unlike the other aggregations its output can outgrow its input (one
/// series per distinct value, each with a slot per step), so every new series
/// is reserved in the budget before it is made.
fn count_values(
    ev: &Evaluator,
    input: &[StepSeries],
    groups: Vec<(Labels, Vec<usize>)>,
    steps: usize,
    label: &str,
) -> Result<Vec<StepSeries>, PromqlError> {
    if label.is_empty() {
        return Err(PromqlError::Execution(format!("invalid label name {label:?}")));
    }
    let mut out: Vec<StepSeries> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (labels, members) in groups {
        for step in 0..steps {
            ev.budget.check_time()?;
            for &i in &members {
                let Some(v) = input[i].values[step] else { continue };
                let mut key = labels.clone();
                set_label(&mut key, label, format_value(v));
                let o = match index.get(&key) {
                    Some(&o) => o,
                    None => {
                        ev.budget.reserve(steps)?;
                        index.insert(key.clone(), out.len());
                        out.push(StepSeries { labels: key, values: vec![None; steps] });
                        out.len() - 1
                    }
                };
                *out[o].values[step].get_or_insert(0.0) += 1.0;
            }
        }
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::eval::tests::{instant, labels, series, vector};
    use crate::source::MemSource;
    use crate::QueryValue;
    use seismo_api::prometheus::format_value;

    #[test]
    fn count_values_labels_are_written_as_go_writes_floats() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(1.5e-7), "0.00000015");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    fn src() -> MemSource {
        MemSource::new(vec![
            series("req", &[("route", "/a"), ("code", "200"), ("inst", "1")], 15, &[10.0]),
            series("req", &[("route", "/a"), ("code", "500"), ("inst", "1")], 15, &[2.0]),
            series("req", &[("route", "/b"), ("code", "200"), ("inst", "1")], 15, &[7.0]),
            series("req", &[("route", "/b"), ("code", "200"), ("inst", "2")], 15, &[5.0]),
        ])
    }

    #[test]
    fn sum_by_and_without() {
        let s = src();
        // /a: 10 + 2 = 12; /b: 7 + 5 = 12.
        assert_eq!(
            vector(&s, "sum by (route) (req)", 0),
            vec![(labels("", &[("route", "/a")]), 12.0), (labels("", &[("route", "/b")]), 12.0)]
        );
        // without (inst, code) keeps route and drops the name.
        assert_eq!(
            vector(&s, "count without (inst, code) (req)", 0),
            vec![(labels("", &[("route", "/a")]), 2.0), (labels("", &[("route", "/b")]), 2.0)]
        );
        // by code: 200 -> 10 + 7 + 5 = 22, 500 -> 2.
        assert_eq!(
            vector(&s, "sum(req) by (code)", 0),
            vec![(labels("", &[("code", "200")]), 22.0), (labels("", &[("code", "500")]), 2.0)]
        );
        assert_eq!(vector(&s, "sum(req)", 0), vec![(Vec::new(), 24.0)]);
    }

    #[test]
    fn avg_min_max_group_stddev_quantile() {
        let s = src();
        // Values 10, 2, 7, 5: mean 6; deviations 4, -4, 1, -1 -> squares 34 / 4 = 8.5.
        let one = |q: &str| vector(&s, q, 0)[0].1;
        assert_eq!(one("avg(req)"), 6.0);
        assert_eq!(one("min(req)"), 2.0);
        assert_eq!(one("max(req)"), 10.0);
        assert_eq!(one("group(req)"), 1.0);
        assert_eq!(one("stdvar(req)"), 8.5);
        assert_eq!(one("stddev(req)"), 8.5f64.sqrt());
        // Sorted 2,5,7,10: q=0.5 -> rank 1.5 -> 6.
        assert_eq!(one("quantile(0.5, req)"), 6.0);
    }

    #[test]
    fn topk_keeps_the_original_series_in_value_order() {
        let s = src();
        let QueryValue::Vector(v) = instant(&s, "topk(2, req)", 0).unwrap() else { panic!() };
        let got: Vec<_> = v.iter().map(|x| (x.labels.clone(), x.v)).collect();
        assert_eq!(
            got,
            vec![
                (labels("req", &[("route", "/a"), ("code", "200"), ("inst", "1")]), 10.0),
                (labels("req", &[("route", "/b"), ("code", "200"), ("inst", "1")]), 7.0),
            ]
        );
        // Per group the smallest of each route: /a -> 2 (code 500), /b -> 5 (inst 2);
        // sorted by labels, code="200" (the /b one) comes first.
        let got = vector(&s, "bottomk by (route) (1, req)", 0);
        assert_eq!(got.iter().map(|x| x.1).collect::<Vec<_>>(), vec![5.0, 2.0]);
        assert!(vector(&s, "topk(0, req)", 0).is_empty());
    }

    #[test]
    fn count_values_labels_each_value() {
        let s = MemSource::new(vec![
            series("v", &[("i", "1")], 15, &[1.5]),
            series("v", &[("i", "2")], 15, &[1.5]),
            series("v", &[("i", "3")], 15, &[2.0]),
        ]);
        assert_eq!(
            vector(&s, r#"count_values("val", v)"#, 0),
            vec![(labels("", &[("val", "1.5")]), 2.0), (labels("", &[("val", "2")]), 1.0)]
        );
    }

    #[test]
    fn range_query_aggregates_each_step() {
        // a: 1, 2, 3 at 0, 60, 120 s; b starts at 120 s with 30: sums 1, 2, 33.
        let src = MemSource::new(vec![
            series("m", &[("k", "a")], 60, &[1.0, 2.0, 3.0]),
            crate::Series { labels: labels("m", &[("k", "b")]), samples: vec![(120_000, 30.0)] },
        ]);
        let expr = promql_parser::parser::parse("sum(m)").unwrap();
        let QueryValue::Matrix(m) =
            crate::range_query(&src, &expr, 0, 120_000, 60_000, &crate::Budget::unlimited()).unwrap()
        else {
            panic!()
        };
        assert_eq!(m[0].samples, vec![(0, 1.0), (60_000, 2.0), (120_000, 33.0)]);
    }
}
