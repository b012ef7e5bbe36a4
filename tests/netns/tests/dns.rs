//! End-to-end DNS tests (issue 6, point 5): real `weft` routers in network namespaces serve
//! `NAME.weft.local.` on their bridge address (after `weft expose`), records travel the `dns`
//! gossip channel, and workloads query with `dig` from inside their namespace. Names outside the
//! domain go to a `dnsmasq` upstream running in a host namespace.
//! Needs root, `ip`, `nft`, `dig`, `dnsmasq`, and `cargo build -p weft-router` first.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use weft_netns_tests::{Net, Router, Workload, full_mesh, output_text};

/// Time a fresh mesh of three routers gets to connect.
const CONVERGE: Duration = Duration::from_secs(30);
/// Time the mesh gets to notice a cut link and to heal after it (redial backoff tops at 30 s).
const HEAL: Duration = Duration::from_secs(90);

/// Time a record may take to reach every peer (the bound).
const PROPAGATE: Duration = Duration::from_secs(2);
/// A name only the upstream `dnsmasq` knows, and its address.
const UPSTREAM_NAME: &str = "upstream.example.test";
const UPSTREAM_ADDR: &str = "192.0.2.7";
/// Number of addresses under the large name: 130 A records make an answer of about 2 100 bytes.
const BIG_COUNT: u8 = 130;

/// The overlay address host `i` exposes, where its DNS server listens.
fn dns_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 100, i as u8 + 1)
}

/// Starts `dnsmasq` on host `i`'s underlay address as the upstream and returns a resolv.conf
/// naming it.
fn start_upstream(net: &Net, i: usize) -> std::path::PathBuf {
    let addr = net.host(i).addr().to_string();
    let pid_file = net.dir().join("dnsmasq.pid");
    net.host(i)
        .spawn(&[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={addr}"),
            &format!("--pid-file={}", pid_file.display()),
            &format!("--host-record={UPSTREAM_NAME},{UPSTREAM_ADDR}"),
        ])
        .expect("starting dnsmasq");
    let resolv = net.dir().join("upstream-resolv.conf");
    std::fs::write(&resolv, format!("nameserver {addr}\n")).expect("writing resolv.conf");
    net.wait_until(Duration::from_secs(10), "dnsmasq answering", || {
        dig_host(net, i, &addr, &[UPSTREAM_NAME]).0 == [UPSTREAM_ADDR]
    });
    resolv
}

/// Launches a router on host `i` dialling `peers`, with `extra` flags, and exposes its DNS address.
fn launch(net: &Net, i: usize, peers: &[usize], extra: &[&str]) -> Router {
    let router = net.launch(i, peers, extra);
    router.cli_ok(&["expose", &format!("{}/12", dns_addr(i))]);
    router
}

/// Runs `dig` with `args` through `exec` and returns (answer lines of `+short`, full output).
fn dig_with(
    exec: impl Fn(&[&str]) -> Option<std::process::Output>,
    server: &str,
    args: &[&str],
) -> (Vec<String>, String) {
    let mut full: Vec<&str> = vec!["dig", "+tries=1", "+time=1"];
    let at = format!("@{server}");
    full.push(&at);
    full.extend_from_slice(args);
    let out = exec(&full).expect("running dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let short = if args.contains(&"+short") {
        text.lines()
            .filter(|l| !l.starts_with(';') && !l.is_empty())
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    (short, text)
}

/// `dig +short` from workload `w` against `server`.
fn dig(w: &Workload, server: Ipv4Addr, args: &[&str]) -> Vec<String> {
    let mut a = vec!["+short"];
    a.extend_from_slice(args);
    dig_with(|x| w.exec(x).ok(), &server.to_string(), &a).0
}

/// Full `dig` output from workload `w` against `server`.
fn dig_full(w: &Workload, server: Ipv4Addr, args: &[&str]) -> String {
    dig_with(|x| w.exec(x).ok(), &server.to_string(), args).1
}

/// `dig +short` from host `i`'s own namespace.
fn dig_host(net: &Net, i: usize, server: &str, args: &[&str]) -> (Vec<String>, String) {
    let mut a = vec!["+short"];
    a.extend_from_slice(args);
    dig_with(|x| net.host(i).exec(x).ok(), server, &a)
}

/// The set of addresses in `lines`.
fn set(lines: &[String]) -> BTreeSet<String> {
    lines.iter().cloned().collect()
}

/// Attaches `w` to `router` at `addr` under `name`.
fn attach(router: &Router, w: &Workload, addr: Ipv4Addr, name: &str) {
    router.cli_ok(&[
        "attach",
        &format!("{addr}/12"),
        "--netns",
        w.ns(),
        "--name",
        name,
    ]);
}

/// A DNS query for `name` type A with id `id`, as wire bytes.
fn query_bytes(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Three hosts: resolution across hosts within 2 s, round robin across two hosts' records, PTR,
/// removal by detach and dns-remove, upstream forwarding through dnsmasq, REFUSED outside the
/// overlay, truncation over UDP and the full answer over TCP, a partitioned peer's records
/// vanishing and returning.
#[test]
fn three_hosts_resolve_names() {
    let net = Net::new(3).expect("net");
    let resolv = start_upstream(&net, 2);
    let resolv = resolv.to_str().expect("utf-8 path");
    let flags = ["--resolv-conf", resolv];
    let routers = [
        launch(&net, 0, &[], &flags),
        launch(&net, 1, &[0], &flags),
        launch(&net, 2, &[0, 1], &flags),
    ];
    net.wait_until(CONVERGE, "a full mesh of 3", || full_mesh(&routers));

    let a = net.add_workload(0, "a").expect("workload a");
    let b = net.add_workload(1, "b").expect("workload b");
    let c = net.add_workload(2, "c").expect("workload c");
    let (ip_a, ip_b, ip_c) = (
        Ipv4Addr::new(10, 32, 0, 1),
        Ipv4Addr::new(10, 32, 0, 2),
        Ipv4Addr::new(10, 32, 0, 3),
    );
    attach(&routers[2], &c, ip_c, "c");
    // The workload reaches its router's server (ARP on the bridge first).
    net.wait_until(Duration::from_secs(10), "c resolving itself", || {
        dig(&c, dns_addr(2), &["c.weft.local"]) == [ip_c.to_string()]
    });

    // A name registered on host 0 resolves from host 2 within 2 s.
    let start = Instant::now();
    attach(&routers[0], &a, ip_a, "web");
    net.wait_until(PROPAGATE, "web.weft.local on h2", || {
        dig(&c, dns_addr(2), &["web.weft.local"]) == [ip_a.to_string()]
    });
    let took = start.elapsed();
    assert!(took <= PROPAGATE + Duration::from_secs(1), "took {took:?}");
    // Case-insensitive, NXDOMAIN for an unknown name, NODATA for AAAA of a v4-only name.
    assert_eq!(
        dig(&c, dns_addr(2), &["WeB.WEFT.local"]),
        [ip_a.to_string()]
    );
    let nx = dig_full(&c, dns_addr(2), &["nosuch.weft.local"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let nodata = dig_full(&c, dns_addr(2), &["AAAA", "web.weft.local"]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );

    // The same name on two hosts: both addresses come back, in varying order.
    attach(&routers[1], &b, ip_b, "web");
    let both: BTreeSet<String> = [ip_a.to_string(), ip_b.to_string()].into();
    net.wait_until(PROPAGATE, "both web addresses on h2", || {
        set(&dig(&c, dns_addr(2), &["web.weft.local"])) == both
    });
    let firsts: BTreeSet<String> = (0..20)
        .filter_map(|_| dig(&c, dns_addr(2), &["web.weft.local"]).first().cloned())
        .collect();
    assert_eq!(
        firsts, both,
        "the first address should vary over 20 queries"
    );

    // PTR for an overlay address, from another host.
    assert_eq!(
        dig(&c, dns_addr(2), &["-x", &ip_a.to_string()]),
        ["web.weft.local."]
    );

    // An upstream name resolves through dnsmasq for a workload.
    assert_eq!(dig(&c, dns_addr(2), &[UPSTREAM_NAME]), [UPSTREAM_ADDR]);
    // A client outside the overlay (host 0's underlay address) is refused an upstream name.
    let (_, refused) = dig_with(
        |x| net.host(0).exec(x).ok(),
        &dns_addr(0).to_string(),
        &["-b", &net.host(0).addr().to_string(), UPSTREAM_NAME],
    );
    assert!(refused.contains("status: REFUSED"), "{refused}");

    // A 2 000-byte answer: truncated over UDP, complete over TCP.
    let mut add = vec!["dns-add".to_string()];
    add.extend((1..=BIG_COUNT).map(|n| format!("10.32.200.{n}")));
    add.extend(["-h".to_string(), "big.weft.local".to_string()]);
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    routers[1].cli_ok(&add);
    net.wait_until(PROPAGATE, "big.weft.local over TCP on h2", || {
        dig(&c, dns_addr(2), &["+tcp", "big.weft.local"]).len() == usize::from(BIG_COUNT)
    });
    let udp = dig_full(&c, dns_addr(2), &["+notcp", "+ignore", "big.weft.local"]);
    let flags_line = udp
        .lines()
        .find(|l| l.contains("flags:"))
        .unwrap_or_else(|| panic!("no flags in {udp}"));
    assert!(flags_line.contains(" tc"), "{udp}");
    // dig retries over TCP by itself when the UDP answer is truncated.
    let retried = dig(&c, dns_addr(2), &["big.weft.local"]);
    assert_eq!(retried.len(), usize::from(BIG_COUNT));
    let tcp_full = dig_full(&c, dns_addr(2), &["+tcp", "big.weft.local"]);
    let size = tcp_full
        .lines()
        .find_map(|l| l.strip_prefix(";; MSG SIZE  rcvd: "))
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no size in {tcp_full}"));
    assert!(size >= 2000, "answer of {size} bytes");

    // dns-remove on the owner removes it everywhere.
    let mut remove = add.clone();
    remove[0] = "dns-remove";
    routers[1].cli_ok(&remove);
    net.wait_until(PROPAGATE, "big.weft.local gone on h2", || {
        dig_full(&c, dns_addr(2), &["big.weft.local"]).contains("status: NXDOMAIN")
    });

    // Detach removes the workload's record everywhere.
    routers[1].cli_ok(&["detach", "--netns", b.ns()]);
    net.wait_until(PROPAGATE, "only a's web address on h2", || {
        dig(&c, dns_addr(2), &["web.weft.local"]) == [ip_a.to_string()]
    });

    // A partitioned peer's records vanish and return.
    net.cut(0, 1).expect("cut 0-1");
    net.cut(0, 2).expect("cut 0-2");
    net.wait_until(
        HEAL,
        "web.weft.local gone on h2 while h0 is cut off",
        || dig_full(&c, dns_addr(2), &["web.weft.local"]).contains("status: NXDOMAIN"),
    );
    net.restore(0, 1).expect("restore 0-1");
    net.restore(0, 2).expect("restore 0-2");
    net.wait_until(HEAL, "web.weft.local back on h2", || {
        dig(&c, dns_addr(2), &["web.weft.local"]) == [ip_a.to_string()]
    });
    let status = routers[2].cli_ok(&["status", "dns"]);
    assert!(
        status.contains("web") && status.contains(&ip_a.to_string()),
        "{status}"
    );
}

/// One host: garbage then a valid query is still answered; bad names in `dns-add` are refused
/// with a clear error and nothing is stored.
#[test]
fn bad_input_is_refused_and_survived() {
    let net = Net::new(1).expect("net");
    let router = launch(&net, 0, &[], &[]);
    let w = net.add_workload(0, "w").expect("workload");
    let ip = Ipv4Addr::new(10, 32, 0, 9);
    attach(&router, &w, ip, "w");
    net.wait_until(Duration::from_secs(10), "w resolving itself", || {
        dig(&w, dns_addr(0), &["w.weft.local"]) == [ip.to_string()]
    });

    // Garbage datagrams, then a valid query on the same socket: the answer still comes.
    let answer = w
        .run_in(|| -> std::io::Result<Vec<u8>> {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            sock.set_read_timeout(Some(Duration::from_secs(2)))?;
            let server = (dns_addr(0), 53);
            for junk in [
                &b"\x00"[..],
                b"garbage that is not DNS",
                &[0xff; 600],
                &[0; 12],
            ] {
                sock.send_to(junk, server)?;
            }
            sock.send_to(&query_bytes(0x5eed, "w.weft.local"), server)?;
            let mut buf = [0u8; 1500];
            loop {
                let n = sock.recv(&mut buf)?;
                if n >= 12 && buf[..2] == 0x5eed_u16.to_be_bytes() {
                    return Ok(buf[..n].to_vec());
                }
            }
        })
        .expect("entering w")
        .expect("an answer after the garbage");
    assert_eq!(answer[3] & 0x0f, 0, "rcode NOERROR: {answer:?}");
    assert_eq!(u16::from_be_bytes([answer[6], answer[7]]), 1, "one answer");
    assert_eq!(&answer[answer.len() - 4..], &ip.octets());
    assert!(router.is_running(), "{}", router.log().unwrap_or_default());

    // Names longer than 253 bytes or with invalid labels are refused and not stored.
    let long = format!("{}.weft.local", ["abcdefghij"; 25].join("."));
    assert!(long.len() > 253);
    for (name, why) in [
        (long.as_str(), "253"),
        ("bad_label!.weft.local", "label"),
        ("dash-.weft.local", "label"),
    ] {
        let err = router.cli_err(&["dns-add", "10.32.0.50", "-h", name]);
        assert!(err.contains(why), "dns-add {name}: {err}");
    }
    let status = router.cli_ok(&["status", "dns"]);
    assert!(!status.contains("10.32.0.50"), "{status}");
    assert!(
        dig_full(&w, dns_addr(0), &["bad_label!.weft.local"]).contains("NXDOMAIN"),
        "nothing stored"
    );
    let out = router.cli(&["dns-lookup", "w"]).expect("dns-lookup");
    assert!(
        output_text(&out).contains(&ip.to_string()),
        "{}",
        output_text(&out)
    );
}
