//! Proxies and toxics as the Toxiproxy 2.x API speaks them: JSON shapes,
//! defaults, attribute names and the errors it answers with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

/// Toxiproxy's error body: `{"error": "...", "status": 400}`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(rename = "error")]
    pub message: String,
    pub status: u16,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { message: message.into(), status: status.as_u16() }
    }
    pub fn bad_body(detail: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, format!("bad request body: {detail}"))
    }
    pub fn missing_field(field: &str) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, format!("missing required field: {field}"))
    }
    pub fn proxy_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "proxy not found")
    }
    pub fn proxy_exists() -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "proxy already exists")
    }
    pub fn toxic_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "toxic not found")
    }
    pub fn toxic_exists() -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "toxic already exists")
    }
    pub fn invalid_stream() -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "stream was invalid, can be either upstream or downstream")
    }
}

/// Direction of a toxic: `upstream` is client to server, `downstream` server to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Upstream,
    Downstream,
}

impl Stream {
    pub fn parse(s: &str) -> Option<Stream> {
        match s.to_ascii_lowercase().as_str() {
            "upstream" => Some(Stream::Upstream),
            "downstream" => Some(Stream::Downstream),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// Which requests an HTTP toxic touches. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpMatch {
    pub method: String,
    pub path_prefix: String,
    /// `Name` (present) or `Name: value` (equal, value compared exactly).
    pub header: String,
}

impl HttpMatch {
    pub fn matches(&self, method: &str, path: &str, headers: &axum::http::HeaderMap) -> bool {
        if !self.method.is_empty() && !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        if !path.starts_with(&self.path_prefix) {
            return false;
        }
        if self.header.is_empty() {
            return true;
        }
        match self.header.split_once(':') {
            None => headers.contains_key(self.header.trim()),
            Some((name, want)) => {
                let want = want.trim();
                headers.get_all(name.trim()).iter().any(|v| v.to_str().is_ok_and(|v| v.trim() == want))
            }
        }
    }
}

/// A toxic's type with its attributes. Numbers are Toxiproxy's units:
/// milliseconds, KB/s, bytes, and microseconds for the slicer's delay.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Latency {
        latency: i64,
        jitter: i64,
    },
    Bandwidth {
        rate: i64,
    },
    SlowClose {
        delay: i64,
    },
    Timeout {
        timeout: i64,
    },
    ResetPeer {
        timeout: i64,
    },
    Slicer {
        average_size: i64,
        size_variation: i64,
        delay: i64,
    },
    LimitData {
        bytes: i64,
    },
    /// `grpc_status` set: gRPC requests get that status (HTTP 200, trailers only).
    HttpAbort {
        status: u16,
        grpc_status: Option<u8>,
        matcher: HttpMatch,
    },
    HttpDelay {
        delay: i64,
        matcher: HttpMatch,
    },
    /// Not a toxic: a process fault (`kill`, `pause`, `resume`), for its span.
    Process {
        action: &'static str,
        signal: i32,
    },
}

/// The longest delay or timeout a toxic may ask for.
pub const MAX_DURATION_MS: i64 = 7 * 24 * 3600 * 1000;
/// The highest bandwidth a toxic may allow (1 TB/s: no limit in practice).
pub const MAX_RATE_KBPS: i64 = 1_000_000_000;
/// The longest proxy or toxic name: names go into URLs, logs and span attributes.
pub const MAX_NAME_BYTES: usize = 256;

pub const TOXIC_TYPES: &[&str] = &[
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "http_abort",
    "http_delay",
];

impl Kind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Latency { .. } => "latency",
            Kind::Bandwidth { .. } => "bandwidth",
            Kind::SlowClose { .. } => "slow_close",
            Kind::Timeout { .. } => "timeout",
            Kind::ResetPeer { .. } => "reset_peer",
            Kind::Slicer { .. } => "slicer",
            Kind::LimitData { .. } => "limit_data",
            Kind::HttpAbort { .. } => "http_abort",
            Kind::HttpDelay { .. } => "http_delay",
            Kind::Process { action, .. } => action,
        }
    }

    pub fn is_http(&self) -> bool {
        matches!(self, Kind::HttpAbort { .. } | Kind::HttpDelay { .. })
    }

    /// Whether a connection or request hit by this toxic fails (span status ERROR).
    pub fn is_abort(&self) -> bool {
        matches!(self, Kind::HttpAbort { .. } | Kind::ResetPeer { .. } | Kind::Timeout { .. } | Kind::LimitData { .. })
            || matches!(self, Kind::Process { action: "kill", .. })
    }

    /// Parses `attributes` for `type_name`, starting from `base` (an update keeps
    /// what the body leaves out). Unknown attributes are ignored, as Toxiproxy does.
    pub fn parse(type_name: &str, attrs: &Map<String, Value>, base: Option<&Kind>) -> Result<Kind, ApiError> {
        let fresh;
        let base = match base {
            Some(b) => b,
            None => {
                fresh = Kind::default_for(type_name)
                    .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid toxic type"))?;
                &fresh
            }
        };
        let int = |name: &str, current: i64| -> Result<i64, ApiError> {
            match attrs.get(name) {
                None | Some(Value::Null) => Ok(current),
                Some(v) => int_value(v).ok_or_else(|| {
                    ApiError::bad_body(format!("attribute {name} must be a non-negative integer, got {v}"))
                }),
            }
        };
        // Bounds keep the proxy's schedule arithmetic far from overflow: a latency of
        // i64::MAX ms once wrapped around into no delay at all.
        let bounded = |name: &str, current: i64, max: i64, unit: &str| -> Result<i64, ApiError> {
            let v = int(name, current)?;
            if v > max {
                return Err(ApiError::bad_body(format!("attribute {name} must be at most {max} {unit}, got {v}")));
            }
            Ok(v)
        };
        let millis = |name: &str, current: i64| bounded(name, current, MAX_DURATION_MS, "ms (7 days)");
        let text = |name: &str, current: &str| -> Result<String, ApiError> {
            match attrs.get(name) {
                None | Some(Value::Null) => Ok(current.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => Err(ApiError::bad_body(format!("attribute {name} must be a string, got {v}"))),
            }
        };
        let matcher = |m: &HttpMatch| -> Result<HttpMatch, ApiError> {
            Ok(HttpMatch {
                method: text("method", &m.method)?,
                path_prefix: text("path_prefix", &m.path_prefix)?,
                header: text("header", &m.header)?,
            })
        };
        Ok(match base {
            Kind::Latency { latency, jitter } => {
                Kind::Latency { latency: millis("latency", *latency)?, jitter: millis("jitter", *jitter)? }
            }
            Kind::Bandwidth { rate } => Kind::Bandwidth { rate: bounded("rate", *rate, MAX_RATE_KBPS, "KB/s")? },
            Kind::SlowClose { delay } => Kind::SlowClose { delay: millis("delay", *delay)? },
            Kind::Timeout { timeout } => Kind::Timeout { timeout: millis("timeout", *timeout)? },
            Kind::ResetPeer { timeout } => Kind::ResetPeer { timeout: millis("timeout", *timeout)? },
            Kind::Slicer { average_size, size_variation, delay } => Kind::Slicer {
                average_size: int("average_size", *average_size)?,
                size_variation: int("size_variation", *size_variation)?,
                delay: bounded("delay", *delay, MAX_DURATION_MS * 1000, "µs (7 days)")?,
            },
            Kind::LimitData { bytes } => Kind::LimitData { bytes: int("bytes", *bytes)? },
            Kind::HttpAbort { status, grpc_status, matcher: m } => {
                let status = int("status", *status as i64)?;
                if !(200..=599).contains(&status) {
                    return Err(ApiError::bad_body(format!(
                        "attribute status must be an HTTP status 200-599, got {status}"
                    )));
                }
                let grpc_status = match attrs.get("grpc_status") {
                    None => *grpc_status,
                    Some(Value::Null) => None,
                    Some(v) => match int_value(v) {
                        Some(code @ 0..=16) => Some(code as u8),
                        _ => {
                            return Err(ApiError::bad_body(format!(
                                "attribute grpc_status must be a gRPC code 0-16, got {v}"
                            )))
                        }
                    },
                };
                Kind::HttpAbort { status: status as u16, grpc_status, matcher: matcher(m)? }
            }
            Kind::HttpDelay { delay, matcher: m } => {
                Kind::HttpDelay { delay: millis("delay", *delay)?, matcher: matcher(m)? }
            }
            Kind::Process { .. } => return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid toxic type")),
        })
    }

    fn default_for(type_name: &str) -> Option<Kind> {
        Some(match type_name {
            "latency" => Kind::Latency { latency: 0, jitter: 0 },
            "bandwidth" => Kind::Bandwidth { rate: 0 },
            "slow_close" => Kind::SlowClose { delay: 0 },
            "timeout" => Kind::Timeout { timeout: 0 },
            "reset_peer" => Kind::ResetPeer { timeout: 0 },
            "slicer" => Kind::Slicer { average_size: 0, size_variation: 0, delay: 0 },
            "limit_data" => Kind::LimitData { bytes: 0 },
            "http_abort" => Kind::HttpAbort { status: 503, grpc_status: None, matcher: HttpMatch::default() },
            "http_delay" => Kind::HttpDelay { delay: 0, matcher: HttpMatch::default() },
            _ => return None,
        })
    }

    /// The attributes object, every field present as Toxiproxy prints them.
    pub fn attributes(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        match self {
            Kind::Latency { latency, jitter } => {
                put("latency", (*latency).into());
                put("jitter", (*jitter).into());
            }
            Kind::Bandwidth { rate } => put("rate", (*rate).into()),
            Kind::SlowClose { delay } => put("delay", (*delay).into()),
            Kind::Timeout { timeout } | Kind::ResetPeer { timeout } => put("timeout", (*timeout).into()),
            Kind::Slicer { average_size, size_variation, delay } => {
                put("average_size", (*average_size).into());
                put("size_variation", (*size_variation).into());
                put("delay", (*delay).into());
            }
            Kind::LimitData { bytes } => put("bytes", (*bytes).into()),
            Kind::HttpAbort { status, grpc_status, matcher } => {
                put("status", (*status).into());
                if let Some(code) = grpc_status {
                    put("grpc_status", (*code).into());
                }
                matcher_attrs(matcher, &mut put);
            }
            Kind::HttpDelay { delay, matcher } => {
                put("delay", (*delay).into());
                matcher_attrs(matcher, &mut put);
            }
            Kind::Process { signal, .. } => put("signal", (*signal).into()),
        }
        Value::Object(m)
    }
}

fn matcher_attrs(m: &HttpMatch, put: &mut impl FnMut(&str, Value)) {
    put("method", m.method.clone().into());
    put("path_prefix", m.path_prefix.clone().into());
    put("header", m.header.clone().into());
}

/// A JSON number that is a whole, non-negative value (toxiproxy-cli sends floats).
fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return (i >= 0).then_some(i);
            }
            let f = n.as_f64()?;
            (f >= 0.0 && f.fract() == 0.0 && f < i64::MAX as f64).then_some(f as i64)
        }
        _ => None,
    }
}

static NEXT_TOXIC_ID: AtomicU64 = AtomicU64::new(1);

/// One toxic on a proxy. `id` changes whenever the toxic changes, so
/// connections roll its toxicity again, as Toxiproxy restarts a toxic's stubs.
#[derive(Debug, Clone)]
pub struct Toxic {
    pub id: u64,
    pub name: String,
    pub kind: Kind,
    pub stream: Stream,
    pub toxicity: f32,
    /// Extension: the experiment this toxic belongs to (falls back to the agent's).
    pub experiment: Option<String>,
}

impl Toxic {
    /// Builds a toxic from a create body, with Toxiproxy's defaults
    /// (stream downstream, toxicity 1, name `<type>_<stream>`).
    pub fn from_create(body: &Value) -> Result<Toxic, ApiError> {
        let obj = body.as_object().ok_or_else(|| ApiError::bad_body("expected a JSON object"))?;
        let stream = match obj.get("stream") {
            None | Some(Value::Null) => Stream::Downstream,
            Some(Value::String(s)) if s.is_empty() => Stream::Downstream,
            Some(Value::String(s)) => Stream::parse(s).ok_or_else(ApiError::invalid_stream)?,
            Some(_) => return Err(ApiError::invalid_stream()),
        };
        let type_name = match obj.get("type") {
            Some(Value::String(s)) => s.as_str(),
            None | Some(Value::Null) => "",
            Some(v) => return Err(ApiError::bad_body(format!("type must be a string, got {v}"))),
        };
        if !TOXIC_TYPES.contains(&type_name) {
            let msg = if type_name.is_empty() {
                "invalid toxic type: missing field type".to_string()
            } else {
                format!("invalid toxic type: {type_name:?} (known: {})", TOXIC_TYPES.join(", "))
            };
            return Err(ApiError::new(StatusCode::BAD_REQUEST, msg));
        }
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => format!("{type_name}_{}", stream.as_str()),
            Some(v) => return Err(ApiError::bad_body(format!("name must be a string, got {v}"))),
        };
        check_name("toxic", &name)?;
        let toxicity = parse_toxicity(obj.get("toxicity"), 1.0)?;
        let attrs = attributes_of(obj)?;
        let kind = Kind::parse(type_name, &attrs, None)?;
        Ok(Toxic { id: fresh_id(), name, kind, stream, toxicity, experiment: experiment_of(obj)? })
    }

    /// Applies an update body: only `attributes` and `toxicity` change, as in Toxiproxy.
    pub fn updated(&self, body: &Value) -> Result<Toxic, ApiError> {
        let obj = body.as_object().ok_or_else(|| ApiError::bad_body("expected a JSON object"))?;
        let attrs = attributes_of(obj)?;
        let kind = Kind::parse(self.kind.type_name(), &attrs, Some(&self.kind))?;
        let toxicity = parse_toxicity(obj.get("toxicity"), self.toxicity)?;
        let experiment = match experiment_of(obj)? {
            Some(e) => Some(e),
            None => self.experiment.clone(),
        };
        Ok(Toxic { id: fresh_id(), name: self.name.clone(), kind, stream: self.stream, toxicity, experiment })
    }

    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "attributes": self.kind.attributes(),
            "name": self.name,
            "type": self.kind.type_name(),
            "stream": self.stream.as_str(),
            "toxicity": self.toxicity,
        });
        if let Some(e) = &self.experiment {
            v["experiment"] = e.clone().into();
        }
        v
    }

    pub fn roll(&self) -> bool {
        self.toxicity > 0.0 && (self.toxicity >= 1.0 || rand::random::<f32>() < self.toxicity)
    }
}

fn fresh_id() -> u64 {
    NEXT_TOXIC_ID.fetch_add(1, Ordering::Relaxed)
}

fn parse_toxicity(v: Option<&Value>, default: f32) -> Result<f32, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => {
            let t = n.as_f64().unwrap_or(-1.0);
            if (0.0..=1.0).contains(&t) {
                Ok(t as f32)
            } else {
                Err(ApiError::bad_body(format!("toxicity must be between 0 and 1, got {n}")))
            }
        }
        Some(v) => Err(ApiError::bad_body(format!("toxicity must be a number, got {v}"))),
    }
}

fn attributes_of(obj: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    match obj.get("attributes") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(v) => Err(ApiError::bad_body(format!("attributes must be an object, got {v}"))),
    }
}

fn experiment_of(obj: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match obj.get("experiment") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(ApiError::bad_body(format!("experiment must be a string, got {v}"))),
    }
}

/// Milliseconds from a non-negative attribute.
/// Refuses names longer than [`MAX_NAME_BYTES`] (a 1 MB proxy name was accepted once).
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad_body(format!(
            "{what} name is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
            name.len()
        )));
    }
    Ok(())
}

pub fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_applies_toxiproxy_defaults() {
        let t = Toxic::from_create(&json!({"type": "latency", "attributes": {"latency": 100}})).unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(t.stream, Stream::Downstream);
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(t.kind, Kind::Latency { latency: 100, jitter: 0 });
        assert_eq!(t.to_json()["attributes"], json!({"latency": 100, "jitter": 0}));
    }

    #[test]
    fn cli_floats_are_accepted_as_integers() {
        let t = Toxic::from_create(&json!({"type": "bandwidth", "attributes": {"rate": 100.0}})).unwrap();
        assert_eq!(t.kind, Kind::Bandwidth { rate: 100 });
        let e = Toxic::from_create(&json!({"type": "bandwidth", "attributes": {"rate": 1.5}})).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("rate"), "{}", e.message);
    }

    #[test]
    fn bad_bodies_get_toxiproxy_errors() {
        let e = Toxic::from_create(&json!({"type": "nope"})).unwrap_err();
        assert_eq!((e.status, e.message.starts_with("invalid toxic type")), (400, true));
        let e = Toxic::from_create(&json!({"type": "latency", "stream": "sideways"})).unwrap_err();
        assert_eq!(e.message, "stream was invalid, can be either upstream or downstream");
        let e = Toxic::from_create(&json!({"type": "latency", "attributes": {"latency": i64::MAX}})).unwrap_err();
        assert!(e.message.contains("latency must be at most 604800000 ms"), "{}", e.message);
        let e = Toxic::from_create(&json!({"type": "bandwidth", "attributes": {"rate": i64::MAX}})).unwrap_err();
        assert!(e.message.contains("rate must be at most"), "{}", e.message);
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let e = Toxic::from_create(&json!({"type": "latency", "name": long})).unwrap_err();
        assert!(e.message.contains("at most 256"), "{}", e.message);
        let e = Toxic::from_create(&json!({"type": "latency", "toxicity": 2})).unwrap_err();
        assert_eq!(e.status, 400);
        let e = Toxic::from_create(&json!({"type": "http_abort", "attributes": {"status": 99}})).unwrap_err();
        assert!(e.message.contains("status"), "{}", e.message);
        let e = Toxic::from_create(&json!({"type": "http_abort", "attributes": {"grpc_status": 17}})).unwrap_err();
        assert!(e.message.contains("grpc_status"), "{}", e.message);
        let t = Toxic::from_create(&json!({"type": "http_abort", "attributes": {"grpc_status": 14}})).unwrap();
        assert_eq!(t.to_json()["attributes"]["grpc_status"], 14);
    }

    #[test]
    fn update_keeps_what_the_body_leaves_out() {
        let t = Toxic::from_create(&json!({"type": "latency", "attributes": {"latency": 100, "jitter": 5}})).unwrap();
        let u = t.updated(&json!({"attributes": {"latency": 200}})).unwrap();
        assert_eq!(u.kind, Kind::Latency { latency: 200, jitter: 5 });
        assert_eq!(u.toxicity, 1.0);
        assert_ne!(u.id, t.id);
        let u = t.updated(&json!({"toxicity": 0.0})).unwrap();
        assert_eq!(u.toxicity, 0.0);
        assert!(!u.roll());
    }

    #[test]
    fn http_match_on_method_path_and_header() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-canary", "yes".parse().unwrap());
        let m = HttpMatch { method: "post".into(), path_prefix: "/pay".into(), header: "X-Canary: yes".into() };
        assert!(m.matches("POST", "/pay/1", &h));
        assert!(!m.matches("GET", "/pay/1", &h));
        assert!(!m.matches("POST", "/cart", &h));
        assert!(!m.matches("POST", "/pay", &axum::http::HeaderMap::new()));
        let presence = HttpMatch { header: "x-canary".into(), ..HttpMatch::default() };
        assert!(presence.matches("GET", "/", &h));
    }
}
