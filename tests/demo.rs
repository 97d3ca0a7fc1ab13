//! `seismo demo` end to end, on ephemeral ports: within a minute the query
//! API lists the sample services and holds traces in which the agent's fault
//! spans sit beside the services' own spans; `seismo tui --render-once`
//! shows them; SIGINT (Ctrl-C) leaves no process, proxy or listener behind.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::eventually;
use serde_json::Value;

/// The demo process; killed (with the test's failure) if a test ends early.
struct Demo {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    ready: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start(data_dir: &std::path::Path, extra: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seismo"))
            .args(["demo", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0", "--agent-api", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            // Through this process, not inherited: a child the demo failed to stop
            // would otherwise hold the test runner's output open, and hang it.
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting seismo demo");
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("{line}");
            }
        });
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = stdout.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("{line}");
                if line.starts_with("seismo demo ready:") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(60)).expect("seismo demo did not print its ready line");
        Demo { child, stdout, ready }
    }

    fn field(&self, key: &str) -> String {
        self.ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.ready))
            .to_string()
    }

    fn printed(&self, needle: &str) -> bool {
        self.stdout.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

fn get_json(url: &str) -> Option<Value> {
    let r = reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(5)).send().ok()?;
    r.status().is_success().then(|| r.json().ok()).flatten()
}

/// The service names of a Jaeger-model trace.
fn services_of(trace: &Value) -> Vec<String> {
    trace["processes"]
        .as_object()
        .map(|p| p.values().filter_map(|p| p["serviceName"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn render_once(query: &str, dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["tui", "--query-url", query, "--render-once", "160x48"])
        .args(["--log-file", &dir.join("tui.log").display().to_string()])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "seismo tui {args:?} failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    text
}

/// Whether something still accepts connections on `url`'s host:port.
fn listening(url: &str) -> bool {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(500)).is_ok()
}

#[test]
fn demo_shows_services_and_faulted_traces_and_ctrl_c_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(&dir.path().join("data"), &["--duration", "5m"]);
    let query = demo.field("http");
    let agent = demo.field("agent");
    let frontend = demo.field("frontend");
    let pids: Vec<u32> = demo.field("pids").split(',').map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 6, "serve, agent and four services: {pids:?}");

    // The sample services report under their own names.
    eventually(Duration::from_secs(60), || {
        let body = get_json(&format!("{query}/api/services"))?;
        let names: Vec<String> = serde_json::from_value(body["data"].clone()).ok()?;
        ["frontend", "checkout", "payments", "inventory"].iter().all(|s| names.iter().any(|n| n == s)).then_some(())
    });

    // A fault span of the experiment inside a victim's trace: the agent's
    // span and the services' spans share one trace id.
    let faulted = eventually(Duration::from_secs(60), || {
        let body = get_json(&format!("{query}/api/traces?service=seismo-chaos&limit=20&lookback=1h"))?;
        body["data"].as_array()?.iter().find_map(|trace| {
            let names = services_of(trace);
            let fault = trace["spans"].as_array()?.iter().any(|s| {
                s["operationName"].as_str().is_some_and(|n| n.starts_with("chaos "))
                    && s["references"].as_array().is_some_and(|r| !r.is_empty())
            });
            (fault && names.iter().any(|n| n == "checkout") && names.iter().any(|n| n == "frontend"))
                .then(|| trace["traceID"].as_str().unwrap().to_string())
        })
    });

    // The dashboard shows them.
    let screen = render_once(&query, dir.path(), &["--screen", "services"]);
    for service in ["frontend", "checkout", "payments", "inventory"] {
        assert!(screen.contains(service), "{service} on the services screen:\n{screen}");
    }
    let waterfall = render_once(&query, dir.path(), &["--screen", "trace", "--trace-id", &faulted]);
    assert!(waterfall.contains("FAULT"), "the fault in the waterfall:\n{waterfall}");
    assert!(waterfall.contains("frontend: GET /buy"), "the frontend's span:\n{waterfall}");

    // Ctrl-C: the experiment rolls back, everything stops, the demo exits 0.
    let mut demo = demo;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(demo.child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "seismo demo still running 60s after SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "seismo demo exited with {status:?}");
    // The reader thread may still be taking the last lines.
    eventually(Duration::from_secs(10), || demo.printed("seismo demo: stopped").then_some(()));
    assert!(demo.printed("rollback:"), "the experiment's rollback was reported");
    for pid in pids {
        assert_eq!(still_running(pid), None, "child process {pid} is still running");
    }
    for (what, url) in [("query API", &query), ("chaos agent", &agent), ("frontend proxy", &frontend)] {
        assert!(!listening(url), "the {what} still listens on {url}");
    }
}

#[test]
fn a_port_in_use_is_refused_naming_the_port_and_its_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["demo", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--agent-api", "127.0.0.1:0"])
        .args(["--http", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let port = addr.rsplit(':').next().unwrap();
    assert!(stderr.contains(&format!("port {port} ({addr}, --http) is already in use")), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "nothing started");
}

#[test]
fn killing_the_demo_outright_still_stops_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(&dir.path().join("data"), &["--no-traffic", "--no-experiment"]);
    let query = demo.field("http");
    let pids: Vec<u32> = demo.field("pids").split(',').map(|p| p.parse().unwrap()).collect();
    demo.child.kill().unwrap();
    demo.child.wait().unwrap();
    // No chance to clean up: the kernel's parent-death signal stops each child,
    // and a child whose clean stop hangs exits outright 10 s after the demo died.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alive: Vec<String> = pids.iter().filter_map(|&pid| still_running(pid)).collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "children still running 30s after the demo was killed:\n{}",
            alive.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!listening(&query), "the query API still listens on {query}");
}

/// What `pid` is doing when it is running (not gone, not a zombie): its
/// command line, state, and where each of its threads waits in the kernel.
fn still_running(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if stat.contains(") Z ") {
        return None;
    }
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let cmdline = read(proc.join("cmdline")).replace('\0', " ");
    let status = read(proc.join("status"));
    let state = status.lines().find(|l| l.starts_with("State:")).unwrap_or("");
    let mut threads = Vec::new();
    for task in std::fs::read_dir(proc.join("task")).into_iter().flatten().flatten() {
        let (name, wchan) = (read(task.path().join("comm")), read(task.path().join("wchan")));
        threads.push(format!("{}:{}", name.trim(), wchan.trim()));
    }
    Some(format!("pid {pid} ({}) {state}; threads (name:wchan) {}", cmdline.trim(), threads.join(" ")))
}
