//! Metric load (`seismo loadgen-metrics`): a cumulative counter's series over
//! OTLP/gRPC, one point per series every 15 s, then timed PromQL range
//! queries through `/api/v1/query_range`.

use std::time::{Duration, Instant, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use seismo_client::api::prometheus::QueryResult;
use serde::Serialize;

use crate::logs::ROUTES;
use crate::otlp::{self, kv};
use crate::query;
use crate::stats::p50_p99_ms;
use crate::LoadgenError;

const STEP_NS: u64 = 15_000_000_000;

/// The timed range queries and their steps in seconds.
const RANGE_QUERIES: [(&str, u64); 3] = [
    ("sum by (http_route) (rate(http_server_requests_total[5m]))", 15),
    ("http_server_requests_total", 60),
    ("topk(5, rate(http_server_requests_total[1m]))", 15),
];

/// What to send and what to time.
#[derive(Debug, Clone)]
pub struct MetricLoad {
    /// OTLP/gRPC endpoint, `http://host:port`.
    pub endpoint: String,
    /// Series of the counter (routes x instances).
    pub series: u64,
    /// Hours of history, one point per series every 15 s, ending now.
    pub hours: u64,
    /// Skip sending: only time queries.
    pub queries_only: bool,
    /// The query API; when set, range queries are timed after sending.
    pub query_url: Option<String>,
    /// Repetitions of each timed query.
    pub repeat: usize,
}

/// One step's outcome, in the order the run reaches them.
#[derive(Debug, Clone)]
pub enum MetricReport {
    /// Every point is acknowledged.
    Sent(MetricSendReport),
    /// One range query is timed.
    RangeQuery(RangeQueryReport),
}

/// Ingest of the points.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSendReport {
    /// Points acknowledged.
    pub points_acked: u64,
    /// Wall time of the whole send.
    pub seconds: f64,
    /// Series of the counter.
    pub series: u64,
}

/// One range query's latency.
#[derive(Debug, Clone, Serialize)]
pub struct RangeQueryReport {
    /// Hours the query covers.
    pub hours: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// The PromQL expression.
    pub query_range: &'static str,
    /// Series in its answer.
    pub series_out: usize,
    /// Its step, s.
    pub step_s: u64,
}

impl MetricLoad {
    /// Sends and times as the settings say, handing each step's report to
    /// `report` as soon as it is known.
    ///
    /// # Errors
    /// An unreachable endpoint, a failed export, or a range query that fails
    /// or answers something other than a matrix.
    pub async fn run(&self, mut report: impl FnMut(MetricReport)) -> Result<(), LoadgenError> {
        let steps = self.hours * 3600 / 15;
        let t_end = otlp::now_ns() / STEP_NS * STEP_NS;
        if !self.queries_only {
            let mut client = MetricsServiceClient::new(otlp::connect(&self.endpoint).await?)
                .max_encoding_message_size(otlp::MAX_MESSAGE_BYTES);
            let started = Instant::now();
            for step in 1..=steps {
                let t = t_end - (steps - step) * STEP_NS;
                client.export(metrics_request(self.series, t, step)).await?;
            }
            report(MetricReport::Sent(MetricSendReport {
                points_acked: steps * self.series,
                seconds: started.elapsed().as_secs_f64(),
                series: self.series,
            }));
        }
        if let Some(url) = &self.query_url {
            let end = UNIX_EPOCH + Duration::from_nanos(t_end);
            let start = end - Duration::from_secs(self.hours * 3600);
            let client = query::client(url)?;
            for (query, step) in RANGE_QUERIES {
                let mut times = Vec::with_capacity(self.repeat);
                let mut series = 0;
                for _ in 0..self.repeat {
                    let t = Instant::now();
                    let result = client
                        .query_range(query, start, end, Duration::from_secs(step))
                        .await
                        .map_err(LoadgenError::client(format!("range query {query}")))?;
                    times.push(t.elapsed());
                    series = match result {
                        QueryResult::Matrix(series) => series.len(),
                        other => {
                            return Err(LoadgenError::Unexpected(format!(
                                "range query {query} answered {other:?}, not a matrix"
                            )))
                        }
                    };
                }
                let (p50_ms, p99_ms) = p50_p99_ms(times);
                report(MetricReport::RangeQuery(RangeQueryReport {
                    hours: self.hours,
                    p50_ms,
                    p99_ms,
                    query_range: query,
                    series_out: series,
                    step_s: step,
                }));
            }
        }
        Ok(())
    }
}

/// Every series' point at `t`: cumulative counts growing by a per-series rate.
fn metrics_request(series: u64, t: u64, step: u64) -> ExportMetricsServiceRequest {
    let per_instance = series.div_ceil(ROUTES.len() as u64);
    let data_points = (0..series)
        .map(|i| NumberDataPoint {
            attributes: vec![
                kv("http.route", ROUTES[(i % ROUTES.len() as u64) as usize]),
                kv("instance.slot", format!("slot-{}", i / ROUTES.len() as u64 % per_instance)),
            ],
            start_time_unix_nano: t - step * STEP_NS,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsInt((step * (1 + i % 7)) as i64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv("service.name", "frontend")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.requests".into(),
                    data: Some(metric::Data::Sum(Sum { data_points, aggregation_temporality: 2, is_monotonic: true })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_gets_one_distinct_point_per_step() {
        let req = metrics_request(25, 100 * STEP_NS, 4);
        let Some(metric::Data::Sum(sum)) = &req.resource_metrics[0].scope_metrics[0].metrics[0].data else {
            panic!("a sum")
        };
        assert_eq!(sum.data_points.len(), 25);
        assert!(sum.is_monotonic);
        let mut label_sets: Vec<String> = sum.data_points.iter().map(|p| format!("{:?}", p.attributes)).collect();
        label_sets.sort();
        label_sets.dedup();
        assert_eq!(label_sets.len(), 25, "no two points share a series");
        assert!(sum.data_points.iter().all(|p| p.start_time_unix_nano == 96 * STEP_NS));
    }
}
