//! Unique, short namespace names, and removal of what a killed test process left behind.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cmd;

/// Every namespace the harness makes starts with this.
const PREFIX: &str = "wft";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A prefix no other `Net` of any process uses: `wft<pid>x<counter>`.
pub(crate) fn fresh_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{}x{n}", std::process::id())
}

/// The pid encoded in a harness namespace name, if `name` is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, tail) = rest.split_once('x')?;
    let (counter, _) = tail.split_once('-')?;
    if counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Namespace names in `ip netns list` output (which may append ` (id: N)`).
pub(crate) fn parse_netns_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every network namespace that exists now.
pub fn list_netns() -> crate::Result<Vec<String>> {
    let out = cmd::run_ok(Command::new("ip").args(["netns", "list"]))?;
    Ok(parse_netns_list(&String::from_utf8_lossy(&out.stdout)))
}

/// Deletes harness namespaces whose creating process no longer runs (a test killed with SIGKILL
/// cannot clean up), killing whatever still runs inside them first. Best effort: failures are
/// printed, not returned, because a parallel process may be cleaning the same leftovers.
pub(crate) fn remove_stale() {
    let names = match list_netns() {
        Ok(names) => names,
        Err(e) => {
            eprintln!("weft-netns: cannot list namespaces for stale cleanup: {e}");
            return;
        }
    };
    for name in names {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_inside(&name);
        if let Err(e) = cmd::run_ok(Command::new("ip").args(["netns", "delete", &name])) {
            eprintln!("weft-netns: could not remove stale namespace {name}: {e}");
        }
    }
}

/// SIGKILLs every process whose network namespace is `ns`.
pub(crate) fn kill_inside(ns: &str) {
    let Ok(out) = cmd::run_ok(Command::new("ip").args(["netns", "pids", ns])) else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
    {
        // The process may have exited meanwhile; that is what we want anyway.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_parse_back() {
        let a = fresh_prefix();
        let b = fresh_prefix();
        assert_ne!(a, b);
        assert_eq!(owner_pid(&format!("{a}-h0")), Some(std::process::id()));
        assert_eq!(owner_pid(&format!("{b}-u")), Some(std::process::id()));
    }

    #[test]
    fn foreign_names_are_not_ours() {
        assert_eq!(owner_pid("wftabc"), None);
        assert_eq!(owner_pid("wft12x-h0"), None);
        assert_eq!(owner_pid("wft12x3"), None);
        assert_eq!(owner_pid("netns1"), None);
        assert_eq!(owner_pid("wft12x3-h1"), Some(12));
    }

    #[test]
    fn netns_list_with_ids() {
        let names = parse_netns_list("wft1x0-h1 (id: 3)\nwft1x0-u\n\nother (id: 0)\n");
        assert_eq!(names, ["wft1x0-h1", "wft1x0-u", "other"]);
    }
}
