//! End-to-end network policy tests (issue 9): namespaces x, y, z with workloads a, b, c each
//! (labelled `pod=a`…, namespaces labelled `ns=x`…), spread over two hosts, probed on TCP 80,
//! TCP 81 and UDP 53 across all 81 pairs for every case in `policy-cases/` (policies, optional
//! label changes, and the expected reachability matrix per port).
//! Needs root, `ip`, `nft`, `python3`, and `cargo build -p weft-router --bins` first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_netns_tests::{Net, Router, Workload, output_text};
use weft_router::policy::labels::{LabelEdit, Labels};
use weft_router::policy::model::{Flow, NamedPort, Protocol, WorkloadMeta, World, allows};
use weft_router::policy::validate::parse_documents;

/// Namespaces and pods, in matrix order.
const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
/// The probed ports, as the case files name them.
const PORTS: [&str; 3] = ["tcp/80", "tcp/81", "udp/53"];
/// Named ports every workload declares.
const NAMED_PORTS: [&str; 3] = ["serve-80=80/TCP", "serve-81=81/TCP", "dns=53/UDP"];
/// How long a probe waits for a TCP handshake or a UDP echo.
const PROBE_TIMEOUT: &str = "0.8";
/// How long a case may take to be in force everywhere and to show in the probes.
const SETTLE: Duration = Duration::from_secs(10);
/// The propagation bound of the issue: a policy applied on one host is known on the other.
const PROPAGATION: Duration = Duration::from_secs(2);

/// Workload `i` of the matrix (0..9): namespace, pod, address, host.
fn pod(i: usize) -> (&'static str, &'static str, String, usize) {
    let (n, p) = (i / 3, i % 3);
    (
        NAMESPACES[n],
        PODS[p],
        format!("10.32.0.{}{}", n + 1, p + 1),
        i % 2,
    )
}

/// A matrix: `Some(true)` passes, `Some(false)` blocked, `None` self (not probed).
type Matrix = [[Option<bool>; 9]; 9];

#[derive(Debug)]
struct Case {
    name: String,
    policies: String,
    before: Vec<String>,
    after: Vec<String>,
    expect: BTreeMap<String, Matrix>,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policy-cases")
}

fn parse_matrix(name: &str, lines: &[&str]) -> Matrix {
    let rows: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(rows.len(), 9, "{name}: a matrix has 9 rows");
    let mut m: Matrix = [[None; 9]; 9];
    for (i, row) in rows.iter().enumerate() {
        let mut words = row.split_whitespace();
        let (ns, p, _, _) = pod(i);
        assert_eq!(
            words.next(),
            Some(format!("{ns}{p}").as_str()),
            "{name}: row {i}"
        );
        let cells: Vec<&str> = words.collect();
        assert_eq!(cells.len(), 9, "{name}: row {i} has 9 cells");
        for (j, c) in cells.iter().enumerate() {
            m[i][j] = match *c {
                "." => Some(true),
                "X" => Some(false),
                "-" if i == j => None,
                other => panic!("{name}: row {i} cell {j}: {other:?}"),
            };
        }
    }
    m
}

fn load_cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("policy-cases")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(path).expect("case file");
            let mut sections: Vec<(String, Vec<&str>)> = Vec::new();
            for line in text.lines() {
                if let Some(h) = line.strip_prefix("=== ") {
                    sections.push((h.trim().to_string(), Vec::new()));
                } else if let Some((_, body)) = sections.last_mut() {
                    body.push(line);
                }
            }
            let mut case = Case {
                name: name.clone(),
                policies: String::new(),
                before: Vec::new(),
                after: Vec::new(),
                expect: BTreeMap::new(),
            };
            let actions = |body: &[&str]| -> Vec<String> {
                body.iter()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| l.to_string())
                    .collect()
            };
            for (head, body) in &sections {
                match head.as_str() {
                    "policies" => case.policies = body.join("\n") + "\n",
                    "before" => case.before = actions(body),
                    "after" => case.after = actions(body),
                    port if PORTS.contains(&port) => {
                        case.expect
                            .insert(port.to_string(), parse_matrix(&name, body));
                    }
                    other => panic!("{name}: unknown section {other:?}"),
                }
            }
            assert_eq!(case.expect.len(), 3, "{name}: a matrix per port");
            case
        })
        .collect()
}

fn port_flow(port: &str) -> (Protocol, u16) {
    match port {
        "tcp/80" => (Protocol::Tcp, 80),
        "tcp/81" => (Protocol::Tcp, 81),
        _ => (Protocol::Udp, 53),
    }
}

/// Applies a `before` action to the model world: `label NS/NAME k=v`, `namespace label NS k=v`.
fn apply_action(world: &mut World, action: &str) {
    let words: Vec<&str> = action.split_whitespace().collect();
    match words.as_slice() {
        ["label", target, edits @ ..] => {
            let w = world
                .workloads
                .values_mut()
                .find(|w| format!("{}/{}", w.namespace, w.name) == *target)
                .expect("labelled workload");
            for e in edits {
                LabelEdit::parse(e).unwrap().apply(&mut w.labels);
            }
        }
        ["namespace", "label", ns, edits @ ..] => {
            let l = world.namespaces.entry(ns.to_string()).or_default();
            for e in edits {
                LabelEdit::parse(e).unwrap().apply(l);
            }
        }
        other => panic!("unknown action {other:?}"),
    }
}

/// The model's world of a case: the 9 workloads, the namespaces' labels, `policies` (the
/// case's, or a mutant of them) and the case's `before` actions.
fn case_world(case: &Case, policies: &str) -> World {
    let mut world = World::default();
    for ns in NAMESPACES {
        world
            .namespaces
            .insert(ns.into(), Labels::from([("ns".into(), ns.into())]));
    }
    for i in 0..9 {
        let (ns, p, addr, host) = pod(i);
        let address = addr.parse().unwrap();
        world.workloads.insert(
            address,
            WorkloadMeta {
                address,
                name: format!("{ns}-{p}"),
                namespace: ns.into(),
                labels: Labels::from([("pod".into(), p.into())]),
                ports: NAMED_PORTS
                    .iter()
                    .map(|s| NamedPort::parse(s).unwrap())
                    .collect(),
                host: format!("h{host}"),
            },
        );
    }
    for (_, p) in parse_documents(policies).unwrap_or_else(|e| panic!("{}: {e}", case.name)) {
        world.policies.insert(p.key.clone(), p);
    }
    for a in &case.before {
        apply_action(&mut world, a);
    }
    world
}

/// The cells of the case's matrices where `world` disagrees: (port, source, destination).
fn disagreements(case: &Case, world: &World) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (port, m) in &case.expect {
        let (protocol, number) = port_flow(port);
        for (i, row) in m.iter().enumerate() {
            for (j, cell) in row.iter().enumerate() {
                let Some(want) = cell else { continue };
                let flow = Flow {
                    src: pod(i).2.parse().unwrap(),
                    dst: pod(j).2.parse().unwrap(),
                    protocol,
                    port: number,
                };
                if allows(world, &flow) != *want {
                    out.push((port.clone(), pod(i).2, pod(j).2));
                }
            }
        }
    }
    out
}

/// The hand-written matrices agree with weft's reference evaluation of Kubernetes semantics
/// (no root needed): a wrong matrix, or a wrong model, fails here first.
#[test]
fn case_files_agree_with_the_model() {
    let cases = load_cases();
    assert!(cases.len() >= 20, "at least 20 cases, got {}", cases.len());
    for case in &cases {
        let wrong = disagreements(case, &case_world(case, &case.policies));
        assert!(wrong.is_empty(), "{}: {wrong:?}", case.name);
    }
}

/// Rewrites every label selector of the JSON of a NetworkPolicy with `mutate`.
fn mutate_selectors(v: &mut serde_json::Value, mutate: &dyn Fn(&mut serde_json::Value)) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if matches!(k.as_str(), "podSelector" | "namespaceSelector") {
                    mutate(child);
                }
                mutate_selectors(child, mutate);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                mutate_selectors(item, mutate);
            }
        }
        _ => {}
    }
}

/// Mutants of selector matching, each as the rewrite of the selectors that makes a correct
/// matcher behave like the mutant: the cases must notice every one (some matrix cell differs).
#[test]
fn a_mutation_in_selector_matching_fails_the_cases() {
    type Mutant = (&'static str, fn(&mut serde_json::Value));
    let mutants: [Mutant; 5] = [
        // Not a mutant: the JSON round trip alone changes nothing.
        ("none", |_| {}),
        ("matchLabels ignored", |s| {
            if let Some(m) = s.get_mut("matchLabels") {
                *m = serde_json::Value::Null;
            }
        }),
        ("In and NotIn swapped", |s| {
            for e in s["matchExpressions"].as_array_mut().into_iter().flatten() {
                let op = match e["operator"].as_str() {
                    Some("In") => "NotIn",
                    Some("NotIn") => "In",
                    _ => continue,
                };
                e["operator"] = op.into();
            }
        }),
        ("Exists and DoesNotExist swapped", |s| {
            for e in s["matchExpressions"].as_array_mut().into_iter().flatten() {
                let op = match e["operator"].as_str() {
                    Some("Exists") => "DoesNotExist",
                    Some("DoesNotExist") => "Exists",
                    _ => continue,
                };
                e["operator"] = op.into();
            }
        }),
        ("matchExpressions ignored", |s| {
            if let Some(m) = s.get_mut("matchExpressions") {
                *m = serde_json::Value::Null;
            }
        }),
    ];
    let cases = load_cases();
    for (what, mutate) in mutants {
        let caught: Vec<&str> = cases
            .iter()
            .filter(|case| {
                let mutant: Vec<String> = parse_documents(&case.policies)
                    .expect("valid case")
                    .into_iter()
                    .map(|(np, _)| {
                        let mut v = serde_json::to_value(&np).expect("policy as JSON");
                        mutate_selectors(&mut v, &mutate);
                        v.to_string()
                    })
                    .collect();
                let world = case_world(case, &mutant.join("\n---\n"));
                !disagreements(case, &world).is_empty()
            })
            .map(|c| c.name.as_str())
            .collect();
        if what == "none" {
            assert!(caught.is_empty(), "the round trip alone changed {caught:?}");
        } else {
            assert!(!caught.is_empty(), "no case notices the mutant: {what}");
        }
    }
}

const SERVER: &str = r#"
import selectors, socket
sel = selectors.DefaultSelector()
for port in (80, 81):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(256); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, "tcp")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 53)); u.setblocking(False)
sel.register(u, selectors.EVENT_READ, "udp")
while True:
    for key, _ in sel.select():
        try:
            if key.data == "tcp":
                c, _ = key.fileobj.accept(); c.close()
            else:
                data, peer = key.fileobj.recvfrom(512); key.fileobj.sendto(data, peer)
        except OSError:
            pass
"#;

const PROBER: &str = r#"
import socket, sys, threading
timeout = float(sys.argv[1]); result = {}
def probe(target):
    ip, proto, port = target.split("/")
    ok = False
    try:
        if proto == "tcp":
            socket.create_connection((ip, int(port)), timeout=timeout).close(); ok = True
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
            s.sendto(b"probe", (ip, int(port))); ok = s.recv(64) == b"probe"
    except OSError:
        pass
    result[target] = ok
threads = [threading.Thread(target=probe, args=(t,)) for t in sys.argv[2:]]
for t in threads: t.start()
for t in threads: t.join()
for t in sys.argv[2:]: print(t, "ok" if result[t] else "blocked")
"#;

/// The servers of every workload; killed on drop (before the namespaces go).
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Probes all 81 pairs (but self) on the three ports at once, one prober per source.
fn probe_all(workloads: &[Workload]) -> BTreeMap<String, Matrix> {
    let children: Vec<Child> = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut args = vec![
                "netns".to_string(),
                "exec".into(),
                w.ns().into(),
                "python3".into(),
                "-c".into(),
                PROBER.into(),
                PROBE_TIMEOUT.into(),
            ];
            for j in (0..9).filter(|&j| j != i) {
                for port in PORTS {
                    args.push(format!("{}/{port}", pod(j).2));
                }
            }
            Command::new("ip")
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("prober")
        })
        .collect();
    let mut out: BTreeMap<String, Matrix> = PORTS
        .iter()
        .map(|p| (p.to_string(), [[None; 9]; 9]))
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let o = child.wait_with_output().expect("prober output");
        assert!(o.status.success(), "prober failed: {}", output_text(&o));
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let (target, verdict) = line.split_once(' ').expect("prober line");
            let (ip, port) = target.split_once('/').expect("target");
            let j = (0..9).find(|&j| pod(j).2 == ip).expect("known address");
            out.get_mut(port).expect("port")[i][j] = Some(verdict == "ok");
        }
    }
    out
}

fn all_pass() -> BTreeMap<String, Matrix> {
    let mut m: Matrix = [[Some(true); 9]; 9];
    for (i, row) in m.iter_mut().enumerate() {
        row[i] = None;
    }
    PORTS.iter().map(|p| (p.to_string(), m)).collect()
}

fn show(m: &BTreeMap<String, Matrix>, want: &BTreeMap<String, Matrix>) -> String {
    let mut s = String::new();
    for (port, got) in m {
        s.push_str(&format!("{port} (got / want; * marks a difference)\n"));
        for (i, row) in got.iter().enumerate() {
            let cell = |c: &Option<bool>| match c {
                Some(true) => ".",
                Some(false) => "X",
                None => "-",
            };
            let (ns, p, _, _) = pod(i);
            let g: Vec<&str> = row.iter().map(cell).collect();
            let w: Vec<&str> = want[port][i].iter().map(cell).collect();
            let mark = if g == w { "" } else { " *" };
            s.push_str(&format!(
                "{ns}{p}  {}   {}{mark}\n",
                g.join(" "),
                w.join(" ")
            ));
        }
    }
    s
}

/// Probes until the matrices equal `want` or `SETTLE` passes; panics with both on failure.
fn expect_matrix(net: &Net, workloads: &[Workload], want: &BTreeMap<String, Matrix>, what: &str) {
    let start = Instant::now();
    loop {
        let got = probe_all(workloads);
        if &got == want {
            return;
        }
        if start.elapsed() > SETTLE {
            panic!(
                "{what}: reachability differs after {SETTLE:?}\n{}\n{}",
                show(&got, want),
                net.log_tails()
            );
        }
    }
}

fn launch(net: &Net, i: usize, peers: &[usize]) -> Router {
    let mut args = vec!["--ipalloc-init".to_string(), "consensus=2".to_string()];
    args.extend(peers.iter().map(|&p| net.host(p).addr().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    net.host(i)
        .spawn_weft(&args)
        .unwrap_or_else(|e| panic!("launching weft on h{i}: {e}"))
}

fn policy_keys(text: &str) -> Vec<String> {
    parse_documents(text)
        .expect("valid case")
        .into_iter()
        .map(|(_, p)| p.key)
        .collect()
}

#[test]
fn truth_table() {
    let cases = load_cases();
    let net = Net::new(2).expect("net");
    let routers = [launch(&net, 0, &[]), launch(&net, 1, &[0])];
    net.wait_until(Duration::from_secs(30), "the two routers connected", || {
        routers[0]
            .report()
            .is_ok_and(|r| r.connected_to(&net.host(1).addr().to_string()))
    });
    let mut workloads = Vec::new();
    for i in 0..9 {
        let (ns, p, addr, host) = pod(i);
        let w = net
            .add_workload(host, &format!("{ns}-{p}"))
            .expect("workload");
        let mut args = vec![
            "attach".to_string(),
            format!("{addr}/12"),
            "--netns".into(),
            w.ns().into(),
            "--name".into(),
            format!("{ns}-{p}"),
            "--namespace".into(),
            ns.into(),
            "--label".into(),
            format!("pod={p}"),
        ];
        for np in NAMED_PORTS {
            args.push("--port".into());
            args.push(np.into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        routers[host].cli_ok(&args);
        workloads.push(w);
    }
    for ns in NAMESPACES {
        routers[0].cli_ok(&["namespace", "label", ns, &format!("ns={ns}")]);
    }
    let _servers = Servers(
        workloads
            .iter()
            .map(|w| {
                Command::new("ip")
                    .args(["netns", "exec", w.ns(), "python3", "-c", SERVER])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("server")
            })
            .collect(),
    );
    let open = all_pass();
    expect_matrix(&net, &workloads, &open, "before any policy");

    for (n, case) in cases.iter().enumerate() {
        let (here, there) = (&routers[n % 2], &routers[(n + 1) % 2]);
        let file = net.dir().join(format!("{}.yaml", case.name));
        std::fs::write(&file, &case.policies).expect("policy file");
        let keys = policy_keys(&case.policies);
        let applied = Instant::now();
        here.cli_ok(&["policy", "apply", "-f", file.to_str().expect("path")]);
        net.wait_until(
            PROPAGATION,
            &format!("{}: policies on the other host", case.name),
            || {
                let list = there.cli_ok(&["policy", "list"]);
                keys.iter().all(|k| list.contains(k.as_str()))
            },
        );
        assert!(applied.elapsed() <= PROPAGATION + Duration::from_millis(500));
        for a in &case.before {
            let args: Vec<&str> = a.split_whitespace().collect();
            there.cli_ok(&args);
        }
        expect_matrix(&net, &workloads, &case.expect, &case.name);
        for a in &case.after {
            let args: Vec<&str> = a.split_whitespace().collect();
            here.cli_ok(&args);
        }
        for k in &keys {
            there.cli_ok(&["policy", "delete", k]);
        }
        expect_matrix(
            &net,
            &workloads,
            &open,
            &format!("{}: deleted, access restored", case.name),
        );
    }

    // A policy applied on one host takes effect on the other within PROPAGATION: x/a lives on
    // one host, the policy is applied on the other, and a TCP 80 probe from x/b (on the
    // applying host) started within the bound is blocked. A blocked probe shows the rule was
    // in force when it started: a SYN let through would have made the connection.
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-a, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]\n";
    let file = net.dir().join("deny-a.yaml");
    std::fs::write(&file, deny).expect("policy file");
    let (a, b) = (0, 1);
    let (host_a, host_b) = (pod(a).3, pod(b).3);
    assert_ne!(host_a, host_b, "x/a and x/b are on different hosts");
    let (ip_a, ip_b) = (pod(a).2, pod(b).2);
    let target = format!("{ip_a}/tcp/80");
    let applied = Instant::now();
    routers[host_b].cli_ok(&["policy", "apply", "-f", file.to_str().expect("path")]);
    loop {
        let started = applied.elapsed();
        assert!(
            started <= PROPAGATION,
            "x/b still reaches x/a on TCP 80 {started:?} after the policy was applied on the \
             other host\n{}",
            net.log_tails()
        );
        if !probe_one(&workloads[b], &target) {
            break;
        }
    }

    // Drops are counted where they happen (x/a's ingress, on its host): exact totals per
    // policy, workload, direction, protocol and port; sampled recent drops; /metrics.
    let drops = &routers[host_a];
    let start = Instant::now();
    let text = loop {
        probe_one(&workloads[b], &target);
        let text = drops.cli_ok(&["policy", "drops"]);
        if port_80_total(&text).is_some_and(|n| n > 0) && !recent_80_from(&text, &ip_b).is_empty() {
            break text;
        }
        assert!(
            start.elapsed() < SETTLE,
            "x/a's TCP 80 drops not counted and listed after {SETTLE:?}:\n{text}\n{}",
            net.log_tails()
        );
    };
    let total = port_80_total(&text).expect("total");
    let recent = recent_80_from(&text, &ip_b);
    for r in &recent {
        assert_eq!(r[1], "ingress", "{text}");
        assert_eq!(r[3], ip_a, "{text}");
        assert_eq!(r[6], "x/x-a", "{text}");
    }
    assert!(
        total >= recent.len() as u64,
        "every sampled drop is counted: {total} < {}\n{text}",
        recent.len()
    );
    let metrics = host_http_get(&net, host_a, "/metrics");
    assert!(
        metrics.starts_with("200 text/plain; version=0.0.4"),
        "{metrics}"
    );
    let series = "weft_policy_drops_total{policy=\"x/deny-a\",direction=\"ingress\",protocol=\"tcp\",port=\"80\",workload=\"x-a\",namespace=\"x\"} ";
    let value: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .parse()
        .expect("counter value");
    assert!(value >= total, "/metrics {value} < drops {total}");

    // `weft reset` removes table `inet weft` (workloads detached first, as reset wants).
    let table = |i: usize| {
        net.host(i)
            .exec(&["nft", "list", "table", "inet", "weft"])
            .expect("nft")
            .status
            .success()
    };
    assert!(
        table(host_a),
        "table inet weft is in force on the host of x/a"
    );
    for (i, w) in workloads.iter().enumerate() {
        if pod(i).3 == host_a {
            routers[host_a].cli_ok(&["detach", "--netns", w.ns()]);
        }
    }
    routers[host_a].cli_ok(&["reset"]);
    assert!(!table(host_a), "weft reset left table inet weft behind");
}

/// One probe (`IP/PROTO/PORT`) from `w`: whether it passed.
fn probe_one(w: &Workload, target: &str) -> bool {
    let o = w
        .exec(&["python3", "-c", PROBER, PROBE_TIMEOUT, target])
        .expect("prober");
    assert!(o.status.success(), "prober failed: {}", output_text(&o));
    String::from_utf8_lossy(&o.stdout).trim().ends_with(" ok")
}

/// The exact total of x/deny-a's TCP 80 drops on x/x-a's ingress in `weft policy drops`.
fn port_80_total(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["x/deny-a", "x/x-a", "ingress", "tcp", "80", n] => n.parse().ok(),
            _ => None,
        }
    })
}

/// The recent drops (words of each line) of TCP 80 from `src` charged to x/deny-a in `weft
/// policy drops` (earlier cases left drops of other policies there).
fn recent_80_from(text: &str, src: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip_while(|l| !l.starts_with("RECENT"))
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|w| {
            w.len() == 8 && w[2] == src && w[4] == "tcp" && w[5] == "80" && w[7] == "x/deny-a"
        })
        .collect()
}

/// `STATUS CONTENT-TYPE\nBODY` of a GET to the router's status listener on host `i`.
fn host_http_get(net: &Net, i: usize, path: &str) -> String {
    let script = "import sys, urllib.request\nr = urllib.request.urlopen('http://127.0.0.1:6784' + sys.argv[1], timeout=10)\nprint(r.status, r.headers['Content-Type'])\nprint(r.read().decode())";
    let o = net
        .host(i)
        .exec(&["python3", "-c", script, path])
        .expect("python3");
    assert!(o.status.success(), "GET {path}: {}", output_text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}
