//! OTLP/JSON decoding: a schema-aware walk from a `serde_json::Value` into the prost types.
//!
//! Why not the `with-serde` derives of `opentelemetry-proto`? They get the headline rules
//! right (hex ids, 64-bit integers as strings or numbers, unknown fields ignored), but miss
//! parts of the proto3 JSON mapping that real exporters rely on; `serde_audit.rs` pins each
//! gap with a test. Worst: metric oneofs are `#[serde(flatten)] Option`s, and serde turns a
//! failing flattened `Option` into `None`, so a malformed metric (`"dataPoints": "x"`,
//! `"asDouble": "NaN"`) is silently stored without its data instead of being rejected.
//! Also: `{"arrayValue":{}}` and `{"kvlistValue":{}}` (what Go's pdata sends for empty
//! values) are rejected, as are `null` fields, enum names and 32-bit integers as strings;
//! id lengths are not checked; errors name a line and column, not the field. Walking a `Value`
//! fixes all of that in one place and lets every error name its path
//! (`resourceSpans[0].scopeSpans[0].spans[3].traceId: ...`).
//!
//! The rules implemented here (OTLP spec, "JSON Protobuf Encoding", plus proto3 JSON):
//! - keys are lowerCamelCase; unknown keys are ignored; `null` means "default";
//! - `traceId` / `spanId` / `parentSpanId` are hex, case-insensitive; empty means absent;
//!   any other length than 16 / 8 bytes is rejected here so the error names the field;
//! - 64-bit integers are decimal strings or JSON numbers, both exact (serde_json keeps
//!   integers as `u64`/`i64`, never as `f64`); 32-bit integers may be strings too;
//! - enums are integers (the spec's rule); enum names are accepted as well, as every
//!   proto3 JSON parser does;
//! - doubles are numbers or the strings `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! - `bytesValue` is base64, standard or URL-safe alphabet, padding optional.
//!
//! The cost of the `Value` tree is memory: a JSON body is held twice (tree + prost
//! types) while it is converted. Bodies are capped at `max_body_bytes`, and protobuf,
//! the common encoding, never takes this path.

mod common;
mod logs;
mod metrics;
#[cfg(test)]
mod serde_audit;
mod trace;

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::Value;

pub(crate) use logs::decode_logs;
pub(crate) use metrics::decode_metrics;
pub(crate) use trace::decode_traces;

/// A JSON document that is not valid OTLP/JSON, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    /// Path segments innermost first (they are pushed while the error propagates out).
    path: Vec<PathSegment>,
    message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathSegment {
    Field(String),
    Index(usize),
}

impl JsonError {
    fn new(message: impl Into<String>) -> Self {
        JsonError { path: Vec::new(), message: message.into() }
    }

    fn in_field(mut self, key: &str) -> Self {
        self.path.push(PathSegment::Field(key.to_owned()));
        self
    }

    fn at_index(mut self, index: usize) -> Self {
        self.path.push(PathSegment::Index(index));
        self
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for segment in self.path.iter().rev() {
            match segment {
                PathSegment::Field(key) if first => write!(f, "{key}")?,
                PathSegment::Field(key) => write!(f, ".{key}")?,
                PathSegment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, ": {}", self.message)
        }
    }
}

impl std::error::Error for JsonError {}

type Result<T, E = JsonError> = std::result::Result<T, E>;

/// Parses `bytes` as JSON and hands the root value to `decode`.
fn decode_document<T>(bytes: &[u8], decode: impl FnOnce(&Value) -> Result<T>) -> Result<T> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| JsonError::new(format!("invalid JSON: {e}")))?;
    decode(&root)
}

/// Calls `f` for every non-null field of the object `value`, tagging errors with the key.
/// Unknown keys are the callee's to ignore (the OTLP spec says receivers MUST).
fn for_each_field(value: &Value, mut f: impl FnMut(&str, &Value) -> Result<()>) -> Result<()> {
    let Value::Object(map) = value else {
        return Err(type_error("an object", value));
    };
    for (key, field) in map {
        if field.is_null() {
            continue;
        }
        f(key, field).map_err(|e| e.in_field(key))?;
    }
    Ok(())
}

/// Decodes a JSON array element by element; errors carry the element index.
fn repeated<T>(value: &Value, decode: impl Fn(&Value) -> Result<T>) -> Result<Vec<T>> {
    let Value::Array(items) = value else {
        return Err(type_error("an array", value));
    };
    items.iter().enumerate().map(|(i, item)| decode(item).map_err(|e| e.at_index(i))).collect()
}

/// Tracks the fields of a proto `oneof`: proto3 JSON forbids setting two of them.
#[derive(Default)]
struct OneOf {
    seen: bool,
}

impl OneOf {
    fn set(&mut self, key: &str) -> Result<()> {
        if std::mem::replace(&mut self.seen, true) {
            return Err(JsonError::new(format!("`{key}` is set together with another field it excludes (a oneof)")));
        }
        Ok(())
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_error(expected: &str, found: &Value) -> JsonError {
    JsonError::new(format!("expected {expected}, found {}", type_name(found)))
}

fn string(value: &Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(type_error("a string", other)),
    }
}

fn strings(value: &Value) -> Result<Vec<String>> {
    repeated(value, string)
}

fn boolean(value: &Value) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => Err(type_error("a boolean", other)),
    }
}

/// An integer given as a JSON number or a decimal string, exactly.
///
/// serde_json keeps every integer literal that fits in `u64`/`i64` as an integer, so a
/// number such as `9007199254740993` (2^53 + 1) arrives here unrounded. A literal with a
/// fraction or exponent (`1e3`) is accepted when it denotes an integer, as proto3 allows.
fn integer<T>(value: &Value, type_label: &str) -> Result<T>
where
    T: TryFrom<i64> + TryFrom<u64> + std::str::FromStr,
{
    let out_of_range = || JsonError::new(format!("{value} is out of range for {type_label}"));
    let not_integer = || JsonError::new(format!("expected an integer ({type_label}), found {value}"));
    match value {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                T::try_from(u).map_err(|_| out_of_range())
            } else if let Some(i) = n.as_i64() {
                T::try_from(i).map_err(|_| out_of_range())
            } else {
                integral_float(n.as_f64().unwrap_or(f64::NAN)).ok_or_else(not_integer)?.convert(out_of_range)
            }
        }
        Value::String(s) => match s.parse::<T>() {
            Ok(v) => Ok(v),
            Err(_) => {
                // "1e3" or "-12.0": still an integer in proto3 JSON. Anything else is not.
                let float = s.parse::<f64>().map_err(|_| not_integer())?;
                integral_float(float).ok_or_else(not_integer)?.convert(out_of_range)
            }
        },
        other => Err(type_error(&format!("an integer ({type_label})"), other)),
    }
}

/// The integer a float literal denotes, if it denotes one.
enum Integral {
    Unsigned(u64),
    Signed(i64),
}

impl Integral {
    fn convert<T: TryFrom<i64> + TryFrom<u64>>(self, err: impl Fn() -> JsonError) -> Result<T> {
        match self {
            Integral::Unsigned(u) => T::try_from(u).map_err(|_| err()),
            Integral::Signed(i) => T::try_from(i).map_err(|_| err()),
        }
    }
}

fn integral_float(f: f64) -> Option<Integral> {
    // Exact as f64: [0, 2^64) fits u64, [-2^63, 0) fits i64.
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if !f.is_finite() || f.fract() != 0.0 {
        None
    } else if (0.0..TWO_POW_64).contains(&f) {
        Some(Integral::Unsigned(f as u64))
    } else if (-TWO_POW_63..0.0).contains(&f) {
        Some(Integral::Signed(f as i64))
    } else {
        None
    }
}

fn uint64(value: &Value) -> Result<u64> {
    integer(value, "uint64")
}

fn int64(value: &Value) -> Result<i64> {
    integer(value, "int64")
}

fn uint32(value: &Value) -> Result<u32> {
    integer(value, "uint32")
}

fn int32(value: &Value) -> Result<i32> {
    integer(value, "int32")
}

fn uint64s(value: &Value) -> Result<Vec<u64>> {
    repeated(value, uint64)
}

/// A double: a JSON number, or one of the proto3 strings for the special values.
fn double(value: &Value) -> Result<f64> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| type_error("a double", value)),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse::<f64>().map_err(|_| JsonError::new(format!("expected a double, found \"{other}\""))),
        },
        other => Err(type_error("a double", other)),
    }
}

fn doubles(value: &Value) -> Result<Vec<f64>> {
    repeated(value, double)
}

/// An enum: its integer value (the OTLP rule), or its proto name (proto3 JSON leniency).
/// Unknown integers are kept, as proto3 enums are open.
fn enumeration(value: &Value, from_name: impl Fn(&str) -> Option<i32>) -> Result<i32> {
    match value {
        Value::String(name) => match from_name(name) {
            Some(v) => Ok(v),
            None => int32(value).map_err(|_| JsonError::new(format!("unknown enum value \"{name}\""))),
        },
        other => int32(other),
    }
}

/// A trace or span id: hex (either case), `expected_len` bytes, or empty for "absent".
fn id(value: &Value, expected_len: usize) -> Result<Vec<u8>> {
    let text = match value {
        Value::String(s) => s,
        other => return Err(type_error("a hex string", other)),
    };
    let bytes = hex::decode(text).map_err(|e| JsonError::new(format!("invalid hex id \"{text}\": {e}")))?;
    if !bytes.is_empty() && bytes.len() != expected_len {
        return Err(JsonError::new(format!(
            "id \"{text}\" has {} hex digits, expected {} (or empty)",
            text.len(),
            expected_len * 2
        )));
    }
    Ok(bytes)
}

fn trace_id(value: &Value) -> Result<Vec<u8>> {
    id(value, 16)
}

fn span_id(value: &Value) -> Result<Vec<u8>> {
    id(value, 8)
}

/// Base64 as proto3 JSON allows it: standard or URL-safe alphabet, with or without padding.
fn base64_bytes(value: &Value) -> Result<Vec<u8>> {
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    let text = string(value)?;
    STANDARD
        .decode(&text)
        .or_else(|_| URL_SAFE.decode(&text))
        .map_err(|e| JsonError::new(format!("invalid base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_are_exact_as_numbers_and_strings() {
        let big = 9_007_199_254_740_993_i64; // 2^53 + 1: not representable as f64
        assert_eq!(int64(&json!(9_007_199_254_740_993_i64)).unwrap(), big);
        assert_eq!(int64(&json!("9007199254740993")).unwrap(), big);
        assert_eq!(int64(&json!("-9223372036854775808")).unwrap(), i64::MIN);
        assert_eq!(uint64(&json!("18446744073709551615")).unwrap(), u64::MAX);
        assert_eq!(uint64(&serde_json::from_str::<Value>("18446744073709551615").unwrap()).unwrap(), u64::MAX);
        assert_eq!(uint32(&json!("7")).unwrap(), 7);
        assert_eq!(uint64(&json!(1e3)).unwrap(), 1000);
        assert_eq!(uint64(&json!("1e3")).unwrap(), 1000);
    }

    #[test]
    fn integers_reject_fractions_range_and_other_types() {
        assert!(uint64(&json!(1.5)).is_err());
        assert!(uint64(&json!(-1)).is_err());
        assert!(uint64(&json!("-1")).is_err());
        assert!(uint32(&json!(4_294_967_296_u64)).is_err());
        assert!(int64(&json!("12abc")).is_err());
        assert!(int64(&json!(true)).is_err());
        assert!(uint64(&serde_json::from_str::<Value>("18446744073709551616").unwrap()).is_err());
    }

    #[test]
    fn doubles_accept_special_strings() {
        assert!(double(&json!("NaN")).unwrap().is_nan());
        assert_eq!(double(&json!("Infinity")).unwrap(), f64::INFINITY);
        assert_eq!(double(&json!("-Infinity")).unwrap(), f64::NEG_INFINITY);
        assert_eq!(double(&json!(3)).unwrap(), 3.0);
        assert_eq!(double(&json!("2.5")).unwrap(), 2.5);
        assert!(double(&json!("fast")).is_err());
    }

    #[test]
    fn ids_are_hex_either_case_with_checked_length() {
        let upper = trace_id(&json!("5B8EFFF798038103D269B633813FC60C")).unwrap();
        let lower = trace_id(&json!("5b8efff798038103d269b633813fc60c")).unwrap();
        assert_eq!(upper, lower);
        assert_eq!(upper.len(), 16);
        assert_eq!(span_id(&json!("")).unwrap(), Vec::<u8>::new());
        let err = trace_id(&json!("5b8efff79z038103d269b633813fc60c")).unwrap_err();
        assert!(err.to_string().contains("invalid hex"), "{err}");
        let err = trace_id(&json!("0102030405")).unwrap_err();
        assert!(err.to_string().contains("expected 32"), "{err}");
        assert!(span_id(&json!("AAECAwQFBgc=")).is_err(), "base64 ids are not OTLP/JSON");
    }

    #[test]
    fn enums_take_integers_and_names() {
        let by_name = |n: &str| (n == "SPAN_KIND_SERVER").then_some(2);
        assert_eq!(enumeration(&json!(2), by_name).unwrap(), 2);
        assert_eq!(enumeration(&json!("SPAN_KIND_SERVER"), by_name).unwrap(), 2);
        assert_eq!(enumeration(&json!(42), by_name).unwrap(), 42);
        assert!(enumeration(&json!("SERVER"), by_name).is_err());
    }

    #[test]
    fn base64_accepts_both_alphabets_and_missing_padding() {
        assert_eq!(base64_bytes(&json!("+/8=")).unwrap(), vec![0xfb, 0xff]);
        assert_eq!(base64_bytes(&json!("-_8")).unwrap(), vec![0xfb, 0xff]);
        assert!(base64_bytes(&json!("not base64!")).is_err());
    }

    #[test]
    fn oneof_rejects_a_second_field() {
        let mut oneof = OneOf::default();
        oneof.set("asInt").unwrap();
        assert!(oneof.set("asDouble").unwrap_err().message.contains("asDouble"));
    }

    #[test]
    fn error_path_reads_outside_in() {
        let err = JsonError::new("bad")
            .in_field("traceId")
            .at_index(3)
            .in_field("spans")
            .at_index(0)
            .in_field("resourceSpans");
        assert_eq!(err.to_string(), "resourceSpans[0].spans[3].traceId: bad");
        assert_eq!(JsonError::new("bad").to_string(), "bad");
    }
}
