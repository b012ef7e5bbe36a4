//! The runtime's environment (`CNI_*` variables) of one call, validated per command.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{CniError, Result};

/// Longest interface name the kernel accepts.
const MAX_IFNAME: usize = 15;

/// The operation asked for by `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Attach the container.
    Add,
    /// Detach it (idempotent).
    Del,
    /// Verify the attachment.
    Check,
    /// Is the plugin ready for ADD.
    Status,
    /// Remove attachments the runtime no longer knows.
    Gc,
    /// Which spec versions are supported.
    Version,
}

/// `K8S_*` identity from `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CniArgs {
    /// `K8S_POD_NAMESPACE`.
    pub(crate) pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub(crate) pod_name: Option<String>,
}

/// The validated environment of a call.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    /// `CNI_CONTAINERID` (ADD, DEL, CHECK).
    pub(crate) container_id: String,
    /// `CNI_NETNS` (ADD, CHECK; optional on DEL).
    pub(crate) netns: Option<String>,
    /// `CNI_IFNAME` (ADD, DEL, CHECK).
    pub(crate) ifname: String,
    /// `CNI_ARGS`.
    pub(crate) args: CniArgs,
    /// `CNI_PATH`: where delegated plugins are looked for.
    pub(crate) path: Vec<PathBuf>,
}

/// The command alone, so VERSION can answer before anything else is checked.
pub(crate) fn command(vars: &BTreeMap<String, String>) -> Result<Command> {
    match vars.get("CNI_COMMAND").map(String::as_str) {
        None | Some("") => Err(CniError::InvalidEnv(
            "CNI_COMMAND is not set: this is a CNI plugin, run by a container runtime".into(),
        )),
        Some("ADD") => Ok(Command::Add),
        Some("DEL") => Ok(Command::Del),
        Some("CHECK") => Ok(Command::Check),
        Some("STATUS") => Ok(Command::Status),
        Some("GC") => Ok(Command::Gc),
        Some("VERSION") => Ok(Command::Version),
        Some(other) => Err(CniError::InvalidEnv(format!(
            "CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"
        ))),
    }
}

/// Validates the variables `command` needs.
pub(crate) fn parse(vars: &BTreeMap<String, String>, command: Command) -> Result<Env> {
    let get = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();
    let need =
        |name: &str| get(name).ok_or_else(|| CniError::InvalidEnv(format!("{name} is not set")));
    let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
    let (container_id, ifname) = if per_container {
        let id = need("CNI_CONTAINERID")?;
        check_container_id(&id)?;
        let ifname = need("CNI_IFNAME")?;
        check_ifname(&ifname)?;
        (id, ifname)
    } else {
        (String::new(), String::new())
    };
    let netns = match command {
        Command::Add | Command::Check => Some(need("CNI_NETNS")?),
        _ => get("CNI_NETNS"),
    };
    let path = match command {
        Command::Version => Vec::new(),
        _ => std::env::split_paths(&need("CNI_PATH")?).collect(),
    };
    let args = parse_args(vars.get("CNI_ARGS").map(String::as_str).unwrap_or(""))?;
    Ok(Env {
        container_id,
        netns,
        ifname,
        args,
        path,
    })
}

fn check_container_id(id: &str) -> Result<()> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::InvalidEnv(format!(
            "CNI_CONTAINERID {id:?} must be letters, digits, '_', '.' or '-', starting with a letter or digit"
        )))
    }
}

fn check_ifname(name: &str) -> Result<()> {
    let bad = name.len() > MAX_IFNAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        Err(CniError::InvalidEnv(format!(
            "CNI_IFNAME {name:?} is not a valid interface name (at most {MAX_IFNAME} characters, no '/', ':' or spaces)"
        )))
    } else {
        Ok(())
    }
}

/// Parses `K=V;K=V`; unknown keys are refused unless `IgnoreUnknown` is true.
fn parse_args(text: &str) -> Result<CniArgs> {
    let mut out = CniArgs::default();
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            CniError::InvalidEnv(format!("CNI_ARGS entry {pair:?} is not KEY=VALUE"))
        })?;
        match k {
            "K8S_POD_NAMESPACE" => {
                out.pod_namespace = Some(v.to_string()).filter(|v| !v.is_empty())
            }
            "K8S_POD_NAME" => out.pod_name = Some(v.to_string()).filter(|v| !v.is_empty()),
            "K8S_POD_INFRA_CONTAINER_ID" | "K8S_POD_UID" => {}
            "IgnoreUnknown" => ignore_unknown = matches!(v, "1" | "true" | "True"),
            _ => unknown.push(k.to_string()),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(CniError::InvalidEnv(format!(
            "CNI_ARGS has unknown keys {unknown:?} (add IgnoreUnknown=1 to ignore them)"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn add_needs_container_netns_ifname_and_path() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ];
        let env = parse(&vars(&full), Command::Add).expect("valid");
        assert_eq!(env.netns.as_deref(), Some("/run/netns/x"));
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
            let v: Vec<_> = full
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = parse(&vars(&v), Command::Add).expect_err(missing);
            assert_eq!(err.code(), 4, "{missing}");
            assert!(err.to_string().contains(missing), "{err}");
        }
        let del: Vec<_> = full
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        assert!(parse(&vars(&del), Command::Del).is_ok());
    }

    #[test]
    fn bad_ids_ifnames_and_commands_are_invalid_env() {
        assert_eq!(command(&vars(&[])).expect_err("none").code(), 4);
        assert_eq!(
            command(&vars(&[("CNI_COMMAND", "PUT")]))
                .expect_err("bad")
                .code(),
            4
        );
        assert!(check_container_id("-abc").is_err());
        assert!(check_container_id("a b").is_err());
        assert!(check_ifname("a-very-long-ifname").is_err());
        assert!(check_ifname("eth/0").is_err());
        assert!(check_ifname("eth0").is_ok());
    }

    #[test]
    fn cni_args_give_the_pod_identity_and_refuse_unknown_keys() {
        let a = parse_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0;FOO=x")
            .expect("valid");
        assert_eq!(a.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(a.pod_name.as_deref(), Some("web-0"));
        assert_eq!(parse_args("FOO=x").expect_err("unknown").code(), 4);
        assert_eq!(parse_args("novalue").expect_err("malformed").code(), 4);
    }
}
