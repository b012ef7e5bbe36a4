//! The CNI plugin executed directly with the spec's environment (as a runtime would), against a
//! real `weft` router in a host namespace: every command, every error code, and what each bad
//! input leaves behind (no address, no interface). Needs root and
//! `cargo build -p weft-router -p weft-cni --bins` first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use weft_netns_tests::{Net, Router, Workload, weft_binary};

/// A bad-input case: what, the environment, stdin, the expected error code.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Value, u64);

/// What one plugin run gave back.
struct Run {
    ok: bool,
    out: Value,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<u64> {
        self.out["code"].as_u64()
    }
}

fn plugin_binary() -> PathBuf {
    weft_binary()
        .expect("weft binary")
        .with_file_name("weft-cni")
}

/// Runs the plugin in host namespace `ns` with exactly `env` (plus PATH) and `stdin`.
fn run(ns: &str, env: &[(&str, &str)], stdin: &Value) -> Run {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}"))
        .arg(plugin_binary())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning the plugin");
    let bytes = match stdin {
        Value::String(raw) => raw.clone().into_bytes(),
        v => v.to_string().into_bytes(),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&bytes)
        .expect("writing stdin");
    let out = child.wait_with_output().expect("plugin output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        ok: out.status.success(),
        out: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("plugin printed {text:?}: {e}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The environment of `command` for container `cid` in workload `w`.
fn env<'a>(command: &'a str, cid: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-0",
        ),
    ]
}

fn netns_path(w: &Workload) -> String {
    format!("/run/netns/{}", w.ns())
}

/// The plugin's own configuration, taken from the conflist `weft setup-cni` wrote.
fn conf_from_conflist(conf_dir: &Path, version: &str) -> Value {
    let text = std::fs::read_to_string(conf_dir.join("10-weft.conflist")).expect("conflist");
    let list: Value = serde_json::from_str(&text).expect("conflist json");
    let mut conf = list["plugins"][0].clone();
    conf["cniVersion"] = json!(version);
    conf["name"] = list["name"].clone();
    conf
}

fn lookup(router: &Router, owner: &str) -> Vec<String> {
    router
        .cli_ok(&["ipam", "lookup", owner])
        .lines()
        .map(str::to_string)
        .collect()
}

fn has_eth0(w: &Workload) -> bool {
    let out = w.exec(&["ip", "-o", "link", "show"]).expect("ip link");
    String::from_utf8_lossy(&out.stdout).contains(" eth0@")
}

fn address_of(w: &Workload) -> String {
    let out = w
        .exec(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|t| *t != "inet")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn every_command_and_error_code_through_a_real_router() {
    let net = Net::new(1).expect("net");
    let router = net
        .host(0)
        .spawn_weft(&["--ipalloc-init", "consensus=1"])
        .expect("weft");
    let ns = net.host(0).ns().to_string();
    let dir = net.dir().join("cni");
    let (bin_dir, conf_dir) = (dir.join("bin"), dir.join("net.d"));
    let plugin = plugin_binary();
    router.cli_ok(&[
        "setup-cni",
        "--bin-dir",
        bin_dir.to_str().expect("utf8"),
        "--conf-dir",
        conf_dir.to_str().expect("utf8"),
        "--plugin",
        plugin.to_str().expect("utf8"),
    ]);
    assert!(bin_dir.join("weft").is_file());
    let conf = conf_from_conflist(&conf_dir, "1.0.0");
    assert_eq!(
        conf["socket"].as_str(),
        router.socket().to_str(),
        "the conflist must reach this router"
    );

    // VERSION needs nothing else.
    let v = run(
        &ns,
        &[("CNI_COMMAND", "VERSION")],
        &json!({"cniVersion": "1.0.0"}),
    );
    assert!(v.ok, "{}", v.stderr);
    let versions = v.out["supportedVersions"].to_string();
    for want in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(versions.contains(want), "{versions}");
    }

    // ADD: an address from weft's IPAM, the interface in the namespace, the spec's result.
    // The host has an overlay address, so the router's DNS server listens there and the result
    // tells the container to use it.
    router.cli_ok(&["expose", "10.32.100.1/12"]);
    net.wait_until(
        std::time::Duration::from_secs(10),
        "the DNS server on the exposed address",
        || {
            net.host(0)
                .exec(&["ss", "-lnu"])
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("10.32.100.1:53"))
        },
    );
    let c1 = net.add_workload(0, "c1").expect("workload");
    let c1_ns = netns_path(&c1);
    let add = run(&ns, &env("ADD", "cid1", &c1_ns), &conf);
    assert_eq!(
        add.out["dns"]["nameservers"][0], "10.32.100.1",
        "{}",
        add.out
    );
    assert_eq!(add.out["dns"]["search"][0], "weft.local", "{}", add.out);
    assert!(add.ok, "ADD failed: {} {}", add.out, add.stderr);
    let address = add.out["ips"][0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    assert!(address.starts_with("10."), "{}", add.out);
    assert_eq!(add.out["cniVersion"], "1.0.0");
    assert_eq!(add.out["interfaces"][0]["name"], "eth0");
    assert_eq!(add.out["interfaces"][0]["sandbox"], c1_ns.as_str());
    assert_eq!(add.out["ips"][0]["interface"], 0);
    assert!(add.out["routes"].to_string().contains("224.0.0.0/4"));
    assert_eq!(address_of(&c1), address);
    let ip = address.split('/').next().expect("ip").to_string();
    assert_eq!(lookup(&router, "cid1"), vec![ip.clone()]);
    let ps = router.cli_ok(&["ps"]);
    assert!(
        ps.contains("cart-0"),
        "pod name recorded as the workload name: {ps}"
    );
    // The conflist asks for hairpin mode (as Weave Net's does): the bridge port reflects.
    let ports = net
        .host(0)
        .exec(&["bridge", "-d", "link", "show", "master", "weft"])
        .expect("bridge link");
    let ports = String::from_utf8_lossy(&ports.stdout).to_string();
    assert!(
        ports.lines().any(|l| l.contains("hairpin on")),
        "no bridge port in hairpin mode: {ports}"
    );

    // A second container on the same host reaches the first.
    let c2 = net.add_workload(0, "c2").expect("workload");
    let c2_ns = netns_path(&c2);
    let add2 = run(&ns, &env("ADD", "cid2", &c2_ns), &conf);
    assert!(add2.ok, "{} {}", add2.out, add2.stderr);
    let ping = c2.exec(&["ping", "-c1", "-W2", &ip]).expect("ping");
    assert!(ping.status.success(), "c2 cannot ping c1 at {ip}");

    // ADD of an existing interface fails and changes nothing.
    let again = run(&ns, &env("ADD", "cid1", &c1_ns), &conf);
    assert!(!again.ok);
    assert_eq!(again.code(), Some(100), "{}", again.out);
    assert_eq!(lookup(&router, "cid1"), vec![ip.clone()]);

    // CHECK passes for the attachment, 3 for an unknown container.
    let check = run(&ns, &env("CHECK", "cid1", &c1_ns), &conf);
    assert!(check.ok, "{} {}", check.out, check.stderr);
    let unknown = run(&ns, &env("CHECK", "nosuch", &c1_ns), &conf);
    assert_eq!(unknown.code(), Some(3), "{}", unknown.out);

    // STATUS (1.1.0 only).
    let conf11 = conf_from_conflist(&conf_dir, "1.1.0");
    let status = run(
        &ns,
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")],
        &conf11,
    );
    assert!(status.ok, "{} {}", status.out, status.stderr);
    let old = run(
        &ns,
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")],
        &conf,
    );
    assert_eq!(old.code(), Some(1), "STATUS under 1.0.0: {}", old.out);

    // DEL after a kill -9 and restart still frees the address and removes the interface.
    router.kill9().expect("kill");
    router.restart().expect("restart");
    let del = run(&ns, &env("DEL", "cid1", &c1_ns), &conf);
    assert!(del.ok, "{} {}", del.out, del.stderr);
    assert!(lookup(&router, "cid1").is_empty());
    assert!(!has_eth0(&c1), "eth0 left in c1 after DEL");
    let del_again = run(&ns, &env("DEL", "cid1", &c1_ns), &conf);
    assert!(del_again.ok, "DEL must be idempotent: {}", del_again.out);
    let mut del_no_netns = env("DEL", "cid1", "");
    del_no_netns.retain(|(k, _)| *k != "CNI_NETNS");
    assert!(run(&ns, &del_no_netns, &conf).ok);

    // GC removes every attachment not listed.
    let mut gc_conf = conf11.clone();
    gc_conf["cni.dev/valid-attachments"] = json!([]);
    let gc = run(
        &ns,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        &gc_conf,
    );
    assert!(gc.ok, "{} {}", gc.out, gc.stderr);
    assert!(lookup(&router, "cid2").is_empty(), "GC left cid2's address");
    assert!(!has_eth0(&c2), "GC left cid2's interface");

    // Bad input: the right code, and no address or interface left behind.
    let c3 = net.add_workload(0, "c3").expect("workload");
    let c3_ns = netns_path(&c3);
    let full = env("ADD", "cid3", &c3_ns);
    let without = |key: &str| -> Vec<(&str, &str)> {
        full.iter().copied().filter(|(k, _)| *k != key).collect()
    };
    let mut bad_version = conf.clone();
    bad_version["cniVersion"] = json!("9.9.9");
    let mut bad_ipam = conf.clone();
    bad_ipam["ipam"] = json!({"type": "no-such-ipam"});
    let mut no_daemon = conf.clone();
    no_daemon["socket"] = json!(dir.join("absent.sock"));
    let mut wrong_mtu = conf.clone();
    wrong_mtu["mtu"] = json!(1300);
    let mut missing_ns = full.clone();
    missing_ns[2] = ("CNI_NETNS", "/run/netns/no-such-namespace");
    let cases: Vec<Case> = vec![
        (
            "missing CNI_COMMAND",
            without("CNI_COMMAND"),
            conf.clone(),
            4,
        ),
        ("missing CNI_NETNS", without("CNI_NETNS"), conf.clone(), 4),
        (
            "missing CNI_CONTAINERID",
            without("CNI_CONTAINERID"),
            conf.clone(),
            4,
        ),
        ("invalid JSON", full.clone(), json!("{\"cniVersion\": "), 6),
        ("unsupported cniVersion", full.clone(), bad_version, 1),
        ("unknown IPAM type", full.clone(), bad_ipam, 7),
        ("mtu differs from the overlay's", full.clone(), wrong_mtu, 7),
        ("daemon not running", full.clone(), no_daemon.clone(), 11),
        ("namespace does not exist", missing_ns, conf.clone(), 3),
    ];
    for (what, env, stdin, code) in cases {
        let r = run(&ns, &env, &stdin);
        assert!(!r.ok, "{what}: succeeded");
        assert_eq!(r.code(), Some(code), "{what}: {}", r.out);
        assert!(r.out["msg"].is_string(), "{what}: {}", r.out);
        assert!(lookup(&router, "cid3").is_empty(), "{what}: address left");
        assert!(!has_eth0(&c3), "{what}: interface left");
    }
    let mut no_daemon11 = no_daemon;
    no_daemon11["cniVersion"] = json!("1.1.0");
    let down = run(
        &ns,
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")],
        &no_daemon11,
    );
    assert_eq!(down.code(), Some(50), "STATUS without daemon: {}", down.out);

    // A 0.4.0 result carries ips[].version.
    let conf04 = conf_from_conflist(&conf_dir, "0.4.0");
    let add04 = run(&ns, &env("ADD", "cid3", &c3_ns), &conf04);
    assert!(add04.ok, "{} {}", add04.out, add04.stderr);
    assert_eq!(add04.out["ips"][0]["version"], "4");
    assert!(run(&ns, &env("DEL", "cid3", &c3_ns), &conf04).ok);
    assert!(lookup(&router, "cid3").is_empty());
}

#[test]
fn delegated_host_local_ipam_gives_the_address_and_del_returns_it() {
    let net = Net::new(1).expect("net");
    let router = net
        .host(0)
        .spawn_weft(&["--ipalloc-init", "consensus=1"])
        .expect("weft");
    let ns = net.host(0).ns().to_string();
    let data = net.dir().join("host-local");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "weft-hl",
        "type": "weft",
        "socket": router.socket(),
        "ipam": {
            "type": "host-local",
            "dataDir": data,
            "ranges": [[{"subnet": "10.32.0.0/12", "rangeStart": "10.40.0.10", "rangeEnd": "10.40.0.20"}]],
        },
    });
    let w = net.add_workload(0, "hl").expect("workload");
    let w_ns = netns_path(&w);
    let add = run(&ns, &env("ADD", "hl1", &w_ns), &conf);
    assert!(add.ok, "{} {}", add.out, add.stderr);
    let address = add.out["ips"][0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    assert!(address.starts_with("10.40.0.1"), "{address}");
    assert_eq!(address_of(&w), address);
    let ip = address.split('/').next().expect("ip").to_string();
    assert!(
        data.join("weft-hl").join(&ip).exists(),
        "host-local holds {ip}"
    );
    assert!(run(&ns, &env("DEL", "hl1", &w_ns), &conf).ok);
    assert!(
        !data.join("weft-hl").join(&ip).exists(),
        "host-local still holds {ip}"
    );
    assert!(lookup(&router, "hl1").is_empty());
    assert!(!has_eth0(&w));
}
