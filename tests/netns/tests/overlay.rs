//! End-to-end overlay tests (issue 5, the kernel fast path): real `weft` routers in network
//! namespaces attach workload namespaces to bridge `weft`, and workloads on different hosts talk
//! over the kernel VXLAN device as if they shared one switch.
//! Needs root, `ip`, `bridge`, `nft`, `ping`, `python3`, and `cargo build -p weft-router` first.

use std::net::Ipv4Addr;
use std::process::Output;
use std::time::Duration;

use weft_netns_tests::{
    Net, Router, Workload, arp_resolves_to, every_pair_pings, full_mesh, multicast_reaches,
    output_text, pings, tcp_transfer_arrives_intact,
};

/// Time a fresh mesh of a few routers gets to converge.
const CONVERGE: Duration = Duration::from_secs(30);
/// Time the FDB may take to follow a topology change the mesh has seen.
const FDB_FOLLOW: Duration = Duration::from_secs(10);
/// Largest ICMP payload that fits the default overlay MTU (1500 - 50 - 28).
const MAX_PING_PAYLOAD: u32 = 1422;

/// Interface names in a namespace, via `exec` there.
fn links(exec: impl Fn(&[&str]) -> Output) -> Vec<String> {
    let out = exec(&["ip", "-o", "link", "show"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn host_links(net: &Net, i: usize) -> Vec<String> {
    links(|a| net.host(i).exec(a).expect("ip link"))
}

fn workload_links(w: &Workload) -> Vec<String> {
    links(|a| w.exec(a).expect("ip link"))
}

/// Destinations of the all-zero FDB entries of `vxlan-weft` on host `i`.
fn flood_entries(net: &Net, i: usize) -> Vec<String> {
    let out = net
        .host(i)
        .exec(&["bridge", "fdb", "show", "dev", "vxlan-weft"])
        .expect("bridge fdb");
    let mut dsts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("00:00:00:00:00:00"))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "dst")?;
            words.next().map(str::to_string)
        })
        .collect();
    dsts.sort();
    dsts
}

fn attach(router: &Router, w: &Workload, addr: &str) {
    router.cli_ok(&["attach", addr, "--netns", w.ns(), "--name", w.name()]);
}

fn overlay_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, n)
}

/// Three hosts with two workloads each: everyone pings everyone, ARP, multicast, a 100 MiB TCP
/// transfer, MTU, `weft ps`, expose/hide and detach.
#[test]
fn three_hosts_two_workloads_each() {
    let net = Net::new(3).expect("net");
    let routers = [
        net.launch(0, &[], &[]),
        net.launch(1, &[0], &[]),
        net.launch(2, &[0, 1], &[]),
    ];
    net.wait_until(CONVERGE, "a full mesh of 3", || full_mesh(&routers));
    for i in 0..3 {
        let want: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| net.host(j).addr().to_string())
            .collect();
        net.wait_until(FDB_FOLLOW, &format!("h{i} flooding to both peers"), || {
            flood_entries(&net, i) == want
        });
    }

    // Workload k (0..6) lives on host k / 2 with address 10.32.0.(k+1).
    let workloads: Vec<Workload> = (0..6)
        .map(|k| net.add_workload(k / 2, &format!("w{k}")).expect("workload"))
        .collect();
    for (k, w) in workloads.iter().enumerate() {
        attach(
            &routers[k / 2],
            w,
            &format!("{}/12", overlay_ip(k as u8 + 1)),
        );
    }

    // Every pair pings (the first exchange may wait for ARP), and ARP resolved across hosts to
    // the MAC `weft ps` reports on the remote host.
    every_pair_pings(&net, &workloads, |k| overlay_ip(k as u8 + 1));
    assert!(routers[2].cli_ok(&["ps"]).contains("10.32.0.5/12"));
    arp_resolves_to(&workloads[0], overlay_ip(5), &routers[2], "w4");

    // MTU: a full-size packet crosses hosts, one byte more is refused with "message too long"
    // instead of vanishing.
    let full = MAX_PING_PAYLOAD.to_string();
    let over = (MAX_PING_PAYLOAD + 1).to_string();
    let ok = workloads[0]
        .exec(&[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            &full,
            "10.32.0.6",
        ])
        .expect("ping");
    assert!(ok.status.success(), "full-size ping: {}", output_text(&ok));
    let too_big = workloads[0]
        .exec(&[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            &over,
            "10.32.0.6",
        ])
        .expect("ping");
    assert!(!too_big.status.success());
    assert!(
        output_text(&too_big).contains("message too long")
            && output_text(&too_big).contains("mtu=1450"),
        "oversized ping must be told the MTU: {}",
        output_text(&too_big)
    );

    multicast_reaches(&workloads[0], &[&workloads[5], &workloads[2]]);
    tcp_transfer_arrives_intact(&workloads[4], overlay_ip(5), &workloads[1]);

    // expose / hide: the host itself joins the overlay.
    assert_eq!(
        routers[0].cli_ok(&["expose", "10.32.0.100/12"]).trim(),
        "10.32.0.100/12"
    );
    net.wait_until(Duration::from_secs(10), "w3 pinging exposed h0", || {
        pings(&workloads[3], overlay_ip(100))
    });
    assert!(
        routers[0]
            .cli_ok(&["ps"])
            .contains("weft:expose 10.32.0.100/12")
    );
    routers[0].cli_ok(&["hide"]);
    assert!(
        !pings(&workloads[3], overlay_ip(100)),
        "hidden host still answers"
    );

    // detach leaves no interface behind, on the host or in the workload.
    let out = routers[1].cli_ok(&["detach", "--netns", workloads[3].ns()]);
    assert!(out.contains("detached w3"), "{out}");
    assert!(
        !host_links(&net, 1)
            .iter()
            .any(|l| l.starts_with("vethwe") && l != "vethwe0"),
        "host end left behind: {:?}",
        host_links(&net, 1)
    );
    assert_eq!(workload_links(&workloads[3]), vec!["lo"]);
    assert!(!routers[1].cli_ok(&["ps"]).contains("w3 "));
    assert!(!pings(&workloads[0], overlay_ip(4)));
}

/// The FDB follows the mesh: a peer that stops loses its entry everywhere, and regains it when
/// it comes back.
#[test]
fn fdb_follows_a_peer_that_stops_and_restarts() {
    let net = Net::new(3).expect("net");
    let routers = [
        net.launch(0, &[], &[]),
        net.launch(1, &[0], &[]),
        net.launch(2, &[0, 1], &[]),
    ];
    net.wait_until(CONVERGE, "a full mesh of 3", || full_mesh(&routers));
    let h1 = net.host(1).addr().to_string();
    let h2 = net.host(2).addr().to_string();
    net.wait_until(FDB_FOLLOW, "h0 flooding to h1 and h2", || {
        flood_entries(&net, 0) == vec![h1.clone(), h2.clone()]
    });

    routers[2].kill9().expect("kill h2");
    // Once the mesh has seen h2 go, the FDB follows within a second.
    net.wait_until(FDB_FOLLOW, "h0's mesh losing h2", || {
        routers[0]
            .report()
            .is_ok_and(|r| !r.established().iter().any(|c| c.ip() == h2))
    });
    net.wait_until(Duration::from_secs(1), "h0 dropping h2's entry", || {
        flood_entries(&net, 0) == vec![h1.clone()]
    });
    net.wait_until(FDB_FOLLOW, "h1 dropping h2's entry", || {
        !flood_entries(&net, 1).contains(&h2)
    });

    routers[2].restart().expect("restart h2");
    net.wait_until(CONVERGE, "h0 flooding to h2 again", || {
        flood_entries(&net, 0) == vec![h1.clone(), h2.clone()]
    });
    // The restarted router adopted its VXLAN device and repopulated it.
    let h0 = net.host(0).addr().to_string();
    net.wait_until(FDB_FOLLOW, "h2 flooding to h0 and h1", || {
        flood_entries(&net, 2) == vec![h0.clone(), h1.clone()]
    });
}

/// `kill -9` of a router leaves its workloads connected (the kernel keeps forwarding), and the
/// restarted router adopts them instead of recreating them.
#[test]
fn router_kill9_and_restart_keeps_workloads() {
    let net = Net::new(2).expect("net");
    let routers = [net.launch(0, &[], &[]), net.launch(1, &[0], &[])];
    net.wait_until(CONVERGE, "a full mesh of 2", || full_mesh(&routers));
    let a = net.add_workload(0, "a").expect("workload");
    let b = net.add_workload(1, "b").expect("workload");
    attach(&routers[0], &a, "10.32.1.1/12");
    attach(&routers[1], &b, "10.32.1.2/12");
    net.wait_until(Duration::from_secs(10), "a pinging b", || {
        pings(&a, Ipv4Addr::new(10, 32, 1, 2))
    });
    let ps_before = routers[0].cli_ok(&["ps"]);
    let link_before = output_text(
        &net.host(0)
            .exec(&["ip", "-o", "link", "show", "vethwe0"])
            .expect("ip"),
    );
    let index_before = link_before
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();

    routers[0].kill9().expect("kill");
    assert!(
        pings(&a, Ipv4Addr::new(10, 32, 1, 2)),
        "the data path must not depend on the router process"
    );

    routers[0].restart().expect("restart");
    assert_eq!(
        routers[0].cli_ok(&["ps"]),
        ps_before,
        "workload adopted as it was"
    );
    let link_after = output_text(
        &net.host(0)
            .exec(&["ip", "-o", "link", "show", "vethwe0"])
            .expect("ip"),
    );
    assert_eq!(
        link_after.split(':').next().unwrap_or_default(),
        index_before,
        "the host end must be adopted, not recreated"
    );
    net.wait_until(CONVERGE, "the mesh back", || full_mesh(&routers));
    net.wait_until(Duration::from_secs(10), "a pinging b after restart", || {
        pings(&a, Ipv4Addr::new(10, 32, 1, 2))
    });
    assert!(pings(&b, Ipv4Addr::new(10, 32, 1, 1)));

    // A workload whose namespace vanished while the router was down is forgotten at start.
    routers[1].kill9().expect("kill h1");
    net.host(1)
        .exec(&["ip", "netns", "delete", b.ns()])
        .expect("delete b's namespace");
    routers[1].restart().expect("restart h1");
    assert!(!routers[1].cli_ok(&["ps"]).contains("b "));
    assert!(!host_links(&net, 1).iter().any(|l| l.starts_with("vethwe")));
}

/// Bad input is refused with a clear error, and nothing is left half-made.
#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let net = Net::new(2).expect("net");
    // The MTU is derived from the default route's interface: eth0 at 1400 gives 1350.
    let h1 = net.host(1);
    for args in [
        ["ip", "link", "set", "eth0", "mtu", "1400"].as_slice(),
        ["ip", "route", "add", "default", "dev", "eth0"].as_slice(),
    ] {
        let out = h1.exec(args).expect("ip");
        assert!(out.status.success(), "{args:?}: {}", output_text(&out));
    }
    let _r1 = net.launch(1, &[], &[]);
    let bridge_mtu = output_text(&h1.exec(&["cat", "/sys/class/net/weft/mtu"]).expect("cat"));
    assert_eq!(bridge_mtu.trim(), "1350", "overlay MTU from eth0's 1400");

    // An MTU too small refuses to start, by flag and by environment, leaving no bridge.
    let h0 = net.host(0);
    for (args, env) in [
        (vec!["launch", "--mtu", "1000"], vec![]),
        (vec!["launch"], vec![("WEFT_MTU", "900")]),
    ] {
        let dir = net.dir().join(format!("mtu-{}", env.len()));
        let data = dir.join("data");
        let sock = dir.join("sock");
        let mut full: Vec<&str> = args.clone();
        let (data, sock) = (data.display().to_string(), sock.display().to_string());
        full.extend(["--data-dir", &data, "--socket", &sock]);
        let out = with_env(h0, &full, &env);
        assert!(
            !out.status.success(),
            "{full:?} started: {}",
            output_text(&out)
        );
        assert!(
            output_text(&out).contains("MTU") && output_text(&out).contains("too small"),
            "{full:?}: {}",
            output_text(&out)
        );
        assert_eq!(
            host_links(&net, 0),
            vec!["lo", "eth0"],
            "{full:?} left objects"
        );
    }

    let r0 = net.launch(0, &[], &[]);
    let w = net.add_workload(0, "w").expect("workload");
    let other = net.add_workload(0, "other").expect("workload");
    attach(&r0, &w, "10.32.2.1/12");
    let host_before = host_links(&net, 0);
    let w_before = workload_links(&w);
    let other_before = workload_links(&other);
    assert_eq!(w_before, vec!["lo", "ethwe"]);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["attach", "10.32.2.9/12", "--netns", "no-such-ns-weft"],
            "does not exist",
        ),
        (
            vec!["attach", "10.32.2.9/12", "--pid", "999999999"],
            "does not exist",
        ),
        (
            vec!["attach", "10.64.0.1/12", "--netns", other.ns()],
            "outside the overlay range",
        ),
        (
            vec!["attach", "10.32.2.9", "--netns", other.ns()],
            "ADDR/PREFIX",
        ),
        (
            vec!["attach", "10.32.2.1/12", "--netns", other.ns()],
            // IPAM refuses first: the address is held by the other workload's namespace.
            "is already allocated to 'netns:/run/netns/",
        ),
        (
            vec!["attach", "10.32.2.9/12", "--netns", w.ns()],
            "interface ethwe already exists",
        ),
        (
            vec![
                "attach",
                "10.32.2.9/12",
                "--netns",
                other.ns(),
                "--ifname",
                "much-too-long-name",
            ],
            "longer than 15",
        ),
        (
            vec!["attach", "10.32.2.9/12", "--netns", "/proc/version"],
            "not a network namespace",
        ),
        (vec!["detach", "--netns", other.ns()], "nothing is attached"),
        (vec!["hide", "10.32.2.50/12"], "not exposed"),
        (vec!["expose", "10.32.2.1/12"], "already in use"),
    ];
    for (args, why) in cases {
        let err = r0.cli_err(&args);
        assert!(
            err.contains(why),
            "weft {args:?}: expected {why:?} in {err:?}"
        );
        assert_eq!(
            host_links(&net, 0),
            host_before,
            "weft {args:?} left host objects"
        );
        assert_eq!(workload_links(&w), w_before, "weft {args:?} touched w");
        assert_eq!(
            workload_links(&other),
            other_before,
            "weft {args:?} touched other"
        );
    }

    // A failure late in the attach (the range is already routed through another interface)
    // rolls back the veth made before it.
    for args in [
        [
            "ip",
            "link",
            "add",
            "blocker",
            "type",
            "veth",
            "peer",
            "name",
            "blocker-peer",
        ]
        .as_slice(),
        ["ip", "link", "set", "blocker", "up"].as_slice(),
        ["ip", "link", "set", "blocker-peer", "up"].as_slice(),
        ["ip", "route", "add", "10.32.0.0/12", "dev", "blocker"].as_slice(),
    ] {
        let out = other.exec(args).expect("ip");
        assert!(out.status.success(), "{args:?}: {}", output_text(&out));
    }
    let other_before = workload_links(&other);
    let err = r0.cli_err(&["attach", "10.32.3.9/24", "--netns", other.ns()]);
    assert!(
        err.contains("route to 10.32.0.0/12 already exists"),
        "{err}"
    );
    assert_eq!(
        host_links(&net, 0),
        host_before,
        "rolled-back attach left the host end"
    );
    assert_eq!(
        workload_links(&other),
        other_before,
        "rolled-back attach left ethwe"
    );
    assert!(!r0.cli_ok(&["ps"]).contains("other"));
}

/// Runs `weft ARGS` in host `h`'s namespace with extra environment variables.
fn with_env(h: &weft_netns_tests::Host, args: &[&str], env: &[(&str, &str)]) -> Output {
    let weft = weft_netns_tests::weft_binary().expect("weft binary");
    let mut command = std::process::Command::new("ip");
    command
        .args(["netns", "exec", h.ns()])
        .arg(weft)
        .args(args)
        .envs(env.iter().copied());
    command.output().expect("running weft")
}
