//! OTLP/JSON messages shared by every signal: values, attributes, scope, resource.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;

use super::{base64_bytes, boolean, double, for_each_field, int64, repeated, string, strings, uint32, OneOf, Result};

/// `AnyValue`: exactly one of the typed fields, or none (an empty value is valid).
pub(super) fn any_value(value: &Value) -> Result<AnyValue> {
    let mut oneof = OneOf::default();
    let mut out = None;
    for_each_field(value, |key, field| {
        let decoded = match key {
            "stringValue" => any_value::Value::StringValue(string(field)?),
            "boolValue" => any_value::Value::BoolValue(boolean(field)?),
            "intValue" => any_value::Value::IntValue(int64(field)?),
            "doubleValue" => any_value::Value::DoubleValue(double(field)?),
            "arrayValue" => any_value::Value::ArrayValue(array_value(field)?),
            "kvlistValue" => any_value::Value::KvlistValue(kvlist_value(field)?),
            "bytesValue" => any_value::Value::BytesValue(base64_bytes(field)?),
            _ => return Ok(()),
        };
        oneof.set(key)?;
        out = Some(decoded);
        Ok(())
    })?;
    Ok(AnyValue { value: out })
}

fn array_value(value: &Value) -> Result<ArrayValue> {
    let mut out = ArrayValue::default();
    for_each_field(value, |key, field| {
        if key == "values" {
            out.values = repeated(field, any_value)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn kvlist_value(value: &Value) -> Result<KeyValueList> {
    let mut out = KeyValueList::default();
    for_each_field(value, |key, field| {
        if key == "values" {
            out.values = key_values(field)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn key_value(value: &Value) -> Result<KeyValue> {
    let mut out = KeyValue::default();
    for_each_field(value, |key, field| {
        match key {
            "key" => out.key = string(field)?,
            "value" => out.value = Some(any_value(field)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

/// A list of attributes (`attributes`, `metadata`, `filteredAttributes`, kvlist values).
pub(super) fn key_values(value: &Value) -> Result<Vec<KeyValue>> {
    repeated(value, key_value)
}

pub(super) fn scope(value: &Value) -> Result<InstrumentationScope> {
    let mut out = InstrumentationScope::default();
    for_each_field(value, |key, field| {
        match key {
            "name" => out.name = string(field)?,
            "version" => out.version = string(field)?,
            "attributes" => out.attributes = key_values(field)?,
            "droppedAttributesCount" => out.dropped_attributes_count = uint32(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

pub(super) fn resource(value: &Value) -> Result<Resource> {
    let mut out = Resource::default();
    for_each_field(value, |key, field| {
        match key {
            "attributes" => out.attributes = key_values(field)?,
            "droppedAttributesCount" => out.dropped_attributes_count = uint32(field)?,
            "entityRefs" => out.entity_refs = repeated(field, entity_ref)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn entity_ref(value: &Value) -> Result<EntityRef> {
    let mut out = EntityRef::default();
    for_each_field(value, |key, field| {
        match key {
            "schemaUrl" => out.schema_url = string(field)?,
            "type" => out.r#type = string(field)?,
            "idKeys" => out.id_keys = strings(field)?,
            "descriptionKeys" => out.description_keys = strings(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value_of(json: Value) -> Option<any_value::Value> {
        any_value(&json).unwrap().value
    }

    #[test]
    fn every_any_value_kind_decodes() {
        use any_value::Value as V;
        assert_eq!(value_of(json!({"stringValue": "a"})), Some(V::StringValue("a".into())));
        assert_eq!(value_of(json!({"boolValue": true})), Some(V::BoolValue(true)));
        assert_eq!(value_of(json!({"intValue": "9007199254740993"})), Some(V::IntValue(9_007_199_254_740_993)));
        assert_eq!(value_of(json!({"intValue": 9_007_199_254_740_993_i64})), Some(V::IntValue(9_007_199_254_740_993)));
        assert_eq!(value_of(json!({"doubleValue": 1.5})), Some(V::DoubleValue(1.5)));
        assert_eq!(value_of(json!({"bytesValue": "AQID"})), Some(V::BytesValue(vec![1, 2, 3])));
        assert_eq!(value_of(json!({})), None);
        assert_eq!(value_of(json!({"someFutureValue": 1})), None);
    }

    #[test]
    fn empty_array_and_kvlist_decode_as_what_go_pdata_sends() {
        use any_value::Value as V;
        assert_eq!(value_of(json!({"arrayValue": {}})), Some(V::ArrayValue(ArrayValue::default())));
        assert_eq!(value_of(json!({"kvlistValue": {}})), Some(V::KvlistValue(KeyValueList::default())));
        let nested = json!({"kvlistValue": {"values": [
            {"key": "k", "value": {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "x"}]}}}
        ]}});
        let Some(V::KvlistValue(list)) = value_of(nested) else { panic!("not a kvlist") };
        let Some(V::ArrayValue(array)) = list.values[0].value.clone().unwrap().value else { panic!("not an array") };
        assert_eq!(array.values.len(), 2);
    }

    #[test]
    fn two_values_in_one_any_value_are_rejected() {
        let err = any_value(&json!({"stringValue": "a", "intValue": 1})).unwrap_err();
        assert!(err.to_string().contains("oneof"), "{err}");
    }

    #[test]
    fn nulls_mean_default() {
        let kv = key_value(&json!({"key": "k", "value": null})).unwrap();
        assert_eq!(kv, KeyValue { key: "k".into(), value: None, key_strindex: 0 });
        let res = resource(&json!({"attributes": null, "droppedAttributesCount": null})).unwrap();
        assert_eq!(res, Resource::default());
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = resource(&json!({"attributes": [{"key": "k", "value": {"boolValue": "yes"}}]})).unwrap_err();
        assert_eq!(err.to_string(), "attributes[0].value.boolValue: expected a boolean, found a string");
    }
}
