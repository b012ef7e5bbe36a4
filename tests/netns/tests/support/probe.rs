//! A hand-driven mesh client for feeding bad input to a real daemon: raw bytes, or a genuine
//! handshake (weft's own sans-IO [`Handshake`]) followed by bad frames. Runs on a thread inside a
//! host namespace (see `Host::run_in`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand_core::OsRng;
use weft_router::mesh::{Handshake, HandshakeConfig, PeerInfo, PeerName, new_uid};

/// How long the daemon gets to close a connection after bad input.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Connects to the mesh port at `addr`.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("connect to the mesh port");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    stream
}

/// Writes `bytes` and reports whether the daemon then closes the connection within 10 s
/// (anything it sends meanwhile, like gossip, is read and ignored).
pub(crate) fn closed_after(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    if let Err(e) = stream.write_all(bytes) {
        // Already closed by the other side.
        return matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset);
    }
    let deadline = Instant::now() + CLOSE_WITHIN;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Completes a real handshake as a fresh peer, with `password` or none; panics if the daemon
/// refuses it, so later bad frames are known to hit the framing layer.
pub(crate) fn handshake(stream: &mut TcpStream, password: Option<&str>) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let cfg = HandshakeConfig {
        local: PeerInfo {
            name: PeerName::random(&mut OsRng),
            nickname: "probe".to_owned(),
            uid: new_uid(now_ms, &mut OsRng),
            listen_port: 6783,
        },
        password: password.map(|p| p.as_bytes().to_vec()),
    };
    let mut hs = Handshake::new(&cfg, true, &mut OsRng);
    let deadline = Instant::now() + CLOSE_WITHIN;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(bytes) = hs.poll_transmit() {
            stream.write_all(&bytes).expect("write handshake");
        }
        assert!(
            Instant::now() < deadline,
            "handshake did not finish within {CLOSE_WITHIN:?}"
        );
        let n = match stream.read(&mut buf) {
            Ok(0) => panic!("the daemon closed the connection during the handshake"),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => panic!("reading the handshake: {e}"),
        };
        if hs
            .handle_bytes(&buf[..n])
            .expect("daemon's handshake is valid")
            .is_some()
        {
            // The confirm frame may still be queued.
            if let Some(bytes) = hs.poll_transmit() {
                stream.write_all(&bytes).expect("write confirm");
            }
            return;
        }
    }
}
