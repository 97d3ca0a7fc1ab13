//! `GET /api/v1/logs`: seismo's full-text log search answer.

use serde::{Deserialize, Serialize};

/// The answer: `{"data": [record, ...]}`, newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogsResponse {
    /// The matching records.
    pub data: Vec<LogRecord>,
}

/// One log record as the API answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    /// ns since the Unix epoch, as a decimal string: ns timestamps exceed what
    /// a JSON number keeps exactly in JavaScript (OTLP/JSON writes them the
    /// same way).
    pub time_unix_nano: String,
    /// The producer's severity text (`ERROR`); may be empty.
    pub severity_text: String,
    /// OTLP severity number (1-24; 0 unspecified).
    pub severity_number: i32,
    /// The body as plain JSON (a string for most records; maps and arrays as JSON).
    pub body: serde_json::Value,
    /// `service.name` of the record's resource.
    pub service_name: String,
    /// The trace the record belongs to (32 hex digits; opens with
    /// `/api/traces/{traceId}`), `null` when none.
    pub trace_id: Option<String>,
    /// The span the record belongs to (16 hex digits), `null` when none.
    pub span_id: Option<String>,
    /// Record attributes as plain JSON values.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl LogRecord {
    /// [`LogRecord::time_unix_nano`] as a number; `None` if the server sent something else.
    pub fn time_ns(&self) -> Option<i64> {
        self.time_unix_nano.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_with_null_ids() {
        let text = concat!(
            r#"{"timeUnixNano":"1700000000000000000","severityText":"ERROR","severityNumber":17,"#,
            r#""body":"card declined","serviceName":"payments","traceId":null,"spanId":null,"#,
            r#""attributes":{"order.id":9}}"#
        );
        let record: LogRecord = serde_json::from_str(text).unwrap();
        assert_eq!(record.time_ns(), Some(1_700_000_000_000_000_000));
        assert_eq!(serde_json::to_string(&record).unwrap(), text);
    }
}
