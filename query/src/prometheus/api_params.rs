//! Pure parsers for the Prometheus HTTP API's text: times, durations and
//! form bodies. They follow Prometheus' Go code
//! (`parseTime`, `parseDuration`, `r.FormValue`, `strconv.FormatFloat`) so
//! clients built against Prometheus get the same answers and error texts.

use crate::request::go_syntax::parse_rfc3339_nano;

/// Parses a time parameter as Prometheus' `parseTime`: unix seconds as a float
/// (`1435781451.781`, rounded to ms) or RFC 3339 with optional fractional
/// seconds and a `Z` or `±hh:mm` offset. Returns unix milliseconds.
///
/// # Errors
/// Prometheus' text: `cannot parse "x" to a valid timestamp`.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    let fail = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 9.2e15 {
            return Err(fail());
        }
        // Go: whole seconds plus the fraction rounded to milliseconds.
        let whole = secs.trunc();
        return Ok(whole as i64 * 1000 + ((secs - whole) * 1000.0).round() as i64);
    }
    parse_rfc3339(s).ok_or_else(fail)
}

/// RFC 3339 at the API's millisecond resolution (further digits truncated, as
/// Prometheus does), through the query crate's one RFC 3339 parser.
fn parse_rfc3339(s: &str) -> Option<i64> {
    parse_rfc3339_nano(s).ok().map(|ns| ns.div_euclid(1_000_000))
}

const DURATION_UNITS: &[(&str, i64)] = &[
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a duration as Prometheus' API `parseDuration`: float seconds
/// (`15`, `0.5`) or a Prometheus duration (`1h30m`, `5m`, `2w`, `100ms`;
/// units y w d h m s ms, each at most once and in that order). Returns
/// milliseconds.
///
/// # Errors
/// Prometheus' text: `cannot parse "x" to a valid duration`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms.abs() > 9.2e15 {
            return Err(format!("cannot parse {s:?} to a valid duration. It overflows int64"));
        }
        return Ok(ms as i64);
    }
    parse_prometheus_duration(s).ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

fn parse_prometheus_duration(s: &str) -> Option<i64> {
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // "ms" must win over "m" followed by "s".
        let (idx, (unit, mult)) = DURATION_UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())?;
        rest = &rest[unit.len()..];
        next_unit = idx + 1;
        total = total.checked_add(n.checked_mul(*mult)?)?;
    }
    (!s.is_empty()).then_some(total)
}

/// Decodes an `application/x-www-form-urlencoded` string (a query string or a
/// POST body) into its pairs, keeping repeated keys (`match[]`) in order.
///
/// # Errors
/// A `%` not followed by two hex digits, as Go's `url.ParseQuery`.
pub(crate) fn parse_form(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => {
                        let end = (i + 3).min(b.len());
                        return Err(format!("invalid URL escape {:?}", String::from_utf8_lossy(&b[i..end])));
                    }
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_prometheus_does() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Ok(1_435_781_451_000));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        // 2015-07-01T20:10:51.781Z is the example of Prometheus' API docs.
        assert_eq!(parse_time("2015-07-01T20:10:51.781Z"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("2015-07-01T22:10:51.781123+02:00"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("2015-07-01T20:10:51Z"), Ok(1_435_781_451_000));
        assert_eq!(parse_time("1970-01-01T00:00:00-01:30"), Ok(5_400_000));
        for bad in ["", "x", "2015-07-01", "2015-13-01T00:00:00Z", "2015-02-29T00:00:00Z", "NaN", "2015-07-01T20:10:51"]
        {
            assert_eq!(parse_time(bad), Err(format!("cannot parse {bad:?} to a valid timestamp")), "{bad}");
        }
    }

    #[test]
    fn durations_parse_as_prometheus_does() {
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("100ms"), Ok(100));
        assert_eq!(parse_duration("1m30s500ms"), Ok(90_500));
        assert_eq!(parse_duration("1y2w"), Ok((365 + 14) * 86_400_000));
        for bad in ["", "1x", "m", "30m1h", "1h1h", "-5m"] {
            assert_eq!(parse_duration(bad), Err(format!("cannot parse {bad:?} to a valid duration")), "{bad}");
        }
    }

    #[test]
    fn forms_keep_repeated_keys_and_decode() {
        let got = parse_form("match%5B%5D=up&match[]=x%7Bjob%3D%22a+b%22%7D&time=&flag").unwrap();
        let want = [("match[]", "up"), ("match[]", "x{job=\"a b\"}"), ("time", ""), ("flag", "")];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
        assert!(parse_form("a=%zz").is_err());
        assert!(parse_form("a=%4").is_err());
    }
}
