//! The `metrics` mesh channel: requests between routers, one message per unicast. Not gossip:
//! nothing is flooded or merged. Every message is decoded and validated on arrival; one that
//! fails closes the connection it came on (the mesh's rule for a channel error) and nothing of
//! it is stored. Requests are served by a bounded pool of tasks; when the queue is full a
//! request is dropped and its sender times out (flow control together with the sender's cap
//! of in-flight requests per peer).

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};
use weft_metrics::index::Matcher;
use weft_metrics::labels::Series;
use weft_metrics::storage::Store;
use weft_metrics::tenant::TenantId;

use super::CHANNEL;
use super::handover;
use super::store::{Shared, local_select, select_result, write_result};
use super::wire::{
    self, Body, Envelope, WireError, WireSelectResult, matcher_from_wire, series_from_wire,
};
use crate::mesh::{GossipError, Gossiper, PeerName};

/// Requests queued for the server before new ones are dropped.
const QUEUE: usize = 64;

/// Requests served at once.
const WORKERS: usize = 4;

/// A validated request from a peer.
#[derive(Debug)]
pub(crate) enum Request {
    /// Store these series locally.
    Write {
        tenant: TenantId,
        now_ms: i64,
        batch: Vec<Series>,
        handover: bool,
    },
    /// Read local series.
    Select {
        tenant: TenantId,
        matchers: Vec<Matcher>,
        mint: i64,
        maxt: i64,
        labels_only: bool,
    },
}

/// What a message from a peer turned out to be.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A request to serve.
    Request(u64, Request),
    /// A response to one of ours.
    Response(u64, Body),
}

/// Decodes and validates a message; any error refuses all of it.
pub(crate) fn parse(bytes: &[u8]) -> Result<Incoming, WireError> {
    let env = Envelope::decode_checked(bytes)?;
    let id = env.id;
    match env.body {
        Some(Body::Write(w)) => {
            let tenant = wire::tenant(&w.tenant)?;
            let batch = w
                .series
                .into_iter()
                .map(series_from_wire)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Incoming::Request(
                id,
                Request::Write {
                    tenant,
                    now_ms: w.now_ms,
                    batch,
                    handover: w.handover,
                },
            ))
        }
        Some(Body::Select(s)) => {
            let tenant = wire::tenant(&s.tenant)?;
            let matchers = s
                .matchers
                .iter()
                .map(matcher_from_wire)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Incoming::Request(
                id,
                Request::Select {
                    tenant,
                    matchers,
                    mint: s.mint,
                    maxt: s.maxt,
                    labels_only: s.labels_only,
                },
            ))
        }
        Some(body) => Ok(Incoming::Response(id, body)),
        None => Err(WireError::Invalid("no body".into())),
    }
}

/// The channel as the mesh sees it.
pub(crate) struct MetricsChannel {
    shared: Arc<Shared>,
    requests: mpsc::Sender<(PeerName, u64, Request)>,
}

impl MetricsChannel {
    /// The channel, and the queue its requests arrive on (for [`serve`]).
    pub(crate) fn new(shared: Arc<Shared>) -> (Self, mpsc::Receiver<(PeerName, u64, Request)>) {
        let (requests, rx) = mpsc::channel(QUEUE);
        (Self { shared, requests }, rx)
    }
}

impl Gossiper for MetricsChannel {
    fn full_state(&self) -> Vec<u8> {
        Vec::new()
    }

    fn merge(&mut self, src: PeerName, update: &[u8]) -> Result<Option<Vec<u8>>, GossipError> {
        if !update.is_empty() {
            debug!(%src, "gossip on the metrics channel ignored (it carries requests only)");
        }
        Ok(None)
    }

    fn on_unicast(&mut self, src: PeerName, payload: &[u8]) -> Result<(), GossipError> {
        let incoming = parse(payload).map_err(|e| {
            warn!(%src, "refusing a metrics message: {e}");
            GossipError::Decode {
                channel: CHANNEL.to_owned(),
                reason: e.to_string(),
            }
        })?;
        match incoming {
            Incoming::Response(id, body) => self.shared.complete(id, body),
            Incoming::Request(id, req) => {
                if self.requests.try_send((src, id, req)).is_err() {
                    warn!(%src, "metrics request dropped: too many in progress");
                }
            }
        }
        Ok(())
    }
}

/// Serves requests from peers against the local store (never through an exporter) and sends
/// the answers back.
pub(crate) async fn serve(shared: Arc<Shared>, mut rx: mpsc::Receiver<(PeerName, u64, Request)>) {
    let workers = Arc::new(Semaphore::new(WORKERS));
    while let Some((src, id, req)) = rx.recv().await {
        let Ok(permit) = workers.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let local = shared.local.clone();
            let answer = tokio::task::spawn_blocking(move || match req {
                Request::Write {
                    tenant,
                    now_ms,
                    batch,
                    handover: false,
                } => Body::WriteResult(write_result(local.write(&tenant, batch, now_ms))),
                Request::Write {
                    tenant,
                    now_ms,
                    batch,
                    handover: true,
                } => Body::WriteResult(write_result(handover::absorb(
                    &local, &tenant, batch, now_ms,
                ))),
                Request::Select {
                    tenant,
                    matchers,
                    mint,
                    maxt,
                    labels_only,
                } => {
                    let r = local_select(&local, &tenant, &matchers, mint, maxt, labels_only);
                    Body::SelectResult(select_result(r, labels_only))
                }
            })
            .await;
            drop(permit);
            let body = match answer {
                Ok(b) => b,
                Err(e) => {
                    warn!("metrics request task failed: {e}");
                    return;
                }
            };
            let bytes = match Envelope::new(id, body).encode() {
                Ok(b) => b,
                Err(e) => match Envelope::new(
                    id,
                    Body::SelectResult(WireSelectResult {
                        error: e.to_string(),
                        series: Vec::new(),
                    }),
                )
                .encode()
                {
                    Ok(b) => b,
                    Err(e) => {
                        warn!("encoding a metrics answer: {e}");
                        return;
                    }
                },
            };
            if let Err(e) = shared.mesh.unicast(src, CHANNEL, bytes).await {
                debug!(%src, "metrics answer not sent: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::tsdb::cluster::wire::{WireSeries, WireWrite};

    fn write(series: Vec<WireSeries>) -> Vec<u8> {
        Envelope::new(
            1,
            Body::Write(WireWrite {
                tenant: "t".into(),
                now_ms: 0,
                handover: false,
                series,
            }),
        )
        .encode_to_vec()
    }

    #[tokio::test]
    async fn malformed_and_oversized_messages_are_channel_errors_and_store_nothing() {
        use weft_metrics::storage::{Storage, StorageConfig};

        use crate::tsdb::cluster::{ClusterConfig, ClusterStore, test_mesh};

        let local = Arc::new(Storage::open(StorageConfig::default()).expect("storage"));
        let (mesh, name) = test_mesh();
        let config = ClusterConfig {
            replication: 3,
            limits: weft_metrics::tenant::Limits::default(),
        };
        let store = ClusterStore::new(local.clone(), name, mesh, config);
        let (mut channel, mut rx) = MetricsChannel::new(store.shared());
        let src = PeerName(0x02_00_00_00_00_02);
        let good = WireSeries {
            labels: vec!["__name__".into(), "up".into()],
            timestamps: vec![1],
            values: vec![1.0],
        };
        let mut bad = good.clone();
        bad.values.push(2.0);
        let oversized = vec![0u8; wire::MAX_MESSAGE + 1];
        for payload in [
            b"\xff\xff garbage".to_vec(),
            write(vec![good.clone(), bad]),
            oversized,
        ] {
            // An error here makes the mesh close the connection the message came on.
            assert!(matches!(
                channel.on_unicast(src, &payload),
                Err(GossipError::Decode { .. })
            ));
        }
        assert!(rx.try_recv().is_err(), "a refused message was queued");
        assert!(local.tenants().expect("tenants").is_empty());
        channel.on_unicast(src, &write(vec![good])).expect("valid");
        assert!(matches!(
            rx.try_recv(),
            Ok((p, 1, Request::Write { .. })) if p == src
        ));
    }

    #[test]
    fn a_write_with_one_bad_series_is_refused_whole() {
        let good = WireSeries {
            labels: vec!["__name__".into(), "up".into()],
            timestamps: vec![1, 2],
            values: vec![1.0, 2.0],
        };
        assert!(matches!(
            parse(&write(vec![good.clone()])),
            Ok(Incoming::Request(1, Request::Write { .. }))
        ));
        let mut bad = good.clone();
        bad.timestamps.push(3);
        assert!(parse(&write(vec![good, bad])).is_err());
        assert!(parse(b"\x08\x01garbage").is_err());
    }
}
