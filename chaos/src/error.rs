//! The chaos agent's one error type. Domain code (the model, proxies,
//! processes) returns a [`ChaosError`] that says what went wrong; the API
//! turns it into Toxiproxy's `{"error", "status"}` answer in one place
//! (`api.rs`), so no status code is decided far from the protocol.

use std::io;

/// What can go wrong in the agent. The `Display` text is the message the API
/// answers with (Toxiproxy's own wording where Toxiproxy has one).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A request body that does not parse or holds a bad value.
    #[error("bad request body: {0}")]
    BadBody(String),
    /// A required field is missing or empty.
    #[error("missing required field: {0}")]
    MissingField(String),
    /// A toxic type the agent does not know (or none).
    #[error("{0}")]
    InvalidToxicType(String),
    #[error("stream was invalid, can be either upstream or downstream")]
    InvalidStream,
    #[error("proxy not found")]
    ProxyNotFound,
    #[error("proxy already exists")]
    ProxyExists,
    #[error("toxic not found")]
    ToxicNotFound,
    #[error("toxic already exists")]
    ToxicExists,
    /// A listen address another socket holds.
    #[error("listen address already in use: {0}")]
    ListenInUse(String),
    /// A listen address that cannot be resolved or bound.
    #[error("{0}")]
    BadListen(String),

    /// Signalling this pid is never allowed (0, the agent itself, out of range).
    #[error("refusing to signal pid {0}")]
    RefusedPid(u32),
    /// A pid the agent did not start: only those may be signalled.
    #[error("pid {0} was not started by this agent: only commands started with POST /processes can be signalled")]
    NotStartedByAgent(u32),
    /// The operating system denied the signal.
    #[error("not allowed to signal pid {0}")]
    SignalDenied(u32),
    #[error("no process with pid {0}")]
    NoSuchPid(u32),
    #[error("no process named {0:?}")]
    NoSuchProcess(String),
    /// A started command that exited: its pid may belong to another process now.
    #[error("process {name} (pid {pid}) already exited: {exit}")]
    ProcessExited { name: String, pid: u32, exit: String },
    #[error("process {0:?} already running")]
    ProcessRunning(String),
    #[error("cannot start {command:?}: {source}")]
    CannotStart { command: String, source: io::Error },
    /// `--no-processes`, or a program outside `--allow-command`.
    #[error("{0}")]
    CommandRefused(String),
    /// The API's TLS files cannot be used.
    #[error("TLS for the API: {0}")]
    Tls(String),
    /// A non-loopback `--api` without `--auth-token` or `--insecure`.
    #[error("{0}")]
    Insecure(String),
    #[error("unknown process action {0:?}")]
    UnknownAction(String),
    /// kill(2) failed for another reason.
    #[error("kill({pid}): {source}")]
    Signal { pid: u32, source: nix::Error },

    /// The agent cannot run: its API address, its span exporter, its `--config`.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    #[error("{path}: {message}")]
    Config { path: String, message: String },
}

impl ChaosError {
    pub(crate) fn bad_body(detail: impl std::fmt::Display) -> ChaosError {
        ChaosError::BadBody(detail.to_string())
    }

    /// The HTTP status Toxiproxy answers this error with (and ours for the
    /// extensions): 400 for bad input, 404 for what is not there, 409 for a
    /// clash, 403/410 for processes that may not or can no longer be signalled.
    pub fn status(&self) -> u16 {
        match self {
            ChaosError::BadBody(_)
            | ChaosError::MissingField(_)
            | ChaosError::InvalidToxicType(_)
            | ChaosError::InvalidStream
            | ChaosError::BadListen(_)
            | ChaosError::RefusedPid(_)
            | ChaosError::CannotStart { .. }
            | ChaosError::Config { .. }
            | ChaosError::Insecure(_)
            | ChaosError::Tls(_) => 400,
            ChaosError::NotStartedByAgent(_) | ChaosError::SignalDenied(_) | ChaosError::CommandRefused(_) => 403,
            ChaosError::ProxyNotFound
            | ChaosError::ToxicNotFound
            | ChaosError::NoSuchPid(_)
            | ChaosError::NoSuchProcess(_)
            | ChaosError::UnknownAction(_) => 404,
            ChaosError::ProxyExists
            | ChaosError::ToxicExists
            | ChaosError::ListenInUse(_)
            | ChaosError::ProcessRunning(_) => 409,
            ChaosError::ProcessExited { .. } => 410,
            ChaosError::Signal { .. } | ChaosError::Io { .. } | ChaosError::Exporter(_) => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_statuses_are_toxiproxys() {
        let e = ChaosError::MissingField("upstream at proxy 2".into());
        assert_eq!((e.status(), e.to_string().as_str()), (400, "missing required field: upstream at proxy 2"));
        assert_eq!(ChaosError::ProxyExists.status(), 409);
        assert_eq!(ChaosError::ToxicNotFound.to_string(), "toxic not found");
        assert_eq!(ChaosError::ListenInUse("127.0.0.1:1".into()).status(), 409);
        let gone = ChaosError::ProcessExited { name: "sleep".into(), pid: 7, exit: "exit status: 0".into() };
        assert_eq!(gone.status(), 410);
    }
}
