//! Traffic between workloads, for the data-plane tests: ping and a checked bulk TCP transfer.

use std::net::Ipv4Addr;

use crate::host::Workload;
use crate::router::output_text;

/// Whether `w` gets an answer to one ping of `ip` within a second.
pub fn pings(w: &Workload, ip: Ipv4Addr) -> bool {
    w.exec(&["ping", "-q", "-c", "1", "-W", "1", &ip.to_string()])
        .is_ok_and(|o| o.status.success())
}

const SERVE: &str = r#"
import hashlib, socket
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("", 5008)); l.listen(1); l.settimeout(60)
c, _ = l.accept(); c.settimeout(60)
h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"#;

const SEND: &str = r#"
import hashlib, random, socket, sys, time
deadline = time.time() + 10
while True:
    try:
        s = socket.create_connection((sys.argv[1], 5008), timeout=60)
        break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.1)
r = random.Random(5); h = hashlib.sha256(); n = 0
for _ in range(100):
    b = r.randbytes(1 << 20)
    s.sendall(b); h.update(b); n += len(b)
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print(n, h.hexdigest(), flush=True)
"#;

/// Sends 100 MiB over TCP from `client` to `server` (listening at `server_ip`) and panics
/// unless the server received exactly the bytes sent (count and SHA-256 on both ends).
#[track_caller]
pub fn tcp_transfer_arrives_intact(server: &Workload, server_ip: Ipv4Addr, client: &Workload) {
    std::thread::scope(|scope| {
        let srv = scope.spawn(|| server.exec(&["python3", "-c", SERVE]).expect("server"));
        let sent = client
            .exec(&["python3", "-c", SEND, &server_ip.to_string()])
            .expect("client");
        let got = srv.join().expect("server thread");
        assert!(sent.status.success(), "client: {}", output_text(&sent));
        assert!(got.status.success(), "server: {}", output_text(&got));
        let sent = String::from_utf8_lossy(&sent.stdout).trim().to_string();
        let got = String::from_utf8_lossy(&got.stdout).trim().to_string();
        assert!(sent.starts_with("104857600 "), "client sent {sent}");
        assert_eq!(got, sent, "bytes and sha256 at the server vs the client");
    });
}
