//! The harness's one error type.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while building namespaces, running commands or talking to routers.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// The tests need root to create network namespaces.
    #[error(
        "the namespace tests need root (they create network namespaces); run them as root \
         (CI does), e.g. `sudo -E cargo test -p weft-netns-tests`"
    )]
    NotRoot,
    /// A tool the harness runs is not installed.
    #[error("`{tool}` is not on PATH; install it (Debian: `apt-get install {package}`)")]
    MissingTool {
        /// The program looked for.
        tool: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// The `weft` binary has not been built.
    #[error(
        "weft binary not found at {}: run `cargo build -p weft-router` first (or set WEFT_BIN)",
        path.display()
    )]
    MissingWeft {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// More hosts were asked for than the underlay /24 holds.
    #[error("a net holds at most {max} hosts, {asked} were asked for")]
    TooManyHosts {
        /// How many were asked for.
        asked: usize,
        /// The limit.
        max: usize,
    },
    /// A command could not be started.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command that had to succeed failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A command ran for too long and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The time it was given.
        timeout: Duration,
    },
    /// A file or directory operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A router exited before its control socket answered.
    #[error("router on {host} exited ({status}) before it was ready; log tail:\n{log}")]
    RouterExited {
        /// Host label, e.g. `h0`.
        host: String,
        /// Its exit status.
        status: ExitStatus,
        /// Last lines of its log.
        log: String,
    },
    /// A router's control socket did not answer in time.
    #[error("router on {host} did not answer `weft status` within {timeout:?}; log tail:\n{log}")]
    RouterNotReady {
        /// Host label.
        host: String,
        /// The time it was given.
        timeout: Duration,
        /// Last lines of its log.
        log: String,
    },
    /// `restart` was called on a router whose process still runs.
    #[error("router on {host} is still running: kill9() or stop it before restart()")]
    StillRunning {
        /// Host label.
        host: String,
    },
    /// `weft report` failed or did not print JSON.
    #[error("`weft report` on {host} gave no JSON ({reason}); stdout: {stdout}")]
    BadReport {
        /// Host label.
        host: String,
        /// Why it was refused.
        reason: String,
        /// What it printed.
        stdout: String,
    },
}

/// `Debug` shows the message, so a test returning `Err` prints something readable.
impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Shorthand for the harness's results.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
