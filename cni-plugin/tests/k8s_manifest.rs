//! `k8s/weft.yaml` cannot be applied to a cluster here, so this checks the fields weft relies
//! on: a DaemonSet on the host network, privileged, the data dir and CNI dirs mounted, the
//! password from a Secret, and an init container that runs `weft setup-cni` into the mounted
//! CNI dirs with the same control socket the router listens on; and that a service account the
//! DaemonSet names is declared and bound to a role.

use serde::Deserialize;
use serde_yaml::Value;

/// Every document of the manifest.
fn documents() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/weft.yaml");
    let text = std::fs::read_to_string(path).expect("k8s/weft.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The one document of kind `kind`.
fn one(docs: &[Value], kind: &str) -> Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} in k8s/weft.yaml");
    found[0].clone()
}

fn manifest() -> Value {
    one(&documents(), "DaemonSet")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// `mountPath` of the volume `name` in `container`, and the host path behind it.
fn mount(spec: &Value, container: &Value, name: &str) -> (String, String) {
    let at = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|m| m["name"].as_str() == Some(name))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| {
            panic!(
                "{} does not mount {name}",
                container["name"].as_str().unwrap_or("?")
            )
        });
    let host = spec["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["name"].as_str() == Some(name))
        .and_then(|v| v["hostPath"]["path"].as_str())
        .unwrap_or_else(|| panic!("volume {name} is not a hostPath"));
    (at.to_string(), host.to_string())
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_string))
}

#[test]
fn the_daemonset_has_what_weft_needs() {
    let m = manifest();
    assert_eq!(m["kind"].as_str(), Some("DaemonSet"));
    assert_eq!(m["apiVersion"].as_str(), Some("apps/v1"));
    let labels = &m["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &m["spec"]["template"]["metadata"]["labels"], labels,
        "selector must match the pods"
    );
    let spec = &m["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true));

    let weft = &spec["containers"][0];
    assert_eq!(weft["securityContext"]["privileged"].as_bool(), Some(true));
    let args = strings(&weft["command"]);
    assert!(args.contains(&"launch".to_string()), "{args:?}");
    let socket = flag(&args, "--socket").expect("--socket");
    let data_dir = flag(&args, "--data-dir").expect("--data-dir");
    let (data_at, data_host) = mount(spec, weft, "weft-data");
    assert_eq!(data_at, data_dir);
    assert_eq!(data_host, "/var/lib/weft");
    let (run_at, run_host) = mount(spec, weft, "weft-run");
    assert!(
        socket.starts_with(&format!("{run_at}/")),
        "the socket must be on a host mount"
    );
    assert_eq!(
        run_host, run_at,
        "the plugin on the host reaches the socket at the same path"
    );

    let password = weft["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"].as_str() == Some("WEFT_PASSWORD"))
        .expect("WEFT_PASSWORD");
    assert!(
        password["valueFrom"]["secretKeyRef"]["name"].is_string(),
        "password from a Secret"
    );

    let init = &spec["initContainers"][0];
    let init_args = strings(&init["command"]);
    assert!(
        init_args.contains(&"setup-cni".to_string()),
        "{init_args:?}"
    );
    assert_eq!(
        flag(&init_args, "--socket"),
        Some(socket),
        "setup-cni must name the router's socket"
    );
    let (bin_at, bin_host) = mount(spec, init, "cni-bin");
    let (conf_at, conf_host) = mount(spec, init, "cni-conf");
    assert_eq!(flag(&init_args, "--bin-dir"), Some(bin_at));
    assert_eq!(flag(&init_args, "--conf-dir"), Some(conf_at));
    assert_eq!(bin_host, "/opt/cni/bin");
    assert_eq!(conf_host, "/etc/cni/net.d");
    let (netns_at, _) = mount(spec, weft, "netns");
    assert_eq!(
        netns_at, "/var/run/netns",
        "CNI_NETNS paths must open inside the pod"
    );
}

#[test]
fn a_named_service_account_exists_and_is_bound() {
    let docs = documents();
    let ds = one(&docs, "DaemonSet");
    let Some(account) = ds["spec"]["template"]["spec"]["serviceAccountName"].as_str() else {
        return;
    };
    let namespace = ds["metadata"]["namespace"].as_str();
    let sa = one(&docs, "ServiceAccount");
    assert_eq!(sa["metadata"]["name"].as_str(), Some(account));
    assert_eq!(sa["metadata"]["namespace"].as_str(), namespace);
    let binding = one(&docs, "ClusterRoleBinding");
    let subject = &binding["subjects"][0];
    assert_eq!(subject["kind"].as_str(), Some("ServiceAccount"));
    assert_eq!(subject["name"].as_str(), Some(account));
    assert_eq!(subject["namespace"].as_str(), namespace);
    let role = one(&docs, "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    for rule in role["rules"].as_sequence().into_iter().flatten() {
        let verbs = strings(&rule["verbs"]);
        assert!(
            verbs
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
            "the router only reads the API: {verbs:?}"
        );
    }
}
