//! The chaos agent through the real binary, driven by the published Toxiproxy
//! client library (PyPI `toxiproxy-python`, via tests/chaos/toxiproxy_client.py)
//! and by raw HTTP where that library has no call (PATCH, error bodies, HTTP
//! toxics' attributes are plain toxics to it). Every toxic is checked on real
//! traffic through a real upstream on loopback.

mod common;

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

// ---------------------------------------------------------------- API

#[test]
fn toxiproxy_api_shapes_status_codes_and_errors() {
    let agent = Agent::start(&[]);
    let mut client = Client::new(&agent);
    let echo = echo_server();

    assert_eq!(client.ok(json!({"op": "running"})), json!(true));
    let version: Value = serde_json::from_str(client.ok(json!({"op": "version"})).as_str().unwrap()).unwrap();
    assert!(version["version"].as_str().unwrap().starts_with("2."), "{version}");

    // Port 0: answered with the real address, which accepts connections.
    let listen = client.create("redis", echo);
    assert_ne!(listen.port(), 0);
    round_trip(&mut connect(listen), b"ping");
    let proxies = client.ok(json!({"op": "proxies"}));
    assert_eq!(proxies["redis"]["listen"], listen.to_string());
    assert_eq!(proxies["redis"]["upstream"], echo.to_string());
    assert_eq!(proxies["redis"]["enabled"], true);

    // The library's exceptions come from Toxiproxy's status codes.
    let e = client.call(json!({"op": "create", "name": "redis", "upstream": echo.to_string()})).unwrap_err();
    assert_eq!(e.0, "ProxyExists");
    let e = client.call(json!({"op": "add_toxic", "proxy": "redis", "type": "nope"})).unwrap_err();
    assert_eq!(e.0, "InvalidToxic");
    assert!(e.1.contains("invalid toxic type"), "{e:?}");
    client.add("redis", json!({"type": "latency", "attributes": {"latency": 10}}));
    let e = client.call(json!({"op": "add_toxic", "proxy": "redis", "type": "latency"})).unwrap_err();
    assert_eq!(e.0, "ProxyExists", "a second latency_downstream is a 409");
    let toxics = client.ok(json!({"op": "toxics", "proxy": "redis"}));
    assert_eq!(
        toxics["latency_downstream"],
        json!({"type": "latency", "stream": "downstream", "toxicity": 1.0, "attributes": {"latency": 10, "jitter": 0}})
    );

    // The rest of the API over plain HTTP: shapes, PATCH, and every error body.
    let (s, t) = agent.request(
        "PATCH",
        "/proxies/redis/toxics/latency_downstream",
        Some(r#"{"attributes": {"jitter": 3}, "toxicity": 0.5}"#),
    );
    assert_eq!(s, 200);
    assert_eq!(t["attributes"], json!({"latency": 10, "jitter": 3}));
    assert_eq!(t["toxicity"], 0.5);
    let (s, t) = agent.request("GET", "/proxies/redis/toxics/latency_downstream", None);
    assert_eq!((s, t["name"].as_str()), (200, Some("latency_downstream")));
    let (s, p) = agent.request("GET", "/proxies/redis", None);
    assert_eq!((s, p["toxics"].as_array().unwrap().len()), (200, 1));

    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("POST", "/proxies", Some("{not json"), 400, "bad request body"),
        ("POST", "/proxies", Some(r#"{"upstream": "127.0.0.1:1"}"#), 400, "missing required field: name"),
        ("POST", "/proxies", Some(r#"{"name": "x"}"#), 400, "missing required field: upstream"),
        ("POST", "/proxies", Some(r#"{"name": "x", "upstream": "nohostport"}"#), 400, "upstream must be host:port"),
        ("POST", "/proxies", Some(r#"{"name": "redis", "upstream": "127.0.0.1:1"}"#), 409, "proxy already exists"),
        ("GET", "/proxies/ghost", None, 404, "proxy not found"),
        ("DELETE", "/proxies/ghost", None, 404, "proxy not found"),
        ("GET", "/proxies/ghost/toxics", None, 404, "proxy not found"),
        ("GET", "/proxies/redis/toxics/ghost", None, 404, "toxic not found"),
        ("PATCH", "/proxies/redis/toxics/ghost", Some("{}"), 404, "toxic not found"),
        ("DELETE", "/proxies/redis/toxics/ghost", None, 404, "toxic not found"),
        (
            "POST",
            "/proxies/redis/toxics",
            Some(r#"{"type": "latency", "stream": "sideways"}"#),
            400,
            "stream was invalid",
        ),
        ("POST", "/proxies/redis/toxics", Some(r#"{"name": "t"}"#), 400, "invalid toxic type"),
        ("POST", "/proxies/redis/toxics", Some(r#"{"type": "latency", "toxicity": 7}"#), 400, "toxicity"),
        ("POST", "/proxies/redis/toxics", Some(r#"{"type": "bandwidth", "attributes": {"rate": -1}}"#), 400, "rate"),
        (
            "POST",
            "/populate",
            Some(r#"[{"name": "a", "upstream": "127.0.0.1:1"}, {"name": "b"}]"#),
            400,
            "upstream at proxy 2",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let (s, v) = agent.request(method, path, *body);
        assert_eq!(s, *status, "{method} {path} {body:?}: {v}");
        assert_eq!(v["status"], *status, "{v}");
        assert!(v["error"].as_str().unwrap().contains(message), "{method} {path}: {v}");
    }
    // Nothing of the failed populate was created.
    assert!(agent.request("GET", "/proxies/a", None).0 == 404);

    // A listen address already taken is a 409, and the proxy is not created.
    let body = format!(r#"{{"name": "clash", "listen": "{listen}", "upstream": "{echo}"}}"#);
    let (s, v) = agent.request("POST", "/proxies", Some(&body));
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("in use"), "{v}");
    assert_eq!(agent.request("GET", "/proxies/clash", None).0, 404);

    // Populate creates, keeps unchanged ones, answers 201 with the proxies.
    let body = format!(
        r#"[{{"name": "redis", "listen": "{listen}", "upstream": "{echo}"}}, {{"name": "pg", "upstream": "{echo}"}}]"#
    );
    let (s, v) = agent.request("POST", "/populate", Some(&body));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["proxies"].as_array().unwrap().len(), 2);
    assert_eq!(v["proxies"][0]["toxics"].as_array().unwrap().len(), 1, "unchanged proxy kept its toxics");
    let pg: SocketAddr = v["proxies"][1]["listen"].as_str().unwrap().parse().unwrap();
    round_trip(&mut connect(pg), b"hello");

    // `:port` upstreams mean this host, as Toxiproxy (Go) dials them.
    let body = format!(r#"{{"name": "local", "listen": "127.0.0.1:0", "upstream": ":{}"}}"#, echo.port());
    let (s, v) = agent.request("POST", "/proxies", Some(&body));
    assert_eq!(s, 201, "{v}");
    round_trip(&mut connect(v["listen"].as_str().unwrap().parse().unwrap()), b"local");
    assert_eq!(agent.request("DELETE", "/proxies/local", None).0, 204);

    // Browsers are turned away, as by Toxiproxy.
    let r = reqwest::blocking::Client::new()
        .get(agent.url("/proxies"))
        .header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Metrics in Prometheus text.
    let text = reqwest::blocking::get(agent.url("/metrics")).unwrap().text().unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("toxiproxy_proxy_sent_bytes_total{direction=\"downstream\"") && l.contains("proxy=\"pg\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(" 5"), "{line}");

    // Delete answers 204 and frees the port.
    assert_eq!(agent.request("DELETE", "/proxies/pg", None).0, 204);
    assert_eq!(TcpStream::connect(pg).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    assert!(agent.stop(), "agent exits 0 on SIGTERM");
}

// ---------------------------------------------------------------- TCP toxics

#[test]
fn latency_and_toxicity_apply_to_open_and_new_connections() {
    let agent = Agent::start(&[]);
    let mut client = Client::new(&agent);
    let listen = client.create("svc", echo_server());

    let mut open = connect(listen);
    let base = round_trip(&mut open, b"warm");
    assert!(base < ms(500), "{base:?}");

    // Added while the connection is open: applies to it.
    client.add("svc", json!({"type": "latency", "attributes": {"latency": 300}}));
    let slow = round_trip(&mut open, b"slow");
    assert!(slow >= ms(300), "latency toxic not applied to an open connection: {slow:?}");
    let fresh = round_trip(&mut connect(listen), b"new");
    assert!(fresh >= ms(300), "{fresh:?}");

    // Removed: the same connection is fast again.
    client.remove("svc", "latency_downstream");
    let after = round_trip(&mut open, b"fast");
    assert!(after < ms(250), "{after:?}");

    // Upstream stream with jitter: 200 ± 100.
    client.add("svc", json!({"type": "latency", "stream": "upstream", "attributes": {"latency": 200, "jitter": 100}}));
    let up = round_trip(&mut open, b"up");
    assert!(up >= ms(100), "{up:?}");
    client.remove("svc", "latency_upstream");

    // Toxicity 0 never applies, on any connection.
    client.add("svc", json!({"type": "latency", "toxicity": 0.0, "attributes": {"latency": 2000}}));
    for _ in 0..5 {
        let t = round_trip(&mut connect(listen), b"zero");
        assert!(t < ms(1000), "toxicity 0 applied: {t:?}");
    }
    assert!(round_trip(&mut open, b"zero") < ms(1000));
}

#[test]
fn bandwidth_slicer_and_limit_data_shape_the_stream() {
    let agent = Agent::start(&[]);
    let mut client = Client::new(&agent);
    let listen = client.create("svc", echo_server());

    // bandwidth: 100 KB/s downstream, 200 KB echoed takes about 2 s.
    client.add("svc", json!({"type": "bandwidth", "attributes": {"rate": 100}}));
    let mut s = connect(listen);
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = s.try_clone().unwrap();
    let p2 = payload.clone();
    let t = Instant::now();
    let w = thread::spawn(move || writer.write_all(&p2).unwrap());
    let mut got = vec![0u8; payload.len()];
    s.read_exact(&mut got).unwrap();
    let took = t.elapsed();
    w.join().unwrap();
    assert_eq!(got, payload);
    assert!(took >= ms(1500), "200 KB at 100 KB/s took only {took:?}");
    client.remove("svc", "bandwidth_downstream");

    // slicer: 1,000 bytes in ~100-byte pieces, 20 ms apart.
    client.add(
        "svc",
        json!({"type": "slicer", "attributes": {"average_size": 100, "size_variation": 0, "delay": 20000}}),
    );
    let mut s = connect(listen);
    let msg: Vec<u8> = (0..1000u32).map(|i| (i % 200) as u8 + 1).collect();
    let t = Instant::now();
    s.write_all(&msg).unwrap();
    let (mut got, mut reads) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 4096];
    while got.len() < msg.len() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        reads.push(n);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, msg);
    assert!(t.elapsed() >= ms(150), "{:?}", t.elapsed());
    assert!(reads.len() >= 5 && reads.iter().all(|&n| n <= 200), "reads {reads:?}");
    client.remove("svc", "slicer_downstream");

    // limit_data: the connection closes after exactly 1,000 bytes.
    client.add("svc", json!({"type": "limit_data", "attributes": {"bytes": 1000}}));
    let mut s = connect(listen);
    s.write_all(&[7u8; 3000]).unwrap();
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert_eq!(total, 1000);
}

#[test]
fn timeout_reset_peer_and_slow_close_end_connections() {
    let agent = Agent::start(&[]);
    let mut client = Client::new(&agent);
    let listen = client.create("svc", echo_server());
    let mut buf = [0u8; 64];

    // timeout 400: data stops and the connection closes ~400 ms later.
    client.add("svc", json!({"type": "timeout", "attributes": {"timeout": 400}}));
    let mut s = connect(listen);
    let t = Instant::now();
    s.write_all(b"hello").unwrap();
    let r = s.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "data passed a timeout toxic: {r:?}");
    assert!(t.elapsed() >= ms(350), "{:?}", t.elapsed());
    client.remove("svc", "timeout_downstream");

    // timeout 0: held until the toxic goes; its removal closes the connection
    // (as Toxiproxy's does: the swallowed bytes would misalign any protocol).
    client.add("svc", json!({"type": "timeout", "attributes": {"timeout": 0}}));
    let mut s = connect(listen);
    s.set_read_timeout(Some(ms(700))).unwrap();
    s.write_all(b"dropped").unwrap();
    let r = s.read(&mut buf).unwrap_err();
    assert!(matches!(r.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{r:?}");
    client.remove("svc", "timeout_downstream");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "connection outlived its timeout toxic");
    assert!(round_trip(&mut connect(listen), b"new connections flow") < Duration::from_secs(5));

    // reset_peer upstream: the first data gets a TCP RST, on both sides.
    let server_saw = Arc::new(Mutex::new(None));
    let seen = server_saw.clone();
    let resetting = serve_tcp(move |mut s| {
        let r = s.read(&mut [0u8; 16]);
        *seen.lock().unwrap() = Some(r.map_err(|e| e.kind()));
    });
    let listen_r = client.create("resetting", resetting);
    client.add("resetting", json!({"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}}));
    let mut s = connect(listen_r);
    s.write_all(b"x").unwrap();
    let r = s.read(&mut buf);
    assert!(matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset), "expected connection reset, got {r:?}");
    let upstream_got = eventually(Duration::from_secs(5), || *server_saw.lock().unwrap());
    assert_eq!(upstream_got, Err(ErrorKind::ConnectionReset), "the upstream is reset too, and got no data");

    // limit_data 0: nothing passes and the connection closes at once.
    client.add("svc", json!({"type": "limit_data", "attributes": {"bytes": 0}}));
    let mut s = connect(listen);
    s.write_all(b"anything").unwrap();
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    client.remove("svc", "limit_data_downstream");

    // slow_close: the server's close reaches the client 500 ms late.
    let listen = client.create("greeter", closing_server());
    client.add("greeter", json!({"type": "slow_close", "attributes": {"delay": 500}}));
    let t = Instant::now();
    let mut s = connect(listen);
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
    assert!(t.elapsed() >= ms(450), "closed after {:?}", t.elapsed());
}

#[test]
fn toxics_change_under_load_without_hanging_the_api() {
    let agent = Agent::start(&[]);
    let mut client = Client::new(&agent);
    let listen = client.create("busy", echo_server());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut s = connect(listen);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let msg = format!("worker {w} message {n} {}", "x".repeat(2000));
                    round_trip(&mut s, msg.as_bytes());
                    n += 1;
                }
                n
            })
        })
        .collect();
    let toxics = [
        json!({"type": "latency", "attributes": {"latency": 20, "jitter": 10}}),
        json!({"type": "bandwidth", "stream": "upstream", "attributes": {"rate": 500}}),
        json!({"type": "slicer", "attributes": {"average_size": 64, "size_variation": 16, "delay": 100}}),
        json!({"type": "latency", "name": "slow_half", "toxicity": 0.5, "attributes": {"latency": 50}}),
    ];
    let mut slowest = Duration::ZERO;
    for round in 0..6 {
        for t in &toxics {
            let started = Instant::now();
            client.add("busy", t.clone());
            slowest = slowest.max(started.elapsed());
        }
        thread::sleep(ms(150));
        for name in ["latency_downstream", "bandwidth_upstream", "slicer_downstream", "slow_half"] {
            let started = Instant::now();
            client.remove("busy", name);
            slowest = slowest.max(started.elapsed());
        }
        if round % 2 == 1 {
            thread::sleep(ms(100));
        }
    }
    // A hang shows up as a call stuck for seconds; these are plain HTTP calls.
    assert!(slowest < Duration::from_secs(3), "an API call under load took {slowest:?}");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let n = w.join().expect("a worker saw corrupted or lost data");
        assert!(n > 5, "worker made only {n} round trips");
    }
    let toxics = client.ok(json!({"op": "toxics", "proxy": "busy"}));
    assert_eq!(toxics, json!({}));
}

#[test]
fn disable_enable_and_reset() {
    let agent = Agent::start(&[]);
    let mut client = Client::new(&agent);
    let listen = client.create("db", echo_server());
    let mut open = connect(listen);
    round_trip(&mut open, b"before");

    client.ok(json!({"op": "disable", "proxy": "db"}));
    assert_eq!(TcpStream::connect(listen).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    let mut buf = [0u8; 8];
    let _ = open.write_all(b"gone?");
    assert!(matches!(open.read(&mut buf), Ok(0) | Err(_)), "open connections close with the proxy");
    assert_eq!(client.ok(json!({"op": "proxies"}))["db"]["enabled"], false);

    client.ok(json!({"op": "enable", "proxy": "db"}));
    round_trip(&mut connect(listen), b"back on the same port");

    // reset: enables every proxy and removes every toxic.
    client.add("db", json!({"type": "latency", "attributes": {"latency": 1500}}));
    client.add("db", json!({"type": "timeout", "stream": "upstream", "attributes": {"timeout": 0}}));
    client.ok(json!({"op": "disable", "proxy": "db"}));
    assert_eq!(client.ok(json!({"op": "reset"})), json!(true));
    let p = &client.ok(json!({"op": "proxies"}))["db"];
    assert_eq!(p["enabled"], true);
    assert_eq!(client.ok(json!({"op": "toxics", "proxy": "db"})), json!({}));
    assert!(round_trip(&mut connect(listen), b"clean") < ms(1000));

    // destroy: gone from the list, port closed.
    client.ok(json!({"op": "destroy", "proxy": "db"}));
    assert_eq!(client.ok(json!({"op": "proxies"})), json!({}));
    assert_eq!(TcpStream::connect(listen).unwrap_err().kind(), ErrorKind::ConnectionRefused);
}

// ---------------------------------------------------------------- HTTP toxics

#[test]
fn http_delay_matches_method_path_and_header_per_request_on_keep_alive() {
    let agent = Agent::start(&[]);
    let mut client = Client::new(&agent);
    let upstream = http_upstream();
    let listen = client.create("api", upstream.addr);
    let http = reqwest::blocking::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let get = |path: &str, canary: bool| {
        let mut req = http.get(format!("http://{listen}{path}"));
        if canary {
            req = req.header("x-canary", "yes");
        }
        let t = Instant::now();
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        assert_eq!(r.text().unwrap(), "ok");
        (status, t.elapsed())
    };
    // The keep-alive connection exists before the toxic does.
    assert_eq!(get("/slow/1", true).0, 200);
    client.add(
        "api",
        json!({"type": "http_delay", "attributes": {"delay": 400, "method": "GET", "path_prefix": "/slow", "header": "X-Canary: yes"}}),
    );
    // The agent counts every request a fault touched: only the matching one.
    let delayed = || agent.faults("api", "http_delay_downstream", "http_delay");
    let (s, t) = get("/slow/2", true);
    assert!(s == 200 && t >= ms(400), "matching request not delayed: {t:?}");
    assert_eq!(delayed(), 1);
    assert_eq!(get("/fast", true).0, 200);
    assert_eq!(delayed(), 1, "other path delayed");
    assert_eq!(get("/slow/3", false).0, 200);
    assert_eq!(delayed(), 1, "request without the header delayed");
    let r = http.post(format!("http://{listen}/slow/4")).header("x-canary", "yes").body("x").send().unwrap();
    assert!(r.status().is_success());
    assert_eq!(delayed(), 1, "POST delayed");
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1, "keep-alive kept through the proxy");
    let paths: Vec<String> = upstream.hits.lock().unwrap().iter().map(|h| h.path.clone()).collect();
    assert_eq!(paths, ["/slow/1", "/slow/2", "/fast", "/slow/3", "/slow/4"]);

    // An aborted request's body (1 MiB, then a chunked one) never reaches the
    // upstream, and the keep-alive connection carries on with the next request.
    client.add("api", json!({"type": "http_abort", "attributes": {"status": 429, "path_prefix": "/upload"}}));
    let r = http.post(format!("http://{listen}/upload")).body(vec![b'z'; 1 << 20]).send().unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let chunks = (0..4).map(|i| Ok::<_, std::io::Error>(format!("part {i}")));
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(chunks.map(|c| c.unwrap()).collect::<String>()));
    let r = http.post(format!("http://{listen}/upload/chunked")).body(body).send().unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(get("/after", false).0, 200);
    // A HEAD answered by the agent carries no body, so the next response still parses.
    client
        .add("api", json!({"type": "http_abort", "name": "no_head", "attributes": {"status": 503, "method": "HEAD"}}));
    assert_eq!(http.head(format!("http://{listen}/after")).send().unwrap().status().as_u16(), 503);
    assert_eq!(get("/after", false).0, 200);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1, "keep-alive kept across aborts");
    let last = upstream.hits.lock().unwrap().last().unwrap().path.clone();
    assert_eq!(last, "/after");
}

/// Pipelined requests: the agent's answer to an aborted one goes out in its
/// turn, between the upstream's responses to the requests around it.
#[test]
fn pipelined_requests_get_their_answers_in_order() {
    let agent = Agent::start(&[]);
    let mut client = Client::new(&agent);
    let upstream = http_upstream();
    let listen = client.create("pipe", upstream.addr);
    client.add("pipe", json!({"type": "http_abort", "attributes": {"status": 503, "path_prefix": "/abort"}}));
    let mut s = connect(listen);
    let requests = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /abort HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /abort/2 HTTP/1.1\r\nHost: x\r\n\r\n\
GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(requests.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        statuses.push(line.split_whitespace().nth(1).unwrap_or("?").to_string());
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
    }
    assert_eq!(statuses, ["200", "503", "200", "503", "200"]);
    let paths: Vec<String> = upstream.hits.lock().unwrap().iter().map(|h| h.path.clone()).collect();
    assert_eq!(paths, ["/a", "/c", "/d"]);
}

/// `Upgrade` (WebSocket and the like) through the HTTP path: after `101`,
/// bytes flow both ways untouched; other protocols with request-like lines
/// (RTSP here) stay plain TCP and reach the upstream byte for byte.
#[test]
fn upgrades_tunnel_and_lookalike_protocols_stay_tcp() {
    let agent = Agent::start(&[]);
    let mut client = Client::new(&agent);
    let upgrading = serve_tcp(|s| {
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut out = s;
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            line.clear();
        }
        out.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let listen = client.create("ws", upgrading);
    let mut s = connect(listen);
    s.write_all(b"GET /socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed before the 101 ended: {:?}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    for msg in [&b"frame one"[..], b"\x81\x05hello", b"binary \x00\xff"] {
        round_trip(&mut s, msg);
    }

    let listen = client.create("rtsp", echo_server());
    let mut s = connect(listen);
    round_trip(&mut s, b"OPTIONS rtsp://camera/stream RTSP/1.0\r\nCSeq: 1\r\n\r\n");
}

/// Half the requests aborted at toxicity 0.5; each aborted request's trace in
/// `seismo serve` holds the agent's fault span as a child of the caller's span.
#[test]
fn http_abort_at_half_toxicity_shows_in_the_victims_traces() {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
    use opentelemetry::Context;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let agent = Agent::start(&["--otlp-endpoint", &server.grpc_url(), "--experiment-id", "exp-42"]);
    let mut client = Client::new(&agent);
    let upstream = http_upstream();
    let listen = client.create("checkout_payments", upstream.addr);
    client.add(
        "checkout_payments",
        json!({"type": "http_abort", "name": "pay_503", "toxicity": 0.5, "attributes": {"status": 503, "path_prefix": "/pay"}}),
    );

    // The caller: a real SDK, its client span's context sent as traceparent.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = rt.enter();
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(server.grpc_url()).build().unwrap();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("checkout").build())
        .build();
    let tracer = provider.tracer("checkout");
    let http = reqwest::blocking::Client::new();
    let (mut aborted, mut passed) = (Vec::new(), Vec::new());
    const N: usize = 200;
    for i in 0..N {
        let span = tracer.span_builder("POST /pay").with_kind(SpanKind::Client).start(&tracer);
        let cx = Context::current_with_span(span);
        let mut carrier = std::collections::HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        let r = http
            .post(format!("http://{listen}/pay/{i}"))
            .header("traceparent", carrier["traceparent"].clone())
            .body("{}")
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let sc = cx.span().span_context().clone();
        let ids = (sc.trace_id().to_string(), sc.span_id().to_string(), carrier["traceparent"].clone());
        if status == 503 {
            assert_eq!(r.headers()["x-seismo-chaos-toxic"], "pay_503");
            cx.span().set_status(Status::error("503"));
            aborted.push(ids);
        } else {
            assert_eq!(status, 200);
            passed.push(ids);
        }
        cx.span().end();
    }
    provider.force_flush().unwrap();

    // About half: binomial(200, 0.5) has sd 7; 60..140 is beyond 5 sd.
    assert!((60..=140).contains(&aborted.len()), "{} of {N} aborted", aborted.len());
    // Passed requests reached the upstream; aborted ones did not.
    let hits = upstream.hits.lock().unwrap().clone();
    let seen: Vec<String> = hits.iter().filter_map(|h| h.traceparent.clone()).collect();
    assert_eq!(hits.len(), passed.len());
    assert!(passed.iter().all(|p| seen.contains(&p.2)));
    assert!(aborted.iter().all(|a| !seen.contains(&a.2)));

    // Every aborted request's trace holds the fault span, child of the caller's span.
    let fault_span = |trace: &Value, parent: &str| -> Option<Value> {
        let spans = trace["data"][0]["spans"].as_array()?;
        spans
            .iter()
            .find(|s| {
                s["operationName"] == "chaos http_abort"
                    && s["references"].as_array().is_some_and(|r| r.iter().any(|r| r["spanID"] == parent))
            })
            .cloned()
    };
    for (trace_id, span_id, _) in &aborted {
        let span = eventually(Duration::from_secs(20), || {
            let (status, trace) = server.get_json(&format!("/api/traces/{trace_id}"));
            if status != 200 {
                return None;
            }
            let caller = trace["data"][0]["spans"].as_array()?.iter().any(|s| s["spanID"] == span_id.as_str());
            fault_span(&trace, span_id).filter(|_| caller)
        });
        let tags: std::collections::HashMap<String, Value> = span["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["key"].as_str().unwrap().to_string(), t["value"].clone()))
            .collect();
        assert_eq!(tags["chaos.proxy"], "checkout_payments");
        assert_eq!(tags["chaos.toxic.name"], "pay_503");
        assert_eq!(tags["chaos.toxic.type"], "http_abort");
        assert_eq!(tags["chaos.toxic.status"], 503);
        assert_eq!(tags["chaos.experiment.id"], "exp-42");
        assert_eq!(tags["http.response.status_code"], 503);
        assert_eq!(tags["error"], true);
        assert_eq!(tags["otel.status_code"], "ERROR");
    }
    // Passed requests' traces carry no fault span.
    for (trace_id, span_id, _) in passed.iter().take(10) {
        let (status, trace) = server.get_json(&format!("/api/traces/{trace_id}"));
        assert_eq!(status, 200, "the caller's span is stored");
        assert!(fault_span(&trace, span_id).is_none());
    }
    // http_delay: its span covers the delay, in the caller's trace.
    client.remove("checkout_payments", "pay_503");
    client
        .add("checkout_payments", json!({"type": "http_delay", "attributes": {"delay": 250, "path_prefix": "/slow"}}));
    let span = tracer.span_builder("GET /slow").with_kind(SpanKind::Client).start(&tracer);
    let cx = Context::current_with_span(span);
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let t = std::time::Instant::now();
    let r =
        http.get(format!("http://{listen}/slow")).header("traceparent", carrier["traceparent"].clone()).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(t.elapsed() >= Duration::from_millis(250));
    let (trace_id, span_id) =
        (cx.span().span_context().trace_id().to_string(), cx.span().span_context().span_id().to_string());
    cx.span().end();
    let delayed = eventually(Duration::from_secs(20), || {
        let (_, trace) = server.get_json(&format!("/api/traces/{trace_id}"));
        trace["data"][0]["spans"].as_array()?.iter().find(|s| s["operationName"] == "chaos http_delay").cloned()
    });
    assert_eq!(delayed["references"][0]["spanID"], span_id.as_str());
    assert!(delayed["duration"].as_u64().unwrap() >= 250_000, "{delayed}");

    // And the service list shows the agent.
    let (_, services) = server.get_json("/api/services");
    assert!(services["data"].as_array().unwrap().iter().any(|s| s == "seismo-chaos"), "{services}");
    assert_eq!(agent.faults("checkout_payments", "pay_503", "http_abort"), aborted.len() as u64);
}

/// Plain TCP: one span per affected connection, in a trace of its own.
#[test]
fn tcp_faults_export_one_span_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let agent = Agent::start(&["--otlp-endpoint", &server.grpc_url()]);
    let mut client = Client::new(&agent);
    let listen = client.create("cache", echo_server());
    client.add("cache", json!({"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}}));
    for _ in 0..3 {
        let mut s = connect(listen);
        s.write_all(b"get k").unwrap();
        let _ = s.read(&mut [0u8; 8]);
    }
    let traces = eventually(Duration::from_secs(20), || {
        let (_, v) = server.get_json("/api/traces?service=seismo-chaos&operation=chaos%20reset_peer&lookback=1h");
        let traces = v["data"].as_array()?.clone();
        (traces.len() == 3).then_some(traces)
    });
    for t in traces {
        let span = &t["spans"][0];
        let tags = span["tags"].as_array().unwrap();
        let tag = |k: &str| tags.iter().find(|t| t["key"] == k).map(|t| t["value"].clone());
        assert_eq!(tag("chaos.proxy"), Some(json!("cache")));
        assert_eq!(tag("client.address"), Some(json!("127.0.0.1")));
        assert_eq!(tag("error"), Some(json!(true)));
    }
}

// ---------------------------------------------------------------- processes

#[test]
fn process_faults_kill_pause_resume_and_stop_cleanly() {
    let agent = Agent::start(&[]);
    let (s, started) = agent.request("POST", "/processes", Some(r#"{"name": "victim", "command": ["sleep", "60"]}"#));
    assert_eq!(s, 201, "{started}");
    let pid = started["pid"].as_u64().unwrap();
    let proc_state = |pid: u64| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next().unwrap()).unwrap_or('-')
    };

    let (s, v) = agent.request("POST", "/processes/victim/pause", None);
    assert_eq!((s, v["state"].as_str()), (200, Some("stopped")), "{v}");
    assert_eq!(proc_state(pid), 'T');
    let (s, v) = agent.request("POST", &format!("/processes/{pid}/resume"), None);
    assert_eq!((s, v["state"].as_str()), (200, Some("running")), "{v}");
    assert_ne!(proc_state(pid), 'T');

    // A process the agent did not start cannot be signalled through it (issue 14).
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    let (s, v) = agent.request("POST", &format!("/processes/{}/kill", other.id()), Some(r#"{"signal": "SIGKILL"}"#));
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not started by this agent"), "{v}");
    assert!(other.try_wait().unwrap().is_none(), "the other process was signalled");
    other.kill().unwrap();
    other.wait().unwrap();

    // Errors name the problem.
    assert_eq!(agent.request("POST", "/processes/victim/kill", Some(r#"{"signal": "SIGNOPE"}"#)).0, 400);
    assert_eq!(agent.request("POST", "/processes/nobody/kill", None).0, 404);
    assert_eq!(agent.request("POST", "/processes/victim/explode", None).0, 404);
    assert_eq!(agent.request("POST", "/processes", Some(r#"{"name": "x"}"#)).0, 400);
    let (s, v) = agent.request("POST", "/processes", Some(r#"{"command": ["/no/such/binary"]}"#));
    assert_eq!(s, 400, "{v}");

    // Kill by name with the default SIGTERM; the list shows it exited.
    let (s, _) = agent.request("POST", "/processes/victim/kill", None);
    assert_eq!(s, 200);
    let list = eventually(Duration::from_secs(5), || {
        let (_, v) = agent.request("GET", "/processes", None);
        (v[0]["state"] == "exited").then_some(v)
    });
    assert!(list[0]["exit"].as_str().unwrap().contains("15"), "{list}");
    // Its pid may belong to someone else now: no more signals to it.
    let (s, v) = agent.request("POST", "/processes/victim/kill", None);
    assert_eq!(s, 410, "{v}");
    assert_eq!(agent.request("POST", &format!("/processes/{pid}/pause"), None).0, 410);
    assert_eq!(agent.request("GET", "/processes/victim", None).0, 200);

    // Graceful stop leaves nothing half-applied: a paused process runs again,
    // proxies stop listening.
    let (_, v) = agent.request("POST", "/processes", Some(r#"{"name": "sleeper", "command": ["sleep", "60"]}"#));
    let sleeper = v["pid"].as_u64().unwrap();
    assert_eq!(agent.request("POST", &format!("/processes/{sleeper}/pause"), None).0, 200);
    assert_eq!(proc_state(sleeper), 'T');
    let (_, p) =
        agent.request("POST", "/proxies", Some(&format!(r#"{{"name": "p", "upstream": "{}"}}"#, echo_server())));
    let listen: SocketAddr = p["listen"].as_str().unwrap().parse().unwrap();
    assert!(agent.stop());
    assert_eq!(TcpStream::connect(listen).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    // The paused command was resumed, then stopped: never left frozen.
    eventually(Duration::from_secs(5), || {
        let state = proc_state(sleeper);
        (state != 'S' && state != 'R' && state != 'T').then_some(())
    });
}

// ---------------------------------------------------------------- gRPC (h2c)

/// gRPC through the agent: passes untouched, then an `http_abort` with
/// `grpc_status` fails the call with that status before it reaches the
/// server, and the fault span lands in the caller's trace.
#[test]
fn grpc_abort_answers_a_grpc_status_and_is_traced() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let agent = Agent::start(&["--otlp-endpoint", &server.grpc_url()]);
    let mut client = Client::new(&agent);
    let listen = client.create("otlp", server.grpc.parse().unwrap());

    let export = |trace: [u8; 16]| common::one_span_export(&trace, &[1, 2, 3, 4, 5, 6, 7, 8], "through-proxy", "work");
    let (passed, aborted, after) = ([0x11u8; 16], [0x22u8; 16], [0x33u8; 16]);
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (first, second, third) = rt.block_on(async {
        let mut grpc = TraceServiceClient::connect(format!("http://{listen}")).await.unwrap();
        let first = grpc.export(export(passed)).await.map(|_| ());
        client.add(
            "otlp",
            json!({"type": "http_abort", "name": "otlp_down", "attributes": {
                "grpc_status": 14, "path_prefix": "/opentelemetry.proto.collector.trace.v1.TraceService/"}}),
        );
        let mut req = tonic::Request::new(export(aborted));
        req.metadata_mut().insert("traceparent", format!("00-{caller_trace}-{caller_span}-01").parse().unwrap());
        let second = grpc.export(req).await.map(|_| ());
        client.remove("otlp", "otlp_down");
        // Same client, same HTTP/2 connection.
        let third = grpc.export(export(after)).await.map(|_| ());
        (first, second, third)
    });
    first.expect("export through the proxy");
    let status = second.expect_err("aborted export");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("seismo chaos"), "{status:?}");
    third.expect("export after the toxic was removed");

    let hex = |b: [u8; 16]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for stored in [passed, after] {
        eventually(Duration::from_secs(10), || {
            (server.get_json(&format!("/api/traces/{}", hex(stored))).0 == 200).then_some(())
        });
    }
    assert_eq!(server.get_json(&format!("/api/traces/{}", hex(aborted))).0, 404, "the aborted export never arrived");

    let span = eventually(Duration::from_secs(20), || {
        let (status, trace) = server.get_json(&format!("/api/traces/{caller_trace}"));
        (status == 200).then(|| trace["data"][0]["spans"][0].clone())
    });
    assert_eq!(span["operationName"], "chaos http_abort");
    assert_eq!(span["references"][0]["spanID"], caller_span);
    let tags = span["tags"].as_array().unwrap();
    let tag = |k: &str| tags.iter().find(|t| t["key"] == k).map(|t| t["value"].clone());
    assert_eq!(tag("rpc.grpc.status_code"), Some(json!(14)));
    assert_eq!(tag("chaos.toxic.grpc_status"), Some(json!(14)));
    assert_eq!(tag("error"), Some(json!(true)));
}
