//! The resolver configuration of a named network namespace (`/etc/netns/<name>/resolv.conf`,
//! which `ip netns exec` bind-mounts over `/etc/resolv.conf`), written by
//! `weft attach --rewrite-resolv`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::name::Fqdn;
use crate::state_file;

/// Where `ip netns exec NAME` finds the namespace's own `resolv.conf`.
pub fn netns_resolv_path(etc: &Path, netns: &str) -> PathBuf {
    etc.join("netns").join(netns).join("resolv.conf")
}

/// The file's text: weft's DNS server, and the weft domain as search domain.
pub fn resolv_conf(server: IpAddr, domain: &Fqdn) -> String {
    let search = domain.as_str().trim_end_matches('.');
    format!("# written by weft attach --rewrite-resolv\nnameserver {server}\nsearch {search}\n")
}

/// Writes the resolver configuration of the named namespace `netns` under `etc`.
pub fn write_netns_resolv(
    etc: &Path,
    netns: &str,
    server: IpAddr,
    domain: &Fqdn,
) -> anyhow::Result<PathBuf> {
    let path = netns_resolv_path(etc, netns);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    state_file::write_atomic(&path, resolv_conf(server, domain).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nameserver_and_search() {
        let dir = tempfile::tempdir().unwrap();
        let domain = Fqdn::parse("weft.local.").unwrap();
        let path =
            write_netns_resolv(dir.path(), "ws1", "10.32.0.1".parse().unwrap(), &domain).unwrap();
        assert_eq!(path, dir.path().join("netns/ws1/resolv.conf"));
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("nameserver 10.32.0.1\n"), "{text}");
        assert!(text.contains("search weft.local\n"), "{text}");
    }
}
