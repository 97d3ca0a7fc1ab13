//! Numerically careful sums, means, variances and quantiles, shared by the
//! aggregation operators and the `*_over_time` functions so both give the
//! same digits as Prometheus (Kahan-Neumaier summation, Welford variance).

/// One step of Kahan-Neumaier summation: adds `inc` to `sum` with
/// compensation `c`; the total is `sum + c`.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    if t.is_infinite() {
        (t, 0.0)
    } else if sum.abs() >= inc.abs() {
        (t, c + ((sum - t) + inc))
    } else {
        (t, c + ((inc - t) + sum))
    }
}

/// The compensated sum of `values`.
pub(crate) fn sum(values: impl Iterator<Item = f64>) -> f64 {
    let (s, c) = values.fold((0.0, 0.0), |(s, c), v| kahan_inc(v, s, c));
    if s.is_infinite() {
        s
    } else {
        s + c
    }
}

/// The mean of `values` (at least one): a compensated direct sum divided by
/// the count, switching to an incremental mean if the running sum would
/// overflow, as Prometheus' `avg` and `avg_over_time`.
pub(crate) fn mean(values: &[f64]) -> f64 {
    let total = sum(values.iter().copied());
    if total.is_finite() || values.iter().any(|v| !v.is_finite()) {
        return total / values.len() as f64;
    }
    let (mut m, mut c) = (0.0, 0.0);
    for (i, &v) in values.iter().enumerate() {
        let n = (i + 1) as f64;
        let q = (n - 1.0) / n;
        (m, c) = kahan_inc(v / n, m * q, c * q);
    }
    m + c
}

/// The population variance of `values` (at least one), Welford's algorithm
/// with compensated accumulators as Prometheus' `stdvar_over_time`.
pub(crate) fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// The `q` quantile of `values` with linear interpolation between the closest
/// ranks (Prometheus' `quantile`): NaN for no values or NaN `q`, -Inf for
/// `q < 0`, +Inf for `q > 1`. Sorts `values` (NaN first, as Go's sort does).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Go's `almost.Equal`: relative difference below `epsilon`.
pub(crate) fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sum_keeps_small_terms() {
        // Naively 1e16 + 1 + 1 - 1e16 = 0 (each +1 is lost); compensated it is 2.
        assert_eq!(sum([1e16, 1.0, 1.0, -1e16].into_iter()), 2.0);
        assert_eq!(sum([1.0, f64::INFINITY].into_iter()), f64::INFINITY);
    }

    #[test]
    fn mean_survives_overflow() {
        assert_eq!(mean(&[1.0, 2.0, 3.0, 4.0]), 2.5);
        // The direct sum overflows; the incremental mean does not.
        let m = mean(&[f64::MAX, f64::MAX]);
        assert!((m - f64::MAX).abs() / f64::MAX < 1e-12, "{m}");
    }

    #[test]
    fn population_variance() {
        // Values 2,4,4,4,5,5,7,9: mean 5, squared deviations sum 32, /8 = 4.
        assert_eq!(variance([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0].into_iter()), 4.0);
        assert_eq!(variance([3.0].into_iter()), 0.0);
    }

    #[test]
    fn quantile_interpolates_between_ranks() {
        // Sorted 1,2,3,4: q=0.5 -> rank 1.5 -> 2*0.5 + 3*0.5 = 2.5.
        assert_eq!(quantile(0.5, &mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        // q=0.9 -> rank 2.7 -> 3*0.3 + 4*0.7 = 3.7.
        assert!((quantile(0.9, &mut [4.0, 1.0, 3.0, 2.0]) - 3.7).abs() < 1e-12);
        assert_eq!(quantile(1.5, &mut [1.0]), f64::INFINITY);
        assert_eq!(quantile(-1.0, &mut [1.0]), f64::NEG_INFINITY);
        assert!(quantile(f64::NAN, &mut [1.0]).is_nan());
        assert!(quantile(0.5, &mut []).is_nan());
    }

    #[test]
    fn almost_equal_is_relative() {
        assert!(almost_equal(1.0, 1.0 + 1e-15, 1e-12));
        assert!(!almost_equal(1.0, 1.0001, 1e-12));
        assert!(!almost_equal(0.0, 1e-300, 1e-12));
    }
}
