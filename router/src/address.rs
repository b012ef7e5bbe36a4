//! Peer addresses as users write them: `host[:port]`.

/// The mesh's default TCP port.
pub const DEFAULT_MESH_PORT: u16 = 6783;

/// A peer address that is not of the form `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid peer address {input:?}: {reason}; write it as HOST or HOST:PORT, e.g. 198.18.0.2 or host2:6783"
)]
pub struct AddressError {
    input: String,
    reason: &'static str,
}

/// Validates `input` and returns it as `host:port` (the port defaults to 6783; IPv6 as `[addr]:port`).
pub fn parse_peer(input: &str) -> Result<String, AddressError> {
    let err = |reason| AddressError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if let Ok(sock) = s.parse::<std::net::SocketAddr>() {
        if sock.port() == 0 {
            return Err(err("port 0 is not a port one can dial"));
        }
        return Ok(sock.to_string());
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, DEFAULT_MESH_PORT).to_string());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .map_err(|_| err("the port is not a number from 1 to 65535"))?;
            if port == 0 {
                return Err(err("port 0 is not a port one can dial"));
            }
            (h, port)
        }
        None => (s, DEFAULT_MESH_PORT),
    };
    if host.is_empty() {
        return Err(err("the host is empty"));
    }
    if host.len() > 253 {
        return Err(err("the host name is longer than 253 characters"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !host.trim_end_matches('.').split('.').all(label_ok) {
        return Err(err(
            "the host is neither an IP address nor a valid host name",
        ));
    }
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(parse_peer("198.18.0.2").unwrap(), "198.18.0.2:6783");
        assert_eq!(parse_peer("198.18.0.2:7000").unwrap(), "198.18.0.2:7000");
        assert_eq!(parse_peer("host-2").unwrap(), "host-2:6783");
        assert_eq!(parse_peer("host2.example:1").unwrap(), "host2.example:1");
        assert_eq!(parse_peer("::1").unwrap(), "[::1]:6783");
        assert_eq!(parse_peer("[::1]:7000").unwrap(), "[::1]:7000");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "198.18.0.2:",
            "198.18.0.2:99999",
            "h:0",
            "a b",
            "-x",
            "x..y",
            ":6783",
            "h:p",
        ] {
            let e = parse_peer(bad).unwrap_err().to_string();
            assert!(e.contains("invalid peer address"), "{bad}: {e}");
        }
    }
}
