//! `seismo tui` against a real `seismo serve` holding real exported
//! traces, one of them hit by a real chaos agent fault:
//! - `--render-once` prints the services, the trace list (the faulted
//!   trace marked) and the waterfall with every span and the fault marked;
//! - the interactive app under a real terminal (tmux): navigate screens,
//!   open a trace, `q` quits and the shell is usable afterwards.
//!
//! tmux: `scripts/test` installs it; when it is missing the tmux test
//! fails under CI and is skipped (with a message) elsewhere.

#[path = "chaos_agent/agent.rs"]
mod agent;
#[path = "common/mod.rs"]
mod common;
#[path = "chaos_agent/upstream.rs"]
mod upstream;

use std::process::Command;
use std::time::{Duration, Instant};

use agent::Agent;
use common::{eventually, Server};
use serde_json::json;
use upstream::http_upstream;

/// What the system under test left behind: a server with one faulted
/// checkout trace (GET /checkout -> POST /pay aborted 503 by the agent) and
/// one clean one.
struct World {
    server: Server,
    agent: Agent,
    faulted: String,
    clean: String,
    _dir: tempfile::TempDir,
    _upstream: upstream::HttpUpstream,
}

fn world() -> World {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
    use opentelemetry::Context;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let agent = Agent::start(&["--otlp-endpoint", &server.grpc_url(), "--experiment-id", "exp-tui"]);
    let upstream = http_upstream();
    let (status, proxy) = agent.request(
        "POST",
        "/proxies",
        Some(&json!({"name": "payments", "listen": "127.0.0.1:0", "upstream": upstream.addr.to_string()}).to_string()),
    );
    assert_eq!(status, 201, "{proxy}");
    let listen = proxy["listen"].as_str().unwrap().to_string();
    let toxic = json!({"type": "http_abort", "name": "pay_503", "attributes": {"status": 503, "path_prefix": "/pay"}});
    let (status, body) = agent.request("POST", "/proxies/payments/toxics", Some(&toxic.to_string()));
    assert_eq!(status, 200, "{body}");

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
    let mut ids = Vec::new();
    let mut roots = Vec::new();
    for path in ["/pay/1", "/cart/1"] {
        let root = tracer.span_builder("GET /checkout").with_kind(SpanKind::Server).start(&tracer);
        let root_cx = Context::current_with_span(root);
        let call = tracer.build_with_context(
            tracer.span_builder(format!("POST {}", &path[..path.rfind('/').unwrap()])).with_kind(SpanKind::Client),
            &root_cx,
        );
        let cx = root_cx.with_span(call);
        let mut carrier = std::collections::HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        let r = http
            .post(format!("http://{listen}{path}"))
            .header("traceparent", carrier["traceparent"].clone())
            .body("{}")
            .send()
            .unwrap();
        if r.status().as_u16() == 503 {
            cx.span().set_status(Status::error("payment answered 503"));
            root_cx.span().set_status(Status::error("checkout failed"));
        }
        cx.span().end();
        root_cx.span().end();
        ids.push(root_cx.span().span_context().trace_id().to_string());
        roots.push(root_cx.span().span_context().span_id().to_string());
    }
    provider.force_flush().unwrap();
    let (faulted, clean) = (ids[0].clone(), ids[1].clone());
    // Both traces stored, the faulted one with the agent's span too (it exports on its own schedule).
    eventually(Duration::from_secs(30), || {
        let (status, body) = server.get_json(&format!("/api/traces/{faulted}"));
        (status == 200 && body["data"][0]["spans"].as_array().map_or(0, Vec::len) == 3).then_some(())
    });
    eventually(Duration::from_secs(30), || (server.get_json(&format!("/api/traces/{clean}")).0 == 200).then_some(()));
    // The checkout's log line about the failure, on the faulted trace's root span.
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let log = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": now_ns.to_string(), "severityNumber": 17, "severityText": "ERROR",
            "body": {"stringValue": "payment failed: 503 from payments"},
            "traceId": faulted, "spanId": roots[0]
        }]}]
    }]});
    let r = reqwest::blocking::Client::new().post(server.otlp_url("/v1/logs")).json(&log).send().unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    eventually(Duration::from_secs(30), || {
        let (_, body) = server.get_json(&format!("/api/v1/logs?trace_id={faulted}"));
        (body["data"].as_array().map_or(0, Vec::len) == 1).then_some(())
    });
    World { server, agent, faulted, clean, _dir: dir, _upstream: upstream }
}

fn render_once(world: &World, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["tui", "--query-url", &format!("http://{}", world.server.http)])
        .args(["--agent-url", &world.agent.url(""), "--render-once", "160x48"])
        .args(["--log-file", &world._dir.path().join("tui.log").display().to_string()])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "seismo tui {args:?} failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "nothing on stderr (logs go to the file): {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().count(), 48, "one 48-line frame:\n{text}");
    text
}

#[test]
fn render_once_shows_services_traces_and_the_faulted_waterfall() {
    let world = world();

    let services = render_once(&world, &["--screen", "services"]);
    assert!(services.contains("checkout"), "{services}");
    assert!(!services.contains("error:"), "no fetch failed:\n{services}");

    let traces = render_once(&world, &["--screen", "traces"]);
    for id in [&world.faulted, &world.clean] {
        assert!(traces.contains(id.as_str()), "trace {id} listed:\n{traces}");
    }
    let faulted_line = traces.lines().find(|l| l.contains(world.faulted.as_str())).unwrap();
    assert!(faulted_line.contains("FAULT"), "the faulted trace is marked: {faulted_line}");
    let clean_line = traces.lines().find(|l| l.contains(world.clean.as_str())).unwrap();
    assert!(!clean_line.contains("FAULT"), "the clean one is not: {clean_line}");

    let faults_only = render_once(&world, &["--screen", "traces", "--service", "checkout"]);
    assert!(faults_only.contains(world.faulted.as_str()), "{faults_only}");

    let trace = render_once(&world, &["--screen", "trace", "--trace-id", &world.faulted]);
    for span in ["checkout: GET /checkout", "checkout: POST /pay", "⚡ FAULT http_abort on payments"] {
        assert!(trace.contains(span), "span {span:?} in the waterfall:\n{trace}");
    }
    assert!(trace.contains("Fault attribution"), "{trace}");
    assert!(trace.contains("experiment exp-tui"), "{trace}");
    assert!(trace.contains("failed the request"), "{trace}");

    assert!(trace.contains("payment failed: 503 from payments"), "the root span's log beside it:\n{trace}");

    let logs = render_once(&world, &["--screen", "logs"]);
    let line =
        logs.lines().find(|l| l.contains("payment failed: 503 from payments")).unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("ERROR") && line.contains(&world.faulted[..8]), "{line}");

    let chaos = render_once(&world, &["--screen", "chaos"]);
    assert!(chaos.contains("pay_503 http_abort"), "the agent's toxic:\n{chaos}");
    assert!(chaos.contains(&world.faulted[..16]), "the fault span's trace:\n{chaos}");
}

// ---------------------------------------------------------------- tmux

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("running tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Polls the pane until `pred` holds; panics with the pane's text after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "waiting for {what}; the pane shows:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}

fn tmux_available() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

#[test]
fn interactive_app_under_tmux_navigates_opens_a_trace_and_quits() {
    if !tmux_available() {
        assert!(std::env::var_os("CI").is_none(), "tmux is required under CI (scripts/test installs it)");
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let world = world();
    let tmux = Tmux { socket: format!("seismo-tui-test-{}", std::process::id()) };
    let log = world._dir.path().join("tui-interactive.log");
    // A plain shell in a 120x40 terminal; the dashboard runs in it, so after
    // `q` the same shell must take input again.
    tmux.run(&["new-session", "-d", "-x", "120", "-y", "40", "-s", "t", "sh"]);
    let command = format!(
        "{} tui --query-url http://{} --agent-url {} --refresh 1s --log-file {}; echo EXITED=$?",
        env!("CARGO_BIN_EXE_seismo"),
        world.server.http,
        world.agent.url(""),
        log.display()
    );
    tmux.keys(&[&command, "Enter"]);
    let long = Duration::from_secs(30);

    // Services: the service with its stats, and the help bar.
    tmux.wait_for("the services screen", long, |s| {
        s.contains("Services") && s.contains("checkout") && s.contains("? help")
    });
    // `?` shows the keymap; any key closes it.
    tmux.keys(&["?"]);
    tmux.wait_for("the help page", long, |s| s.contains("Help") && s.contains("next screen"));
    tmux.keys(&["Escape"]);
    tmux.wait_for("the help page closed", long, |s| !s.contains("any key closes"));
    // Tab: the trace list, with both traces.
    tmux.keys(&["Tab"]);
    let faulted_prefix = &world.faulted[..16];
    tmux.wait_for("the trace list", long, |s| s.contains("Traces ·") && s.contains(faulted_prefix));
    // `/` search for faulted traces only, then open the first: the waterfall.
    tmux.keys(&["/"]);
    tmux.keys(&["-l", "faults"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the faulted traces", long, |s| {
        s.contains("· faults ·") && s.contains(faulted_prefix) && !s.contains(&world.clean[..16])
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for("the waterfall", long, |s| {
        s.contains("Waterfall") && s.contains("FAULT http_abort") && s.contains("checkout: POST /pay")
    });
    // Esc goes back to the list; Shift-Tab around to chaos.
    tmux.keys(&["Escape"]);
    tmux.wait_for("back on the list", long, |s| s.contains("Traces ·"));
    tmux.keys(&[":"]);
    tmux.keys(&["-l", "chaos"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the chaos screen", long, |s| s.contains("Agent proxies") && s.contains("pay_503"));
    // q quits, the shell prints the exit status and takes commands again.
    tmux.keys(&["q"]);
    tmux.wait_for("the exit status", long, |s| s.contains("EXITED=0"));
    tmux.keys(&["-l", "stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo | tr '\\n' + ; echo"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("a cooked terminal", long, |s| s.contains("icanon+echo+"));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("Quit."), "the dashboard logged to its file:\n{log_text}");

    // SIGTERM ends it the same way (this time with the mouse captured): the
    // shell gets a cooked terminal back.
    tmux.run(&["send-keys", "-R", "-t", "t"]);
    tmux.run(&["clear-history", "-t", "t"]);
    tmux.wait_for("a cleared pane", long, |s| !s.contains("EXITED=0"));
    tmux.keys(&[&command.replace(" tui ", " tui --mouse "), "Enter"]);
    tmux.wait_for("the services screen again", long, |s| s.contains("Services") && s.contains("? help"));
    let shell = tmux.run(&["display", "-p", "-t", "t", "#{pane_pid}"]).trim().to_string();
    let ps = Command::new("ps").args(["-o", "pid=", "--ppid", &shell]).output().unwrap();
    let pid = String::from_utf8_lossy(&ps.stdout).trim().to_string();
    assert!(!pid.is_empty() && !pid.contains(char::is_whitespace), "one child of the shell: {pid:?}");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tmux.wait_for("the exit status after SIGTERM", long, |s| s.contains("EXITED=0"));
    tmux.keys(&["-l", "stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo | tr '\\n' + ; echo"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("a cooked terminal after SIGTERM", long, |s| s.contains("icanon+echo+"));
}

// ---------------------------------------------------------------- bad input

fn tui_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_seismo"))
        .args(["tui", "--query-url", "http://127.0.0.1:9", "--log-file"])
        .arg(std::env::temp_dir().join(format!("seismo-tui-test-{}.log", std::process::id())))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "seismo tui {args:?} should fail");
    assert!(out.stdout.is_empty(), "no frame printed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_malformed_dashboard_is_refused_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tui/tests/fixtures/dashboards/bad_view.toml");
    std::fs::copy(fixture, dir.path().join("mine.toml")).unwrap();
    let err = tui_fails(&["--dashboards", dir.path().to_str().unwrap(), "--render-once", "80x24"]);
    let expected = format!("{}:11: panel[1].view: unknown variant `pie`", dir.path().join("mine.toml").display());
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn a_bad_frame_size_or_screen_is_refused() {
    assert!(tui_fails(&["--render-once", "80"]).contains("expected WIDTHxHEIGHT"));
    assert!(tui_fails(&["--screen", "metrics"]).contains("is not one of services, traces, trace, logs, chaos"));
}
