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
    /// Packets dropped by policy on this host, per workload, direction and protocol.
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
            let mut out = format!(
                "{:<30} {:<8} {:<6} {:>10} POLICIES\n",
                "WORKLOAD", "DIR", "PROTO", "PACKETS"
            );
            for d in r.drops {
                out.push_str(&format!(
                    "{:<30} {:<8} {:<6} {:>10} {}\n",
                    d.workload,
                    d.direction,
                    d.protocol,
                    d.packets,
                    d.policies.join(",")
                ));
            }
            out
        }
    })
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
