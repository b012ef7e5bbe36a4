//! Delegated IPAM: runs the plugin named in `ipam.type` (looked up in `CNI_PATH`) with the same
//! environment and configuration, as the spec's IPAM delegation says.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::Value;

use crate::error::{CniError, Result};

/// Finds `kind` in the `CNI_PATH` directories.
pub(crate) fn find(kind: &str, path: &[PathBuf]) -> Result<PathBuf> {
    if kind.contains('/') {
        return Err(CniError::InvalidConfig(format!(
            "IPAM type {kind:?} must be a plugin name, not a path"
        )));
    }
    path.iter()
        .map(|dir| dir.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::InvalidConfig(format!(
                "unknown IPAM type {kind:?}: no such plugin in CNI_PATH {path:?}"
            ))
        })
}

/// Runs `plugin` with `command` (the rest of the environment is inherited) and `config` on
/// stdin; its result on success, its own error (code and message) otherwise.
pub(crate) fn run(plugin: &Path, command: &str, config: &[u8]) -> Result<Option<Value>> {
    let mut child = Process::new(plugin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::Io(format!("running IPAM plugin {}: {e}", plugin.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config)
            .map_err(|e| CniError::Io(format!("feeding IPAM plugin {}: {e}", plugin.display())))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::Io(format!("waiting for IPAM plugin {}: {e}", plugin.display())))?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let detail = parsed
            .as_ref()
            .map(|v| format!("{} ({})", v["msg"], v["details"]))
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        return Err(CniError::Delegate {
            code: parsed
                .as_ref()
                .and_then(|v| v["code"].as_u64())
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(999),
            message: format!("IPAM plugin {} failed: {detail}", plugin.display()),
        });
    }
    Ok(parsed)
}

/// The first IPv4 `ADDR/PREFIX` of an IPAM result.
pub(crate) fn first_ipv4(result: &Value) -> Result<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .find(|a| !a.contains(':'))
        .map(str::to_string)
        .ok_or_else(|| CniError::Decode(format!("the IPAM result has no IPv4 address: {result}")))
}
