//! `kill -9` durability of the store: a child process writes batches and reports each one the
//! store acknowledged; the parent kills it with SIGKILL mid-stream, reopens the data directory
//! and checks that every acknowledged sample is there.
//!
//! The child is this same test binary, re-run with `WEFT_KILL9_DIR` set, executing
//! `kill9_child_writer`, which does nothing in a normal test run.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_metrics::labels::{Labels, Sample, Series};
use weft_metrics::storage::{Storage, StorageConfig, Store};
use weft_metrics::tenant::TenantId;

const ENV: &str = "WEFT_KILL9_DIR";
const SERIES: usize = 20;

fn config(dir: &str) -> StorageConfig {
    StorageConfig {
        dir: Some(dir.into()),
        segment_size: 256 * 1024,
        ..StorageConfig::default()
    }
}

fn batch(i: i64) -> Vec<Series> {
    (0..SERIES)
        .map(|s| Series {
            labels: Labels::from_pairs([("__name__", "m".to_owned()), ("s", s.to_string())])
                .expect("labels"),
            samples: vec![Sample {
                t: i * 1000,
                v: i as f64,
            }],
        })
        .collect()
}

#[test]
fn kill9_child_writer() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let store = Storage::open(config(&dir)).expect("open");
    let tenant = TenantId::new("t").expect("tenant");
    for i in 0.. {
        store.write(&tenant, batch(i), i * 1000).expect("write");
        // Printed only after the write (and its fsync) returned: an acknowledgement.
        println!("ack {i}");
    }
}

#[test]
fn acknowledged_samples_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_s = dir.path().to_string_lossy().into_owned();
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "kill9_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, &dir_s)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut acked = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(n) = line
            .strip_prefix("ack ")
            .and_then(|n| n.parse::<i64>().ok())
        {
            acked.push(n);
        }
        if acked.len() >= 300 || started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    assert!(
        acked.len() >= 10,
        "writer acknowledged only {} batches",
        acked.len()
    );

    let store = Storage::open(config(&dir_s)).expect("reopen after kill -9");
    let tenant = TenantId::new("t").expect("tenant");
    let got = store
        .select(&tenant, &[], i64::MIN, i64::MAX)
        .expect("select");
    assert_eq!(got.len(), SERIES);
    for s in &got {
        for &i in &acked {
            assert!(
                s.samples.iter().any(|x| x.t == i * 1000 && x.v == i as f64),
                "acknowledged sample {i} of {} lost",
                s.labels
            );
        }
    }
    // The store keeps accepting writes after the crash.
    let next = got[0].samples.last().map_or(0, |x| x.t / 1000 + 1);
    store
        .write(&tenant, batch(next), next * 1000)
        .expect("write after restart");
}
