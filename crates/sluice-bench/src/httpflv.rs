//! HTTP-FLV players (`--http-flv URL`): bulk players that send one GET and drain the body
//! (chunked, or close-delimited as sluice sends it on plain TCP) like RTMP bulk players drain
//! theirs, and probes that decode it (chunked coding when the head says so, FLV tags) to measure
//! time to first frame and latency from the same SEI stamps.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use flv::writer::{FIRST_TAG_OFFSET, TAG_HEADER_SIZE};
use flv::TagHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::players::{self, now_us, state, PlayerStats, ProbeResult};

/// How long a player may take to get the response head.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response head read.
const MAX_HEAD: usize = 16 * 1024;

/// An HTTP-FLV URL: `http://HOST:PORT/PATH`.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// Server address.
    pub addr: SocketAddr,
    /// `Host` header.
    pub host: String,
    /// Path and query.
    pub path: String,
}

impl HttpTarget {
    /// Parse `http://HOST[:PORT]/PATH`.
    pub fn parse(url: &str) -> anyhow::Result<HttpTarget> {
        let rest = url.strip_prefix("http://").with_context(|| format!("URL must start with http://: {url}"))?;
        let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
        let hostport = if host.contains(':') { host.to_owned() } else { format!("{host}:80") };
        let addr = hostport.to_socket_addrs()?.next().with_context(|| format!("cannot resolve {host}"))?;
        Ok(HttpTarget { addr, host: host.to_owned(), path })
    }
}

/// Connect, ask for the stream and read the response head; returns the socket and the body
/// bytes that came with the head, and whether the body is chunked.
async fn open(target: &HttpTarget) -> anyhow::Result<(TcpStream, Vec<u8>, bool)> {
    let mut s = TcpStream::connect(target.addr).await?;
    let mut buf = Vec::with_capacity(4096);
    let head = tokio::time::timeout(START_TIMEOUT, get_head(&mut s, target, &target.path, &mut buf))
        .await
        .map_err(|_| anyhow::anyhow!("no response head within {START_TIMEOUT:?}"))??;
    let status = String::from_utf8_lossy(&buf[..head]).split(' ').nth(1).unwrap_or_default().to_owned();
    anyhow::ensure!(status == "200", "answered {status}");
    let chunked = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((s, buf.split_off(head + 4), chunked))
}

/// Send `GET path` on `s` and read into `buf` (emptied first) until the response head's end;
/// returns the head's length (the body starts 4 bytes after it).
pub async fn get_head(s: &mut TcpStream, target: &HttpTarget, path: &str, buf: &mut Vec<u8>) -> anyhow::Result<usize> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice-bench\r\n\r\n", target.host);
    s.write_all(request.as_bytes()).await?;
    buf.clear();
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(at);
        }
        anyhow::ensure!(buf.len() < MAX_HEAD, "response head too long");
        let n = s.read_buf(buf).await?;
        anyhow::ensure!(n > 0, "closed before the response head");
    }
}

/// A bulk HTTP-FLV player: drains the body with `recv(MSG_TRUNC)`, counting bytes (chunk
/// headers included: a few bytes per write batch).
pub async fn bulk_player(target: HttpTarget, stats: Arc<PlayerStats>, rcvlowat: u32) {
    if drain(target, &stats, rcvlowat).await.is_err() {
        stats.state.store(state::FAILED, Ordering::Relaxed);
    }
}

async fn drain(target: HttpTarget, stats: &PlayerStats, rcvlowat: u32) -> anyhow::Result<()> {
    let connect = Instant::now();
    let (socket, leftover, _) = open(&target).await?;
    stats.state.store(state::PLAYING, Ordering::Relaxed);
    stats.bytes.store(leftover.len() as u64, Ordering::Relaxed);
    if leftover.is_empty() {
        socket.readable().await?;
    }
    stats.start_us.store(connect.elapsed().as_micros().max(1) as u64, Ordering::Relaxed);
    players::set_rcvlowat(&socket, rcvlowat);
    stats.fd.store(socket.as_raw_fd(), Ordering::Relaxed);
    let result = players::discard_loop(&socket, stats).await;
    stats.fd.store(-1, Ordering::Relaxed);
    result
}

/// A probe: decodes the body until `stop`, recording into `out` as the RTMP probe does.
pub async fn probe_player(target: HttpTarget, out: Arc<Mutex<ProbeResult>>, stop: Arc<AtomicBool>) {
    if let Err(e) = probe(target, &out, &stop).await {
        out.lock().unwrap().error = Some(format!("{e:#}"));
    }
}

async fn probe(target: HttpTarget, out: &Mutex<ProbeResult>, stop: &AtomicBool) -> anyhow::Result<()> {
    let connect = Instant::now();
    let joined_us = now_us();
    let (mut s, leftover, chunked) = open(&target).await?;
    let mut body = Dechunk { raw: !chunked, ..Dechunk::default() };
    let mut tags = FlvTags::default();
    let mut observer = players::VideoObserver::new(connect, joined_us);
    let mut on_tag = |tag: TagHeader, body: &[u8]| match tag.tag_type {
        flv::TAG_VIDEO => observer.video(&mut out.lock().unwrap(), tag.timestamp, body),
        flv::TAG_AUDIO => observer.audio(&mut out.lock().unwrap(), tag.timestamp),
        _ => {}
    };
    body.feed(&leftover, &mut tags.buf);
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        tags.take(&mut on_tag);
        let n = match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(n) => n?,
            Err(_) => continue,
        };
        anyhow::ensure!(n > 0, "the response ended");
        body.feed(&buf[..n], &mut tags.buf);
    }
    Ok(())
}

/// An FLV body cut into tags as it comes: the file header first, then whole tags.
struct FlvTags {
    /// What came and was not taken yet.
    buf: Vec<u8>,
    /// Bytes of `buf` to skip before the next tag: the file header and PreviousTagSize0 until
    /// they are past (they may come over several reads, the first of them empty).
    skip: usize,
}

impl Default for FlvTags {
    fn default() -> Self {
        FlvTags { buf: Vec::new(), skip: FIRST_TAG_OFFSET as usize }
    }
}

impl FlvTags {
    /// Hand every whole tag in `buf` (its header and body) to `on_tag` and drop what was taken.
    fn take(&mut self, mut on_tag: impl FnMut(TagHeader, &[u8])) {
        let mut at = self.skip;
        while let Some(tag) = self.buf.get(at..).and_then(|rest| TagHeader::parse(rest).ok()) {
            let end = at + tag.tag_len() as usize;
            if self.buf.len() < end {
                break;
            }
            let body = at + TAG_HEADER_SIZE;
            on_tag(tag, &self.buf[body..body + tag.size as usize]);
            at = end;
        }
        let taken = at.min(self.buf.len());
        self.buf.drain(..taken);
        self.skip = at - taken;
    }
}

/// The chunked transfer coding's decoder (RFC 9112, 7.1), extensions and trailers ignored.
#[derive(Debug, Default)]
struct Dechunk {
    /// Bytes left in the current chunk's data.
    left: usize,
    /// A chunk-size line being read.
    line: Vec<u8>,
    /// The CRLF after a chunk's data is still to come (bytes of it).
    crlf: usize,
    /// Not chunked: every byte is the body's.
    raw: bool,
}

impl Dechunk {
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if self.raw {
            out.extend_from_slice(input);
            return;
        }
        while !input.is_empty() {
            if self.crlf > 0 {
                let n = self.crlf.min(input.len());
                self.crlf -= n;
                input = &input[n..];
            } else if self.left > 0 {
                let n = self.left.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.left -= n;
                input = &input[n..];
                if self.left == 0 {
                    self.crlf = 2;
                }
            } else {
                let Some(end) = input.iter().position(|&b| b == b'\n') else {
                    self.line.extend_from_slice(input);
                    return;
                };
                self.line.extend_from_slice(&input[..end]);
                input = &input[end + 1..];
                let text = String::from_utf8_lossy(&self.line);
                let size = text.split(';').next().unwrap_or_default().trim();
                self.left = usize::from_str_radix(size, 16).unwrap_or(0);
                self.line.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded_across_reads() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut d = Dechunk::default();
            let mut out = Vec::new();
            d.feed(&wire[..split], &mut out);
            d.feed(&wire[split..], &mut out);
            assert_eq!(out, b"hello world", "split at {split}");
        }
    }

    /// A close-delimited body (sluice's plain HTTP-FLV) is every byte, chunk-size-like or not.
    #[test]
    fn a_close_delimited_body_is_taken_as_it_is() {
        let mut d = Dechunk { raw: true, ..Dechunk::default() };
        let mut out = Vec::new();
        d.feed(b"5\r\nFLV", &mut out);
        d.feed(b"\x01", &mut out);
        assert_eq!(out, b"5\r\nFLV\x01");
    }

    /// Tags come out whole and in order however the body is cut, the first read empty (sluice's
    /// plain HTTP-FLV head comes alone) and the file header split included.
    #[test]
    fn tags_are_taken_whole_however_the_body_is_cut() {
        let mut body = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        let tags: [(u8, u32, &[u8]); 3] = [(9, 0, b"\x17\x00seq"), (8, 0x0100_0020, b"\xafaac"), (9, 40, b"\x27\x01")];
        for (kind, ts, data) in tags {
            let len = data.len() as u32;
            body.push(kind);
            body.extend_from_slice(&len.to_be_bytes()[1..]);
            body.extend_from_slice(&ts.to_be_bytes()[1..]);
            body.push((ts >> 24) as u8);
            body.extend_from_slice(&[0, 0, 0]);
            body.extend_from_slice(data);
            body.extend_from_slice(&(11 + len).to_be_bytes());
        }
        for piece in [1, 2, 5, 13, 17, body.len()] {
            let mut t = FlvTags::default();
            let mut got = Vec::new();
            t.take(|tag, data| got.push((tag.tag_type, tag.timestamp, data.to_vec())));
            for chunk in body.chunks(piece) {
                t.buf.extend_from_slice(chunk);
                t.take(|tag, data| got.push((tag.tag_type, tag.timestamp, data.to_vec())));
            }
            let want: Vec<_> = tags.iter().map(|&(k, ts, d)| (k, ts, d.to_vec())).collect();
            assert_eq!(got, want, "cut every {piece} bytes");
            assert!(t.buf.is_empty());
        }
    }

    #[test]
    fn urls_name_host_port_and_path() {
        let t = HttpTarget::parse("http://127.0.0.1:8080/live/b.flv").unwrap();
        assert_eq!((t.addr.port(), t.host.as_str(), t.path.as_str()), (8080, "127.0.0.1:8080", "/live/b.flv"));
        assert!(HttpTarget::parse("rtmp://x/live/b").is_err());
    }
}
