//! `GET /healthz`: whether the server accepts writes.

use serde::{Deserialize, Serialize};

/// `{"status":"ready"}` (200) or, with 503,
/// `{"reason":"...","status":"disk_full"|"failed"|"closed"}`.
///
/// `reason` comes first: the server wrote this body as a `serde_json` map,
/// whose keys are sorted, and the bytes stay as they were.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Why the store refuses writes; absent when ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ready`, `disk_full` (ends by itself when there is room), `failed`
    /// (the WAL failed; a restart is needed) or `closed` (shutting down).
    pub status: String,
}

impl Health {
    /// The status of a server that accepts writes.
    pub const READY: &'static str = "ready";

    /// `{"status":"ready"}`.
    pub fn ready() -> Self {
        Health { status: Self::READY.to_string(), reason: None }
    }

    /// A server refusing writes, and why.
    pub fn refusing(status: impl Into<String>, reason: impl Into<String>) -> Self {
        Health { status: status.into(), reason: Some(reason.into()) }
    }

    /// Whether the server accepts writes.
    pub fn is_ready(&self) -> bool {
        self.status == Self::READY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(serde_json::to_string(&Health::ready()).unwrap(), r#"{"status":"ready"}"#);
        let full = Health::refusing("disk_full", "disk full: 0 bytes free");
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(text, r#"{"reason":"disk full: 0 bytes free","status":"disk_full"}"#);
        assert!(!serde_json::from_str::<Health>(&text).unwrap().is_ready());
    }
}
