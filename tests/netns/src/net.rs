//! The [`Net`] guard: an underlay bridge and N hosts, each in its own network namespace.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::cmd;
use crate::error::{HarnessError, Result};
use crate::host::{Host, Workload};
use crate::links;
use crate::names;
use crate::prereq;
use crate::router::Router;
use crate::router::RouterInner;
use crate::wait::{poll_until, tail};

/// Hosts get `198.18.0.1` .. `198.18.0.250` on the underlay /24.
pub(crate) const MAX_HOSTS: usize = 250;
/// Name of the bridge in the underlay namespace.
const BRIDGE: &str = "br0";
/// Log lines of each router quoted when a wait times out.
const TAIL_LINES: usize = 30;

/// Locks `mutex`, also after a panic elsewhere poisoned it (cleanup must still run).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What hosts, routers and the guard share: names, the scratch directory and everything to clean up.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Prefix of every namespace of this net.
    pub(crate) prefix: String,
    /// The underlay namespace.
    pub(crate) underlay: String,
    /// Scratch directory for routers' data dirs, sockets and logs.
    pub(crate) dir: PathBuf,
    /// Namespaces made, in creation order.
    pub(crate) namespaces: Mutex<Vec<String>>,
    /// Routers started.
    pub(crate) routers: Mutex<Vec<Arc<RouterInner>>>,
    /// Other background processes started.
    pub(crate) background: Mutex<Vec<Child>>,
    /// Counter for router directories and workload names.
    pub(crate) counter: AtomicUsize,
}

impl Shared {
    /// `ip netns add NAME` with `lo` up; registered for deletion before anything else can fail.
    pub(crate) fn add_namespace(&self, name: &str) -> Result<()> {
        cmd::run_ok(Command::new("ip").args(["netns", "add", name]))?;
        lock(&self.namespaces).push(name.to_owned());
        cmd::run_ok(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]))?;
        Ok(())
    }

    /// A number not handed out before in this net.
    pub(crate) fn next_id(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }
}

/// A test network: one underlay namespace with bridge `br0`, and hosts, each a namespace whose
/// `eth0` is plugged into that bridge with address `198.18.0.<i+1>/24`. Nothing is created in the
/// root namespace. Dropping it (also while unwinding from a panic) SIGKILLs every process it
/// started and deletes every namespace it made; after a panic the scratch directory with the
/// routers' logs is kept and its path printed.
#[derive(Debug)]
pub struct Net {
    pub(crate) shared: Arc<Shared>,
    hosts: Vec<Host>,
    scratch: Option<tempfile::TempDir>,
}

impl Net {
    /// Builds the underlay and `n_hosts` hosts. Fails with a clear message when not root or when
    /// `ip`, `nft` or `ping` is missing. Also removes namespaces left by killed test processes.
    pub fn new(n_hosts: usize) -> Result<Net> {
        if n_hosts > MAX_HOSTS {
            return Err(HarnessError::TooManyHosts {
                asked: n_hosts,
                max: MAX_HOSTS,
            });
        }
        prereq::check()?;
        names::remove_stale();
        let prefix = names::fresh_prefix();
        let scratch = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .map_err(|source| HarnessError::Io {
                action: "creating",
                path: std::env::temp_dir(),
                source,
            })?;
        let shared = Arc::new(Shared {
            underlay: format!("{prefix}-u"),
            prefix,
            dir: scratch.path().to_path_buf(),
            namespaces: Mutex::new(Vec::new()),
            routers: Mutex::new(Vec::new()),
            background: Mutex::new(Vec::new()),
            counter: AtomicUsize::new(0),
        });
        // From here on, an early return drops `net`, which removes whatever was made.
        let mut net = Net {
            shared,
            hosts: Vec::new(),
            scratch: Some(scratch),
        };
        net.build_underlay()?;
        for index in 0..n_hosts {
            let host = net.build_host(index)?;
            net.hosts.push(host);
        }
        Ok(net)
    }

    fn build_underlay(&self) -> Result<()> {
        let u = &self.shared.underlay;
        self.shared.add_namespace(u)?;
        cmd::run_ok(Command::new("ip").args(["-n", u, "link", "add", BRIDGE, "type", "bridge"]))?;
        cmd::run_ok(Command::new("ip").args(["-n", u, "link", "set", BRIDGE, "up"]))?;
        cmd::run_ok_with_input(
            Command::new("ip").args(["netns", "exec", u, "nft", "-f", "-"]),
            Some(links::ruleset().as_bytes()),
        )?;
        Ok(())
    }

    fn build_host(&self, index: usize) -> Result<Host> {
        let ns = format!("{}-h{index}", self.shared.prefix);
        let port = links::port_name(index);
        let u = &self.shared.underlay;
        self.shared.add_namespace(&ns)?;
        let addr = host_addr(index);
        // The veth is born inside the host namespace with its peer inside the underlay.
        cmd::run_ok(Command::new("ip").args([
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", u,
        ]))?;
        cmd::run_ok(
            Command::new("ip").args(["-n", u, "link", "set", &port, "master", BRIDGE, "up"]),
        )?;
        cmd::run_ok(Command::new("ip").args([
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]))?;
        cmd::run_ok(Command::new("ip").args(["-n", &ns, "link", "set", "eth0", "up"]))?;
        Ok(Host::new(index, ns, addr, Arc::clone(&self.shared)))
    }

    /// Host `i` (0-based). Panics if there is no such host.
    #[track_caller]
    pub fn host(&self, i: usize) -> &Host {
        match self.hosts.get(i) {
            Some(host) => host,
            None => panic!("no host {i}: this net has {} hosts", self.hosts.len()),
        }
    }

    /// All hosts, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Creates an empty workload namespace (`lo` up) belonging to host `host`; attaching it to
    /// the overlay is the router's job.
    pub fn add_workload(&self, host: usize, name: &str) -> Result<Workload> {
        let host = self.host(host);
        let ns = format!("{}-w{}", self.shared.prefix, self.shared.next_id());
        self.shared.add_namespace(&ns)?;
        Ok(Workload::new(name.to_owned(), ns, host.index()))
    }

    /// Every namespace this net made so far (underlay, hosts, workloads).
    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.shared.namespaces).clone()
    }

    /// The scratch directory holding routers' data dirs, sockets and logs.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The underlay namespace (holds bridge `br0` and the link rules).
    pub fn underlay(&self) -> &str {
        &self.shared.underlay
    }

    /// Starts a router on host `i` with `extra` flags, dialling the hosts `peers`; panics when
    /// it does not come up.
    #[track_caller]
    pub fn launch(&self, i: usize, peers: &[usize], extra: &[&str]) -> Router {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend(peers.iter().map(|&p| self.host(p).addr().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.host(i)
            .spawn_weft(&args)
            .unwrap_or_else(|e| panic!("launching weft on h{i}: {e}"))
    }

    /// Calls `cond` every 200 ms until it returns true; after `timeout`, panics naming `what`
    /// and quoting the end of every router's log.
    #[track_caller]
    pub fn wait_until(&self, timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
        if !poll_until(timeout, cond) {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.log_tails()
            );
        }
    }

    /// The last lines of every router's log, each under a header naming host and file.
    pub fn log_tails(&self) -> String {
        let routers = lock(&self.shared.routers).clone();
        let mut text = String::new();
        for router in routers {
            let log = router.read_log().unwrap_or_else(|e| e.to_string());
            text.push_str(&format!(
                "----- router on {} -----\n{}\n",
                router.host,
                tail(&log, TAIL_LINES)
            ));
        }
        text
    }
}

/// Underlay address of host `index`.
pub(crate) fn host_addr(index: usize) -> Ipv4Addr {
    let last = u8::try_from(index + 1).unwrap_or(u8::MAX);
    Ipv4Addr::new(198, 18, 0, last)
}

impl Drop for Net {
    fn drop(&mut self) {
        for router in lock(&self.shared.routers).iter() {
            if let Err(e) = router.kill() {
                eprintln!("weft-netns: {e}");
            }
        }
        for mut child in lock(&self.shared.background).drain(..) {
            // Already-exited children make kill fail harmlessly; wait reaps either way.
            let _ = child.kill();
            let _ = child.wait();
        }
        let namespaces: Vec<String> = lock(&self.shared.namespaces).drain(..).collect();
        for ns in namespaces.iter().rev() {
            names::kill_inside(ns);
            if let Err(e) = cmd::run_ok(Command::new("ip").args(["netns", "delete", ns])) {
                eprintln!("weft-netns: could not delete namespace {ns}: {e}");
            }
        }
        if let Some(scratch) = self.scratch.take()
            && std::thread::panicking()
        {
            eprintln!(
                "weft-netns: test failed; routers' data dirs and logs kept in {}",
                scratch.keep().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses() {
        assert_eq!(host_addr(0), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(host_addr(MAX_HOSTS - 1), Ipv4Addr::new(198, 18, 0, 250));
    }
}
