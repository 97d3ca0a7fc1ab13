//! OTLP/JSON for metrics: `ExportMetricsServiceRequest` and everything under it.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use serde_json::Value;

use super::common::{key_values, resource, scope};
use super::{
    boolean, decode_document, double, doubles, enumeration, for_each_field, int32, int64, repeated, span_id, string,
    trace_id, uint32, uint64, uint64s, JsonError, OneOf,
};

type Result<T> = std::result::Result<T, JsonError>;

/// Decodes an OTLP/JSON metrics export request.
///
/// # Errors
/// A [`JsonError`] naming the first field that is not valid OTLP/JSON.
pub(crate) fn decode_metrics(bytes: &[u8]) -> Result<ExportMetricsServiceRequest> {
    decode_document(bytes, |root| {
        let mut out = ExportMetricsServiceRequest::default();
        for_each_field(root, |key, field| {
            if key == "resourceMetrics" {
                out.resource_metrics = repeated(field, resource_metrics)?;
            }
            Ok(())
        })?;
        Ok(out)
    })
}

fn resource_metrics(value: &Value) -> Result<ResourceMetrics> {
    let mut out = ResourceMetrics::default();
    for_each_field(value, |key, field| {
        match key {
            "resource" => out.resource = Some(resource(field)?),
            "scopeMetrics" => out.scope_metrics = repeated(field, scope_metrics)?,
            "schemaUrl" => out.schema_url = string(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn scope_metrics(value: &Value) -> Result<ScopeMetrics> {
    let mut out = ScopeMetrics::default();
    for_each_field(value, |key, field| {
        match key {
            "scope" => out.scope = Some(scope(field)?),
            "metrics" => out.metrics = repeated(field, metric)?,
            "schemaUrl" => out.schema_url = string(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn metric(value: &Value) -> Result<Metric> {
    let mut out = Metric::default();
    let mut data = OneOf::default();
    for_each_field(value, |key, field| {
        let decoded = match key {
            "name" => return string(field).map(|v| out.name = v),
            "description" => return string(field).map(|v| out.description = v),
            "unit" => return string(field).map(|v| out.unit = v),
            "metadata" => return key_values(field).map(|v| out.metadata = v),
            "gauge" => metric::Data::Gauge(gauge(field)?),
            "sum" => metric::Data::Sum(sum(field)?),
            "histogram" => metric::Data::Histogram(histogram(field)?),
            "exponentialHistogram" => metric::Data::ExponentialHistogram(exponential_histogram(field)?),
            "summary" => metric::Data::Summary(summary(field)?),
            _ => return Ok(()),
        };
        data.set(key)?;
        out.data = Some(decoded);
        Ok(())
    })?;
    Ok(out)
}

fn temporality(value: &Value) -> Result<i32> {
    enumeration(value, |n| AggregationTemporality::from_str_name(n).map(|t| t as i32))
}

fn gauge(value: &Value) -> Result<Gauge> {
    let mut out = Gauge::default();
    for_each_field(value, |key, field| {
        if key == "dataPoints" {
            out.data_points = repeated(field, number_data_point)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn sum(value: &Value) -> Result<Sum> {
    let mut out = Sum::default();
    for_each_field(value, |key, field| {
        match key {
            "dataPoints" => out.data_points = repeated(field, number_data_point)?,
            "aggregationTemporality" => out.aggregation_temporality = temporality(field)?,
            "isMonotonic" => out.is_monotonic = boolean(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn histogram(value: &Value) -> Result<Histogram> {
    let mut out = Histogram::default();
    for_each_field(value, |key, field| {
        match key {
            "dataPoints" => out.data_points = repeated(field, histogram_data_point)?,
            "aggregationTemporality" => out.aggregation_temporality = temporality(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn exponential_histogram(value: &Value) -> Result<ExponentialHistogram> {
    let mut out = ExponentialHistogram::default();
    for_each_field(value, |key, field| {
        match key {
            "dataPoints" => out.data_points = repeated(field, exponential_histogram_data_point)?,
            "aggregationTemporality" => out.aggregation_temporality = temporality(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn summary(value: &Value) -> Result<Summary> {
    let mut out = Summary::default();
    for_each_field(value, |key, field| {
        if key == "dataPoints" {
            out.data_points = repeated(field, summary_data_point)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn number_data_point(value: &Value) -> Result<NumberDataPoint> {
    let mut out = NumberDataPoint::default();
    let mut number = OneOf::default();
    for_each_field(value, |key, field| {
        match key {
            "attributes" => out.attributes = key_values(field)?,
            "startTimeUnixNano" => out.start_time_unix_nano = uint64(field)?,
            "timeUnixNano" => out.time_unix_nano = uint64(field)?,
            "asDouble" => {
                number.set(key)?;
                out.value = Some(number_data_point::Value::AsDouble(double(field)?));
            }
            "asInt" => {
                number.set(key)?;
                out.value = Some(number_data_point::Value::AsInt(int64(field)?));
            }
            "exemplars" => out.exemplars = repeated(field, exemplar)?,
            "flags" => out.flags = uint32(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn histogram_data_point(value: &Value) -> Result<HistogramDataPoint> {
    let mut out = HistogramDataPoint::default();
    for_each_field(value, |key, field| {
        match key {
            "attributes" => out.attributes = key_values(field)?,
            "startTimeUnixNano" => out.start_time_unix_nano = uint64(field)?,
            "timeUnixNano" => out.time_unix_nano = uint64(field)?,
            "count" => out.count = uint64(field)?,
            "sum" => out.sum = Some(double(field)?),
            "bucketCounts" => out.bucket_counts = uint64s(field)?,
            "explicitBounds" => out.explicit_bounds = doubles(field)?,
            "exemplars" => out.exemplars = repeated(field, exemplar)?,
            "flags" => out.flags = uint32(field)?,
            "min" => out.min = Some(double(field)?),
            "max" => out.max = Some(double(field)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn exponential_histogram_data_point(value: &Value) -> Result<ExponentialHistogramDataPoint> {
    let mut out = ExponentialHistogramDataPoint::default();
    for_each_field(value, |key, field| {
        match key {
            "attributes" => out.attributes = key_values(field)?,
            "startTimeUnixNano" => out.start_time_unix_nano = uint64(field)?,
            "timeUnixNano" => out.time_unix_nano = uint64(field)?,
            "count" => out.count = uint64(field)?,
            "sum" => out.sum = Some(double(field)?),
            "scale" => out.scale = int32(field)?,
            "zeroCount" => out.zero_count = uint64(field)?,
            "positive" => out.positive = Some(buckets(field)?),
            "negative" => out.negative = Some(buckets(field)?),
            "flags" => out.flags = uint32(field)?,
            "exemplars" => out.exemplars = repeated(field, exemplar)?,
            "min" => out.min = Some(double(field)?),
            "max" => out.max = Some(double(field)?),
            "zeroThreshold" => out.zero_threshold = double(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn buckets(value: &Value) -> Result<Buckets> {
    let mut out = Buckets::default();
    for_each_field(value, |key, field| {
        match key {
            "offset" => out.offset = int32(field)?,
            "bucketCounts" => out.bucket_counts = uint64s(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn summary_data_point(value: &Value) -> Result<SummaryDataPoint> {
    let mut out = SummaryDataPoint::default();
    for_each_field(value, |key, field| {
        match key {
            "attributes" => out.attributes = key_values(field)?,
            "startTimeUnixNano" => out.start_time_unix_nano = uint64(field)?,
            "timeUnixNano" => out.time_unix_nano = uint64(field)?,
            "count" => out.count = uint64(field)?,
            "sum" => out.sum = double(field)?,
            "quantileValues" => out.quantile_values = repeated(field, value_at_quantile)?,
            "flags" => out.flags = uint32(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn value_at_quantile(value: &Value) -> Result<ValueAtQuantile> {
    let mut out = ValueAtQuantile::default();
    for_each_field(value, |key, field| {
        match key {
            "quantile" => out.quantile = double(field)?,
            "value" => out.value = double(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn exemplar(value: &Value) -> Result<Exemplar> {
    let mut out = Exemplar::default();
    let mut number = OneOf::default();
    for_each_field(value, |key, field| {
        match key {
            "filteredAttributes" => out.filtered_attributes = key_values(field)?,
            "timeUnixNano" => out.time_unix_nano = uint64(field)?,
            "asDouble" => {
                number.set(key)?;
                out.value = Some(exemplar::Value::AsDouble(double(field)?));
            }
            "asInt" => {
                number.set(key)?;
                out.value = Some(exemplar::Value::AsInt(int64(field)?));
            }
            "spanId" => out.span_id = span_id(field)?,
            "traceId" => out.trace_id = trace_id(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics_of(req: &ExportMetricsServiceRequest) -> &[Metric] {
        &req.resource_metrics[0].scope_metrics[0].metrics
    }

    #[test]
    fn example_decodes_every_kind_in_it() {
        let req = decode_metrics(include_bytes!("../../testdata/otlp-json/metrics.json")).unwrap();
        let metrics = metrics_of(&req);
        let Some(metric::Data::Sum(counter)) = &metrics[0].data else { panic!("sum expected") };
        assert!(counter.is_monotonic);
        assert_eq!(counter.aggregation_temporality, AggregationTemporality::Delta as i32);
        assert_eq!(counter.data_points[0].value, Some(number_data_point::Value::AsDouble(5.0)));
        let Some(metric::Data::Histogram(histogram)) = &metrics[2].data else { panic!("histogram expected") };
        assert_eq!(histogram.data_points[0].bucket_counts, vec![1, 1]);
        assert_eq!(histogram.data_points[0].count, 2);
        assert_eq!(histogram.data_points[0].min, Some(0.0));
        let Some(metric::Data::ExponentialHistogram(exp)) = &metrics[3].data else { panic!("exp expected") };
        assert_eq!(exp.data_points[0].positive.as_ref().unwrap().bucket_counts, vec![0, 2]);
        assert_eq!(exp.data_points[0].zero_count, 1);
    }

    #[test]
    fn as_int_is_exact_and_specials_are_accepted() {
        let json = br#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "g", "gauge": {"dataPoints": [{"asInt": "9007199254740993"}, {"asInt": -5}, {"asDouble": "NaN"}]}},
            {"name": "s", "summary": {"dataPoints": [{"count": 3, "sum": "Infinity",
                "quantileValues": [{"quantile": 0.99, "value": "-Infinity"}]}]}},
            {"name": "h", "histogram": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
                "dataPoints": [{"bucketCounts": [1, "18446744073709551615"], "explicitBounds": [0.5],
                                "exemplars": [{"asInt": "7", "traceId": "0102030405060708090a0b0c0d0e0f10"}]}]}}
        ]}]}]}"#;
        let req = decode_metrics(json).unwrap();
        let metrics = metrics_of(&req);
        let Some(metric::Data::Gauge(gauge)) = &metrics[0].data else { panic!() };
        assert_eq!(gauge.data_points[0].value, Some(number_data_point::Value::AsInt(9_007_199_254_740_993)));
        assert_eq!(gauge.data_points[1].value, Some(number_data_point::Value::AsInt(-5)));
        assert!(matches!(gauge.data_points[2].value, Some(number_data_point::Value::AsDouble(d)) if d.is_nan()));
        let Some(metric::Data::Summary(summary)) = &metrics[1].data else { panic!() };
        assert_eq!(summary.data_points[0].sum, f64::INFINITY);
        assert_eq!(summary.data_points[0].quantile_values[0].value, f64::NEG_INFINITY);
        let Some(metric::Data::Histogram(histogram)) = &metrics[2].data else { panic!() };
        assert_eq!(histogram.aggregation_temporality, AggregationTemporality::Cumulative as i32);
        assert_eq!(histogram.data_points[0].bucket_counts, vec![1, u64::MAX]);
        assert_eq!(histogram.data_points[0].exemplars[0].value, Some(exemplar::Value::AsInt(7)));
    }

    #[test]
    fn two_data_kinds_in_one_metric_are_rejected() {
        let json = br#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "x", "gauge": {}, "sum": {}}]}]}]}"#;
        let err = decode_metrics(json).unwrap_err().to_string();
        assert!(err.starts_with("resourceMetrics[0].scopeMetrics[0].metrics[0]."), "{err}");
        assert!(err.contains("oneof"), "{err}");
    }

    #[test]
    fn wrong_types_are_rejected_with_their_path() {
        let json = br#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "g", "gauge": {"dataPoints": [{"asInt": 1.5}]}}]}]}]}"#;
        let err = decode_metrics(json).unwrap_err().to_string();
        assert!(err.starts_with("resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].asInt: "), "{err}");
    }

    #[test]
    fn empty_object_is_an_empty_request() {
        assert_eq!(decode_metrics(b"{}").unwrap(), ExportMetricsServiceRequest::default());
    }
}
