//! A real `weft` daemon running in a host namespace.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cmd;
use crate::error::{HarnessError, Result};
use crate::net::lock;
use crate::report::Report;
use crate::wait::{poll_until, tail};

/// How long a freshly started router may take to answer `weft status`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines quoted in errors.
const TAIL_LINES: usize = 40;
/// Environment variables of the test process that would change a router's behaviour.
pub(crate) const SCRUBBED_ENV: [&str; 6] = [
    "WEFT_PASSWORD",
    "WEAVE_PASSWORD",
    "WEFT_SOCKET",
    "WEFT_DATA_DIR",
    "WEFT_LOG",
    "RUST_LOG",
];

/// Everything needed to (re)start one router; shared with the [`crate::Net`] that kills it on drop.
#[derive(Debug)]
pub(crate) struct RouterInner {
    /// Host label, e.g. `h0`.
    pub(crate) host: String,
    ns: String,
    addr: Ipv4Addr,
    weft: PathBuf,
    socket: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Arguments after the binary: `launch --data-dir .. --socket .. ARGS`.
    launch: Vec<OsString>,
    env: Vec<(String, String)>,
    child: Mutex<Option<Child>>,
}

/// Where a new router's files go and how it is launched.
pub(crate) struct RouterSpec<'a> {
    pub(crate) host: String,
    pub(crate) ns: String,
    pub(crate) addr: Ipv4Addr,
    pub(crate) weft: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) args: &'a [&'a str],
    pub(crate) env: &'a [(&'a str, &'a str)],
}

impl RouterInner {
    /// Lays out the router's directory and its launch command; [`Self::start`] runs it.
    pub(crate) fn prepare(spec: RouterSpec<'_>) -> Result<Arc<RouterInner>> {
        fs::create_dir_all(&spec.dir).map_err(|source| HarnessError::Io {
            action: "creating",
            path: spec.dir.clone(),
            source,
        })?;
        let data_dir = spec.dir.join("data");
        let socket = spec.dir.join("weft.sock");
        let mut launch: Vec<OsString> = vec![
            "launch".into(),
            "--data-dir".into(),
            data_dir.clone().into(),
            "--socket".into(),
            socket.clone().into(),
        ];
        if !spec
            .args
            .iter()
            .any(|a| *a == "--nickname" || a.starts_with("--nickname="))
        {
            launch.extend(["--nickname".into(), spec.host.clone().into()]);
        }
        launch.extend(spec.args.iter().map(OsString::from));
        Ok(Arc::new(RouterInner {
            host: spec.host,
            ns: spec.ns,
            addr: spec.addr,
            weft: spec.weft,
            socket,
            data_dir,
            log_path: spec.dir.join("weft.log"),
            launch,
            env: spec
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: Mutex::new(None),
        }))
    }

    /// Starts the process (appending to the log) and waits until it answers.
    pub(crate) fn start(&self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|source| self.io("opening", &self.log_path, source))?;
        let log_err = log
            .try_clone()
            .map_err(|source| self.io("duplicating", &self.log_path, source))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns])
            .arg(&self.weft)
            .args(&self.launch)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for key in SCRUBBED_ENV {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().map_err(|source| HarnessError::Spawn {
            command: cmd::describe(&command),
            source,
        })?;
        *lock(&self.child) = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<()> {
        let mut exited = None;
        let ready = poll_until(READY_TIMEOUT, || {
            if let Some(status) = self.try_exit_status() {
                exited = Some(status);
                return true;
            }
            self.cli(&["status"]).is_ok_and(|out| out.status.success())
        });
        let log = tail(&self.read_log().unwrap_or_default(), TAIL_LINES);
        match exited {
            Some(status) => Err(HarnessError::RouterExited {
                host: self.host.clone(),
                status,
                log,
            }),
            None if ready => Ok(()),
            None => Err(HarnessError::RouterNotReady {
                host: self.host.clone(),
                timeout: READY_TIMEOUT,
                log,
            }),
        }
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs or if never started.
    fn try_exit_status(&self) -> Option<ExitStatus> {
        let mut child = lock(&self.child);
        let status = child.as_mut()?.try_wait().ok()??;
        Some(status)
    }

    pub(crate) fn cli(&self, args: &[&str]) -> Result<Output> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns])
            .arg(&self.weft)
            .arg("--socket")
            .arg(&self.socket)
            .args(args);
        for key in SCRUBBED_ENV {
            command.env_remove(key);
        }
        cmd::run(&mut command, None, CLI_TIMEOUT)
    }

    pub(crate) fn read_log(&self) -> Result<String> {
        let bytes = fs::read(&self.log_path)
            .map_err(|source| self.io("reading", &self.log_path, source))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// SIGKILLs the process if it runs, and reaps it.
    pub(crate) fn kill(&self) -> Result<()> {
        if let Some(mut child) = lock(&self.child).take() {
            if child
                .try_wait()
                .map_err(|source| self.io("checking", &self.log_path, source))?
                .is_none()
            {
                child
                    .kill()
                    .map_err(|source| self.io("killing the router of", &self.log_path, source))?;
            }
            child
                .wait()
                .map_err(|source| self.io("reaping the router of", &self.log_path, source))?;
        }
        Ok(())
    }

    fn io(&self, action: &'static str, path: &Path, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Handle on one `weft launch` process in a host namespace. The [`crate::Net`] it came from kills
/// it when dropped; the handle itself may outlive that.
#[derive(Debug, Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

impl Router {
    pub(crate) fn new(inner: Arc<RouterInner>) -> Self {
        Router { inner }
    }

    /// Label of the host it runs on, e.g. `h0`.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Underlay address of its host.
    pub fn addr(&self) -> Ipv4Addr {
        self.inner.addr
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.inner.socket
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Its log file (stdout and stderr of every start, appended).
    pub fn log_path(&self) -> &Path {
        &self.inner.log_path
    }

    /// Runs `weft --socket SOCKET ARGS` in the host namespace (at most 30 s); any exit status is returned.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        self.inner.cli(args)
    }

    /// Runs a CLI verb that must succeed and returns its stdout; panics with both outputs
    /// otherwise.
    #[track_caller]
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self
            .cli(args)
            .unwrap_or_else(|e| panic!("weft {args:?} on {}: {e}", self.host()));
        assert!(
            out.status.success(),
            "weft {args:?} on {} failed: {}",
            self.host(),
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a CLI verb that must fail with exit status 1 (the daemon refused it) and returns
    /// its stderr; panics otherwise.
    #[track_caller]
    pub fn cli_err(&self, args: &[&str]) -> String {
        let out = self
            .cli(args)
            .unwrap_or_else(|e| panic!("weft {args:?} on {}: {e}", self.host()));
        assert_eq!(
            out.status.code(),
            Some(1),
            "weft {args:?} on {} should fail: {}",
            self.host(),
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `weft report`, parsed. Fails if the command fails or does not print JSON.
    pub fn report(&self) -> Result<Report> {
        let out = self.cli(&["report"])?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let bad = |reason: String| HarnessError::BadReport {
            host: self.inner.host.clone(),
            reason,
            stdout: stdout.clone(),
        };
        if !out.status.success() {
            return Err(bad(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map(Report::new)
            .map_err(|e| bad(e.to_string()))
    }

    /// Everything the router has logged so far (all starts).
    pub fn log(&self) -> Result<String> {
        self.inner.read_log()
    }

    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        let mut child = lock(&self.inner.child);
        let child = child.as_mut()?;
        match child.try_wait() {
            Ok(None) => Some(child.id()),
            _ => None,
        }
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it still runs.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        poll_until(timeout, || {
            status = self.inner.try_exit_status();
            status.is_some() || lock(&self.inner.child).is_none()
        });
        status
    }

    /// `kill -9` the router and reap it.
    pub fn kill9(&self) -> Result<()> {
        self.inner.kill()
    }

    /// Starts the router again with the same data dir, socket and arguments, after it was killed
    /// or stopped; returns once it answers `weft status`.
    pub fn restart(&self) -> Result<()> {
        if self.is_running() {
            return Err(HarnessError::StillRunning {
                host: self.inner.host.clone(),
            });
        }
        let path = &self.inner.log_path;
        let mut log = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| self.inner.io("opening", path, source))?;
        writeln!(log, "=== weft-netns: restarting the router ===")
            .map_err(|source| self.inner.io("writing", path, source))?;
        self.inner.start()
    }
}

/// A command's stdout followed by its stderr, for failure messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether every router has an established connection to every other router's host.
pub fn full_mesh(routers: &[Router]) -> bool {
    routers.iter().all(|me| {
        me.report().is_ok_and(|r| {
            routers
                .iter()
                .filter(|o| o.addr() != me.addr())
                .all(|o| r.connected_to(&o.addr().to_string()))
        })
    })
}
