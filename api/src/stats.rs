//! `GET /api/v1/stats`: request statistics per service and operation.

use serde::{Deserialize, Serialize};

/// The answer: per (service, operation, span kind) in `data`, per service in
/// `services`, both sorted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// One entry per (service, operation, span kind).
    pub data: Vec<OperationStats>,
    /// One entry per service, totals over its operations (no `operation`, no `spanKind`).
    pub services: Vec<OperationStats>,
}

/// Request counts and latency percentiles of one operation or service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationStats {
    /// The service.
    pub service: String,
    /// The span name; absent in the per-service totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The lowercase OTel span kind (`server`, `consumer`, ...); absent in the
    /// per-service totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_kind: Option<String>,
    /// Spans counted.
    pub request_count: u64,
    /// Spans with status ERROR.
    pub error_count: u64,
    /// `error_count / request_count` (0 without requests).
    pub error_rate: f64,
    /// Median latency in ms (accurate to 1%); `null` without requests.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency in ms; `null` without requests.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency in ms; `null` without requests.
    pub p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_leave_operation_and_kind_out() {
        let total = OperationStats {
            service: "cart".into(),
            operation: None,
            span_kind: None,
            request_count: 4,
            error_count: 1,
            error_rate: 0.25,
            p50_ms: Some(1.5),
            p95_ms: None,
            p99_ms: None,
        };
        let text = serde_json::to_string(&total).unwrap();
        assert_eq!(
            text,
            r#"{"service":"cart","requestCount":4,"errorCount":1,"errorRate":0.25,"p50Ms":1.5,"p95Ms":null,"p99Ms":null}"#
        );
        assert_eq!(serde_json::from_str::<OperationStats>(&text).unwrap(), total);
    }
}
