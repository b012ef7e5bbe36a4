//! The sender task of one destination: reads queued writes in order, turns them into
//! remote_write requests of at most `batch` samples for one tenant each, posts them one at a
//! time (so every series arrives in time order), and commits the queue once they are taken.
//! 5xx, 429 and connection errors are retried with exponential backoff; other 4xx answers are
//! logged and their samples dropped (counted as failed), so one bad batch does not block the
//! queue.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use tracing::{debug, warn};
use weft_metrics::labels::Series;
use weft_metrics::remote_write::{decode_write_request, encode_write_request};
use weft_metrics::tenant::TenantId;

use super::Destination;
use super::client::{Answer, Client};
use super::queue::QueuedWrite;
use super::stats::Stats;

/// First wait before a retry.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long an idle sender sleeps before looking at the queue again without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// One remote_write request.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Request {
    /// Its tenant (header `X-Scope-OrgID`).
    pub(super) tenant: TenantId,
    /// Snappy-compressed `WriteRequest`.
    pub(super) body: Bytes,
    /// Samples in it.
    pub(super) samples: u64,
}

/// Runs the sender of `dest` until the task is aborted.
pub(super) async fn run(dest: Arc<Destination>, mut client: Client, batch: u32) {
    loop {
        let d = dest.clone();
        let read = tokio::task::spawn_blocking(move || d.lock_queue().read(u64::from(batch)))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let writes = match read {
            Ok(w) => w,
            Err(e) => {
                warn!(destination = %dest.url, "reading the export queue: {e}; repairing it");
                let d = dest.clone();
                let repaired = tokio::task::spawn_blocking(move || d.lock_queue().repair()).await;
                match repaired {
                    Ok(Ok(lost)) => Stats::add(&dest.stats.dropped, lost),
                    Ok(Err(e)) => warn!(destination = %dest.url, "repairing the queue: {e}"),
                    Err(e) => warn!(destination = %dest.url, "repairing the queue: {e}"),
                }
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
        };
        if writes.is_empty() {
            let _ = tokio::time::timeout(IDLE_POLL, dest.wake.notified()).await;
            continue;
        }
        for request in requests(&writes, batch, &dest.stats) {
            deliver(&dest, &mut client, request).await;
        }
        let d = dest.clone();
        let commit = tokio::task::spawn_blocking(move || d.lock_queue().commit(&writes)).await;
        match commit {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(destination = %dest.url, "committing the export queue: {e}"),
            Err(e) => warn!(destination = %dest.url, "committing the export queue: {e}"),
        }
    }
}

/// Posts `request` until the destination takes or refuses it.
async fn deliver(dest: &Destination, client: &mut Client, request: Request) {
    let mut backoff = MIN_BACKOFF;
    let mut attempt = 0u32;
    loop {
        let why = match client.post(&request.tenant, request.body.clone()).await {
            Answer::Status(s, _) if s.is_success() => {
                Stats::add(&dest.stats.sent, request.samples);
                return;
            }
            Answer::Status(s, body) if retryable(s) => format!("{s}: {body}"),
            Answer::Status(s, body) => {
                warn!(
                    destination = %dest.url,
                    tenant = %request.tenant,
                    samples = request.samples,
                    "remote_write refused with {s}, dropping the batch: {body}"
                );
                Stats::add(&dest.stats.failed, request.samples);
                return;
            }
            Answer::Unreachable(reason) => reason,
        };
        Stats::add(&dest.stats.retries, 1);
        if attempt == 0 {
            warn!(destination = %dest.url, "remote_write failed, retrying with backoff: {why}");
        } else {
            debug!(destination = %dest.url, attempt, "remote_write retry failed: {why}");
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether an answer with `status` is worth retrying.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The requests carrying `writes` in order: consecutive writes of one tenant share requests
/// of at most `batch` samples; a larger write is split.
pub(super) fn requests(writes: &[QueuedWrite], batch: u32, stats: &Stats) -> Vec<Request> {
    let mut out = Vec::new();
    for group in writes.chunk_by(|a, b| a.tenant == b.tenant) {
        let tenant = &group[0].tenant;
        let total: u64 = group.iter().map(|w| u64::from(w.samples)).sum();
        if let [single] = group
            && total <= u64::from(batch)
        {
            out.push(Request {
                tenant: tenant.clone(),
                body: Bytes::from(single.body.clone()),
                samples: total,
            });
            continue;
        }
        let mut series = Vec::new();
        for w in group {
            match decode_write_request(&w.body, 0, i64::MAX) {
                Ok(s) => series.extend(s),
                Err(e) => {
                    warn!(%tenant, "an export queue record does not decode, dropping it: {e}");
                    Stats::add(&stats.failed, u64::from(w.samples));
                }
            }
        }
        for chunk in chunks(series, batch as usize) {
            let samples = chunk.iter().map(|s| s.samples.len() as u64).sum();
            out.push(Request {
                tenant: tenant.clone(),
                body: Bytes::from(encode_write_request(&chunk)),
                samples,
            });
        }
    }
    out
}

/// Splits series into groups of at most `max` samples, keeping every series' samples in
/// order (a long series is cut across groups).
fn chunks(series: Vec<Series>, max: usize) -> Vec<Vec<Series>> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut current: Vec<Series> = Vec::new();
    let mut room = max;
    for s in series {
        let mut rest = s.samples.as_slice();
        while !rest.is_empty() {
            let (take, left) = rest.split_at(rest.len().min(room));
            current.push(Series {
                labels: s.labels.clone(),
                samples: take.to_vec(),
            });
            room -= take.len();
            rest = left;
            if room == 0 {
                out.push(std::mem::take(&mut current));
                room = max;
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use weft_metrics::labels::{Labels, Sample};

    use super::super::queue::Position;
    use super::*;

    fn series(name: &str, ts: std::ops::Range<i64>) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name)]).expect("labels"),
            samples: ts.map(|t| Sample { t, v: t as f64 }).collect(),
        }
    }

    fn write(tenant: &str, batch: &[Series]) -> QueuedWrite {
        QueuedWrite {
            tenant: TenantId::new(tenant).expect("tenant"),
            samples: batch.iter().map(|s| s.samples.len() as u32).sum(),
            body: encode_write_request(batch),
            segment: 1,
            end: Position::default(),
        }
    }

    fn decoded(r: &Request) -> Vec<Series> {
        decode_write_request(&r.body, 0, i64::MAX).expect("decodes")
    }

    #[test]
    fn a_small_write_is_sent_as_queued() {
        let w = write("a", &[series("up", 0..3)]);
        let rs = requests(std::slice::from_ref(&w), 10, &Stats::default());
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].body, Bytes::from(w.body));
        assert_eq!(rs[0].samples, 3);
    }

    #[test]
    fn tenants_get_their_own_requests_and_big_writes_are_split_in_order() {
        let writes = [
            write("a", &[series("x", 0..4), series("y", 0..4)]),
            write("a", &[series("x", 4..6)]),
            write("b", &[series("x", 0..1)]),
        ];
        let rs = requests(&writes, 3, &Stats::default());
        let shape: Vec<(String, u64)> = rs
            .iter()
            .map(|r| (r.tenant.to_string(), r.samples))
            .collect();
        assert_eq!(
            shape,
            [("a", 3), ("a", 3), ("a", 3), ("a", 1), ("b", 1)]
                .map(|(t, n)| (t.to_owned(), n))
                .to_vec()
        );
        // Every sample of tenant a arrives once, each series in time order.
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for r in rs.iter().filter(|r| r.tenant.as_str() == "a") {
            for s in decoded(r) {
                let ts = s.samples.iter().map(|p| p.t);
                match s.labels.metric_name() {
                    Some("x") => xs.extend(ts),
                    Some("y") => ys.extend(ts),
                    other => panic!("unexpected series {other:?}"),
                }
            }
        }
        assert_eq!(xs, (0..6).collect::<Vec<_>>());
        assert_eq!(ys, (0..4).collect::<Vec<_>>());
    }

    #[test]
    fn a_record_that_does_not_decode_is_counted_as_failed() {
        let mut bad = write("a", &[series("x", 0..2)]);
        bad.body = b"garbage".to_vec();
        let good = write("a", &[series("y", 0..2)]);
        let stats = Stats::default();
        let rs = requests(&[bad, good], 10, &stats);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].samples, 2);
        assert_eq!(stats.failed.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn only_429_and_5xx_are_retried() {
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!retryable(StatusCode::BAD_REQUEST));
        assert!(!retryable(StatusCode::NOT_FOUND));
    }
}
