//! The running flow accounting: the thin async shell around [`FlowTable`].
//!
//! One task owns the table. It takes conntrack events from the reader thread and policy drop
//! events as they come, and every `--flow-interval` dumps the conntrack table (so long-lived
//! connections are counted while they live, not only when they end), writes every flow's
//! cumulative counters into the metrics store under its tenant and the router's health under
//! tenant `weft-system`. Open, close and drop events go to the [`TapLog`] and to the peers
//! that subscribed to them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ipnetwork::Ipv4Network;
use tokio::sync::{Notify, broadcast, mpsc};
use tracing::{debug, info, warn};
use weft_metrics::labels::Series;
use weft_metrics::promql::{EngineConfig, QueryValue, instant_query};
use weft_metrics::storage::{Storage, Store};
use weft_metrics::tenant::TenantId;

use super::args::{FlowArgs, SYSTEM_TENANT};
use super::ctnetlink::Tuple;
use super::directory::{Directory, Known};
use super::error::FlowError;
use super::export::{BYTES, Health, flow_series, health_series};
use super::netlink::{self, Input};
use super::table::{FlowEvent, FlowTable, protocol_name};
use super::tap::{FLOWS_CHANNEL, TapEvent, TapGossip, TapLog, TapMessage};
use crate::mesh::PeerName;
use crate::mesh::driver::MeshHandle;
use crate::policy::drops::DropEvent;

/// Flows without connections are forgotten after this long without change.
const IDLE_MS: i64 = 10 * 60 * 1000;

/// How often a polled tap renews its subscriptions at the peers.
const RESUBSCRIBE: Duration = Duration::from_secs(3);

/// How often the workload directory is rebuilt from the policy channel's view.
const DIRECTORY_REFRESH: Duration = Duration::from_secs(1);

/// The window of `weft top`.
const TOP_WINDOW: &str = "1m";

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Settings of flow accounting.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// The `--flow-*` flags.
    pub args: FlowArgs,
    /// This router's peer name (as workloads name their host).
    pub local: PeerName,
    /// Its nickname (shown by `weft tap`).
    pub nickname: String,
    /// The overlay range.
    pub range: Ipv4Network,
}

/// The services flow accounting reads: workloads, drops and health.
#[derive(Clone)]
pub struct FlowSources {
    /// The mesh (peers, and the tap channel).
    pub mesh: MeshHandle,
    /// Workloads of every router, and policy drops.
    pub policy: crate::policy::PolicyService,
    /// Address use.
    pub ipam: crate::ipam::IpamService,
    /// DNS entries.
    pub dns: crate::dns::DnsService,
    /// The sleeve's paths and counters.
    pub sleeve: crate::sleeve::Sleeve,
    /// The overlay MTU, for the path status.
    pub mtu: u32,
}

/// One row of `weft top`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopRow {
    /// The tenant holding the flow.
    pub tenant: String,
    /// `NAMESPACE/WORKLOAD` of the source.
    pub src: String,
    /// `NAMESPACE/WORKLOAD` of the destination.
    pub dst: String,
    /// Destination port, empty without ports.
    pub dst_port: String,
    /// Protocol.
    pub protocol: String,
    /// Bytes per second, both directions, over the last minute.
    pub bytes_per_second: f64,
}

/// Handle on the running flow accounting.
#[derive(Clone)]
pub struct FlowService {
    log: TapLog,
    store: Arc<dyn Store>,
    local_store: Arc<Storage>,
    written: Arc<Mutex<BTreeSet<TenantId>>>,
    /// Wakes the task to subscribe at the peers when a tap starts.
    tap_started: Arc<Notify>,
}

impl FlowService {
    /// Turns on conntrack accounting, subscribes to conntrack events and policy drops,
    /// registers the `flows` mesh channel and starts the task writing counters to `store`
    /// (`local_store` lists the tenants this router holds, for `weft top`).
    pub async fn start(
        config: FlowConfig,
        sources: FlowSources,
        store: Arc<dyn Store>,
        local_store: Arc<Storage>,
    ) -> anyhow::Result<FlowService> {
        let log = TapLog::default();
        sources
            .mesh
            .register(
                FLOWS_CHANNEL,
                Box::new(TapGossip {
                    log: log.clone(),
                    now_ms,
                }),
            )
            .await
            .context("registering the flows mesh channel")?;
        let accounting = netlink::enable_accounting();
        if let Err(e) = &accounting {
            info!("conntrack accounting not on yet ({e}); retrying every interval");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        netlink::spawn_events(tx).context("subscribing to conntrack events")?;
        let service = FlowService {
            log: log.clone(),
            store,
            local_store,
            written: Arc::default(),
            tap_started: Arc::default(),
        };
        let task = Task {
            table: FlowTable::new(config.args.flow_max_flows),
            directory: Directory::default(),
            accounting: accounting.is_ok(),
            lost: 0,
            dump_seq: 0,
            service: service.clone(),
            drops: sources.policy.subscribe_drops(),
            config,
            sources,
        };
        tokio::spawn(task.run(rx));
        Ok(service)
    }

    /// The log of recent flow events (all routers), read by `weft tap`.
    pub fn tap_log(&self) -> &TapLog {
        &self.log
    }

    /// A tap client is polling: keep (or start) receiving the peers' events.
    pub fn keep_tapping(&self) {
        let now = now_ms();
        let started = !self.log.wanted(now);
        self.log.want(now + super::tap::SUBSCRIPTION_TTL_MS);
        if started {
            self.tap_started.notify_one();
        }
    }

    /// The busiest flows of the last minute in `tenant`, or in every flow tenant this router
    /// holds, busiest first.
    pub async fn top(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<TopRow>, FlowError> {
        let tenants: Vec<TenantId> = match tenant {
            Some(t) => vec![TenantId::new(t).map_err(|e| FlowError::Tenant {
                tenant: t.to_string(),
                reason: e.to_string(),
            })?],
            None => {
                let mut all: BTreeSet<TenantId> = self
                    .local_store
                    .tenants()
                    .map_err(|e| FlowError::Query(e.to_string()))?
                    .into_iter()
                    .collect();
                all.extend(
                    self.written
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .cloned(),
                );
                all.into_iter()
                    .filter(|t| t.as_str() != SYSTEM_TENANT)
                    .collect()
            }
        };
        let store = self.store.clone();
        let now = now_ms();
        tokio::task::spawn_blocking(move || top_rows(store.as_ref(), &tenants, limit, now))
            .await
            .map_err(|e| FlowError::Query(e.to_string()))?
    }
}

/// The PromQL of `weft top`.
pub fn top_query(limit: usize) -> String {
    format!(
        "topk({limit}, sum by (src_namespace, src_workload, dst_namespace, dst_workload, \
         dst_port, protocol) (rate({BYTES}[{TOP_WINDOW}])))"
    )
}

fn top_rows(
    store: &dyn Store,
    tenants: &[TenantId],
    limit: usize,
    now: i64,
) -> Result<Vec<TopRow>, FlowError> {
    let mut rows = Vec::new();
    for tenant in tenants {
        let value = instant_query(
            store,
            tenant,
            &top_query(limit),
            now,
            &EngineConfig::default(),
        )
        .map_err(|e| FlowError::Query(e.to_string()))?;
        let QueryValue::Vector(samples) = value else {
            return Err(FlowError::Query("topk did not return a vector".into()));
        };
        for s in samples {
            let l = |n: &str| s.labels.get(n).unwrap_or("").to_string();
            rows.push(TopRow {
                tenant: tenant.to_string(),
                src: format!("{}/{}", l("src_namespace"), l("src_workload")),
                dst: format!("{}/{}", l("dst_namespace"), l("dst_workload")),
                dst_port: l("dst_port"),
                protocol: l("protocol"),
                bytes_per_second: s.v,
            });
        }
    }
    rows.sort_by(|a, b| b.bytes_per_second.total_cmp(&a.bytes_per_second));
    rows.truncate(limit);
    Ok(rows)
}

/// The task owning the table.
struct Task {
    table: FlowTable,
    directory: Directory,
    accounting: bool,
    lost: u64,
    dump_seq: u32,
    service: FlowService,
    drops: broadcast::Receiver<DropEvent>,
    config: FlowConfig,
    sources: FlowSources,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        self.refresh_directory();
        let mut tick = tokio::time::interval(self.config.args.flow_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval(DIRECTORY_REFRESH);
        let mut resubscribe = tokio::time::interval(RESUBSCRIBE);
        let tap_started = self.service.tap_started.clone();
        loop {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.input(input).await,
                    None => {
                        warn!("conntrack events stopped: flow accounting ends");
                        return;
                    }
                },
                drop = self.drops.recv() => match drop {
                    Ok(d) => self.policy_drop(&d).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => self.lost += n,
                    Err(broadcast::error::RecvError::Closed) => {
                        self.drops = self.sources.policy.subscribe_drops();
                    }
                },
                _ = refresh.tick() => self.refresh_directory(),
                _ = resubscribe.tick() => self.subscribe_peers().await,
                _ = tap_started.notified() => self.subscribe_peers().await,
                _ = tick.tick() => self.interval(&mut rx).await,
            }
        }
    }

    fn refresh_directory(&mut self) {
        let workloads = self.sources.policy.workloads().into_iter().map(|w| {
            (
                w.address,
                Known {
                    name: w.name,
                    namespace: w.namespace,
                    host: w.host,
                },
            )
        });
        let mut names: Vec<(Ipv4Addr, String)> = self
            .sources
            .dns
            .entries()
            .into_iter()
            .filter(|e| e.tombstone.is_none())
            .filter_map(|e| match e.addr {
                std::net::IpAddr::V4(a) => Some((a, e.name)),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        names.sort();
        self.directory =
            Directory::new(self.config.local.to_string(), self.config.range, workloads)
                .with_names(names);
    }

    async fn input(&mut self, input: Input) {
        match input {
            Input::Event(ev) => {
                let events = self.table.observe(&ev, &self.directory, now_ms());
                self.publish(&events).await;
            }
            Input::Lost(n) => self.lost += n,
        }
    }

    async fn policy_drop(&mut self, d: &DropEvent) {
        let t = Tuple {
            src: d.src,
            dst: d.dst,
            proto: d.protocol,
            sport: 0,
            dport: d.port.unwrap_or(0),
        };
        let now = now_ms();
        let Some(sides) = self.table.drop_packets(&t, 1, &self.directory, now) else {
            return;
        };
        let e = TapEvent {
            router: self.config.nickname.clone(),
            time_ms: now,
            kind: "drop".into(),
            protocol: protocol_name(d.protocol),
            src: d.src.to_string(),
            sport: 0,
            src_workload: sides.src.workload,
            src_namespace: sides.src.namespace,
            dst: d.dst.to_string(),
            dport: t.dport,
            dst_workload: sides.dst.workload,
            dst_namespace: sides.dst.namespace,
            bytes_forward: 0,
            bytes_reply: 0,
        };
        self.send_tap(vec![e]).await;
    }

    async fn publish(&mut self, events: &[FlowEvent]) {
        if events.is_empty() {
            return;
        }
        let tap = events
            .iter()
            .map(|e| TapEvent::from_flow(&self.config.nickname, e))
            .collect();
        self.send_tap(tap).await;
    }

    async fn send_tap(&mut self, tap: Vec<TapEvent>) {
        let peers = self.service.log.subscribers(now_ms());
        if !peers.is_empty() {
            let msg = TapMessage::Events(tap.clone()).encode();
            for p in peers {
                if self
                    .sources
                    .mesh
                    .unicast(p, FLOWS_CHANNEL, msg.clone())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        self.service.log.push(tap);
    }

    /// While a local tap client polls, asks every peer for its events.
    async fn subscribe_peers(&mut self) {
        if !self.service.log.wanted(now_ms()) {
            return;
        }
        let status = self.sources.mesh.topology().borrow().clone();
        let msg = TapMessage::Subscribe.encode();
        for p in status.peers.iter().filter(|p| p.name != self.config.local) {
            if self
                .sources
                .mesh
                .unicast(p.name, FLOWS_CHANNEL, msg.clone())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Dumps the conntrack table, then writes flows and health to the store.
    async fn interval(&mut self, rx: &mut mpsc::UnboundedReceiver<Input>) {
        if !self.accounting {
            self.accounting = netlink::enable_accounting().is_ok();
        }
        self.dump_seq = self.dump_seq.wrapping_add(1);
        let seq = self.dump_seq;
        self.table.begin_dump();
        match tokio::task::spawn_blocking(move || netlink::dump(seq)).await {
            Ok(Ok((entries, bad))) => {
                self.lost += bad;
                // Events queued while the dump ran come first: a destroy must not be
                // mistaken for a connection the dump no longer lists.
                while let Ok(input) = rx.try_recv() {
                    self.input(input).await;
                }
                let now = now_ms();
                let mut events = Vec::new();
                for ev in &entries {
                    events.extend(self.table.observe(ev, &self.directory, now));
                }
                events.extend(self.table.end_dump(now));
                self.publish(&events).await;
            }
            Ok(Err(e)) => warn!("dumping the conntrack table: {e}"),
            Err(e) => warn!("conntrack dump task: {e}"),
        }
        let now = now_ms();
        self.table.expire(now, IDLE_MS);
        self.write(now).await;
    }

    async fn health(&self) -> Health {
        let peers = match self.sources.mesh.status().await {
            Ok(s) => s.peers.len().saturating_sub(1),
            Err(_) => 0,
        };
        let path = crate::path::status(&self.sources.sleeve, self.sources.mtu);
        let sleeve = path.sleeve;
        Health {
            router: self.config.local.to_string(),
            peers,
            connections: path
                .peers
                .into_iter()
                .map(|p| (p.path, p.encrypted))
                .collect(),
            ipam_allocated: self.sources.ipam.status().allocated,
            dns_entries: self.sources.dns.entries().len(),
            sleeve_tx: sleeve.tx_frames,
            sleeve_rx: sleeve.rx_frames,
            sleeve_garbage: sleeve.garbage,
            sleeve_errors: sleeve.errors,
            sleeve_gso_trains: sleeve.gso_trains,
            sleeve_gro_batches: sleeve.gro_batches,
            flows: self.table.flows().count(),
            flows_folded: self.table.folded(),
            conntrack_errors: self.lost,
        }
    }

    async fn write(&mut self, now: i64) {
        let (mut batches, bad) = flow_series(
            self.table.flows(),
            &self.config.args.flow_tenant_from,
            self.config.range,
            now,
        );
        self.table.exported();
        for ns in bad {
            debug!("namespace {ns:?} is no valid tenant name: its flows are not written");
        }
        let health = health_series(&self.health().await, now);
        match TenantId::new(SYSTEM_TENANT) {
            Ok(t) => batches.entry(t).or_default().extend(health),
            Err(e) => warn!("tenant {SYSTEM_TENANT}: {e}"),
        }
        self.service
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(batches.keys().cloned());
        let store = self.service.store.clone();
        let result = tokio::task::spawn_blocking(move || write_all(store.as_ref(), batches, now));
        match result.await {
            Ok(errors) => {
                for (tenant, e) in errors {
                    warn!("writing flow metrics of tenant {tenant}: {e}");
                }
            }
            Err(e) => warn!("flow metrics write task: {e}"),
        }
    }
}

fn write_all(
    store: &dyn Store,
    batches: std::collections::BTreeMap<TenantId, Vec<Series>>,
    now: i64,
) -> Vec<(TenantId, String)> {
    let mut errors = Vec::new();
    for (tenant, batch) in batches {
        if let Err(e) = store.write(&tenant, batch, now) {
            errors.push((tenant, e.to_string()));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use weft_metrics::labels::{Labels, Sample};
    use weft_metrics::storage::StorageConfig;

    use super::*;

    fn bytes(src: &str, dst: &str, port: &str, per_second: f64, now: i64) -> Series {
        let labels = Labels::from_pairs([
            ("__name__", BYTES),
            ("src_workload", src),
            ("src_namespace", "shop"),
            ("dst_workload", dst),
            ("dst_namespace", "shop"),
            ("dst_port", port),
            ("protocol", "tcp"),
            ("direction", "forward"),
        ])
        .expect("labels");
        let samples = (0..=60)
            .map(|i| Sample {
                t: now - 60_000 + i * 1000,
                v: per_second * i as f64,
            })
            .collect();
        Series { labels, samples }
    }

    #[test]
    fn top_ranks_flows_by_their_byte_rate_over_the_last_minute() {
        let store = Storage::open(StorageConfig::default()).expect("store");
        let now = 1_800_000_000_000;
        let shop = TenantId::new("shop").expect("tenant");
        let other = TenantId::new("other").expect("tenant");
        store
            .write(
                &shop,
                vec![
                    bytes("web", "db", "5432", 1000.0, now),
                    bytes("web", "cache", "6379", 5000.0, now),
                ],
                now,
            )
            .expect("write");
        store
            .write(&other, vec![bytes("a", "b", "80", 10.0, now)], now)
            .expect("write");
        let rows = top_rows(&store, &[shop.clone(), other], 10, now).expect("top");
        let got: Vec<(String, String, String, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r.tenant.clone(),
                    r.dst.clone(),
                    r.dst_port.clone(),
                    r.bytes_per_second.round() as i64,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("shop".into(), "shop/cache".into(), "6379".into(), 5000),
                ("shop".into(), "shop/db".into(), "5432".into(), 1000),
                ("other".into(), "shop/b".into(), "80".into(), 10),
            ]
        );
        assert_eq!(rows[0].src, "shop/web");
        let one = top_rows(&store, &[shop], 1, now).expect("top");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].dst, "shop/cache");
    }
}
