//! Self-tests of the namespace harness: the underlay carries traffic, link rules work, and the
//! guard leaves nothing behind, even when the test body panics. Needs root, `ip`, `nft`, `ping`.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use weft_netns_tests::{Net, list_netns};

fn ping_ok(net: &Net, from: usize, to: usize) -> bool {
    net.host(from).ping(net.host(to).addr()).expect("ping runs")
}

#[test]
fn hosts_reach_each_other_over_the_underlay() {
    let net = Net::new(3).expect("net");
    assert_eq!(net.host(2).addr(), Ipv4Addr::new(198, 18, 0, 3));
    for a in 0..3 {
        for b in 0..3 {
            if a != b {
                assert!(ping_ok(&net, a, b), "h{a} cannot ping h{b}");
            }
        }
    }
    // The host really is its own namespace: eth0 carries its address, and nothing else but lo.
    let links = net
        .host(1)
        .exec(&["ip", "-o", "addr", "show"])
        .expect("ip addr");
    let text = String::from_utf8_lossy(&links.stdout);
    assert!(
        text.contains("eth0") && text.contains("198.18.0.2/24"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(" inet ")).count(),
        2,
        "{text}"
    );
}

#[test]
fn cut_stops_traffic_and_restore_brings_it_back() {
    let net = Net::new(3).expect("net");
    assert!(ping_ok(&net, 0, 1));
    net.cut(0, 1).expect("cut");
    assert!(!ping_ok(&net, 0, 1), "h0 still reaches h1 after the cut");
    assert!(!ping_ok(&net, 1, 0), "h1 still reaches h0 after the cut");
    assert!(ping_ok(&net, 0, 2), "the cut of h0-h1 also broke h0-h2");
    assert!(ping_ok(&net, 1, 2), "the cut of h0-h1 also broke h1-h2");
    net.restore(0, 1).expect("restore");
    assert!(ping_ok(&net, 0, 1), "h0 does not reach h1 after restore");
    assert!(
        net.restore(0, 1).is_err(),
        "restoring a link that is not cut must fail"
    );
}

#[test]
fn isolate_line_leaves_only_neighbours() {
    let net = Net::new(4).expect("net");
    net.isolate_line().expect("line");
    for a in 0..4usize {
        for b in 0..4usize {
            if a != b {
                assert_eq!(ping_ok(&net, a, b), a.abs_diff(b) == 1, "h{a} -> h{b}");
            }
        }
    }
}

/// Whether a datagram sent from h0 to h1's `port` arrives (sockets opened inside the namespaces).
fn udp_arrives(net: &Net, port: u16) -> bool {
    let to = net.host(1).addr();
    let receiver = net
        .host(1)
        .run_in(move || {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind in h1");
            socket
                .set_read_timeout(Some(Duration::from_secs(1)))
                .expect("timeout");
            socket
        })
        .expect("enter h1");
    net.host(0)
        .run_in(move || {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind in h0");
            socket.send_to(b"probe", (to, port)).expect("send");
        })
        .expect("enter h0");
    let mut buf = [0u8; 16];
    matches!(receiver.recv_from(&mut buf), Ok((5, _)))
}

#[test]
fn blocking_a_udp_port_drops_only_that_port() {
    let net = Net::new(2).expect("net");
    assert!(
        udp_arrives(&net, 6783),
        "UDP does not pass before the block"
    );
    net.block_udp_port(0, 1, 6783).expect("block");
    assert!(
        !udp_arrives(&net, 6783),
        "UDP to the blocked port still passes"
    );
    assert!(
        udp_arrives(&net, 6784),
        "the block also dropped another port"
    );
    assert!(ping_ok(&net, 0, 1), "the UDP block also dropped ICMP");
    net.unblock_udp_port(0, 1, 6783).expect("unblock");
    assert!(udp_arrives(&net, 6783), "UDP does not pass after unblock");
}

#[test]
fn sockets_opened_in_run_in_live_in_the_namespace() {
    let net = Net::new(1).expect("net");
    let addr = net.host(0).addr();
    let bound = net
        .host(0)
        .run_in(move || UdpSocket::bind((addr, 0)).is_ok())
        .expect("enter h0");
    assert!(bound, "the host address is not local inside run_in");
    assert!(
        UdpSocket::bind((addr, 0)).is_err(),
        "the host address leaked into the test's own namespace"
    );
}

#[test]
fn guard_removes_namespaces_and_processes_even_after_a_panic() {
    let mut made = Vec::new();
    let mut pids = Vec::new();
    let mut scratch = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let net = Net::new(2).expect("net");
        net.add_workload(1, "w").expect("workload");
        pids.push(net.host(0).spawn(&["sleep", "600"]).expect("spawn"));
        made = net.namespaces();
        scratch = Some(net.dir().to_path_buf());
        panic!("test body fails on purpose");
    }));
    assert!(outcome.is_err(), "the body should have panicked");
    assert_eq!(made.len(), 4, "underlay, 2 hosts and a workload: {made:?}");
    let left: Vec<String> = list_netns()
        .expect("list")
        .into_iter()
        .filter(|n| made.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived the guard"
        );
    }
}

#[test]
fn guard_cleans_up_on_normal_drop() {
    let net = Net::new(1).expect("net");
    let pid = net.host(0).spawn(&["sleep", "600"]).expect("spawn");
    let made = net.namespaces();
    let dir = net.dir().to_path_buf();
    assert!(list_netns().expect("list").iter().any(|n| made.contains(n)));
    drop(net);
    assert!(
        !list_netns().expect("list").iter().any(|n| made.contains(n)),
        "namespaces left: {made:?}"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "background process survived"
    );
    assert!(!dir.exists(), "scratch dir kept after a passing test");
}

#[test]
fn wait_until_panics_with_what_was_awaited() {
    let net = Net::new(0).expect("net");
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        net.wait_until(Duration::from_millis(300), "the impossible", || false);
    }))
    .expect_err("must time out");
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("the impossible"), "{message}");
}
