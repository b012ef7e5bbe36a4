//! `weft setup-cni`: installs the plugin binary as `weft` in the CNI bin dir and writes
//! `10-weft.conflist` (weft, then `portmap`) carrying the control socket of the router it was
//! run against, so several routers on one machine each get a working configuration.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use crate::state_file;

/// Name of the written configuration list.
pub const CONFLIST_FILE: &str = "10-weft.conflist";
/// Name of the plugin binary in the CNI bin dir (the config's `type`).
pub const PLUGIN_NAME: &str = "weft";
/// Name of the plugin binary as built, next to `weft`.
pub const BUILT_PLUGIN: &str = "weft-cni";
/// The CNI spec version the conflist declares.
pub const CONFLIST_VERSION: &str = "1.0.0";

/// What `setup-cni` installs, and where.
#[derive(Debug, Clone)]
pub struct SetupCni {
    /// The router's control socket, written into the config.
    pub socket: PathBuf,
    /// CNI bin dir, e.g. `/opt/cni/bin`.
    pub bin_dir: PathBuf,
    /// CNI config dir, e.g. `/etc/cni/net.d`.
    pub conf_dir: PathBuf,
    /// The plugin binary to install; `weft-cni` next to the running `weft` when absent.
    pub plugin: Option<PathBuf>,
    /// The network name in the config.
    pub network: String,
}

/// The conflist for a router on `socket`.
pub fn conflist(network: &str, socket: &Path) -> serde_json::Value {
    json!({
        "cniVersion": CONFLIST_VERSION,
        "name": network,
        "plugins": [
            {
                "type": PLUGIN_NAME,
                "socket": socket.display().to_string(),
                "hairpinMode": true,
            },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true },
        ],
    })
}

/// Installs the plugin and the conflist; the paths written.
pub fn setup_cni(spec: &SetupCni) -> anyhow::Result<Vec<PathBuf>> {
    if !spec.socket.is_absolute() {
        anyhow::bail!(
            "the socket {} must be an absolute path: the runtime runs the plugin from another directory",
            spec.socket.display()
        );
    }
    let source = match &spec.plugin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("finding the running weft binary")?
            .with_file_name(BUILT_PLUGIN),
    };
    let binary = std::fs::read(&source).with_context(|| {
        format!(
            "reading the CNI plugin {} (build it with `cargo build -p weft-cni`, or give --plugin)",
            source.display()
        )
    })?;
    for dir in [&spec.bin_dir, &spec.conf_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bin = spec.bin_dir.join(PLUGIN_NAME);
    state_file::write_atomic(&bin, &binary)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", bin.display()))?;
    let conf = spec.conf_dir.join(CONFLIST_FILE);
    let text = serde_json::to_vec_pretty(&conflist(&spec.network, &spec.socket))
        .context("encoding the conflist")?;
    state_file::write_atomic(&conf, &text)?;
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("making {} readable", conf.display()))?;
    Ok(vec![bin, conf])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_the_plugin_and_a_conflist_naming_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin = dir.path().join("built");
        std::fs::write(&plugin, b"#!/bin/sh\n").expect("write");
        let spec = SetupCni {
            socket: PathBuf::from("/tmp/r1/weft.sock"),
            bin_dir: dir.path().join("bin"),
            conf_dir: dir.path().join("net.d"),
            plugin: Some(plugin),
            network: "weft".into(),
        };
        let written = setup_cni(&spec).expect("setup");
        assert_eq!(written.len(), 2);
        let bin = dir.path().join("bin/weft");
        assert_eq!(std::fs::read(&bin).expect("bin"), b"#!/bin/sh\n");
        let mode = std::fs::metadata(&bin).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let conf: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("net.d").join(CONFLIST_FILE)).expect("conf"),
        )
        .expect("json");
        assert_eq!(conf["plugins"][0]["type"], "weft");
        assert_eq!(conf["plugins"][0]["socket"], "/tmp/r1/weft.sock");
        assert_eq!(conf["plugins"][1]["type"], "portmap");
        assert_eq!(
            conf["plugins"][0]["hairpinMode"], true,
            "as Weave Net's conflist"
        );
    }

    #[test]
    fn a_relative_socket_or_a_missing_plugin_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = SetupCni {
            socket: PathBuf::from("weft.sock"),
            bin_dir: dir.path().join("bin"),
            conf_dir: dir.path().join("net.d"),
            plugin: Some(dir.path().join("missing")),
            network: "weft".into(),
        };
        assert!(setup_cni(&spec).is_err());
        spec.socket = PathBuf::from("/run/weft/weft.sock");
        let err = setup_cni(&spec).expect_err("missing plugin");
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
        assert!(!dir.path().join("bin").exists());
    }
}
