//! Forwarding to the upstream servers named in the host's `resolv.conf` (re-read when it
//! changes), over UDP with a per-server timeout, retrying over TCP when an answer is truncated
//! and the client asked over TCP.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::error::DnsError;

/// How long one upstream server gets to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The `nameserver` addresses of a `resolv.conf` text, except `skip` (our own address, so weft
/// never forwards to itself).
pub fn parse_resolv_conf(text: &str, skip: Option<IpAddr>) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|w| w.split('%').next()?.parse::<IpAddr>().ok())
        .filter(|ip| Some(*ip) != skip)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The upstream servers and how to ask them.
#[derive(Debug)]
pub struct Forwarder {
    path: PathBuf,
    skip: Mutex<Option<IpAddr>>,
    cache: Mutex<(Option<SystemTime>, Vec<SocketAddr>)>,
    timeout: Duration,
}

impl Forwarder {
    /// A forwarder reading `path` (at each forward, when it changed).
    pub fn new(path: &Path, timeout: Duration) -> Forwarder {
        Forwarder {
            path: path.to_path_buf(),
            skip: Mutex::new(None),
            cache: Mutex::new((None, Vec::new())),
            timeout,
        }
    }

    /// Never forwards to `ip` (the address the server listens on).
    pub fn skip(&self, ip: Option<IpAddr>) {
        *self.skip.lock().unwrap_or_else(|p| p.into_inner()) = ip;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).0 = None;
    }

    /// The current upstream servers, re-reading the file when its modification time changed.
    pub fn upstreams(&self) -> Result<Vec<SocketAddr>, DnsError> {
        let err = |source| DnsError::ResolvConf {
            path: self.path.clone(),
            source,
        };
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(err)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != Some(mtime) {
            let text = std::fs::read_to_string(&self.path).map_err(err)?;
            let skip = *self.skip.lock().unwrap_or_else(|p| p.into_inner());
            *cache = (Some(mtime), parse_resolv_conf(&text, skip));
        }
        Ok(cache.1.clone())
    }

    /// Asks the upstream servers in order for `query`; the first answer wins.
    pub async fn forward(
        &self,
        query: Query,
        recursion_desired: bool,
        edns: Option<u16>,
        tcp: bool,
    ) -> Result<Message, DnsError> {
        let servers = self.upstreams()?;
        if servers.is_empty() {
            return Err(DnsError::Upstream(format!(
                "{} names no nameserver",
                self.path.display()
            )));
        }
        let mut msg = Message::new();
        msg.set_id(rand::random());
        msg.set_recursion_desired(recursion_desired);
        msg.add_query(query);
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            msg.set_edns(e);
        }
        let bytes = msg
            .to_bytes()
            .map_err(|e| DnsError::Upstream(e.to_string()))?;
        let mut failures = Vec::new();
        for server in servers {
            let attempt = async {
                let answer = ask_udp(server, &bytes, msg.id()).await?;
                if answer.truncated() && tcp {
                    return ask_tcp(server, &bytes, msg.id()).await;
                }
                Ok(answer)
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => failures.push(format!("{server}: {e}")),
                Err(_) => failures.push(format!("{server}: timed out after {:?}", self.timeout)),
            }
        }
        Err(DnsError::Upstream(failures.join("; ")))
    }
}

async fn ask_udp(server: SocketAddr, bytes: &[u8], id: u16) -> std::io::Result<Message> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    sock.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        match Message::from_bytes(&buf[..n]) {
            Ok(m) if m.id() == id => return Ok(m),
            _ => continue,
        }
    }
}

async fn ask_tcp(server: SocketAddr, bytes: &[u8], id: u16) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    let n = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    stream.read_exact(&mut buf).await?;
    let m = Message::from_bytes(&buf).map_err(std::io::Error::other)?;
    if m.id() != id {
        return Err(std::io::Error::other("answer with another id"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n\
                    nameserver 10.32.0.1\nnameserver bogus\noptions ndots:2\n";
        let got = parse_resolv_conf(text, Some("10.32.0.1".parse().unwrap()));
        assert_eq!(
            got,
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn silent_upstream_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        // TEST-NET-1: nothing answers there.
        std::fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
        let f = Forwarder::new(&path, Duration::from_millis(200));
        assert_eq!(
            f.upstreams().unwrap(),
            vec!["192.0.2.1:53".parse().unwrap()]
        );
        let q = Query::query(
            hickory_proto::rr::Name::from_ascii("example.com.").unwrap(),
            hickory_proto::rr::RecordType::A,
        );
        let started = std::time::Instant::now();
        let err = f.forward(q, true, None, false).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        assert!(matches!(err, DnsError::Upstream(_)));
        let missing = Forwarder::new(&dir.path().join("nope"), UPSTREAM_TIMEOUT)
            .upstreams()
            .unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
