//! The store's metrics as a PromQL [`SeriesSource`]: streams are chosen by
//! their Prometheus names from the catalog's metric descriptors, their points
//! read from the segments holding them and built into series
//! ([`SeriesBuilder`]), then matched on every label.

use std::collections::HashSet;

use promql_parser::label::{Matcher, Matchers};
use seismo_store::{MetricDescriptor, MetricKind, Store};

use crate::otlp_names::series_names;
use crate::otlp_series::{SeriesBuilder, DELTA, NAME_LABEL};
use crate::source::{matches, Series, SeriesSource, SourceError};

/// The OTLP streams that produce at least one series name `want_name` accepts.
fn streams_named(descriptors: &[MetricDescriptor], want_name: &dyn Fn(&str) -> bool) -> Vec<MetricDescriptor> {
    descriptors.iter().filter(|d| series_names(d).iter().any(|n| want_name(n))).cloned().collect()
}

/// OTLP metric names of `streams`, and whether any is a delta stream (whose
/// history must be read from its first point).
fn stream_names(streams: &[MetricDescriptor]) -> (HashSet<String>, bool) {
    let names = streams.iter().map(|d| d.name.clone()).collect();
    let delta = streams.iter().any(|d| d.temporality == DELTA && d.kind != MetricKind::Gauge);
    (names, delta)
}

/// The store's metrics as a PromQL series source.
pub struct StoreSource {
    store: Store,
}

impl StoreSource {
    pub fn new(store: Store) -> Self {
        StoreSource { store }
    }
}

/// True when the `__name__` matchers of `m` accept `name` (the other labels
/// are checked once series are built).
fn name_accepted(m: &Matchers, name: &str) -> bool {
    let group = |g: &[Matcher]| g.iter().filter(|x| x.name == NAME_LABEL).all(|x| x.is_match(name));
    group(&m.matchers) && (m.or_matchers.is_empty() || m.or_matchers.iter().any(|g| group(g)))
}

impl SeriesSource for StoreSource {
    /// Streams are chosen by name from the catalog's metric descriptors, their
    /// points read from the segments holding those names, converted, and
    /// matched on every label.
    fn select(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Result<Vec<Series>, SourceError> {
        self.select_within(matchers, start_ms, end_ms, usize::MAX)
    }

    /// The builder stops keeping points once they make more than
    /// `max_samples` samples (the store's reader cannot be stopped; what it
    /// reads past the limit is dropped at once), so a selection too large for
    /// memory is refused, not held.
    fn select_within(
        &self,
        matchers: &Matchers,
        start_ms: i64,
        end_ms: i64,
        max_samples: usize,
    ) -> Result<Vec<Series>, SourceError> {
        let to_ns = |ms: i64| ms.saturating_mul(1_000_000);
        let (start_ns, end_ns) = (to_ns(start_ms), to_ns(end_ms).saturating_add(999_999));
        let want = |n: &str| name_accepted(matchers, n);
        let streams = streams_named(&self.store.metric_descriptors(Some(start_ns), Some(end_ns)), &want);
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let (names, delta) = stream_names(&streams);
        // Delta streams are summed from their first point.
        let from = if delta { None } else { Some(start_ns) };
        let mut builder = SeriesBuilder::new(&want).with_max_samples(max_samples);
        self.store
            .visit_metric_points(&names, from, Some(end_ns), &mut |p| builder.add(p))
            .map_err(|e| SourceError::Internal(e.to_string()))?;
        if builder.over_limit() {
            return Err(SourceError::TooManySamples);
        }
        Ok(Self::matching(builder, matchers, start_ms, end_ms))
    }
}

impl StoreSource {
    /// The built series that match `matchers`, with their samples in
    /// `[start_ms, end_ms]`.
    fn matching(builder: SeriesBuilder, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Vec<Series> {
        builder
            .finish()
            .into_iter()
            .filter(|(labels, _)| matches(matchers, labels))
            .filter_map(|(labels, mut samples)| {
                samples.retain(|(t, _)| *t >= start_ms && *t <= end_ms);
                (!samples.is_empty()).then_some(Series { labels, samples })
            })
            .collect()
    }
}
