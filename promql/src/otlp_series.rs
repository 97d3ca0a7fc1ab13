//! OTLP metric points as Prometheus series (names from [`crate::otlp_names`]):
//! - histograms become `_bucket{le=...}` (cumulative counts, `+Inf` last),
//!   `_sum` and `_count`; summaries a series per `quantile` plus `_sum` and
//!   `_count`; exponential histograms only `_sum` and `_count`;
//! - labels: point attributes (names per [`label_name`]), `job` from
//!   `service.namespace/service.name`, `instance` from `service.instance.id`;
//! - delta temporality: points are summed per series in time order, so a
//!   delta counter reads like the cumulative counter Prometheus expects and
//!   `rate`/`increase` work on it. This needs the stream's history from its
//!   first stored point, which `StoreSource` loads for
//!   delta streams.

use std::collections::BTreeMap;

use seismo_store::{AttrValue, KeyValue, MetricDescriptor, MetricKind, MetricPointRef};

use crate::otlp_names::{label_name, series_names};

/// Sorted by label name, always including `__name__`.
pub(crate) type LabelSet = Vec<(String, String)>;

pub(crate) const NAME_LABEL: &str = "__name__";
/// OTLP's `AGGREGATION_TEMPORALITY_DELTA`.
pub(crate) const DELTA: i32 = 1;

/// A Prometheus float for a label value (`le`, `quantile`): Go's
/// `FormatFloat(f, 'f', -1, 64)` with `+Inf`.
fn float_label(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The labels a point shares with every series it feeds (no `__name__`):
/// its attributes plus `job` and `instance` from the resource.
fn base_labels(row: &LabelSource) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for kv in &row.attributes {
        let v = kv.value.to_text();
        labels
            .entry(label_name(&kv.key))
            .and_modify(|old| {
                // Two keys that sanitize alike: Prometheus joins the values.
                old.push(';');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    let res = |key: &str| -> Option<String> {
        row.resource_attributes.iter().find(|kv: &&KeyValue| kv.key == key).and_then(|kv| match &kv.value {
            AttrValue::Empty => None,
            v => Some(v.to_text()),
        })
    };
    let service = res(seismo_store::SERVICE_NAME).unwrap_or_else(|| row.service_name.clone());
    let job = match res("service.namespace") {
        Some(ns) if !ns.is_empty() => format!("{ns}/{service}"),
        _ => service,
    };
    labels.insert("job".into(), job);
    if let Some(instance) = res("service.instance.id") {
        labels.insert("instance".into(), instance);
    }
    labels
}

/// One point's numbers, after delta accumulation.
#[derive(Clone, Debug, Default)]
struct Reading {
    value: f64,
    count: f64,
    sum: f64,
    /// (upper bound, cumulative count) for histograms; (quantile, value) for summaries.
    buckets: Vec<(f64, f64)>,
}

fn reading(row: &MetricPointRef<'_>) -> Reading {
    let value = row.value_int.map(|v| v as f64).or(row.value).unwrap_or(f64::NAN);
    let mut r =
        Reading { value, count: row.count.unwrap_or(0) as f64, sum: row.sum.unwrap_or(f64::NAN), buckets: vec![] };
    if let Some(d) = row.distribution {
        match row.kind {
            MetricKind::Histogram => {
                let mut cumulative = 0u64;
                for (i, c) in d.bucket_counts.iter().enumerate() {
                    cumulative += c;
                    let le = d.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    r.buckets.push((le, cumulative as f64));
                }
                if r.buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
                    r.buckets.push((f64::INFINITY, r.count));
                }
            }
            MetricKind::Summary => r.buckets = d.quantiles.clone(),
            _ => {}
        }
    }
    r
}

/// Adds `prev` into `r` (delta -> cumulative). Buckets add when the bounds
/// match; new bounds restart the bucket counts.
fn accumulate(r: &mut Reading, prev: &Reading) {
    r.value += prev.value;
    r.count += prev.count;
    r.sum += prev.sum;
    if r.buckets.len() == prev.buckets.len() && r.buckets.iter().zip(&prev.buckets).all(|(a, b)| a.0 == b.0) {
        for (a, b) in r.buckets.iter_mut().zip(&prev.buckets) {
            a.1 += b.1;
        }
    }
}

/// Prometheus series with their samples (unix ms, value), time-ordered.
pub(crate) type SeriesMap = BTreeMap<LabelSet, Vec<(i64, f64)>>;

/// What decides a point's labels: attributes, resource, service (owned once per series).
struct LabelSource {
    attributes: Vec<KeyValue>,
    resource_attributes: Vec<KeyValue>,
    service_name: String,
}

impl LabelSource {
    fn of(p: &MetricPointRef<'_>) -> Self {
        LabelSource {
            attributes: p.attributes.to_vec(),
            resource_attributes: p.resource_attributes.to_vec(),
            service_name: p.service_name.to_string(),
        }
    }

    fn same(&self, p: &MetricPointRef<'_>) -> bool {
        self.attributes == p.attributes
            && self.resource_attributes == p.resource_attributes
            && self.service_name == p.service_name
    }
}

/// Hashes a point's label source without building any string.
fn label_source_hash(p: &MetricPointRef<'_>) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    fn value(v: &AttrValue, h: &mut impl Hasher) {
        match v {
            AttrValue::Str(s) | AttrValue::Bytes(s) => s.hash(h),
            AttrValue::Int(i) => i.hash(h),
            AttrValue::Double(d) => d.to_bits().hash(h),
            AttrValue::Bool(b) => b.hash(h),
            AttrValue::Array(a) => a.iter().for_each(|v| value(v, h)),
            AttrValue::Map(m) => kvs(m, h),
            AttrValue::Empty => 0u8.hash(h),
        }
    }
    fn kvs(list: &[KeyValue], h: &mut impl Hasher) {
        list.len().hash(h);
        for kv in list {
            kv.key.hash(h);
            value(&kv.value, h);
        }
    }
    let mut h = foldhash::fast::FixedState::default().build_hasher();
    kvs(p.attributes, &mut h);
    kvs(p.resource_attributes, &mut h);
    p.service_name.hash(&mut h);
    h.finish()
}

/// The points of one OTLP stream with one label source.
struct Group {
    descriptor: usize,
    labels: LabelSource,
    /// (unix ns, reading)
    points: Vec<(i64, Reading)>,
}

/// One output series of a group: which name, and the `le`/`quantile` value.
#[derive(PartialEq)]
struct SeriesKey {
    name: usize,
    extra: Option<(&'static str, u64)>,
}

/// Turns OTLP points, given one at a time, into Prometheus series. Points are
/// grouped per stream and label source as they come (kept: time and numbers
/// only), so labels are built once per series, not per sample.
pub(crate) struct SeriesBuilder<'w> {
    want_name: &'w dyn Fn(&str) -> bool,
    descriptors: Vec<MetricDescriptor>,
    /// Per descriptor: its series names, and which of them are wanted.
    names: Vec<(Vec<String>, Vec<bool>)>,
    groups: Vec<Group>,
    by_hash: foldhash::HashMap<(usize, u64), Vec<usize>>,
    /// Groups by the reader's label-source id, when it gives one.
    by_source: foldhash::HashMap<(usize, u64), usize>,
    last_descriptor: usize,
    /// Samples the kept points will become (a histogram point is a sample per
    /// bucket plus `_sum` and `_count`), and the most that may be kept.
    samples: usize,
    max_samples: usize,
}

impl<'w> SeriesBuilder<'w> {
    pub(crate) fn new(want_name: &'w dyn Fn(&str) -> bool) -> Self {
        SeriesBuilder {
            want_name,
            descriptors: Vec::new(),
            names: Vec::new(),
            groups: Vec::new(),
            by_hash: Default::default(),
            by_source: Default::default(),
            last_descriptor: usize::MAX,
            samples: 0,
            max_samples: usize::MAX,
        }
    }

    /// Stops keeping points once they would make more than `max` samples.
    pub(crate) fn with_max_samples(mut self, max: usize) -> Self {
        self.max_samples = max;
        self
    }

    /// Whether points were dropped because of [`with_max_samples`](Self::with_max_samples).
    pub(crate) fn over_limit(&self) -> bool {
        self.samples > self.max_samples
    }

    pub(crate) fn add(&mut self, p: &MetricPointRef<'_>) {
        if self.over_limit() {
            return;
        }
        // Neighbouring points mostly share their stream: try the last one first.
        let di = if self.descriptors.get(self.last_descriptor).is_some_and(|d| d.describes_ref(p)) {
            self.last_descriptor
        } else {
            match self.descriptors.iter().position(|d| d.describes_ref(p)) {
                Some(i) => i,
                None => {
                    let d = MetricDescriptor::of_ref(p);
                    let names = series_names(&d);
                    let wanted = names.iter().map(|n| (self.want_name)(n)).collect();
                    self.descriptors.push(d);
                    self.names.push((names, wanted));
                    self.descriptors.len() - 1
                }
            }
        };
        self.last_descriptor = di;
        if !self.names[di].1.iter().any(|w| *w) {
            return;
        }
        let known = p.label_source.and_then(|id| self.by_source.get(&(di, id)).copied());
        let g = match known {
            Some(g) => g,
            None => {
                let candidates = self.by_hash.entry((di, label_source_hash(p))).or_default();
                let g = match candidates.iter().find(|&&g| self.groups[g].labels.same(p)) {
                    Some(&g) => g,
                    None => {
                        candidates.push(self.groups.len());
                        self.groups.push(Group { descriptor: di, labels: LabelSource::of(p), points: Vec::new() });
                        self.groups.len() - 1
                    }
                };
                if let Some(id) = p.label_source {
                    self.by_source.insert((di, id), g);
                }
                g
            }
        };
        // Nanoseconds: order within a millisecond decides which point wins it.
        let r = reading(p);
        let samples = if r.buckets.is_empty() { 1 } else { r.buckets.len() + 2 };
        self.samples = self.samples.saturating_add(samples);
        self.groups[g].points.push((p.time_unix_nano, r));
    }

    pub(crate) fn finish(self) -> SeriesMap {
        let mut out = SeriesMap::new();
        for Group { descriptor: di, labels, mut points } in self.groups {
            let d = &self.descriptors[di];
            let (names, wanted) = &self.names[di];
            points.sort_by_key(|(t, _)| *t);
            let delta = d.temporality == DELTA && d.kind != MetricKind::Gauge;
            let mut series: Vec<(SeriesKey, Vec<(i64, f64)>)> = Vec::new();
            let count = points.len();
            let mut emit = |name: usize, extra: Option<(&'static str, f64)>, t: i64, v: f64| {
                if !wanted[name] {
                    return;
                }
                let key = SeriesKey { name, extra: extra.map(|(k, x)| (k, x.to_bits())) };
                // A handful of series per group (buckets): a linear search beats hashing.
                let samples = match series.iter().position(|(k, _)| *k == key) {
                    Some(i) => &mut series[i].1,
                    None => {
                        series.push((key, Vec::with_capacity(count)));
                        &mut series.last_mut().unwrap().1
                    }
                };
                match samples.last_mut() {
                    Some(last) if last.0 == t => last.1 = v,
                    _ => samples.push((t, v)),
                }
            };
            let mut prev: Option<Reading> = None;
            for (t_ns, mut r) in points {
                let t = t_ns.div_euclid(1_000_000);
                if delta {
                    if let Some(p) = &prev {
                        accumulate(&mut r, p);
                    }
                    prev = Some(r.clone());
                }
                match d.kind {
                    MetricKind::Gauge | MetricKind::Sum => emit(0, None, t, r.value),
                    MetricKind::Histogram => {
                        for (le, c) in &r.buckets {
                            emit(0, Some(("le", *le)), t, *c);
                        }
                        emit(1, None, t, r.sum);
                        emit(2, None, t, r.count);
                    }
                    MetricKind::ExponentialHistogram => {
                        emit(0, None, t, r.sum);
                        emit(1, None, t, r.count);
                    }
                    MetricKind::Summary => {
                        for (q, v) in &r.buckets {
                            emit(0, Some(("quantile", *q)), t, *v);
                        }
                        emit(1, None, t, r.sum);
                        emit(2, None, t, r.count);
                    }
                }
            }
            let base = base_labels(&labels);
            for (key, samples) in series {
                let mut labels: LabelSet = base.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                labels.push((NAME_LABEL.into(), names[key.name].clone()));
                if let Some((k, bits)) = key.extra {
                    labels.retain(|(name, _)| name != k);
                    labels.push((k.into(), float_label(f64::from_bits(bits))));
                }
                labels.sort();
                let entry = out.entry(labels).or_default();
                if entry.is_empty() {
                    *entry = samples;
                } else {
                    // Two label sources that sanitize to the same labels: one series.
                    entry.extend(samples);
                    entry.sort_by_key(|(t, _)| *t);
                    entry.dedup_by(|later, earlier| {
                        let same = later.0 == earlier.0;
                        if same {
                            earlier.1 = later.1;
                        }
                        same
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seismo_store::MetricPointRow;

    /// Converts OTLP points into Prometheus series (see [`SeriesBuilder`]).
    fn build_series<'a>(
        points: impl IntoIterator<Item = &'a MetricPointRow>,
        want_name: &dyn Fn(&str) -> bool,
    ) -> SeriesMap {
        let mut b = SeriesBuilder::new(want_name);
        for p in points {
            b.add(&p.as_ref());
        }
        b.finish()
    }
    use seismo_store::Distribution;

    fn point(name: &str, kind: MetricKind, temporality: i32, t_s: i64, route: &str) -> MetricPointRow {
        MetricPointRow {
            metric_name: name.into(),
            description: String::new(),
            unit: if kind == MetricKind::Histogram { "ms".into() } else { String::new() },
            kind,
            temporality,
            is_monotonic: kind == MetricKind::Sum,
            service_name: "cart".into(),
            time_unix_nano: t_s * 1_000_000_000,
            start_time_unix_nano: 0,
            attributes: vec![KeyValue::new("http.route", AttrValue::Str(route.into()))],
            resource_attributes: vec![
                KeyValue::new("service.name", AttrValue::Str("cart".into())),
                KeyValue::new("service.namespace", AttrValue::Str("shop".into())),
                KeyValue::new("service.instance.id", AttrValue::Str("pod-1".into())),
            ],
            scope_name: String::new(),
            value: None,
            value_int: None,
            count: None,
            sum: None,
            distribution: None,
            flags: 0,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        let mut v: LabelSet = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        v.sort();
        v
    }

    #[test]
    fn delta_counters_accumulate_per_series() {
        let mut points = Vec::new();
        // Deltas 3, 4, 5 at t = 10, 20, 30 (sent out of order) -> 3, 7, 12.
        for (t, v) in [(20, 4), (10, 3), (30, 5)] {
            let mut p = point("orders", MetricKind::Sum, DELTA, t, "/pay");
            p.value_int = Some(v);
            points.push(p);
        }
        let mut other = point("orders", MetricKind::Sum, DELTA, 10, "/cart");
        other.value = Some(1.5);
        points.push(other);
        let series = build_series(&points, &|_| true);
        let pay = labels(&[
            ("__name__", "orders_total"),
            ("http_route", "/pay"),
            ("job", "shop/cart"),
            ("instance", "pod-1"),
        ]);
        assert_eq!(series[&pay], vec![(10_000, 3.0), (20_000, 7.0), (30_000, 12.0)]);
        assert_eq!(series.len(), 2);
        assert!(build_series(&points, &|n| n == "nope").is_empty());
    }

    #[test]
    fn the_latest_point_within_a_millisecond_wins_whatever_the_read_order() {
        let mut later = point("depth", MetricKind::Gauge, 0, 10, "/q");
        later.time_unix_nano += 900_000;
        later.value = Some(5.0);
        let mut earlier = point("depth", MetricKind::Gauge, 0, 10, "/q");
        earlier.time_unix_nano += 100_000;
        earlier.value = Some(4.0);
        let series = build_series([&later, &earlier], &|_| true);
        assert_eq!(series.values().next().unwrap(), &vec![(10_000, 5.0)]);
    }

    #[test]
    fn histograms_become_cumulative_buckets_sum_and_count() {
        let mut p = point("latency", MetricKind::Histogram, 2, 60, "/pay");
        p.count = Some(10);
        p.sum = Some(1234.5);
        p.distribution = Some(Distribution {
            bucket_counts: vec![2, 5, 3],
            explicit_bounds: vec![5.0, 100.0],
            ..Default::default()
        });
        let series = build_series(&[p], &|_| true);
        let base = [("http_route", "/pay"), ("job", "shop/cart"), ("instance", "pod-1")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            labels(&v)
        };
        let bucket = |le| with(&[("__name__", "latency_milliseconds_bucket"), ("le", le)]);
        assert_eq!(series[&bucket("5")], vec![(60_000, 2.0)]);
        assert_eq!(series[&bucket("100")], vec![(60_000, 7.0)]);
        assert_eq!(series[&bucket("+Inf")], vec![(60_000, 10.0)]);
        assert_eq!(series[&with(&[("__name__", "latency_milliseconds_sum")])], vec![(60_000, 1234.5)]);
        assert_eq!(series[&with(&[("__name__", "latency_milliseconds_count")])], vec![(60_000, 10.0)]);
        assert_eq!(series.len(), 5);
    }

    #[test]
    fn the_builder_stops_keeping_points_past_its_sample_limit() {
        let gauge = |t| {
            let mut p = point("depth", MetricKind::Gauge, 0, t, "/q");
            p.value = Some(1.0);
            p
        };
        let mut b = SeriesBuilder::new(&|_| true).with_max_samples(3);
        for t in 0..3 {
            b.add(&gauge(t).as_ref());
        }
        assert!(!b.over_limit(), "three samples are within a limit of three");
        for t in 3..1000 {
            b.add(&gauge(t).as_ref());
        }
        assert!(b.over_limit());
        assert_eq!(b.groups[0].points.len(), 4, "points past the limit are not kept");
        // A histogram point counts a sample per bucket plus _sum and _count.
        let mut h = point("latency", MetricKind::Histogram, 2, 60, "/pay");
        h.distribution = Some(Distribution {
            bucket_counts: vec![2, 5, 3],
            explicit_bounds: vec![5.0, 100.0],
            ..Default::default()
        });
        let mut b = SeriesBuilder::new(&|_| true).with_max_samples(4);
        b.add(&h.as_ref());
        assert!(b.over_limit());
    }
}
