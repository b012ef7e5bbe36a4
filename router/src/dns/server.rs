//! The DNS server: hickory's UDP and TCP server with weft's request handler, on a fixed address
//! (`--dns-listen-address`) or on the bridge's first exposed address, following `weft expose` and
//! `weft hide`. Without either, nothing listens: a host's external interfaces are never used by
//! default.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, ResponseCode};
use hickory_proto::xfer::Protocol;
use hickory_server::ServerFuture;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::answer::{self, Plan, Reply, Zone};
use super::error::DnsError;
use super::forward::Forwarder;
use super::service::DnsService;
use crate::overlay::Overlay;

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// How long an idle TCP client is kept.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the exposed address of the bridge is checked.
const FOLLOW_PERIOD: Duration = Duration::from_secs(1);

/// Answers requests from the record tables, forwarding the rest.
pub struct Handler {
    service: DnsService,
    zone: Zone,
    forwarder: Arc<Forwarder>,
}

impl Handler {
    /// A handler answering for `zone` from `service`'s tables.
    pub fn new(service: DnsService, zone: Zone, forwarder: Arc<Forwarder>) -> Handler {
        Handler {
            service,
            zone,
            forwarder,
        }
    }

    async fn forward(&self, request: &Request) -> Reply {
        let Some(query) = request.queries().first() else {
            return Reply::empty(ResponseCode::FormErr, false);
        };
        let edns = request.edns().map(|e| e.max_payload());
        let tcp = request.protocol() == Protocol::Tcp;
        match self
            .forwarder
            .forward(
                query.original().clone(),
                request.recursion_desired(),
                edns,
                tcp,
            )
            .await
        {
            Ok(m) => Reply {
                code: m.response_code(),
                answers: m.answers().to_vec(),
                authority: m.name_servers().to_vec(),
                additionals: m.additionals().to_vec(),
                authoritative: false,
                truncated: m.truncated(),
            },
            Err(e) => {
                debug!(name = %query.name(), "forwarding failed: {e}");
                Reply::empty(ResponseCode::ServFail, false)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let plan = {
            let tables = self.service.tables();
            let mut rng = rand::thread_rng();
            answer::plan(
                &self.zone,
                &tables,
                request,
                request.src().ip(),
                request.protocol(),
                &mut rng,
            )
        };
        let reply = match plan {
            Plan::Answer(reply) => reply,
            Plan::Forward => self.forward(request).await,
        };
        let header = answer::response_header(request, &reply);
        match response_handle
            .send_response(answer::response(request, &reply))
            .await
        {
            Ok(info) => info,
            Err(e) => {
                debug!("sending a DNS answer: {e}");
                let mut failed = Header::response_from_request(&header);
                failed.set_response_code(ResponseCode::ServFail);
                failed.into()
            }
        }
    }
}

/// Binds UDP and TCP on `addr` and serves `handler` there.
pub async fn serve(addr: SocketAddr, handler: Handler) -> Result<ServerFuture<Handler>, DnsError> {
    let err = |source| DnsError::Listen { addr, source };
    let udp = UdpSocket::bind(addr).await.map_err(err)?;
    let tcp = TcpListener::bind(addr).await.map_err(err)?;
    let mut server = ServerFuture::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT);
    Ok(server)
}

/// Where the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Exactly here (`--dns-listen-address`).
    Fixed(SocketAddr),
    /// On port 53 of the bridge's first exposed address, while there is one.
    Bridge,
}

/// Starts the server: a fixed address is bound now (an error stops the start); the bridge
/// address is followed by a task.
pub async fn start(
    listen: Listen,
    service: DnsService,
    zone: Zone,
    forwarder: Arc<Forwarder>,
    overlay: Overlay,
) -> Result<JoinHandle<()>, DnsError> {
    match listen {
        Listen::Fixed(addr) => {
            forwarder.skip(Some(addr.ip()));
            let mut server = serve(addr, Handler::new(service.clone(), zone, forwarder)).await?;
            service.set_listen_addr(Some(addr));
            info!(%addr, "DNS listening");
            Ok(tokio::spawn(async move {
                if let Err(e) = server.block_until_done().await {
                    warn!("DNS server stopped: {e}");
                }
            }))
        }
        Listen::Bridge => Ok(tokio::spawn(follow_bridge(
            service, zone, forwarder, overlay,
        ))),
    }
}

/// Keeps the server on the bridge's first exposed address.
async fn follow_bridge(
    service: DnsService,
    zone: Zone,
    forwarder: Arc<Forwarder>,
    overlay: Overlay,
) {
    let mut current: Option<(SocketAddr, ServerFuture<Handler>)> = None;
    loop {
        let want = overlay
            .list()
            .await
            .exposed
            .first()
            .map(|net| SocketAddr::new(IpAddr::V4(net.ip()), DNS_PORT));
        if want != current.as_ref().map(|(a, _)| *a) {
            if let Some((addr, mut server)) = current.take() {
                let _ = server.shutdown_gracefully().await;
                service.set_listen_addr(None);
                info!(%addr, "DNS no longer listening");
            }
            if let Some(addr) = want {
                forwarder.skip(Some(addr.ip()));
                let handler = Handler::new(service.clone(), zone.clone(), forwarder.clone());
                match serve(addr, handler).await {
                    Ok(server) => {
                        service.set_listen_addr(Some(addr));
                        info!(%addr, "DNS listening on the bridge address");
                        current = Some((addr, server));
                    }
                    Err(e) => warn!("{e}"),
                }
            }
        }
        tokio::time::sleep(FOLLOW_PERIOD).await;
    }
}
