//! `dhctl-health --check-url URL`: a tiny HTTP/1.1 GET for container HEALTHCHECKs, so an image
//! without curl or wget can probe itself. Plain `http://` only (it probes its own loopback
//! port); blocking std I/O with a deadline on every step, so a hung server fails the probe
//! instead of hanging it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a probe did not get a 200.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    BadUrl(String),
    #[error("cannot reach {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("{target} answered with status {status}")]
    Status { target: String, status: u16 },
    #[error("{target} sent no valid HTTP status line")]
    Garbled { target: String },
}

/// The parts of an `http://host[:port][/path]` URL that a GET needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Endpoint, ProbeError> {
    let rest = url.trim().strip_prefix("http://").ok_or_else(|| {
        ProbeError::BadUrl(
            "--check-url takes an http:// URL, e.g. http://127.0.0.1:3000/health/live".into(),
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // user:password@ in a probe URL is a mistake (the probe sends no credentials): refuse it
    // before anything else looks at the authority, and never echo it (no message below may
    // contain any part of it, the password included).
    if authority.contains('@') {
        return Err(ProbeError::BadUrl(
            "--check-url must not contain a user name or password (user:password@); the \
             health endpoints take none: give http://host:port/path"
                .into(),
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| ProbeError::BadUrl("unclosed [ in the URL's host".into()))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => 80,
        Some(p) => p
            .parse()
            .map_err(|_| ProbeError::BadUrl(format!("bad port {p:?} in --check-url")))?,
    };
    if host.is_empty()
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(ProbeError::BadUrl(
            "--check-url needs a host and a path without spaces".into(),
        ));
    }
    Ok(Endpoint {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// GETs `url` within `timeout` overall and returns Ok only for status 200.
pub fn check(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let target = parse_url(url)?;
    let shown = format!("{}:{}{}", target.host, target.port, target.path);
    let deadline = Instant::now() + timeout;
    let unreachable = |reason: String| ProbeError::Unreachable {
        target: shown.clone(),
        reason,
    };
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut last = String::from("the host name resolved to no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let mut stream = stream.ok_or_else(|| unreachable(last))?;
    let host_header = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: dhctl-health-probe\r\nConnection: close\r\n\r\n",
        target.path
    );
    stream
        .set_write_timeout(Some(remaining(deadline)))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| unreachable(e.to_string()))?;
    // The status line is all we need: read until its end (or 1 KiB), each read under the deadline.
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
        stream
            .set_read_timeout(Some(remaining(deadline)))
            .map_err(|e| unreachable(e.to_string()))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(unreachable(e.to_string())),
        }
    }
    let status = parse_status(&head).ok_or(ProbeError::Garbled {
        target: shown.clone(),
    })?;
    if status == 200 {
        Ok(())
    } else {
        Err(ProbeError::Status {
            target: shown,
            status,
        })
    }
}

/// Time left until `deadline`, never zero (a zero timeout means "none" to std).
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// `HTTP/1.x NNN …` → NNN.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_host_port_and_path() {
        let t = parse_url("http://127.0.0.1:3000/health/live").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 3000, "/health/live")
        );
        let t = parse_url("http://[::1]:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8080, "/")
        );
        let t = parse_url("http://localhost/health").unwrap();
        assert_eq!(t.port, 80);
        assert!(parse_url("https://x/").is_err());
        assert!(parse_url("http://:99/").is_err());
        assert!(parse_url("http://h:notaport/").is_err());
        assert!(parse_url("http://h/a b").is_err());
        // A path may hold an @; the authority may not.
        assert_eq!(parse_url("http://h/a@b").unwrap().path, "/a@b");
    }

    #[test]
    fn userinfo_is_a_usage_error_that_never_echoes_it() {
        for url in [
            "http://u:SECRETX@127.0.0.1:1/",
            "http://u:SECRETX@127.0.0.1/",
            "http://u:SECRETX@[::1]:1/health",
            "http://SECRETX@h",
        ] {
            let err = parse_url(url).unwrap_err();
            assert!(matches!(err, ProbeError::BadUrl(_)), "{url}");
            assert!(!err.to_string().contains("SECRETX"), "{url}: {err}");
        }
    }

    #[test]
    fn status_lines_are_parsed_strictly() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
