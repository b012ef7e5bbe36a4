//! End-to-end tests of flow metrics (issue 10 parts 5, 6 and 8): two routers with
//! `--flow-interval 1s`, workloads of namespaces `alpha` and `beta` on both hosts. A known
//! number of bytes crosses from one host to the other and `weft_flow_bytes_total` for that
//! pair matches conntrack's own count within 1% (and is at least the payload); tenant `alpha`
//! does not see `beta`'s flows and the other way round; `weft tap` on the other router shows
//! the open and the close; `weft top --once` lists the pair; a policy drop shows in
//! `weft_flow_drops_total`; bad flags are refused.
//!
//! Needs root, `ip`, `nft`, `python3` and `cargo build -p weft-router --bins` first.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use weft_netns_tests::{Net, Router, Workload, full_mesh, output_text, weft_binary};

/// Bytes the client sends (10 MiB).
const PAYLOAD: u64 = 10 << 20;
/// Port of the transfer.
const PORT: &str = "7000";
/// How long counters may take to reach the store (interval 1 s plus a dump).
const SETTLE: Duration = Duration::from_secs(20);

const SERVE: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(60)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b)
c.close(); print(n, flush=True)
"#;

const SEND: &str = r#"
import socket, sys, time
for i in range(100):
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("no connection")
n = int(sys.argv[3]); buf = b"x" * 65536; left = n
while left > 0:
    k = min(left, len(buf)); s.sendall(buf[:k]); left -= k
s.shutdown(socket.SHUT_WR); s.recv(1); s.close(); print(n, flush=True)
"#;

/// Sends `bytes` over TCP from `client` to `server` at `ip`:PORT; panics unless all arrive.
fn transfer(server: &Workload, ip: &str, client: &Workload, bytes: u64) {
    thread::scope(|scope| {
        let srv = scope.spawn(|| {
            server
                .exec(&["python3", "-c", SERVE, PORT])
                .expect("server")
        });
        thread::sleep(Duration::from_millis(500));
        let sent = client
            .exec(&["python3", "-c", SEND, ip, PORT, &bytes.to_string()])
            .expect("client");
        let got = srv.join().expect("server thread");
        assert!(sent.status.success(), "client: {}", output_text(&sent));
        assert!(got.status.success(), "server: {}", output_text(&got));
        assert_eq!(
            String::from_utf8_lossy(&got.stdout).trim(),
            bytes.to_string(),
            "bytes received"
        );
    });
}

/// The value of the first row of an instant query through `weft query`, if any; the series
/// must print without spaces (an aggregate such as `sum(...)`, or a bare metric name).
fn value(r: &Router, tenant: &str, expr: &str) -> Option<f64> {
    let out = r.cli_ok(&["query", "--tenant", tenant, expr]);
    let line = out.lines().nth(1)?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Original-direction bytes conntrack counted for `src` -> `dst`:PORT on router `r`'s host.
fn conntrack_bytes(net: &Net, host: usize, src: &str, dst: &str) -> u64 {
    let out = net
        .host(host)
        .exec(&["cat", "/proc/net/nf_conntrack"])
        .expect("conntrack table");
    let text = String::from_utf8_lossy(&out.stdout);
    let want = [
        format!("src={src}"),
        format!("dst={dst}"),
        format!("dport={PORT}"),
    ];
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // The original direction's fields come first.
            let first_src = words.iter().position(|w| w.starts_with("src="))?;
            let orig = &words[first_src..first_src + 6.min(words.len() - first_src)];
            if !want.iter().all(|w| orig.contains(&w.as_str())) {
                return None;
            }
            words[first_src..]
                .iter()
                .find_map(|w| w.strip_prefix("bytes="))
                .and_then(|b| b.parse::<u64>().ok())
        })
        .sum()
}

/// A running `weft tap` and the lines it printed.
struct Tap {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Tap {
    fn start(net: &Net, host: usize, r: &Router, args: &[&str]) -> Tap {
        let weft = weft_binary().expect("weft binary");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", net.host(host).ns()])
            .arg(weft)
            .arg("--socket")
            .arg(r.socket())
            .arg("tap")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("weft tap");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Tap { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    fn saw(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines().iter().any(|l| pred(l))
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn attach(r: &Router, w: &Workload, addr: &str, name: &str, ns: &str, label: &str) {
    r.cli_ok(&[
        "attach",
        &format!("{addr}/12"),
        "--netns",
        w.ns(),
        "--name",
        name,
        "--namespace",
        ns,
        "--label",
        label,
    ]);
}

#[test]
fn flows_are_counted_per_pair_and_tenant_shown_by_tap_and_top_and_drops_counted() {
    let net = Net::new(2).expect("net");
    let flags = ["--flow-interval", "1s"];
    let r0 = net.launch(0, &[], &flags);
    let r1 = net.launch(1, &[0], &flags);
    let routers = [r0.clone(), r1.clone()];
    net.wait_until(Duration::from_secs(30), "the two routers connect", || {
        full_mesh(&routers)
    });

    let client = net.add_workload(0, "client").expect("workload");
    let server = net.add_workload(1, "server").expect("workload");
    let bclient = net.add_workload(0, "bclient").expect("workload");
    let bserver = net.add_workload(1, "bserver").expect("workload");
    attach(&r0, &client, "10.32.1.1", "client", "alpha", "app=client");
    attach(&r1, &server, "10.32.1.2", "server", "alpha", "app=server");
    attach(&r0, &bclient, "10.32.2.1", "bclient", "beta", "app=client");
    attach(&r1, &bserver, "10.32.2.2", "bserver", "beta", "app=server");
    // Both routers learn every workload through the policy channel.
    thread::sleep(Duration::from_secs(3));

    // A tap on the server's router sees the client's router's events (through the mesh).
    let tap = Tap::start(&net, 1, &r1, &["--namespace", "alpha"]);
    thread::sleep(Duration::from_secs(2));

    transfer(&server, "10.32.1.2", &client, PAYLOAD);
    transfer(&bserver, "10.32.2.2", &bclient, PAYLOAD / 10);

    // Counted once, at the client's router, in the client's namespace's tenant.
    let pair = r#"sum(weft_flow_bytes_total{src_workload="client",dst_workload="server",dst_port="7000",direction="forward"})"#;
    let mut last = (None, 0);
    net.wait_until(
        SETTLE,
        "flow bytes of client -> server match conntrack",
        || {
            let metric = value(&r0, "alpha", pair);
            let ct = conntrack_bytes(&net, 0, "10.32.1.1", "10.32.1.2");
            last = (metric, ct);
            metric.is_some_and(|m| ct > 0 && (m - ct as f64).abs() <= ct as f64 * 0.01)
        },
    );
    let (metric, ct) = last;
    let metric = metric.expect("metric");
    assert!(
        metric >= PAYLOAD as f64,
        "metric {metric} is below the payload {PAYLOAD} (conntrack {ct})"
    );
    eprintln!("client -> server: payload {PAYLOAD}, metric {metric}, conntrack {ct}");
    let reply = r#"sum(weft_flow_bytes_total{src_workload="client",dst_workload="server",direction="reply"})"#;
    assert!(value(&r0, "alpha", reply).is_some_and(|v| v > 0.0));
    let opened = r#"sum(weft_flow_connections_total{src_workload="client",dst_workload="server",state="opened"})"#;
    assert!(value(&r0, "alpha", opened).is_some_and(|v| v >= 1.0));
    // The server's router does not count the same connection again: it tracks no flow (its
    // workloads initiate nothing), while the mesh-wide store answers the same on both.
    let r1_name = r1
        .report()
        .expect("report")
        .name()
        .expect("name")
        .to_string();
    let r1_flows = format!("weft_flows{{router=\"{r1_name}\"}}");
    assert_eq!(
        value(&r0, "weft-system", &r1_flows),
        Some(0.0),
        "counted twice"
    );
    assert_eq!(
        value(&r1, "alpha", pair),
        Some(metric),
        "other routers see the same"
    );

    // Tenants: alpha does not see beta's flows and the other way round.
    let beta_pair = r#"sum(weft_flow_bytes_total{src_workload="bclient",direction="forward"})"#;
    net.wait_until(SETTLE, "beta's flow is in tenant beta", || {
        value(&r0, "beta", beta_pair).is_some_and(|v| v >= (PAYLOAD / 10) as f64)
    });
    assert_eq!(value(&r0, "alpha", beta_pair), None, "alpha sees beta");
    assert_eq!(value(&r0, "beta", pair), None, "beta sees alpha");
    // Router health is in weft-system.
    assert!(value(&r0, "weft-system", "weft_peers").is_some_and(|v| v == 1.0));
    assert!(value(&r0, "weft-system", "weft_ipam_allocated_addresses").is_some());

    // weft tap (on the other router) showed the open and the close of the alpha flow only.
    net.wait_until(SETTLE, "weft tap shows open and close", || {
        let is = |kind: &'static str| {
            move |l: &str| {
                l.starts_with(kind)
                    && l.contains("alpha/client 10.32.1.1")
                    && l.contains("10.32.1.2:7000")
            }
        };
        tap.saw(is("open")) && tap.saw(is("close"))
    });
    assert!(
        !tap.saw(|l| l.contains("bclient")),
        "the namespace filter let beta through: {:?}",
        tap.lines()
    );

    // weft top lists the pair.
    let top = r0.cli_ok(&["top", "--once", "--tenant", "alpha"]);
    let row = top
        .lines()
        .find(|l| l.contains("alpha/client") && l.contains("alpha/server"))
        .unwrap_or_else(|| panic!("weft top: {top}"));
    assert!(row.contains("7000") && row.contains("tcp"), "{row}");
    let all = r0.cli_ok(&["top", "--once"]);
    assert!(
        all.contains("alpha/client") && all.contains("beta/bclient"),
        "{all}\nbeta alone: {}",
        r0.cli_ok(&["top", "--once", "--tenant", "beta"])
    );

    // A policy drop: deny all ingress to the server, then the client tries again.
    let policy = net.dir().join("deny-server.yaml");
    std::fs::write(
        &policy,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-server, namespace: alpha}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  policyTypes: [Ingress]\n",
    )
    .expect("policy file");
    r0.cli_ok(&["policy", "apply", "-f", &policy.display().to_string()]);
    let drops = r#"sum(weft_flow_drops_total{src_workload="client",dst_workload="server"})"#;
    net.wait_until(SETTLE, "a policy drop in weft_flow_drops_total", || {
        let _ = client.exec(&[
            "python3",
            "-c",
            "import socket\ntry: socket.create_connection(('10.32.1.2', 7001), timeout=0.5)\nexcept OSError: pass",
        ]);
        value(&r1, "alpha", drops).is_some_and(|v| v >= 1.0)
    });
    assert!(
        tap.saw(|l| l.starts_with("drop") && l.contains("alpha/server")),
        "tap shows no drop: {:?}",
        tap.lines()
    );

    // Bad input.
    let e = r0.cli_err(&["top", "--once", "--tenant", "a/b"]);
    assert!(e.contains("invalid tenant"), "{e}");
    let bad = r0.cli(&["top", "--limit", "0"]).expect("weft top");
    assert!(!bad.status.success() && output_text(&bad).contains("--limit"));
    let bad = r0.cli(&["tap", "--namespace", ""]).expect("weft tap");
    assert!(!bad.status.success() && output_text(&bad).contains("--namespace"));
    let bad = net
        .host(0)
        .weft(&["launch", "--flow-tenant-from", "pod"])
        .expect("weft launch");
    assert!(
        !bad.status.success() && output_text(&bad).contains("--flow-tenant-from"),
        "{}",
        output_text(&bad)
    );
}

#[test]
fn a_fixed_tenant_holds_every_flow_including_same_host_icmp() {
    let net = Net::new(1).expect("net");
    let r = net.launch(
        0,
        &[],
        &["--flow-interval", "1s", "--flow-tenant-from", "fixed:ops"],
    );
    let a = net.add_workload(0, "a").expect("workload");
    let b = net.add_workload(0, "b").expect("workload");
    attach(&r, &a, "10.32.3.1", "a", "team-a", "app=a");
    attach(&r, &b, "10.32.3.2", "b", "team-b", "app=b");
    thread::sleep(Duration::from_secs(2));
    let tap = Tap::start(&net, 0, &r, &["--to", "team-b/b"]);
    thread::sleep(Duration::from_secs(1));
    let ping = a
        .exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.32.3.2"])
        .expect("ping");
    assert!(ping.status.success(), "ping: {}", output_text(&ping));
    let back = b
        .exec(&["ping", "-c", "1", "-W", "1", "10.32.3.1"])
        .expect("ping");
    assert!(back.status.success(), "ping: {}", output_text(&back));

    // Both workloads are local: each direction is counted once, as its own flow, in tenant ops.
    let icmp = r#"weft_flow_packets_total{src_workload="a",dst_workload="b",protocol="icmp",direction="forward"}"#;
    let icmp_sum = format!("sum({icmp})");
    net.wait_until(SETTLE, "a's pings in tenant ops", || {
        value(&r, "ops", &icmp_sum).is_some_and(|v| v >= 3.0)
    });
    let reverse = r#"sum(weft_flow_packets_total{src_workload="b",dst_workload="a",protocol="icmp",direction="forward"})"#;
    net.wait_until(SETTLE, "b's ping in tenant ops", || {
        value(&r, "ops", reverse).is_some_and(|v| v >= 1.0)
    });
    assert_eq!(
        value(&r, "team-a", icmp),
        None,
        "the namespace got a tenant"
    );
    // ICMP has no port label.
    let labels = r.cli_ok(&["query", "--tenant", "ops", icmp]);
    assert!(!labels.contains("dst_port"), "{labels}");

    // The tap filtered on the destination shows a -> b and not b -> a.
    net.wait_until(SETTLE, "weft tap --to b shows a's ping", || {
        tap.saw(|l| l.starts_with("open") && l.contains("team-a/a 10.32.3.1 -> team-b/b"))
    });
    assert!(
        !tap.saw(|l| l.contains("team-b/b 10.32.3.2 -> ")),
        "--to let b's own flow through: {:?}",
        tap.lines()
    );
}
