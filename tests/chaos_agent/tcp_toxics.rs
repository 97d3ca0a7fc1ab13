//! TCP toxics on real traffic: latency, toxicity, bandwidth, slicer, limit_data,
//! timeout, reset_peer and slow_close.

use super::*;

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
