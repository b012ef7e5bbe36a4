//! The network configuration on stdin: decoded (error 6), version-checked (error 1) and
//! validated (error 7).

use serde::Deserialize;
use serde_json::Value;
use weft_router::api::DEFAULT_SOCKET;

use crate::error::{CniError, Result};

/// Spec versions this plugin speaks.
pub(crate) const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest of them.
pub(crate) const LATEST_VERSION: &str = "1.1.0";
/// The plugin's `type`.
pub(crate) const PLUGIN_TYPE: &str = "weft";

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ValidAttachment {
    /// The container id.
    #[serde(rename = "containerID")]
    pub(crate) container_id: String,
    /// The interface.
    pub(crate) ifname: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    socket: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    hairpin_mode: Option<bool>,
    #[serde(default)]
    ipam: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    dns: Option<Value>,
    #[serde(default)]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Option<Vec<ValidAttachment>>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct NetConf {
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub(crate) cni_version: String,
    /// The daemon's control socket (`socket`, written by `weft setup-cni`).
    pub(crate) socket: String,
    /// `mtu`, which must equal the overlay's when given.
    pub(crate) mtu: Option<u32>,
    /// `hairpinMode`: the container's bridge port sends frames back out where they came in.
    pub(crate) hairpin: bool,
    /// `ipam.type` of a delegated IPAM plugin; weft's own IPAM when absent.
    pub(crate) ipam_type: Option<String>,
    /// `dns`, copied into the result.
    pub(crate) dns: Option<Value>,
    /// `prevResult` of a chain.
    pub(crate) prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC).
    pub(crate) valid_attachments: Vec<ValidAttachment>,
}

/// The `cniVersion` of `bytes` if it has one, for error answers before full validation.
pub(crate) fn version_hint(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST_VERSION.to_string())
}

/// Decodes and validates the configuration.
pub(crate) fn parse(bytes: &[u8]) -> Result<NetConf> {
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|e| CniError::Decode(format!("the network configuration is not valid: {e}")))?;
    if !SUPPORTED_VERSIONS.contains(&raw.cni_version.as_str()) {
        return Err(CniError::IncompatibleVersion(format!(
            "{} (supported: {})",
            raw.cni_version,
            SUPPORTED_VERSIONS.join(", ")
        )));
    }
    if raw.name.is_empty() {
        return Err(CniError::InvalidConfig(
            "the network has no \"name\"".into(),
        ));
    }
    if raw.kind != PLUGIN_TYPE {
        return Err(CniError::InvalidConfig(format!(
            "\"type\" is {:?}, this plugin is {PLUGIN_TYPE:?}",
            raw.kind
        )));
    }
    if let Some(mtu) = raw.mtu
        && !(576..=65535).contains(&mtu)
    {
        return Err(CniError::InvalidConfig(format!(
            "\"mtu\" {mtu} is outside 576..65535"
        )));
    }
    let ipam_type = match raw.ipam {
        None => None,
        Some(map) if map.is_empty() => None,
        Some(map) => match map.get("type") {
            Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
            _ => {
                return Err(CniError::InvalidConfig(
                    "\"ipam\" must be empty (weft's own IPAM) or name a plugin in \"type\"".into(),
                ));
            }
        },
    };
    let socket = raw.socket.unwrap_or_else(|| DEFAULT_SOCKET.to_string());
    if !socket.starts_with('/') {
        return Err(CniError::InvalidConfig(format!(
            "\"socket\" {socket:?} must be an absolute path"
        )));
    }
    Ok(NetConf {
        cni_version: raw.cni_version,
        socket,
        mtu: raw.mtu,
        hairpin: raw.hairpin_mode.unwrap_or(false),
        ipam_type,
        dns: raw.dns,
        prev_result: raw.prev_result,
        valid_attachments: raw.valid_attachments.unwrap_or_default(),
    })
}

/// Whether `version` knows STATUS and GC (1.1.0 and later).
pub(crate) fn has_status_and_gc(version: &str) -> bool {
    version == "1.1.0"
}

/// Whether results of `version` carry `ips[].version` (before 1.0.0).
pub(crate) fn ips_have_version(version: &str) -> bool {
    version.starts_with("0.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_config_uses_the_default_socket_and_own_ipam() {
        let c = parse(br#"{"cniVersion":"1.0.0","name":"n","type":"weft"}"#).expect("valid");
        assert_eq!(c.socket, DEFAULT_SOCKET);
        assert_eq!(c.ipam_type, None);
        assert!(!c.hairpin);
        let c = parse(br#"{"cniVersion":"1.0.0","name":"n","type":"weft","hairpinMode":true}"#)
            .expect("valid");
        assert!(c.hairpin);
        let c = parse(br#"{"cniVersion":"0.4.0","name":"n","type":"weft","ipam":{"type":"host-local","subnet":"10.32.0.0/12"},"socket":"/tmp/w.sock"}"#)
            .expect("valid");
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        assert_eq!(c.socket, "/tmp/w.sock");
    }

    #[test]
    fn each_kind_of_bad_config_gets_its_code() {
        let code = |s: &str| parse(s.as_bytes()).expect_err(s).code();
        assert_eq!(code("{not json"), 6);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"weft","mtu":"big"}"#),
            6
        );
        assert_eq!(
            code(r#"{"cniVersion":"9.9.9","name":"n","type":"weft"}"#),
            1
        );
        assert_eq!(code(r#"{"cniVersion":"1.0.0","type":"weft"}"#), 7);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"weft","ipam":{"subnet":"x"}}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"weft","mtu":100}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"weft","hairpinMode":"yes"}"#),
            6
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"weft","socket":"rel.sock"}"#),
            7
        );
    }

    #[test]
    fn version_hint_falls_back_to_the_latest() {
        assert_eq!(version_hint(br#"{"cniVersion":"0.4.0"}"#), "0.4.0");
        assert_eq!(version_hint(b"garbage"), LATEST_VERSION);
        assert_eq!(version_hint(br#"{"cniVersion":"7"}"#), LATEST_VERSION);
    }
}
