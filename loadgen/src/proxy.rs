//! The proxy benchmark (`seismo loadgen-proxy`): what a chaos agent proxy
//! costs when no toxic is active. It starts its loopback [`Upstreams`] in a
//! process of their own, creates proxies on a running agent through the
//! Toxiproxy API, then measures, in one run:
//! - TCP round trips (64-byte ping-pong on one connection), direct, through
//!   the agent and through the reference proxy, interleaved in blocks so
//!   machine noise hits all three;
//! - HTTP/1.1 keep-alive requests the same three ways (the agent's
//!   request-by-request HTTP path);
//! - single-stream throughput: one connection writing into the sink.
//!
//! The agent is driven through `seismo-client`'s [`AgentClient`]; the
//! measurements themselves are blocking socket loops on a blocking thread.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seismo_client::api::toxiproxy::ProxyRequest;
use seismo_client::AgentClient;

use crate::stats::percentile;
use crate::upstreams::Upstreams;
use crate::LoadgenError;

/// The proxies this benchmark creates (and deletes again) on the agent.
const PROXIES: [&str; 3] = ["bench_echo", "bench_http", "bench_sink"];
/// Round trips are measured in this many interleaved blocks.
const BLOCKS: usize = 10;

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProxyBench {
    /// The chaos agent's API, `http://host:port`.
    pub agent: String,
    /// Round trips per measurement (split into 10 interleaved blocks).
    pub round_trips: usize,
    /// Bytes for the throughput measurement.
    pub bytes: u64,
}

/// One measurement, printed as one line.
#[derive(Debug, Clone)]
pub enum ProxyReport {
    /// Round-trip latency, direct vs through the agent vs the reference proxy.
    Latency(LatencyReport),
    /// Single-stream throughput, direct vs through the agent.
    Throughput(ThroughputReport),
}

/// Latency percentiles of one kind of round trip, three ways.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    /// What was measured (`tcp 64B round trip`, ...).
    pub what: &'static str,
    /// Samples per way.
    pub samples: usize,
    /// (p50, p99) straight to the upstream, µs.
    pub direct_us: (f64, f64),
    /// (p50, p99) through the agent, µs.
    pub agent_us: (f64, f64),
    /// (p50, p99) through the reference proxy, µs.
    pub reference_us: (f64, f64),
}

/// Single-stream throughput.
#[derive(Debug, Clone)]
pub struct ThroughputReport {
    /// Straight into the sink, GB/s.
    pub direct_gbps: f64,
    /// Through the agent, GB/s.
    pub proxied_gbps: f64,
    /// Bytes sent through the agent.
    pub bytes: u64,
}

impl fmt::Display for ProxyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyReport::Latency(r) => {
                let ((d50, d99), (a50, a99), (r50, r99)) = (r.direct_us, r.agent_us, r.reference_us);
                write!(
                    f,
                    "{} ({} samples each): direct p50 {d50:.1} µs p99 {d99:.1} µs | agent p50 {a50:.1} p99 {a99:.1}, added p50 {:.1} p99 {:.1} | reference proxy p50 {r50:.1} p99 {r99:.1}, added p50 {:.1} p99 {:.1}",
                    r.what,
                    r.samples,
                    a50 - d50,
                    a99 - d99,
                    r50 - d50,
                    r99 - d99,
                )
            }
            ProxyReport::Throughput(r) => write!(
                f,
                "throughput single stream: direct {:.2} GB/s, proxied {:.2} GB/s ({} MiB through the proxy)",
                r.direct_gbps,
                r.proxied_gbps,
                r.bytes >> 20
            ),
        }
    }
}

impl ProxyBench {
    /// Starts the upstreams with `upstreams_process` (a command that serves
    /// [`Upstreams::serve`] and prints their address line, e.g. `seismo
    /// loadgen-proxy --upstreams-only`), creates the proxies, measures,
    /// deletes the proxies and stops the upstreams; reports go to `report`.
    ///
    /// # Errors
    /// The upstream process or the agent failing, or a measurement's socket
    /// failing.
    pub async fn run(
        &self,
        upstreams_process: Command,
        mut report: impl FnMut(ProxyReport),
    ) -> Result<(), LoadgenError> {
        let (mut child, upstreams) = start_upstreams(upstreams_process)?;
        let result = self.measure_through_agent(upstreams).await;
        let _ = child.kill();
        let _ = child.wait();
        result?.into_iter().for_each(&mut report);
        Ok(())
    }

    /// Creates the proxies, measures on a blocking thread, deletes the proxies.
    async fn measure_through_agent(&self, upstreams: Upstreams) -> Result<Vec<ProxyReport>, LoadgenError> {
        let agent = AgentClient::new(&self.agent).map_err(LoadgenError::client("the agent URL"))?;
        let mut listens = Vec::new();
        for (name, upstream) in PROXIES.into_iter().zip([upstreams.echo, upstreams.http, upstreams.sink]) {
            listens.push(create_proxy(&agent, name, upstream).await?);
        }
        let bench = self.clone();
        let result = tokio::task::spawn_blocking(move || bench.measure(&upstreams, &listens)).await;
        for name in PROXIES {
            // Best effort: a proxy left behind is harmless and recreated next run.
            let _ = agent.delete_proxy(name).await;
        }
        result?
    }

    /// `proxies`: the agent's proxies of echo, http and sink.
    fn measure(&self, u: &Upstreams, proxies: &[SocketAddr]) -> Result<Vec<ProxyReport>, LoadgenError> {
        let (echo_p, http_p, sink_p) = (proxies[0], proxies[1], proxies[2]);
        let per = (self.round_trips / BLOCKS).max(1);
        let mut tcp = [Vec::new(), Vec::new(), Vec::new()];
        let mut web = [Vec::new(), Vec::new(), Vec::new()];
        let mut pings = [connect(u.echo)?, connect(echo_p)?, connect(u.echo_reference)?];
        let mut gets = [connect(u.http)?, connect(http_p)?, connect(u.http_reference)?];
        // Warm-up: connections, caches, the agent's HTTP detection.
        for s in &mut pings {
            ping(s, 1000, &mut Vec::new())?;
        }
        for s in &mut gets {
            get(s, 1000, &mut Vec::new())?;
        }
        for _ in 0..BLOCKS {
            for (s, out) in pings.iter_mut().zip(&mut tcp) {
                ping(s, per, out)?;
            }
            for (s, out) in gets.iter_mut().zip(&mut web) {
                get(s, per, out)?;
            }
        }
        let direct_gbps = stream(u.sink, self.bytes / 4)?;
        let proxied_gbps = stream(sink_p, self.bytes)?;
        Ok(vec![
            ProxyReport::Latency(latency("tcp 64B round trip", tcp)),
            ProxyReport::Latency(latency("http/1.1 keep-alive request", web)),
            ProxyReport::Throughput(ThroughputReport { direct_gbps, proxied_gbps, bytes: self.bytes }),
        ])
    }
}

/// Runs the upstream process and reads its address line.
fn start_upstreams(mut command: Command) -> Result<(Child, Upstreams), LoadgenError> {
    let mut child =
        command.stdout(Stdio::piped()).spawn().map_err(LoadgenError::io("starting the upstream process"))?;
    let mut line = String::new();
    let read = match child.stdout.take() {
        Some(out) => BufReader::new(out).read_line(&mut line).map_err(LoadgenError::io("reading the upstream process")),
        None => Err(LoadgenError::Unexpected("the upstream process has no stdout".into())),
    };
    match read.and_then(|_| line.parse()) {
        Ok(upstreams) => Ok((child, upstreams)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// A fresh proxy `name` on loopback to `upstream` (one left by an earlier
/// run is deleted first); its real listen address.
async fn create_proxy(agent: &AgentClient, name: &str, upstream: SocketAddr) -> Result<SocketAddr, LoadgenError> {
    match agent.delete_proxy(name).await {
        Err(e) if !e.is_not_found() => {
            return Err(LoadgenError::client(format!("deleting a leftover proxy {name} on {}", agent.base_url()))(e))
        }
        _ => {}
    }
    let request = ProxyRequest {
        name: Some(name.to_string()),
        listen: Some("127.0.0.1:0".to_string()),
        upstream: Some(upstream.to_string()),
        enabled: None,
    };
    let proxy = agent.create_proxy(&request).await.map_err(LoadgenError::client(format!("creating proxy {name}")))?;
    proxy.listen.parse().map_err(|_| LoadgenError::Unexpected(format!("proxy {name} listens on {:?}", proxy.listen)))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, LoadgenError> {
    let io = LoadgenError::io(format!("connecting to {addr}"));
    let s = TcpStream::connect(addr).and_then(|s| {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    });
    s.map_err(io)
}

fn ping(s: &mut TcpStream, n: usize, out: &mut Vec<Duration>) -> Result<(), LoadgenError> {
    let msg = [b'x'; 64];
    let mut got = [0u8; 64];
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&msg).and_then(|()| s.read_exact(&mut got)).map_err(LoadgenError::io("a round trip"))?;
        out.push(t.elapsed());
    }
    Ok(())
}

fn get(s: &mut TcpStream, n: usize, out: &mut Vec<Duration>) -> Result<(), LoadgenError> {
    const REQ: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: seismo-loadgen-proxy\r\n\r\n";
    let mut buf = [0u8; 512];
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(REQ).map_err(LoadgenError::io("an HTTP request"))?;
        // Read until the response's 2-byte body has arrived.
        let mut have = 0;
        loop {
            let k = s.read(&mut buf[have..]).map_err(LoadgenError::io("an HTTP response"))?;
            if k == 0 {
                return Err(LoadgenError::Unexpected("connection closed mid-response".into()));
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
fn stream(addr: SocketAddr, bytes: u64) -> Result<f64, LoadgenError> {
    let mut s = connect(addr)?;
    let chunk = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    let mut total = [0u8; 8];
    let io = (|| {
        s.set_read_timeout(Some(Duration::from_secs(600)))?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        s.shutdown(Shutdown::Write)?;
        s.read_exact(&mut total)
    })();
    io.map_err(LoadgenError::io("streaming into the sink"))?;
    let secs = t.elapsed().as_secs_f64();
    let counted = u64::from_le_bytes(total);
    if counted != bytes {
        return Err(LoadgenError::Unexpected(format!("sink counted {counted} bytes of {bytes}")));
    }
    Ok(bytes as f64 / secs / 1e9)
}

/// Percentiles of the direct, agent and reference samples.
fn latency(what: &'static str, mut samples: [Vec<Duration>; 3]) -> LatencyReport {
    let us = |v: &mut Vec<Duration>| {
        v.sort();
        (percentile(v, 0.5).as_secs_f64() * 1e6, percentile(v, 0.99).as_secs_f64() * 1e6)
    };
    let [direct, agent, reference] = &mut samples;
    LatencyReport {
        what,
        samples: direct.len(),
        direct_us: us(direct),
        agent_us: us(agent),
        reference_us: us(reference),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_read_as_the_benchmark_notes_quote_them() {
        let latency = ProxyReport::Latency(LatencyReport {
            what: "tcp 64B round trip",
            samples: 10,
            direct_us: (10.0, 20.0),
            agent_us: (15.5, 30.0),
            reference_us: (12.0, 25.0),
        });
        assert_eq!(
            latency.to_string(),
            "tcp 64B round trip (10 samples each): direct p50 10.0 µs p99 20.0 µs | agent p50 15.5 p99 30.0, added p50 5.5 p99 10.0 | reference proxy p50 12.0 p99 25.0, added p50 2.0 p99 5.0"
        );
        let throughput =
            ProxyReport::Throughput(ThroughputReport { direct_gbps: 3.456, proxied_gbps: 1.2, bytes: 8 << 30 });
        assert_eq!(
            throughput.to_string(),
            "throughput single stream: direct 3.46 GB/s, proxied 1.20 GB/s (8192 MiB through the proxy)"
        );
    }

    #[test]
    fn measures_through_loopback_upstreams() {
        // The agent's proxies replaced by the upstreams themselves: what is
        // checked is the measuring loop, not the agent (tests/ does that).
        let u = Upstreams::serve().unwrap();
        let bench = ProxyBench { agent: String::new(), round_trips: 20, bytes: 4 << 20 };
        let reports = bench.measure(&u, &[u.echo, u.http, u.sink]).unwrap();
        let ProxyReport::Latency(tcp) = &reports[0] else { panic!("latency first") };
        assert_eq!(tcp.samples, 20);
        let ProxyReport::Throughput(t) = &reports[2] else { panic!("throughput last") };
        assert!(t.proxied_gbps > 0.0);
    }
}
