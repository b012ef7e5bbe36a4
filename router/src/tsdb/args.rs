//! Flags of the metrics store: `weft launch --metrics-*` and `weft query`.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};
use weft_metrics::tenant::{Limits, TenantId};

use super::export::{HeaderPair, RemoteWriteUrl};

/// Default address of the Prometheus API: TCP 6782 on every interface, as Weave's metrics
/// endpoint, so that Prometheus servers on other hosts can `remote_write` to it.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:6782";

/// Where `weft query` finds the API of the local router by default.
pub const DEFAULT_QUERY_ADDR: &str = "127.0.0.1:6782";

/// Whether requests must name their tenant with `X-Scope-OrgID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tenancy {
    /// `X-Scope-OrgID` is required (401 without it).
    On,
    /// Requests without `X-Scope-OrgID` use the tenant `anonymous`.
    Off,
}

/// `weft launch` flags of the metrics store (Prometheus API, retention, per-tenant limits).
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Address of the Prometheus-compatible API (remote_write, PromQL, /metrics).
    #[arg(long, env = "WEFT_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,
    /// How long samples are kept, as a Prometheus duration (15d, 12h, 1w).
    #[arg(long, default_value = "15d", value_parser = parse_retention)]
    pub metrics_retention: RetentionMs,
    /// on: every request names its tenant in X-Scope-OrgID; off: tenant `anonymous` by default.
    #[arg(long, value_enum, default_value_t = Tenancy::On)]
    pub metrics_tenancy: Tenancy,
    /// Per-tenant sustained ingestion rate, in samples per second.
    #[arg(long, default_value_t = Limits::default().ingestion_rate)]
    pub metrics_ingestion_rate: f64,
    /// Per-tenant burst above the ingestion rate, in samples.
    #[arg(long, default_value_t = Limits::default().ingestion_burst)]
    pub metrics_ingestion_burst: f64,
    /// Per-tenant limit of active series in memory.
    #[arg(long, default_value_t = Limits::default().max_series)]
    pub metrics_max_series: usize,
    /// Most labels a series may have.
    #[arg(long, default_value_t = Limits::default().max_label_names)]
    pub metrics_max_label_names: usize,
    /// Longest label name, in bytes.
    #[arg(long, default_value_t = Limits::default().max_label_name_len)]
    pub metrics_max_label_name_length: usize,
    /// Longest label value, in bytes.
    #[arg(long, default_value_t = Limits::default().max_label_value_len)]
    pub metrics_max_label_value_length: usize,
    /// Copies of each series on the metrics ring (fewer when the mesh has fewer routers); writes
    /// are acknowledged by a majority of them.
    #[arg(long, default_value_t = weft_metrics::ring::REPLICATION_FACTOR, value_parser = parse_replication)]
    pub metrics_replication: usize,
    /// Export settings (`--metrics-remote-write*`).
    #[command(flatten)]
    pub export: ExportArgs,
}

impl MetricsArgs {
    /// The per-tenant limits these flags describe.
    pub fn limits(&self) -> Limits {
        Limits {
            ingestion_rate: self.metrics_ingestion_rate,
            ingestion_burst: self.metrics_ingestion_burst,
            max_series: self.metrics_max_series,
            max_label_names: self.metrics_max_label_names,
            max_label_name_len: self.metrics_max_label_name_length,
            max_label_value_len: self.metrics_max_label_value_length,
        }
    }
}

/// `weft launch` flags of the export to external Prometheus-compatible stores.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Forward every sample this router accepts to this remote_write 1.0 URL (Prometheus
    /// receiver, Mimir, Thanos receive, VictoriaMetrics), with X-Scope-OrgID set to the
    /// sample's tenant; repeat for several destinations. Plain http:// only.
    #[arg(long = "metrics-remote-write", value_name = "URL", value_parser = RemoteWriteUrl::parse)]
    pub urls: Vec<RemoteWriteUrl>,
    /// Extra header sent to every destination, as NAME=VALUE (e.g. Authorization=Bearer x);
    /// repeatable.
    #[arg(long = "metrics-remote-write-header", value_name = "NAME=VALUE", value_parser = HeaderPair::parse)]
    pub headers: Vec<HeaderPair>,
    /// Forward only the samples of this tenant; repeatable; all tenants when absent.
    #[arg(long = "metrics-remote-write-tenant", value_name = "TENANT", value_parser = parse_tenant)]
    pub tenants: Vec<TenantId>,
    /// Most samples in one remote_write request.
    #[arg(long = "metrics-remote-write-batch", value_name = "SAMPLES", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_samples: u32,
    /// Most bytes queued on disk per destination; the oldest queued samples are dropped (and
    /// counted) beyond it.
    #[arg(long = "metrics-remote-write-queue-bytes", value_name = "BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub queue_bytes: u64,
}

/// Parses `--metrics-remote-write-tenant`.
fn parse_tenant(s: &str) -> Result<TenantId, String> {
    TenantId::new(s).map_err(|e| format!("{s:?} is not a tenant name: {e}"))
}

/// Parses `--metrics-replication`: 1 to 16 copies.
fn parse_replication(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=16) => Ok(n),
        _ => Err(format!(
            "{s:?}: the replication factor is a number from 1 to 16"
        )),
    }
}

/// A retention period in milliseconds (a newtype so clap keeps the parsed value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionMs(pub i64);

/// Parses `--metrics-retention`: a positive Prometheus duration.
fn parse_retention(s: &str) -> Result<RetentionMs, String> {
    let d = promql_parser::util::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 15d, 12h or 1w: {e}"))?;
    let ms = i64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))?;
    if ms <= 0 {
        return Err(format!("{s:?}: the retention must be longer than zero"));
    }
    Ok(RetentionMs(ms))
}

/// Flags of `weft query EXPR`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The PromQL expression.
    pub expr: String,
    /// Tenant of the query (header X-Scope-OrgID); required unless the router runs with
    /// --metrics-tenancy=off.
    #[arg(long, env = "WEFT_TENANT")]
    pub tenant: Option<String>,
    /// Evaluation time of an instant query (unix seconds or RFC 3339); now when absent.
    #[arg(long, conflicts_with = "range")]
    pub time: Option<String>,
    /// A range query: start and end (unix seconds or RFC 3339) and step (30s, 1m or seconds).
    #[arg(long, num_args = 3, value_names = ["START", "END", "STEP"])]
    pub range: Option<Vec<String>>,
    /// Address of the router's Prometheus API.
    #[arg(long, env = "WEFT_METRICS_ADDR", default_value = DEFAULT_QUERY_ADDR)]
    pub metrics_addr: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Launch {
        #[command(flatten)]
        metrics: MetricsArgs,
    }

    #[derive(Debug, Parser)]
    struct Query {
        #[command(flatten)]
        query: QueryArgs,
    }

    #[test]
    fn launch_defaults_are_port_6782_15_days_tenancy_on() {
        let a = Launch::try_parse_from(["x"])
            .expect("defaults parse")
            .metrics;
        assert_eq!(a.metrics_addr, DEFAULT_METRICS_ADDR.parse().expect("addr"));
        assert_eq!(a.metrics_retention, RetentionMs(15 * 24 * 3600 * 1000));
        assert_eq!(a.metrics_tenancy, Tenancy::On);
        assert_eq!(a.limits().max_series, Limits::default().max_series);
    }

    #[test]
    fn launch_flags_set_retention_tenancy_and_limits() {
        let a = Launch::try_parse_from([
            "x",
            "--metrics-retention=1h30m",
            "--metrics-tenancy=off",
            "--metrics-max-series=7",
            "--metrics-ingestion-rate=10",
        ])
        .expect("parse")
        .metrics;
        assert_eq!(a.metrics_retention, RetentionMs(90 * 60 * 1000));
        assert_eq!(a.metrics_tenancy, Tenancy::Off);
        assert_eq!(a.limits().max_series, 7);
        assert_eq!(a.limits().ingestion_rate, 10.0);
    }

    #[test]
    fn bad_retention_is_refused_with_a_message() {
        for bad in ["0s", "fortnight", "-1d", ""] {
            let e = Launch::try_parse_from(["x", &format!("--metrics-retention={bad}")])
                .expect_err(bad)
                .to_string();
            assert!(e.contains("metrics-retention"), "{bad}: {e}");
        }
    }

    #[test]
    fn remote_write_flags_repeat_and_bad_values_are_refused() {
        let a = Launch::try_parse_from([
            "x",
            "--metrics-remote-write=http://a:9090/api/v1/write",
            "--metrics-remote-write",
            "http://b/push",
            "--metrics-remote-write-header=Authorization=Bearer t",
            "--metrics-remote-write-tenant=team-a",
            "--metrics-remote-write-batch=50",
        ])
        .expect("parse")
        .metrics
        .export;
        let urls: Vec<String> = a.urls.iter().map(ToString::to_string).collect();
        assert_eq!(urls, ["http://a:9090/api/v1/write", "http://b/push"]);
        assert_eq!(a.headers[0].value, "Bearer t");
        assert_eq!(a.tenants, [TenantId::new("team-a").expect("tenant")]);
        assert_eq!(a.batch_samples, 50);
        let none = Launch::try_parse_from(["x"]).expect("parse").metrics.export;
        assert!(none.urls.is_empty() && none.tenants.is_empty());
        for bad in [
            "--metrics-remote-write=https://a/w",
            "--metrics-remote-write=a:9090",
            "--metrics-remote-write-header=nope",
            "--metrics-remote-write-tenant=a/b",
            "--metrics-remote-write-batch=0",
        ] {
            let e = Launch::try_parse_from(["x", bad]).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("metrics-remote-write"), "{bad}: {e}");
        }
    }

    #[test]
    fn query_takes_a_range_of_three_values_and_not_with_time() {
        let q = Query::try_parse_from(["x", "up", "--range", "1", "2", "15s"])
            .expect("parse")
            .query;
        assert_eq!(q.range, Some(vec!["1".into(), "2".into(), "15s".into()]));
        assert!(Query::try_parse_from(["x", "up", "--range", "1", "2"]).is_err());
        assert!(
            Query::try_parse_from(["x", "up", "--range", "1", "2", "3", "--time", "4"]).is_err()
        );
    }
}
