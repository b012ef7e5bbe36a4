//! The tokio shell around [`MeshCore`]: accepts and dials TCP connections, runs the handshake,
//! moves frames between sockets and the core, and fires the core's timers. All decisions are the
//! core's; this module only does I/O.
//!
//! One task owns the core. Each connection has a reader (the connection task) and a writer task;
//! the core task holds the writer's queue and the reader's abort handle, so closing a connection
//! is dropping its entry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::{
    Action, ConnId, Established, FrameReceiver, FrameSender, Gossiper, Handshake, HandshakeConfig,
    MeshConfig, MeshCore, MeshMessage, MeshStatus, PeerInfo, PeerName,
};

/// How long a dial may take before it counts as failed.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after which the kernel starts probing an idle connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Interval between keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// Unanswered probes after which the connection is dead.
const KEEPALIVE_PROBES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection counts as dead.
const USER_TIMEOUT: Duration = Duration::from_secs(15);
/// Frames queued for one connection before it counts as stuck and is closed.
const WRITE_QUEUE: usize = 4096;

/// What the driver needs to start.
pub struct MeshDriverConfig {
    /// This router.
    pub local: PeerInfo,
    /// The mesh password, when encryption is on.
    pub password: Option<Vec<u8>>,
    /// Maximum number of connections.
    pub conn_limit: usize,
    /// Peers given on the command line (`host:port`).
    pub targets: Vec<String>,
    /// The bound mesh port.
    pub listener: TcpListener,
    /// Where established and lost connections are reported, for the data path (the sleeve
    /// takes each peer's underlay address and sleeve keys from here).
    pub links: Option<mpsc::UnboundedSender<LinkEvent>>,
}

/// A direct connection came up or went down, for the data path.
pub enum LinkEvent {
    /// The core accepted an established connection.
    Up {
        /// The connection.
        conn: ConnId,
        /// The peer on the other end.
        peer: PeerName,
        /// Its underlay address.
        addr: SocketAddr,
        /// The handshake's sleeve key material (with a password).
        sleeve_key_material: Option<Zeroizing<[u8; 64]>>,
    },
    /// The connection is gone.
    Down {
        /// The connection.
        conn: ConnId,
        /// The peer it was to.
        peer: PeerName,
    },
}

/// The mesh driver stopped, so the request could not be served.
#[derive(Debug, thiserror::Error)]
#[error("the mesh is not running")]
pub struct MeshStopped;

enum Command {
    Connect {
        peers: Vec<String>,
        replace: bool,
        done: oneshot::Sender<()>,
    },
    Forget {
        peers: Vec<String>,
        done: oneshot::Sender<()>,
    },
    Status {
        reply: oneshot::Sender<MeshStatus>,
    },
    Register {
        channel: String,
        gossiper: Box<dyn Gossiper>,
    },
    GossipUpdate {
        channel: String,
        update: Vec<u8>,
    },
    Unicast {
        dst: PeerName,
        channel: String,
        payload: Vec<u8>,
    },
}

/// A handle on the running mesh, for the API and for other concerns' gossip channels.
#[derive(Clone)]
pub struct MeshHandle {
    commands: mpsc::Sender<Command>,
    topology: watch::Receiver<MeshStatus>,
}

impl MeshHandle {
    async fn send(&self, c: Command) -> Result<(), MeshStopped> {
        self.commands.send(c).await.map_err(|_| MeshStopped)
    }

    /// Adds (or with `replace`, replaces) user-given dial targets.
    pub async fn connect(&self, peers: Vec<String>, replace: bool) -> Result<(), MeshStopped> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Connect {
            peers,
            replace,
            done,
        })
        .await?;
        wait.await.map_err(|_| MeshStopped)
    }

    /// Removes user-given dial targets.
    pub async fn forget(&self, peers: Vec<String>) -> Result<(), MeshStopped> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Forget { peers, done }).await?;
        wait.await.map_err(|_| MeshStopped)
    }

    /// Follows the mesh: the receiver sees a new [`MeshStatus`] whenever the topology changes
    /// (peers or connections come or go), for concerns that follow it (VXLAN FDB, IPAM, DNS).
    pub fn topology(&self) -> watch::Receiver<MeshStatus> {
        self.topology.clone()
    }

    /// The mesh as this router sees it.
    pub async fn status(&self) -> Result<MeshStatus, MeshStopped> {
        let (reply, wait) = oneshot::channel();
        self.send(Command::Status { reply }).await?;
        wait.await.map_err(|_| MeshStopped)
    }

    /// Adds a gossip channel (IPAM, DNS, policy, ...).
    pub async fn register(
        &self,
        channel: &str,
        gossiper: Box<dyn Gossiper>,
    ) -> Result<(), MeshStopped> {
        self.send(Command::Register {
            channel: channel.to_string(),
            gossiper,
        })
        .await
    }

    /// Spreads a local change of `channel` to the mesh.
    pub async fn gossip_update(&self, channel: &str, update: Vec<u8>) -> Result<(), MeshStopped> {
        self.send(Command::GossipUpdate {
            channel: channel.to_string(),
            update,
        })
        .await
    }

    /// Sends `payload` to `dst`'s `channel`, relayed when there is no direct connection.
    pub async fn unicast(
        &self,
        dst: PeerName,
        channel: &str,
        payload: Vec<u8>,
    ) -> Result<(), MeshStopped> {
        self.send(Command::Unicast {
            dst,
            channel: channel.to_string(),
            payload,
        })
        .await
    }
}

enum Event {
    Up {
        conn: ConnId,
        est: Box<EstablishedConn>,
    },
    Message {
        conn: ConnId,
        msg: MeshMessage,
    },
    Down {
        conn: ConnId,
        reason: String,
    },
    DialFailed {
        addr: String,
        reason: String,
    },
}

struct EstablishedConn {
    remote: PeerInfo,
    remote_addr: SocketAddr,
    outbound: bool,
    target: Option<String>,
    encrypted: bool,
    sleeve_key_material: Option<Zeroizing<[u8; 64]>>,
    writer: mpsc::Sender<MeshMessage>,
    reader: AbortHandle,
}

struct ConnHandle {
    peer: PeerName,
    writer: mpsc::Sender<MeshMessage>,
    reader: AbortHandle,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Starts the mesh: the accept loop, the dials of `cfg.targets`, and the core task.
pub fn start(cfg: MeshDriverConfig) -> MeshHandle {
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (ev_tx, ev_rx) = mpsc::channel(4096);
    let hs = HandshakeConfig {
        local: cfg.local.clone(),
        password: cfg.password,
    };
    let mut mcfg = MeshConfig::new(cfg.local);
    mcfg.conn_limit = cfg.conn_limit;
    let epoch = Instant::now();
    let mut core = MeshCore::new(mcfg, 0, rand::random());
    core.add_targets(&cfg.targets, false, 0);
    let (topology_tx, topology_rx) = watch::channel(core.status());
    let shell = Shell {
        topology: topology_tx,
        core,
        hs,
        epoch,
        events: ev_tx.clone(),
        conns: HashMap::new(),
        next_conn: 1,
        links: cfg.links,
    };
    tokio::spawn(accept_loop(cfg.listener, shell.hs.clone(), ev_tx));
    tokio::spawn(shell.run(cmd_rx, ev_rx));
    MeshHandle {
        commands: cmd_tx,
        topology: topology_rx,
    }
}

struct Shell {
    core: MeshCore,
    topology: watch::Sender<MeshStatus>,
    hs: HandshakeConfig,
    epoch: Instant,
    events: mpsc::Sender<Event>,
    conns: HashMap<ConnId, ConnHandle>,
    next_conn: ConnId,
    links: Option<mpsc::UnboundedSender<LinkEvent>>,
}

impl Shell {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<Event>,
    ) {
        loop {
            self.drain_actions();
            let sleep = match self.core.poll_timeout() {
                Some(t) => Duration::from_millis(t.saturating_sub(self.now())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                Some(ev) = events.recv() => self.on_event(ev),
                cmd = commands.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                _ = tokio::time::sleep(sleep) => {
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
            }
        }
    }

    /// Drops our side of `conn`, telling the data path.
    fn remove_conn(&mut self, conn: ConnId) -> Option<ConnHandle> {
        let handle = self.conns.remove(&conn)?;
        if let Some(links) = &self.links {
            let _ = links.send(LinkEvent::Down {
                conn,
                peer: handle.peer,
            });
        }
        Some(handle)
    }

    fn drain_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Send { conn, msg } => {
                    if let Some(h) = self.conns.get(&conn)
                        && h.writer.try_send(msg).is_err()
                    {
                        warn!(
                            conn,
                            "connection is not keeping up with its frames, closing it"
                        );
                        self.remove_conn(conn);
                        let now = self.now();
                        self.core.connection_down(conn, "write queue full", now);
                    }
                }
                Action::Dial { addr } => {
                    let conn = self.next_conn;
                    self.next_conn += 1;
                    tokio::spawn(dial(conn, addr, self.hs.clone(), self.events.clone()));
                }
                Action::Close { conn, reason } => {
                    if self.remove_conn(conn).is_some() {
                        info!(conn, "closing connection: {reason}");
                    }
                }
                Action::TopologyChanged => {
                    debug!("topology changed");
                    self.topology.send_replace(self.core.status());
                }
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        let now = self.now();
        match ev {
            Event::Up { conn, est } => {
                let EstablishedConn {
                    remote,
                    remote_addr,
                    outbound,
                    target,
                    encrypted,
                    sleeve_key_material,
                    writer,
                    reader,
                } = *est;
                let peer = remote.name;
                let label = format!("{}({})", remote.name, remote.nickname);
                match self.core.connection_up(
                    conn,
                    remote,
                    remote_addr,
                    outbound,
                    target,
                    encrypted,
                    now,
                ) {
                    Ok(()) => {
                        info!(conn, peer = %label, addr = %remote_addr, encrypted, "connection established");
                        self.conns.insert(
                            conn,
                            ConnHandle {
                                peer,
                                writer,
                                reader,
                            },
                        );
                        if let Some(links) = &self.links {
                            let _ = links.send(LinkEvent::Up {
                                conn,
                                peer,
                                addr: remote_addr,
                                sleeve_key_material,
                            });
                        }
                    }
                    Err(refused) => {
                        info!(conn, peer = %label, addr = %remote_addr, "connection refused: {refused}");
                        reader.abort();
                    }
                }
            }
            Event::Message { conn, msg } => {
                if !self.conns.contains_key(&conn) {
                    return;
                }
                if let Err(e) = self.core.handle_message(conn, msg, now) {
                    warn!(conn, "closing connection after a bad message: {e}");
                    self.remove_conn(conn);
                    self.core.connection_down(conn, &e.to_string(), now);
                }
            }
            Event::Down { conn, reason } => {
                if self.remove_conn(conn).is_some() {
                    info!(conn, "connection lost: {reason}");
                    self.core.connection_down(conn, &reason, now);
                }
            }
            Event::DialFailed { addr, reason } => {
                warn!(%addr, "connecting to {addr} failed: {reason}");
                self.core.dial_failed(&addr, reason, now);
            }
        }
    }

    fn on_command(&mut self, c: Command) {
        let now = self.now();
        match c {
            Command::Connect {
                peers,
                replace,
                done,
            } => {
                self.core.add_targets(&peers, replace, now);
                let _ = done.send(());
            }
            Command::Forget { peers, done } => {
                self.core.forget_targets(&peers);
                let _ = done.send(());
            }
            Command::Status { reply } => {
                let _ = reply.send(self.core.status());
            }
            Command::Register { channel, gossiper } => {
                self.core.register_channel(&channel, gossiper)
            }
            Command::GossipUpdate { channel, update } => self.core.gossip_update(&channel, update),
            Command::Unicast {
                dst,
                channel,
                payload,
            } => {
                if let Err(e) = self.core.send_unicast(dst, &channel, payload) {
                    warn!(%dst, %channel, "unicast dropped: {e}");
                }
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, hs: HandshakeConfig, events: mpsc::Sender<Event>) {
    // Inbound connection ids count down from the top so they never meet the core task's dial ids.
    let mut next: ConnId = u64::MAX;
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let conn = next;
                next -= 1;
                let (hs, events) = (hs.clone(), events.clone());
                tokio::spawn(async move {
                    if let Err(reason) =
                        run_connection(conn, stream, addr, false, None, hs, events).await
                    {
                        warn!(%addr, "refused connection from {addr}: {reason}");
                    }
                });
            }
            Err(e) => {
                warn!("accepting a mesh connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn dial(conn: ConnId, addr: String, hs: HandshakeConfig, events: mpsc::Sender<Event>) {
    let result = async {
        let stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| format!("no answer within {}s", DIAL_TIMEOUT.as_secs()))?
            .map_err(|e| e.to_string())?;
        let peer_addr = stream.peer_addr().map_err(|e| e.to_string())?;
        run_connection(
            conn,
            stream,
            peer_addr,
            true,
            Some(addr.clone()),
            hs,
            events.clone(),
        )
        .await
    }
    .await;
    if let Err(reason) = result {
        let _ = events.send(Event::DialFailed { addr, reason }).await;
    }
}

/// Runs the handshake, then (once the core accepted the connection) reads frames until the
/// connection ends. An error before the core heard of the connection is returned; after that,
/// the end is reported as [`Event::Down`].
async fn run_connection(
    conn: ConnId,
    stream: TcpStream,
    remote_addr: SocketAddr,
    outbound: bool,
    target: Option<String>,
    hs: HandshakeConfig,
    events: mpsc::Sender<Event>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    // A peer behind a cut link never closes the connection; these let the kernel notice within
    // about 15 s (idle: 5 s + 3 probes 2 s apart; busy: unacknowledged data for 15 s).
    let sock = socket2::SockRef::from(&stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(e) = sock
        .set_tcp_keepalive(&keepalive)
        .and_then(|()| sock.set_tcp_user_timeout(Some(USER_TIMEOUT)))
    {
        warn!(%remote_addr, "cannot set dead-peer detection on the connection: {e}");
    }
    let (mut rd, mut wr) = stream.into_split();
    let mut rng = rand_chacha::ChaCha20Rng::from_entropy();
    let est = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&hs, outbound, &mut rd, &mut wr, &mut rng),
    )
    .await
    .map_err(|_| format!("no handshake within {}s", HANDSHAKE_TIMEOUT.as_secs()))??;
    let Established {
        remote,
        encrypted,
        sender,
        mut receiver,
        leftover,
        sleeve_key_material,
        ..
    } = est;
    receiver.push(&leftover);
    let (writer_tx, writer_rx) = mpsc::channel(WRITE_QUEUE);
    tokio::spawn(write_loop(conn, wr, sender, writer_rx, events.clone()));
    // The reader starts only once the core has seen the connection, so no frame precedes it.
    let (start_tx, start_rx) = oneshot::channel::<()>();
    let reader = tokio::spawn({
        let events = events.clone();
        async move {
            if start_rx.await.is_ok() {
                read_loop(conn, rd, receiver, events).await;
            }
        }
    });
    let est = EstablishedConn {
        remote,
        remote_addr,
        outbound,
        target,
        encrypted,
        sleeve_key_material,
        writer: writer_tx,
        reader: reader.abort_handle(),
    };
    if events
        .send(Event::Up {
            conn,
            est: Box::new(est),
        })
        .await
        .is_ok()
    {
        let _ = start_tx.send(());
    }
    Ok(())
}

async fn handshake(
    cfg: &HandshakeConfig,
    outbound: bool,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> Result<Established, String> {
    let mut hs = Handshake::new(cfg, outbound, rng);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        flush_handshake(&mut hs, wr).await?;
        let n = rd.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the peer closed the connection during the handshake".to_string());
        }
        match hs.handle_bytes(&buf[..n]) {
            Ok(Some(est)) => {
                flush_handshake(&mut hs, wr).await?;
                return Ok(est);
            }
            Ok(None) => {}
            Err(e) => {
                // Let the peer see our side of the handshake too, so it can log the same reason.
                let _ = flush_handshake(&mut hs, wr).await;
                return Err(e.to_string());
            }
        }
    }
}

async fn flush_handshake(hs: &mut Handshake, wr: &mut OwnedWriteHalf) -> Result<(), String> {
    while let Some(bytes) = hs.poll_transmit() {
        wr.write_all(&bytes).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn read_loop(
    conn: ConnId,
    mut rd: OwnedReadHalf,
    mut receiver: FrameReceiver,
    events: mpsc::Sender<Event>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let reason = loop {
        loop {
            match receiver.next() {
                Ok(Some(msg)) => {
                    if events.send(Event::Message { conn, msg }).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = events
                        .send(Event::Down {
                            conn,
                            reason: format!("bad frame: {e}"),
                        })
                        .await;
                    return;
                }
            }
        }
        match rd.read(&mut buf).await {
            Ok(0) => break "the peer closed the connection".to_string(),
            Ok(n) => receiver.push(&buf[..n]),
            Err(e) => break e.to_string(),
        }
    };
    let _ = events.send(Event::Down { conn, reason }).await;
}

async fn write_loop(
    conn: ConnId,
    mut wr: OwnedWriteHalf,
    mut sender: FrameSender,
    mut frames: mpsc::Receiver<MeshMessage>,
    events: mpsc::Sender<Event>,
) {
    while let Some(msg) = frames.recv().await {
        let result = match sender.seal(&msg) {
            Ok(bytes) => wr.write_all(&bytes).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = result {
            let _ = events.send(Event::Down { conn, reason }).await;
            return;
        }
    }
    let _ = wr.shutdown().await;
}
