//! The `seismo chaos agent` process the end-to-end tests drive: started on an
//! ephemeral API port, its ready line read, killed on drop. Shared by
//! tests/chaos_agent (the Toxiproxy client library, raw HTTP) and
//! tests/client_chaos.rs (seismo-client), which include it by `#[path]`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A `seismo chaos agent` on an ephemeral API port. Killed on drop.
pub(crate) struct Agent {
    child: Child,
    /// The API's `host:port`.
    pub api: String,
}

impl Agent {
    pub(crate) fn start(extra: &[&str]) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seismo"))
            .args(["chaos", "agent", "--api", "127.0.0.1:0"])
            .args(extra)
            .env("SEISMO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting seismo chaos agent");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let api = line
            .trim()
            .strip_prefix("seismo chaos agent ready: api=")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Agent { child, api }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    pub(crate) fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let mut req = client.request(method.parse().unwrap(), self.url(path));
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `seismo_chaos_faults_total` for one toxic (0 before its first fault).
    pub(crate) fn faults(&self, proxy: &str, toxic: &str, kind: &str) -> u64 {
        let text = reqwest::blocking::get(self.url("/metrics")).unwrap().text().unwrap();
        let series = format!("seismo_chaos_faults_total{{proxy=\"{proxy}\",toxic=\"{toxic}\",type=\"{kind}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.parse().unwrap())
    }

    /// SIGTERM; returns whether it exited 0.
    pub(crate) fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap().success()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
