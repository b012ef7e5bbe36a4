//! Where samples are exported: a validated remote_write URL and the extra headers sent with
//! every request, as given on the command line.

use std::fmt;

use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

/// A validated `--metrics-remote-write` URL: `http://HOST[:PORT]/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWriteUrl {
    uri: Uri,
    host: String,
    port: u16,
}

impl RemoteWriteUrl {
    /// Parses and checks a URL (the clap value parser of `--metrics-remote-write`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let uri: Uri = s.parse().map_err(|e| {
            format!("{s:?} is not a URL such as http://host:9090/api/v1/write: {e}")
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "{s:?}: https is not supported yet; use http:// (e.g. through a TLS proxy)"
                ));
            }
            _ => return Err(format!("{s:?}: the URL must start with http://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{s:?}: the URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "{s:?}: credentials in the URL are not supported; pass \
                 --metrics-remote-write-header Authorization=..."
            ));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(format!("{s:?}: the URL has no host"));
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(80);
        Ok(Self { uri, host, port })
    }

    /// Host name or address to connect to.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// TCP port to connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` header value.
    pub(crate) fn authority(&self) -> &str {
        self.uri.authority().map_or("", |a| a.as_str())
    }

    /// Path and query of the requests.
    pub(crate) fn path(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    /// Name of the destination's queue directory: a hash of the URL, stable across restarts.
    pub(crate) fn dir_name(&self) -> String {
        let digest = Sha256::digest(self.uri.to_string().as_bytes());
        hex::encode(&digest[..8])
    }
}

impl fmt::Display for RemoteWriteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.uri)
    }
}

/// An extra header of `--metrics-remote-write-header NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPair {
    /// The header name.
    pub name: HeaderName,
    /// Its value.
    pub value: HeaderValue,
}

impl HeaderPair {
    /// Parses `NAME=VALUE` (the clap value parser of `--metrics-remote-write-header`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("{name:?} is not a header name: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("the value of header {name} is not valid: {e}"))?;
        Ok(Self { name, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_are_split_into_host_port_and_path() {
        let u = RemoteWriteUrl::parse("http://mimir.example:9009/api/v1/push?x=1").expect("url");
        assert_eq!(
            (u.host(), u.port(), u.path(), u.authority()),
            (
                "mimir.example",
                9009,
                "/api/v1/push?x=1",
                "mimir.example:9009"
            )
        );
        let u = RemoteWriteUrl::parse("http://[fd00::1]/write").expect("ipv6");
        assert_eq!((u.host(), u.port(), u.path()), ("fd00::1", 80, "/write"));
        let other = RemoteWriteUrl::parse("http://mimir.example:9009/api/v1/push").expect("url");
        assert_ne!(u.dir_name(), other.dir_name());
        assert_eq!(other.dir_name(), other.clone().dir_name());
        assert_eq!(other.dir_name().len(), 16);
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (bad, why) in [
            ("not a url", "not a URL"),
            ("https://h/api", "https"),
            ("ftp://h/api", "http://"),
            ("/api/v1/push", "http://"),
            ("http://u:p@h/api", "credentials"),
        ] {
            let e = RemoteWriteUrl::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn headers_are_name_equals_value() {
        let h = HeaderPair::parse("Authorization=Bearer a=b").expect("header");
        assert_eq!(h.name, "authorization");
        assert_eq!(h.value, "Bearer a=b");
        assert!(HeaderPair::parse("novalue").is_err());
        assert!(HeaderPair::parse("bad name=x").is_err());
        assert!(HeaderPair::parse("X=a\nb").is_err());
    }
}
