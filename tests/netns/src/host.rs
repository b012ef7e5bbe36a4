//! A host namespace on the underlay, and workload namespaces.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use nix::sched::{CloneFlags, setns};

use crate::cmd;
use crate::error::{HarnessError, Result};
use crate::net::{Shared, lock};
use crate::prereq;
use crate::router::{Router, RouterInner, RouterSpec};

/// `ip netns exec NS ARGS...`.
fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).args(args);
    command
}

/// Runs `f` on a scoped thread inside namespace `ns`.
fn enter_and_run<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = Path::new("/run/netns").join(ns);
    let file = File::open(&path).map_err(|source| HarnessError::Io {
        action: "opening",
        path: path.clone(),
        source,
    })?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| HarnessError::Io {
                action: "entering the namespace of",
                path,
                source: errno.into(),
            })?;
            Ok(f())
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// One host: a namespace with `eth0` on the underlay bridge.
#[derive(Debug)]
pub struct Host {
    index: usize,
    ns: String,
    addr: Ipv4Addr,
    shared: Arc<Shared>,
}

impl Host {
    pub(crate) fn new(index: usize, ns: String, addr: Ipv4Addr, shared: Arc<Shared>) -> Self {
        Host {
            index,
            ns,
            addr,
            shared,
        }
    }

    /// Its position in the net.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Short label used in logs and file names: `h<index>`.
    pub fn label(&self) -> String {
        format!("h{}", self.index)
    }

    /// Its network namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Its underlay address (`198.18.0.<index+1>`).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Runs `args` in the namespace (killed after 60 s) and returns its output, whatever its status.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        cmd::run(&mut in_ns(&self.ns, args), None, cmd::DEFAULT_TIMEOUT)
    }

    /// Whether one ICMP echo to `addr` is answered within a second.
    pub fn ping(&self, addr: Ipv4Addr) -> Result<bool> {
        Ok(self
            .exec(&["ping", "-q", "-c", "1", "-W", "1", &addr.to_string()])?
            .status
            .success())
    }

    /// Starts `args` in the namespace in the background (output discarded); the [`crate::Net`]
    /// kills it on drop. Returns its pid.
    pub fn spawn(&self, args: &[&str]) -> Result<u32> {
        let mut command = in_ns(&self.ns, args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().map_err(|source| HarnessError::Spawn {
            command: cmd::describe(&command),
            source,
        })?;
        let pid = child.id();
        lock(&self.shared.background).push(child);
        Ok(pid)
    }

    /// Runs `f` on a fresh thread that has entered this host's network namespace, so sockets it
    /// opens live there (the rest of the process is unaffected). A panic in `f` is re-raised.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        enter_and_run(&self.ns, f)
    }

    /// Runs the `weft` binary with `args` in the namespace to completion (killed after 60 s);
    /// for one-shot calls such as `weft version` or a `weft launch` expected to fail.
    pub fn weft(&self, args: &[&str]) -> Result<Output> {
        let weft = prereq::weft_binary()?;
        let mut command = in_ns(&self.ns, &[]);
        command
            .arg(weft)
            .args(args)
            .env_remove("WEFT_PASSWORD")
            .env_remove("WEAVE_PASSWORD");
        cmd::run(&mut command, None, cmd::DEFAULT_TIMEOUT)
    }

    /// Starts `weft launch --data-dir D --socket S [--nickname h<i>] ARGS` in the namespace, with
    /// its own directory in the net's scratch dir and stdout/stderr appended to its log file;
    /// returns once `weft status` answers. `--nickname` is added unless `args` has one.
    pub fn spawn_weft(&self, args: &[&str]) -> Result<Router> {
        self.spawn_weft_env(args, &[])
    }

    /// Like [`Host::spawn_weft`], with extra environment variables (e.g. `WEFT_PASSWORD`).
    pub fn spawn_weft_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Router> {
        let label = self.label();
        let dir = self
            .shared
            .dir
            .join(format!("{label}-r{}", self.shared.next_id()));
        let inner = RouterInner::prepare(RouterSpec {
            host: label,
            ns: self.ns.clone(),
            addr: self.addr,
            weft: prereq::weft_binary()?,
            dir,
            args,
            env,
        })?;
        // Registered before it starts, so the guard kills it even if it never becomes ready.
        lock(&self.shared.routers).push(Arc::clone(&inner));
        inner.start()?;
        Ok(Router::new(inner))
    }
}

/// An empty namespace standing for a container on a host; the data plane attaches it later.
#[derive(Debug, Clone)]
pub struct Workload {
    name: String,
    ns: String,
    host: usize,
}

impl Workload {
    pub(crate) fn new(name: String, ns: String, host: usize) -> Self {
        Workload { name, ns, host }
    }

    /// The name the test gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Index of the host it belongs to.
    pub fn host(&self) -> usize {
        self.host
    }

    /// Runs `args` in its namespace (killed after 60 s); any exit status is returned.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        cmd::run(&mut in_ns(&self.ns, args), None, cmd::DEFAULT_TIMEOUT)
    }

    /// Runs `f` on a thread inside its namespace, like [`Host::run_in`].
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        enter_and_run(&self.ns, f)
    }
}
