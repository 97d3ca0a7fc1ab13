//! `seismo-client`'s [`AgentClient`] against the real `seismo chaos agent`:
//! every call of the Toxiproxy API and of `/processes`, every answer decoded
//! into `seismo-api`'s wire types (a server/wire-type drift fails here as a
//! decode error), the agent's 404/409/400 answers as typed errors carrying
//! its message, and toxics added through the client acting on real traffic
//! through the proxy to a loopback echo server.

#[path = "chaos_agent/agent.rs"]
mod agent;
#[path = "chaos_agent/upstream.rs"]
mod upstream;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use agent::Agent;
use seismo_client::api::toxiproxy::{Attributes, ProxyRequest, Stream, ToxicRequest, TOXIPROXY_API_VERSION};
use seismo_client::{AgentClient, ClientError, ProcessAction};
use serde_json::json;
use upstream::{connect, echo_server, round_trip};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn client(agent: &Agent) -> AgentClient {
    AgentClient::new(&agent.url("")).unwrap().with_timeout(Duration::from_secs(20))
}

fn proxy_request(name: &str, upstream: SocketAddr) -> ProxyRequest {
    ProxyRequest {
        name: Some(name.into()),
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(upstream.to_string()),
        enabled: None,
    }
}

fn toxic_request(kind: &str, attributes: serde_json::Value) -> ToxicRequest {
    ToxicRequest {
        kind: Some(kind.into()),
        attributes: Some(serde_json::from_value::<BTreeMap<_, _>>(attributes).unwrap()),
        ..ToxicRequest::default()
    }
}

/// The error's status and the agent's message, or a panic naming what came instead.
fn api_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, message, .. }) => (status, message),
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[test]
fn every_proxy_and_toxic_call_decodes_its_typed_answer() {
    let agent = Agent::start(&[]);
    let echo = echo_server();
    runtime().block_on(async {
        let chaos = client(&agent);
        let version = chaos.version().await.unwrap();
        assert_eq!(version.version, TOXIPROXY_API_VERSION);
        assert_eq!(version.seismo.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert!(chaos.proxies().await.unwrap().is_empty());

        // Create: port 0 becomes the bound port; the proxy forwards at once.
        let db = chaos.create_proxy(&proxy_request("db", echo)).await.unwrap();
        assert_eq!((db.name.as_str(), db.enabled, db.upstream.clone()), ("db", true, echo.to_string()));
        assert!(db.toxics.is_empty());
        let listen: SocketAddr = db.listen.parse().unwrap();
        assert_ne!(listen.port(), 0);
        round_trip(&mut connect(listen), b"through the proxy");
        assert_eq!(chaos.proxy("db").await.unwrap(), db);

        // Populate: `db` as it is stays (same listen port), `cache` is new.
        let same_db = ProxyRequest { listen: Some(db.listen.clone()), ..proxy_request("db", echo) };
        let populated = chaos.populate(&[same_db, proxy_request("cache", echo)]).await.unwrap();
        let names: Vec<&str> = populated.proxies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["db", "cache"]);
        assert_eq!(populated.proxies[0], db);
        let all = chaos.proxies().await.unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["cache", "db"]);
        assert_eq!(all["db"], db);

        // Update (Toxiproxy's POST /proxies/{name}): disable, then enable again.
        let off = ProxyRequest { enabled: Some(false), ..ProxyRequest::default() };
        let disabled = chaos.update_proxy("cache", &off).await.unwrap();
        assert!(!disabled.enabled);
        assert!(TcpStream::connect(disabled.listen.parse::<SocketAddr>().unwrap()).is_err());
        let on = ProxyRequest { enabled: Some(true), ..ProxyRequest::default() };
        assert!(chaos.update_proxy("cache", &on).await.unwrap().enabled);

        // Toxics: add (defaults filled in), list, show, update, remove.
        let latency = chaos.add_toxic("db", &toxic_request("latency", json!({"latency": 5}))).await.unwrap();
        assert_eq!(
            (latency.name.as_str(), latency.kind.as_str(), latency.stream, latency.toxicity),
            ("latency_downstream", "latency", Stream::Downstream, 1.0)
        );
        assert_eq!(latency.attributes, Attributes { latency: Some(5), jitter: Some(0), ..Attributes::default() });
        let slicer = ToxicRequest {
            name: Some("pieces".into()),
            stream: Some("upstream".into()),
            toxicity: Some(0.5),
            experiment: Some("exp-7".into()),
            ..toxic_request("slicer", json!({"average_size": 8}))
        };
        let pieces = chaos.add_toxic("db", &slicer).await.unwrap();
        assert_eq!(
            (pieces.stream, pieces.toxicity, pieces.experiment.as_deref()),
            (Stream::Upstream, 0.5, Some("exp-7"))
        );
        assert_eq!(pieces.attributes.average_size, Some(8));
        assert!(pieces.attributes.latency.is_none(), "only the slicer's own attributes: {:?}", pieces.attributes);
        // Upstream toxics first, then downstream.
        assert_eq!(chaos.toxics("db").await.unwrap(), [pieces.clone(), latency.clone()]);
        assert_eq!(chaos.toxic("db", "latency_downstream").await.unwrap(), latency);
        assert_eq!(chaos.proxy("db").await.unwrap().toxics, [pieces.clone(), latency]);

        let slower =
            ToxicRequest { toxicity: Some(0.25), ..toxic_request("latency", json!({"latency": 7, "jitter": 2})) };
        let updated = chaos.update_toxic("db", "latency_downstream", &slower).await.unwrap();
        assert_eq!((updated.attributes.latency, updated.attributes.jitter, updated.toxicity), (Some(7), Some(2), 0.25));
        assert_eq!(chaos.toxic("db", "latency_downstream").await.unwrap(), updated);
        chaos.remove_toxic("db", "latency_downstream").await.unwrap();
        assert_eq!(chaos.toxics("db").await.unwrap(), [pieces]);

        // Reset removes every toxic and enables every proxy.
        chaos.update_proxy("db", &off).await.unwrap();
        chaos.reset().await.unwrap();
        let db_now = chaos.proxy("db").await.unwrap();
        assert!(db_now.enabled && db_now.toxics.is_empty(), "{db_now:?}");

        chaos.delete_proxy("cache").await.unwrap();
        assert_eq!(chaos.proxies().await.unwrap().keys().collect::<Vec<_>>(), ["db"]);
    });
}

#[test]
fn error_answers_carry_the_agents_message() {
    let agent = Agent::start(&[]);
    let echo = echo_server();
    runtime().block_on(async {
        let chaos = client(&agent);
        chaos.create_proxy(&proxy_request("db", echo)).await.unwrap();

        let not_found = chaos.proxy("nope").await.unwrap_err();
        assert!(not_found.is_not_found(), "{not_found:?}");
        assert_eq!(not_found.server_message(), Some("proxy not found"));
        assert!(not_found.to_string().ends_with("/proxies/nope answered 404: proxy not found"), "{not_found}");
        assert_eq!(api_error(chaos.toxic("db", "nope").await), (404, "toxic not found".into()));
        assert_eq!(api_error(chaos.toxics("nope").await), (404, "proxy not found".into()));
        assert_eq!(api_error(chaos.remove_toxic("db", "nope").await), (404, "toxic not found".into()));
        assert_eq!(api_error(chaos.delete_proxy("nope").await), (404, "proxy not found".into()));
        let nothing = ProxyRequest::default();
        assert_eq!(api_error(chaos.update_proxy("nope", &nothing).await), (404, "proxy not found".into()));
        let toxic = toxic_request("latency", json!({"latency": 1}));
        assert_eq!(api_error(chaos.add_toxic("nope", &toxic).await), (404, "proxy not found".into()));
        assert_eq!(api_error(chaos.update_toxic("db", "nope", &toxic).await), (404, "toxic not found".into()));

        assert_eq!(
            api_error(chaos.create_proxy(&proxy_request("db", echo)).await),
            (409, "proxy already exists".into())
        );
        chaos.add_toxic("db", &toxic).await.unwrap();
        assert_eq!(api_error(chaos.add_toxic("db", &toxic).await), (409, "toxic already exists".into()));

        let no_upstream = ProxyRequest { upstream: None, ..proxy_request("x", echo) };
        assert_eq!(api_error(chaos.create_proxy(&no_upstream).await), (400, "missing required field: upstream".into()));
        let (status, message) = api_error(chaos.populate(&[no_upstream]).await);
        assert_eq!(status, 400);
        assert!(message.contains("upstream"), "{message}");
        let bogus = toxic_request("bogus", json!({}));
        let (status, message) = api_error(chaos.add_toxic("db", &bogus).await);
        assert_eq!(status, 400);
        assert!(message.starts_with("invalid toxic type: \"bogus\""), "{message}");
        let negative = toxic_request("latency", json!({"latency": -5}));
        let (status, message) =
            api_error(chaos.add_toxic("db", &ToxicRequest { name: Some("n".into()), ..negative }).await);
        assert_eq!(status, 400);
        assert!(message.contains("attribute latency"), "{message}");
        let sideways = ToxicRequest { stream: Some("sideways".into()), ..toxic.clone() };
        let (status, message) = api_error(chaos.add_toxic("db", &sideways).await);
        assert_eq!(status, 400);
        assert!(message.contains("upstream or downstream"), "{message}");

        let (status, message) = api_error(chaos.signal_process("nobody", ProcessAction::Kill, None).await);
        assert_eq!(status, 404);
        assert!(message.contains("nobody"), "{message}");
        assert_eq!(api_error(chaos.remove_process("nobody").await).0, 404);
        let (status, message) = api_error(chaos.start_process(None, &[]).await);
        assert_eq!(status, 400);
        assert!(message.contains("command"), "{message}");
        assert_eq!(api_error(chaos.start_process(None, &["/no/such/binary"]).await).0, 400);

        // Nothing failed half-way: the one toxic added is all there is.
        assert_eq!(chaos.toxics("db").await.unwrap().len(), 1);
    });
}

#[test]
fn toxics_added_through_the_client_act_on_traffic_until_reset() {
    let agent = Agent::start(&[]);
    let echo = echo_server();
    let rt = runtime();
    let chaos = client(&agent);
    let proxy = rt.block_on(chaos.create_proxy(&proxy_request("echo", echo))).unwrap();
    let listen: SocketAddr = proxy.listen.parse().unwrap();

    // Latency: an open connection's round trip takes at least the toxic's delay.
    let mut conn = connect(listen);
    round_trip(&mut conn, b"warm");
    rt.block_on(chaos.add_toxic("echo", &toxic_request("latency", json!({"latency": 300})))).unwrap();
    let took = round_trip(&mut conn, b"slow");
    assert!(took >= Duration::from_millis(300), "the latency toxic did not act: {took:?}");

    // limit_data: the connection closes after 4 bytes come back.
    let limit = ToxicRequest { name: Some("four".into()), ..toxic_request("limit_data", json!({"bytes": 4})) };
    rt.block_on(chaos.add_toxic("echo", &limit)).unwrap();
    let mut limited = connect(listen);
    limited.write_all(b"12345678").unwrap();
    let mut got = Vec::new();
    let _ = limited.read_to_end(&mut got);
    assert_eq!(got, b"1234", "limit_data let {} bytes through", got.len());

    // Reset removes both: all 8 bytes come back, and the connection stays.
    rt.block_on(chaos.reset()).unwrap();
    assert!(rt.block_on(chaos.toxics("echo")).unwrap().is_empty());
    let mut free = connect(listen);
    round_trip(&mut free, b"12345678");
    round_trip(&mut free, b"and more");
}

#[test]
fn process_calls_start_signal_and_remove() {
    let agent = Agent::start(&[]);
    runtime().block_on(async {
        let chaos = client(&agent);
        let started = chaos.start_process(Some("victim"), &["sleep", "60"]).await.unwrap();
        assert_eq!(started.name.as_deref(), Some("victim"));
        assert_eq!(started.command, Some(vec!["sleep".to_string(), "60".to_string()]));
        assert_eq!((started.started_by_agent, started.state.as_str(), &started.exit), (true, "running", &Some(None)));
        let (s, _) = api_error(chaos.start_process(Some("victim"), &["sleep", "60"]).await);
        assert_eq!(s, 409, "a second process of a running name");
        assert_eq!(chaos.processes().await.unwrap(), std::slice::from_ref(&started));
        assert_eq!(chaos.process("victim").await.unwrap(), started);
        let pid = started.pid.to_string();
        assert_eq!(chaos.process(&pid).await.unwrap().pid, started.pid);

        let paused = chaos.signal_process("victim", ProcessAction::Pause, None).await.unwrap();
        assert_eq!((paused.pid, paused.state.as_str()), (started.pid, "stopped"));
        let resumed = chaos.signal_process(&pid, ProcessAction::Resume, None).await.unwrap();
        assert_eq!(resumed.state, "running");
        let (status, message) = api_error(chaos.signal_process("victim", ProcessAction::Kill, Some("SIGNOPE")).await);
        assert_eq!(status, 400);
        assert!(message.contains("unknown signal"), "{message}");
        let killed = chaos.signal_process("victim", ProcessAction::Kill, Some("KILL")).await.unwrap();
        assert_eq!(killed.signal.as_deref(), Some("SIGKILL"));

        let deadline = Instant::now() + Duration::from_secs(10);
        let exited = loop {
            let p = chaos.process("victim").await.unwrap();
            if p.state == "exited" {
                break p;
            }
            assert!(Instant::now() < deadline, "the killed process never showed as exited: {p:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let exit = exited.exit.flatten().expect("an exited process has its exit status");
        assert!(exit.contains('9'), "{exit}");
        // Gone: no more signals to its pid.
        assert_eq!(api_error(chaos.signal_process("victim", ProcessAction::Kill, None).await).0, 410);

        chaos.remove_process("victim").await.unwrap();
        assert!(chaos.process("victim").await.unwrap_err().is_not_found());

        // Removing one that still runs kills it.
        let sleeper = chaos.start_process(None, &["sleep", "60"]).await.unwrap();
        assert_eq!(sleeper.name.as_deref(), Some("sleep"));
        chaos.remove_process("sleep").await.unwrap();
        assert!(chaos.processes().await.unwrap().is_empty());
    });
}
