//! The proxy benchmark's loopback upstreams — an echo server, an HTTP/1.1
//! keep-alive server and a byte sink — and the reference proxy: the simplest
//! proxy there is, two blocking threads per connection copying bytes. What the
//! reference proxy adds is the cost of any extra loopback hop on this machine.
//!
//! They run in a process of their own during a benchmark (see
//! [`crate::proxy`]), as real services do: a same-process server would answer
//! faster than any other process could.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::thread;

use crate::LoadgenError;

/// The HTTP upstream's whole answer: 200 with a 2-byte body.
pub const HTTP_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Where the upstreams and the reference proxies listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstreams {
    /// Echoes every byte back.
    pub echo: SocketAddr,
    /// Answers every request head with [`HTTP_ANSWER`]'s 200 `ok`.
    pub http: SocketAddr,
    /// Reads to the end, then writes the byte count (u64, little endian).
    pub sink: SocketAddr,
    /// The reference proxy in front of `echo`.
    pub echo_reference: SocketAddr,
    /// The reference proxy in front of `http`.
    pub http_reference: SocketAddr,
}

impl Upstreams {
    /// Starts every upstream and reference proxy on loopback, each on
    /// threads of its own that serve until the process ends.
    ///
    /// # Errors
    /// A listener that cannot bind.
    pub fn serve() -> Result<Self, LoadgenError> {
        let echo = serve(echo)?;
        let http = serve(http)?;
        let sink = serve(sink)?;
        Ok(Upstreams {
            echo,
            http,
            sink,
            echo_reference: reference_proxy(echo)?,
            http_reference: reference_proxy(http)?,
        })
    }
}

/// One line: the five addresses, space-separated, in field order — what the
/// upstream process prints for its parent.
impl fmt::Display for Upstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {} {}", self.echo, self.http, self.sink, self.echo_reference, self.http_reference)
    }
}

impl FromStr for Upstreams {
    type Err = LoadgenError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let bad = || LoadgenError::Unexpected(format!("upstream process said {line:?}"));
        let addrs: Vec<SocketAddr> =
            line.split_whitespace().map(|a| a.parse()).collect::<Result<_, _>>().map_err(|_| bad())?;
        match addrs[..] {
            [echo, http, sink, echo_reference, http_reference] => {
                Ok(Upstreams { echo, http, sink, echo_reference, http_reference })
            }
            _ => Err(bad()),
        }
    }
}

fn echo(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn http(s: TcpStream) {
    let Ok(read_half) = s.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut out = s;
    let mut line = String::new();
    loop {
        // Requests carry no body; the head ends with an empty line.
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" && out.write_all(HTTP_ANSWER).is_err() {
            return;
        }
    }
}

fn sink(mut s: TcpStream) {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let _ = s.write_all(&total.to_le_bytes());
}

/// A loopback listener that hands each connection to `handler` on a thread.
fn serve(handler: fn(TcpStream)) -> Result<SocketAddr, LoadgenError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(LoadgenError::io("binding an upstream"))?;
    let addr = listener.local_addr().map_err(LoadgenError::io("binding an upstream"))?;
    thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            let _ = s.set_nodelay(true);
            thread::spawn(move || handler(s));
        }
    });
    Ok(addr)
}

/// Two threads per connection, each a blocking read/write loop.
fn reference_proxy(upstream: SocketAddr) -> Result<SocketAddr, LoadgenError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(LoadgenError::io("binding the reference proxy"))?;
    let addr = listener.local_addr().map_err(LoadgenError::io("binding the reference proxy"))?;
    thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(upstream) else { continue };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_line_round_trips_and_a_short_one_is_refused() {
        let u = Upstreams::serve().unwrap();
        assert_eq!(u.to_string().parse::<Upstreams>().unwrap(), u);
        assert!("127.0.0.1:1 127.0.0.1:2".parse::<Upstreams>().is_err());
        assert!("not addresses".parse::<Upstreams>().is_err());
    }

    #[test]
    fn upstreams_answer_directly_and_through_the_reference_proxy() {
        let u = Upstreams::serve().unwrap();
        for addr in [u.echo, u.echo_reference] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"ping").unwrap();
            let mut got = [0u8; 4];
            s.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
        }
        for addr in [u.http, u.http_reference] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut got = vec![0u8; HTTP_ANSWER.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, HTTP_ANSWER);
        }
        let mut s = TcpStream::connect(u.sink).unwrap();
        s.write_all(&[7u8; 3000]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut count = [0u8; 8];
        s.read_exact(&mut count).unwrap();
        assert_eq!(u64::from_le_bytes(count), 3000);
    }
}
