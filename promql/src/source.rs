//! Where the engine's samples come from: the [`SeriesSource`] trait the store
//! implements, the label helpers every source needs, and [`MemSource`], an
//! in-memory source for tests.

use promql_parser::label::{MatchOp, Matcher, Matchers, METRIC_NAME};
use promql_parser::parser::VectorSelector;

/// A series' identity: `(name, value)` pairs sorted by label name, always
/// including `"__name__"` for stored series (computed series may lack it).
pub type Labels = Vec<(String, String)>;

/// One series and its samples, `(unix ms, value)` sorted by time ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store failed; the HTTP API answers 500 `internal`.
    #[error("{0}")]
    Internal(String),
    /// The selection holds more samples than the query may (see
    /// [`SeriesSource::select_within`]); the HTTP API answers 422.
    #[error("too many samples")]
    TooManySamples,
}

/// The engine's only view of storage.
pub trait SeriesSource: Send + Sync + 'static {
    /// Every series whose labels satisfy all `matchers` (the source applies them, incl. regex/!= and __name__),
    /// with its samples whose timestamp is in [start_ms, end_ms] (inclusive). Blocking call (may read disk).
    ///
    /// # Errors
    /// [`SourceError`] when the store cannot be read.
    fn select(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Result<Vec<Series>, SourceError>;

    /// [`select`](Self::select) for a query that may hold at most
    /// `max_samples` more samples. The default selects, then counts; a source
    /// that reads incrementally should stop keeping samples once past the
    /// limit, so a selection too large for memory is never held.
    ///
    /// # Errors
    /// [`SourceError::TooManySamples`] past the limit, else as `select`.
    fn select_within(
        &self,
        matchers: &Matchers,
        start_ms: i64,
        end_ms: i64,
        max_samples: usize,
    ) -> Result<Vec<Series>, SourceError> {
        let series = self.select(matchers, start_ms, end_ms)?;
        if series.iter().map(|s| s.samples.len()).sum::<usize>() > max_samples {
            return Err(SourceError::TooManySamples);
        }
        Ok(series)
    }

    /// The label sets of the series [`select`](Self::select) would return that
    /// have at least one sample in `[start_ms, end_ms]`; used by the metadata
    /// endpoints (`/series`, `/labels`, `/label/{name}/values`). Without
    /// `start`/`end` parameters those endpoints pass
    /// [`MIN_TIME_MS`](crate::timebounds::MIN_TIME_MS) / [`MAX_TIME_MS`](crate::timebounds::MAX_TIME_MS),
    /// which still fit i64 nanoseconds. The default calls `select` and drops
    /// the samples; a store that keeps an index can answer without reading
    /// samples.
    ///
    /// # Errors
    /// [`SourceError`] when the store cannot be read.
    fn select_labels(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, SourceError> {
        Ok(self
            .select(matchers, start_ms, end_ms)?
            .into_iter()
            .filter(|s| !s.samples.is_empty())
            .map(|s| s.labels)
            .collect())
    }
}

/// The value of label `name`, or `""` when the series has no such label (as
/// in Prometheus, a missing label and an empty one are the same).
pub fn label_value<'a>(labels: &'a Labels, name: &str) -> &'a str {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) => &labels[i].1,
        Err(_) => "",
    }
}

/// Whether `labels` satisfy `matchers`: every plain matcher holds and, when
/// the selector used `or` (`{a="1" or b="2"}`), at least one `or` group holds
/// in full. A missing label matches as the empty string.
pub fn matches(matchers: &Matchers, labels: &Labels) -> bool {
    let all = |group: &[Matcher]| group.iter().all(|m| m.is_match(label_value(labels, &m.name)));
    all(&matchers.matchers) && (matchers.or_matchers.is_empty() || matchers.or_matchers.iter().any(|g| all(g)))
}

/// The matchers a selector really means: the parser keeps `foo` of
/// `foo{a="b"}` apart from its matchers; this adds `__name__="foo"` (to every
/// `or` group when there are some).
pub fn selector_matchers(vs: &VectorSelector) -> Matchers {
    let mut m = vs.matchers.clone();
    if let Some(name) = &vs.name {
        let name_matcher = Matcher::new(MatchOp::Equal, METRIC_NAME, name);
        if m.or_matchers.is_empty() {
            m.matchers.push(name_matcher);
        } else {
            for group in &mut m.or_matchers {
                group.push(name_matcher.clone());
            }
        }
    }
    m
}

/// A [`SeriesSource`] over series held in memory: the tests' store. Build it
/// with [`MemSource::new`] (which sorts labels) or keep labels sorted yourself.
#[derive(Debug, Clone, Default)]
pub struct MemSource {
    pub series: Vec<Series>,
}

impl MemSource {
    /// A source over `series`; each series' labels are sorted here so tests can
    /// write them in any order.
    pub fn new(series: Vec<Series>) -> Self {
        let series = series
            .into_iter()
            .map(|mut s| {
                s.labels.sort();
                s
            })
            .collect();
        MemSource { series }
    }
}

impl SeriesSource for MemSource {
    fn select(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Result<Vec<Series>, SourceError> {
        Ok(self
            .series
            .iter()
            .filter(|s| matches(matchers, &s.labels))
            .map(|s| {
                let lo = s.samples.partition_point(|&(t, _)| t < start_ms);
                let hi = s.samples.partition_point(|&(t, _)| t <= end_ms);
                Series { labels: s.labels.clone(), samples: s.samples[lo..hi.max(lo)].to_vec() }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::parser::{parse, Expr};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l: Labels = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        l.sort();
        l
    }

    fn selector(q: &str) -> Matchers {
        match parse(q).unwrap() {
            Expr::VectorSelector(vs) => selector_matchers(&vs),
            other => panic!("not a selector: {other:?}"),
        }
    }

    #[test]
    fn matchers_follow_prometheus_semantics() {
        let l = labels(&[("__name__", "up"), ("job", "api"), ("code", "200")]);
        assert!(matches(&selector(r#"up{job="api"}"#), &l));
        assert!(!matches(&selector(r#"down{job="api"}"#), &l));
        assert!(matches(&selector(r#"{__name__=~"u.", code!="500"}"#), &l));
        // Regexes are anchored: "ap" does not match "api".
        assert!(!matches(&selector(r#"up{job=~"ap"}"#), &l));
        // A missing label is the empty string.
        assert!(matches(&selector(r#"up{zone=""}"#), &l));
        assert!(!matches(&selector(r#"up{zone!=""}"#), &l));
        assert!(matches(&selector(r#"up{zone!~"eu.*"}"#), &l));
    }

    #[test]
    fn or_groups_need_one_full_match_and_keep_the_name() {
        let l = labels(&[("__name__", "up"), ("job", "api")]);
        assert!(matches(&selector(r#"up{job="db" or job="api"}"#), &l));
        assert!(!matches(&selector(r#"up{job="db" or job="web"}"#), &l));
        // The metric name applies to every group.
        assert!(!matches(&selector(r#"down{job="db" or job="api"}"#), &l));
    }

    #[test]
    fn mem_source_selects_an_inclusive_time_range() {
        let src = MemSource::new(vec![Series {
            labels: labels(&[("job", "a"), ("__name__", "x")]),
            samples: vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)],
        }]);
        let got = src.select(&selector("x"), 2000, 3000).unwrap();
        assert_eq!(got[0].samples, vec![(2000, 2.0), (3000, 3.0)]);
        assert_eq!(got[0].labels[0].0, "__name__", "labels are sorted");
        assert!(src.select_labels(&selector("x"), 4000, 5000).unwrap().is_empty());
        assert_eq!(label_value(&got[0].labels, "job"), "a");
        assert_eq!(label_value(&got[0].labels, "nope"), "");
    }
}
