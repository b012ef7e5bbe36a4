//! Traffic between workloads, for the data-plane tests: ping (every pair), ARP across hosts,
//! a multicast group across hosts and a checked bulk TCP transfer.

use std::net::Ipv4Addr;
use std::thread;
use std::time::Duration;

use crate::host::Workload;
use crate::net::Net;
use crate::router::{Router, output_text};

/// Whether `w` gets an answer to one ping of `ip` within a second.
pub fn pings(w: &Workload, ip: Ipv4Addr) -> bool {
    w.exec(&["ping", "-q", "-c", "1", "-W", "1", &ip.to_string()])
        .is_ok_and(|o| o.status.success())
}

/// Waits (10 s per pair) until every workload pings every other one; `ip(k)` is workload
/// `k`'s overlay address.
#[track_caller]
pub fn every_pair_pings(net: &Net, workloads: &[Workload], ip: impl Fn(usize) -> Ipv4Addr) {
    for (a, wa) in workloads.iter().enumerate() {
        for b in (0..workloads.len()).filter(|&b| b != a) {
            let to = ip(b);
            net.wait_until(
                Duration::from_secs(10),
                &format!("{} pinging {to}", wa.name()),
                || pings(wa, to),
            );
        }
    }
}

/// Panics unless `from`'s ARP entry for `ip` holds the MAC that `weft ps` on `owner` (the
/// router of the host where `ip` lives) reports for the workload named `name`.
#[track_caller]
pub fn arp_resolves_to(from: &Workload, ip: Ipv4Addr, owner: &Router, name: &str) {
    let ps = owner.cli_ok(&["ps"]);
    let mac = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{name} in weft ps:\n{ps}"));
    let neigh = output_text(
        &from
            .exec(&["ip", "neigh", "show", &ip.to_string()])
            .expect("ip neigh"),
    );
    assert!(
        neigh.contains(mac),
        "{}'s ARP entry for {ip} should hold {name}'s {mac}: {neigh}",
        from.name()
    );
}

const GROUP_RECEIVE: &str = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5007))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton("239.7.7.7"), socket.inet_aton("0.0.0.0")))
s.settimeout(15)
print(s.recvfrom(100)[0].decode(), flush=True)
"#;

const GROUP_SEND: &str = r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
for _ in range(20):
    s.sendto(b"hello-group", ("239.7.7.7", 5007))
    time.sleep(0.25)
"#;

/// Every workload of `receivers` joins group 239.7.7.7; `sender` sends to it. Panics unless
/// every receiver got the group's datagram.
#[track_caller]
pub fn multicast_reaches(sender: &Workload, receivers: &[&Workload]) {
    thread::scope(|scope| {
        let running: Vec<_> = receivers
            .iter()
            .map(|w| scope.spawn(move || w.exec(&["python3", "-c", GROUP_RECEIVE])))
            .collect();
        thread::sleep(Duration::from_secs(1));
        let sent = sender
            .exec(&["python3", "-c", GROUP_SEND])
            .expect("multicast sender");
        assert!(sent.status.success(), "sender: {}", output_text(&sent));
        for (r, w) in running.into_iter().zip(receivers) {
            let out = r
                .join()
                .expect("receiver thread")
                .expect("multicast receiver");
            assert!(
                out.status.success() && output_text(&out).contains("hello-group"),
                "{} did not receive the group's datagram: {}",
                w.name(),
                output_text(&out)
            );
        }
    });
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
    thread::scope(|scope| {
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
