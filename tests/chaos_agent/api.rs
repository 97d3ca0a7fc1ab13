//! The Toxiproxy REST API: shapes, status codes, error bodies, PATCH, populate,
//! disable/enable/reset, and toxic changes under load.

use super::*;

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

/// Every answer of the agent reads back as its `seismo_api::toxiproxy` type and
/// writes out the same JSON again: a server/wire-type drift (a field renamed,
/// added or dropped on one side) fails here.
#[test]
fn every_answer_reads_back_as_its_wire_type() {
    use seismo_api::toxiproxy::{ErrorBody, PopulateFailed, Populated, Process, Proxy, Toxic, Version};

    fn wire<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> T {
        let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v} does not read back: {e}"));
        assert_eq!(&serde_json::to_value(&typed).unwrap(), v, "round trip changed the answer");
        typed
    }

    let agent = Agent::start(&[]);
    let echo = echo_server();
    let body = format!(r#"{{"name": "db", "listen": "127.0.0.1:0", "upstream": "{echo}"}}"#);
    let (s, v) = agent.request("POST", "/proxies", Some(&body));
    assert_eq!(s, 201, "{v}");
    let created: Proxy = wire(&v);
    assert!(created.enabled && created.toxics.is_empty());

    let toxics = [
        r#"{"type": "latency", "stream": "upstream", "attributes": {"latency": 5, "jitter": 1}}"#,
        r#"{"type": "bandwidth", "attributes": {"rate": 1000.0}}"#,
        r#"{"type": "slow_close", "attributes": {"delay": 1}}"#,
        r#"{"type": "timeout", "name": "t", "toxicity": 0.5, "attributes": {"timeout": 0}}"#,
        r#"{"type": "reset_peer", "toxicity": 0, "attributes": {"timeout": 1}}"#,
        r#"{"type": "slicer", "attributes": {"average_size": 8, "size_variation": 2, "delay": 10}}"#,
        r#"{"type": "limit_data", "attributes": {"bytes": 100}}"#,
        r#"{"type": "http_abort", "experiment": "exp-1", "attributes": {"status": 502, "grpc_status": 14, "method": "GET"}}"#,
        r#"{"type": "http_delay", "attributes": {"delay": 3, "path_prefix": "/pay", "header": "x-canary"}}"#,
    ];
    for body in toxics {
        let (s, v) = agent.request("POST", "/proxies/db/toxics", Some(body));
        assert_eq!(s, 200, "{body}: {v}");
        let t: Toxic = wire(&v);
        assert!(TOXIC_TYPES.contains(&t.kind.as_str()), "{v}");
    }
    let (s, v) =
        agent.request("PATCH", "/proxies/db/toxics/latency_upstream", Some(r#"{"attributes": {"jitter": 2}}"#));
    assert_eq!(s, 200, "{v}");
    let patched: Toxic = wire(&v);
    assert_eq!((patched.attributes.latency, patched.attributes.jitter), (Some(5), Some(2)));

    let (_, v) = agent.request("GET", "/proxies/db/toxics", None);
    let listed: Vec<Toxic> = wire(&v);
    assert_eq!(listed.len(), toxics.len());
    let (_, v) = agent.request("GET", "/proxies", None);
    let all: std::collections::BTreeMap<String, Proxy> = wire(&v);
    assert_eq!(all["db"].toxics, listed);
    let (_, v) = agent.request("GET", "/proxies/db", None);
    let _: Proxy = wire(&v);

    let body = format!(r#"[{{"name": "cache", "upstream": "{echo}"}}]"#);
    let (s, v) = agent.request("POST", "/populate", Some(&body));
    assert_eq!(s, 201, "{v}");
    let populated: Populated = wire(&v);
    assert_eq!(populated.proxies[0].name, "cache");
    let taken = created.listen.clone();
    let body = format!(
        r#"[{{"name": "a", "upstream": "{echo}"}}, {{"name": "b", "listen": "{taken}", "upstream": "{echo}"}}]"#
    );
    let (s, v) = agent.request("POST", "/populate", Some(&body));
    assert_eq!(s, 409, "{v}");
    let failed: PopulateFailed = wire(&v);
    assert_eq!((failed.status, failed.proxies.len()), (409, 1));

    let (s, v) = agent.request("GET", "/proxies/ghost", None);
    let error: ErrorBody = wire(&v);
    assert_eq!((s, error.status, error.error.as_str()), (404, 404, "proxy not found"));

    let (_, v) = agent.request("GET", "/version", None);
    let version: Version = wire(&v);
    assert_eq!(version.version, seismo_api::toxiproxy::TOXIPROXY_API_VERSION);

    let (s, v) = agent.request("POST", "/processes", Some(r#"{"name": "napper", "command": ["sleep", "60"]}"#));
    assert_eq!(s, 201, "{v}");
    let started: Process = wire(&v);
    assert_eq!((started.exit.as_ref(), started.started_by_agent), (Some(&None), true));
    let (_, v) = agent.request("GET", "/processes", None);
    let _: Vec<Process> = wire(&v);
    let (s, v) = agent.request("POST", "/processes/napper/kill", Some(r#"{"signal": "KILL"}"#));
    assert_eq!(s, 200, "{v}");
    let killed: Process = wire(&v);
    assert_eq!(killed.signal.as_deref(), Some("SIGKILL"));
    assert!(agent.stop(), "agent exits 0 on SIGTERM");
}

const TOXIC_TYPES: &[&str] = &[
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "http_abort",
    "http_delay",
];
