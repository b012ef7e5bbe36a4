//! The watcher against an in-test API server (plain HTTP, reached through a kubeconfig) that
//! speaks the list and watch JSON of Pods, Namespaces and NetworkPolicies, feeding a real
//! policy service whose firewall driver records the rulesets.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::channel::mpsc;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

use super::{KubeArgs, KubeMode, start};
use crate::api::error::ApiError;
use crate::api::policy::api_error;
use crate::mesh::driver::{self, MeshDriverConfig};
use crate::mesh::{PeerInfo, PeerName};
use crate::policy::PolicyService;
use crate::policy::labels::LabelEdit;
use crate::policy::model::WorkloadMeta;
use crate::policy::nft::recording::RecordingDriver;

const POLICIES: &str = "/apis/networking.k8s.io/v1/networkpolicies";
const NAMESPACES: &str = "/api/v1/namespaces";
const PODS: &str = "/api/v1/pods";

/// One watched collection of the fake API server.
#[derive(Default)]
struct Collection {
    objects: BTreeMap<String, Json>,
    /// Every event so far: (resourceVersion, type, object).
    log: Vec<(u64, &'static str, Json)>,
    /// Set by [`Server::expire`]: changes are not sent nor logged (history the server lost),
    /// and the next watch gets 410 Gone.
    expired: bool,
    streams: Vec<mpsc::UnboundedSender<Result<Bytes, Infallible>>>,
    lists: usize,
    /// The `resourceVersion` of every watch request.
    watched_from: Vec<String>,
}

#[derive(Default)]
struct Fake {
    version: u64,
    paths: BTreeMap<&'static str, Collection>,
}

#[derive(Clone, Default)]
struct Server(Arc<Mutex<Fake>>);

fn line(kind: &str, object: &Json) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

impl Server {
    fn with<R>(&self, path: &'static str, f: impl FnOnce(&mut Collection, &mut u64) -> R) -> R {
        let mut fake = self.0.lock().unwrap();
        let Fake { version, paths } = &mut *fake;
        f(paths.entry(path).or_default(), version)
    }

    /// Adds or replaces an object (`metadata.namespace`/`name` is its key) and tells watchers.
    fn put(&self, path: &'static str, mut obj: Json) -> u64 {
        self.with(path, |c, version| {
            *version += 1;
            obj["metadata"]["resourceVersion"] = json!(version.to_string());
            let key = key_of(&obj);
            let kind = if c.objects.contains_key(&key) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            c.objects.insert(key, obj.clone());
            if !c.expired {
                c.streams
                    .retain(|s| s.unbounded_send(Ok(line(kind, &obj))).is_ok());
                c.log.push((*version, kind, obj));
            }
            *version
        })
    }

    fn delete(&self, path: &'static str, key: &str) {
        self.with(path, |c, version| {
            *version += 1;
            let mut obj = c.objects.remove(key).expect("deleting a known object");
            obj["metadata"]["resourceVersion"] = json!(version.to_string());
            if !c.expired {
                c.streams
                    .retain(|s| s.unbounded_send(Ok(line("DELETED", &obj))).is_ok());
                c.log.push((*version, "DELETED", obj));
            }
        });
    }

    /// Ends every open watch of `path` mid-stream.
    fn break_watches(&self, path: &'static str) {
        self.with(path, |c, _| c.streams.clear());
    }

    /// Loses the history of `path` from now on: changes reach no watch, and the next watch
    /// request gets 410 Gone (its version is too old), so only a new list shows them.
    fn expire(&self, path: &'static str) {
        self.with(path, |c, _| c.expired = true);
    }

    fn lists(&self, path: &'static str) -> usize {
        self.with(path, |c, _| c.lists)
    }

    fn watched_from(&self, path: &'static str) -> Vec<String> {
        self.with(path, |c, _| c.watched_from.clone())
    }

    fn open_watches(&self, path: &'static str) -> usize {
        self.with(path, |c, _| {
            c.streams.retain(|s| !s.is_closed());
            c.streams.len()
        })
    }
}

fn key_of(obj: &Json) -> String {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

async fn serve(
    State(server): State<Server>,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let path: &'static str = match uri.path() {
        POLICIES => POLICIES,
        NAMESPACES => NAMESPACES,
        PODS => PODS,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let (list_kind, api_version) = match path {
        POLICIES => ("NetworkPolicyList", "networking.k8s.io/v1"),
        NAMESPACES => ("NamespaceList", "v1"),
        _ => ("PodList", "v1"),
    };
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    server.with(path, |c, version| {
        if !watch {
            c.lists += 1;
            let items: Vec<Json> = c.objects.values().cloned().collect();
            return axum::Json(json!({
                "apiVersion": api_version, "kind": list_kind,
                "metadata": {"resourceVersion": version.to_string()},
                "items": items,
            }))
            .into_response();
        }
        let from = q.get("resourceVersion").cloned().unwrap_or_default();
        c.watched_from.push(from.clone());
        let from: u64 = from.parse().unwrap_or(0);
        let (tx, rx) = mpsc::unbounded();
        if std::mem::take(&mut c.expired) {
            let gone = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                              "message": "too old resource version", "reason": "Expired",
                              "code": 410});
            let _ = tx.unbounded_send(Ok(line("ERROR", &gone)));
        } else {
            for (v, kind, obj) in &c.log {
                if *v > from {
                    let _ = tx.unbounded_send(Ok(line(kind, obj)));
                }
            }
            c.streams.push(tx);
        }
        Body::from_stream(rx).into_response()
    })
}

async fn fake_api() -> (Server, String) {
    let server = Server::default();
    let app = Router::new()
        .route(POLICIES, get(serve))
        .route(NAMESPACES, get(serve))
        .route(PODS, get(serve))
        .with_state(server.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, url)
}

fn write_kubeconfig(dir: &Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
         clusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         contexts:\n- name: test\n  context:\n    cluster: fake\n    user: nobody\n\
         users:\n- name: nobody\n  user: {{}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn policy_service(dir: &Path, driver: RecordingDriver) -> PolicyService {
    let name: PeerName = "aa:00:00:00:00:01".parse().unwrap();
    let mesh = driver::start(MeshDriverConfig {
        local: PeerInfo {
            name,
            nickname: "test".into(),
            uid: 1,
            listen_port: 0,
        },
        password: None,
        conn_limit: 4,
        targets: Vec::new(),
        listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        links: None,
    });
    PolicyService::start(dir, name, mesh, Box::new(driver), &[])
        .await
        .unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn policy(ns: &str, name: &str, spec: Json) -> Json {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
           "spec": spec})
}

fn deny_ingress_of(app: &str) -> Json {
    json!({"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"]})
}

fn policy_keys(p: &PolicyService) -> Vec<String> {
    p.list().into_iter().map(|s| s.key).collect()
}

fn workload(p: &PolicyService, addr: Ipv4Addr) -> Option<WorkloadMeta> {
    p.entries(&crate::policy::store::workload_key(addr))
        .into_iter()
        .find_map(|(_, v)| match v {
            crate::policy::store::Value::Workload(w) => Some(w),
            _ => None,
        })
}

#[tokio::test]
async fn the_cluster_feeds_policies_labels_and_namespaces_through_breaks_and_410() {
    let dir = tempfile::tempdir().unwrap();
    let (api, url) = fake_api().await;
    let recorder = RecordingDriver::default();
    let svc = policy_service(dir.path(), recorder.clone()).await;
    let web = Ipv4Addr::new(10, 32, 0, 5);
    // A workload CNI attached for pod x/web, before the watcher saw the pod.
    svc.workload_up(WorkloadMeta {
        address: web,
        name: "web".into(),
        namespace: "x".into(),
        labels: BTreeMap::new(),
        ports: Vec::new(),
        host: String::new(),
    })
    .await
    .unwrap();

    api.put(
        NAMESPACES,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "x", "labels": {"ns": "x"}}}),
    );
    api.put(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web", "namespace": "x", "labels": {"app": "web"}},
               "spec": {"containers": [{"name": "c", "image": "i",
                                         "ports": [{"name": "http", "containerPort": 80}]}]},
               "status": {"podIP": "10.32.0.5"}}),
    );
    // Another router's pod: its labels are not this router's to write.
    api.put(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "db", "namespace": "x", "labels": {"app": "db"}},
               "spec": {"containers": [{"name": "c", "image": "i"}]},
               "status": {"podIP": "10.32.0.9"}}),
    );

    let args = KubeArgs {
        mode: KubeMode::On,
        kubeconfig: Some(write_kubeconfig(dir.path(), &url)),
    };
    let watcher = start(&args, &svc).await.unwrap().expect("watching");

    // The pod's labels and named port reach its workload; the namespace's labels arrive.
    wait_until("the pod's labels reach its workload", || {
        workload(&svc, web).is_some_and(|w| w.labels.get("app").map(String::as_str) == Some("web"))
    })
    .await;
    let w = workload(&svc, web).unwrap();
    assert_eq!(w.ports.len(), 1);
    assert_eq!((w.ports[0].name.as_str(), w.ports[0].port), ("http", 80));
    wait_until("namespace x is labelled", || {
        !svc.entries("namespace/x").is_empty()
    })
    .await;
    assert!(workload(&svc, Ipv4Addr::new(10, 32, 0, 9)).is_none());

    // The cluster owns policies and labels: the CLI's edits are refused with 409.
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: cli, namespace: x}\nspec: {podSelector: {}}\n";
    let refused = svc.apply(text).await.unwrap_err();
    let status = StatusCode::from(&api_error(refused));
    assert_eq!(status, StatusCode::CONFLICT);
    let edit = [LabelEdit::parse("app=other").unwrap()];
    for e in [
        svc.label_workload("x/web", &edit).await.unwrap_err(),
        svc.label_namespace("x", &edit).await.unwrap_err(),
        svc.delete("x/anything").await.unwrap_err(),
    ] {
        let e = api_error(e);
        assert!(matches!(e, ApiError::Conflict(_)), "{e}");
        assert!(e.to_string().contains("kubectl"), "{e}");
    }

    // A NetworkPolicy created in the cluster is stored and enforced for the local pod.
    wait_until("the watches are open", || api.open_watches(POLICIES) == 1).await;
    let rv_first = api.put(POLICIES, policy("x", "deny-web", deny_ingress_of("web")));
    wait_until("x/deny-web is applied", || {
        policy_keys(&svc) == ["x/deny-web"]
    })
    .await;
    assert_eq!(svc.list()[0].selects, ["x/web"]);
    wait_until("the ruleset isolates the pod", || {
        recorder
            .batches
            .lock()
            .unwrap()
            .last()
            .is_some_and(|b| b.contains("ing-10-32-0-5"))
    })
    .await;

    // An invalid policy is logged and skipped; the watcher goes on.
    api.put(
        POLICIES,
        policy(
            "x",
            "bad",
            json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "300.0.0.0/8"}}]}]}),
        ),
    );
    api.put(POLICIES, policy("x", "after-bad", deny_ingress_of("db")));
    wait_until("x/after-bad is applied", || {
        policy_keys(&svc).contains(&"x/after-bad".to_string())
    })
    .await;
    assert!(!policy_keys(&svc).contains(&"x/bad".to_string()));

    // The watch breaks mid-stream; a policy created meanwhile arrives through the watch that
    // resumes from the last version seen, without a new list.
    let rv_before_break = api.put(POLICIES, policy("x", "p1", deny_ingress_of("p1")));
    wait_until("x/p1 is applied", || {
        policy_keys(&svc).contains(&"x/p1".to_string())
    })
    .await;
    let lists = api.lists(POLICIES);
    api.break_watches(POLICIES);
    api.put(POLICIES, policy("x", "p2", deny_ingress_of("p2")));
    wait_until("x/p2 arrives after the break", || {
        policy_keys(&svc).contains(&"x/p2".to_string())
    })
    .await;
    assert!(
        api.watched_from(POLICIES)
            .contains(&rv_before_break.to_string()),
        "resumed from {rv_before_break}: {:?}",
        api.watched_from(POLICIES)
    );
    assert_eq!(
        api.lists(POLICIES),
        lists,
        "a resumed watch does not re-list"
    );
    assert!(rv_first < rv_before_break);

    // 410 Gone: the server lost the history of what changed while the watch was down; the
    // watcher re-lists, and what was deleted meanwhile is removed.
    api.expire(POLICIES);
    api.delete(POLICIES, "x/deny-web");
    api.put(POLICIES, policy("x", "p3", deny_ingress_of("p3")));
    api.break_watches(POLICIES);
    wait_until("the re-list after 410 is applied", || {
        let keys = policy_keys(&svc);
        keys.contains(&"x/p3".to_string()) && !keys.contains(&"x/deny-web".to_string())
    })
    .await;
    assert!(
        api.lists(POLICIES) > lists,
        "410 Gone makes the watcher list again"
    );
    wait_until("the pod is no longer isolated", || {
        recorder
            .batches
            .lock()
            .unwrap()
            .last()
            .is_some_and(|b| !b.contains("ing-10-32-0-5"))
    })
    .await;

    // A deletion through the watch removes the policy.
    wait_until("the watch is open again", || {
        api.open_watches(POLICIES) == 1
    })
    .await;
    api.delete(POLICIES, "x/p2");
    wait_until("x/p2 is deleted", || {
        !policy_keys(&svc).contains(&"x/p2".to_string())
    })
    .await;

    // Re-listing unchanged objects writes nothing: no new generation, so the mesh does not
    // churn when every router re-lists the same cluster.
    let generation = svc.status().generation;
    let ns_lists = api.lists(NAMESPACES);
    api.expire(NAMESPACES);
    api.break_watches(NAMESPACES);
    wait_until("namespaces are listed again", || {
        api.lists(NAMESPACES) > ns_lists && api.open_watches(NAMESPACES) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(svc.status().generation, generation);

    // A pod's label change moves it in and out of a policy's selection.
    api.put(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web", "namespace": "x", "labels": {"app": "p3"}},
               "spec": {"containers": [{"name": "c", "image": "i"}]},
               "status": {"podIP": "10.32.0.5"}}),
    );
    wait_until("x/p3 selects the relabelled pod", || {
        svc.list()
            .iter()
            .any(|p| p.key == "x/p3" && p.selects == ["x/web"])
    })
    .await;
    assert!(workload(&svc, web).unwrap().ports.is_empty());
    watcher.stop();
}

#[tokio::test]
async fn without_a_cluster_nothing_is_watched_and_the_cli_may_edit() {
    let dir = tempfile::tempdir().unwrap();
    let svc = policy_service(dir.path(), RecordingDriver::default()).await;
    let off = KubeArgs {
        mode: KubeMode::Off,
        kubeconfig: Some(dir.path().join("kubeconfig")),
    };
    assert!(start(&off, &svc).await.unwrap().is_none());
    assert!(!svc.cluster_owned());
    let missing = KubeArgs {
        mode: KubeMode::On,
        kubeconfig: Some(dir.path().join("missing")),
    };
    let e = start(&missing, &svc)
        .await
        .err()
        .expect("a missing kubeconfig fails");
    assert!(e.to_string().contains("missing"), "{e}");
    assert!(!svc.cluster_owned());
}

#[tokio::test]
async fn an_https_cluster_gets_a_rustls_client_without_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let svc = policy_service(dir.path(), RecordingDriver::default()).await;
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
         clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\n\
         contexts:\n- name: t\n  context:\n    cluster: c\n    user: u\n\
         users:\n- name: u\n  user: {token: secret}\n",
    )
    .unwrap();
    let args = KubeArgs {
        mode: KubeMode::Auto,
        kubeconfig: Some(path),
    };
    let watcher = start(&args, &svc).await.unwrap().expect("watching");
    assert!(svc.cluster_owned());
    watcher.stop();
}
