//! weft's CNI plugin (installed as `weft` in the CNI bin dir): validates the runtime's
//! environment and network configuration, asks the weft daemon over its control socket to
//! attach or detach (the same pipeline as `weft attach`), and prints the spec's result or error.
//! Supports spec versions 0.3.0 to 1.1.0: ADD, DEL, CHECK, STATUS, GC, VERSION.

mod config;
mod daemon;
mod delegate;
mod env;
mod error;
mod result;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use serde_json::{Value, json};
use weft_router::cni::types::{
    CniAddRequest, CniAttachment, CniAttachmentKey, CniDelRequest, CniDelResponse, CniGcRequest,
    CniGcResponse, CniStatusResponse,
};

use crate::config::{LATEST_VERSION, NetConf, SUPPORTED_VERSIONS};
use crate::daemon::Daemon;
use crate::env::{Command, Env};
use crate::error::{CniError, Result};

fn main() -> ExitCode {
    let vars: BTreeMap<String, String> = std::env::vars().collect();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version = config::version_hint(&stdin);
    let outcome = read
        .map_err(|e| CniError::Io(format!("reading the configuration on stdin: {e}")))
        .and_then(|_| run(&vars, &stdin));
    match outcome {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", e.to_json(&version));
            eprintln!("weft CNI: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Carries out one call; the JSON to print on success, if any.
fn run(vars: &BTreeMap<String, String>, stdin: &[u8]) -> Result<Option<Value>> {
    let command = env::command(vars)?;
    if command == Command::Version {
        return Ok(Some(json!({
            "cniVersion": config::version_hint(stdin),
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    let env = env::parse(vars, command)?;
    let conf = config::parse(stdin)?;
    if matches!(command, Command::Status | Command::Gc)
        && !config::has_status_and_gc(&conf.cni_version)
    {
        return Err(CniError::IncompatibleVersion(format!(
            "{} has no STATUS or GC (they need {LATEST_VERSION})",
            conf.cni_version
        )));
    }
    let daemon = Daemon::new(&conf.socket)?;
    match command {
        Command::Add => add(&daemon, &env, &conf, stdin).map(Some),
        Command::Del => del(&daemon, &env, &conf, stdin).map(|()| None),
        Command::Check => check(&daemon, &env, &conf).map(|()| None),
        Command::Status => status(&daemon).map(|()| None),
        Command::Gc => gc(&daemon, &conf).map(|()| None),
        Command::Version => Ok(None),
    }
}

fn add(daemon: &Daemon, env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<Value> {
    let netns = env.netns.clone().unwrap_or_default();
    if !std::path::Path::new(&netns).exists() {
        return Err(CniError::UnknownContainer(format!(
            "the network namespace {netns} does not exist"
        )));
    }
    if conf.mtu.is_some() {
        let status: CniStatusResponse = daemon.get("/cni/status")?;
        check_mtu(conf, status.mtu)?;
    }
    let delegate = match &conf.ipam_type {
        Some(kind) => Some(delegate::find(kind, &env.path)?),
        None => None,
    };
    let address = match &delegate {
        Some(plugin) => {
            let result = delegate::run(plugin, "ADD", stdin)?.ok_or_else(|| {
                CniError::Decode(format!(
                    "IPAM plugin {} printed no result",
                    plugin.display()
                ))
            })?;
            match delegate::first_ipv4(&result) {
                Ok(a) => Some(a),
                Err(e) => {
                    let _ = delegate::run(plugin, "DEL", stdin);
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let req = CniAddRequest {
        container_id: env.container_id.clone(),
        netns,
        ifname: env.ifname.clone(),
        address,
        pod_namespace: env.args.pod_namespace.clone(),
        pod_name: env.args.pod_name.clone(),
        hairpin: conf.hairpin,
    };
    match daemon.post::<_, CniAttachment>("/cni/add", &req) {
        Ok(a) => Ok(result::add_result(conf, &a)),
        Err(e) => {
            if let Some(plugin) = &delegate {
                let _ = delegate::run(plugin, "DEL", stdin);
            }
            Err(e)
        }
    }
}

/// A configured `mtu` must be the overlay's: weft's interfaces all use the overlay MTU.
fn check_mtu(conf: &NetConf, overlay_mtu: u32) -> Result<()> {
    match conf.mtu {
        Some(mtu) if mtu != overlay_mtu => Err(CniError::InvalidConfig(format!(
            "\"mtu\" {mtu} differs from the weft overlay MTU {overlay_mtu}: omit it or set it to {overlay_mtu}"
        ))),
        _ => Ok(()),
    }
}

fn del(daemon: &Daemon, env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<()> {
    let req = CniDelRequest {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: env.netns.clone(),
    };
    daemon.post::<_, CniDelResponse>("/cni/del", &req)?;
    if let Some(kind) = &conf.ipam_type {
        delegate::run(&delegate::find(kind, &env.path)?, "DEL", stdin)?;
    }
    Ok(())
}

fn check(daemon: &Daemon, env: &Env, conf: &NetConf) -> Result<()> {
    let req = CniDelRequest {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: env.netns.clone(),
    };
    let attached: CniAttachment = daemon.post("/cni/check", &req)?;
    check_mtu(conf, attached.mtu)
}

fn status(daemon: &Daemon) -> Result<()> {
    daemon
        .get::<CniStatusResponse>("/cni/status")
        .map(|_| ())
        .map_err(|e| match e {
            CniError::TryAgainLater(m) => CniError::NotAvailable(m),
            other => other,
        })
}

fn gc(daemon: &Daemon, conf: &NetConf) -> Result<()> {
    let req = CniGcRequest {
        valid: conf
            .valid_attachments
            .iter()
            .map(|v| CniAttachmentKey {
                container_id: v.container_id.clone(),
                ifname: v.ifname.clone(),
            })
            .collect(),
    };
    daemon.post::<_, CniGcResponse>("/cni/gc", &req)?;
    Ok(())
}
