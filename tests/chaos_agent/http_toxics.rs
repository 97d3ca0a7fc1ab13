//! HTTP toxics on HTTP/1 connections: per-request matching on keep-alive,
//! pipelining, upgrades, and protocols that only look like HTTP.

use super::*;

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
