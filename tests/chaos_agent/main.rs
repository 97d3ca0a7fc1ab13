//! The chaos agent through the real binary, driven by the published Toxiproxy
//! client library (PyPI `toxiproxy-python`, via tests/chaos/toxiproxy_client.py)
//! and by raw HTTP where that library has no call (PATCH, error bodies, HTTP
//! toxics' attributes are plain toxics to it). Every toxic is checked on real
//! traffic through a real upstream on loopback.
//!
//! This file is the shared harness (the Python client; the agent process in
//! agent.rs, the upstream servers in upstream.rs, both also used by
//! tests/client_chaos.rs); the tests are in one module per topic.

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod api;
mod http_toxics;
mod processes;
mod tcp_toxics;
mod traces;
mod upstream;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use agent::Agent;
use common::{eventually, Server};
use serde_json::{json, Value};
use upstream::*;

// ---------------------------------------------------------------- harness

/// The Python Toxiproxy client library, one JSON command per line.
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn new(agent: &Agent) -> Client {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chaos/toxiproxy_client.py");
        let probe = Command::new("python3").args(["-c", "import toxiproxy, requests, future"]).output();
        assert!(
            probe.as_ref().is_ok_and(|o| o.status.success()),
            "the Toxiproxy client library is missing: pip install toxiproxy-python==0.1.1 requests future ({probe:?})"
        );
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&agent.api)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Client { child, stdin, stdout }
    }

    /// Ok(result) or Err((exception class, detail)).
    fn call(&mut self, cmd: Value) -> Result<Value, (String, String)> {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("client said {line:?}: {e}"));
        match v.get("ok") {
            Some(ok) => Ok(ok.clone()),
            None => Err((v["error"].as_str().unwrap().to_string(), v["detail"].as_str().unwrap_or("").to_string())),
        }
    }

    fn ok(&mut self, cmd: Value) -> Value {
        let shown = cmd.to_string();
        self.call(cmd).unwrap_or_else(|e| panic!("{shown} failed: {e:?}"))
    }

    /// Creates a proxy on an ephemeral port; returns its real listen address.
    fn create(&mut self, name: &str, upstream: SocketAddr) -> SocketAddr {
        let p = self.ok(json!({"op": "create", "name": name, "upstream": upstream.to_string()}));
        p["listen"].as_str().unwrap().parse().unwrap()
    }

    fn add(&mut self, proxy: &str, toxic: Value) {
        let mut cmd = toxic;
        cmd["op"] = "add_toxic".into();
        cmd["proxy"] = proxy.into();
        self.ok(cmd);
    }

    fn remove(&mut self, proxy: &str, name: &str) {
        self.ok(json!({"op": "destroy_toxic", "proxy": proxy, "name": name}));
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
