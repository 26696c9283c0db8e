//! `media-analyzer health`: asks a running server's `/readyz` and exits 0 only on `200`. The
//! container image's `HEALTHCHECK` runs it, so the image needs no curl or shell. Plain HTTP/1.0
//! over `std::net`, bounded in time and in what it reads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};

/// What a health check may read of the answer: the status line is all it needs.
const MAX_ANSWER_BYTES: u64 = 4096;

/// The address to ask for a server listening on `listen` (`--http`): a wildcard address is
/// asked on the loopback of its family.
pub fn local_address(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// GET `path` on `addr`; Ok when the answer's status is 200, else an error naming what came back.
pub fn check(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<()> {
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        bail!("the health path must start with '/' and hold no spaces: {path:?}");
    }
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .with_context(|| format!("cannot connect to {target}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: a request sent in pieces may meet a server that answers and closes after the
    // first piece, and the rest then resets the connection before its answer is read.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("cannot send the request to {target}"))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .with_context(|| format!("no answer from {target}"))?;
    let status_line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let status = status_line.split_whitespace().nth(1);
    match status {
        Some("200") => Ok(()),
        Some(code) if status_line.starts_with("HTTP/") => {
            bail!("{target}{path} answered {code}")
        }
        _ => bail!(
            "{target}{path} did not answer HTTP: {:?}",
            status_line.trim_end()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server that answers the first connection with `answer` and returns the request.
    fn answer_once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // Read the whole request before answering: closing with unread bytes resets the
            // connection, and the client may then never see the answer.
            let mut request = Vec::new();
            let mut buf = [0u8; 256];
            while !request.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(answer).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (addr, handle)
    }

    #[test]
    fn ready_server_passes_and_is_asked_for_the_path() {
        let (addr, server) = answer_once(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready");
        check(&addr, "/readyz", Duration::from_secs(2)).unwrap();
        assert!(
            server
                .join()
                .unwrap()
                .starts_with("GET /readyz HTTP/1.0\r\n")
        );
    }

    #[test]
    fn unready_server_fails_with_its_status() {
        let (addr, _server) = answer_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let e = check(&addr, "/readyz", Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("answered 503"), "{e}");
    }

    #[test]
    fn a_peer_that_is_not_http_fails() {
        let (addr, _server) = answer_once(b"SSH-2.0-OpenSSH\r\n");
        let e = check(&addr, "/readyz", Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("did not answer HTTP"), "{e}");
    }

    #[test]
    fn nobody_listening_fails_quickly() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let e = check(&addr, "/readyz", Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let started = std::time::Instant::now();
        let e = check(&addr, "/readyz", Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains("no answer"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn bad_paths_are_refused_before_connecting() {
        for path in ["readyz", "/a b", "/a\r\nX: y"] {
            assert!(check("127.0.0.1:1", path, Duration::from_millis(100)).is_err());
        }
    }

    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        assert_eq!(
            local_address("0.0.0.0:8080".parse().unwrap()).to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            local_address("[::]:8080".parse().unwrap()).to_string(),
            "[::1]:8080"
        );
        assert_eq!(
            local_address("10.0.0.5:9000".parse().unwrap()).to_string(),
            "10.0.0.5:9000"
        );
    }
}
