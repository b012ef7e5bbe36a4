//! Flags of flow accounting (`weft launch --flow-*`), `weft tap` and `weft top`.

use std::time::Duration;

use clap::Args;
use weft_metrics::tenant::TenantId;

/// Tenant of the router's own health metrics.
pub const SYSTEM_TENANT: &str = "weft-system";

/// Default of `--flow-max-flows`.
pub(crate) const DEFAULT_MAX_FLOWS: usize = 10_000;

/// Which tenant a flow's series are written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantFrom {
    /// The namespace of the local workload the flow is counted for.
    Namespace,
    /// One tenant for the whole overlay network, named after its range (`10.32.0.0_12`).
    Network,
    /// One fixed tenant.
    Fixed(TenantId),
}

impl TenantFrom {
    /// The tenant of a flow counted for a workload of `namespace` on the overlay `range`.
    pub fn tenant(
        &self,
        namespace: &str,
        range: ipnetwork::Ipv4Network,
    ) -> Result<TenantId, String> {
        match self {
            TenantFrom::Namespace => TenantId::new(namespace).map_err(|e| e.to_string()),
            TenantFrom::Network => {
                TenantId::new(&format!("{}_{}", range.network(), range.prefix()))
                    .map_err(|e| e.to_string())
            }
            TenantFrom::Fixed(t) => Ok(t.clone()),
        }
    }
}

/// Parses `--flow-tenant-from`.
fn parse_tenant_from(s: &str) -> Result<TenantFrom, String> {
    match s {
        "namespace" => Ok(TenantFrom::Namespace),
        "network" => Ok(TenantFrom::Network),
        _ => match s.strip_prefix("fixed:") {
            Some(name) => TenantId::new(name)
                .map(TenantFrom::Fixed)
                .map_err(|e| format!("{name:?} is not a valid tenant name: {e}")),
            None => Err(format!("{s:?}: expected namespace, network or fixed:NAME")),
        },
    }
}

/// Parses `--flow-interval`: a Prometheus duration of at least one second.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = promql_parser::util::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 15s or 1m: {e}"))?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s:?}: the interval must be at least 1s"));
    }
    Ok(d)
}

fn parse_max_flows(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?}: expected a number of flows above zero")),
    }
}

/// `weft launch` flags of flow accounting.
#[derive(Debug, Clone, Args)]
pub struct FlowArgs {
    /// How often flow counters and router health are written to the metrics store.
    #[arg(long, default_value = "15s", value_parser = parse_interval)]
    pub flow_interval: Duration,
    /// Tenant of flow series: namespace (of the local workload), network (one tenant named
    /// after the overlay range) or fixed:NAME.
    #[arg(long, default_value = "namespace", value_parser = parse_tenant_from)]
    pub flow_tenant_from: TenantFrom,
    /// Most distinct flows kept; further ones are counted in one `other` flow per namespace.
    #[arg(long, default_value_t = DEFAULT_MAX_FLOWS, value_parser = parse_max_flows)]
    pub flow_max_flows: usize,
}

/// Flags of `weft tap`.
#[derive(Debug, Clone, Args)]
pub struct TapArgs {
    /// Only flows from or to workloads of this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only flows from or to this workload (NAME or NAMESPACE/NAME).
    #[arg(long)]
    pub workload: Option<String>,
    /// Only flows to this workload (NAME or NAMESPACE/NAME).
    #[arg(long)]
    pub to: Option<String>,
}

/// Flags of `weft top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Only this tenant; every flow tenant of the router's store otherwise.
    #[arg(long, env = "WEFT_TENANT")]
    pub tenant: Option<String>,
    /// Print once and exit instead of refreshing the terminal.
    #[arg(long)]
    pub once: bool,
    /// Refresh period when not --once.
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub refresh: Duration,
    /// How many flows to show.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Launch {
        #[command(flatten)]
        flows: FlowArgs,
    }

    fn launch(args: &[&str]) -> Result<FlowArgs, String> {
        Launch::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map(|l| l.flows)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_15s_namespace_tenants() {
        let a = launch(&[]).expect("defaults");
        assert_eq!(a.flow_interval, Duration::from_secs(15));
        assert_eq!(a.flow_tenant_from, TenantFrom::Namespace);
        assert_eq!(a.flow_max_flows, DEFAULT_MAX_FLOWS);
    }

    #[test]
    fn tenant_from_picks_the_tenant() {
        let range = "10.32.0.0/12".parse().expect("range");
        let a = launch(&["--flow-tenant-from=fixed:team-a", "--flow-interval=1s"]).expect("ok");
        assert_eq!(a.flow_interval, Duration::from_secs(1));
        assert_eq!(
            a.flow_tenant_from.tenant("x", range).expect("t").as_str(),
            "team-a"
        );
        let n = launch(&["--flow-tenant-from=network"]).expect("ok");
        assert_eq!(
            n.flow_tenant_from.tenant("x", range).expect("t").as_str(),
            "10.32.0.0_12"
        );
        assert_eq!(
            TenantFrom::Namespace
                .tenant("shop", range)
                .expect("t")
                .as_str(),
            "shop"
        );
        assert!(TenantFrom::Namespace.tenant("", range).is_err());
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        for bad in [
            &["--flow-interval=0s"][..],
            &["--flow-interval=soon"],
            &["--flow-tenant-from=pod"],
            &["--flow-tenant-from=fixed:"],
            &["--flow-tenant-from=fixed:a/b"],
            &["--flow-max-flows=0"],
        ] {
            let e = launch(bad).expect_err(bad[0]);
            assert!(e.contains(bad[0].split('=').next().unwrap_or("")), "{e}");
        }
    }
}
