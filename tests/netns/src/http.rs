//! One HTTP/1.0 exchange (so no chunked answers) from inside a host's namespace: how the tests
//! and [`crate::Prometheus`] talk to the router's and Prometheus's HTTP APIs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::error::Result;
use crate::host::Host;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the answer may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code (0 when the status line has none).
    pub status: u16,
    /// Status line and headers (shown when an assertion fails).
    pub head: String,
    /// The body, invalid UTF-8 replaced.
    pub body: String,
}

impl Answer {
    /// The body as JSON; panics with status and body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// Sends `method path` with `headers` and `body` (and its `Content-Length`) to `addr` from
/// inside `host`'s namespace and reads the answer to the end. The outer error is entering the
/// namespace, the inner one the exchange (no connection, no answer).
pub fn http(
    host: &Host,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<std::io::Result<Answer>> {
    host.run_in(|| {
        let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        s.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok(Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    })
}

/// `s` percent-encoded for a URL query (unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
