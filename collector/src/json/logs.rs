//! OTLP/JSON for logs: `ExportLogsServiceRequest` and everything under it.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use serde_json::Value;

use super::common::{any_value, key_values, resource, scope};
use super::{
    decode_document, enumeration, for_each_field, repeated, span_id, string, trace_id, uint32, uint64, JsonError,
};

/// Decodes an OTLP/JSON logs export request.
///
/// # Errors
/// A [`JsonError`] naming the first field that is not valid OTLP/JSON.
pub(crate) fn decode_logs(bytes: &[u8]) -> Result<ExportLogsServiceRequest, JsonError> {
    decode_document(bytes, |root| {
        let mut out = ExportLogsServiceRequest::default();
        for_each_field(root, |key, field| {
            if key == "resourceLogs" {
                out.resource_logs = repeated(field, resource_logs)?;
            }
            Ok(())
        })?;
        Ok(out)
    })
}

fn resource_logs(value: &Value) -> Result<ResourceLogs, JsonError> {
    let mut out = ResourceLogs::default();
    for_each_field(value, |key, field| {
        match key {
            "resource" => out.resource = Some(resource(field)?),
            "scopeLogs" => out.scope_logs = repeated(field, scope_logs)?,
            "schemaUrl" => out.schema_url = string(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn scope_logs(value: &Value) -> Result<ScopeLogs, JsonError> {
    let mut out = ScopeLogs::default();
    for_each_field(value, |key, field| {
        match key {
            "scope" => out.scope = Some(scope(field)?),
            "logRecords" => out.log_records = repeated(field, log_record)?,
            "schemaUrl" => out.schema_url = string(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn log_record(value: &Value) -> Result<LogRecord, JsonError> {
    let mut out = LogRecord::default();
    for_each_field(value, |key, field| {
        match key {
            "timeUnixNano" => out.time_unix_nano = uint64(field)?,
            "observedTimeUnixNano" => out.observed_time_unix_nano = uint64(field)?,
            "severityNumber" => {
                out.severity_number = enumeration(field, |n| SeverityNumber::from_str_name(n).map(|s| s as i32))?
            }
            "severityText" => out.severity_text = string(field)?,
            "body" => out.body = Some(any_value(field)?),
            "attributes" => out.attributes = key_values(field)?,
            "droppedAttributesCount" => out.dropped_attributes_count = uint32(field)?,
            "flags" => out.flags = uint32(field)?,
            "traceId" => out.trace_id = trace_id(field)?,
            "spanId" => out.span_id = span_id(field)?,
            "eventName" => out.event_name = string(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;

    #[test]
    fn example_decodes() {
        let req = decode_logs(include_bytes!("../../testdata/otlp-json/logs.json")).unwrap();
        let record = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_544_712_660_300_000_000);
        assert_eq!(record.severity_number, SeverityNumber::Info2 as i32);
        assert_eq!(hex::encode(&record.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex::encode(&record.span_id), "eee19b7ec3c1b174");
        let body = record.body.as_ref().unwrap().value.as_ref().unwrap();
        assert_eq!(body, &AnyValueKind::StringValue("order accepted".into()));
        let int_attr = record.attributes.iter().find(|kv| kv.key == "int.attribute").unwrap();
        assert_eq!(int_attr.value.as_ref().unwrap().value, Some(AnyValueKind::IntValue(10)));
    }

    #[test]
    fn empty_ids_mean_no_trace_context() {
        let json = br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "", "spanId": "",
            "body": {"kvlistValue": {}}, "severityNumber": "SEVERITY_NUMBER_ERROR"}]}]}]}"#;
        let record = &decode_logs(json).unwrap().resource_logs[0].scope_logs[0].log_records[0];
        assert!(record.trace_id.is_empty() && record.span_id.is_empty());
        assert_eq!(record.severity_number, SeverityNumber::Error as i32);
    }

    #[test]
    fn empty_object_is_an_empty_request() {
        assert_eq!(decode_logs(b"{}").unwrap(), ExportLogsServiceRequest::default());
    }

    #[test]
    fn bad_body_type_is_named() {
        let json = br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": "plain"}]}]}]}"#;
        let err = decode_logs(json).unwrap_err().to_string();
        assert_eq!(err, "resourceLogs[0].scopeLogs[0].logRecords[0].body: expected an object, found a string");
    }
}
