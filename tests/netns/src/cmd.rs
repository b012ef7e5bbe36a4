//! Running external commands (`ip`, `nft`, `weft`...) with a time limit.

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// How long a plain command may run before it is killed.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// `program arg arg...`, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion (feeding `input` on stdin), killing it after `timeout`.
/// A non-zero exit is not an error here: the caller looks at the returned status.
pub(crate) fn run(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    let command = describe(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
        command: command.clone(),
        source,
    })?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(bytes)
            .map_err(|source| HarnessError::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_with_deadline(&mut child, timeout).map_err(|source| HarnessError::Spawn {
        command: command.clone(),
        source,
    })?;
    let output = Output {
        status: status.unwrap_or_default(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    match status {
        Some(_) => Ok(output),
        None => Err(HarnessError::Timeout { command, timeout }),
    }
}

/// Like [`run`] without input and with the default time limit, but a non-zero exit is an error.
pub(crate) fn run_ok(cmd: &mut Command) -> Result<Output> {
    run_ok_with_input(cmd, None)
}

/// Like [`run_ok`], feeding `input` on stdin.
pub(crate) fn run_ok_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    let output = run(cmd, input, DEFAULT_TIMEOUT)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(HarnessError::CommandFailed {
            command: describe(cmd),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Reads a pipe to its end on a thread, so a chatty child never blocks on a full pipe.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error only truncates what the caller gets to see.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits for `child` until `timeout`; on expiry kills it (SIGKILL), reaps it and returns `None`.
pub(crate) fn wait_with_deadline(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            None,
            DEFAULT_TIMEOUT,
        )
        .expect("sh runs");
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn feeds_stdin() {
        let out = run(&mut Command::new("cat"), Some(b"hello"), DEFAULT_TIMEOUT).expect("cat runs");
        assert_eq!(out.stdout, b"hello");
    }

    #[test]
    fn kills_after_timeout() {
        let started = Instant::now();
        let err = run(
            Command::new("sleep").arg("30"),
            None,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, HarnessError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn run_ok_reports_failure_with_stderr() {
        let err = run_ok(Command::new("sh").args(["-c", "echo broken >&2; exit 1"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("broken") && text.contains("sh -c"), "{text}");
    }
}
