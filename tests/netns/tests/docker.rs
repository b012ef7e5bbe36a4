//! dockerd, unchanged, on two hosts of the netns harness using weft as its network and IPAM
//! driver (issue 8): `docker network create -d weft --ipam-driver weft`, containers on different
//! hosts get weft addresses, ping each other by address and by name (weft's DNS, the router
//! following dockerd's Engine API for names), `docker rm` releases the address and the name,
//! and after `kill -9` and a restart of the router `docker rm` and `docker network rm` still
//! free what was made before.
//! Needs root, docker.io, runc, busybox-static and `cargo build -p weft-router --bins` first.
//! Each dockerd runs under `nsenter --net` in its own mount namespace with a private data root,
//! exec root and socket, and its own `/run/docker/plugins` holding only this router's socket
//! (RUNTIMES.md).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use weft_netns_tests::{Net, Router, busybox_image, output_text, poll_until};

/// Time a two-router mesh gets to converge and a cross-host ping to pass.
const CONVERGE: Duration = Duration::from_secs(60);
/// Time dockerd gets to answer on its socket, and to stop.
const DOCKERD: Duration = Duration::from_secs(30);
/// The image name in each private data root.
const IMAGE: &str = "weft-busybox";
/// The Docker network's name on both hosts.
const NETWORK: &str = "wnet";

/// One host's dockerd; stopped (containers and network removed first) on drop, before the
/// router it uses goes away.
struct Dockerd {
    dir: PathBuf,
    child: Child,
}

impl Dockerd {
    /// Starts dockerd in namespace `ns` with everything under `dir`, plugins from `dir/plugins`.
    fn start(ns: &str, dir: PathBuf) -> Dockerd {
        std::fs::create_dir_all(dir.join("plugins")).expect("plugin dir");
        let d = dir.display();
        std::fs::write(
            dir.join("daemon.json"),
            format!("{{\"deprecated-key-path\": \"{d}/key.json\"}}"),
        )
        .expect("daemon.json");
        let script = format!(
            "mkdir -p /run/docker/plugins && mount --bind {d}/plugins /run/docker/plugins && \
             exec dockerd --config-file {d}/daemon.json --bridge=none --iptables=false \
             --ip6tables=false --ip-forward=false --ip-masq=false --cgroup-parent /{name} \
             --data-root {d}/data --exec-root {d}/exec --pidfile {d}/docker.pid \
             -H unix://{d}/docker.sock",
            name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("weft-test"),
        );
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "slave",
                "--",
                "sh",
                "-c",
            ])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let dockerd = Dockerd { dir, child };
        let up = poll_until(DOCKERD, || dockerd.run(&["info"]).status.success());
        assert!(up, "dockerd did not come up:\n{}", dockerd.log());
        dockerd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// `docker ARGS` against this daemon.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", self.dir.display()))
            .args(args)
            .output()
            .expect("running docker")
    }

    /// `docker ARGS`, which must succeed; its stdout trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n{}",
            output_text(&out),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.run(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
        let _ = self.run(&["network", "rm", NETWORK]);
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let stopped = poll_until(DOCKERD, || matches!(self.child.try_wait(), Ok(Some(_))));
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The IPv4 address of `eth0` in a running container.
fn container_address(d: &Dockerd, name: &str) -> String {
    d.ok(&[
        "exec", name, "ip", "-o", "-4", "addr", "show", "dev", "eth0",
    ])
    .split_whitespace()
    .skip_while(|t| *t != "inet")
    .nth(1)
    .and_then(|a| a.split('/').next())
    .unwrap_or_default()
    .to_string()
}

/// POSTs `body` to `/<method>` on the plugin socket as dockerd would; the raw HTTP answer.
fn plugin_call(socket: &Path, method: &str, body: &str) -> String {
    let mut stream = UnixStream::connect(socket).expect("plugin socket");
    write!(
        stream,
        "POST /{method} HTTP/1.1\r\nHost: plugin\r\n\
         Content-Type: application/vnd.docker.plugins.v1.2+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("writing the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("reading the answer");
    answer
}

fn launch(net: &Net, i: usize, peers: &[usize]) -> Router {
    let dir = net.dir().join(format!("d{i}"));
    let plugins = dir.join("plugins").to_str().expect("utf8").to_string();
    let api = format!("unix://{}/docker.sock", dir.display());
    let mut args = vec![
        "--ipalloc-init".to_string(),
        "consensus=2".to_string(),
        "--docker-plugin".to_string(),
        "--docker-plugin-dir".to_string(),
        plugins,
        "--docker-api".to_string(),
        api,
    ];
    args.extend(peers.iter().map(|&p| net.host(p).addr().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    net.host(i).spawn_weft(&args).expect("weft")
}

/// The addresses `weft dns-lookup NAME` prints on router `r` (none when it fails).
fn lookup(r: &Router, name: &str) -> Vec<String> {
    r.cli(&["dns-lookup", name])
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The first address host `i` holds on bridge `weft` (where its DNS server listens).
fn bridge_address(net: &Net, i: usize) -> String {
    let out = net
        .host(i)
        .exec(&["ip", "-o", "-4", "addr", "show", "dev", "weft"])
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|t| *t != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| {
            panic!(
                "no address on the bridge of host {i}: {}",
                output_text(&out)
            )
        })
        .to_string()
}

/// The number of veth interfaces in namespace `ns`.
/// Whether `weft ps` on `r` lists a workload named `name` at `addr` (name first, then MAC,
/// interface, `ADDR/PREFIX`).
fn ps_lists(r: &Router, name: &str, addr: &str) -> bool {
    r.cli_ok(&["ps"]).lines().any(|l| {
        let mut cols = l.split_whitespace();
        cols.next() == Some(name) && l.contains(&format!(" {addr}/"))
    })
}

fn veths(ns: &str) -> usize {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "type", "veth"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn docker_containers_on_two_hosts_get_weft_addresses_and_ping_each_other() {
    let net = Net::new(2).expect("net");
    let r0 = launch(&net, 0, &[]);
    let r1 = launch(&net, 1, &[0]);
    for i in 0..2 {
        let sock = net.dir().join(format!("d{i}/plugins/weft.sock"));
        assert!(
            sock.exists(),
            "router {i} does not serve {}",
            sock.display()
        );
    }
    let tar = busybox_image(net.dir());
    let tar = tar.to_str().expect("utf8");
    // Declared after the routers: dropped (stopped) before them.
    let d0 = Dockerd::start(net.host(0).ns(), net.dir().join("d0"));
    let d1 = Dockerd::start(net.host(1).ns(), net.dir().join("d1"));
    for d in [&d0, &d1] {
        d.ok(&["import", tar, IMAGE]);
    }
    net.wait_until(CONVERGE, "both routers connected", || {
        r0.report().is_ok_and(|r| !r.established().is_empty())
            && r1.report().is_ok_and(|r| !r.established().is_empty())
    });
    for d in [&d0, &d1] {
        d.ok(&[
            "network",
            "create",
            "-d",
            "weft",
            "--ipam-driver",
            "weft",
            // A configured subnet, so that `docker run --ip` is allowed below.
            "--subnet",
            "10.32.0.0/12",
            NETWORK,
        ]);
    }
    // Bad requests on the real socket: an Err each, nothing allocated or attached.
    let sock = net.dir().join("d0/plugins/weft.sock");
    let ps_before = r0.cli_ok(&["ps"]);
    let ipam_before = r0.cli_ok(&["status", "ipam"]);
    let bad = plugin_call(&sock, "IpamDriver.RequestAddress", "{\"PoolID\": ");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(
        bad.contains("\"Err\":\"malformed IpamDriver.RequestAddress"),
        "{bad}"
    );
    let outside = plugin_call(
        &sock,
        "IpamDriver.RequestAddress",
        "{\"PoolID\": \"weft-10.32.0.0/12\", \"Address\": \"192.168.9.9\"}",
    );
    assert!(outside.contains("outside the pool"), "{outside}");
    let unknown = plugin_call(&sock, "NetworkDriver.NoSuchThing", "{}");
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert!(unknown.contains("\"Err\""), "{unknown}");
    assert_eq!(
        r0.cli_ok(&["ps"]),
        ps_before,
        "a refused call attached something"
    );
    assert_eq!(
        r0.cli_ok(&["status", "ipam"]),
        ipam_before,
        "a refused call allocated something"
    );

    // Each host's DNS server listens on its bridge's first exposed address: the network's
    // gateway there (dockerd does not show a gateway its IPAM driver chose). Containers are pointed at it with `--dns` (libnetwork's Join answer has no
    // DNS field); dockerd's embedded resolver forwards the names it does not know to it.
    let (gw0, gw1) = (bridge_address(&net, 0), bridge_address(&net, 1));
    let run = |d: &Dockerd, name: &str, extra: &[&str]| {
        let gw = if std::ptr::eq(d, &d0) { &gw0 } else { &gw1 };
        let mut args = vec!["run", "-d", "--name", name, "--network", NETWORK];
        args.extend_from_slice(&["--dns", gw, "--dns-search", "weft.local"]);
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sleep", "600"]);
        d.ok(&args)
    };
    run(&d0, "ca", &[]);
    run(&d1, "cb", &["--label", "app=db"]);
    let (a, b) = (container_address(&d0, "ca"), container_address(&d1, "cb"));
    assert!(a.starts_with("10."), "ca got {a:?}");
    assert!(b.starts_with("10."), "cb got {b:?}");
    assert_ne!(a, b);
    let inspected = d0.ok(&[
        "inspect",
        "-f",
        "{{(index .NetworkSettings.Networks \"wnet\").IPAddress}}",
        "ca",
    ]);
    assert_eq!(inspected, a, "dockerd and the container agree");
    net.wait_until(CONVERGE, "weft ps lists ca by its container name", || {
        ps_lists(&r0, "ca", &a)
    });
    net.wait_until(CONVERGE, "ca named in DNS", || {
        lookup(&r0, "ca") == [a.clone()]
    });
    let records = r0.cli_ok(&["status", "dns"]);
    let names: Vec<&str> = records
        .lines()
        .filter(|l| l.split_whitespace().any(|c| c == a))
        .collect();
    assert_eq!(names.len(), 1, "one DNS record for ca's address: {names:?}");

    // One interface (no docker_gwbridge), the default route via the gateway the host holds.
    let links = d0.ok(&["exec", "ca", "ip", "-o", "link", "show"]);
    assert_eq!(links.lines().count(), 2, "lo and eth0 only: {links}");
    let routes = d0.ok(&["exec", "ca", "ip", "route"]);
    let gateway = routes
        .lines()
        .find_map(|l| l.strip_prefix("default via "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no default route: {routes}"))
        .to_string();
    let gw = d0.run(&["exec", "ca", "ping", "-c1", "-W2", &gateway]);
    assert!(
        gw.status.success(),
        "ca -> gateway {gateway}: {}",
        output_text(&gw)
    );

    net.wait_until(CONVERGE, "ca pings cb across hosts", || {
        d0.run(&["exec", "ca", "ping", "-c1", "-W1", &b])
            .status
            .success()
    });
    let back = d1.run(&["exec", "cb", "ping", "-c1", "-W2", &a]);
    assert!(back.status.success(), "cb -> ca: {}", output_text(&back));

    // By name: each router learnt its container's name from dockerd and gossiped it.
    net.wait_until(CONVERGE, "both names on both routers", || {
        [&r0, &r1]
            .iter()
            .all(|r| lookup(r, "ca") == [a.clone()] && lookup(r, "cb") == [b.clone()])
    });
    net.wait_until(CONVERGE, "ca pings cb.weft.local", || {
        d0.run(&["exec", "ca", "ping", "-c1", "-W1", "cb.weft.local"])
            .status
            .success()
    });
    let by_name = d1.run(&["exec", "cb", "ping", "-c1", "-W2", "ca"]);
    assert!(
        by_name.status.success(),
        "cb -> ca by name (search weft.local): {}",
        output_text(&by_name)
    );

    // cb's Docker label reached policy: denying ingress to app=db blocks ca -> cb, and
    // deleting the policy lets it through again.
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                metadata: {name: deny-db, namespace: default}\n\
                spec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n";
    let file = net.dir().join("deny-db.yaml");
    std::fs::write(&file, deny).expect("policy file");
    r0.cli_ok(&["policy", "apply", "-f", file.to_str().expect("utf8")]);
    let ca_reaches_cb = || {
        d0.run(&["exec", "ca", "ping", "-c1", "-W1", &b])
            .status
            .success()
    };
    net.wait_until(CONVERGE, "ca blocked from cb (app=db)", || !ca_reaches_cb());
    assert!(!ca_reaches_cb(), "ca -> cb blocked only once");
    let gw = d0.run(&["exec", "ca", "ping", "-c1", "-W2", &gateway]);
    assert!(
        gw.status.success(),
        "ca lost its network: {}",
        output_text(&gw)
    );
    r0.cli_ok(&["policy", "delete", "default/deny-db"]);
    net.wait_until(CONVERGE, "ca reaches cb again", ca_reaches_cb);

    // `docker rm` releases the address and the name: another container can claim exactly it.
    d0.ok(&["rm", "-f", "ca"]);
    assert!(!r0.cli_ok(&["ps"]).contains(&a), "ca still attached");
    assert!(lookup(&r0, "ca").is_empty(), "ca's name outlived docker rm");
    net.wait_until(CONVERGE, "ca's name gone on the other router", || {
        lookup(&r1, "ca").is_empty()
    });
    run(&d0, "cc", &["--ip", &a]);
    assert_eq!(container_address(&d0, "cc"), a);
    // And a taken address is refused.
    let taken = d0.run(&[
        "run",
        "-d",
        "--name",
        "cd",
        "--network",
        NETWORK,
        "--ip",
        &a,
        IMAGE,
        "sleep",
        "600",
    ]);
    assert!(!taken.status.success(), "{a} handed out twice");

    // kill -9 and restart the router: what dockerd made before is still undone on `docker rm`
    // and `docker network rm`, and new containers are still named.
    r0.kill9().expect("kill -9");
    r0.restart().expect("restart");
    net.wait_until(CONVERGE, "cc still named after the restart", || {
        lookup(&r0, "cc") == [a.clone()] && lookup(&r1, "cc") == [a.clone()]
    });
    assert!(
        ps_lists(&r0, "cc", &a),
        "weft ps lost cc after the restart:\n{}",
        r0.cli_ok(&["ps"])
    );
    let before = veths(net.host(0).ns());
    d0.ok(&["rm", "-f", "cc"]);
    assert_eq!(
        veths(net.host(0).ns()),
        before - 1,
        "cc's veth outlived docker rm after the restart"
    );
    let ps = r0.cli_ok(&["ps"]);
    assert!(
        !ps.contains(&format!(" {a}/")),
        "cc outlived docker rm in weft ps after the restart:\n{ps}"
    );
    run(&d0, "ce", &["--ip", &a]);
    assert_eq!(
        container_address(&d0, "ce"),
        a,
        "cc's address was not freed"
    );
    net.wait_until(CONVERGE, "ce named after the restart", || {
        lookup(&r0, "ce") == [a.clone()]
    });
    d0.ok(&["rm", "-f", "ce"]);
    assert!(lookup(&r0, "ce").is_empty(), "ce's name outlived docker rm");
    d0.ok(&["network", "rm", NETWORK]);
    let gw = gw0.clone();
    let exposed = net
        .host(0)
        .exec(&["ip", "-o", "addr", "show", "dev", "weft"]);
    let exposed = exposed.map(|o| output_text(&o)).unwrap_or_default();
    assert!(
        !exposed.contains(&format!("{gw}/")),
        "the gateway {gw} stayed on the bridge: {exposed}"
    );
}
