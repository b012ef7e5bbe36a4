//! The sans-IO connection handshake.
//!
//! Both sides send a plaintext Hello at once: `b"weft"`, the protocol version
//! (u32 BE), the body length (u32 BE), then a `prost` [`Hello`] with the peer's
//! identity, whether it has a password, an X25519 ephemeral key (with a
//! password) and 32 random bytes. A magic, version, length or encryption
//! mismatch fails the handshake with a one-line [`HandshakeError`].
//!
//! With a password, both sides derive frame keys with HKDF-SHA256 (salt = the
//! SHA-256 of both Hellos, initiator first; input = X25519 shared secret ||
//! password) and each sends a sealed "confirm" frame; a confirm that does not
//! open means the passwords differ. The password never crosses the wire.
//!
//! Use: [`Handshake::new`], write [`Handshake::poll_transmit`] output, feed
//! reads to [`Handshake::handle_bytes`] until it returns [`Established`], then
//! write [`Handshake::poll_transmit`] output once more (the confirm frame may
//! still be queued) before the first frame from [`Established::sender`].

use bytes::{Buf, BytesMut};
use hkdf::Hkdf;
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use x25519_dalek::{EphemeralSecret, PublicKey};
use zeroize::Zeroizing;

use super::frame::{FrameError, FrameReceiver, FrameSender};
use super::peer::{PeerInfo, PeerName};
use super::wire::Hello;

/// Version of the mesh protocol spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;

/// First bytes of every weft mesh connection.
const MAGIC: &[u8; 4] = b"weft";
/// Magic + version + body length.
const HELLO_HEADER: usize = 12;
/// Largest Hello body accepted.
const MAX_HELLO_LEN: usize = 64 * 1024;
/// Plaintext of the confirm frame each side seals with its new key.
const CONFIRM: &[u8] = b"weft confirm v1";

/// Why a handshake failed; each message is one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The remote did not start with `weft` (an HTTP client, a port scanner, ...).
    #[error(
        "remote is not a weft peer (bad magic {got:02x?}): check that nothing else connects to the mesh port"
    )]
    BadMagic {
        /// The first bytes received.
        got: Vec<u8>,
    },
    /// The remote speaks another protocol version.
    #[error(
        "remote peer speaks mesh protocol version {theirs}, we speak {ours}: run the same weft version on both hosts"
    )]
    VersionMismatch {
        /// Our version.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The remote announced a Hello larger than allowed.
    #[error(
        "remote peer sent a {len}-byte hello (limit {MAX_HELLO_LEN}): not a weft peer or a corrupt stream"
    )]
    Oversized {
        /// Announced length.
        len: usize,
    },
    /// The Hello does not decode or has invalid fields.
    #[error("remote peer sent an invalid hello ({0}): check both hosts run weft")]
    BadHello(String),
    /// One side has a password and the other does not.
    #[error(
        "{}",
        if *local_has_password {
            "remote peer has no password but we do: set the same WEFT_PASSWORD on both hosts"
        } else {
            "remote peer uses a password but we have none: set the same WEFT_PASSWORD on both hosts"
        }
    )]
    EncryptionMismatch {
        /// Whether we have a password.
        local_has_password: bool,
    },
    /// The remote's confirm frame did not open: the passwords differ.
    #[error("remote peer uses a different password: check WEFT_PASSWORD on both hosts")]
    PasswordMismatch,
    /// The key exchange produced an all-zero secret (malicious public key).
    #[error("remote peer sent a weak X25519 key: refusing the connection")]
    WeakKey,
    /// Framing failed while sealing or reading the confirm.
    #[error("handshake framing failed: {0}")]
    Frame(#[from] FrameError),
    /// `handle_bytes` was called after the handshake already completed or failed.
    #[error("handshake already finished: feed further bytes to the FrameReceiver")]
    Finished,
}

/// What the local side brings to a handshake.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// Our identity.
    pub local: PeerInfo,
    /// Mesh password; `None` for an unencrypted mesh.
    pub password: Option<Vec<u8>>,
}

/// A completed handshake.
pub struct Established {
    /// Who is on the other end.
    pub remote: PeerInfo,
    /// Whether frames are encrypted.
    pub encrypted: bool,
    /// Seals our messages.
    pub sender: FrameSender,
    /// Opens the remote's messages.
    pub receiver: FrameReceiver,
    /// Bytes received after the handshake: push them into `receiver`.
    pub leftover: Vec<u8>,
    /// 64 bytes of key material for the sleeve (UDP) data path, when encrypted.
    pub sleeve_key_material: Option<Zeroizing<[u8; 64]>>,
}

/// Where the handshake is.
enum Stage {
    /// Waiting for the remote Hello.
    AwaitHello { secret: Option<EphemeralSecret> },
    /// Encrypted: keys derived, waiting for the remote confirm frame.
    AwaitConfirm(Box<Confirming>),
    /// Completed or failed.
    Finished,
}

/// State while waiting for the remote confirm frame.
struct Confirming {
    remote: PeerInfo,
    sender: FrameSender,
    receiver: FrameReceiver,
    sleeve: Zeroizing<[u8; 64]>,
}

/// One side of a handshake, driven by the bytes the caller moves.
pub struct Handshake {
    outbound: bool,
    password: Option<Zeroizing<Vec<u8>>>,
    own_hello: Vec<u8>,
    outgoing: Vec<u8>,
    incoming: BytesMut,
    stage: Stage,
}

impl Handshake {
    /// Starts a handshake; `outbound` is true on the side that dialled. Our
    /// Hello is queued for [`Handshake::poll_transmit`] at once.
    pub fn new(
        cfg: &HandshakeConfig,
        outbound: bool,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Handshake {
        let secret = cfg
            .password
            .as_ref()
            .map(|_| EphemeralSecret::random_from_rng(&mut *rng));
        let mut random = vec![0u8; 32];
        rng.fill_bytes(&mut random);
        let hello = Hello {
            name: cfg.local.name.0,
            nickname: cfg.local.nickname.clone(),
            uid: cfg.local.uid,
            listen_port: u32::from(cfg.local.listen_port),
            encrypted: secret.is_some(),
            ephemeral_public: secret
                .as_ref()
                .map(|s| PublicKey::from(s).as_bytes().to_vec())
                .unwrap_or_default(),
            random,
        };
        let body = hello.encode_to_vec();
        let mut own_hello = Vec::with_capacity(HELLO_HEADER + body.len());
        own_hello.extend_from_slice(MAGIC);
        own_hello.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        // A Hello is a few hundred bytes; the nickname is the only variable part.
        own_hello.extend_from_slice(&(body.len() as u32).to_be_bytes());
        own_hello.extend_from_slice(&body);
        Handshake {
            outbound,
            password: cfg.password.clone().map(Zeroizing::new),
            outgoing: own_hello.clone(),
            own_hello,
            incoming: BytesMut::new(),
            stage: Stage::AwaitHello { secret },
        }
    }

    /// Bytes ready to write to the socket, if any. Call it again after
    /// [`Handshake::handle_bytes`] returns [`Established`]: our confirm frame
    /// may still be queued and must precede the first sealed frame.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.outgoing.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.outgoing))
        }
    }

    /// Feeds bytes read from the socket. Returns `Some` once the handshake is
    /// complete; any error is final and the connection must be closed.
    pub fn handle_bytes(&mut self, data: &[u8]) -> Result<Option<Established>, HandshakeError> {
        self.incoming.extend_from_slice(data);
        let result = self.advance();
        if result.is_err() {
            self.stage = Stage::Finished;
        }
        result
    }

    fn advance(&mut self) -> Result<Option<Established>, HandshakeError> {
        if let Stage::AwaitHello { .. } = self.stage {
            let Some(remote_hello) = self.take_hello()? else {
                return Ok(None);
            };
            let Stage::AwaitHello { secret } = std::mem::replace(&mut self.stage, Stage::Finished)
            else {
                return Err(HandshakeError::Finished);
            };
            let (hello, raw) = remote_hello;
            let remote = remote_info(&hello)?;
            if hello.encrypted != self.password.is_some() {
                return Err(HandshakeError::EncryptionMismatch {
                    local_has_password: self.password.is_some(),
                });
            }
            match (secret, &self.password) {
                (Some(secret), Some(password)) => {
                    let keys = self.derive_keys(secret, &hello, &raw, password)?;
                    let (mut sender, receiver) = keys.frames(self.outbound);
                    let confirm = sender.seal_bytes(CONFIRM)?;
                    self.outgoing.extend_from_slice(&confirm);
                    self.stage = Stage::AwaitConfirm(Box::new(Confirming {
                        remote,
                        sender,
                        receiver,
                        sleeve: keys.sleeve,
                    }));
                }
                _ => {
                    let leftover = self.incoming.split().to_vec();
                    return Ok(Some(self.establish(
                        remote,
                        FrameSender::plain(),
                        FrameReceiver::plain(),
                        leftover,
                        None,
                    )));
                }
            }
        }
        match std::mem::replace(&mut self.stage, Stage::Finished) {
            Stage::AwaitConfirm(confirming) => {
                let Confirming {
                    remote,
                    sender,
                    mut receiver,
                    sleeve,
                } = *confirming;
                receiver.push(&self.incoming.split());
                match receiver.next_bytes() {
                    Ok(Some(confirm)) if confirm == CONFIRM => {
                        let leftover = receiver.take_buffered();
                        Ok(Some(self.establish(
                            remote,
                            sender,
                            receiver,
                            leftover,
                            Some(sleeve),
                        )))
                    }
                    Ok(Some(_)) | Err(FrameError::Authentication) => {
                        Err(HandshakeError::PasswordMismatch)
                    }
                    Ok(None) => {
                        // The partial confirm stays buffered in `receiver`.
                        self.stage = Stage::AwaitConfirm(Box::new(Confirming {
                            remote,
                            sender,
                            receiver,
                            sleeve,
                        }));
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Stage::AwaitHello { .. } | Stage::Finished => Err(HandshakeError::Finished),
        }
    }

    /// Parses the remote Hello once it is complete, checking the header as
    /// soon as its bytes arrive so non-weft clients fail fast.
    fn take_hello(&mut self) -> Result<Option<(Hello, Vec<u8>)>, HandshakeError> {
        let have = self.incoming.len();
        let magic_len = have.min(MAGIC.len());
        if self.incoming[..magic_len] != MAGIC[..magic_len] {
            return Err(HandshakeError::BadMagic {
                got: self.incoming[..magic_len].to_vec(),
            });
        }
        if have < 8 {
            return Ok(None);
        }
        let theirs = read_u32(&self.incoming[4..8]);
        if theirs != PROTOCOL_VERSION {
            return Err(HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs,
            });
        }
        if have < HELLO_HEADER {
            return Ok(None);
        }
        let len = read_u32(&self.incoming[8..12]) as usize;
        if len > MAX_HELLO_LEN {
            return Err(HandshakeError::Oversized { len });
        }
        if have < HELLO_HEADER + len {
            return Ok(None);
        }
        let raw = self.incoming.split_to(HELLO_HEADER + len).to_vec();
        let hello = Hello::decode(&raw[HELLO_HEADER..])
            .map_err(|e| HandshakeError::BadHello(e.to_string()))?;
        Ok(Some((hello, raw)))
    }

    fn derive_keys(
        &self,
        secret: EphemeralSecret,
        hello: &Hello,
        remote_raw: &[u8],
        password: &[u8],
    ) -> Result<SessionKeys, HandshakeError> {
        let remote_key: [u8; 32] = hello.ephemeral_public.as_slice().try_into().map_err(|_| {
            HandshakeError::BadHello(format!(
                "ephemeral key is {} bytes, expected 32",
                hello.ephemeral_public.len()
            ))
        })?;
        let shared = secret.diffie_hellman(&PublicKey::from(remote_key));
        if !shared.was_contributory() {
            return Err(HandshakeError::WeakKey);
        }
        let (first, second) = if self.outbound {
            (self.own_hello.as_slice(), remote_raw)
        } else {
            (remote_raw, self.own_hello.as_slice())
        };
        let salt = Sha256::new()
            .chain_update(first)
            .chain_update(second)
            .finalize();
        let mut ikm = Zeroizing::new(Vec::with_capacity(32 + password.len()));
        ikm.extend_from_slice(shared.as_bytes());
        ikm.extend_from_slice(password);
        Ok(SessionKeys::derive(&salt, &ikm))
    }

    fn establish(
        &mut self,
        remote: PeerInfo,
        sender: FrameSender,
        receiver: FrameReceiver,
        leftover: Vec<u8>,
        sleeve: Option<Zeroizing<[u8; 64]>>,
    ) -> Established {
        self.stage = Stage::Finished;
        Established {
            remote,
            encrypted: sender.is_encrypted(),
            sender,
            receiver,
            leftover,
            sleeve_key_material: sleeve,
        }
    }
}

/// Keys derived from one handshake.
struct SessionKeys {
    initiator_to_responder: Zeroizing<[u8; 32]>,
    responder_to_initiator: Zeroizing<[u8; 32]>,
    sleeve: Zeroizing<[u8; 64]>,
}

impl SessionKeys {
    fn derive(salt: &[u8], ikm: &[u8]) -> SessionKeys {
        let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
        let mut keys = SessionKeys {
            initiator_to_responder: Zeroizing::new([0; 32]),
            responder_to_initiator: Zeroizing::new([0; 32]),
            sleeve: Zeroizing::new([0; 64]),
        };
        // Output lengths are far below HKDF's 255 * 32 byte limit, so expand cannot fail.
        let outputs: [(&[u8], &mut [u8]); 3] = [
            (
                b"weft mesh initiator to responder",
                &mut keys.initiator_to_responder[..],
            ),
            (
                b"weft mesh responder to initiator",
                &mut keys.responder_to_initiator[..],
            ),
            (b"weft sleeve key material", &mut keys.sleeve[..]),
        ];
        for (info, out) in outputs {
            hk.expand(info, out)
                .expect("HKDF output length is within limits");
        }
        keys
    }

    /// Our sender and receiver, depending on which side dialled.
    fn frames(&self, outbound: bool) -> (FrameSender, FrameReceiver) {
        let (send, recv) = if outbound {
            (&self.initiator_to_responder, &self.responder_to_initiator)
        } else {
            (&self.responder_to_initiator, &self.initiator_to_responder)
        };
        (FrameSender::encrypted(send), FrameReceiver::encrypted(recv))
    }
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut b = bytes;
    b.get_u32()
}

fn remote_info(hello: &Hello) -> Result<PeerInfo, HandshakeError> {
    let name =
        PeerName::from_u64(hello.name).map_err(|e| HandshakeError::BadHello(e.to_string()))?;
    let listen_port = u16::try_from(hello.listen_port).map_err(|_| {
        HandshakeError::BadHello(format!("listen port {} out of range", hello.listen_port))
    })?;
    if hello.random.len() != 32 {
        return Err(HandshakeError::BadHello(format!(
            "random field is {} bytes, expected 32",
            hello.random.len()
        )));
    }
    Ok(PeerInfo {
        name,
        nickname: hello.nickname.clone(),
        uid: hello.uid,
        listen_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::wire::MeshMessage;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn config(name: u64, password: Option<&[u8]>) -> HandshakeConfig {
        HandshakeConfig {
            local: PeerInfo {
                name: PeerName(name),
                nickname: format!("host{name}"),
                uid: name * 10,
                listen_port: 6783,
            },
            password: password.map(<[u8]>::to_vec),
        }
    }

    type Outcome = Result<Established, HandshakeError>;

    /// Moves bytes between two handshakes (in `chunk`-byte pieces) until both finish.
    fn run(a: &HandshakeConfig, b: &HandshakeConfig, chunk: usize) -> (Outcome, Outcome) {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut sides = [
            Handshake::new(a, true, &mut rng),
            Handshake::new(b, false, &mut rng),
        ];
        let mut results: [Option<Outcome>; 2] = [None, None];
        let mut wires: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        loop {
            let mut moved = false;
            for i in 0..2 {
                if results[i].is_none()
                    && let Some(bytes) = sides[i].poll_transmit()
                {
                    wires[1 - i].extend(bytes);
                    moved = true;
                }
            }
            for i in 0..2 {
                if results[i].is_some() || wires[i].is_empty() {
                    continue;
                }
                moved = true;
                let n = chunk.min(wires[i].len());
                let piece: Vec<u8> = wires[i].drain(..n).collect();
                match sides[i].handle_bytes(&piece) {
                    Ok(Some(mut est)) => {
                        // Flush what the handshake still has queued, then a frame.
                        while let Some(bytes) = sides[i].poll_transmit() {
                            wires[1 - i].extend(bytes);
                        }
                        let hello = est.sender.seal(&MeshMessage::gossip("hi", vec![i as u8]));
                        wires[1 - i].extend(hello.unwrap());
                        results[i] = Some(Ok(est));
                    }
                    Ok(None) => {}
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            if !moved {
                // Both finished, or one failed and the other waits forever.
                break;
            }
        }
        // Deliver what is left on the wires to the established receivers.
        for i in 0..2 {
            if let Some(Ok(est)) = &mut results[i] {
                let rest = std::mem::take(&mut wires[i]);
                let leftover = std::mem::take(&mut est.leftover);
                est.receiver.push(&leftover);
                est.receiver.push(&rest);
            }
        }
        let [a, b] = results;
        (
            a.unwrap_or(Err(HandshakeError::Finished)),
            b.unwrap_or(Err(HandshakeError::Finished)),
        )
    }

    fn assert_talks(mut est: Established, from: u8) {
        let msg = est.receiver.next().unwrap().unwrap();
        assert_eq!(msg, MeshMessage::gossip("hi", vec![from]));
    }

    #[test]
    fn same_password_establishes_encrypted_session() {
        for chunk in [1, 7, 4096] {
            let (a, b) = run(
                &config(1, Some(b"s3cret")),
                &config(2, Some(b"s3cret")),
                chunk,
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(a.encrypted && b.encrypted);
            assert_eq!(a.remote.name, PeerName(2));
            assert_eq!(b.remote.name, PeerName(1));
            assert_eq!(b.remote.nickname, "host1");
            assert_eq!(a.sleeve_key_material, b.sleeve_key_material);
            assert!(a.sleeve_key_material.is_some());
            assert_talks(a, 1);
            assert_talks(b, 0);
        }
    }

    #[test]
    fn no_password_establishes_plain_session() {
        let (a, b) = run(&config(1, None), &config(2, None), 5);
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(!a.encrypted && !b.encrypted);
        assert!(a.sleeve_key_material.is_none());
        assert_talks(a, 1);
        assert_talks(b, 0);
    }

    #[test]
    fn wrong_password_fails_on_both_sides() {
        let (a, b) = run(&config(1, Some(b"one")), &config(2, Some(b"two")), 4096);
        assert!(matches!(a, Err(HandshakeError::PasswordMismatch)));
        assert!(matches!(b, Err(HandshakeError::PasswordMismatch)));
        let msg = HandshakeError::PasswordMismatch.to_string();
        assert!(msg.contains("WEFT_PASSWORD"), "{msg}");
    }

    #[test]
    fn password_never_crosses_the_wire() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let password = b"very-distinctive-password";
        let mut hs = Handshake::new(&config(1, Some(password)), true, &mut rng);
        let hello = hs.poll_transmit().unwrap();
        assert!(!hello.windows(password.len()).any(|w| w == password));
    }

    #[test]
    fn plain_versus_encrypted_is_refused_on_both_sides() {
        let (a, b) = run(&config(1, Some(b"pw")), &config(2, None), 4096);
        match a {
            Err(
                e @ HandshakeError::EncryptionMismatch {
                    local_has_password: true,
                },
            ) => {
                assert!(e.to_string().contains("remote peer has no password"), "{e}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("encrypted side accepted a plain peer"),
        }
        assert!(matches!(
            b,
            Err(HandshakeError::EncryptionMismatch {
                local_has_password: false
            })
        ));
    }

    #[test]
    fn version_mismatch_is_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut ours = Handshake::new(&config(1, None), true, &mut rng);
        let mut theirs = Handshake::new(&config(2, None), false, &mut rng)
            .poll_transmit()
            .unwrap();
        theirs[4..8].copy_from_slice(&7u32.to_be_bytes());
        // Only the header is needed to decide.
        let err = ours.handle_bytes(&theirs[..8]).err().unwrap();
        assert!(matches!(
            err,
            HandshakeError::VersionMismatch { ours: 1, theirs: 7 }
        ));
        assert!(err.to_string().contains("version 7"), "{err}");
        assert!(matches!(
            ours.handle_bytes(&theirs[8..]),
            Err(HandshakeError::Finished)
        ));
    }

    #[test]
    fn http_client_and_garbage_are_refused_at_once() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut hs = Handshake::new(&config(1, None), false, &mut rng);
        let err = hs.handle_bytes(b"GET / HTTP/1.1\r\n").err().unwrap();
        assert!(matches!(err, HandshakeError::BadMagic { .. }));
        assert!(err.to_string().contains("not a weft peer"), "{err}");

        let mut hs = Handshake::new(&config(1, None), false, &mut rng);
        assert!(matches!(hs.handle_bytes(b"we"), Ok(None)));
        assert!(matches!(
            hs.handle_bytes(b"x"),
            Err(HandshakeError::BadMagic { .. })
        ));
    }

    #[test]
    fn oversized_hello_length_is_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut hs = Handshake::new(&config(1, None), false, &mut rng);
        let mut header = b"weft".to_vec();
        header.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            hs.handle_bytes(&header),
            Err(HandshakeError::Oversized { .. })
        ));
    }

    #[test]
    fn undecodable_hello_body_is_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut hs = Handshake::new(&config(1, None), false, &mut rng);
        let mut frame = b"weft".to_vec();
        frame.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        frame.extend_from_slice(&3u32.to_be_bytes());
        frame.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            hs.handle_bytes(&frame),
            Err(HandshakeError::BadHello(_))
        ));
    }

    #[test]
    fn all_zero_ephemeral_key_is_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut hs = Handshake::new(&config(1, Some(b"pw")), true, &mut rng);
        let hello = Hello {
            name: 2,
            nickname: "evil".into(),
            uid: 1,
            listen_port: 6783,
            encrypted: true,
            ephemeral_public: vec![0; 32],
            random: vec![0; 32],
        }
        .encode_to_vec();
        let mut frame = b"weft".to_vec();
        frame.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        frame.extend_from_slice(&(hello.len() as u32).to_be_bytes());
        frame.extend_from_slice(&hello);
        assert!(matches!(
            hs.handle_bytes(&frame),
            Err(HandshakeError::WeakKey)
        ));
    }
}
