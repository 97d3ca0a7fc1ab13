//! The chaos agent through the real binary, driven by the published Toxiproxy
//! client library (PyPI `toxiproxy-python`, via tests/chaos/toxiproxy_client.py)
//! and by raw HTTP where that library has no call (PATCH, error bodies, HTTP
//! toxics' attributes are plain toxics to it). Every toxic is checked on real
//! traffic through a real upstream on loopback.
//!
//! This file is the shared harness (the agent process, the Python client,
//! upstream servers); the tests are in one module per topic.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod http_toxics;
mod processes;
mod tcp_toxics;
mod traces;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, Server};
use serde_json::{json, Value};

// ---------------------------------------------------------------- harness

/// A `seismo chaos agent` on an ephemeral API port. Killed on drop.
struct Agent {
    child: Child,
    api: String,
}

impl Agent {
    fn start(extra: &[&str]) -> Agent {
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

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
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
    fn faults(&self, proxy: &str, toxic: &str, kind: &str) -> u64 {
        let text = reqwest::blocking::get(self.url("/metrics")).unwrap().text().unwrap();
        let series = format!("seismo_chaos_faults_total{{proxy=\"{proxy}\",toxic=\"{toxic}\",type=\"{kind}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.parse().unwrap())
    }

    /// SIGTERM; returns whether it exited 0.
    fn stop(mut self) -> bool {
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

/// Echoes every byte back; half-closes when the client does.
fn echo_server() -> SocketAddr {
    serve_tcp(|mut s| {
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// Greets with `bye` and closes at once.
fn closing_server() -> SocketAddr {
    serve_tcp(|mut s| {
        let _ = s.write_all(b"bye");
    })
}

fn serve_tcp(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            let h = handler.clone();
            thread::spawn(move || h(s));
        }
    });
    addr
}

/// One request the HTTP upstream answered.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    traceparent: Option<String>,
}

/// A keep-alive HTTP/1.1 upstream answering `200 ok`, recording every request
/// and counting connections.
struct HttpUpstream {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    connections: Arc<AtomicUsize>,
}

fn http_upstream() -> HttpUpstream {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (h, c) = (hits.clone(), connections.clone());
    let addr = serve_tcp(move |s| {
        c.fetch_add(1, Ordering::SeqCst);
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut out = s;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut length, mut traceparent, mut close) = (0usize, None, false);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap(),
                    "traceparent" => traceparent = Some(v.trim().to_string()),
                    "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            h.lock().unwrap().push(Hit { path, traceparent });
            let resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
            if out.write_all(resp.as_bytes()).is_err() || close {
                return;
            }
        }
    });
    HttpUpstream { addr, hits, connections }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `msg` and reads the echo; returns how long the round trip took.
fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Duration {
    let t = Instant::now();
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
    t.elapsed()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
