//! The README demo: three `weft` routers on three hosts (network namespaces on one underlay
//! bridge), joined into one encrypted mesh that agrees on an address ring (`consensus=3`); prints
//! what `weft status` shows on each, allocates an address on each host and prints every host's
//! `weft status ipam`, attaches a named workload on two hosts and resolves one from the other by
//! name with `dig` and pings it over the encrypted sleeve, blocks it with a policy, sends 8 MiB
//! between the two workloads and shows the flow in `weft top` and PromQL, has two tenants write
//! metrics through one router's Prometheus API and queries them back with `weft query`, then
//! tears everything down. Nothing is added to the machine's own
//! network namespace.

use std::process::ExitCode;
use std::time::Duration;

use weft_netns_tests::{Net, Router, poll_until};

const PASSWORD: &str = "weft-demo-secret";
/// The ring is made by consensus of the 3 routers; flow counters are written every 2 s.
const IPAM_FLAGS: [&str; 4] = ["--ipalloc-init", "consensus=3", "--flow-interval", "2s"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n### {text}");
}

fn show(router: &Router, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let out = router.cli(args)?;
    println!("$ weft {}   # on {}", args.join(" "), router.host());
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Two tenants remote-write series into the Prometheus API of `router` (TCP 6782 on host 0),
/// then `weft query` reads each tenant's data back.
fn metrics_demo(net: &Net, router: &Router) -> Result<(), Box<dyn std::error::Error>> {
    use weft_metrics::labels::{Labels, Sample, Series};
    step("metrics: tenants team-a and team-b remote_write to h0's Prometheus API (TCP 6782)");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let now_ms = i64::try_from(now.as_millis())?;
    for (tenant, service, per_step) in [("team-a", "web", 5.0), ("team-b", "db", 2.0)] {
        let labels =
            Labels::from_pairs([("__name__", "demo_requests_total"), ("service", service)])?;
        let samples = (0..10)
            .map(|i| Sample {
                t: now_ms - (10 - i) * 10_000,
                v: per_step * i as f64,
            })
            .collect();
        let body = weft_metrics::remote_write::encode_write_request(&[Series { labels, samples }]);
        let status = net.host(0).run_in(|| push(tenant, &body))??;
        println!("  POST /api/v1/push  X-Scope-OrgID: {tenant}  ->  {status}");
    }
    for tenant in ["team-a", "team-b"] {
        show(
            router,
            &["query", "demo_requests_total", "--tenant", tenant],
        )?;
        show(
            router,
            &["query", "rate(demo_requests_total[1m])", "--tenant", tenant],
        )?;
    }
    Ok(())
}

/// Pushes a remote_write body to the local API as `tenant`; returns the HTTP status line.
fn push(tenant: &str, body: &[u8]) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", 6782))?;
    write!(
        s,
        "POST /api/v1/push HTTP/1.0\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Scope-OrgID: {tenant}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    step("building an underlay bridge and 3 hosts in network namespaces");
    let net = Net::new(3)?;
    for h in net.hosts() {
        println!("  {} at {}", h.label(), h.addr());
    }

    step(&format!(
        "launching a router on each host: WEFT_PASSWORD=... weft launch {} [host1]",
        IPAM_FLAGS.join(" ")
    ));
    let env = [("WEFT_PASSWORD", PASSWORD)];
    let first = net.host(0).spawn_weft_env(&IPAM_FLAGS, &env)?;
    let peer = first.addr().to_string();
    let mut routers = vec![first];
    for i in 1..3 {
        let args = [&IPAM_FLAGS[..], &[peer.as_str()]].concat();
        routers.push(net.host(i).spawn_weft_env(&args, &env)?);
    }

    step("waiting for every router to know all 3 peers over encrypted connections");
    let converged = poll_until(Duration::from_secs(30), || {
        routers.iter().all(|r| {
            r.report().is_ok_and(|rep| {
                rep.peer_names().len() == 3 && rep.established().iter().all(|c| c.encrypted)
            })
        })
    });
    if !converged {
        return Err(format!("the mesh did not converge in 30 s\n{}", net.log_tails()).into());
    }

    for r in &routers {
        step(&format!("status on {}", r.host()));
        show(r, &["status"])?;
        show(r, &["status", "connections"])?;
    }
    step(&format!(
        "every peer and its connections, as {} sees them",
        routers[2].host()
    ));
    show(&routers[2], &["status", "peers"])?;

    step("allocating an address on each host (the first allocation starts the consensus)");
    for r in &routers {
        let owner = format!("demo-{}", r.host());
        show(r, &["ipam", "allocate", &owner])?;
    }
    for r in &routers {
        step(&format!("the address ring as {} sees it", r.host()));
        show(r, &["status", "ipam"])?;
    }

    resolve_by_name(&net, &routers)?;

    metrics_demo(&net, &routers[0])?;

    step("stopping the routers and removing the namespaces");
    for r in &routers {
        r.cli(&["stop"])?;
    }
    drop(net);
    println!("done");
    Ok(())
}

/// Attaches workload `web` on the first host and `client` on the last, exposes an address on each
/// host so its DNS server listens, and resolves `web.weft.local` from `client` with `dig`.
fn resolve_by_name(net: &Net, routers: &[Router]) -> Result<(), Box<dyn std::error::Error>> {
    let last = routers.len() - 1;
    step("DNS: attaching workload web on h0 and workload client on the last host (IPAM addresses)");
    let web = net.add_workload(0, "web")?;
    let client = net.add_workload(last, "client")?;
    show(
        &routers[0],
        &["attach", "--netns", web.ns(), "--name", "web"],
    )?;
    show(
        &routers[last],
        &["attach", "--netns", client.ns(), "--name", "client"],
    )?;
    for (i, r) in routers.iter().enumerate() {
        show(r, &["expose", &format!("{}/12", dns_addr(i))])?;
    }
    let server = dns_addr(last).to_string();
    let query = [
        "dig",
        "+short",
        "+tries=1",
        "+time=1",
        &format!("@{server}"),
        "web.weft.local",
    ];
    let mut answer = String::new();
    poll_until(Duration::from_secs(10), || {
        answer = client
            .exec(&query)
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        !answer.is_empty() && !answer.starts_with(';')
    });
    step(&format!(
        "resolving web from client on {}",
        routers[last].host()
    ));
    println!("$ {}   # in client", query.join(" "));
    println!("{answer}");
    if answer.is_empty() || answer.starts_with(';') {
        return Err(format!("web.weft.local did not resolve\n{}", net.log_tails()).into());
    }
    show(&routers[last], &["status", "dns"])?;
    ping_over_sleeve(net, &client, &answer, &routers[last])?;
    policy_demo(net, routers, &client, &answer)?;
    flows_demo(net, routers, &web, &client, &answer)
}

/// `client` pings web's address `addr` on another host; with the password every frame rides
/// the encrypted sleeve, which `weft status connections` on `router` shows.
fn ping_over_sleeve(
    net: &Net,
    client: &weft_netns_tests::Workload,
    addr: &str,
    router: &Router,
) -> Result<(), Box<dyn std::error::Error>> {
    step("client pings web on another host, over the encrypted sleeve");
    let ping = ["ping", "-c", "3", "-W", "2", addr];
    println!("$ {}   # in client", ping.join(" "));
    let out = client.exec(&ping)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        return Err(format!("client could not ping web\n{}", net.log_tails()).into());
    }
    show(router, &["status", "connections"])?;
    Ok(())
}

/// Labels web, applies a NetworkPolicy (on the client's host) that lets nothing into it, shows
/// the client's ping failing and the drop counted on web's host, then deletes the policy.
fn policy_demo(
    net: &Net,
    routers: &[Router],
    client: &weft_netns_tests::Workload,
    addr: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let last = routers.len() - 1;
    step("policy: label web app=web, then apply a NetworkPolicy denying all ingress to it");
    show(&routers[0], &["label", "web", "app=web"])?;
    let file = net.dir().join("deny-web.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: deny-web, namespace: default}\n\
         spec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n",
    )?;
    println!("{}", std::fs::read_to_string(&file)?);
    show(
        &routers[last],
        &["policy", "apply", "-f", &file.display().to_string()],
    )?;
    show(&routers[0], &["policy", "list"])?;
    step("client pings web again: blocked on web's host");
    let ping = ["ping", "-c", "2", "-W", "1", addr];
    println!("$ {}   # in client", ping.join(" "));
    let out = client.exec(&ping)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if out.status.success() {
        return Err(format!("the policy did not block the ping\n{}", net.log_tails()).into());
    }
    show(&routers[0], &["policy", "drops"])?;
    show(&routers[0], &["policy", "delete", "default/deny-web"])?;
    Ok(())
}

/// Receives everything on TCP 7000 and prints the byte count.
const SINK: &str = "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 7000)); s.listen(1); s.settimeout(30); c, _ = s.accept(); n = 0\n\
while True:\n    b = c.recv(65536)\n    if not b: break\n    n += len(b)\nprint(n)";

/// Sends 8 MiB to argv[1]:7000 (retrying the connect while the sink starts).
const SOURCE: &str = "import socket, sys, time\nfor i in range(50):\n    try:\n        \
s = socket.create_connection((sys.argv[1], 7000), timeout=5); break\n    except OSError: time.sleep(0.2)\n\
s.sendall(b'x' * (8 << 20)); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()";

/// `client` sends 8 MiB to web over TCP; the client's router counts the flow from conntrack
/// and writes it to the metrics store, and `weft top` and PromQL show it from web's host.
fn flows_demo(
    net: &Net,
    routers: &[Router],
    web: &weft_netns_tests::Workload,
    client: &weft_netns_tests::Workload,
    addr: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let web_router = &routers[0];
    step("flows: client sends 8 MiB to web on TCP 7000 (counted by the client's router)");
    let (sent, got) = std::thread::scope(|scope| {
        let sink = scope.spawn(|| web.exec(&["python3", "-c", SINK]));
        let sent = client.exec(&["python3", "-c", SOURCE, addr]);
        (sent, sink.join())
    });
    let (sent, got) = (sent?, got.map_err(|_| "the sink panicked")??);
    println!(
        "  sent 8388608 bytes, web received {}",
        String::from_utf8_lossy(&got.stdout).trim()
    );
    if !sent.status.success() || !got.status.success() {
        return Err(format!("the transfer failed\n{}", net.log_tails()).into());
    }
    // The flow's counters reach the store within an interval or two.
    let bytes = "sum(weft_flow_bytes_total{dst_port=\"7000\",direction=\"forward\"}) >= 8388608";
    let listed = poll_until(Duration::from_secs(30), || {
        let counted = web_router
            .cli(&["query", "--tenant", "default", bytes])
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().count() > 1);
        counted
            && web_router.cli(&["top", "--once"]).is_ok_and(|o| {
                let text = String::from_utf8_lossy(&o.stdout);
                text.contains("default/client") && text.contains("7000")
            })
    });
    if !listed {
        return Err(format!("weft top did not list the flow\n{}", net.log_tails()).into());
    }
    step(&format!(
        "the busiest flows of the last minute, from {}",
        web_router.host()
    ));
    show(web_router, &["top", "--once"])?;
    step("PromQL over the flow metrics (tenant = the workloads' namespace) and router health");
    show(
        web_router,
        &[
            "query",
            "--tenant",
            "default",
            "sum by (src_workload, dst_workload, dst_port, direction) (weft_flow_bytes_total)",
        ],
    )?;
    show(
        web_router,
        &[
            "query",
            "--tenant",
            "weft-system",
            "sum by (path, encryption) (weft_connections)",
        ],
    )?;
    Ok(())
}

/// The overlay address host `i` exposes in the demo, where its DNS server listens.
fn dns_addr(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(10, 47, 255, 1 + i as u8)
}
