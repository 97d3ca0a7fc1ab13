//! Process faults (`/processes`): start, kill, pause, resume, and a clean stop.
//! Requests are raw JSON (both forms the agent takes); answers are decoded
//! into `seismo-api`'s wire types, so a shape drift fails here too.

use seismo_api::toxiproxy::{ErrorBody, Process, Proxy};

use super::*;

/// An answer decoded as `T`, or a panic that shows it.
fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v} is not a {}: {e}", std::any::type_name::<T>()))
}

#[test]
fn process_faults_kill_pause_resume_and_stop_cleanly() {
    let agent = Agent::start(&[]);
    let (s, started) = agent.request("POST", "/processes", Some(r#"{"name": "victim", "command": ["sleep", "60"]}"#));
    assert_eq!(s, 201, "{started}");
    let started: Process = decode(&started);
    assert_eq!((started.name.as_deref(), started.started_by_agent), (Some("victim"), true));
    let pid = u64::from(started.pid);
    let proc_state = |pid: u64| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next().unwrap()).unwrap_or('-')
    };

    let (s, v) = agent.request("POST", "/processes/victim/pause", None);
    assert_eq!((s, decode::<Process>(&v).state.as_str()), (200, "stopped"), "{v}");
    assert_eq!(proc_state(pid), 'T');
    let (s, v) = agent.request("POST", &format!("/processes/{pid}/resume"), None);
    assert_eq!((s, decode::<Process>(&v).state.as_str()), (200, "running"), "{v}");
    assert_ne!(proc_state(pid), 'T');

    // A process the agent did not start cannot be signalled through it (issue 14).
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    let (s, v) = agent.request("POST", &format!("/processes/{}/kill", other.id()), Some(r#"{"signal": "SIGKILL"}"#));
    assert_eq!(s, 403, "{v}");
    let e: ErrorBody = decode(&v);
    assert!(e.error.contains("not started by this agent") && e.status == 403, "{v}");
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

    // The command may also be one string.
    let (s, v) = agent.request("POST", "/processes", Some(r#"{"name": "nap", "command": "sleep 60"}"#));
    assert_eq!(s, 201, "{v}");
    assert_eq!(decode::<Process>(&v).command, Some(vec!["sleep".to_string(), "60".to_string()]));
    assert_eq!(agent.request("DELETE", "/processes/nap", None).0, 204);

    // Kill by name with the default SIGTERM; the list shows it exited.
    let (s, v) = agent.request("POST", "/processes/victim/kill", None);
    assert_eq!((s, decode::<Process>(&v).signal.as_deref()), (200, Some("SIGTERM")), "{v}");
    let list: Vec<Process> = eventually(Duration::from_secs(5), || {
        let (_, v) = agent.request("GET", "/processes", None);
        let list: Vec<Process> = decode(&v);
        (list[0].state == "exited").then_some(list)
    });
    let exit = list[0].exit.clone().flatten().unwrap_or_default();
    assert!(exit.contains("15"), "{list:?}");
    // Its pid may belong to someone else now: no more signals to it.
    let (s, v) = agent.request("POST", "/processes/victim/kill", None);
    assert_eq!(s, 410, "{v}");
    assert_eq!(agent.request("POST", &format!("/processes/{pid}/pause"), None).0, 410);
    assert_eq!(agent.request("GET", "/processes/victim", None).0, 200);

    // Graceful stop leaves nothing half-applied: a paused process runs again,
    // proxies stop listening.
    let (_, v) = agent.request("POST", "/processes", Some(r#"{"name": "sleeper", "command": ["sleep", "60"]}"#));
    let sleeper = u64::from(decode::<Process>(&v).pid);
    assert_eq!(agent.request("POST", &format!("/processes/{sleeper}/pause"), None).0, 200);
    assert_eq!(proc_state(sleeper), 'T');
    let (_, p) =
        agent.request("POST", "/proxies", Some(&format!(r#"{{"name": "p", "upstream": "{}"}}"#, echo_server())));
    let listen: SocketAddr = decode::<Proxy>(&p).listen.parse().unwrap();
    assert!(agent.stop());
    assert_eq!(TcpStream::connect(listen).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    // The paused command was resumed, then stopped: never left frozen.
    eventually(Duration::from_secs(5), || {
        let state = proc_state(sleeper);
        (state != 'S' && state != 'R' && state != 'T').then_some(())
    });
}
