//! How times, durations and rates read on screen, and the few texts typed
//! back (durations in searches). Pure functions, no clock: the same data
//! renders the same frame, which is what snapshot tests and bug reports need.

use std::time::Duration;

/// A duration in µs as a short human figure: `850µs`, `12.3ms`, `1.25s`, `2m05s`.
pub fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us}µs"),
        1_000..=9_999 => format!("{:.2}ms", us as f64 / 1e3),
        10_000..=99_999 => format!("{:.1}ms", us as f64 / 1e3),
        100_000..=999_999 => format!("{}ms", us / 1_000),
        1_000_000..=59_999_999 => format!("{:.2}s", us as f64 / 1e6),
        _ => format!("{}m{:02}s", us / 60_000_000, (us / 1_000_000) % 60),
    }
}

/// Milliseconds (as the stats API gives them) as [`micros`] does; `-` when absent.
pub fn millis(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms.is_finite() && ms >= 0.0 => micros((ms * 1e3).round() as u64),
        _ => "-".into(),
    }
}

/// A rate in `[0, 1]` as a percentage with one decimal.
pub fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// A per-second rate: `0.25/s`, `12/s`, `1.2k/s`.
pub fn per_second(rate: f64) -> String {
    if rate >= 1000.0 {
        format!("{:.1}k/s", rate / 1000.0)
    } else if rate >= 10.0 {
        format!("{rate:.0}/s")
    } else {
        format!("{rate:.2}/s")
    }
}

/// `n` and the noun, plural when `n` is not 1: `1 fault`, `3 faults`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The UTC wall clock of a µs Unix timestamp: `14:03:59.120`.
pub fn clock(unix_us: u64) -> String {
    let secs = unix_us / 1_000_000;
    let ms = (unix_us / 1_000) % 1_000;
    format!("{:02}:{:02}:{:02}.{ms:03}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

/// The UTC date and time of a µs Unix timestamp: `2026-12-02 14:03:59`.
pub fn date_time(unix_us: u64) -> String {
    let secs = unix_us / 1_000_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses a duration as typed in a search: `250us`, `100ms`, `2s`, `5m`,
/// `1h`, or a plain number of milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let scale = match unit {
        "" | "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then(|| Duration::from_secs_f64(n * scale))
}

/// `text` cut to `width` characters, the last one an ellipsis when cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_micros_picks_a_readable_unit() {
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(1_234), "1.23ms");
        assert_eq!(micros(12_345), "12.3ms");
        assert_eq!(micros(345_000), "345ms");
        assert_eq!(micros(1_250_000), "1.25s");
        assert_eq!(micros(125_000_000), "2m05s");
    }

    #[test]
    fn test_date_time_is_utc_civil_time() {
        assert_eq!(date_time(0), "1970-01-01 00:00:00");
        // 2026-12-02 01:57:14 UTC
        assert_eq!(date_time(1_796_176_634_000_000), "2026-12-02 01:57:14");
        assert_eq!(date_time(951_782_400_000_000), "2000-02-29 00:00:00");
        assert_eq!(clock(1_796_176_634_123_456), "01:57:14.123");
    }

    #[test]
    fn test_parse_duration_units() {
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("40us"), Some(Duration::from_micros(40)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("3 parsecs"), None);
        assert_eq!(parse_duration("ms"), None);
    }

    #[test]
    fn test_fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("checkout", 10), "checkout");
        assert_eq!(fit("checkout", 5), "chec…");
        assert_eq!(fit("checkout", 0), "");
    }
}
