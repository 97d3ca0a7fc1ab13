//! Proxies' toxics as the Toxiproxy 2.x API speaks them: types, defaults,
//! attribute names and bounds, and the errors it answers with. The JSON
//! shapes themselves are `seismo_api::toxiproxy`; this file turns a request
//! body into a [`Toxic`] (checking each attribute by the toxic's type, which
//! a derive cannot do with the same messages) and a [`Toxic`] back into its
//! answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use seismo_api::toxiproxy as wire;
use serde_json::Value;

pub use seismo_api::toxiproxy::Stream;

use crate::error::ChaosError;

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

pub use seismo_api::toxiproxy::TOXIC_TYPES;

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
    pub fn parse(type_name: &str, attrs: &BTreeMap<String, Value>, base: Option<&Kind>) -> Result<Kind, ChaosError> {
        let fresh;
        let base = match base {
            Some(b) => b,
            None => {
                fresh = Kind::default_for(type_name)
                    .ok_or_else(|| ChaosError::InvalidToxicType("invalid toxic type".into()))?;
                &fresh
            }
        };
        let int = |name: &str, current: i64| -> Result<i64, ChaosError> {
            match attrs.get(name) {
                None | Some(Value::Null) => Ok(current),
                Some(v) => int_value(v).ok_or_else(|| {
                    ChaosError::bad_body(format!("attribute {name} must be a non-negative integer, got {v}"))
                }),
            }
        };
        // Bounds keep the proxy's schedule arithmetic far from overflow: a latency of
        // i64::MAX ms once wrapped around into no delay at all.
        let bounded = |name: &str, current: i64, max: i64, unit: &str| -> Result<i64, ChaosError> {
            let v = int(name, current)?;
            if v > max {
                return Err(ChaosError::bad_body(format!("attribute {name} must be at most {max} {unit}, got {v}")));
            }
            Ok(v)
        };
        let millis = |name: &str, current: i64| bounded(name, current, MAX_DURATION_MS, "ms (7 days)");
        let text = |name: &str, current: &str| -> Result<String, ChaosError> {
            match attrs.get(name) {
                None | Some(Value::Null) => Ok(current.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => Err(ChaosError::bad_body(format!("attribute {name} must be a string, got {v}"))),
            }
        };
        let matcher = |m: &HttpMatch| -> Result<HttpMatch, ChaosError> {
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
                    return Err(ChaosError::bad_body(format!(
                        "attribute status must be an HTTP status 200-599, got {status}"
                    )));
                }
                let grpc_status = match attrs.get("grpc_status") {
                    None => *grpc_status,
                    Some(Value::Null) => None,
                    Some(v) => match int_value(v) {
                        Some(code @ 0..=16) => Some(code as u8),
                        _ => {
                            return Err(ChaosError::bad_body(format!(
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
            Kind::Process { .. } => return Err(ChaosError::InvalidToxicType("invalid toxic type".into())),
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

    /// The attributes object, every field of the type present as Toxiproxy prints them.
    pub fn attributes(&self) -> wire::Attributes {
        let mut a = wire::Attributes::default();
        match self {
            Kind::Latency { latency, jitter } => {
                a.latency = Some(*latency);
                a.jitter = Some(*jitter);
            }
            Kind::Bandwidth { rate } => a.rate = Some(*rate),
            Kind::SlowClose { delay } => a.delay = Some(*delay),
            Kind::Timeout { timeout } | Kind::ResetPeer { timeout } => a.timeout = Some(*timeout),
            Kind::Slicer { average_size, size_variation, delay } => {
                a.average_size = Some(*average_size);
                a.size_variation = Some(*size_variation);
                a.delay = Some(*delay);
            }
            Kind::LimitData { bytes } => a.bytes = Some(*bytes),
            Kind::HttpAbort { status, grpc_status, matcher } => {
                a.status = Some(*status);
                a.grpc_status = *grpc_status;
                matcher.put_attributes(&mut a);
            }
            Kind::HttpDelay { delay, matcher } => {
                a.delay = Some(*delay);
                matcher.put_attributes(&mut a);
            }
            Kind::Process { signal, .. } => a.signal = Some(*signal),
        }
        a
    }
}

impl HttpMatch {
    fn put_attributes(&self, a: &mut wire::Attributes) {
        a.method = Some(self.method.clone());
        a.path_prefix = Some(self.path_prefix.clone());
        a.header = Some(self.header.clone());
    }
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
    ///
    /// # Errors
    /// [`ChaosError::InvalidStream`], [`ChaosError::InvalidToxicType`], or
    /// [`ChaosError::BadBody`] naming the bad name, toxicity or attribute.
    pub fn from_create(body: wire::ToxicRequest) -> Result<Toxic, ChaosError> {
        let stream = match body.stream.as_deref() {
            None | Some("") => Stream::Downstream,
            Some(s) => Stream::parse(s).ok_or(ChaosError::InvalidStream)?,
        };
        let type_name = body.kind.as_deref().unwrap_or("");
        if !TOXIC_TYPES.contains(&type_name) {
            let msg = if type_name.is_empty() {
                "invalid toxic type: missing field type".to_string()
            } else {
                format!("invalid toxic type: {type_name:?} (known: {})", TOXIC_TYPES.join(", "))
            };
            return Err(ChaosError::InvalidToxicType(msg));
        }
        let name = match body.name {
            Some(name) if !name.is_empty() => name,
            _ => format!("{type_name}_{}", stream.as_str()),
        };
        check_name("toxic", &name)?;
        let toxicity = parse_toxicity(body.toxicity, 1.0)?;
        let kind = Kind::parse(type_name, &body.attributes.unwrap_or_default(), None)?;
        let experiment = body.experiment.filter(|e| !e.is_empty());
        Ok(Toxic { id: fresh_id(), name, kind, stream, toxicity, experiment })
    }

    /// Applies an update body: only `attributes`, `toxicity` (and `experiment`)
    /// change, each only if given, as in Toxiproxy.
    ///
    /// # Errors
    /// [`ChaosError::BadBody`] naming the bad toxicity or attribute.
    pub fn updated(&self, body: wire::ToxicRequest) -> Result<Toxic, ChaosError> {
        let kind = Kind::parse(self.kind.type_name(), &body.attributes.unwrap_or_default(), Some(&self.kind))?;
        let toxicity = parse_toxicity(body.toxicity, self.toxicity)?;
        let experiment = body.experiment.filter(|e| !e.is_empty()).or_else(|| self.experiment.clone());
        Ok(Toxic { id: fresh_id(), name: self.name.clone(), kind, stream: self.stream, toxicity, experiment })
    }

    /// The toxic as the API answers it.
    pub fn to_wire(&self) -> wire::Toxic {
        wire::Toxic {
            attributes: self.kind.attributes(),
            experiment: self.experiment.clone(),
            name: self.name.clone(),
            stream: self.stream,
            toxicity: self.toxicity,
            kind: self.kind.type_name().to_string(),
        }
    }

    /// Whether the toxic applies this time (its toxicity rolled).
    pub fn roll(&self) -> bool {
        self.toxicity > 0.0 && (self.toxicity >= 1.0 || rand::random::<f32>() < self.toxicity)
    }
}

fn fresh_id() -> u64 {
    NEXT_TOXIC_ID.fetch_add(1, Ordering::Relaxed)
}

fn parse_toxicity(v: Option<f64>, default: f32) -> Result<f32, ChaosError> {
    match v {
        None => Ok(default),
        Some(t) if (0.0..=1.0).contains(&t) => Ok(t as f32),
        Some(t) => Err(ChaosError::bad_body(format!("toxicity must be between 0 and 1, got {t}"))),
    }
}

/// Refuses names longer than [`MAX_NAME_BYTES`] (a 1 MB proxy name was accepted once).
///
/// # Errors
/// [`ChaosError::BadBody`] saying how long the name is.
pub fn check_name(what: &str, name: &str) -> Result<(), ChaosError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(ChaosError::bad_body(format!(
            "{what} name is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
            name.len()
        )));
    }
    Ok(())
}

/// Milliseconds from a non-negative attribute.
pub fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(body: Value) -> wire::ToxicRequest {
        serde_json::from_value(body).unwrap()
    }

    fn create(body: Value) -> Result<Toxic, ChaosError> {
        Toxic::from_create(req(body))
    }

    fn answer(t: &Toxic) -> Value {
        serde_json::to_value(t.to_wire()).unwrap()
    }

    #[test]
    fn create_applies_toxiproxy_defaults() {
        let t = create(json!({"type": "latency", "attributes": {"latency": 100}})).unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(t.stream, Stream::Downstream);
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(t.kind, Kind::Latency { latency: 100, jitter: 0 });
        assert_eq!(answer(&t)["attributes"], json!({"latency": 100, "jitter": 0}));
    }

    #[test]
    fn cli_floats_are_accepted_as_integers() {
        let t = create(json!({"type": "bandwidth", "attributes": {"rate": 100.0}})).unwrap();
        assert_eq!(t.kind, Kind::Bandwidth { rate: 100 });
        let e = create(json!({"type": "bandwidth", "attributes": {"rate": 1.5}})).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("rate"), "{}", e.to_string());
    }

    #[test]
    fn bad_bodies_get_toxiproxy_errors() {
        let e = create(json!({"type": "nope"})).unwrap_err();
        assert_eq!((e.status(), e.to_string().starts_with("invalid toxic type")), (400, true));
        let e = create(json!({"type": "latency", "stream": "sideways"})).unwrap_err();
        assert_eq!(e.to_string(), "stream was invalid, can be either upstream or downstream");
        let e = create(json!({"type": "latency", "attributes": {"latency": i64::MAX}})).unwrap_err();
        assert!(e.to_string().contains("latency must be at most 604800000 ms"), "{}", e.to_string());
        let e = create(json!({"type": "bandwidth", "attributes": {"rate": i64::MAX}})).unwrap_err();
        assert!(e.to_string().contains("rate must be at most"), "{}", e.to_string());
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let e = create(json!({"type": "latency", "name": long})).unwrap_err();
        assert!(e.to_string().contains("at most 256"), "{}", e.to_string());
        let e = create(json!({"type": "latency", "toxicity": 2})).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = create(json!({"type": "http_abort", "attributes": {"status": 99}})).unwrap_err();
        assert!(e.to_string().contains("status"), "{}", e.to_string());
        let e = create(json!({"type": "http_abort", "attributes": {"grpc_status": 17}})).unwrap_err();
        assert!(e.to_string().contains("grpc_status"), "{}", e.to_string());
        let t = create(json!({"type": "http_abort", "attributes": {"grpc_status": 14}})).unwrap();
        assert_eq!(answer(&t)["attributes"]["grpc_status"], 14);
    }

    #[test]
    fn update_keeps_what_the_body_leaves_out() {
        let t = create(json!({"type": "latency", "attributes": {"latency": 100, "jitter": 5}})).unwrap();
        let u = t.updated(req(json!({"attributes": {"latency": 200}}))).unwrap();
        assert_eq!(u.kind, Kind::Latency { latency: 200, jitter: 5 });
        assert_eq!(u.toxicity, 1.0);
        assert_ne!(u.id, t.id);
        let u = t.updated(req(json!({"toxicity": 0.0}))).unwrap();
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
