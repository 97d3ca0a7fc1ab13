//! Pure parsers for the textual numbers of Jaeger's query parameters, with Go's
//! exact grammar and error texts (the Jaeger query service is written in Go and
//! clients were built against its answers).

use chrono::NaiveDate;

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;

/// Go's `time.ParseDuration` units. Both micro signs are accepted, as in Go.
const GO_UNITS: &[(&str, u64)] = &[
    ("ns", NANOSECOND),
    ("us", MICROSECOND),
    ("\u{b5}s", MICROSECOND),
    ("\u{3bc}s", MICROSECOND),
    ("ms", MILLISECOND),
    ("s", SECOND),
    ("m", MINUTE),
    ("h", HOUR),
];

/// Units the Jaeger UI's `lookback` values use on top of Go's (`2d`, `2w`).
const LOOKBACK_EXTRA_UNITS: &[(&str, u64)] = &[("d", DAY), ("w", WEEK)];

/// The `lookback` value the Jaeger UI sends when the user picked start and end.
pub(crate) const CUSTOM_LOOKBACK: &str = "custom";

/// Parses a Go duration (`300ms`, `-1.5h`, `2h45m`, `500us`, `500µs`) into
/// nanoseconds, exactly as Go's `time.ParseDuration` (which Jaeger uses for
/// `minDuration` / `maxDuration`).
///
/// # Errors
/// Go's own message: `time: invalid duration "x"`, `time: missing unit in
/// duration "10"`, `time: unknown unit "x" in duration "10x"`.
pub(crate) fn parse_go_duration(s: &str) -> Result<i64, String> {
    parse_duration_with(s, &[])
}

/// Parses a `lookback` value: `custom` (`Ok(None)`: the caller's `start`
/// decides) or a non-negative Go duration that may also use `d` and `w`
/// (`1h`, `2d`, `1w2d`), in nanoseconds.
///
/// # Errors
/// Go's duration messages, or "must not be negative".
pub(crate) fn parse_lookback(s: &str) -> Result<Option<i64>, String> {
    if s == CUSTOM_LOOKBACK {
        return Ok(None);
    }
    let ns = parse_duration_with(s, LOOKBACK_EXTRA_UNITS)?;
    if ns < 0 {
        return Err(format!("lookback {s:?} must not be negative"));
    }
    Ok(Some(ns))
}

/// Parses a base-10 integer of at most `bits` bits as Go's `strconv.ParseInt`.
///
/// # Errors
/// Go's message: `strconv.ParseInt: parsing "x": invalid syntax` or `value out of range`.
pub(crate) fn parse_go_int(s: &str, bits: u32) -> Result<i64, String> {
    use std::num::IntErrorKind;
    let fail = |what: &str| format!("strconv.ParseInt: parsing {s:?}: {what}");
    // Rust's parser accepts the same text as Go's base 10 (optional sign, digits).
    match s.parse::<i64>() {
        Ok(v) if bits >= 64 => Ok(v),
        Ok(v) => {
            let max = (1i64 << (bits - 1)) - 1;
            if v > max || v < -max - 1 {
                Err(fail("value out of range"))
            } else {
                Ok(v)
            }
        }
        Err(e) => match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => Err(fail("value out of range")),
            _ => Err(fail("invalid syntax")),
        },
    }
}

/// Parses a boolean as Go's `strconv.ParseBool` (`1 t T TRUE true True`, and the false forms).
///
/// # Errors
/// Go's message: `strconv.ParseBool: parsing "x": invalid syntax`.
pub(crate) fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

/// Go's `time.RFC3339Nano` layout, quoted in error messages.
const RFC3339_NANO: &str = "2006-01-02T15:04:05.999999999Z07:00";

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00Z`,
/// `2024-05-01T14:00:00.123456789+02:00`) into nanoseconds since the epoch, as
/// Go's `time.Parse(time.RFC3339Nano, s)` does for Jaeger's api_v3 parameters:
/// fraction optional (digits past the ninth are dropped), zone `Z` or `±hh:mm`.
///
/// # Errors
/// `parsing time "x" as "2006-01-02T15:04:05.999999999Z07:00": <why>` when the
/// text is not that layout, a field is out of range, or the instant does not
/// fit in i64 nanoseconds (years 1677 to 2262).
pub(crate) fn parse_rfc3339_nano(s: &str) -> Result<i64, String> {
    let fail = |why: &str| format!("parsing time {s:?} as {RFC3339_NANO:?}: {why}");
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (num(0, 4), num(5, 7), num(8, 10), num(11, 13), num(14, 16), num(17, 19))
    else {
        return Err(fail("not an RFC 3339 date-time"));
    };
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return Err(fail("not an RFC 3339 date-time"));
    }
    let mut at = 19;
    let mut nanos = 0i64;
    if sep(at, b'.') {
        let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(fail("missing fractional seconds"));
        }
        for i in 0..9 {
            nanos = nanos * 10 + if i < digits { i64::from(b[at + 1 + i] - b'0') } else { 0 };
        }
        at += 1 + digits;
    }
    let offset_s = match &b[at..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (Some(h), Some(m)) = (num(at + 1, at + 3), num(at + 4, at + 6)) else {
                return Err(fail("bad time zone offset"));
            };
            if h > 23 || m > 59 {
                return Err(fail("time zone offset out of range"));
            }
            (h * 3600 + m * 60) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return Err(fail("expected time zone Z or ±hh:mm at the end")),
    };
    if !(1..=12).contains(&month) {
        return Err(fail("month out of range"));
    }
    // The grammar above is Go's; the calendar is chrono's. Four digits always
    // fit i32 and u32.
    let Some(date) = NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32) else {
        return Err(fail("day out of range"));
    };
    let Some(wall) = date.and_hms_opt(hour as u32, minute as u32, second as u32) else {
        return Err(fail("time out of range"));
    };
    let seconds = wall.and_utc().timestamp() - offset_s;
    seconds.checked_mul(1_000_000_000).and_then(|ns| ns.checked_add(nanos)).ok_or_else(|| fail("out of range"))
}

/// Go's `time.ParseDuration`, accepting `extra_units` besides Go's own.
fn parse_duration_with(orig: &str, extra_units: &[(&str, u64)]) -> Result<i64, String> {
    const LIMIT: u64 = 1 << 63;
    let invalid = || format!("time: invalid duration {orig:?}");
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut value: u64 = 0;
        for d in s[..int_len].bytes() {
            if value > LIMIT / 10 {
                return Err(invalid());
            }
            value = value * 10 + u64::from(d - b'0');
            if value > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        // Fraction: digits past what a u64 holds are consumed but ignored, as in Go.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut frac_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            frac_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for d in s[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                if fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(d - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &s[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid()); // no digits, e.g. ".s"
        }
        // Unit: everything up to the next digit or dot.
        let unit_len = s.bytes().take_while(|c| *c != b'.' && !c.is_ascii_digit()).count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit_text = &s[..unit_len];
        s = &s[unit_len..];
        let Some(&(_, unit)) = GO_UNITS.iter().chain(extra_units).find(|(name, _)| *name == unit_text) else {
            return Err(format!("time: unknown unit {unit_text:?} in duration {orig:?}"));
        };
        if value > LIMIT / unit {
            return Err(invalid());
        }
        value *= unit;
        if fraction > 0 {
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        // -(1<<63) is representable.
        return Ok((total as i128).wrapping_neg() as i64);
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_go() {
        for (input, want) in [
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("5s", 5 * SECOND as i64),
            ("100ms", 100 * MILLISECOND as i64),
            ("1.5s", 1_500 * MILLISECOND as i64),
            ("1h30m", 90 * MINUTE as i64),
            ("2h45m30.5s", (2 * HOUR + 45 * MINUTE + 30 * SECOND + 500 * MILLISECOND) as i64),
            ("500us", 500_000),
            ("500µs", 500_000),
            ("500μs", 500_000),
            ("10ns", 10),
            (".5s", 500 * MILLISECOND as i64),
            ("1.s", SECOND as i64),
            ("-1.5h", -(90 * MINUTE as i64)),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("1.00000000000000000000000000001s", SECOND as i64),
        ] {
            assert_eq!(parse_go_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn go_duration_errors_use_gos_messages() {
        assert_eq!(parse_go_duration(""), Err(r#"time: invalid duration """#.to_string()));
        assert_eq!(parse_go_duration("abc"), Err(r#"time: invalid duration "abc""#.to_string()));
        assert_eq!(parse_go_duration("10"), Err(r#"time: missing unit in duration "10""#.to_string()));
        assert_eq!(parse_go_duration("10x"), Err(r#"time: unknown unit "x" in duration "10x""#.to_string()));
        assert_eq!(parse_go_duration("2d"), Err(r#"time: unknown unit "d" in duration "2d""#.to_string()));
        for bad in [".s", "-", "1s ", " 1s", "9223372036854775808ns", "3000000h", "1e3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookback_accepts_ui_values() {
        assert_eq!(parse_lookback("custom"), Ok(None));
        assert_eq!(parse_lookback("1h"), Ok(Some(HOUR as i64)));
        assert_eq!(parse_lookback("2d"), Ok(Some(2 * DAY as i64)));
        assert_eq!(parse_lookback("2w"), Ok(Some(2 * WEEK as i64)));
        assert_eq!(parse_lookback("1d12h"), Ok(Some(36 * HOUR as i64)));
        assert!(parse_lookback("-1h").is_err());
        assert!(parse_lookback("yesterday").is_err());
        assert!(parse_lookback("").is_err());
    }

    #[test]
    fn go_ints_and_bools() {
        assert_eq!(parse_go_int("42", 64), Ok(42));
        assert_eq!(parse_go_int("-7", 32), Ok(-7));
        assert_eq!(parse_go_int("+7", 32), Ok(7));
        assert_eq!(parse_go_int("abc", 64), Err(r#"strconv.ParseInt: parsing "abc": invalid syntax"#.to_string()));
        assert_eq!(
            parse_go_int("2147483648", 32),
            Err(r#"strconv.ParseInt: parsing "2147483648": value out of range"#.to_string())
        );
        assert!(parse_go_int("99999999999999999999", 64).unwrap_err().ends_with("value out of range"));
        assert!(parse_go_int("1.5", 64).is_err());
        assert!(parse_go_int("", 64).is_err());
        assert_eq!(parse_go_bool("True"), Ok(true));
        assert_eq!(parse_go_bool("0"), Ok(false));
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn rfc3339_parses_like_go() {
        for (input, want) in [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:01.5Z", 1_500_000_000),
            ("2000-01-02T12:30:08.999999998Z", 946_816_208_999_999_998),
            // +08:00 is eight hours before the same wall time in UTC.
            ("2000-04-05T21:55:16.999999992+08:00", 954_942_916_999_999_992),
            ("2024-02-29T00:00:00-01:30", 1_709_170_200_000_000_000),
            ("1970-01-01T00:00:00.1234567891Z", 123_456_789),
            ("1969-12-31T23:59:59Z", -1_000_000_000),
        ] {
            assert_eq!(parse_rfc3339_nano(input), Ok(want), "{input}");
        }
        for bad in [
            "",
            "abc",
            "2024-01-01",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00z",
            "1234567890",
            "3000-01-01T00:00:00Z",
        ] {
            let err = parse_rfc3339_nano(bad).unwrap_err();
            assert!(err.starts_with(&format!("parsing time {bad:?} as ")), "{err}");
        }
    }
}
