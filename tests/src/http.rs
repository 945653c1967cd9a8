//! A tiny blocking HTTP/1.1 client for readiness probes (no async runtime needed).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A minimal HTTP response: status code and body text.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code from the status line.
    pub status: u16,
    /// Everything after the header block, lossily decoded as UTF-8.
    pub body: String,
}

/// Sends `GET <path>` to `127.0.0.1:<port>` with `Connection: close` and reads
/// the whole response. Errors on connect/read failure or a malformed reply.
pub fn get(port: u16, path: &str, timeout: Duration) -> std::io::Result<HttpResponse> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response");
    let status_line = text.lines().next().ok_or_else(bad)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(HttpResponse { status, body })
}

/// The value of the unlabelled counter or gauge `name` on `127.0.0.1:<port>/metrics`;
/// an error when the page cannot be fetched or does not list it.
pub fn metric(port: u16, name: &str) -> std::io::Result<f64> {
    let page = get(port, "/metrics", Duration::from_secs(10))?;
    let missing = || {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{name} not on /metrics (status {})", page.status),
        )
    };
    page.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(missing)
}
