//! `seismo loadgen-proxy`: what a chaos agent proxy costs when no toxic is
//! active. Runs its own loopback upstreams, creates proxies on a running
//! agent through the Toxiproxy API, then measures, in one run:
//! - TCP round trips (64-byte ping-pong on one connection), direct and
//!   through the proxy, interleaved in blocks so machine noise hits both;
//! - HTTP/1.1 keep-alive requests, direct and through the proxy (the agent's
//!   request-by-request HTTP path);
//! - single-stream throughput: one connection writing into a sink upstream.
//!
//! For scale, the same round trips also go through a reference proxy: the
//! simplest one there is, two blocking threads per connection copying bytes.
//! What it adds is the cost of any extra loopback hop on this machine.
//!
//! The agent is driven through `seismo-client`'s [`AgentClient`]; the
//! measurements themselves are blocking socket loops on a blocking thread.
//!
//! Benchmarks only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use seismo_client::api::toxiproxy::ProxyRequest;
use seismo_client::AgentClient;

/// The proxies this benchmark creates (and deletes again) on the agent.
const PROXIES: [&str; 3] = ["bench_echo", "bench_http", "bench_sink"];

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// The chaos agent's API.
    #[arg(long, default_value = "http://127.0.0.1:8474")]
    agent: String,
    /// Round trips per measurement (split into 10 interleaved blocks).
    #[arg(long, default_value_t = 50_000)]
    round_trips: usize,
    /// Bytes for the throughput measurement.
    #[arg(long, default_value_t = 8 << 30)]
    bytes: u64,
    /// Internal: only serve the upstreams and print their addresses.
    #[arg(long, hide = true)]
    upstreams_only: bool,
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    if args.upstreams_only {
        let (echo, http, sink) = upstreams()?;
        let (echo_ref, http_ref) = (reference_proxy(echo)?, reference_proxy(http)?);
        println!("{echo} {http} {sink} {echo_ref} {http_ref}");
        // The upstreams serve on their own threads until the parent kills us.
        return std::future::pending().await;
    }
    // The upstreams live in a process of their own, as real services do: a
    // same-process server would answer faster than any other process could.
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["loadgen-proxy", "--upstreams-only"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let addrs: Vec<SocketAddr> = line.split_whitespace().map(|a| a.parse()).collect::<Result<_, _>>()?;
    if addrs.len() != 5 {
        bail!("upstream process said {line:?}");
    }
    let result = measure_through_agent(&args, &addrs).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Creates the proxies, measures on a blocking thread, deletes the proxies.
async fn measure_through_agent(args: &ProxyArgs, addrs: &[SocketAddr]) -> anyhow::Result<()> {
    let agent = AgentClient::new(&args.agent)?;
    let mut listens = Vec::new();
    for (name, upstream) in PROXIES.into_iter().zip(addrs) {
        listens.push(create_proxy(&agent, name, *upstream).await?);
    }
    let (round_trips, bytes) = (args.round_trips, args.bytes);
    let addrs = addrs.to_vec();
    let result = tokio::task::spawn_blocking(move || measure(round_trips, bytes, &addrs, &listens))
        .await
        .context("the measuring thread panicked")?;
    for name in PROXIES {
        // Best effort: a proxy left behind is harmless and recreated next run.
        let _ = agent.delete_proxy(name).await;
    }
    result
}

fn upstreams() -> anyhow::Result<(SocketAddr, SocketAddr, SocketAddr)> {
    let echo = serve(|mut s| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })?;
    let http = serve(|s| {
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut out = s;
        let mut line = String::new();
        loop {
            // Requests carry no body; the head ends with an empty line.
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" && out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                return;
            }
        }
    })?;
    let sink = serve(|mut s| {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let _ = s.write_all(&total.to_le_bytes());
    })?;
    Ok((echo, http, sink))
}

/// Two threads per connection, each a blocking read/write loop.
fn reference_proxy(upstream: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(upstream) else { continue };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || copy(client, server));
            thread::spawn(move || copy(s2, c2));
        }
    });
    Ok(addr)
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// `addrs`: the upstreams (echo, http, sink) and the reference proxies (echo,
/// http); `proxies`: the agent's proxies of echo, http and sink.
fn measure(round_trips: usize, bytes: u64, addrs: &[SocketAddr], proxies: &[SocketAddr]) -> anyhow::Result<()> {
    let (echo, http, sink, echo_ref, http_ref) = (addrs[0], addrs[1], addrs[2], addrs[3], addrs[4]);
    let (echo_p, http_p, sink_p) = (proxies[0], proxies[1], proxies[2]);

    let blocks = 10;
    let per = (round_trips / blocks).max(1);
    let mut tcp = (Vec::new(), Vec::new(), Vec::new());
    let mut web = (Vec::new(), Vec::new(), Vec::new());
    let (mut d, mut p, mut r) = (connect(echo)?, connect(echo_p)?, connect(echo_ref)?);
    let (mut hd, mut hp, mut hr) = (connect(http)?, connect(http_p)?, connect(http_ref)?);
    // Warm-up: connections, caches, the agent's HTTP detection.
    for s in [&mut d, &mut p, &mut r] {
        ping(s, 1000, &mut Vec::new())?;
    }
    for s in [&mut hd, &mut hp, &mut hr] {
        get(s, 1000, &mut Vec::new())?;
    }
    for _ in 0..blocks {
        ping(&mut d, per, &mut tcp.0)?;
        ping(&mut p, per, &mut tcp.1)?;
        ping(&mut r, per, &mut tcp.2)?;
        get(&mut hd, per, &mut web.0)?;
        get(&mut hp, per, &mut web.1)?;
        get(&mut hr, per, &mut web.2)?;
    }
    report("tcp 64B round trip", &mut tcp.0, &mut tcp.1, &mut tcp.2);
    report("http/1.1 keep-alive request", &mut web.0, &mut web.1, &mut web.2);

    let direct = stream(sink, bytes / 4)?;
    let proxied = stream(sink_p, bytes)?;
    println!(
        "throughput single stream: direct {:.2} GB/s, proxied {:.2} GB/s ({} MiB through the proxy)",
        direct,
        proxied,
        bytes >> 20
    );
    Ok(())
}

fn serve(handler: fn(TcpStream)) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            let _ = s.set_nodelay(true);
            thread::spawn(move || handler(s));
        }
    });
    Ok(addr)
}

/// A fresh proxy `name` on loopback to `upstream` (one left by an earlier
/// run is deleted first); its real listen address.
async fn create_proxy(agent: &AgentClient, name: &str, upstream: SocketAddr) -> anyhow::Result<SocketAddr> {
    match agent.delete_proxy(name).await {
        Err(e) if !e.is_not_found() => {
            return Err(e).context(format!("deleting a leftover proxy {name} on {}", agent.base_url()))
        }
        _ => {}
    }
    let request = ProxyRequest {
        name: Some(name.to_string()),
        listen: Some("127.0.0.1:0".to_string()),
        upstream: Some(upstream.to_string()),
        enabled: None,
    };
    let proxy = agent.create_proxy(&request).await.with_context(|| format!("creating proxy {name}"))?;
    proxy.listen.parse().with_context(|| format!("proxy {name} listens on {:?}", proxy.listen))
}

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

fn ping(s: &mut TcpStream, n: usize, out: &mut Vec<Duration>) -> anyhow::Result<()> {
    let msg = [b'x'; 64];
    let mut got = [0u8; 64];
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut got)?;
        out.push(t.elapsed());
    }
    Ok(())
}

fn get(s: &mut TcpStream, n: usize, out: &mut Vec<Duration>) -> anyhow::Result<()> {
    const REQ: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: seismo-loadgen-proxy\r\n\r\n";
    let mut buf = [0u8; 512];
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(REQ)?;
        // Read until the response's 2-byte body has arrived.
        let mut have = 0;
        loop {
            let k = s.read(&mut buf[have..])?;
            if k == 0 {
                bail!("connection closed mid-response");
            }
            have += k;
            if let Some(head_end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                if have >= head_end + 4 + 2 {
                    break;
                }
            }
        }
        out.push(t.elapsed());
    }
    Ok(())
}

/// GB/s for `bytes` written on one connection, counted by the sink.
fn stream(addr: SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    let chunk = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut total = [0u8; 8];
    s.read_exact(&mut total)?;
    let secs = t.elapsed().as_secs_f64();
    let counted = u64::from_le_bytes(total);
    if counted != bytes {
        bail!("sink counted {counted} bytes of {bytes}");
    }
    Ok(bytes as f64 / secs / 1e9)
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn report(what: &str, direct: &mut [Duration], proxied: &mut [Duration], reference: &mut [Duration]) {
    for v in [&mut *direct, &mut *proxied, &mut *reference] {
        v.sort();
    }
    let us = |v: &[Duration], q: f64| pct(v, q).as_secs_f64() * 1e6;
    println!(
        "{what} ({} samples each): direct p50 {:.1} µs p99 {:.1} µs | agent p50 {:.1} p99 {:.1}, added p50 {:.1} p99 {:.1} | reference proxy p50 {:.1} p99 {:.1}, added p50 {:.1} p99 {:.1}",
        direct.len(),
        us(direct, 0.5),
        us(direct, 0.99),
        us(proxied, 0.5),
        us(proxied, 0.99),
        us(proxied, 0.5) - us(direct, 0.5),
        us(proxied, 0.99) - us(direct, 0.99),
        us(reference, 0.5),
        us(reference, 0.99),
        us(reference, 0.5) - us(direct, 0.5),
        us(reference, 0.99) - us(direct, 0.99),
    );
}
