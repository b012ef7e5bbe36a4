//! Polling a condition until it holds or time runs out.

use std::thread;
use std::time::{Duration, Instant};

/// How often conditions are re-checked.
const INTERVAL: Duration = Duration::from_millis(200);

/// Calls `cond` every 200 ms until it returns true (→ `true`) or `timeout` passes (→ `false`).
/// `cond` is always called at least once, and once more at the deadline.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(INTERVAL.min(deadline - now));
    }
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_true_once_condition_holds() {
        let mut calls = 0;
        assert!(poll_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
    }

    #[test]
    fn gives_up_after_timeout() {
        let started = Instant::now();
        let mut calls = 0;
        assert!(!poll_until(Duration::from_millis(500), || {
            calls += 1;
            false
        }));
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(calls >= 3, "checked only {calls} times");
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
