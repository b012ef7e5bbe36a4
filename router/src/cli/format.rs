//! Text layouts of `weft status`, following `weave status` where Weave had one.

use std::fmt::Write;

use crate::api::{OverlayChange, PsResponse, Report, WorkloadInfo};

fn peer_label(name: impl std::fmt::Display, nickname: &str) -> String {
    format!("{name}({nickname})")
}

/// `weft status`: the summary.
pub fn status(r: &Report) -> String {
    let m = &r.mesh;
    let established = m
        .connections
        .iter()
        .filter(|c| c.state == "established")
        .count();
    let peer_links: usize = m
        .peers
        .iter()
        .map(|p| p.connections.iter().filter(|c| c.established).count())
        .sum();
    let mut out = String::new();
    let rows = [
        ("Version", format!("weft {}", r.version)),
        ("Service", "router".to_string()),
        (
            "Protocol",
            format!("weft {}", crate::mesh::PROTOCOL_VERSION),
        ),
        ("Name", peer_label(&r.router.name, &r.router.nickname)),
        (
            "Encryption",
            if r.router.encryption {
                "enabled"
            } else {
                "disabled"
            }
            .to_string(),
        ),
        ("PeerDiscovery", "enabled".to_string()),
        ("Targets", m.targets.len().to_string()),
        (
            "Connections",
            format!("{} ({} established)", m.connections.len(), established),
        ),
        (
            "Peers",
            format!(
                "{} (with {} established connections)",
                m.peers.len(),
                peer_links
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "{k:>15}: {v}");
    }
    out
}

/// `weft status peers`: every peer and its connections.
pub fn peers(r: &Report) -> String {
    let mut out = String::new();
    for p in &r.mesh.peers {
        let _ = writeln!(out, "{}", peer_label(p.name, &p.nickname));
        for c in &p.connections {
            let arrow = if c.outbound { "->" } else { "<-" };
            let state = if c.established {
                "established"
            } else {
                "pending"
            };
            let _ = writeln!(
                out,
                "   {arrow} {:<22} {:<32} {state}",
                c.address,
                peer_label(c.name, &c.nickname)
            );
        }
    }
    out
}

/// `weft status connections`: this router's connections (state, data path `fastdp`/`sleeve`,
/// whether workload traffic is encrypted, overlay MTU) and the targets it is still dialing.
pub fn connections(r: &Report) -> String {
    let mut out = String::new();
    for c in &r.mesh.connections {
        let arrow = if c.outbound { "->" } else { "<-" };
        let path = r.data_path.peers.iter().find(|p| p.name == c.name);
        let (via, enc, mtu) = match path {
            Some(p) => (
                p.path.as_str(),
                if p.encrypted {
                    "encrypted"
                } else {
                    "unencrypted"
                },
                format!("mtu={}", p.mtu),
            ),
            None => (
                "-",
                if c.encrypted {
                    "encrypted"
                } else {
                    "unencrypted"
                },
                "-".to_string(),
            ),
        };
        let _ = writeln!(
            out,
            "{arrow} {:<22} {:<12} {via:<7} {enc:<12} {mtu:<9} {}",
            c.address,
            c.state,
            peer_label(c.name, &c.nickname)
        );
    }
    for t in r.mesh.targets.iter().filter(|t| t.state != "connected") {
        let why = t.last_error.as_deref().unwrap_or("");
        let _ = writeln!(out, "-> {:<22} {:<12} {why}", t.address, t.state);
    }
    out
}

/// `weft status targets`: the addresses this router dials.
pub fn targets(r: &Report) -> String {
    r.mesh
        .targets
        .iter()
        .map(|t| format!("{}\n", t.address))
        .collect()
}

fn workload_line(w: &WorkloadInfo) -> String {
    format!(
        "{} {} {} {}",
        w.name,
        w.mac,
        w.ifname,
        w.addresses.join(" ")
    )
}

/// `weft ps`: one line per attached workload (`NAME MAC IFNAME ADDR...`), the host's exposed
/// addresses first as `weft:expose`.
pub fn ps(p: &PsResponse) -> String {
    let mut out = String::new();
    if !p.exposed.is_empty() {
        let _ = writeln!(out, "weft:expose {}", p.exposed.join(" "));
    }
    for w in &p.workloads {
        let _ = writeln!(out, "{}", workload_line(w));
    }
    out
}

/// `weft attach`: the workload's address.
pub fn attached(c: &OverlayChange) -> String {
    c.workloads
        .iter()
        .map(|w| format!("{}\n", w.addresses.join(" ")))
        .collect()
}

/// `weft detach`: the interfaces removed.
pub fn detached(c: &OverlayChange) -> String {
    c.workloads
        .iter()
        .map(|w| format!("detached {}\n", workload_line(w)))
        .collect()
}

/// `weft expose` / `weft hide`: the addresses added or removed.
pub fn addresses(c: &OverlayChange) -> String {
    c.addresses.iter().map(|a| format!("{a}\n")).collect()
}

/// `weft status ipam`: each peer's share of the range, as `weave status ipam`.
pub fn ipam(s: &crate::api::ipam::IpamStatus) -> String {
    let mut out = String::new();
    let total: u64 = s.shares.iter().map(|sh| sh.size).sum();
    let _ = writeln!(
        out,
        "Range: {} (default subnet {}), init: {}",
        s.range, s.default_subnet, s.init
    );
    let _ = writeln!(
        out,
        "State: {} ({} allocated here, {} pending)",
        s.state, s.allocated, s.pending
    );
    if !s.ready {
        let _ = writeln!(
            out,
            "The ring is not ready yet: waiting for consensus (`weft prime` waits for it)."
        );
    }
    for sh in &s.shares {
        let pct = if total == 0 {
            0.0
        } else {
            sh.size as f64 * 100.0 / total as f64
        };
        let reach = if sh.reachable { "" } else { " - unreachable!" };
        let _ = writeln!(
            out,
            "{:<18} {:>8} IPs ({:>5.1}% of total) ({} free){reach}",
            sh.peer, sh.size, pct, sh.free
        );
    }
    for (peer, by) in &s.removed {
        let _ = writeln!(out, "{peer:<18} removed by {by} (rmpeer)");
    }
    out
}

/// `weft reset`: who got the space, which files went, and that the router stops.
pub fn reset(r: &crate::api::ipam::ResetResponse) -> String {
    let handed = match &r.heir {
        Some(heir) => format!("handed {} addresses to {heir}", r.addresses),
        None => "this peer owned no address space".to_string(),
    };
    format!(
        "{handed}; removed {}; the router is stopping\n",
        r.removed.join(", ")
    )
}

/// `weft status dns`, `dns-add`, `dns-remove`: one line per record as `weave status dns`
/// (name without the domain, address, owner, peer).
pub fn dns(r: &crate::api::dns::DnsRecords) -> String {
    let domain = crate::dns::Fqdn::parse(&r.domain).ok();
    let mut out = String::new();
    for rec in &r.records {
        let name = match (&domain, crate::dns::Fqdn::parse(&rec.name)) {
            (Some(d), Ok(n)) => n.short(d).to_string(),
            _ => rec.name.clone(),
        };
        let _ = writeln!(
            out,
            "{:<15} {:<15} {:<12} {}",
            name, rec.addr, rec.owner, rec.peer
        );
    }
    out
}
