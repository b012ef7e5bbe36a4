//! Counters of the export, per destination, rendered in the Prometheus exposition format on
//! the metrics API's `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one destination.
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Samples the destination accepted (2xx).
    pub(super) sent: AtomicU64,
    /// Samples the destination refused for good (4xx other than 429).
    pub(super) failed: AtomicU64,
    /// Samples dropped before sending: queue over its size cap, damaged, or not queued at all.
    pub(super) dropped: AtomicU64,
    /// Requests retried after a 5xx, a 429 or a connection error.
    pub(super) retries: AtomicU64,
}

impl Stats {
    /// Adds `n` to a counter.
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One destination's figures at a point in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Snapshot {
    /// The destination URL.
    pub(super) destination: String,
    /// See [`Stats::sent`].
    pub(super) sent: u64,
    /// See [`Stats::failed`].
    pub(super) failed: u64,
    /// See [`Stats::dropped`].
    pub(super) dropped: u64,
    /// See [`Stats::retries`].
    pub(super) retries: u64,
    /// Samples queued, not yet taken by the destination.
    pub(super) pending: u64,
}

impl Snapshot {
    /// The counters of `stats` with the queue's `pending` samples.
    pub(super) fn of(destination: String, stats: &Stats, pending: u64) -> Self {
        Self {
            destination,
            sent: stats.sent.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            dropped: stats.dropped.load(Ordering::Relaxed),
            retries: stats.retries.load(Ordering::Relaxed),
            pending,
        }
    }
}

/// The exposition text of all destinations.
pub(super) fn exposition(snapshots: &[Snapshot]) -> String {
    type Field = fn(&Snapshot) -> u64;
    let families: [(&str, &str, &str, Field); 5] = [
        (
            "weft_export_samples_sent_total",
            "counter",
            "Samples accepted by the remote_write destination.",
            |s| s.sent,
        ),
        (
            "weft_export_samples_failed_total",
            "counter",
            "Samples refused by the destination with a non-retryable 4xx and dropped.",
            |s| s.failed,
        ),
        (
            "weft_export_samples_dropped_total",
            "counter",
            "Samples dropped before sending: queue over its size cap or damaged on disk.",
            |s| s.dropped,
        ),
        (
            "weft_export_retries_total",
            "counter",
            "remote_write requests retried after a 5xx, a 429 or a connection error.",
            |s| s.retries,
        ),
        (
            "weft_export_samples_pending",
            "gauge",
            "Samples queued on disk, not yet accepted by the destination.",
            |s| s.pending,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, field) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in snapshots {
            let dest = s.destination.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{destination=\"{dest}\"}} {}", field(s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_rendered_per_destination() {
        let stats = Stats::default();
        Stats::add(&stats.sent, 7);
        Stats::add(&stats.failed, 2);
        Stats::add(&stats.dropped, 1);
        let text = exposition(&[Snapshot::of("http://a/w\"x".into(), &stats, 5)]);
        for line in [
            "# TYPE weft_export_samples_sent_total counter",
            "weft_export_samples_sent_total{destination=\"http://a/w\\\"x\"} 7",
            "weft_export_samples_failed_total{destination=\"http://a/w\\\"x\"} 2",
            "weft_export_samples_dropped_total{destination=\"http://a/w\\\"x\"} 1",
            "weft_export_retries_total{destination=\"http://a/w\\\"x\"} 0",
            "# TYPE weft_export_samples_pending gauge",
            "weft_export_samples_pending{destination=\"http://a/w\\\"x\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
