//! End-to-end data plane tests (issue 5, the sleeve and the path choice): real `weft` routers
//! in network namespaces. With a password every workload frame crosses the underlay sealed in
//! the UDP 6783 sleeve; without one, a peer whose VXLAN port (UDP 6784) is blocked moves to the
//! sleeve and back. Needs root, `ip`, `nft`, `ping`, `python3`, `tcpdump`, and
//! `cargo build -p weft-router` first.

use std::net::Ipv4Addr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use weft_netns_tests::{
    Net, Router, Workload, arp_resolves_to, every_pair_pings, full_mesh, multicast_reaches,
    output_text, pings, tcp_transfer_arrives_intact,
};

/// Time a fresh mesh of a few routers gets to converge.
const CONVERGE: Duration = Duration::from_secs(30);
/// How fast traffic must move between paths when the fast path breaks or heals.
const SWITCH: Duration = Duration::from_secs(5);
/// What the tests send to find in a capture.
const MARKER: &str = "weft-plaintext-marker-7f3a";

fn overlay_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, n)
}

fn attach(router: &Router, w: &Workload, ip: Ipv4Addr) {
    router.cli_ok(&[
        "attach",
        &format!("{ip}/12"),
        "--netns",
        w.ns(),
        "--name",
        w.name(),
    ]);
}

/// The `weft status connections` line about the router at `ip`.
fn connection_line(router: &Router, ip: Ipv4Addr) -> String {
    let out = router.cli_ok(&["status", "connections"]);
    out.lines()
        .find(|l| l.contains(&format!("{ip}:")))
        .unwrap_or_else(|| panic!("no connection to {ip} in:\n{out}"))
        .to_string()
}

fn path_to(router: &Router, ip: Ipv4Addr) -> String {
    let line = connection_line(router, ip);
    line.split_whitespace().nth(3).unwrap_or("").to_string()
}

/// The sleeve counter `key` (`garbage`, `rx_frames`, `gso_trains`, ...) from `weft report`.
fn sleeve_counter(router: &Router, key: &str) -> u64 {
    let report = router.report().expect("report");
    report.raw()["data_path"]["sleeve"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("data_path.sleeve.{key} in the report"))
}

/// The sleeve's garbage counter.
fn garbage(router: &Router) -> u64 {
    sleeve_counter(router, "garbage")
}

/// The sleeve's UDP offload counters from `weft report`: GSO trains sent and GRO-coalesced
/// buffers received.
fn udp_offloads(router: &Router) -> (u64, u64) {
    (
        sleeve_counter(router, "gso_trains"),
        sleeve_counter(router, "gro_batches"),
    )
}

/// IP datagrams the hosts' kernels had to reassemble from fragments (`ReasmReqds`).
fn reassemblies(net: &Net) -> u64 {
    net.hosts()
        .iter()
        .map(|h| {
            let out = output_text(&h.exec(&["cat", "/proc/net/snmp"]).expect("snmp"));
            let mut ip = out.lines().filter(|l| l.starts_with("Ip:"));
            let (names, values) = (ip.next().unwrap_or(""), ip.next().unwrap_or(""));
            names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(n, _)| *n == "ReasmReqds")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .expect("Ip: ReasmReqds in /proc/net/snmp")
        })
        .sum()
}

/// Asserts that the sleeve's traffic while `transfer` ran rode UDP GSO trains, arrived in
/// GRO-coalesced buffers (the kernel has both since 5.0; veths pass trains on whole) and was
/// never IP-fragmented on the underlay (the sleeve cuts TCP super-segments to the MTU).
fn uses_udp_offloads(net: &Net, routers: &[Router], transfer: impl FnOnce()) {
    let fragmented = reassemblies(net);
    let sum = |rs: &[Router]| {
        rs.iter()
            .map(udp_offloads)
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    };
    let before = sum(routers);
    transfer();
    let after = sum(routers);
    let (trains, batches) = (after.0 - before.0, after.1 - before.1);
    eprintln!("during the transfer: {trains} UDP GSO trains sent, {batches} GRO batches received");
    assert!(trains > 0, "no UDP GSO train was sent during the transfer");
    assert!(
        batches > 0,
        "no UDP GRO batch was received during the transfer"
    );
    let fragmented = reassemblies(net) - fragmented;
    assert_eq!(fragmented, 0, "sleeve datagrams were IP-fragmented");
}

/// Runs `cmd` in the underlay namespace.
fn underlay(net: &Net, cmd: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", net.underlay()]).args(cmd);
    c
}

/// Captures UDP to `port` on the underlay bridge while `traffic` runs; returns the raw capture.
fn capture(net: &Net, port: u16, traffic: impl FnOnce()) -> Vec<u8> {
    let file = net.dir().join(format!("capture-{port}.pcap"));
    let filter = format!("udp port {port}");
    let mut dump = underlay(
        net,
        &[
            "tcpdump",
            "-i",
            "br0",
            "-U",
            "-s",
            "0",
            "-w",
            file.to_str().expect("utf-8 path"),
            &filter,
        ],
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("tcpdump");
    thread::sleep(Duration::from_secs(1));
    traffic();
    thread::sleep(Duration::from_millis(500));
    let _ = dump.kill();
    let _ = dump.wait();
    std::fs::read(&file).expect("capture file")
}

/// Sends the marker from `from` to `to_ip` as UDP datagrams and waits until `to` got one.
fn send_marker(from: &Workload, to: &Workload, to_ip: Ipv4Addr) {
    const RECEIVE: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 5009)); s.settimeout(10)
print(s.recvfrom(200)[0].decode(), flush=True)
"#;
    let send = format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range(10):\n    s.sendto(b'{MARKER}', ('{to_ip}', 5009)); time.sleep(0.1)\n"
    );
    thread::scope(|scope| {
        let rx = scope.spawn(|| to.exec(&["python3", "-c", RECEIVE]).expect("receiver"));
        thread::sleep(Duration::from_millis(500));
        let sent = from.exec(&["python3", "-c", &send]).expect("sender");
        assert!(sent.status.success(), "{}", output_text(&sent));
        let got = rx.join().expect("receiver thread");
        assert!(
            output_text(&got).contains(MARKER),
            "marker did not arrive: {}",
            output_text(&got)
        );
    });
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// With a password: 3 hosts × 2 workloads over the encrypted sleeve only (no VXLAN device);
/// every pair pings, 100 MiB arrive intact (in UDP GSO trains and GRO batches, unfragmented), the underlay shows no plaintext, garbage datagrams
/// on UDP 6783 are dropped and counted, and a restarted router's workloads reconnect.
#[test]
fn encrypted_sleeve_three_hosts() {
    let net = Net::new(3).expect("net");
    let pw = ["--password", "sleeve-test-secret"];
    let routers = [
        net.launch(0, &[], &pw),
        net.launch(1, &[0], &pw),
        net.launch(2, &[0, 1], &pw),
    ];
    net.wait_until(CONVERGE, "a full mesh of 3", || full_mesh(&routers));
    let workloads: Vec<Workload> = (0..6)
        .map(|k| net.add_workload(k / 2, &format!("w{k}")).expect("workload"))
        .collect();
    for (k, w) in workloads.iter().enumerate() {
        attach(&routers[k / 2], w, overlay_ip(k as u8 + 1));
    }
    every_pair_pings(&net, &workloads, |k| overlay_ip(k as u8 + 1));

    for (i, r) in routers.iter().enumerate() {
        for j in (0..3).filter(|&j| j != i) {
            let line = connection_line(r, net.host(j).addr());
            assert!(
                line.contains(" sleeve ") && line.contains(" encrypted ") && line.contains("mtu="),
                "h{i} -> h{j}: {line}"
            );
        }
        let links = output_text(&net.host(i).exec(&["ip", "-o", "link"]).expect("ip link"));
        assert!(
            !links.contains("vxlan-weft"),
            "h{i} has a VXLAN device with a password"
        );
        assert!(
            links.contains("weft-sleeve"),
            "h{i} lacks the sleeve TAP port"
        );
    }

    let seen = capture(&net, 6783, || {
        send_marker(&workloads[0], &workloads[2], overlay_ip(3))
    });
    assert!(
        seen.len() > 1000,
        "the capture saw no sleeve traffic ({} bytes)",
        seen.len()
    );
    assert!(
        !contains(&seen, MARKER),
        "plaintext marker visible on the underlay"
    );

    uses_udp_offloads(&net, &routers, || {
        tcp_transfer_arrives_intact(&workloads[4], overlay_ip(5), &workloads[1])
    });

    // Garbage to h0's sleeve port, from a peer's address (so it reaches the decryption) and
    // from the underlay bridge's own namespace: dropped, counted, harmless.
    let before = garbage(&routers[0]);
    const GARBAGE: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(500):
    b = os.urandom(1 + i % 300)
    if i % 3 == 0: b = bytes([1]) + b
    if i % 3 == 1: b = bytes([2]) + b
    s.sendto(b, (sys.argv[1], 6783))
"#;
    let h0 = net.host(0).addr().to_string();
    let out = net
        .host(1)
        .exec(&["python3", "-c", GARBAGE, &h0])
        .expect("garbage sender");
    assert!(out.status.success(), "{}", output_text(&out));
    net.wait_until(Duration::from_secs(5), "h0 counting the garbage", || {
        garbage(&routers[0]) >= before + 500
    });
    assert!(routers[0].is_running(), "garbage crashed the router");
    assert!(pings(&workloads[0], overlay_ip(3)) || pings(&workloads[0], overlay_ip(3)));

    // A restarted router's workloads are reachable again over fresh sessions.
    routers[1].kill9().expect("kill h1");
    routers[1].restart().expect("restart h1");
    net.wait_until(CONVERGE, "the mesh after the restart", || {
        full_mesh(&routers)
    });
    for (a, b) in [(0usize, 2u8), (2, 0), (3, 4), (5, 3)] {
        let ip = overlay_ip(b + 1);
        net.wait_until(
            Duration::from_secs(15),
            &format!("w{a} pinging {ip} after h1 restarted"),
            || pings(&workloads[a], ip),
        );
    }
}

/// Without a password and with UDP 6784 dropped between every pair of hosts: every peer moves
/// to the unencrypted sleeve, and 3 hosts × 2 workloads talk over it as over one switch (every
/// pair pings, ARP resolves across hosts, a multicast group receives across hosts, 100 MiB arrive
/// intact, in UDP GSO trains and GRO batches, unfragmented); a restarted router's workloads reconnect over the sleeve.
#[test]
fn unencrypted_sleeve_three_hosts() {
    let net = Net::new(3).expect("net");
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        net.block_udp_port(a, b, 6784).expect("block 6784");
    }
    let routers = [
        net.launch(0, &[], &[]),
        net.launch(1, &[0], &[]),
        net.launch(2, &[0, 1], &[]),
    ];
    net.wait_until(CONVERGE, "a full mesh of 3", || full_mesh(&routers));
    let addrs: Vec<Ipv4Addr> = (0..3).map(|i| net.host(i).addr()).collect();
    let on_sleeve = |i: usize| {
        (0..3)
            .filter(|&j| j != i)
            .all(|j| path_to(&routers[i], addrs[j]) == "sleeve")
    };
    net.wait_until(CONVERGE, "every peer on the sleeve", || {
        (0..3).all(on_sleeve)
    });
    for (i, r) in routers.iter().enumerate() {
        for j in (0..3).filter(|&j| j != i) {
            let line = connection_line(r, addrs[j]);
            assert!(
                line.contains(" sleeve ") && line.contains(" unencrypted "),
                "h{i} -> h{j}: {line}"
            );
        }
    }
    let workloads: Vec<Workload> = (0..6)
        .map(|k| net.add_workload(k / 2, &format!("w{k}")).expect("workload"))
        .collect();
    for (k, w) in workloads.iter().enumerate() {
        attach(&routers[k / 2], w, overlay_ip(k as u8 + 1));
    }
    every_pair_pings(&net, &workloads, |k| overlay_ip(k as u8 + 1));
    arp_resolves_to(&workloads[0], overlay_ip(5), &routers[2], "w4");
    arp_resolves_to(&workloads[5], overlay_ip(3), &routers[1], "w2");
    multicast_reaches(&workloads[0], &[&workloads[5], &workloads[2]]);
    let frames_before: u64 = routers.iter().map(rx_frames).sum();
    uses_udp_offloads(&net, &routers, || {
        tcp_transfer_arrives_intact(&workloads[4], overlay_ip(5), &workloads[1])
    });
    // 100 MiB cannot cross in fewer than 1600 frames of at most 64 KiB (in fact the sleeve
    // cuts TCP super-segments into MTU-sized frames, so there are many more).
    let carried = routers.iter().map(rx_frames).sum::<u64>() - frames_before;
    assert!(
        carried >= 1600,
        "only {carried} frames crossed the sleeve: the transfer went another way"
    );
    assert!(
        (0..3).all(on_sleeve),
        "a peer left the sleeve while UDP 6784 was blocked"
    );

    routers[1].kill9().expect("kill h1");
    routers[1].restart().expect("restart h1");
    net.wait_until(CONVERGE, "the mesh after the restart", || {
        full_mesh(&routers)
    });
    net.wait_until(CONVERGE, "every peer on the sleeve again", || {
        (0..3).all(on_sleeve)
    });
    for (a, b) in [(0usize, 2u8), (2, 0), (3, 4), (5, 3)] {
        let ip = overlay_ip(b + 1);
        net.wait_until(
            Duration::from_secs(15),
            &format!("w{a} pinging {ip} after h1 restarted"),
            || pings(&workloads[a], ip),
        );
    }
}

/// Frames the router's sleeve received from peers, from `weft report`.
fn rx_frames(router: &Router) -> u64 {
    sleeve_counter(router, "rx_frames")
}

/// Without a password: peers use VXLAN; blocking UDP 6784 between h0 and h1 moves their
/// traffic to the (unencrypted) sleeve within 5 s, h2 stays on VXLAN, and unblocking brings it
/// back. A capture proves which port carried the traffic.
#[test]
fn fallback_to_the_sleeve_and_back() {
    let net = Net::new(3).expect("net");
    let routers = [
        net.launch(0, &[], &[]),
        net.launch(1, &[0], &[]),
        net.launch(2, &[0, 1], &[]),
    ];
    net.wait_until(CONVERGE, "a full mesh of 3", || full_mesh(&routers));
    let workloads: Vec<Workload> = (0..3)
        .map(|k| net.add_workload(k, &format!("w{k}")).expect("workload"))
        .collect();
    for (k, w) in workloads.iter().enumerate() {
        attach(&routers[k], w, overlay_ip(k as u8 + 1));
    }
    let (h0, h1, h2) = (net.host(0).addr(), net.host(1).addr(), net.host(2).addr());
    net.wait_until(Duration::from_secs(10), "every peer on fastdp", || {
        [(0, h1), (0, h2), (1, h0), (2, h0)]
            .iter()
            .all(|&(i, ip)| path_to(&routers[i], ip) == "fastdp")
    });
    every_pair_pings(&net, &workloads, |k| overlay_ip(k as u8 + 1));
    let line = connection_line(&routers[0], h1);
    assert!(
        line.contains(" unencrypted ") && line.contains("mtu=1450"),
        "{line}"
    );
    // On the fast path, the marker crosses in VXLAN (UDP 6784), in the clear.
    let vxlan = capture(&net, 6784, || {
        send_marker(&workloads[0], &workloads[1], overlay_ip(2))
    });
    assert!(
        contains(&vxlan, MARKER),
        "fast path traffic not seen on UDP 6784"
    );

    net.block_udp_port(0, 1, 6784).expect("block 6784");
    let blocked = Instant::now();
    net.wait_until(SWITCH, "h0 and h1 moving each other to the sleeve", || {
        path_to(&routers[0], h1) == "sleeve" && path_to(&routers[1], h0) == "sleeve"
    });
    net.wait_until(
        SWITCH.saturating_sub(blocked.elapsed()) + Duration::from_secs(2),
        "w0 pinging w1 over the sleeve",
        || pings(&workloads[0], overlay_ip(2)),
    );
    assert!(pings(&workloads[1], overlay_ip(1)));
    assert_eq!(path_to(&routers[0], h2), "fastdp", "h2 must be unaffected");
    assert_eq!(path_to(&routers[2], h0), "fastdp", "h2 must be unaffected");
    assert!(pings(&workloads[0], overlay_ip(3)) && pings(&workloads[2], overlay_ip(1)));
    let sleeve = capture(&net, 6783, || {
        send_marker(&workloads[0], &workloads[1], overlay_ip(2))
    });
    assert!(
        contains(&sleeve, MARKER),
        "sleeve traffic not seen on UDP 6783"
    );

    net.unblock_udp_port(0, 1, 6784).expect("unblock 6784");
    net.wait_until(SWITCH, "h0 and h1 back on fastdp", || {
        path_to(&routers[0], h1) == "fastdp" && path_to(&routers[1], h0) == "fastdp"
    });
    net.wait_until(Duration::from_secs(5), "w0 pinging w1 again", || {
        pings(&workloads[0], overlay_ip(2))
    });
    let back = capture(&net, 6784, || {
        send_marker(&workloads[0], &workloads[1], overlay_ip(2))
    });
    assert!(contains(&back, MARKER), "traffic did not return to VXLAN");
}
