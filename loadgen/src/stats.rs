//! Percentiles of measured latencies, as every report states them.

use std::time::Duration;

/// The `q` quantile (0..=1) of sorted samples, nearest rank; zero when there
/// are none.
pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Milliseconds with µs precision, as the JSON reports print them.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The p50 and p99 of unsorted samples, in ms.
pub(crate) fn p50_p99_ms(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    (ms(percentile(&samples, 0.5)), ms(percentile(&samples, 0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=101).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(100));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(101));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(ms(Duration::from_nanos(1_234_567)), 1.235);
        assert_eq!(
            p50_p99_ms(vec![Duration::from_millis(3), Duration::from_millis(1), Duration::from_millis(2)]),
            (2.0, 3.0)
        );
    }
}
