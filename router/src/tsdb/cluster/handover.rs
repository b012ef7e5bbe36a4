//! Hand-over: when the ring changes (a router joins, leaves or comes back after a restart),
//! every router copies the recent raw samples of its local series to the peers that became
//! their replicas. A restarted router catches up this way: its co-replicas see it rejoin the
//! ring and copy to it what it missed. Nothing is deleted on the old replicas (retention removes
//! old data), so reads, which merge every peer, stay complete during and after the move.
//!
//! A copy counts as done when every new owner acknowledged it; until then the router keeps the
//! last membership it fully handed over as its baseline and retries every [`INTERVAL`], so a
//! copy interrupted by another change or a timeout is redone against the newest ring. A peer
//! whose incarnation changed (it restarted, perhaps faster than one interval) counts as new to
//! every series it holds.
//!
//! Only the last [`WINDOW_MS`] of samples are copied: the receiving replica accepts out-of-order
//! samples that far back (it may already hold newer ones), and refuses older ones.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};
use weft_metrics::index::Matcher;
use weft_metrics::labels::Series;
use weft_metrics::ring::Ring;
use weft_metrics::storage::{Storage, Store, WriteError, WriteStats};
use weft_metrics::tenant::TenantId;

use super::store::Shared;
use crate::mesh::PeerName;

/// How often the ring is compared with the last one handed over.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);

/// How far back hand-over copies samples; also the out-of-order window of the local store.
pub(crate) const WINDOW_MS: i64 = 60 * 60 * 1000;

/// What one hand-over copied.
#[derive(Debug, Default, Clone, Copy)]
struct Moved {
    series: usize,
    samples: usize,
}

/// The series of `local` (tenant, series) that `new` places on peers `old` did not, or on a
/// `restarted` peer, by peer; this router (`me`) is never a target.
fn moves(
    me: u64,
    old: &Ring,
    new: &Ring,
    restarted: &BTreeSet<u64>,
    tenant: &TenantId,
    local: Vec<Series>,
) -> BTreeMap<u64, Vec<Series>> {
    let mut out: BTreeMap<u64, Vec<Series>> = BTreeMap::new();
    for s in local {
        let before = old.replicas(tenant, &s.labels);
        for p in new.replicas(tenant, &s.labels) {
            if p != me && (!before.contains(&p) || restarted.contains(&p)) {
                out.entry(p).or_default().push(s.clone());
            }
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Copies to their new owners the series that moved from `old` to `new`.
async fn hand_over(
    shared: &Arc<Shared>,
    old: &Ring,
    new: &Ring,
    restarted: &BTreeSet<u64>,
) -> Result<Moved, String> {
    let me = shared.local_name.0;
    let now = now_ms();
    let local = shared.local.clone();
    let tenants = {
        let l = local.clone();
        tokio::task::spawn_blocking(move || l.tenants())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    let any = Matcher::regex("__name__", ".+").map_err(|e| e.to_string())?;
    let mut moved = Moved::default();
    for tenant in tenants {
        let (l, t, m) = (local.clone(), tenant.clone(), any.clone());
        let series = tokio::task::spawn_blocking(move || l.select(&t, &[m], now - WINDOW_MS, now))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        for (peer, batch) in moves(me, old, new, restarted, &tenant, series) {
            moved.series += batch.len();
            moved.samples += batch.iter().map(|s| s.samples.len()).sum::<usize>();
            shared
                .write_on(PeerName(peer), tenant.clone(), batch, now, true)
                .await
                .map_err(|e| format!("copying tenant {tenant} to {}: {e}", PeerName(peer)))?;
        }
    }
    Ok(moved)
}

/// Follows the ring and hands series over whenever it changes.
pub(crate) async fn run(shared: Arc<Shared>) {
    let me = shared.local_name.0;
    // At start this router has handed nothing over: everything it holds may be news to its
    // co-replicas (it may have been down while they took writes it still has).
    let mut synced = Arc::new(Ring::with_replication([me], shared.replication()));
    let mut synced_members: BTreeMap<u64, u64> = BTreeMap::new();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let members = shared.members();
        let ring = shared.ring();
        if ring.peers() == synced.peers() && members == synced_members {
            continue;
        }
        let restarted: BTreeSet<u64> = members
            .iter()
            .filter(|(p, uid)| synced_members.get(p).is_some_and(|old| old != *uid))
            .map(|(p, _)| *p)
            .collect();
        match hand_over(&shared, &synced, &ring, &restarted).await {
            Ok(m) => {
                info!(
                    peers = ring.peers().len(),
                    series = m.series,
                    samples = m.samples,
                    "metrics hand-over complete"
                );
                synced = ring;
                synced_members = members;
            }
            Err(e) => warn!("metrics hand-over incomplete, retrying: {e}"),
        }
    }
}

/// Writes a hand-over copy into the local store: the whole batch when it can, else series by
/// series, skipping those refused as invalid (older than the store accepts, or conflicting).
pub(crate) fn absorb(
    local: &Storage,
    tenant: &TenantId,
    batch: Vec<Series>,
    now_ms: i64,
) -> Result<WriteStats, WriteError> {
    match local.write(tenant, batch.clone(), now_ms) {
        Err(WriteError::Append(_)) => {}
        other => return other,
    }
    let mut stats = WriteStats::default();
    let mut skipped = 0usize;
    for s in batch {
        match local.write(tenant, vec![s], now_ms) {
            Ok(w) => {
                stats.samples += w.samples;
                stats.new_series += w.new_series;
            }
            Err(WriteError::Append(_)) => skipped += 1,
            Err(e) => return Err(e),
        }
    }
    if skipped > 0 {
        warn!(%tenant, skipped, "hand-over: series refused by the local store skipped");
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use weft_metrics::head::HeadConfig;
    use weft_metrics::labels::{Labels, Sample};
    use weft_metrics::storage::StorageConfig;

    use super::*;

    fn series(i: usize, ts: &[i64]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", "m".to_owned()), ("i", i.to_string())])
                .expect("labels"),
            samples: ts.iter().map(|&t| Sample { t, v: t as f64 }).collect(),
        }
    }

    #[test]
    fn a_joining_peer_receives_only_the_series_it_now_holds() {
        let tenant = TenantId::new("t").expect("tenant");
        let old = Ring::new([1, 2, 3]);
        let new = Ring::new([1, 2, 3, 4]);
        let local: Vec<Series> = (0..300).map(|i| series(i, &[1])).collect();
        let none = BTreeSet::new();
        let m = moves(1, &old, &new, &none, &tenant, local.clone());
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![4]);
        let expected = local
            .iter()
            .filter(|s| new.replicas(&tenant, &s.labels).contains(&4))
            .count();
        assert_eq!(m[&4].len(), expected);
        assert!(expected > 150 && expected < 300, "{expected}");
        // A peer coming back gets everything it holds; this router never sends to itself.
        let m = moves(1, &Ring::new([1, 3]), &old, &none, &tenant, local.clone());
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(m[&2].len(), 300);
        assert!(moves(1, &old, &old, &none, &tenant, local.clone()).is_empty());
        // A restart too quick to leave the ring still counts: peer 2 gets all it holds.
        let restarted = BTreeSet::from([2]);
        let m = moves(1, &old, &old, &restarted, &tenant, local);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(m[&2].len(), 300);
    }

    #[test]
    fn a_copy_skips_what_the_store_refuses_and_keeps_the_rest() {
        let local = Storage::open(StorageConfig {
            head: HeadConfig {
                ooo_window_ms: WINDOW_MS,
            },
            ..StorageConfig::default()
        })
        .expect("storage");
        let tenant = TenantId::new("t").expect("tenant");
        let now = 10 * WINDOW_MS;
        local
            .write(&tenant, vec![series(0, &[now - 10, now])], now)
            .expect("write");
        // A sample of series 0 older than the store accepts fails the batch; series 1 (new)
        // still gets in, series by series.
        let copy = vec![
            series(0, &[now - 3 * WINDOW_MS]),
            series(1, &[now - 5, now]),
        ];
        let stats = absorb(&local, &tenant, copy, now).expect("absorb");
        assert_eq!(stats.samples, 2);
        let again = vec![series(0, &[now - 20, now - 10]), series(1, &[now - 5])];
        absorb(&local, &tenant, again, now).expect("idempotent");
        let got = local
            .select(
                &tenant,
                &[Matcher::equal("__name__", "m")],
                i64::MIN,
                i64::MAX,
            )
            .expect("select");
        let ts: Vec<Vec<i64>> = got
            .iter()
            .map(|s| s.samples.iter().map(|x| x.t).collect())
            .collect();
        assert_eq!(ts, vec![vec![now - 20, now - 10, now], vec![now - 5, now]]);
    }
}
