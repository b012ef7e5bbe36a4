//! Cutting and restoring underlay links with nftables in the underlay namespace.
//!
//! One `bridge` table holds two sets: port pairs whose frames are dropped, and port pairs plus a
//! UDP destination port whose datagrams are dropped. Changing a link is adding or deleting set
//! elements, always in both directions.

use std::process::Command;

use crate::cmd;
use crate::error::Result;
use crate::net::Net;

/// The harness's table in the underlay namespace.
const TABLE: &str = "weft_harness";

/// Name of host `index`'s veth port on the underlay bridge.
pub(crate) fn port_name(index: usize) -> String {
    format!("h{index}")
}

/// The table loaded into the underlay when the net is built.
pub(crate) fn ruleset() -> String {
    format!(
        "table bridge {TABLE} {{
  set cut {{ type ifname . ifname; }}
  set udp_block {{ type ifname . ifname . inet_service; }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname . oifname @cut drop
    meta l4proto udp iifname . oifname . udp dport @udp_block drop
  }}
}}
"
    )
}

/// Set elements for both directions between hosts `a` and `b`, with an optional UDP port.
fn pair_elements(a: usize, b: usize, udp_port: Option<u16>) -> String {
    let (pa, pb) = (port_name(a), port_name(b));
    match udp_port {
        None => format!("{{ \"{pa}\" . \"{pb}\", \"{pb}\" . \"{pa}\" }}"),
        Some(p) => format!("{{ \"{pa}\" . \"{pb}\" . {p}, \"{pb}\" . \"{pa}\" . {p} }}"),
    }
}

impl Net {
    fn nft(&self, command: &str) -> Result<()> {
        cmd::run_ok(Command::new("ip").args(["netns", "exec", self.underlay(), "nft", command]))?;
        Ok(())
    }

    fn check_pair(&self, a: usize, b: usize) {
        self.host(a);
        self.host(b);
        assert_ne!(a, b, "a link joins two different hosts");
    }

    /// Drops every frame between hosts `a` and `b` (both ways). Panics on a bad host index.
    #[track_caller]
    pub fn cut(&self, a: usize, b: usize) -> Result<()> {
        self.check_pair(a, b);
        self.nft(&format!(
            "add element bridge {TABLE} cut {}",
            pair_elements(a, b, None)
        ))
    }

    /// Undoes [`Net::cut`]; fails if the link is not cut.
    #[track_caller]
    pub fn restore(&self, a: usize, b: usize) -> Result<()> {
        self.check_pair(a, b);
        self.nft(&format!(
            "delete element bridge {TABLE} cut {}",
            pair_elements(a, b, None)
        ))
    }

    /// Drops UDP datagrams to `port` between hosts `a` and `b` (both ways); TCP still passes.
    #[track_caller]
    pub fn block_udp_port(&self, a: usize, b: usize, port: u16) -> Result<()> {
        self.check_pair(a, b);
        self.nft(&format!(
            "add element bridge {TABLE} udp_block {}",
            pair_elements(a, b, Some(port))
        ))
    }

    /// Undoes [`Net::block_udp_port`]; fails if that port is not blocked.
    #[track_caller]
    pub fn unblock_udp_port(&self, a: usize, b: usize, port: u16) -> Result<()> {
        self.check_pair(a, b);
        self.nft(&format!(
            "delete element bridge {TABLE} udp_block {}",
            pair_elements(a, b, Some(port))
        ))
    }

    /// Makes the hosts a line: cuts every pair that are not neighbours (`|i - j| > 1`).
    pub fn isolate_line(&self) -> Result<()> {
        let n = self.hosts().len();
        for a in 0..n {
            for b in a + 2..n {
                self.cut(a, b)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_cover_both_directions() {
        assert_eq!(pair_elements(0, 2, None), r#"{ "h0" . "h2", "h2" . "h0" }"#);
        assert_eq!(
            pair_elements(1, 3, Some(6783)),
            r#"{ "h1" . "h3" . 6783, "h3" . "h1" . 6783 }"#
        );
    }

    #[test]
    fn ruleset_names_both_sets() {
        let rules = ruleset();
        assert!(
            rules.contains("@cut drop") && rules.contains("@udp_block drop"),
            "{rules}"
        );
    }
}
