//! `seismo serve --config FILE`: the same settings as the flags, in TOML.
//! A flag given on the command line wins over the file.
//!
//! ```toml
//! data_dir = "/var/lib/seismo"
//! otlp_grpc = "0.0.0.0:4317"
//! otlp_http = "0.0.0.0:4318"
//! http = "0.0.0.0:16686"
//! max_body_bytes = 20971520
//! max_inflight_bytes = 1073741824
//! max_connections = 4096
//! idle_timeout_secs = 30
//! body_timeout_secs = 60
//! flush_rows = 262144
//! compact_rows = 2000000
//! flush_interval_secs = 60
//! max_memtable_bytes = 268435456
//! ingest_wait_secs = 5
//! query_max_samples = 50000000
//! query_timeout = "2m"
//! max_disk_bytes = 10737418240
//! retention = "7d"
//!
//! [auth]
//! tokens = ["ingest:CHANGE-ME-ingest-token", "query:CHANGE-ME-query-token"]
//!
//! [tls]
//! cert = "/etc/seismo/server.pem"
//! key = "/etc/seismo/server.key"
//! client_ca = "/etc/seismo/clients-ca.pem"   # optional: mutual TLS
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp_http: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub max_body_bytes: Option<usize>,
    pub max_inflight_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub flush_rows: Option<usize>,
    pub compact_rows: Option<u64>,
    pub flush_interval_secs: Option<u64>,
    /// `--max-memtable-bytes`.
    pub max_memtable_bytes: Option<usize>,
    /// `--ingest-wait-secs`.
    pub ingest_wait_secs: Option<u64>,
    /// `--query-max-samples`.
    pub query_max_samples: Option<usize>,
    /// `--query-timeout`, a Prometheus duration such as `"2m"`.
    pub query_timeout: Option<String>,
    /// Size-based retention: see `seismo serve --max-disk-bytes`.
    pub max_disk_bytes: Option<u64>,
    /// Time-based retention, a Prometheus duration such as `"7d"`: see `seismo serve --retention`.
    pub retention: Option<String>,
    /// Who may use the listeners.
    #[serde(default)]
    pub auth: AuthSection,
    /// TLS on every listener.
    #[serde(default)]
    pub tls: TlsSection,
}

/// `[tls]`: as `--tls-cert`, `--tls-key`, `--tls-client-ca`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// `[auth]`: bearer tokens, as `--auth-token` takes them.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthSection {
    /// `ROLE:TOKEN` strings; see `seismo serve --help`.
    #[serde(default)]
    pub tokens: Vec<String>,
}

impl FileConfig {
    /// Reads and parses a config file; unknown keys are an error (a typo
    /// silently ignored is a setting silently lost).
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c: FileConfig = toml::from_str("data_dir = \"/d\"\nhttp = \"127.0.0.1:1\"\nflush_rows = 10").unwrap();
        assert_eq!(c.data_dir, Some(PathBuf::from("/d")));
        assert_eq!(c.flush_rows, Some(10));
        let c: FileConfig = toml::from_str("max_disk_bytes = 10737418240").unwrap();
        assert_eq!(c.max_disk_bytes, Some(10 << 30));
        let c: FileConfig = toml::from_str("retention = \"7d\"\nmax_memtable_bytes = 1048576").unwrap();
        assert_eq!((c.retention.as_deref(), c.max_memtable_bytes), (Some("7d"), Some(1 << 20)));
        assert!(toml::from_str::<FileConfig>("htp = \"127.0.0.1:1\"").is_err());
        let c: FileConfig = toml::from_str("query_max_samples = 1000\nquery_timeout = \"30s\"").unwrap();
        assert_eq!((c.query_max_samples, c.query_timeout.as_deref()), (Some(1000), Some("30s")));
        let c: FileConfig = toml::from_str("[auth]\ntokens = [\"query:0123456789\"]").unwrap();
        assert_eq!(c.auth.tokens, vec!["query:0123456789".to_string()]);
        assert!(toml::from_str::<FileConfig>("[auth]\ntoken = []").is_err());
        let c: FileConfig = toml::from_str("[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"").unwrap();
        assert_eq!((c.tls.cert.as_deref(), c.tls.client_ca), (Some(Path::new("/c.pem")), None));
        assert!(toml::from_str::<FileConfig>("[tls]\ncertificate = \"/c.pem\"").is_err());
    }
}
