//! clap definitions of the `weft` verbs and their flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnetwork::Ipv4Network;

use crate::address::parse_peer;
use crate::api::DEFAULT_SOCKET;
use crate::mesh::PeerName;
use crate::overlay::config::{DEFAULT_IFNAME, DEFAULT_RANGE, DEFAULT_VNI, parse_range, parse_vni};
use weft_ipam::{Cidr, InitMode};

/// weft: a self-organising overlay network with a built-in metrics store.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, propagate_version = true)]
pub struct Cli {
    /// Control socket of the router to run or to talk to.
    #[arg(long, global = true, env = "WEFT_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
// Parsed once per process: the size of `launch`'s flags costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the router in the foreground, joining the peers given.
    Launch(LaunchArgs),
    /// Stop the running router.
    Stop,
    /// Show the router's status, or one part of it.
    Status {
        /// Which part; the summary when absent.
        #[command(subcommand)]
        what: Option<StatusWhat>,
    },
    /// Add peers to connect to (and keep reconnecting to).
    Connect {
        /// Replace the current user-given targets instead of adding to them.
        #[arg(long)]
        replace: bool,
        /// Peers as HOST or HOST:PORT.
        #[arg(required = true, value_parser = peer_arg)]
        peers: Vec<String>,
    },
    /// Stop connecting to peers (existing connections stay up).
    Forget {
        /// Peers as HOST or HOST:PORT.
        #[arg(required = true, value_parser = peer_arg)]
        peers: Vec<String>,
    },
    /// Print everything the router knows, as JSON.
    Report,
    /// Take over the address space of PEER, which is gone for good (run it on one host only).
    Rmpeer {
        /// Peer name, aa:bb:cc:dd:ee:ff.
        peer: String,
    },
    /// Wait until the address ring is ready (consensus reached), then show it.
    Prime,
    /// Hand this peer's address space to a reachable peer, remove its local state (IPAM ring,
    /// peer name) and stop the router; refused while workloads are attached.
    Reset,
    /// Allocate, claim, free or look up addresses by owner id.
    #[command(subcommand)]
    Ipam(IpamVerb),
    /// Attach a workload's network namespace to the overlay with an address.
    Attach(AttachArgs),
    /// Detach a workload: remove the interfaces weft gave it.
    Detach {
        /// Which namespace.
        #[command(flatten)]
        netns: NetnsArgs,
        /// Only this interface (all of the workload's when absent).
        #[arg(long)]
        ifname: Option<String>,
    },
    /// List attached workloads: name, MAC, addresses.
    Ps,
    /// Give this host an address on the overlay (on bridge `weft`).
    Expose {
        /// ADDR/PREFIX inside the overlay range.
        address: String,
    },
    /// Remove the host's overlay address (all of them when none is given).
    Hide {
        /// The address to remove.
        address: Option<String>,
    },
    /// Register DNS records: for an attached workload (its addresses unless given), or for a
    /// host name with -h FQDN.
    #[command(name = "dns-add", disable_help_flag = true)]
    DnsAdd(DnsChangeArgs),
    /// Remove DNS records added on this router.
    #[command(name = "dns-remove", disable_help_flag = true)]
    DnsRemove(DnsChangeArgs),
    /// Print the addresses weft's DNS answers for NAME.
    #[command(name = "dns-lookup")]
    DnsLookup {
        /// A name; the weft domain is appended when missing.
        name: String,
    },
    /// Install the CNI plugin as `weft` in the CNI bin dir and write `10-weft.conflist`
    /// (weft, then portmap) pointing at this router's control socket.
    SetupCni(SetupCniArgs),
    /// Network policies (Kubernetes NetworkPolicy): apply, list, get, delete, drops.
    #[command(subcommand)]
    Policy(crate::cli::policy::PolicyVerb),
    /// Change a workload's labels: KEY=VALUE sets, KEY- removes.
    Label {
        /// The workload: name, NAMESPACE/NAME or address.
        workload: String,
        /// Label changes.
        #[arg(required = true)]
        edits: Vec<String>,
    },
    /// Namespaces of workloads, for policies.
    #[command(subcommand)]
    Namespace(crate::cli::policy::NamespaceVerb),
    /// Run a PromQL query against the router's metrics store and print the result as a table.
    Query(crate::tsdb::QueryArgs),
    /// Stream live flow events (open, close, drop) of every router until interrupted.
    Tap(crate::flows::TapArgs),
    /// The busiest flows of the last minute, from the metrics store, refreshed.
    Top(crate::flows::TopArgs),
    /// Print weft's version.
    Version,
}

/// Flags of `weft setup-cni`.
#[derive(Debug, Clone, Args)]
pub struct SetupCniArgs {
    /// Where the runtime looks for CNI plugins.
    #[arg(long, default_value = "/opt/cni/bin")]
    pub bin_dir: PathBuf,
    /// Where the runtime looks for network configurations.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub conf_dir: PathBuf,
    /// The plugin binary to install; `weft-cni` next to this `weft` when absent.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// The network name in the configuration.
    #[arg(long, default_value = "weft")]
    pub network: String,
}

/// How a verb names a workload's network namespace: exactly one of these.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct NetnsArgs {
    /// Path of the namespace, or an `ip netns` name (`/run/netns/NAME`).
    #[arg(long)]
    pub netns: Option<String>,
    /// A process in the namespace.
    #[arg(long)]
    pub pid: Option<u32>,
}

/// Flags of `weft attach`.
#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    /// ADDR/PREFIX inside the overlay range, e.g. 10.32.0.5/12; allocated by IPAM when absent.
    pub address: Option<String>,
    /// Which namespace.
    #[command(flatten)]
    pub netns: NetnsArgs,
    /// The workload's name in `weft ps`; the namespace's name when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// Name of the interface inside the namespace.
    #[arg(long, default_value = DEFAULT_IFNAME)]
    pub ifname: String,
    /// Write /etc/netns/NAME/resolv.conf so the named namespace uses weft's DNS.
    #[arg(long)]
    pub rewrite_resolv: bool,
    /// The workload's namespace, for policies.
    #[arg(long, default_value = crate::policy::spec::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// A label, KEY=VALUE (repeat for more).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// A named port, NAME=PORT/PROTO such as http=80/TCP (repeat for more).
    #[arg(long = "port")]
    pub ports: Vec<String>,
}

/// Arguments of `weft dns-add` and `weft dns-remove`: `[ADDR...] (CONTAINER | -h FQDN)`.
#[derive(Debug, Clone, Args)]
pub struct DnsChangeArgs {
    /// Addresses, then optionally the name of an attached workload.
    pub args: Vec<String>,
    /// A fully qualified host name inside the weft domain.
    #[arg(short = 'h', long = "hostname")]
    pub hostname: Option<String>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// Parts of `weft status`.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum StatusWhat {
    /// Every peer in the mesh and its connections.
    Peers,
    /// This router's connections.
    Connections,
    /// The addresses this router dials.
    Targets,
    /// The address ring: each peer's share, as `weave status ipam`.
    Ipam,
    /// Every DNS record: name, address, owner, peer (as `weave status dns`).
    Dns,
}

/// `weft ipam` verbs: the address allocator, by owner id.
#[derive(Debug, Clone, Subcommand)]
pub enum IpamVerb {
    /// Allocate an address for OWNER (the same one again if it has one).
    Allocate {
        /// Owner id, e.g. a container id.
        owner: String,
        /// Subnet of the range to allocate from.
        #[arg(long)]
        subnet: Option<Cidr>,
    },
    /// Claim exactly ADDR for OWNER.
    Claim {
        /// Owner id.
        owner: String,
        /// The address.
        addr: std::net::Ipv4Addr,
    },
    /// Free every address of OWNER.
    Free {
        /// Owner id.
        owner: String,
    },
    /// Show the addresses of OWNER.
    Lookup {
        /// Owner id.
        owner: String,
    },
}

/// Flags of `weft launch`.
#[derive(Debug, Clone, Args)]
pub struct LaunchArgs {
    /// Where the router keeps its state (peer name, IPAM ring, DNS, TSDB).
    #[arg(long, env = "WEFT_DATA_DIR", default_value = "/var/lib/weft")]
    pub data_dir: PathBuf,
    /// Peer name (MAC-like, aa:bb:cc:dd:ee:ff); generated once and kept in the data dir when absent.
    #[arg(long)]
    pub name: Option<PeerName>,
    /// Human-friendly name shown in status; the host name when absent.
    #[arg(long)]
    pub nickname: Option<String>,
    /// Password that encrypts the mesh; also read from WEFT_PASSWORD or WEAVE_PASSWORD.
    #[arg(long, conflicts_with = "password_file")]
    pub password: Option<String>,
    /// File whose first line is the password.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// TCP port of the mesh.
    #[arg(long, default_value_t = 6783, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Maximum number of mesh connections.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub conn_limit: u64,
    /// Address of the read-only status listener.
    #[arg(long, default_value = "127.0.0.1:6784")]
    pub status_addr: std::net::SocketAddr,
    /// VXLAN network identifier of the fast path (1 to 16777215); the same on every peer.
    #[arg(long, default_value_t = DEFAULT_VNI, value_parser = parse_vni)]
    pub vni: u32,
    /// Overlay MTU; derived from the underlay's default-route interface minus 50 when absent.
    #[arg(long, env = "WEFT_MTU")]
    pub mtu: Option<u32>,
    /// Address range of the overlay, a CIDR.
    #[arg(long, default_value = DEFAULT_RANGE, value_parser = parse_range)]
    pub ipalloc_range: Ipv4Network,
    /// How the address ring starts: consensus[=N], seed=PEER,... or observer. Ignored once the
    /// ring is stored in the data dir.
    #[arg(long, default_value = "consensus")]
    pub ipalloc_init: InitMode,
    /// Subnet of the range that allocations use when none is named; the whole range when absent.
    #[arg(long)]
    pub ipalloc_default_subnet: Option<Cidr>,
    /// Serve the Docker network and IPAM driver on `<docker-plugin-dir>/<docker-plugin-name>.sock`.
    #[arg(long)]
    pub docker_plugin: bool,
    /// The Docker plugin name (`docker network create -d NAME --ipam-driver NAME`).
    #[arg(long, default_value = "weft")]
    pub docker_plugin_name: String,
    /// Where dockerd discovers plugin sockets.
    #[arg(long, default_value = "/run/docker/plugins")]
    pub docker_plugin_dir: PathBuf,
    /// The Docker Engine API the plugin follows for container names and labels (DNS, policy),
    /// `unix:///PATH`; only used with `--docker-plugin`.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_api: String,
    /// Where DNS listens, IP or IP:PORT; port 53 of the bridge's first exposed address (see
    /// `weft expose`) when absent, so never a host's external interface by default.
    #[arg(long, value_parser = parse_dns_listen)]
    pub dns_listen_address: Option<std::net::SocketAddr>,
    /// The domain weft's DNS answers for.
    #[arg(long, default_value = "weft.local.")]
    pub dns_domain: String,
    /// TTL of DNS answers, in seconds.
    #[arg(long, default_value_t = 1)]
    pub dns_ttl: u32,
    /// Resolver configuration naming the upstream servers for other names.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// NFLOG group the policy drop chains log blocked packets to (rate-limited), which the
    /// router reads for `weft policy drops` and drop events.
    #[arg(long, default_value_t = crate::policy::nflog::DEFAULT_NFLOG_GROUP)]
    pub policy_nflog_group: u16,
    /// Log level: error, warn, info, debug or trace (or a tracing filter).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    pub log_level: String,
    /// The metrics store: Prometheus API address, retention, tenancy, per-tenant limits.
    #[command(flatten)]
    pub metrics: Box<crate::tsdb::MetricsArgs>,
    /// Flow metrics: interval, tenants, cardinality.
    #[command(flatten)]
    pub flows: crate::flows::FlowArgs,
    /// The Kubernetes watcher: `--kube auto|on|off`, `--kubeconfig PATH`.
    #[command(flatten)]
    pub kube: crate::kube::KubeArgs,
    /// Peers to connect to, as HOST or HOST:PORT.
    #[arg(value_parser = peer_arg)]
    pub peers: Vec<String>,
}

fn parse_dns_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, 53));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not IP or IP:PORT, e.g. 10.32.0.1 or 127.0.0.1:5353"))
}

fn peer_arg(s: &str) -> Result<String, String> {
    parse_peer(s).map_err(|e| e.to_string())
}
