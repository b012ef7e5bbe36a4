//! `weft launch`: wiring of the router's parts, their start order and shutdown.
//!
//! Start order: logging, password, data dir and identity, then every listener is bound (so a
//! port or socket in use fails the start with a clear message before anything runs), then the
//! overlay (bridge, VXLAN, adopted workloads), then the mesh, then the APIs. The metrics store is
//! opened (WAL replayed) with the listeners and serves its Prometheus API with the other APIs.
//! Shutdown (SIGINT, SIGTERM or `weft stop`) stops the metrics API, removes the control socket;
//! workloads stay attached.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rand::SeedableRng;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::api::RouterInfo;
use crate::api::server::{ApiState, bind_control_socket, serve_control, serve_status};
use crate::cli::LaunchArgs;
use crate::ipam::{IpamService, load_allocator};
use crate::mesh::driver::{self, MeshDriverConfig};
use crate::mesh::{PeerInfo, PeerName, new_uid};
use crate::overlay::{Overlay, OverlayConfig};
use crate::state_file;

/// File in the data dir that holds the peer name.
const PEER_NAME_FILE: &str = "peer-name";

/// Runs the router until it is told to stop.
pub async fn run(socket: PathBuf, args: LaunchArgs) -> anyhow::Result<()> {
    let password = resolve_password(&args)?;
    let mut rng = rand_chacha::ChaCha20Rng::from_entropy();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {}", args.data_dir.display()))?;
    let name = peer_name(&args.data_dir, args.name, &mut rng)?;
    let nickname = match &args.nickname {
        Some(n) => n.clone(),
        None => hostname(),
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let local = PeerInfo {
        name,
        nickname: nickname.clone(),
        uid: new_uid(now_ms, &mut rng),
        listen_port: args.port,
    };

    let allocator = load_allocator(ipam_config(&args, name)?, &args.data_dir)?;
    let dns = crate::dns::prepare(dns_config(&args), name, &args.data_dir)?;

    let mesh_listener = TcpListener::bind(("0.0.0.0", args.port))
        .await
        .with_context(|| {
            format!(
                "binding the mesh port {} (is another router running?)",
                args.port
            )
        })?;
    let control = bind_control_socket(&socket).await?;
    let status = TcpListener::bind(args.status_addr)
        .await
        .with_context(|| format!("binding the status listener {}", args.status_addr))?;
    let tsdb = crate::tsdb::Tsdb::open(&args.metrics, &args.data_dir).await?;

    let router = Arc::new(RouterInfo {
        name: name.to_string(),
        nickname: nickname.clone(),
        uid: local.uid,
        encryption: password.is_some(),
        port: args.port,
        conn_limit: args.conn_limit as usize,
        data_dir: args.data_dir.display().to_string(),
    });
    info!(
        name = %name, nickname = %nickname, port = args.port,
        encryption = password.is_some(), "weft router starting"
    );
    let overlay = Overlay::start(
        OverlayConfig {
            vni: args.vni,
            mtu: args.mtu,
            range: args.ipalloc_range,
            fastdp: password.is_none(),
        },
        &args.data_dir,
    )
    .await
    .context("bringing up the overlay")?;
    let data_path = crate::path::start(
        &overlay,
        name,
        password.is_some(),
        password.is_none(),
        args.vni,
    )
    .await?;
    let mesh = driver::start(MeshDriverConfig {
        local,
        password: password.map(String::into_bytes),
        conn_limit: args.conn_limit as usize,
        targets: args.peers.clone(),
        listener: mesh_listener,
        links: Some(data_path.links),
    });

    let fdb_task = overlay.follow(mesh.topology(), data_path.sleeve_ips);
    let ipam = IpamService::start(allocator, &args.data_dir, mesh.clone())
        .await
        .context("starting IPAM")?;

    let (dns, dns_task) = crate::dns::launch(dns, &args.data_dir, mesh.clone(), overlay.clone())
        .await
        .context("starting DNS")?;
    let policy = start_policy(
        &args.data_dir,
        name,
        mesh.clone(),
        &overlay,
        args.policy_nflog_group,
    )
    .await?;
    let kube = crate::kube::start(&args.kube, &policy)
        .await
        .context("starting the Kubernetes watcher")?;
    let cni = crate::cni::CniService::load(&args.data_dir, ipam.clone(), overlay.clone())
        .context("loading the CNI attachments")?;
    let tsdb = tsdb
        .serve(mesh.clone(), name)
        .await
        .context("starting the metrics store")?;
    let docker = start_docker(&args, &ipam, &overlay, &dns, &policy)?;
    let flows = crate::flows::FlowService::start(
        crate::flows::FlowConfig {
            args: args.flows.clone(),
            local: name,
            nickname: nickname.clone(),
            range: args.ipalloc_range,
        },
        crate::flows::FlowSources {
            mesh: mesh.clone(),
            policy: policy.clone(),
            ipam: ipam.clone(),
            dns: dns.clone(),
            sleeve: data_path.sleeve.clone(),
            mtu: overlay.mtu(),
        },
        tsdb.store(),
        tsdb.storage(),
    )
    .await
    .context("starting flow metrics")?;
    let stop = Arc::new(Notify::new());
    let state = ApiState {
        router,
        mesh,
        stop: stop.clone(),
        overlay,
        ipam,
        cni,
        dns,
        sleeve: data_path.sleeve,
        policy,
        flows,
    };
    let control_task = tokio::spawn(serve_control(control, state.clone()));
    let status_task = tokio::spawn(serve_status(status, state));

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupted, stopping"),
        _ = sigterm.recv() => info!("terminated, stopping"),
        _ = stop.notified() => info!("asked to stop"),
        r = control_task => warn!("control API ended: {r:?}"),
        r = status_task => warn!("status API ended: {r:?}"),
    }
    fdb_task.abort();
    if let Some(kube) = kube {
        kube.stop();
    }
    if let Some(docker) = docker {
        docker.stop();
    }
    tsdb.shutdown().await;
    dns_task.abort();
    if let Err(e) = std::fs::remove_file(&socket) {
        warn!("removing {}: {e}", socket.display());
    }
    Ok(())
}

/// Serves the Docker network and IPAM driver when `--docker-plugin` is given.
fn start_docker(
    args: &LaunchArgs,
    ipam: &IpamService,
    overlay: &Overlay,
    dns: &crate::dns::DnsService,
    policy: &crate::policy::PolicyService,
) -> anyhow::Result<Option<crate::docker::DockerPlugin>> {
    if !args.docker_plugin {
        return Ok(None);
    }
    let config = crate::docker::DockerConfig {
        dir: args.docker_plugin_dir.clone(),
        name: args.docker_plugin_name.clone(),
        engine: crate::docker::Engine::from_host(&args.docker_api)?,
    };
    let backend =
        crate::docker::WeftBackend::new(ipam.clone(), overlay.clone(), dns.clone(), policy.clone());
    let store = crate::docker::StateStore::in_dir(&args.data_dir);
    let driver = crate::docker::Driver::load(Arc::new(backend), store)?;
    Ok(Some(crate::docker::DockerPlugin::start(&config, driver)?))
}

/// The DNS settings from the `--dns-*` flags.
fn dns_config(args: &LaunchArgs) -> crate::dns::DnsConfig {
    crate::dns::DnsConfig {
        domain: args.dns_domain.clone(),
        ttl: args.dns_ttl,
        listen: args.dns_listen_address,
        resolv_conf: args.resolv_conf.clone(),
        range: args.ipalloc_range,
    }
}

/// Starts network policy enforcement (table `inet weft`) for the workloads attached now, hooks
/// it into the attach pipeline, and reads the drops logged to NFLOG group `nflog_group`.
async fn start_policy(
    data_dir: &Path,
    name: PeerName,
    mesh: driver::MeshHandle,
    overlay: &Overlay,
    nflog_group: u16,
) -> anyhow::Result<crate::policy::PolicyService> {
    let attached: Vec<std::net::Ipv4Addr> = overlay
        .list()
        .await
        .attachments
        .iter()
        .map(|a| a.address.ip())
        .collect();
    let driver =
        crate::policy::nft::NftDriver::new(nflog_group).context("preparing policy enforcement")?;
    let policy =
        crate::policy::PolicyService::start(data_dir, name, mesh, Box::new(driver), &attached)
            .await
            .context("starting network policy")?;
    crate::policy::hook::install(policy.clone());
    // Without it, drops are still blocked and counted exactly; only the samples are missing.
    if let Err(e) = crate::policy::nflog::spawn(nflog_group, policy.clone()) {
        warn!("recent policy drops will not be listed: {e}");
    }
    Ok(policy)
}

/// The IPAM configuration from the `--ipalloc-*` flags.
fn ipam_config(args: &LaunchArgs, name: PeerName) -> anyhow::Result<weft_ipam::Config> {
    let net = args.ipalloc_range;
    let range = weft_ipam::Cidr::new(net.network(), net.prefix())
        .with_context(|| format!("--ipalloc-range {net}"))?;
    let cfg = weft_ipam::Config::new(weft_ipam::PeerId(name.0), range, args.ipalloc_init.clone());
    match args.ipalloc_default_subnet {
        Some(subnet) => cfg
            .with_default_subnet(subnet)
            .context("--ipalloc-default-subnet"),
        None => Ok(cfg),
    }
}

/// The password from `--password`, `--password-file`, `WEFT_PASSWORD` or `WEAVE_PASSWORD`, in
/// that order; `None` runs the mesh unencrypted.
fn resolve_password(args: &LaunchArgs) -> anyhow::Result<Option<String>> {
    if let Some(p) = &args.password {
        if p.is_empty() {
            bail!("--password is empty: give a non-empty password, or none to run unencrypted");
        }
        return Ok(Some(p.clone()));
    }
    if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the password file {} given with --password-file",
                path.display()
            )
        })?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            bail!(
                "the password file {} is empty: put the password on its first line",
                path.display()
            );
        }
        return Ok(Some(line.to_string()));
    }
    for var in ["WEFT_PASSWORD", "WEAVE_PASSWORD"] {
        if let Ok(p) = std::env::var(var)
            && !p.is_empty()
        {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Removes the peer name file and the Docker driver's bookkeeping from `data_dir` (after `weft
/// reset`, the next start is a new peer that holds no pools or addresses); the paths that existed.
pub fn forget_peer_files(data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for file in [PEER_NAME_FILE, crate::docker::store::DOCKER_STATE_FILE] {
        let path = data_dir.join(file);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(removed)
}

/// The peer name: `--name` if given (and then kept), else the one in the data dir, else a new one.
fn peer_name(
    data_dir: &Path,
    given: Option<PeerName>,
    rng: &mut impl rand::RngCore,
) -> anyhow::Result<PeerName> {
    let path = data_dir.join(PEER_NAME_FILE);
    let stored = match state_file::read_if_exists(&path)? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let name = text.trim().parse::<PeerName>().map_err(|e| {
                anyhow::anyhow!(
                    "the peer name file {} is corrupt ({e}); fix it or remove it to get a new name",
                    path.display()
                )
            })?;
            Some(name)
        }
        None => None,
    };
    let name = match (given, stored) {
        (Some(g), _) => g,
        (None, Some(s)) => return Ok(s),
        (None, None) => PeerName::random(rng),
    };
    if stored != Some(name) {
        state_file::write_atomic(&path, format!("{name}\n").as_bytes())?;
    }
    Ok(name)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "weft".to_string())
}
