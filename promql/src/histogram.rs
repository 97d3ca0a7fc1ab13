//! `histogram_quantile` over classic histograms: `_bucket` series with an
//! `le` label, grouped by their other labels, estimated as Prometheus'
//! `BucketQuantile` (linear interpolation inside the bucket that holds the
//! rank).

use std::collections::HashMap;

use crate::error::PromqlError;
use crate::eval::{drop_name, merge_same_labels, StepSeries};
use crate::float_stats::almost_equal;
use crate::source::{label_value, Labels};

/// Bucket count differences smaller than this (relative) are float noise,
/// not a broken histogram (Prometheus' `smallDeltaTolerance`).
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// `histogram_quantile(q, buckets)` per step: one output series per bucket
/// group (labels without `le` and `__name__`), valued where the group has at
/// least one bucket.
///
/// # Errors
/// `vector cannot contain metrics with the same labelset` when groups differ
/// only by metric name.
pub(crate) fn histogram_quantile(q: &[f64], input: Vec<StepSeries>) -> Result<Vec<StepSeries>, PromqlError> {
    // Group by all labels but `le` (the metric name still separates groups,
    // as in Prometheus, and is dropped from the result).
    let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (i, s) in input.iter().enumerate() {
        // A series without a parseable `le` is not a bucket; Prometheus skips it.
        let Ok(upper) = label_value(&s.labels, "le").parse::<f64>() else { continue };
        let key: Labels = s.labels.iter().filter(|(n, _)| n != "le").cloned().collect();
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push((upper, i));
    }
    let steps = q.len();
    let mut out = Vec::with_capacity(groups.len());
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (mut labels, members) in groups {
        let values = (0..steps)
            .map(|step| {
                buckets.clear();
                buckets.extend(members.iter().filter_map(|&(ub, i)| input[i].values[step].map(|c| (ub, c))));
                (!buckets.is_empty()).then(|| bucket_quantile(q[step], &mut buckets))
            })
            .collect();
        drop_name(&mut labels);
        out.push(StepSeries { labels, values });
    }
    merge_same_labels(out)
}

/// The `q` quantile of classic-histogram `buckets` `(upper bound, cumulative
/// count)`, as Prometheus' `BucketQuantile`:
/// - NaN `q` gives NaN, `q < 0` -Inf, `q > 1` +Inf;
/// - buckets are sorted by upper bound; without a `+Inf` bucket, or with fewer
///   than two buckets or no observations, the answer is NaN;
/// - buckets with the same bound are added up, and counts are made monotonic
///   (tiny relative differences are float noise and ignored);
/// - the rank `q * count` is located in a bucket and linearly interpolated
///   within it; the lowest bucket starts at 0 unless its bound is <= 0 (then
///   the bound itself is the answer); a rank in the `+Inf` bucket answers the
///   highest finite bound.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    coalesce(buckets);
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // The first bucket (the +Inf one excluded from the search) whose count reaches the rank.
    let b = buckets[..buckets.len() - 1].partition_point(|&(_, count)| count < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (bucket_end, mut count) = buckets[b];
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

fn coalesce(buckets: &mut Vec<(f64, f64)>) {
    buckets.dedup_by(|next, kept| {
        if next.0 == kept.0 {
            kept.1 += next.1;
            true
        } else {
            false
        }
    });
}

fn ensure_monotonic(buckets: &mut [(f64, f64)]) {
    let mut prev = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) || curr < prev {
            // Float noise or a decrease: keep the envelope, and do not move `prev`.
            b.1 = prev;
            continue;
        }
        prev = curr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tests::{assert_close, labels, series, vector};
    use crate::source::MemSource;

    fn q(q: f64, buckets: &[(f64, f64)]) -> f64 {
        bucket_quantile(q, &mut buckets.to_vec())
    }

    #[test]
    fn interpolates_inside_the_bucket_holding_the_rank() {
        let b = [(0.1, 50.0), (0.5, 90.0), (1.0, 99.0), (f64::INFINITY, 100.0)];
        // q=0.5: rank 50 is reached in the first bucket (0, 0.1] which starts at 0:
        // 0 + 0.1 * 50/50 = 0.1.
        assert_close(q(0.5, &b), 0.1);
        // q=0.7: rank 70 is in (0.1, 0.5] holding 40: 0.1 + 0.4 * (70-50)/40 = 0.3.
        assert_close(q(0.7, &b), 0.3);
        // q=0.25: rank 25 in the first bucket: 0.1 * 25/50 = 0.05.
        assert_close(q(0.25, &b), 0.05);
        // q=0.995: rank 99.5 is in the +Inf bucket: the highest finite bound.
        assert_eq!(q(0.995, &b), 1.0);
    }

    #[test]
    fn special_cases() {
        let b = [(1.0, 1.0), (f64::INFINITY, 2.0)];
        assert!(q(f64::NAN, &b).is_nan());
        assert_eq!(q(-0.1, &b), f64::NEG_INFINITY);
        assert_eq!(q(1.1, &b), f64::INFINITY);
        // No +Inf bucket, or no observations: NaN.
        assert!(q(0.5, &[(1.0, 1.0), (2.0, 2.0)]).is_nan());
        assert!(q(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        // A lowest bucket with bound <= 0 answers its bound.
        assert_eq!(q(0.1, &[(-1.0, 5.0), (f64::INFINITY, 10.0)]), -1.0);
    }

    #[test]
    fn unsorted_duplicate_and_non_monotonic_buckets_are_repaired() {
        // Unsorted, `1` twice (3 + 2 = 5), and `2` dropping to 4 (forced up to 5).
        let b = [(f64::INFINITY, 10.0), (2.0, 4.0), (1.0, 3.0), (1.0, 2.0)];
        // Repaired: (1,5) (2,5) (+Inf,10). q=0.3: rank 3 in (0,1]: 1 * 3/5 = 0.6.
        assert_close(q(0.3, &b), 0.6);
        // q=0.8: rank 8 is beyond bucket 2 (count 5): +Inf bucket -> 2.
        assert_eq!(q(0.8, &b), 2.0);
    }

    #[test]
    fn p99_of_summed_bucket_rates() {
        // Two instances of y_bucket{le=...} as counters sampled every 15 s, each
        // growing per 15 s by: le=0.1: +6, le=0.5: +9, le=1: +9.9, +Inf: +10.
        let mut all = Vec::new();
        for inst in ["a", "b"] {
            for (le, inc) in [("0.1", 6.0), ("0.5", 9.0), ("1", 9.9), ("+Inf", 10.0)] {
                let vals: Vec<f64> = (0..=40).map(|i| i as f64 * inc).collect();
                all.push(series("y_bucket", &[("le", le), ("instance", inst), ("route", "/")], 15, &vals));
            }
        }
        let src = MemSource::new(all);
        // At t=600 the 5m window holds 20 samples per series evenly spaced:
        // rate = inc/15 per series; summed by le: 0.1 -> 0.8, 0.5 -> 1.2, 1 -> 1.32, +Inf -> 4/3.
        // q=0.99: rank = 0.99 * 4/3 = 1.32 -> reached at le=1 (count 1.32), bucket (0.5, 1]
        // holds 0.12 and the rank is 0.12 into it: 0.5 + 0.5 * 0.12/0.12 = 1.0.
        // q=0.9: rank 1.2 -> reached exactly at le=0.5: 0.1 + 0.4 * (1.2-0.8)/0.4 = 0.5.
        // q=0.5: rank 2/3 in (0, 0.1] holding 0.8: 0.1 * (2/3)/0.8 = 0.08333...
        let got = vector(&src, "histogram_quantile(0.5, sum by (le, route) (rate(y_bucket[5m])))", 600);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, labels("", &[("route", "/")]));
        assert_close(got[0].1, 0.1 * (2.0 / 3.0) / 0.8);
        let p90 = vector(&src, "histogram_quantile(0.9, sum by (le) (rate(y_bucket[5m])))", 600);
        assert_close(p90[0].1, 0.5);
        let p99 = vector(&src, "histogram_quantile(0.99, sum by (le) (rate(y_bucket[5m])))", 600);
        assert_eq!(p99[0].0, labels("", &[]));
        assert_close(p99[0].1, 1.0);
        // Without aggregation there is one quantile per instance, `le` and name dropped.
        let per_instance = vector(&src, "histogram_quantile(0.9, rate(y_bucket[5m]))", 600);
        assert_eq!(per_instance.len(), 2);
        assert_eq!(per_instance[0].0, labels("", &[("instance", "a"), ("route", "/")]));
    }
}
