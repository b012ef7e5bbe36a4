//! The attach pipeline's policy step: an attached workload's namespace, labels and named ports
//! are recorded (and gossiped) before the attach answers, so policies selecting it are in
//! force; a detached workload is forgotten. Like the DNS step, the daemon installs its one
//! service here, so every caller of the pipeline (control API, CNI, Docker) gets the step.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::error::PolicyError;
use super::model::{NamedPort, WorkloadMeta};
use super::service::PolicyService;
use super::spec::DEFAULT_NAMESPACE;
use crate::overlay::Attachment;

static SERVICE: OnceLock<PolicyService> = OnceLock::new();

/// Makes `service` the one the attach pipeline reports workloads to (the first call wins).
pub fn install(service: PolicyService) {
    let _ = SERVICE.set(service);
}

/// Records the attached workload `a` with its namespace (`default` when none), labels and
/// named ports, and waits until the ruleset covering it is in force.
pub async fn workload_attached(
    a: &Attachment,
    namespace: Option<&str>,
    labels: &BTreeMap<String, String>,
    ports: &[NamedPort],
) -> Result<(), PolicyError> {
    let Some(policy) = SERVICE.get() else {
        return Ok(());
    };
    policy
        .workload_up(WorkloadMeta {
            address: a.address.ip(),
            name: a.name.clone(),
            namespace: namespace.unwrap_or(DEFAULT_NAMESPACE).to_string(),
            labels: labels.clone(),
            ports: ports.to_vec(),
            host: String::new(),
        })
        .await
}

/// Forgets the detached workloads `gone`.
pub async fn workloads_detached(gone: &[Attachment]) -> Result<(), PolicyError> {
    let Some(policy) = SERVICE.get() else {
        return Ok(());
    };
    for a in gone {
        policy.workload_down(a.address.ip()).await?;
    }
    Ok(())
}
