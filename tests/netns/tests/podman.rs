//! podman with its CNI backend, unchanged, on two hosts of the netns harness (issue 8): the
//! conflists come from `weft setup-cni` against each host's router, containers get weft
//! addresses, ping each other across hosts, resolve each other's names in weft's DNS, and
//! `podman rm` frees the address.
//! Needs root, podman, runc, busybox-static, `cargo build -p weft-router -p weft-cni --bins`
//! first. podman runs under `nsenter --net` (see RUNTIMES.md: `ip netns exec` hides the cgroups).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use weft_netns_tests::{Net, Router, busybox_image, output_text, weft_binary};

/// Time a two-router mesh gets to agree on the ring and the FDB.
const CONVERGE: Duration = Duration::from_secs(60);
/// Where the DNS servers of hosts 0 and 1 listen (exposed on their bridges).
const DNS0: &str = "10.32.100.1";
const DNS1: &str = "10.32.100.2";
/// The image name inside each private podman root.
const IMAGE: &str = "localhost/weft-busybox";

/// One host's private podman: its own root, config and CNI dirs, all under `dir`.
struct Podman {
    ns: String,
    dir: PathBuf,
}

impl Podman {
    /// Writes the private configuration and installs weft's plugin and conflist for `router`.
    fn new(ns: &str, dir: PathBuf, router: &Router) -> Podman {
        for sub in ["tmp", "cni-bin", "net.d", "root", "runroot"] {
            std::fs::create_dir_all(dir.join(sub)).expect("podman dirs");
        }
        let d = dir.display();
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=9000:9000\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             tmp_dir = \"{d}/tmp\"\nruntime = \"runc\"\n\
             [network]\nnetwork_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{d}/cni-bin\", \"/usr/lib/cni\"]\n\
             network_config_dir = \"{d}/net.d\"\n"
        );
        std::fs::write(dir.join("containers.conf"), conf).expect("containers.conf");
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n"
        );
        std::fs::write(dir.join("storage.conf"), storage).expect("storage.conf");
        let plugin = weft_binary().expect("weft").with_file_name("weft-cni");
        router.cli_ok(&[
            "setup-cni",
            "--bin-dir",
            &format!("{d}/cni-bin"),
            "--conf-dir",
            &format!("{d}/net.d"),
            "--plugin",
            plugin.to_str().expect("utf8"),
        ]);
        Podman {
            ns: ns.to_string(),
            dir,
        }
    }

    /// Runs `podman ARGS` in this host's network namespace with the private configuration.
    fn run(&self, args: &[&str]) -> Output {
        let d = self.dir.display().to_string();
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("podman")
            .args(["--root", &format!("{d}/root")])
            .args(["--runroot", &format!("{d}/runroot")])
            .args(["--network-backend", "cni"])
            .args(["--cni-config-dir", &format!("{d}/net.d")])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .output()
            .expect("running podman")
    }

    /// `podman ARGS`, which must succeed; its stdout trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Podman {
    /// Containers go first (their CNI DEL reaches the router), then the private root.
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-af", "-t", "0"]);
        let _ = self.run(&["system", "reset", "-f"]);
    }
}

/// The IPv4 address of `eth0` in a running container.
fn container_address(p: &Podman, name: &str) -> String {
    let out = p.ok(&[
        "exec", name, "ip", "-o", "-4", "addr", "show", "dev", "eth0",
    ]);
    out.split_whitespace()
        .skip_while(|t| *t != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string()
}

fn lookup(router: &Router, owner: &str) -> Vec<String> {
    router
        .cli_ok(&["ipam", "lookup", owner])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn podman_containers_on_two_hosts_get_weft_addresses_and_ping_each_other() {
    let net = Net::new(2).expect("net");
    let r0 = net
        .host(0)
        .spawn_weft(&["--ipalloc-init", "consensus=2"])
        .expect("weft 0");
    let peer = net.host(0).addr().to_string();
    let r1 = net
        .host(1)
        .spawn_weft(&["--ipalloc-init", "consensus=2", &peer])
        .expect("weft 1");
    // Each host's DNS server listens on the address it exposes on the bridge.
    r0.cli_ok(&["expose", &format!("{DNS0}/12")]);
    r1.cli_ok(&["expose", &format!("{DNS1}/12")]);
    let tar = busybox_image(net.dir());
    let tar = tar.to_str().expect("utf8");
    let p0 = Podman::new(net.host(0).ns(), net.dir().join("p0"), &r0);
    let p1 = Podman::new(net.host(1).ns(), net.dir().join("p1"), &r1);
    for p in [&p0, &p1] {
        p.ok(&["import", tar, IMAGE]);
    }
    net.wait_until(CONVERGE, "both routers connected", || {
        r0.report().is_ok_and(|r| !r.established().is_empty())
            && r1.report().is_ok_and(|r| !r.established().is_empty())
    });

    let run = |p: &Podman, name: &str| -> String {
        p.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "weft",
            IMAGE,
            "sleep",
            "600",
        ])
    };
    let id_a = run(&p0, "pa");
    let id_b = run(&p1, "pb");
    let (a, b) = (container_address(&p0, "pa"), container_address(&p1, "pb"));
    assert!(a.starts_with("10."), "pa got {a:?}");
    assert!(b.starts_with("10."), "pb got {b:?}");
    assert_ne!(a, b);
    assert_eq!(
        lookup(&r0, &id_a),
        vec![a.clone()],
        "owner is the container id"
    );
    assert_eq!(lookup(&r1, &id_b), vec![b.clone()]);

    net.wait_until(CONVERGE, "pa pings pb across hosts", || {
        p0.run(&["exec", "pa", "ping", "-c1", "-W1", &b])
            .status
            .success()
    });
    let back = p1.run(&["exec", "pb", "ping", "-c1", "-W2", &a]);
    assert!(back.status.success(), "pb -> pa: {}", output_text(&back));

    // podman passes the container name as K8S_POD_NAME: it is the workload's DNS name.
    net.wait_until(CONVERGE, "pa resolves pb.weft.local", || {
        let out = p0.run(&["exec", "pa", "nslookup", "pb.weft.local", DNS0]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&b)
    });
    let out = p1.run(&["exec", "pb", "nslookup", "pa.weft.local", DNS1]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&a),
        "pb cannot resolve pa.weft.local: {}",
        output_text(&out)
    );

    // `podman rm` runs the CNI DEL: the address is free again.
    p0.ok(&["rm", "-f", "-t", "0", "pa"]);
    assert!(lookup(&r0, &id_a).is_empty(), "podman rm left pa's address");
    let gone = p1.run(&["exec", "pb", "ping", "-c1", "-W1", &a]);
    assert!(!gone.status.success(), "pa's address still answers");
    net.wait_until(CONVERGE, "pa.weft.local gone from pb's view", || {
        let out = p1.run(&["exec", "pb", "nslookup", "pa.weft.local", DNS1]);
        !String::from_utf8_lossy(&out.stdout).contains(&a)
    });
}
