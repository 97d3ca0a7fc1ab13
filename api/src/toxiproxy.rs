//! The chaos agent's API: Toxiproxy 2.x's JSON shapes (proxies, toxics,
//! populate, errors, `/version`), plus seismo's extensions (HTTP toxics'
//! attributes, a toxic's `experiment`, `/processes`).
//!
//! Answers are written in the field order the agent has always written them
//! (alphabetical), and only the attributes of the toxic's own type appear.
//! Request bodies are typed too, with every field optional: what is missing
//! gets Toxiproxy's default (stream `downstream`, toxicity 1, name
//! `<type>_<stream>`) or, on an update, keeps its current value. A toxic's
//! request attributes stay a JSON map, because which ones exist and what they
//! mean depends on the toxic's type; the agent checks them per type and names
//! the bad one in its answer.

use std::collections::BTreeMap;

/// Every toxic `type` the agent knows: Toxiproxy's seven and seismo's HTTP-aware ones.
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

use serde::{Deserialize, Serialize};

/// The Toxiproxy release whose API the agent speaks (`/version`).
pub const TOXIPROXY_API_VERSION: &str = "2.12.0";

/// A proxy as `GET /proxies/{name}` answers it (and each value of `GET /proxies`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proxy {
    /// Whether the proxy listens (a disabled proxy keeps its toxics).
    pub enabled: bool,
    /// The bound address once enabled (port 0 becomes the real port).
    pub listen: String,
    /// The proxy's name, unique on the agent.
    pub name: String,
    /// Upstream toxics first, then downstream, each in the order added.
    pub toxics: Vec<Toxic>,
    /// `host:port`, or `:port` for the agent's host.
    pub upstream: String,
}

/// Direction of a toxic: `upstream` is client to server, `downstream` server to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client to server.
    Upstream,
    /// Server to client (the default).
    Downstream,
}

impl Stream {
    /// The wire name, `upstream` or `downstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }

    /// Parses a wire name, in any case (as Toxiproxy does).
    pub fn parse(s: &str) -> Option<Stream> {
        match s.to_ascii_lowercase().as_str() {
            "upstream" => Some(Stream::Upstream),
            "downstream" => Some(Stream::Downstream),
            _ => None,
        }
    }
}

/// A toxic as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toxic {
    /// Every attribute of the toxic's type, also those left at their default.
    pub attributes: Attributes,
    /// Extension: the experiment whose fault spans this toxic's spans join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// The toxic's name, unique on its proxy (default `<type>_<stream>`).
    pub name: String,
    /// Which direction it acts on.
    pub stream: Stream,
    /// Probability (0 to 1) that the toxic applies to a connection or request.
    pub toxicity: f32,
    /// `latency`, `bandwidth`, `slow_close`, `timeout`, `reset_peer`, `slicer`,
    /// `limit_data`, `http_abort`, `http_delay`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A toxic's attributes, in Toxiproxy's units: milliseconds, KB/s, bytes, and
/// microseconds for the slicer's `delay`. Each type has its own subset; the
/// others are absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attributes {
    /// slicer: mean piece size, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_size: Option<i64>,
    /// limit_data: bytes let through before the connection closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// slow_close, http_delay: ms; slicer: µs between pieces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    /// http_abort: the gRPC status a gRPC request gets instead of `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u8>,
    /// http toxics: `Name` (present) or `Name: value` (equal); empty matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// latency: ± ms around `latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<i64>,
    /// latency: ms added to every chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<i64>,
    /// http toxics: the request method to match; empty matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// http toxics: the path prefix to match; empty matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// bandwidth: KB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<i64>,
    /// A process fault's signal number (not a toxic attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// slicer: ± bytes around `average_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_variation: Option<i64>,
    /// http_abort: the HTTP status answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// timeout, reset_peer: ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// The body of `POST /proxies`, of each `POST /populate` item, and of a proxy
/// update (where a missing or empty field keeps its current value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyRequest {
    /// The proxy's name (required on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Empty or missing: all interfaces, an ephemeral port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `host:port` to forward to (required on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Missing: `true` on create, unchanged on update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// The body of `POST /proxies/{proxy}/toxics` and of a toxic update (where
/// only `attributes`, `toxicity` and `experiment` change, each only if given).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToxicRequest {
    /// The toxic's name; missing: `<type>_<stream>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The toxic's type (required on create).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `upstream` or `downstream` (any case); missing or empty: downstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Probability (0 to 1) that the toxic applies; missing: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f64>,
    /// Checked against the toxic's type; unknown ones are ignored, `null`
    /// keeps the current value. Numbers may be written as floats (`100.0`),
    /// as toxiproxy-cli sends them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, serde_json::Value>>,
    /// Extension: the experiment whose fault spans this toxic's spans join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
}

/// `POST /populate`'s answer: the proxies as they are now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Populated {
    /// Every proxy after the populate.
    pub proxies: Vec<Proxy>,
}

/// `POST /populate`'s answer when one proxy failed to start: the error, and
/// the proxies created before it (which stay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopulateFailed {
    /// What went wrong with the failing proxy.
    pub error: String,
    /// The proxies created before the failure (they stay).
    pub proxies: Vec<Proxy>,
    /// The HTTP status, repeated.
    pub status: u16,
}

/// Toxiproxy's error body: `{"error": "...", "status": 400}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the field or object.
    pub error: String,
    /// The HTTP status, repeated.
    pub status: u16,
}

/// `GET /version`: the Toxiproxy API level, and seismo's own version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// The Toxiproxy API level the agent speaks.
    pub version: String,
    /// seismo's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seismo: Option<String>,
}

/// A process as `/processes` answers it (an extension of the Toxiproxy API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// The argv the agent started (absent for a pid it did not start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// For a command the agent started: `null` while it runs, then its exit status.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub exit: Option<Option<String>>,
    /// The name given when started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The process id.
    pub pid: u32,
    /// On a fault's answer: the signal sent, e.g. `SIGKILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Whether the agent started it (only those can be signalled).
    pub started_by_agent: bool,
    /// `running`, `stopped`, `zombie`, `exited` or `gone`.
    pub state: String,
}

/// The body of `POST /processes` (an extension of the Toxiproxy API): a
/// command for the agent to start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStart {
    /// The command to run (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandLine>,
    /// The name to refer to it by; missing or empty: the program's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A command: its argv (what clients send), or one string that the agent
/// splits at whitespace (handy from curl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a command: an array of strings, or one string")]
pub enum CommandLine {
    /// `["sleep", "60"]`.
    Argv(Vec<String>),
    /// `"sleep 60"`.
    Line(String),
}

/// The body of `POST /processes/{target}/{action}` (`kill`, `pause`,
/// `resume`); every field is optional, and so is the body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessFault {
    /// `kill` only: the signal to send; missing: SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalSpec>,
    /// The experiment whose spans the fault's span joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
}

/// A signal by name (`"SIGKILL"`, `"KILL"`, `"kill"`) or number (`9`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a signal: a name such as \"SIGKILL\", or a number")]
pub enum SignalSpec {
    /// A signal number.
    Number(i64),
    /// A signal name, with or without `SIG`, in any case.
    Name(String),
}

/// A field that is present (even as `null`) is `Some`; `default` makes a missing one `None`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toxic_answers_keep_their_shape() {
        let t = Toxic {
            attributes: Attributes { latency: Some(10), jitter: Some(0), ..Attributes::default() },
            experiment: None,
            name: "latency_downstream".into(),
            stream: Stream::Downstream,
            toxicity: 1.0,
            kind: "latency".into(),
        };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(
            text,
            r#"{"attributes":{"jitter":0,"latency":10},"name":"latency_downstream","stream":"downstream","toxicity":1.0,"type":"latency"}"#
        );
        assert_eq!(serde_json::from_str::<Toxic>(&text).unwrap(), t);
    }

    #[test]
    fn request_bodies_leave_out_what_is_not_given() {
        let r: ToxicRequest =
            serde_json::from_value(json!({"type": "latency", "attributes": {"latency": 1.0}})).unwrap();
        assert_eq!(r.kind.as_deref(), Some("latency"));
        assert_eq!((r.name, r.stream, r.toxicity), (None, None, None));
        assert_eq!(r.attributes.unwrap()["latency"], json!(1.0));
        let p: ProxyRequest = serde_json::from_value(json!({"name": "db", "upstream": ":5432"})).unwrap();
        assert_eq!((p.listen, p.enabled), (None, None));
        assert!(serde_json::from_value::<ProxyRequest>(json!({"name": 5})).is_err());
    }

    #[test]
    fn a_running_process_has_a_null_exit() {
        let running = json!({"command": ["sleep", "30"], "exit": null, "name": "sleep", "pid": 7,
                             "started_by_agent": true, "state": "running"});
        let p: Process = serde_json::from_value(running.clone()).unwrap();
        assert_eq!(p.exit, Some(None));
        assert_eq!(serde_json::to_value(&p).unwrap(), running);
        let foreign = json!({"pid": 1, "started_by_agent": false, "state": "running"});
        let p: Process = serde_json::from_value(foreign.clone()).unwrap();
        assert_eq!((&p.exit, serde_json::to_value(&p).unwrap()), (&None, foreign));
    }

    #[test]
    fn process_bodies_take_a_command_and_a_signal_in_either_form() {
        let argv: ProcessStart = serde_json::from_value(json!({"command": ["sleep", "60"], "name": "s"})).unwrap();
        assert_eq!(argv.command, Some(CommandLine::Argv(vec!["sleep".into(), "60".into()])));
        let line: ProcessStart = serde_json::from_value(json!({"command": "sleep 60"})).unwrap();
        assert_eq!((line.command, line.name), (Some(CommandLine::Line("sleep 60".into())), None));
        let e = serde_json::from_value::<ProcessStart>(json!({"command": [1, 2]})).unwrap_err();
        assert!(e.to_string().contains("an array of strings, or one string"), "{e}");
        let f: ProcessFault = serde_json::from_value(json!({"signal": 9, "experiment": "x"})).unwrap();
        assert_eq!((f.signal, f.experiment.as_deref()), (Some(SignalSpec::Number(9)), Some("x")));
        let f: ProcessFault = serde_json::from_value(json!({"signal": "KILL"})).unwrap();
        assert_eq!(f.signal, Some(SignalSpec::Name("KILL".into())));
        assert!(serde_json::from_value::<ProcessFault>(json!({"signal": true})).is_err());
        assert_eq!(serde_json::to_value(ProcessFault::default()).unwrap(), json!({}));
    }

    #[test]
    fn stream_names_in_any_case() {
        assert_eq!(Stream::parse("UpStream"), Some(Stream::Upstream));
        assert_eq!(Stream::parse("sideways"), None);
        assert_eq!(serde_json::to_value(Stream::Downstream).unwrap(), json!("downstream"));
    }
}
