//! OTLP metric streams' Prometheus names, per the OpenTelemetry
//! Prometheus-compatibility rules (the translation Prometheus' own OTLP
//! receiver applies):
//! - names: every run of characters outside `[a-zA-Z0-9]` becomes one `_`;
//!   the unit is appended as a word (`ms` -> `_milliseconds`, `By/s` ->
//!   `_bytes_per_second`, `{request}` annotations dropped) unless the name
//!   already holds it; monotonic sums end in `_total`; gauges of unit `1` end
//!   in `_ratio`;
//! - histograms are named `_bucket`, `_sum` and `_count`; summaries the stem
//!   plus `_sum` and `_count`; exponential histograms only `_sum` and `_count`;
//! - label names: attribute keys with invalid characters replaced by `_` (a
//!   leading digit gets `key_`).

use seismo_store::{MetricDescriptor, MetricKind};

/// The word a UCUM unit becomes in a metric name.
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        _ => return None,
    })
}

/// The word a UCUM unit becomes after `per_`.
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// Splits text into the alphanumeric runs that name tokens are made of.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// The unit's name tokens: `ms` -> [milliseconds], `By/s` -> [bytes, per,
/// second], `{request}` -> [].
fn unit_tokens(unit: &str) -> (Vec<String>, Vec<String>) {
    // Drop `{annotations}`.
    let mut plain = String::with_capacity(unit.len());
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let (main, per) = match plain.split_once('/') {
        Some((m, p)) => (m.trim(), p.trim()),
        None => (plain.trim(), ""),
    };
    let main_tokens = match unit_word(main) {
        Some(w) => tokens(w),
        None => tokens(main),
    };
    let per_tokens = match per_unit_word(per) {
        Some(w) => vec!["per".to_string(), w.to_string()],
        None if tokens(per).is_empty() => Vec::new(),
        None => std::iter::once("per".to_string()).chain(tokens(per)).collect(),
    };
    (main_tokens, per_tokens)
}

/// The Prometheus metric name of an OTLP metric stream (for histograms and
/// summaries, the stem of `_bucket`/`_sum`/`_count`).
pub fn metric_name(d: &MetricDescriptor) -> String {
    let mut name = tokens(&d.name);
    let counter = d.kind == MetricKind::Sum && d.is_monotonic;
    if counter && name.last().is_some_and(|t| t == "total") {
        name.pop();
    }
    let (main, per) = unit_tokens(&d.unit);
    for part in [main, per] {
        if !part.is_empty() && !contains_run(&name, &part) {
            name.extend(part);
        }
    }
    if d.kind == MetricKind::Gauge && d.unit == "1" && !name.iter().any(|t| t == "ratio") {
        name.push("ratio".into());
    }
    if counter {
        name.push("total".into());
    }
    let joined = name.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{joined}")
    } else {
        joined
    }
}

fn contains_run(haystack: &[String], run: &[String]) -> bool {
    haystack.windows(run.len()).any(|w| w == run)
}

/// A Prometheus label name for an attribute key.
pub fn label_name(key: &str) -> String {
    let mut out: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

/// The series names a stream produces.
pub(crate) fn series_names(d: &MetricDescriptor) -> Vec<String> {
    let stem = metric_name(d);
    match d.kind {
        MetricKind::Gauge | MetricKind::Sum => vec![stem],
        MetricKind::Histogram => vec![format!("{stem}_bucket"), format!("{stem}_sum"), format!("{stem}_count")],
        MetricKind::ExponentialHistogram => vec![format!("{stem}_sum"), format!("{stem}_count")],
        MetricKind::Summary => vec![stem.clone(), format!("{stem}_sum"), format!("{stem}_count")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(name: &str, unit: &str, kind: MetricKind, monotonic: bool) -> MetricDescriptor {
        MetricDescriptor { name: name.into(), unit: unit.into(), kind, temporality: 2, is_monotonic: monotonic }
    }

    #[test]
    fn names_follow_the_compatibility_rules() {
        let cases = [
            (desc("http.server.duration", "ms", MetricKind::Histogram, false), "http_server_duration_milliseconds"),
            (desc("http.server.request.count", "{request}", MetricKind::Sum, true), "http_server_request_count_total"),
            (desc("requests_total", "1", MetricKind::Sum, true), "requests_total"),
            (desc("process.cpu.utilization", "1", MetricKind::Gauge, false), "process_cpu_utilization_ratio"),
            (desc("queue.depth", "{item}", MetricKind::Sum, false), "queue_depth"),
            (desc("net.io", "By/s", MetricKind::Gauge, false), "net_io_bytes_per_second"),
            (desc("request_duration_seconds", "s", MetricKind::Histogram, false), "request_duration_seconds"),
            (desc("disk.usage", "By", MetricKind::Gauge, false), "disk_usage_bytes"),
            (desc("temp", "Cel", MetricKind::Gauge, false), "temp_celsius"),
            (desc("2xx.responses", "", MetricKind::Sum, true), "_2xx_responses_total"),
            (desc("weird..name--x", "furlongs", MetricKind::Gauge, false), "weird_name_x_furlongs"),
            (desc("jobs.rate", "1/min", MetricKind::Gauge, false), "jobs_rate_per_min"),
        ];
        for (d, want) in cases {
            assert_eq!(metric_name(&d), want, "{d:?}");
        }
        assert_eq!(label_name("http.route"), "http_route");
        assert_eq!(label_name("0day"), "key_0day");
    }
}
