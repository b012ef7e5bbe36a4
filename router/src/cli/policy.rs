//! The client side of `weft policy`, `weft label` and `weft namespace`: flags, calls to the
//! control API, and the text they print.

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;

use crate::api::Client;
use crate::api::ClientError;
use crate::api::policy::{
    ApplyRequest, ApplyResponse, DropsResponse, LabelRequest, ListResponse, NamespaceLabelRequest,
    NamespaceLabels, PolicyKey,
};
use crate::policy::model::WorkloadMeta;
use crate::policy::spec::NetworkPolicy;

/// `weft policy` verbs.
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyVerb {
    /// Validate and apply NetworkPolicy documents (YAML or JSON), on every host of the mesh.
    Apply {
        /// File with the documents; `-` reads standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// List the policies and the local workloads each selects.
    List,
    /// Print policy NAMESPACE/NAME as JSON.
    Get {
        /// NAMESPACE/NAME.
        key: String,
    },
    /// Delete policy NAMESPACE/NAME, on every host of the mesh.
    Delete {
        /// NAMESPACE/NAME.
        key: String,
    },
    /// Packets dropped by policy on this host: exact totals per policy, workload, direction,
    /// protocol and port, then the recent drops (a rate-limited sample).
    Drops,
}

/// `weft namespace` verbs.
#[derive(Debug, Clone, Subcommand)]
pub enum NamespaceVerb {
    /// Change a namespace's labels: KEY=VALUE sets, KEY- removes.
    Label {
        /// The namespace.
        namespace: String,
        /// Label changes.
        #[arg(required = true)]
        edits: Vec<String>,
    },
}

fn read_input(file: &PathBuf) -> Result<String, ClientError> {
    let io = |e: std::io::Error| ClientError::Api {
        status: hyper::StatusCode::BAD_REQUEST,
        message: format!("reading {}: {e}", file.display()),
    };
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(io)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(io)
    }
}

/// Runs a `weft policy` verb; returns what to print.
pub async fn policy_verb(client: &Client, verb: PolicyVerb) -> Result<String, ClientError> {
    Ok(match verb {
        PolicyVerb::Apply { file } => {
            let text = read_input(&file)?;
            let r: ApplyResponse = client.post("/policy/apply", &ApplyRequest { text }).await?;
            r.applied
                .iter()
                .map(|k| format!("networkpolicy {k} applied\n"))
                .collect()
        }
        PolicyVerb::List => {
            let r: ListResponse = client.get("/policy/list").await?;
            let mut out = format!("{:<40} {:<16} SELECTS (local)\n", "POLICY", "TYPES");
            for p in r.policies {
                out.push_str(&format!(
                    "{:<40} {:<16} {}\n",
                    p.key,
                    p.types.join(","),
                    p.selects.join(",")
                ));
            }
            out
        }
        PolicyVerb::Get { key } => {
            let np: NetworkPolicy = client.post("/policy/get", &PolicyKey { key }).await?;
            serde_json::to_string_pretty(&np).unwrap_or_default()
        }
        PolicyVerb::Delete { key } => {
            let _: serde_json::Value = client
                .post("/policy/delete", &PolicyKey { key: key.clone() })
                .await?;
            format!("networkpolicy {key} deleted")
        }
        PolicyVerb::Drops => {
            let r: DropsResponse = client.get("/policy/drops").await?;
            drops_text(&r)
        }
    })
}

fn drops_text(r: &DropsResponse) -> String {
    let mut out = String::from(
        "TOTALS (exact, from the nftables counters; a drop counts for each policy isolating \
         the workload; PORT - = other protocols or ports past the per-port bound)\n",
    );
    out.push_str(&format!(
        "{:<30} {:<30} {:<8} {:<6} {:>5} {:>10}\n",
        "POLICY", "WORKLOAD", "DIR", "PROTO", "PORT", "PACKETS"
    ));
    for d in &r.totals {
        out.push_str(&format!(
            "{:<30} {:<30} {:<8} {:<6} {:>5} {:>10}\n",
            d.policy,
            d.workload,
            d.direction,
            d.protocol,
            d.port.map_or_else(|| "-".to_string(), |p| p.to_string()),
            d.packets
        ));
    }
    out.push_str(&format!(
        "\nRECENT (last {}, sampled: NFLOG is rate-limited)\n",
        crate::policy::drops::RECENT_DROPS
    ));
    out.push_str(&format!(
        "{:<24} {:<8} {:<15} {:<15} {:<6} {:>5} {:<30} POLICIES\n",
        "TIME", "DIR", "SOURCE", "DESTINATION", "PROTO", "PORT", "WORKLOAD"
    ));
    for e in &r.recent {
        out.push_str(&format!(
            "{:<24} {:<8} {:<15} {:<15} {:<6} {:>5} {:<30} {}\n",
            time_text(e.time_ms),
            e.direction.name(),
            e.src,
            e.dst,
            e.protocol_name(),
            e.port.map_or_else(|| "-".to_string(), |p| p.to_string()),
            e.workload,
            e.policies.join(",")
        ));
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of a Unix time in milliseconds.
fn time_text(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Runs `weft label WORKLOAD EDITS...`.
pub async fn label(
    client: &Client,
    workload: String,
    edits: Vec<String>,
) -> Result<String, ClientError> {
    let w: WorkloadMeta = client
        .post("/label", &LabelRequest { workload, edits })
        .await?;
    Ok(format!(
        "{}/{} {}",
        w.namespace,
        w.name,
        labels_text(w.labels.iter())
    ))
}

/// Runs a `weft namespace` verb.
pub async fn namespace_verb(client: &Client, verb: NamespaceVerb) -> Result<String, ClientError> {
    match verb {
        NamespaceVerb::Label { namespace, edits } => {
            let r: NamespaceLabels = client
                .post(
                    "/namespace/label",
                    &NamespaceLabelRequest { namespace, edits },
                )
                .await?;
            Ok(format!("{} {}", r.namespace, labels_text(r.labels.iter())))
        }
    }
}

fn labels_text<'a>(labels: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    labels
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::policy::drops::{DropEvent, DropTotal};
    use crate::policy::ruleset::Direction;

    #[test]
    fn drops_text_shows_totals_and_recent_drops() {
        let r = DropsResponse {
            totals: vec![DropTotal {
                policy: "x/deny".into(),
                workload: "x/a".into(),
                direction: "ingress".into(),
                protocol: "tcp".into(),
                port: Some(80),
                packets: 3,
            }],
            recent: vec![DropEvent {
                time_ms: 1_700_000_000_123,
                src: Ipv4Addr::new(10, 32, 0, 2),
                dst: Ipv4Addr::new(10, 32, 0, 1),
                protocol: 6,
                port: Some(80),
                direction: Direction::Ingress,
                workload: "x/a".into(),
                policies: vec!["x/deny".into()],
            }],
        };
        let text = drops_text(&r);
        let total = text.lines().nth(2).unwrap();
        assert_eq!(
            total.split_whitespace().collect::<Vec<_>>(),
            ["x/deny", "x/a", "ingress", "tcp", "80", "3"]
        );
        let recent = text.lines().last().unwrap();
        assert_eq!(
            recent.split_whitespace().collect::<Vec<_>>(),
            [
                "2023-11-14T22:13:20.123Z",
                "ingress",
                "10.32.0.2",
                "10.32.0.1",
                "tcp",
                "80",
                "x/a",
                "x/deny"
            ]
        );
    }
}
