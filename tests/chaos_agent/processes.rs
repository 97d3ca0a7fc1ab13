//! Process faults (`/processes`): start, kill, pause, resume, and a clean stop.

use super::*;

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
