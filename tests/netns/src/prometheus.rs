//! Debian's Prometheus (2.42) running in a host namespace, with its own config and TSDB in a
//! scratch directory: started, stopped (SIGTERM, as an operator would) and started again on
//! the same TSDB, and asked PromQL queries from inside the namespace.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::cmd;
use crate::error::{HarnessError, Result};
use crate::host::Host;
use crate::http::{http, url_encode};
use crate::net::lock;
use crate::wait::poll_until;

/// How long Prometheus may take to become ready or to stop.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A Prometheus server in one host's namespace; killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    ns: String,
    port: u16,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Fails with [`HarnessError::MissingTool`] unless `prometheus --version` runs; tests that
    /// need Prometheus call it first, before they build anything.
    pub fn check_installed() -> Result<()> {
        let runs = Command::new("prometheus")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if runs {
            Ok(())
        } else {
            Err(HarnessError::MissingTool {
                tool: "prometheus",
                package: "prometheus",
            })
        }
    }

    /// Starts `prometheus` in `host` listening on `0.0.0.0:port` with the configuration file
    /// text `config` and the extra flags `extra` (e.g. `--web.enable-remote-write-receiver`);
    /// returns once `/-/ready` answers.
    pub fn start(host: &Host, port: u16, config: &str, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|source| HarnessError::Io {
            action: "creating a scratch dir for",
            path: PathBuf::from("prometheus"),
            source,
        })?;
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).map_err(|source| HarnessError::Io {
            action: "writing",
            path: config_path.clone(),
            source,
        })?;
        let mut args = vec![
            "prometheus".to_owned(),
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address=0.0.0.0:{port}"),
            "--log.level=error".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let p = Prometheus {
            ns: host.ns().to_owned(),
            port,
            args,
            child: Mutex::new(None),
            _dir: dir,
        };
        p.launch(host)?;
        Ok(p)
    }

    /// Its API as seen from inside its host.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops it with SIGTERM (a clean shutdown that keeps its TSDB) and reaps it.
    pub fn stop(&self) -> Result<()> {
        let Some(mut child) = lock(&self.child).take() else {
            return Ok(());
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = cmd::wait_with_deadline(&mut child, READY_TIMEOUT);
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Starts it again on the same TSDB after [`Prometheus::stop`].
    pub fn restart(&self, host: &Host) -> Result<()> {
        self.stop()?;
        self.launch(host)
    }

    /// The `data` of an instant query of `expr` (None when Prometheus does not answer or
    /// answers an error).
    pub fn query(&self, host: &Host, expr: &str) -> Option<Value> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (status, body) = get(host, self.addr(), &path)?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["status"] == "success").then(|| v["data"].clone())
    }

    fn launch(&self, host: &Host) -> Result<()> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().map_err(|source| HarnessError::Spawn {
            command: cmd::describe(&command),
            source,
        })?;
        *lock(&self.child) = Some(child);
        let ready = poll_until(READY_TIMEOUT, || {
            get(host, self.addr(), "/-/ready").is_some_and(|(s, _)| s == 200)
        });
        if ready {
            Ok(())
        } else {
            Err(HarnessError::Timeout {
                command: cmd::describe(&command),
                timeout: READY_TIMEOUT,
            })
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Status and body of `GET path` to `addr` from inside `host`, None when nothing answers.
fn get(host: &Host, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let answer = http(host, addr, "GET", path, &[], &[]).ok()?.ok()?;
    Some((answer.status, answer.body))
}
