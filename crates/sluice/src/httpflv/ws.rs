//! WebSocket-FLV (RFC 6455, server side): the handshake on the same URLs as HTTP-FLV, then the
//! same FLV bytes in binary messages (one per ring batch). The client's pings are answered and
//! its close is echoed; whatever else it sends is read and ignored, a frame at most
//! [`MAX_IN_FRAME`] bytes long (a longer one closes with 1009).
//!
//! | Spec | Where |
//! | --- | --- |
//! | RFC 6455, 4.2.1–4.2.2 (opening handshake, `Sec-WebSocket-Accept`), 4.4 (version 426) | [`handshake`] |
//! | RFC 6455, 5.2 (base framing), 5.3 (client masking), 5.5 (control frames), 7.4 (close codes) | [`encode_header`], [`parse_frame`] |

use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::player::FlvPlayer;

/// RFC 6455, 1.3: appended to the client's key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Longest frame a client may send (it has nothing to send but control frames).
pub(crate) const MAX_IN_FRAME: usize = 64 * 1024;
/// RFC 6455, 5.5: control frames carry at most 125 bytes.
const MAX_CONTROL: usize = 125;

/// Opcodes (RFC 6455, 5.2).
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes (RFC 6455, 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_TOO_BIG: u16 = 1009;

/// A WebSocket handshake refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Malformed: `400` with why.
    Bad(&'static str),
    /// Not version 13: `426` naming it (RFC 6455, 4.4).
    Version,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Bad(why) => (StatusCode::BAD_REQUEST, format!("400 {why}\n")).into_response(),
            Refused::Version => {
                let mut res = (StatusCode::UPGRADE_REQUIRED, "426 WebSocket version 13 only\n").into_response();
                res.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                res
            }
        }
    }
}

/// `Ok(None)`: not a WebSocket request. `Ok(Some(accept))`: a valid one, answered with
/// `Sec-WebSocket-Accept: accept`. `Err`: a broken one.
pub(super) fn handshake(req: &Request) -> Result<Option<String>, Refused> {
    let h = req.headers();
    let has_token = |name, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") {
        return Ok(None);
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(Refused::Bad("WebSocket handshake without Connection: Upgrade"));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err(Refused::Version);
    }
    let key = h.get(header::SEC_WEBSOCKET_KEY).and_then(|k| k.to_str().ok()).map(str::trim);
    let valid = key.filter(|k| base64::engine::general_purpose::STANDARD.decode(k).is_ok_and(|b| b.len() == 16));
    let Some(key) = valid else { return Err(Refused::Bad("WebSocket handshake without a valid Sec-WebSocket-Key")) };
    Ok(Some(accept_key(key)))
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455, 4.2.2).
fn accept_key(key: &str) -> String {
    let digest = Sha1::new().chain_update(key.as_bytes()).chain_update(GUID.as_bytes()).finalize();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Answer `101` and serve `player` over the upgraded connection in its own task, which keeps the
/// HTTP connection's place under `max_connections` (`lent`) and is tracked with the HTTP
/// connections.
pub(super) fn upgrade(mut req: Request, accept: String, player: FlvPlayer, lent: super::Upgrades) -> Response {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let tracker = lent.tracker.clone();
    let task = async move {
        let _lent = lent;
        match on_upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded), player).await,
            Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
        }
    };
    drop(tracker.spawn(task));
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is ASCII"));
    res
}

/// Send the player's bytes as binary messages until it ends or the client closes; a close
/// frame says which.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(io: S, mut player: FlvPlayer) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut inbuf = BytesMut::with_capacity(1024);
    let code = loop {
        tokio::select! {
            // A player's `next` is cancel-safe: nothing is taken from the ring until it returns.
            bytes = player.next() => {
                let Some(bytes) = bytes else {
                    break if player.shutting_down() { CLOSE_GOING_AWAY } else { CLOSE_NORMAL };
                };
                if send(&mut wr, OP_BINARY, &bytes).await.is_err() {
                    return;
                }
            }
            n = rd.read_buf(&mut inbuf) => {
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                match answer(&mut inbuf, &mut wr).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(code) => break code,
                }
            }
        }
    };
    let _ = send(&mut wr, OP_CLOSE, &code.to_be_bytes()).await;
    let _ = wr.shutdown().await;
}

/// Handle every whole frame the client sent: `Ok(false)` once it closed (its close was
/// echoed), `Err(code)` to close on a protocol error.
async fn answer<W: AsyncWrite + Unpin>(inbuf: &mut BytesMut, wr: &mut W) -> Result<bool, u16> {
    loop {
        let frame = match parse_frame(inbuf, MAX_IN_FRAME) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(true),
            Err(FrameError::TooBig) => return Err(CLOSE_TOO_BIG),
            Err(FrameError::Protocol) => return Err(CLOSE_PROTOCOL),
        };
        match frame.opcode {
            OP_PING => {
                let sent = send(wr, OP_PONG, &frame.payload).await;
                if sent.is_err() {
                    return Ok(false);
                }
            }
            OP_CLOSE => {
                let code = frame.payload.get(..2).map_or(CLOSE_NORMAL, |c| u16::from_be_bytes([c[0], c[1]]));
                let _ = send(wr, OP_CLOSE, &code.to_be_bytes()).await;
                let _ = wr.shutdown().await;
                return Ok(false);
            }
            // Data and pongs: nothing to do with them.
            _ => {}
        }
    }
}

/// Write one unmasked frame (a server's frames are never masked).
async fn send<W: AsyncWrite + Unpin>(wr: &mut W, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
    let (header, n) = encode_header(opcode, payload.len());
    // One vectored write for header and payload: one packet, no copy.
    let mut frame = Buf::chain(&header[..n], payload);
    wr.write_all_buf(&mut frame).await?;
    wr.flush().await
}

/// A final frame's header for `len` payload bytes: the header bytes and how many are used.
pub(crate) fn encode_header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= usize::from(u16::MAX) {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// A frame from the client, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InFrame {
    pub(crate) opcode: u8,
    pub(crate) payload: Bytes,
}

/// Why a client's frame closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Longer than allowed.
    TooBig,
    /// Unmasked, reserved bits or opcodes, a fragmented or oversized control frame.
    Protocol,
}

/// Take one whole frame from the front of `buf`; `Ok(None)` until it has all arrived. The
/// length is checked from the header, before the payload is waited for.
pub(crate) fn parse_frame(buf: &mut BytesMut, max: usize) -> Result<Option<InFrame>, FrameError> {
    let Some(&[b0, b1]) = buf.get(..2) else { return Ok(None) };
    let (fin, rsv, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0F);
    let known = matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG);
    if b1 & 0x80 == 0 || rsv != 0 || !known {
        return Err(FrameError::Protocol);
    }
    let (len, at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(l) => (u64::from_be_bytes(l.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let control = opcode >= OP_CLOSE;
    if control && (!fin || len > MAX_CONTROL as u64) {
        return Err(FrameError::Protocol);
    }
    if len > max as u64 {
        return Err(FrameError::TooBig);
    }
    let len = len as usize;
    if buf.len() < at + 4 + len {
        buf.reserve(at + 4 + len - buf.len());
        return Ok(None);
    }
    let mask: [u8; 4] = buf[at..at + 4].try_into().expect("4 bytes");
    buf.advance(at + 4);
    let mut payload = buf.split_to(len);
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some(InFrame { opcode, payload: payload.freeze() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked, as RFC 6455, 5.3 requires.
    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        // RFC 6455, 1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().uri("/live/cam.flv");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn handshakes_are_checked() {
        let key = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
        let (up, conn, v13) =
            (("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"), ("Sec-WebSocket-Version", "13"));
        assert_eq!(handshake(&request(&[])), Ok(None), "plain HTTP-FLV");
        assert_eq!(handshake(&request(&[up, conn, v13, key])), Ok(Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into())));
        assert!(matches!(handshake(&request(&[up, v13, key])), Err(Refused::Bad(_))));
        assert_eq!(handshake(&request(&[up, conn, ("Sec-WebSocket-Version", "8"), key])), Err(Refused::Version));
        let short = ("Sec-WebSocket-Key", "c2hvcnQ=");
        assert!(matches!(handshake(&request(&[up, conn, v13, short])), Err(Refused::Bad(_))));
        assert_eq!(Refused::Version.into_response().headers()[header::SEC_WEBSOCKET_VERSION], "13");
    }

    #[test]
    fn frames_are_parsed_whole_and_unmasked() {
        let mut buf = BytesMut::new();
        let ping = masked(0x89, b"hi");
        buf.extend_from_slice(&ping[..3]);
        assert_eq!(parse_frame(&mut buf, MAX_IN_FRAME), Ok(None));
        buf.extend_from_slice(&ping[3..]);
        buf.extend_from_slice(&masked(0x82, &[7; 300]));
        let f = parse_frame(&mut buf, MAX_IN_FRAME).unwrap().unwrap();
        assert_eq!((f.opcode, &f.payload[..]), (OP_PING, &b"hi"[..]));
        let f = parse_frame(&mut buf, MAX_IN_FRAME).unwrap().unwrap();
        assert_eq!((f.opcode, f.payload.len(), f.payload[299]), (OP_BINARY, 300, 7));
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_frames_close_before_their_payload_is_read() {
        let mut unmasked = BytesMut::from(&[0x82u8, 0x01, 0x00][..]);
        assert_eq!(parse_frame(&mut unmasked, MAX_IN_FRAME), Err(FrameError::Protocol));
        // Only the header of a 16 EiB frame has come: refused at once.
        let mut huge = BytesMut::from(&[0x82u8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert_eq!(parse_frame(&mut huge, MAX_IN_FRAME), Err(FrameError::TooBig));
        let mut long_ping = BytesMut::from(&masked(0x89, &[0; 126])[..]);
        assert_eq!(parse_frame(&mut long_ping, MAX_IN_FRAME), Err(FrameError::Protocol));
        let mut reserved = BytesMut::from(&masked(0x83, b"")[..]);
        assert_eq!(parse_frame(&mut reserved, MAX_IN_FRAME), Err(FrameError::Protocol));
    }

    #[test]
    fn headers_use_the_shortest_length() {
        assert_eq!(encode_header(OP_BINARY, 125).1, 2);
        let (h, n) = encode_header(OP_BINARY, 126);
        assert_eq!((&h[..n], n), (&[0x82, 126, 0, 126][..], 4));
        let (h, n) = encode_header(OP_BINARY, 70_000);
        assert_eq!((&h[..2], n), (&[0x82, 127][..], 10));
        assert_eq!(u64::from_be_bytes(h[2..10].try_into().unwrap()), 70_000);
    }
}
