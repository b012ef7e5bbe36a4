//! Settings of the overlay and the MTU rule.

use ipnetwork::Ipv4Network;

use super::error::{OverlayError, Result};

/// Name of the bridge every workload and the VXLAN device plug into.
pub const BRIDGE: &str = "weft";
/// Name of the kernel VXLAN device.
pub const VXLAN: &str = "vxlan-weft";
/// UDP port of the VXLAN fast path.
pub const VXLAN_PORT: u16 = 6784;
/// Default VXLAN network identifier.
pub const DEFAULT_VNI: u32 = 0x5_7e_f7;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Default overlay range.
pub const DEFAULT_RANGE: &str = "10.32.0.0/12";
/// Bytes VXLAN adds over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Bytes the encrypted sleeve adds over IPv4: outer IPv4 (20) + UDP (8) + sleeve header (10) +
/// Poly1305 tag (16) + inner Ethernet (14). The unencrypted sleeve adds less than VXLAN. (Only
/// TCP super-segments also carry their offload header, and they are fragmented anyway.)
pub const SEALED_SLEEVE_OVERHEAD: u32 = 68;
/// Smallest overlay MTU accepted: the IPv6 minimum, so the overlay can carry IPv6 too.
pub const MIN_MTU: u32 = 1280;
/// Largest overlay MTU: the largest IPv4 packet.
pub const MAX_MTU: u32 = 65535 - VXLAN_OVERHEAD;
/// Default name of the interface inside a workload.
pub const DEFAULT_IFNAME: &str = "ethwe";
/// Prefix of the host end of a workload's veth.
pub const HOST_VETH_PREFIX: &str = "vethwe";

/// What the overlay is told at launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// VXLAN network identifier.
    pub vni: u32,
    /// `--mtu` / `WEFT_MTU`: the overlay MTU, overriding the one derived from the underlay.
    pub mtu: Option<u32>,
    /// The overlay's address range.
    pub range: Ipv4Network,
    /// Whether the kernel VXLAN fast path runs. Off with a password: every frame then rides
    /// the encrypted sleeve, and no VXLAN device accepts unauthenticated frames.
    pub fastdp: bool,
}

impl OverlayConfig {
    /// Bytes the slowest path of this configuration adds to a frame on the underlay.
    pub fn overhead(&self) -> u32 {
        if self.fastdp {
            VXLAN_OVERHEAD
        } else {
            SEALED_SLEEVE_OVERHEAD
        }
    }
}

/// The overlay MTU: `given` when set, else the underlay's MTU minus `overhead` (the data
/// path's encapsulation, [`OverlayConfig::overhead`]); refused when outside
/// [`MIN_MTU`]..=[`MAX_MTU`].
pub fn overlay_mtu(underlay_mtu: u32, given: Option<u32>, overhead: u32) -> Result<u32> {
    let mtu = given.unwrap_or_else(|| underlay_mtu.saturating_sub(overhead));
    if mtu < MIN_MTU {
        return Err(OverlayError::MtuTooSmall { mtu, min: MIN_MTU });
    }
    if mtu > MAX_MTU {
        return Err(OverlayError::MtuTooLarge { mtu, max: MAX_MTU });
    }
    Ok(mtu)
}

/// Checks a VNI given on the command line.
pub fn parse_vni(s: &str) -> std::result::Result<u32, String> {
    let vni: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number from 1 to {MAX_VNI}"))?;
    if vni == 0 || vni > MAX_VNI {
        return Err(format!("VNI {vni} is outside 1..={MAX_VNI}"));
    }
    Ok(vni)
}

/// Parses the overlay range, a plain IPv4 CIDR whose host bits are zero.
pub fn parse_range(s: &str) -> std::result::Result<Ipv4Network, String> {
    let net: Ipv4Network = s
        .parse()
        .map_err(|e| format!("{s:?} is not an IPv4 CIDR like 10.32.0.0/12: {e}"))?;
    if net.network() != net.ip() {
        return Err(format!(
            "{s} has host bits set; the range starts at {}/{}",
            net.network(),
            net.prefix()
        ));
    }
    if net.prefix() > 30 {
        return Err(format!("{s} is too small for an overlay; use /30 or wider"));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_derived_from_underlay() {
        assert_eq!(overlay_mtu(1500, None, VXLAN_OVERHEAD).unwrap(), 1450);
        assert_eq!(overlay_mtu(9000, None, VXLAN_OVERHEAD).unwrap(), 8950);
        assert_eq!(
            overlay_mtu(1500, None, SEALED_SLEEVE_OVERHEAD).unwrap(),
            1432
        );
    }

    #[test]
    fn mtu_override_wins_and_is_validated() {
        assert_eq!(overlay_mtu(1500, Some(1400), VXLAN_OVERHEAD).unwrap(), 1400);
        let e = overlay_mtu(1500, Some(1000), VXLAN_OVERHEAD).unwrap_err();
        assert!(
            matches!(e, OverlayError::MtuTooSmall { mtu: 1000, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("at least 1280"), "{e}");
        let e = overlay_mtu(1300, None, VXLAN_OVERHEAD).unwrap_err();
        assert!(
            matches!(e, OverlayError::MtuTooSmall { mtu: 1250, .. }),
            "{e}"
        );
        assert!(matches!(
            overlay_mtu(1500, Some(70000), VXLAN_OVERHEAD),
            Err(OverlayError::MtuTooLarge { .. })
        ));
        assert!(matches!(
            overlay_mtu(10, None, VXLAN_OVERHEAD),
            Err(OverlayError::MtuTooSmall { mtu: 0, .. })
        ));
    }

    #[test]
    fn vni_bounds() {
        assert_eq!(parse_vni("42").unwrap(), 42);
        assert_eq!(parse_vni("16777215").unwrap(), MAX_VNI);
        for bad in ["0", "16777216", "x", "-1", ""] {
            assert!(parse_vni(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn range_must_be_a_network() {
        assert_eq!(
            parse_range(DEFAULT_RANGE).unwrap(),
            "10.32.0.0/12".parse::<Ipv4Network>().unwrap()
        );
        assert!(
            parse_range("10.32.0.1/12")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(parse_range("10.32.0.0/31").is_err());
        assert!(parse_range("nonsense").is_err());
    }
}
