//! The HTTP side of a destination: remote_write 1.0 POSTs over one kept-alive HTTP/1.1
//! connection, re-dialled after any error.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use weft_metrics::tenant::TenantId;

use super::destination::{HeaderPair, RemoteWriteUrl};

/// Longest a connect plus one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The remote_write version header (1.0 is announced as 0.1.0, as Prometheus does).
const VERSION_HEADER: HeaderName = HeaderName::from_static("x-prometheus-remote-write-version");
/// The tenant header (`X-Scope-OrgID`), in the lower case `HeaderName` requires.
const TENANT: &str = "x-scope-orgid";
/// Most bytes of an error answer kept for the log.
const MAX_ERROR_BODY: usize = 512;

/// What a POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// The destination answered with this status and (the start of) this body.
    Status(StatusCode, String),
    /// No answer: connection refused, reset, timed out.
    Unreachable(String),
}

/// A client for one destination.
pub(super) struct Client {
    url: RemoteWriteUrl,
    headers: Vec<HeaderPair>,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client posting to `url` with the extra `headers`.
    pub(super) fn new(url: RemoteWriteUrl, headers: Vec<HeaderPair>) -> Self {
        Self {
            url,
            headers,
            conn: None,
        }
    }

    /// POSTs one snappy remote_write body for `tenant`.
    pub(super) async fn post(&mut self, tenant: &TenantId, body: Bytes) -> Answer {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(tenant, body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(reason)) => {
                self.conn = None;
                Answer::Unreachable(reason)
            }
            Err(_) => {
                self.conn = None;
                Answer::Unreachable(format!("no answer within {REQUEST_TIMEOUT:?}"))
            }
        }
    }

    async fn exchange(&mut self, tenant: &TenantId, body: Bytes) -> Result<Answer, String> {
        let request = self.request(tenant, body)?;
        let conn = match &mut self.conn {
            Some(c) if !c.is_closed() => c,
            _ => self.conn.insert(self.dial().await?),
        };
        conn.ready().await.map_err(|e| e.to_string())?;
        let resp = conn
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)])
            .trim()
            .to_owned();
        Ok(Answer::Status(status, text))
    }

    fn request(&self, tenant: &TenantId, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let mut req = Request::post(self.url.path());
        if let Some(h) = req.headers_mut() {
            for extra in &self.headers {
                h.append(extra.name.clone(), extra.value.clone());
            }
            let host = HeaderValue::from_str(self.url.authority()).map_err(|e| e.to_string())?;
            let tenant = HeaderValue::from_str(tenant.as_str()).map_err(|e| e.to_string())?;
            h.insert(HOST, host);
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            h.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
            h.insert(VERSION_HEADER, HeaderValue::from_static("0.1.0"));
            h.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("weft/", env!("CARGO_PKG_VERSION"))),
            );
            h.insert(HeaderName::from_static(TENANT), tenant);
        }
        req.body(Full::new(body)).map_err(|e| e.to_string())
    }

    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect((self.url.host(), self.url.port()))
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.url.authority()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            // The connection ends with an error when the peer closes it; the next post dials.
            let _ = conn.await;
        });
        Ok(sender)
    }
}
