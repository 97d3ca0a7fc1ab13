//! Binary operators: arithmetic, comparisons (filtering, or 0/1 with `bool`)
//! and the set operators, between scalars and vectors, with Prometheus'
//! vector matching (`on`/`ignoring`, `group_left`/`group_right`). Matching
//! signatures are computed once per series; the per-step work only checks
//! which series have values.

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD, T_MUL, T_NEQ, T_POW,
    T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::error::PromqlError;
use crate::eval::{drop_name, format_labels, merge_same_labels, same_labelset, Evaluator, Grid, StepSeries, Value};
use crate::source::Labels;

pub(crate) fn eval(ev: &Evaluator, bin: &BinaryExpr, grid: Grid) -> Result<Value, PromqlError> {
    let op = bin.op.id();
    let return_bool = bin.return_bool();
    if let Some(m) = &bin.modifier {
        if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
            return Err(PromqlError::unsupported("fill modifiers"));
        }
    }
    let lhs = ev.eval(&bin.lhs, grid)?;
    let rhs = ev.eval(&bin.rhs, grid)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
            l.into_iter()
                .zip(r)
                .map(|(a, b)| {
                    let (v, keep) = elem(op, a, b)?;
                    Ok(if is_comparison(op) { f64::from(u8::from(keep)) } else { v })
                })
                .collect::<Result<_, PromqlError>>()?,
        )),
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(op, v, &s, false, return_bool),
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(op, v, &s, true, return_bool),
        (Value::Vector(l), Value::Vector(r)) => {
            let (on, names) = matching(bin);
            let card = bin.modifier.as_ref().map_or(&VectorMatchCardinality::OneToOne, |m| &m.card);
            let out = match op {
                T_LAND | T_LOR | T_LUNLESS => set_op(op, l, r, on, &names, grid.len())?,
                _ => vector_vector(op, l, r, on, &names, card, return_bool, grid.len())?,
            };
            Ok(Value::Vector(out))
        }
        _ => Err(PromqlError::Execution("binary operators need scalar or instant vector operands".into())),
    }
}

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// `(value, keep)` of `a op b`; comparisons keep `a` when true.
fn elem(op: u16, a: f64, b: f64) -> Result<(f64, bool), PromqlError> {
    Ok(match op {
        T_ADD => (a + b, true),
        T_SUB => (a - b, true),
        T_MUL => (a * b, true),
        T_DIV => (a / b, true),
        T_MOD => (a % b, true),
        T_POW => (a.powf(b), true),
        T_ATAN2 => (a.atan2(b), true),
        T_EQLC => (a, a == b),
        T_NEQ => (a, a != b),
        T_GTR => (a, a > b),
        T_LSS => (a, a < b),
        T_GTE => (a, a >= b),
        T_LTE => (a, a <= b),
        _ => return Err(PromqlError::unsupported(&format!("operator {}", op_name(op)))),
    })
}

fn op_name(op: u16) -> String {
    promql_parser::parser::token::TokenType::new(op).to_string()
}

fn vector_scalar(
    op: u16,
    v: Vec<StepSeries>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
) -> Result<Value, PromqlError> {
    let drops_name = !is_comparison(op) || return_bool;
    let mut out = Vec::with_capacity(v.len());
    for mut series in v {
        for (step, slot) in series.values.iter_mut().enumerate() {
            let Some(x) = *slot else { continue };
            let (a, b) = if scalar_left { (s[step], x) } else { (x, s[step]) };
            let (value, keep) = elem(op, a, b)?;
            *slot = if return_bool {
                Some(f64::from(u8::from(keep)))
            } else if !keep {
                None
            } else if is_comparison(op) {
                // A comparison filter always keeps the vector's value.
                Some(x)
            } else {
                Some(value)
            };
        }
        if series.values.iter().any(Option::is_some) {
            if drops_name {
                drop_name(&mut series.labels);
            }
            out.push(series);
        }
    }
    Ok(Value::Vector(if drops_name { merge_same_labels(out)? } else { out }))
}

/// `(on, labels)`: `on(l)` matches on `l`; `ignoring(l)` (or nothing) on all
/// labels but `l` and `__name__`.
fn matching(bin: &BinaryExpr) -> (bool, Vec<String>) {
    match bin.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
        None => (false, Vec::new()),
    }
}

fn signature(labels: &Labels, on: bool, names: &[String]) -> Labels {
    labels
        .iter()
        .filter(|(n, _)| if on { names.contains(n) } else { n != "__name__" && !names.contains(n) })
        .cloned()
        .collect()
}

/// `and`, `or`, `unless`: per step, whether any series of the other side with
/// the same signature has a value.
fn set_op(
    op: u16,
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    on: bool,
    names: &[String],
    steps: usize,
) -> Result<Vec<StepSeries>, PromqlError> {
    let presence = |side: &[StepSeries]| {
        let mut present: HashMap<Labels, Vec<bool>> = HashMap::new();
        for s in side {
            let p = present.entry(signature(&s.labels, on, names)).or_insert_with(|| vec![false; steps]);
            for (slot, v) in p.iter_mut().zip(&s.values) {
                *slot |= v.is_some();
            }
        }
        present
    };
    let filter = |side: Vec<StepSeries>, other: &HashMap<Labels, Vec<bool>>, keep_if_present: bool| {
        side.into_iter()
            .filter_map(|mut s| {
                let p = other.get(&signature(&s.labels, on, names));
                for (step, v) in s.values.iter_mut().enumerate() {
                    if p.is_some_and(|p| p[step]) != keep_if_present {
                        *v = None;
                    }
                }
                s.values.iter().any(Option::is_some).then_some(s)
            })
            .collect::<Vec<_>>()
    };
    match op {
        T_LAND => Ok(filter(lhs, &presence(&rhs), true)),
        T_LUNLESS => Ok(filter(lhs, &presence(&rhs), false)),
        _ => {
            let left = presence(&lhs);
            let mut out = lhs;
            out.extend(filter(rhs, &left, false));
            // A right series alike a left one only fills steps the left lacks.
            merge_same_labels(out)
        }
    }
}

/// Arithmetic and comparisons between vectors: one-to-one, or many-to-one /
/// one-to-many with `group_left` / `group_right`.
#[allow(clippy::too_many_arguments)]
fn vector_vector(
    op: u16,
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    on: bool,
    names: &[String],
    card: &VectorMatchCardinality,
    return_bool: bool,
    steps: usize,
) -> Result<Vec<StepSeries>, PromqlError> {
    let (include, one_to_one, swapped) = match card {
        VectorMatchCardinality::ManyToOne(l) => (l.labels.clone(), false, false),
        VectorMatchCardinality::OneToMany(l) => (l.labels.clone(), false, true),
        _ => (Vec::new(), true, false),
    };
    // The "many" side is the one whose labels the result keeps.
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let drops_name = !is_comparison(op) || return_bool;
    let any_present = |side: &[StepSeries]| {
        (0..steps).map(|step| side.iter().any(|s| s.values[step].is_some())).collect::<Vec<bool>>()
    };
    let (many_any, one_any) = (any_present(&many), any_present(&one));

    let mut groups: HashMap<Labels, (Vec<usize>, Vec<usize>)> = HashMap::new();
    for (i, s) in one.iter().enumerate() {
        groups.entry(signature(&s.labels, on, names)).or_default().1.push(i);
    }
    for (i, s) in many.iter().enumerate() {
        if let Some(g) = groups.get_mut(&signature(&s.labels, on, names)) {
            g.0.push(i);
        }
    }

    let mut out: Vec<StepSeries> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
    let mut written: Vec<usize> = Vec::new();
    for (sig, (many_ids, one_ids)) in &groups {
        for step in 0..steps {
            if !many_any[step] || !one_any[step] {
                continue;
            }
            let mut present_one = one_ids.iter().filter_map(|&j| one[j].values[step].map(|v| (j, v)));
            let Some((j, one_v)) = present_one.next() else { continue };
            if let Some((dup, _)) = present_one.next() {
                let (mut a, mut b) = (format_labels(&one[j].labels), format_labels(&one[dup].labels));
                if a > b {
                    std::mem::swap(&mut a, &mut b);
                }
                let side = if swapped { "left" } else { "right" };
                return Err(PromqlError::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side",
                    format_labels(sig)
                )));
            }
            written.clear();
            for &i in many_ids {
                let Some(many_v) = many[i].values[step] else { continue };
                let (a, b) = if swapped { (one_v, many_v) } else { (many_v, one_v) };
                let (value, keep) = elem(op, a, b)?;
                let o = match pair_out.get(&(i, j)) {
                    Some(&o) => o,
                    None => {
                        let labels =
                            result_labels(&many[i].labels, &one[j].labels, on, names, &include, one_to_one, drops_name);
                        let o = *out_index.entry(labels.clone()).or_insert_with(|| {
                            out.push(StepSeries { labels, values: vec![None; steps] });
                            out.len() - 1
                        });
                        pair_out.insert((i, j), o);
                        o
                    }
                };
                if one_to_one && !written.is_empty() {
                    return Err(PromqlError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                            .into(),
                    ));
                }
                if !one_to_one && written.contains(&o) {
                    return Err(PromqlError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches".into(),
                    ));
                }
                written.push(o);
                if !keep && !return_bool {
                    continue;
                }
                let slot = &mut out[o].values[step];
                if slot.is_some() {
                    return Err(same_labelset());
                }
                *slot = Some(if return_bool { f64::from(u8::from(keep)) } else { value });
            }
        }
    }
    out.retain(|s| s.values.iter().any(Option::is_some));
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// The result's labels (Prometheus' `resultMetric`): the "many" side's labels,
/// without `__name__` for arithmetic and `bool`; for one-to-one reduced to the
/// `on` labels (or without the `ignoring` ones); plus `group_x` labels copied
/// from the "one" side.
fn result_labels(
    many: &Labels,
    one: &Labels,
    on: bool,
    names: &[String],
    include: &[String],
    one_to_one: bool,
    drops_name: bool,
) -> Labels {
    let mut labels: Labels = many
        .iter()
        .filter(|(n, _)| !(drops_name && n == "__name__"))
        .filter(|(n, _)| !one_to_one || names.contains(n) == on)
        .cloned()
        .collect();
    for name in include {
        labels.retain(|(n, _)| n != name);
        if let Some((_, v)) = one.iter().find(|(n, _)| n == name) {
            labels.push((name.clone(), v.clone()));
        }
    }
    labels.sort();
    labels
}

#[cfg(test)]
mod tests {
    use crate::eval::tests::{instant, labels, scalar, series, vector};
    use crate::source::MemSource;

    fn src() -> MemSource {
        MemSource::new(vec![
            series("errors", &[("route", "/a"), ("code", "500")], 15, &[3.0]),
            series("errors", &[("route", "/b"), ("code", "500")], 15, &[1.0]),
            series("errors", &[("route", "/b"), ("code", "503")], 15, &[2.0]),
            series("requests", &[("route", "/a")], 15, &[30.0]),
            series("requests", &[("route", "/b")], 15, &[40.0]),
            series("info", &[("route", "/a"), ("team", "red")], 15, &[1.0]),
            series("info", &[("route", "/b"), ("team", "blue")], 15, &[1.0]),
        ])
    }

    #[test]
    fn scalar_arithmetic_and_precedence() {
        let s = src();
        // 2 + 3 * 4 ^ 2 = 2 + 3 * 16 = 50; 7 % 4 = 3; 1 > bool 2 = 0.
        assert_eq!(scalar(&s, "2 + 3 * 4 ^ 2", 0), 50.0);
        assert_eq!(scalar(&s, "7 % 4", 0), 3.0);
        assert_eq!(scalar(&s, "1 > bool 2", 0), 0.0);
        assert_eq!(scalar(&s, "2 ^ 3 ^ 2", 0), 512.0, "^ is right-associative");
    }

    #[test]
    fn vector_scalar_arithmetic_and_comparisons() {
        let s = src();
        assert_eq!(vector(&s, "requests * 2", 0)[0], (labels("", &[("route", "/a")]), 60.0));
        assert_eq!(vector(&s, "100 - requests", 0)[1].1, 60.0);
        // A filter keeps the name and the value; with bool the name goes and 0/1 remains.
        assert_eq!(vector(&s, "requests > 35", 0), vec![(labels("requests", &[("route", "/b")]), 40.0)]);
        assert_eq!(vector(&s, "35 < requests", 0), vec![(labels("requests", &[("route", "/b")]), 40.0)]);
        assert_eq!(
            vector(&s, "requests > bool 35", 0),
            vec![(labels("", &[("route", "/a")]), 0.0), (labels("", &[("route", "/b")]), 1.0)]
        );
    }

    #[test]
    fn one_to_one_matching_with_on_and_ignoring() {
        let s = src();
        // sum by (route) (errors) / on(route) requests: /a 3/30 = 0.1, /b 3/40 = 0.075.
        assert_eq!(
            vector(&s, "sum by (route) (errors) / on(route) requests", 0),
            vec![(labels("", &[("route", "/a")]), 0.1), (labels("", &[("route", "/b")]), 0.075)]
        );
        // ignoring(code): /a errors (one series) matches; /b has two -> duplicate on the left
        // is "multiple matches" (one-to-one), an error.
        let err = instant(&s, "errors / ignoring(code) requests", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
        );
        // Comparison between vectors filters (/a: 30 > 36 no, /b: 40 > 36 yes) and
        // keeps the left labels, name included...
        assert_eq!(
            vector(&s, "requests > sum by (route) (errors) * 12", 0),
            vec![(labels("requests", &[("route", "/b")]), 40.0)]
        );
        // ...except that one-to-one `on` keeps only the `on` labels.
        assert_eq!(
            vector(&s, "requests > on(route) sum by (route) (errors) * 12", 0),
            vec![(labels("", &[("route", "/b")]), 40.0)]
        );
    }

    #[test]
    fn group_left_copies_labels_from_the_one_side() {
        let s = src();
        // errors * on(route) group_left(team) info: each error series gains its route's team.
        assert_eq!(
            vector(&s, "errors * on(route) group_left(team) info", 0),
            vec![
                (labels("", &[("code", "500"), ("route", "/a"), ("team", "red")]), 3.0),
                (labels("", &[("code", "500"), ("route", "/b"), ("team", "blue")]), 1.0),
                (labels("", &[("code", "503"), ("route", "/b"), ("team", "blue")]), 2.0),
            ]
        );
        // group_right: the right side is "many": requests / ... swapped -> value is
        // requests(one, left) / errors(many, right): /a 30/3 = 10.
        let got = vector(&s, "requests / on(route) group_right errors", 0);
        assert_eq!(got[0], (labels("", &[("code", "500"), ("route", "/a")]), 10.0));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn many_to_many_is_an_error_naming_the_group() {
        let s = src();
        let err = instant(&s, "requests / on(route) group_left errors", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"found duplicate series for the match group {route="/b"} on the right hand-side of the operation: [{__name__="errors", code="500", route="/b"}, {__name__="errors", code="503", route="/b"}];many-to-many matching not allowed: matching labels must be unique on one side"#
        );
    }

    #[test]
    fn set_operators() {
        let s = src();
        let names = |q: &str| {
            vector(&s, q, 0)
                .into_iter()
                .map(|(l, v)| (l[0].1.clone(), l.last().unwrap().1.clone(), v))
                .collect::<Vec<_>>()
        };
        // and: requests whose route has errors with code 503 -> /b only.
        assert_eq!(names(r#"requests and on(route) errors{code="503"}"#), vec![("requests".into(), "/b".into(), 40.0)]);
        assert_eq!(
            names(r#"requests unless on(route) errors{code="503"}"#),
            vec![("requests".into(), "/a".into(), 30.0)]
        );
        // or: all requests plus the info series (their label sets differ, nothing matches).
        assert_eq!(vector(&s, "requests or info", 0).len(), 4);
        // or with on(route): info is hidden where requests has the route.
        assert_eq!(vector(&s, "requests or on(route) info", 0).len(), 2);
    }
}
