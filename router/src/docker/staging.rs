//! The network namespace a Docker endpoint's veth is made in before dockerd takes it.
//!
//! dockerd joins an endpoint before the container's namespace exists, then moves the interface
//! `Join` named from its own namespace into the container. So `Join` attaches (through the
//! shared pipeline) into a private, unnamed staging namespace, then moves the inner end back to
//! the router's namespace for dockerd to take. The staging namespace stays alive as long as its
//! [`Staging`] (an open nsfs file) so that the attachment can be detached by it later.

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::sched::CloneFlags;
use rtnetlink::LinkUnspec;

use super::DockerError;

/// A private network namespace held open by this process.
#[derive(Debug)]
pub struct Staging {
    ns: File,
}

fn internal(what: &str) -> impl Fn(String) -> DockerError + '_ {
    move |e| DockerError::Internal(format!("{what}: {e}"))
}

impl Staging {
    /// Makes a new, empty network namespace (on a short-lived thread, so the daemon's own
    /// threads stay where they are).
    pub fn new() -> Result<Staging, DockerError> {
        let ns = std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| DockerError::Internal("the staging thread panicked".into()))?
        .map_err(internal("making a staging network namespace"))?;
        Ok(Staging { ns })
    }

    /// A path to the namespace that this process can open while it holds it.
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.ns.as_raw_fd())
    }

    /// Moves interface `ifname` from the staging namespace to the daemon's.
    pub fn move_to_daemon(&self, ifname: &str) -> Result<(), DockerError> {
        let home = File::open("/proc/self/ns/net")
            .map_err(|e| internal("opening the daemon's namespace")(e.to_string()))?;
        let staging = self
            .ns
            .try_clone()
            .map_err(|e| internal("staging")(e.to_string()))?;
        let ifname = ifname.to_string();
        std::thread::spawn(move || {
            nix::sched::setns(&staging, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                let msg = LinkUnspec::new_with_name(&ifname)
                    .setns_by_fd(home.as_raw_fd())
                    .build();
                handle
                    .link()
                    .set(msg)
                    .execute()
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join()
        .map_err(|_| DockerError::Internal("the staging thread panicked".into()))?
        .map_err(internal(
            "moving the endpoint's interface to dockerd's namespace",
        ))
    }
}
