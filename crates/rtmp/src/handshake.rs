//! RTMP handshake state machines (server and client side), sans-IO.
//!
//! The handshake is described in the Adobe RTMP specification 1.0, section 5.2
//! ("Handshake"): each peer sends a one-byte version (C0/S0, section 5.2.2), a
//! 1536-byte random block (C1/S1, section 5.2.3) and finally an echo of the
//! peer's block (C2/S2, section 5.2.4). Section 5.2.5 gives the ordering
//! rules: the server may send S0+S1 as soon as it has C0 (we wait for C1 too,
//! because S1/S2 depend on it) and S2 once it has C1; the client sends C2 once
//! it has S1, and the handshake is complete after each side has received the
//! other's second block.
//!
//! The published spec only documents the "simple" variant. Flash Player,
//! FMLE, OBS and FFmpeg additionally use the undocumented "digest" (a.k.a.
//! "complex" or "FP9") handshake, which embeds HMAC-SHA256 digests in C1/S1
//! and signs C2/S2. Its layout is the one implemented by nginx-rtmp
//! (`ngx_rtmp_handshake.c`), librtmp (`handshake.h`) and FFmpeg (`rtmpproto.c`):
//!
//! * C1/S1: `time(4) | version(4) | 1528 bytes`, with a 32-byte digest
//!   somewhere inside the 1528 bytes. Its offset is derived from four bytes
//!   of the block itself (see [`DigestScheme`]). The digest is
//!   `HMAC-SHA256(partial key, block without the 32 digest bytes)`, where the
//!   partial key is the first 30 bytes of [`FLASH_PLAYER_KEY`] for C1 and the
//!   first 36 bytes of [`FLASH_MEDIA_SERVER_KEY`] for S1.
//! * C2/S2: `random(1504) | signature(32)` with
//!   `signature = HMAC-SHA256(HMAC-SHA256(full key, peer's C1/S1 digest), random)`;
//!   the full key is the 68-byte FMS key for S2 and the 62-byte FP key for C2.
//!
//! The types here perform no I/O and never read a clock: the caller passes
//! the epoch timestamp and a random number generator in, feeds received bytes
//! and writes the produced bytes to the socket itself.

use bytes::{Buf, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Size of C1/S1/C2/S2 (RTMP spec 1.0, section 5.2.3).
pub const HANDSHAKE_SIZE: usize = 1536;

/// The only plain-RTMP protocol version (C0/S0 value, RTMP spec 1.0 section 5.2.2).
pub const RTMP_VERSION: u8 = 3;

/// Length of an HMAC-SHA256 digest as embedded in the handshake blocks.
pub const DIGEST_LEN: usize = 32;

/// Key used by Flash Player (clients) for the digest handshake.
///
/// `"Genuine Adobe Flash Player 001"` followed by 32 fixed bytes. The first
/// 30 bytes (the text) sign C1; all 62 bytes key the C2 signature.
pub const FLASH_PLAYER_KEY: [u8; 62] = *b"Genuine Adobe Flash Player 001\
    \xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\
    \x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";

/// Key used by Flash Media Server (servers) for the digest handshake.
///
/// `"Genuine Adobe Flash Media Server 001"` followed by the same 32 fixed
/// bytes as [`FLASH_PLAYER_KEY`]. The first 36 bytes (the text) sign S1; all
/// 68 bytes key the S2 signature.
pub const FLASH_MEDIA_SERVER_KEY: [u8; 68] = *b"Genuine Adobe Flash Media Server 001\
    \xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\
    \x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";

/// Length of the textual part of [`FLASH_PLAYER_KEY`] that signs C1.
const FP_PARTIAL_KEY_LEN: usize = 30;
/// Length of the textual part of [`FLASH_MEDIA_SERVER_KEY`] that signs S1.
const FMS_PARTIAL_KEY_LEN: usize = 36;

/// Version we advertise in S1 bytes 4..8 for a digest handshake. Any nonzero
/// value works; this is the one nginx-rtmp sends, so clients that were happy
/// with nginx-rtmp see the same thing.
const SERVER_VERSION: u32 = 0x0D0E_0A0D;

/// Version we advertise in C1 bytes 4..8 for a digest handshake (Flash
/// Player-style). Its nonzero-ness is what tells servers to look for a digest.
const CLIENT_VERSION: u32 = 0x8000_0702;

/// Offset of the signature in a C2/S2 block of the digest handshake.
const SIGNATURE_OFFSET: usize = HANDSHAKE_SIZE - DIGEST_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Errors that abort a handshake. After an error the connection should be
/// closed; the offending byte is left in the input buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer asked for RTMPE (C0/S0 = 6, or the 8/9 variants), the
    /// Adobe-proprietary encrypted transport. We only speak plain RTMP.
    #[error("encrypted RTMP (RTMPE) is not supported (handshake version {0})")]
    EncryptedNotSupported(u8),
    /// The first byte is neither 3 nor an RTMPE version; most likely the peer
    /// is not speaking RTMP at all (e.g. `G` = 71 from an HTTP request).
    #[error("unsupported RTMP handshake version {0} (expected 3)")]
    UnsupportedVersion(u8),
}

/// Progress reported by [`ServerHandshake::feed`] and [`ClientHandshake::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// More input is needed.
    InProgress,
    /// The handshake is complete; any bytes left in the input buffer belong to
    /// the RTMP chunk stream.
    Done,
}

/// Where the 32-byte digest lives inside a C1/S1 block of the digest
/// handshake. Both schemes are in use in the wild (FFmpeg uses scheme 0 for
/// RTMP and scheme 1 for RTMPE, some Flash Player versions use scheme 1), so a
/// server has to try both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestScheme {
    /// Offset = (sum of bytes 8..12) % 728 + 12.
    Scheme0,
    /// Offset = (sum of bytes 772..776) % 728 + 776.
    Scheme1,
}

impl DigestScheme {
    /// Both schemes in the order a server tries them.
    const ALL: [DigestScheme; 2] = [DigestScheme::Scheme0, DigestScheme::Scheme1];

    /// Start of the four bytes whose sum selects the digest offset.
    fn base(self) -> usize {
        match self {
            DigestScheme::Scheme0 => 8,
            DigestScheme::Scheme1 => 772,
        }
    }

    /// The other scheme.
    fn other(self) -> DigestScheme {
        match self {
            DigestScheme::Scheme0 => DigestScheme::Scheme1,
            DigestScheme::Scheme1 => DigestScheme::Scheme0,
        }
    }

    /// Byte offset of the digest inside a C1/S1 `block` under this scheme.
    ///
    /// The digest always fits: the largest result is 727 + 776 = 1503, and
    /// 1503 + 32 = 1535 <= 1536.
    pub fn digest_offset(self, block: &[u8; HANDSHAKE_SIZE]) -> usize {
        let base = self.base();
        let sum: usize = block[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        sum % 728 + base + 4
    }
}

// The largest digest offset (727 + 776) still leaves room for the digest.
const _: () = assert!(727 + 776 + DIGEST_LEN <= HANDSHAKE_SIZE);

/// HMAC-SHA256 of `block` with the 32 bytes at `offset` left out.
fn block_digest(block: &[u8; HANDSHAKE_SIZE], offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(&block[..offset]);
    mac.update(&block[offset + DIGEST_LEN..]);
    mac.finalize().into_bytes().into()
}

/// Checks the C1/S1 digest under `scheme`; returns its offset if valid.
fn verify_block_digest(block: &[u8; HANDSHAKE_SIZE], scheme: DigestScheme, key: &[u8]) -> Option<usize> {
    let offset = scheme.digest_offset(block);
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(&block[..offset]);
    mac.update(&block[offset + DIGEST_LEN..]);
    mac.verify_slice(&block[offset..offset + DIGEST_LEN]).ok().map(|()| offset)
}

/// Writes the C1/S1 digest for `scheme` into `block` and returns its offset.
fn imprint_block_digest(block: &mut [u8; HANDSHAKE_SIZE], scheme: DigestScheme, key: &[u8]) -> usize {
    let offset = scheme.digest_offset(block);
    let digest = block_digest(block, offset, key);
    block[offset..offset + DIGEST_LEN].copy_from_slice(&digest);
    offset
}

/// Key for signing C2/S2: `HMAC-SHA256(full key, peer's C1/S1 digest)`.
fn signature_key(full_key: &[u8], peer_digest: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(full_key).expect("HMAC accepts keys of any length");
    mac.update(peer_digest);
    let derived = mac.finalize().into_bytes();
    HmacSha256::new_from_slice(&derived).expect("HMAC accepts keys of any length")
}

/// Signature over the first 1504 bytes of a C2/S2 block.
fn block_signature(block: &[u8; HANDSHAKE_SIZE], full_key: &[u8], peer_digest: &[u8]) -> [u8; DIGEST_LEN] {
    let mut mac = signature_key(full_key, peer_digest);
    mac.update(&block[..SIGNATURE_OFFSET]);
    mac.finalize().into_bytes().into()
}

/// Checks the C0/S0 byte (RTMP spec 1.0 section 5.2.2).
fn check_version(version: u8) -> Result<(), HandshakeError> {
    match version {
        RTMP_VERSION => Ok(()),
        // 6 is RTMPE as sent by Flash Player/FFmpeg; 8 and 9 are the
        // XTEA/Blowfish-wrapped RTMPE variants known from librtmp.
        6 | 8 | 9 => Err(HandshakeError::EncryptedNotSupported(version)),
        other => Err(HandshakeError::UnsupportedVersion(other)),
    }
}

/// Removes a full handshake block from the front of `input`.
fn take_block(input: &mut BytesMut) -> Box<[u8; HANDSHAKE_SIZE]> {
    let mut block = Box::new([0u8; HANDSHAKE_SIZE]);
    block.copy_from_slice(&input[..HANDSHAKE_SIZE]);
    input.advance(HANDSHAKE_SIZE);
    block
}

fn random_block(rng: &mut impl rand::RngCore) -> Box<[u8; HANDSHAKE_SIZE]> {
    let mut block = Box::new([0u8; HANDSHAKE_SIZE]);
    rng.fill_bytes(&mut block[..]);
    block
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitC0C1,
    AwaitC2,
    Done,
}

/// Server side of the handshake: consumes C0, C1, C2 and produces S0, S1, S2.
///
/// S0+S1+S2 are written in one go as soon as C0+C1 are complete (the spec,
/// section 5.2.5, allows S2 once C1 is received), so that the client's C2 and
/// its first chunks (`connect`) are not delayed by an extra round trip.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    epoch_ms: u32,
    /// Randomness for S1, drawn up front so `feed` needs no RNG.
    s1: Box<[u8; HANDSHAKE_SIZE]>,
    /// Randomness for S2 in the digest variant.
    s2: Box<[u8; HANDSHAKE_SIZE]>,
    scheme: Option<DigestScheme>,
}

impl ServerHandshake {
    /// Creates a server handshake. `epoch_ms` is the server's timestamp put
    /// in S1 bytes 0..4 (spec section 5.2.3; any epoch, typically the
    /// server's uptime in milliseconds, truncated to 32 bits).
    pub fn new(epoch_ms: u32, rng: &mut impl rand::RngCore) -> Self {
        ServerHandshake {
            state: ServerState::AwaitC0C1,
            epoch_ms,
            s1: random_block(rng),
            s2: random_block(rng),
            scheme: None,
        }
    }

    /// Consumes handshake bytes from the front of `input` and appends the
    /// replies (S0+S1+S2, 3073 bytes in total) to `out`.
    ///
    /// Input may arrive in arbitrary pieces; call again whenever more bytes
    /// arrive. Returns [`HandshakeStatus::Done`] once C2 has been consumed;
    /// bytes after C2 are left in `input` (they are the first RTMP chunks).
    /// Once done, further calls return `Done` without touching `input`.
    ///
    /// C0 is checked as soon as its single byte arrives so that non-RTMP
    /// peers are rejected without waiting for 1536 more bytes.
    pub fn feed(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Result<HandshakeStatus, HandshakeError> {
        loop {
            match self.state {
                ServerState::AwaitC0C1 => {
                    let Some(&version) = input.first() else {
                        return Ok(HandshakeStatus::InProgress);
                    };
                    check_version(version)?;
                    if input.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(HandshakeStatus::InProgress);
                    }
                    input.advance(1);
                    let c1 = take_block(input);
                    self.respond(&c1, out);
                    self.state = ServerState::AwaitC2;
                }
                ServerState::AwaitC2 => {
                    // C2 is deliberately not validated: plenty of encoders
                    // send something other than an exact echo of S1 (or a
                    // bogus signature), and nginx-rtmp/FMS accept them too.
                    if input.len() < HANDSHAKE_SIZE {
                        return Ok(HandshakeStatus::InProgress);
                    }
                    input.advance(HANDSHAKE_SIZE);
                    self.state = ServerState::Done;
                }
                ServerState::Done => return Ok(HandshakeStatus::Done),
            }
        }
    }

    /// Whether the digest ("complex") handshake was negotiated. Only
    /// meaningful once C1 has been received.
    pub fn is_complex(&self) -> bool {
        self.scheme.is_some()
    }

    /// The digest scheme the client used, if the digest handshake was
    /// negotiated.
    pub fn digest_scheme(&self) -> Option<DigestScheme> {
        self.scheme
    }

    /// Whether C2 has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    /// Builds S0+S1+S2 in answer to `c1`.
    fn respond(&mut self, c1: &[u8; HANDSHAKE_SIZE], out: &mut Vec<u8>) {
        // A zero version field means a client that only knows the simple
        // handshake of spec section 5.2.3 (whose bytes 4..8 "MUST be all 0s").
        let client_version = u32::from_be_bytes([c1[4], c1[5], c1[6], c1[7]]);
        let fp_partial = &FLASH_PLAYER_KEY[..FP_PARTIAL_KEY_LEN];
        // If the version is nonzero but no digest validates under either
        // scheme, fall back to the simple handshake rather than failing, as
        // nginx-rtmp does: some encoders put a nonzero value there (e.g. a
        // real timestamp or garbage) without implementing the digest scheme,
        // and they are happy with a plain echo.
        let found = if client_version == 0 {
            None
        } else {
            DigestScheme::ALL.into_iter().find_map(|s| verify_block_digest(c1, s, fp_partial).map(|off| (s, off)))
        };
        self.scheme = found.map(|(s, _)| s);

        out.reserve(1 + 2 * HANDSHAKE_SIZE);
        out.push(RTMP_VERSION);
        let s1 = &mut *self.s1;
        s1[0..4].copy_from_slice(&self.epoch_ms.to_be_bytes());
        match found {
            None => {
                s1[4..8].fill(0);
                out.extend_from_slice(&s1[..]);
                // S2 is C1 echoed back (spec section 5.2.4: time, time2 and
                // random echo). Echoing time2 verbatim too is what
                // nginx-rtmp and FMS do and what every client expects.
                out.extend_from_slice(&c1[..]);
            }
            Some((scheme, c1_digest_offset)) => {
                // Answer in the client's scheme, as FMS does; clients
                // (librtmp, FFmpeg) look there first.
                s1[4..8].copy_from_slice(&SERVER_VERSION.to_be_bytes());
                imprint_block_digest(s1, scheme, &FLASH_MEDIA_SERVER_KEY[..FMS_PARTIAL_KEY_LEN]);
                out.extend_from_slice(&s1[..]);

                let c1_digest = &c1[c1_digest_offset..c1_digest_offset + DIGEST_LEN];
                let s2 = &mut *self.s2;
                let signature = block_signature(s2, &FLASH_MEDIA_SERVER_KEY, c1_digest);
                s2[SIGNATURE_OFFSET..].copy_from_slice(&signature);
                out.extend_from_slice(&s2[..]);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Initial,
    AwaitS0S1S2,
    Done,
}

/// Client side of the handshake: produces C0, C1, C2 and consumes S0, S1, S2.
///
/// Used for relaying/pushing to upstream servers and in tests.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    complex: bool,
    scheme: DigestScheme,
    epoch_ms: u32,
    c1: Box<[u8; HANDSHAKE_SIZE]>,
    /// Randomness for C2 in the digest variant.
    c2: Box<[u8; HANDSHAKE_SIZE]>,
    /// Offset of our digest inside C1 (digest variant only).
    c1_digest_offset: usize,
    s1_digest_valid: bool,
    s2_signature_valid: bool,
}

impl ClientHandshake {
    /// Creates a client handshake. With `complex` the digest handshake is
    /// offered (digest scheme 0, like FFmpeg; see
    /// [`with_digest_scheme`](Self::with_digest_scheme)); otherwise the
    /// simple handshake of spec section 5.2 is used. `epoch_ms` goes into C1
    /// bytes 0..4.
    pub fn new(complex: bool, epoch_ms: u32, rng: &mut impl rand::RngCore) -> Self {
        ClientHandshake {
            state: ClientState::Initial,
            complex,
            scheme: DigestScheme::Scheme0,
            epoch_ms,
            c1: random_block(rng),
            c2: random_block(rng),
            c1_digest_offset: 0,
            s1_digest_valid: false,
            s2_signature_valid: false,
        }
    }

    /// Selects the digest scheme used in C1 (only relevant with `complex`).
    /// Must be called before [`start`](Self::start).
    pub fn with_digest_scheme(mut self, scheme: DigestScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Appends C0+C1 to `out`. Calling it again has no effect.
    ///
    /// The client does not wait for S0 before sending C1 (spec section
    /// 5.2.5 allows both to be sent back to back).
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.state != ClientState::Initial {
            return;
        }
        let c1 = &mut *self.c1;
        c1[0..4].copy_from_slice(&self.epoch_ms.to_be_bytes());
        if self.complex {
            c1[4..8].copy_from_slice(&CLIENT_VERSION.to_be_bytes());
            self.c1_digest_offset = imprint_block_digest(c1, self.scheme, &FLASH_PLAYER_KEY[..FP_PARTIAL_KEY_LEN]);
        } else {
            c1[4..8].fill(0);
        }
        out.reserve(1 + HANDSHAKE_SIZE);
        out.push(RTMP_VERSION);
        out.extend_from_slice(&c1[..]);
        self.state = ClientState::AwaitS0S1S2;
    }

    /// Consumes S0+S1+S2 from the front of `input` (in arbitrary pieces) and,
    /// once all are in, appends C2 to `out` and returns
    /// [`HandshakeStatus::Done`]: the server sends nothing after S2, so the
    /// client may start sending chunks right behind C2. Bytes after S2 are
    /// left in `input`. If [`start`](Self::start) has not been called yet,
    /// C0+C1 are written first.
    pub fn feed(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Result<HandshakeStatus, HandshakeError> {
        loop {
            match self.state {
                ClientState::Initial => self.start(out),
                ClientState::AwaitS0S1S2 => {
                    let Some(&version) = input.first() else {
                        return Ok(HandshakeStatus::InProgress);
                    };
                    check_version(version)?;
                    if input.len() < 1 + 2 * HANDSHAKE_SIZE {
                        return Ok(HandshakeStatus::InProgress);
                    }
                    input.advance(1);
                    let s1 = take_block(input);
                    let s2 = take_block(input);
                    self.respond(&s1, &s2, out);
                    self.state = ClientState::Done;
                }
                ClientState::Done => return Ok(HandshakeStatus::Done),
            }
        }
    }

    /// Whether the digest handshake was completed, i.e. we offered it and
    /// the server's S1 carried a valid digest, so C2 was signed.
    pub fn is_complex(&self) -> bool {
        self.s1_digest_valid
    }

    /// Whether the server proved knowledge of the FMS key: S1's digest and
    /// S2's signature over our C1 digest both validated. Informational only;
    /// a mismatch is not treated as an error because servers implementing
    /// only half of the scheme still interoperate fine.
    pub fn server_digests_verified(&self) -> bool {
        self.s1_digest_valid && self.s2_signature_valid
    }

    /// Whether C2 has been written.
    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }

    /// Builds C2 in answer to S1/S2.
    fn respond(&mut self, s1: &[u8; HANDSHAKE_SIZE], s2: &[u8; HANDSHAKE_SIZE], out: &mut Vec<u8>) {
        let s1_digest_offset = if self.complex {
            // Servers normally answer in our scheme, but nginx-rtmp always
            // uses scheme 0, so try the other one too (as librtmp does).
            let fms_partial = &FLASH_MEDIA_SERVER_KEY[..FMS_PARTIAL_KEY_LEN];
            verify_block_digest(s1, self.scheme, fms_partial)
                .or_else(|| verify_block_digest(s1, self.scheme.other(), fms_partial))
        } else {
            None
        };
        out.reserve(HANDSHAKE_SIZE);
        match s1_digest_offset {
            None => {
                // Simple handshake, or a server that ignored our digest:
                // C2 echoes S1 (spec section 5.2.4).
                out.extend_from_slice(&s1[..]);
            }
            Some(offset) => {
                self.s1_digest_valid = true;
                let c1_digest = &self.c1[self.c1_digest_offset..self.c1_digest_offset + DIGEST_LEN];
                let expected = block_signature(s2, &FLASH_MEDIA_SERVER_KEY, c1_digest);
                self.s2_signature_valid = expected[..] == s2[SIGNATURE_OFFSET..];

                let s1_digest = &s1[offset..offset + DIGEST_LEN];
                let c2 = &mut *self.c2;
                let signature = block_signature(c2, &FLASH_PLAYER_KEY, s1_digest);
                c2[SIGNATURE_OFFSET..].copy_from_slice(&signature);
                out.extend_from_slice(&c2[..]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    /// Feeds `data` to `feed` split at the given (sorted) cut points and
    /// returns the last status; everything after the handshake stays in
    /// the returned buffer.
    fn feed_in_pieces(
        data: &[u8],
        cuts: &[usize],
        out: &mut Vec<u8>,
        mut feed: impl FnMut(&mut BytesMut, &mut Vec<u8>) -> Result<HandshakeStatus, HandshakeError>,
    ) -> (HandshakeStatus, BytesMut) {
        let mut input = BytesMut::new();
        let mut status = HandshakeStatus::InProgress;
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            input.extend_from_slice(&data[prev..cut]);
            prev = cut;
            status = feed(&mut input, out).expect("handshake failed");
        }
        (status, input)
    }

    /// Runs a full client <-> server exchange, splitting each direction's
    /// bytes at the given cut points. Returns (client, server, leftover at
    /// server).
    fn run(
        complex: bool,
        cuts_c0c1: &[usize],
        cuts_s: &[usize],
        cuts_c2: &[usize],
    ) -> (ClientHandshake, ServerHandshake, BytesMut) {
        let mut r = rng(7);
        let mut client = ClientHandshake::new(complex, 1000, &mut r);
        let mut server = ServerHandshake::new(2000, &mut r);

        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);

        let mut s_out = Vec::new();
        let (st, rest) = feed_in_pieces(&c0c1, cuts_c0c1, &mut s_out, |i, o| server.feed(i, o));
        assert_eq!(st, HandshakeStatus::InProgress);
        assert!(rest.is_empty());
        assert_eq!(s_out.len(), 1 + 2 * HANDSHAKE_SIZE);

        let mut c2 = Vec::new();
        let (st, rest) = feed_in_pieces(&s_out, cuts_s, &mut c2, |i, o| client.feed(i, o));
        assert_eq!(st, HandshakeStatus::Done);
        assert!(rest.is_empty());
        assert_eq!(c2.len(), HANDSHAKE_SIZE);

        // C2 followed by what would be the first RTMP chunk.
        c2.extend_from_slice(b"\x03chunk");
        let mut none = Vec::new();
        let (st, rest) = feed_in_pieces(&c2, cuts_c2, &mut none, |i, o| server.feed(i, o));
        assert_eq!(st, HandshakeStatus::Done);
        assert!(none.is_empty());
        (client, server, rest)
    }

    #[test]
    fn keys_are_exact() {
        assert_eq!(&FLASH_PLAYER_KEY[..30], b"Genuine Adobe Flash Player 001");
        assert_eq!(&FLASH_MEDIA_SERVER_KEY[..36], b"Genuine Adobe Flash Media Server 001");
        assert_eq!(FLASH_PLAYER_KEY[30..], FLASH_MEDIA_SERVER_KEY[36..]);
        assert_eq!(&FLASH_PLAYER_KEY[30..34], &[0xF0, 0xEE, 0xC2, 0x4A]);
        assert_eq!(&FLASH_PLAYER_KEY[58..], &[0xCF, 0xEB, 0x31, 0xAE]);
    }

    #[test]
    fn simple_handshake_every_split_point() {
        for cut in 1..=1 + HANDSHAKE_SIZE {
            let (client, server, rest) = run(false, &[cut], &[], &[]);
            assert!(!server.is_complex());
            assert!(!client.is_complex());
            assert_eq!(&rest[..], b"\x03chunk");
        }
        for cut in 1..=1 + 2 * HANDSHAKE_SIZE {
            let (_, server, rest) = run(false, &[], &[cut], &[]);
            assert!(server.is_done());
            assert_eq!(&rest[..], b"\x03chunk");
        }
        for cut in 1..=HANDSHAKE_SIZE + 6 {
            let (_, _, rest) = run(false, &[], &[], &[cut]);
            assert_eq!(&rest[..], b"\x03chunk");
        }
    }

    #[test]
    fn simple_handshake_echoes() {
        let mut r = rng(1);
        let mut client = ClientHandshake::new(false, 0x0102_0304, &mut r);
        let mut server = ServerHandshake::new(0x0A0B_0C0D, &mut r);
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        assert_eq!(c0c1[0], 3);
        assert_eq!(&c0c1[1..9], &[1, 2, 3, 4, 0, 0, 0, 0]);

        let mut s = Vec::new();
        let mut input = BytesMut::from(&c0c1[..]);
        server.feed(&mut input, &mut s).unwrap();
        assert_eq!(s[0], 3);
        assert_eq!(&s[1..9], &[0x0A, 0x0B, 0x0C, 0x0D, 0, 0, 0, 0]);
        assert_eq!(&s[1 + HANDSHAKE_SIZE..], &c0c1[1..], "S2 echoes C1");

        let mut c2 = Vec::new();
        let mut input = BytesMut::from(&s[..]);
        client.feed(&mut input, &mut c2).unwrap();
        assert_eq!(&c2[..], &s[1..1 + HANDSHAKE_SIZE], "C2 echoes S1");
    }

    #[test]
    fn complex_handshake_both_schemes() {
        for scheme in DigestScheme::ALL {
            let mut r = rng(3);
            let mut client = ClientHandshake::new(true, 1000, &mut r).with_digest_scheme(scheme);
            let mut server = ServerHandshake::new(2000, &mut r);
            let mut c0c1 = Vec::new();
            client.start(&mut c0c1);
            let mut input = BytesMut::from(&c0c1[..]);
            let mut s = Vec::new();
            assert_eq!(server.feed(&mut input, &mut s).unwrap(), HandshakeStatus::InProgress);
            assert!(server.is_complex());
            assert_eq!(server.digest_scheme(), Some(scheme));
            // S1 is signed in the client's scheme.
            let s1: &[u8; HANDSHAKE_SIZE] = s[1..1 + HANDSHAKE_SIZE].try_into().unwrap();
            assert!(verify_block_digest(s1, scheme, &FLASH_MEDIA_SERVER_KEY[..36]).is_some());

            let mut input = BytesMut::from(&s[..]);
            let mut c2 = Vec::new();
            assert_eq!(client.feed(&mut input, &mut c2).unwrap(), HandshakeStatus::Done);
            assert!(client.is_complex());
            assert!(client.server_digests_verified());

            // C2 is signed with the full FP key over S1's digest.
            let c2: &[u8; HANDSHAKE_SIZE] = c2[..].try_into().unwrap();
            let off = scheme.digest_offset(s1);
            let sig = block_signature(c2, &FLASH_PLAYER_KEY, &s1[off..off + 32]);
            assert_eq!(&c2[SIGNATURE_OFFSET..], &sig[..]);

            let mut input = BytesMut::from(&c2[..]);
            input.extend_from_slice(b"tail");
            assert_eq!(server.feed(&mut input, &mut s).unwrap(), HandshakeStatus::Done);
            assert_eq!(&input[..], b"tail");
        }
    }

    #[test]
    fn complex_handshake_every_split_point() {
        for cut in (1..=1 + 2 * HANDSHAKE_SIZE).step_by(7) {
            let (client, server, rest) = run(true, &[cut.min(HANDSHAKE_SIZE)], &[cut], &[]);
            assert!(server.is_complex());
            assert!(client.server_digests_verified());
            assert_eq!(&rest[..], b"\x03chunk");
        }
    }

    #[test]
    fn complex_client_against_simple_only_peer() {
        // A server that only echoes (like a minimal implementation): the
        // client must fall back to echoing S1.
        let mut r = rng(5);
        let mut client = ClientHandshake::new(true, 1, &mut r);
        let mut c0c1 = Vec::new();
        client.start(&mut c0c1);
        let mut s = vec![3u8];
        s.extend_from_slice(&[0u8; 8]);
        s.extend((0..HANDSHAKE_SIZE - 8).map(|i| i as u8));
        s.extend_from_slice(&c0c1[1..]);
        let mut input = BytesMut::from(&s[..]);
        let mut c2 = Vec::new();
        assert_eq!(client.feed(&mut input, &mut c2).unwrap(), HandshakeStatus::Done);
        assert!(!client.is_complex());
        assert!(!client.server_digests_verified());
        assert_eq!(&c2[..], &s[1..1 + HANDSHAKE_SIZE]);
    }

    #[test]
    fn digest_offsets_known_vectors() {
        let mut block = [0u8; HANDSHAKE_SIZE];
        assert_eq!(DigestScheme::Scheme0.digest_offset(&block), 12);
        assert_eq!(DigestScheme::Scheme1.digest_offset(&block), 776);
        block[8..12].copy_from_slice(&[1, 2, 3, 4]);
        block[772..776].copy_from_slice(&[10, 20, 30, 40]);
        assert_eq!(DigestScheme::Scheme0.digest_offset(&block), 10 + 12);
        assert_eq!(DigestScheme::Scheme1.digest_offset(&block), 100 + 776);
        // 4 * 255 = 1020; 1020 % 728 = 292.
        block[8..12].fill(0xFF);
        block[772..776].fill(0xFF);
        assert_eq!(DigestScheme::Scheme0.digest_offset(&block), 292 + 12);
        assert_eq!(DigestScheme::Scheme1.digest_offset(&block), 292 + 776);
        // Sum of 727 gives the largest offset; the digest must still fit.
        block[772..776].copy_from_slice(&[255, 255, 217, 0]);
        assert_eq!(DigestScheme::Scheme1.digest_offset(&block), 1503);
    }

    /// Digests computed independently with Python's `hmac` module.
    #[test]
    fn digest_known_vectors() {
        let block: [u8; HANDSHAKE_SIZE] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let off0 = DigestScheme::Scheme0.digest_offset(&block);
        let off1 = DigestScheme::Scheme1.digest_offset(&block);
        assert_eq!((off0, off1), (290, 942));
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let d0 = block_digest(&block, off0, &FLASH_PLAYER_KEY[..30]);
        assert_eq!(hex(&d0), "36d27b365b84e5e55f376e2f24f3a7dd6b8b5e9b002f035f99366c07e43b8d41");
        let d1 = block_digest(&block, off1, &FLASH_MEDIA_SERVER_KEY[..36]);
        assert_eq!(hex(&d1), "01d1722f262d0920a2fd6c2cff614d034585bbacbc28b5c77a88ca2fc0c3b984");
        let sig = block_signature(&block, &FLASH_MEDIA_SERVER_KEY, &d0);
        assert_eq!(hex(&sig), "772fa88ea2f1725a5aaf4012f46e06c449901b7afae690f60982a347dbd77d24");
    }

    #[test]
    fn server_falls_back_to_simple_on_bad_digest() {
        let mut r = rng(9);
        let mut server = ServerHandshake::new(5, &mut r);
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0, 0, 0, 1]); // time
        c0c1.extend_from_slice(&0x0900_7C02u32.to_be_bytes()); // FMLE-ish version
        c0c1.extend((0..HANDSHAKE_SIZE - 8).map(|i| (i * 13) as u8)); // no digest
        let mut input = BytesMut::from(&c0c1[..]);
        let mut s = Vec::new();
        assert_eq!(server.feed(&mut input, &mut s).unwrap(), HandshakeStatus::InProgress);
        assert!(!server.is_complex());
        assert_eq!(&s[5..9], &[0, 0, 0, 0], "simple S1 has a zero version");
        assert_eq!(&s[1 + HANDSHAKE_SIZE..], &c0c1[1..], "S2 echoes C1");
    }

    #[test]
    fn rejects_rtmpe_and_unknown_versions() {
        let mut r = rng(11);
        let mut server = ServerHandshake::new(0, &mut r);
        let mut input = BytesMut::from(&[6u8][..]);
        let mut out = Vec::new();
        let err = server.feed(&mut input, &mut out).unwrap_err();
        assert_eq!(err, HandshakeError::EncryptedNotSupported(6));
        assert!(err.to_string().contains("encrypted RTMP (RTMPE) is not supported"));
        assert!(out.is_empty());

        let mut server = ServerHandshake::new(0, &mut r);
        let mut input = BytesMut::from(&[99u8, 0, 0][..]);
        let err = server.feed(&mut input, &mut out).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedVersion(99));
        assert!(err.to_string().contains("99"), "{err}");
        assert!(out.is_empty());

        // The client checks S0 as well.
        let mut client = ClientHandshake::new(false, 0, &mut r);
        client.start(&mut out);
        let mut input = BytesMut::from(&b"HTTP/1.1"[..]);
        let mut c2 = Vec::new();
        assert_eq!(client.feed(&mut input, &mut c2).unwrap_err(), HandshakeError::UnsupportedVersion(b'H'));
        assert!(c2.is_empty());
    }

    #[test]
    fn leftover_bytes_preserved_and_done_is_sticky() {
        let mut r = rng(13);
        let mut client = ClientHandshake::new(false, 0, &mut r);
        let mut server = ServerHandshake::new(0, &mut r);
        let mut c = Vec::new();
        client.start(&mut c);
        // Everything the client sends in one burst (as a pipelining client would).
        let mut s = Vec::new();
        let mut input = BytesMut::from(&c[..]);
        server.feed(&mut input, &mut s).unwrap();
        s.extend_from_slice(b"server-chunks");
        let mut input = BytesMut::from(&s[..]);
        let mut c2 = Vec::new();
        assert_eq!(client.feed(&mut input, &mut c2).unwrap(), HandshakeStatus::Done);
        assert_eq!(&input[..], b"server-chunks");
        // Feeding again after Done does not consume anything.
        assert_eq!(client.feed(&mut input, &mut c2).unwrap(), HandshakeStatus::Done);
        assert_eq!(&input[..], b"server-chunks");
        assert_eq!(c2.len(), HANDSHAKE_SIZE);

        c2.extend_from_slice(b"connect");
        let mut input = BytesMut::from(&c2[..]);
        let mut none = Vec::new();
        assert_eq!(server.feed(&mut input, &mut none).unwrap(), HandshakeStatus::Done);
        assert_eq!(server.feed(&mut input, &mut none).unwrap(), HandshakeStatus::Done);
        assert_eq!(&input[..], b"connect");
        assert!(none.is_empty());
    }

    #[test]
    fn client_feed_before_start_sends_c0c1() {
        let mut r = rng(17);
        let mut client = ClientHandshake::new(true, 0, &mut r);
        let mut out = Vec::new();
        let mut input = BytesMut::new();
        assert_eq!(client.feed(&mut input, &mut out).unwrap(), HandshakeStatus::InProgress);
        assert_eq!(out.len(), 1 + HANDSHAKE_SIZE);
        client.start(&mut out);
        assert_eq!(out.len(), 1 + HANDSHAKE_SIZE, "start is idempotent");
    }

    fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0..=len, 0..12).prop_map(|mut v| {
            v.sort_unstable();
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_splits(
            complex in any::<bool>(),
            a in cuts(1 + HANDSHAKE_SIZE),
            b in cuts(1 + 2 * HANDSHAKE_SIZE),
            c in cuts(HANDSHAKE_SIZE + 6),
        ) {
            let (client, server, rest) = run(complex, &a, &b, &c);
            prop_assert_eq!(server.is_complex(), complex);
            prop_assert_eq!(client.is_complex(), complex);
            prop_assert_eq!(client.server_digests_verified(), complex);
            prop_assert_eq!(&rest[..], b"\x03chunk");
        }
    }
}
