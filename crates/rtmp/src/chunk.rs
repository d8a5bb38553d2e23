//! The chunk stream (RTMP spec 1.0, section 5.3): splitting messages into chunks and joining them
//! back.
//!
//! [`ChunkDecoder`] is a state machine over bytes: [`ChunkDecoder::read`] returns `Ok(None)` until a
//! whole message has arrived, consuming only complete chunks. [`encode_message`] writes a message as
//! a type-0 chunk followed by type-3 continuation chunks; it keeps no state so the same bytes can be
//! shared by every player that uses the same chunk size (the fan-out hot path).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Chunk size every RTMP connection starts with (section 5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size a peer may set: the top bit of the 4-byte field must be zero (section 5.4.1).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Largest chunk stream id a 3-byte basic header can carry (section 5.3.1.1).
pub const MAX_CSID: u32 = 65599;
/// Timestamp field value that announces an extended timestamp (section 5.3.1.3).
const EXTENDED_TS: u32 = 0xFF_FFFF;
/// Smallest buffer started for a message that spans chunks when it is not sized up front (see
/// [`PREALLOC_BUDGET`]). Such buffers grow with what arrives (doubling, up to the announced
/// length): a peer announcing `max_message` on every chunk stream must send those bytes to make
/// us hold them.
const MIN_PARTIAL: usize = 256;
/// Bytes a decoder may hold announced but not yet received. A message that spans chunks gets a
/// buffer of exactly its announced length (one allocation, one copy of each byte, no spare
/// capacity kept by the GOP cache) while the unfilled room of all its half-read messages stays
/// within this; beyond it, buffers grow with what arrives. Covers the keyframes of ordinary
/// publishers (a 2.5 Mbit/s stream's are about 100 KB).
pub const PREALLOC_BUDGET: usize = 1 << 20;

/// Why a byte stream is not valid RTMP chunking.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// A message announced a length over the configured `max_message`.
    #[error("message of {len} bytes on chunk stream {csid} exceeds max_message {max}")]
    MessageTooLarge { csid: u32, len: u32, max: u32 },
    /// A command, shared-object or data message announced a length over its own limit
    /// ([`crate::command::size_limit`]), far above what real peers send.
    #[error("message of type {type_id} and {len} bytes on chunk stream {csid} exceeds its limit of {max}")]
    AmfMessageTooLarge { csid: u32, type_id: u8, len: u32, max: u32 },
    /// A type 1, 2 or 3 chunk on a chunk stream that never had a type 0 chunk.
    #[error("chunk of type {fmt} on chunk stream {csid} has no previous header to extend")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    /// More chunk streams than `max_streams` are in use at once.
    #[error("too many chunk streams in use (limit {max})")]
    TooManyChunkStreams { max: usize },
    /// Set Chunk Size with zero or the top bit set.
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    /// A chunk with a new message header (type 0, 1 or 2) while a message was half read on the
    /// same chunk stream (continuations are type 3).
    #[error("chunk stream {csid}: a new message header (type {fmt}) arrived with {received} of {length} bytes of the previous message read")]
    InterruptedMessage { csid: u32, fmt: u8, received: u32, length: u32 },
}

/// A whole message read from the chunk stream, before its type is interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Absolute timestamp in milliseconds (wraps at 2^32).
    pub timestamp: u32,
    /// Message type id (section 5.4 and 7.1).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The message body.
    pub payload: Bytes,
}

/// What is remembered per chunk stream between chunks.
#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// The last timestamp field as sent: absolute after type 0, delta after type 1/2. A type 3
    /// chunk that starts a new message adds it again (FFmpeg and librtmp read it this way).
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    has_header: bool,
    partial: Option<BytesMut>,
}

/// The chunk streams a peer has used, found without hashing: every chunk looks its stream up,
/// and a SipHash lookup (three per chunk before) cost more than the rest of a chunk's header.
/// Ids 2-63 (the one-byte basic header every real client uses) index `low` directly; the rare
/// larger ids are searched linearly among at most `max_streams` entries.
#[derive(Debug)]
struct StreamTable {
    /// For csid 0-63: 1 + its index in `entries`, 0 when unused (or when the index does not
    /// fit: then it is searched for like a larger id).
    low: [u8; 64],
    entries: Vec<(u32, ChunkStream)>,
}

impl StreamTable {
    fn new() -> Self {
        Self { low: [0; 64], entries: Vec::new() }
    }

    fn find(&self, csid: u32) -> Option<usize> {
        match csid {
            0..=63 if self.low[csid as usize] > 0 => Some(usize::from(self.low[csid as usize] - 1)),
            0..=63 if self.entries.len() < usize::from(u8::MAX) => None,
            _ => self.entries.iter().position(|(id, _)| *id == csid),
        }
    }

    fn get(&self, csid: u32) -> Option<&ChunkStream> {
        self.find(csid).map(|i| &self.entries[i].1)
    }

    /// The entry for `csid`, added when new unless `max` streams are in use already.
    fn find_or_add(&mut self, csid: u32, max: usize) -> Result<usize, ChunkError> {
        if let Some(i) = self.find(csid) {
            return Ok(i);
        }
        if self.entries.len() >= max {
            return Err(ChunkError::TooManyChunkStreams { max });
        }
        let i = self.entries.len();
        if let (0..=63, Ok(slot)) = (csid, u8::try_from(i + 1)) {
            self.low[csid as usize] = slot;
        }
        self.entries.push((csid, ChunkStream::default()));
        Ok(i)
    }

    /// Bytes announced but not yet received by the half-read messages (their buffers' unfilled
    /// room).
    fn unfilled(&self) -> usize {
        self.entries.iter().filter_map(|(_, s)| s.partial.as_ref()).map(|p| p.capacity() - p.len()).sum()
    }
}

/// Reassembles messages from incoming chunks.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    max_message: u32,
    max_streams: usize,
    streams: StreamTable,
}

impl ChunkDecoder {
    /// A decoder with the default chunk size, refusing messages over `max_message` bytes and more
    /// than `max_streams` chunk streams.
    pub fn new(max_message: u32, max_streams: usize) -> Self {
        Self { chunk_size: DEFAULT_CHUNK_SIZE, max_message, max_streams, streams: StreamTable::new() }
    }

    /// Apply the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// The chunk size the peer sends with.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Apply the peer's Abort Message: drop the partly received message on `csid`.
    pub fn abort(&mut self, csid: u32) {
        if let Some(i) = self.streams.find(csid) {
            self.streams.entries[i].1.partial = None;
        }
    }

    /// Consume complete chunks from `buf` until a message completes (returned) or the buffer holds
    /// only part of a chunk (`Ok(None)`, nothing of that partial chunk consumed).
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(header) = peek_header(buf, &self.streams)? else { return Ok(None) };
            let index = self.streams.find_or_add(header.csid, self.max_streams)?;
            let mut stream = &mut self.streams.entries[index].1;
            let starting = stream.partial.is_none();
            if let (Some(partial), 0..=2) = (&stream.partial, header.fmt) {
                let (received, length) = (partial.len() as u32, stream.length);
                return Err(ChunkError::InterruptedMessage { csid: header.csid, fmt: header.fmt, received, length });
            }
            let length = header.length.unwrap_or(stream.length);
            if starting {
                check_length(header.csid, header.type_id.unwrap_or(stream.type_id), length, self.max_message)?;
            }
            let received = stream.partial.as_ref().map_or(0, |p| p.len() as u32);
            let body_len = (length - received).min(self.chunk_size) as usize;
            if buf.len() < header.size + body_len {
                return Ok(None);
            }
            buf.advance(header.size);
            if starting {
                apply_header(stream, &header, length);
            }
            if starting && body_len as u32 == length {
                // The whole message is in one chunk. It is copied out: a slice would keep the
                // whole read buffer alive for as long as the frame lives (a GOP cache holding a
                // 100-byte audio frame would pin tens of KiB), and the read buffer could then
                // never be reused in place.
                let payload = Bytes::copy_from_slice(&buf[..body_len]);
                buf.advance(body_len);
                return Ok(Some(message(header.csid, stream, payload)));
            }
            if starting {
                let room = self.streams.unfilled();
                stream = &mut self.streams.entries[index].1;
                stream.partial = Some(start_partial(length as usize, room));
            }
            let partial = stream.partial.get_or_insert_with(BytesMut::new);
            grow(partial, body_len, length as usize);
            partial.extend_from_slice(&buf[..body_len]);
            buf.advance(body_len);
            if partial.len() as u32 == length {
                let payload = stream.partial.take().unwrap_or_default().freeze();
                return Ok(Some(message(header.csid, stream, payload)));
            }
        }
    }
}

/// The buffer for a message of `length` bytes that spans chunks: exactly its length when that
/// keeps the decoder's unfilled room (`room` now) within [`PREALLOC_BUDGET`], else empty (it then
/// grows with what arrives).
fn start_partial(length: usize, room: usize) -> BytesMut {
    if room + length <= PREALLOC_BUDGET {
        BytesMut::with_capacity(length)
    } else {
        BytesMut::new()
    }
}

/// Refuse a message longer than `max_message`, or than the limit of its type.
fn check_length(csid: u32, type_id: u8, len: u32, max_message: u32) -> Result<(), ChunkError> {
    if len > max_message {
        return Err(ChunkError::MessageTooLarge { csid, len, max: max_message });
    }
    match crate::command::size_limit(type_id) {
        Some(max) if len > max => Err(ChunkError::AmfMessageTooLarge { csid, type_id, len, max }),
        _ => Ok(()),
    }
}

/// Make room for `more` bytes in a message buffer of final size `length`: at least double the
/// capacity (so copies stay linear in the message size) but never past `length` (so the
/// finished payload carries no spare capacity).
fn grow(partial: &mut BytesMut, more: usize, length: usize) {
    let needed = partial.len() + more;
    if needed <= partial.capacity() {
        return;
    }
    let target = needed.max(partial.capacity() * 2).max(MIN_PARTIAL).min(length);
    let mut grown = BytesMut::with_capacity(target);
    grown.extend_from_slice(partial);
    *partial = grown;
}

fn message(csid: u32, stream: &ChunkStream, payload: Bytes) -> RawMessage {
    RawMessage { csid, timestamp: stream.timestamp, type_id: stream.type_id, stream_id: stream.stream_id, payload }
}

/// A parsed chunk header; `None` fields are inherited from the chunk stream.
struct Header {
    csid: u32,
    fmt: u8,
    /// Bytes of basic + message header + extended timestamp.
    size: usize,
    ts_field: u32,
    extended: bool,
    length: Option<u32>,
    type_id: Option<u8>,
    stream_id: Option<u32>,
}

fn apply_header(stream: &mut ChunkStream, h: &Header, length: u32) {
    match h.fmt {
        0 => stream.timestamp = h.ts_field,
        _ => stream.timestamp = stream.timestamp.wrapping_add(h.ts_field),
    }
    stream.ts_field = h.ts_field;
    stream.extended = h.extended;
    stream.length = length;
    if let Some(t) = h.type_id {
        stream.type_id = t;
    }
    if let Some(id) = h.stream_id {
        stream.stream_id = id;
    }
    stream.has_header = true;
}

/// Parse the chunk header at the front of `buf` without consuming it.
fn peek_header(buf: &[u8], streams: &StreamTable) -> Result<Option<Header>, ChunkError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let fmt = first >> 6;
    let (csid, mut pos) = match first & 0x3F {
        0 if buf.len() >= 2 => (64 + buf[1] as u32, 2),
        1 if buf.len() >= 3 => (64 + buf[1] as u32 + buf[2] as u32 * 256, 3),
        0 | 1 => return Ok(None),
        id => (id as u32, 1),
    };
    let prev = streams.get(csid).filter(|s| s.has_header);
    if fmt != 0 && prev.is_none() {
        return Err(ChunkError::NoPreviousHeader { csid, fmt });
    }
    let header_len = [11, 7, 3, 0][fmt as usize];
    if buf.len() < pos + header_len {
        return Ok(None);
    }
    let h = &buf[pos..pos + header_len];
    pos += header_len;
    let mut header =
        Header { csid, fmt, size: 0, ts_field: 0, extended: false, length: None, type_id: None, stream_id: None };
    if fmt <= 2 {
        header.ts_field = be24(&h[0..3]);
        header.extended = header.ts_field == EXTENDED_TS;
    } else if let Some(p) = prev {
        header.extended = p.extended;
        header.ts_field = p.ts_field;
    }
    if fmt <= 1 {
        header.length = Some(be24(&h[3..6]));
        header.type_id = Some(h[6]);
    }
    if fmt == 0 {
        header.stream_id = Some(u32::from_le_bytes([h[7], h[8], h[9], h[10]]));
    }
    if header.extended {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let ext = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]);
        pos += 4;
        if fmt <= 2 {
            header.ts_field = ext;
        }
    }
    header.size = pos;
    Ok(Some(header))
}

fn be24(b: &[u8]) -> u32 {
    (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8(fmt << 6 | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            out.put_u8(fmt << 6 | 1);
            out.put_u16_le((csid - 64) as u16);
        }
    }
}

/// Bytes [`encode_message`] will produce, for reserving capacity.
pub fn encoded_len(payload_len: usize, chunk_size: u32, csid: u32, timestamp: u32) -> usize {
    let chunks = payload_len.div_ceil(chunk_size as usize).max(1);
    let basic = match csid {
        2..=63 => 1,
        64..=319 => 2,
        _ => 3,
    };
    let ext = if timestamp >= EXTENDED_TS { 4 } else { 0 };
    payload_len + basic + 11 + ext + (chunks - 1) * (basic + ext)
}

/// Append `payload` as one message: a type 0 chunk, then type 3 chunks of at most `chunk_size`
/// bytes each. Self-contained (no delta from earlier messages), so the output can be reused for
/// any connection that uses this chunk size.
pub fn encode_message(
    out: &mut BytesMut,
    chunk_size: u32,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
) {
    debug_assert!((2..=MAX_CSID).contains(&csid));
    out.reserve(encoded_len(payload.len(), chunk_size, csid, timestamp));
    let extended = timestamp >= EXTENDED_TS;
    put_basic_header(out, 0, csid);
    let ts_field = if extended { EXTENDED_TS } else { timestamp };
    out.put_uint(ts_field as u64, 3);
    out.put_uint(payload.len() as u64, 3);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }
    let mut chunks = payload.chunks(chunk_size as usize);
    out.put_slice(chunks.next().unwrap_or(&[]));
    for chunk in chunks {
        put_basic_header(out, 3, csid);
        if extended {
            out.put_u32(timestamp);
        }
        out.put_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8]) -> Vec<RawMessage> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.read(&mut buf).unwrap() {
            out.push(m);
        }
        assert!(buf.is_empty(), "left {} bytes", buf.len());
        out
    }

    #[test]
    fn single_chunk_message_round_trips() {
        let mut out = BytesMut::new();
        encode_message(&mut out, 128, 3, 1000, 20, 1, b"hello");
        let msgs = decode_all(&mut ChunkDecoder::new(1 << 20, 32), &out);
        assert_eq!(
            msgs,
            vec![RawMessage {
                csid: 3,
                timestamp: 1000,
                type_id: 20,
                stream_id: 1,
                payload: Bytes::from_static(b"hello")
            }]
        );
    }

    #[test]
    fn extended_timestamp_and_rollover() {
        let mut dec = ChunkDecoder::new(1 << 20, 32);
        let payload = vec![7u8; 300];
        let mut out = BytesMut::new();
        encode_message(&mut out, 128, 6, 0xFFFF_FFF0, 8, 1, &payload);
        let m = decode_all(&mut dec, &out);
        assert_eq!(m[0].timestamp, 0xFFFF_FFF0);
        assert_eq!(m[0].payload.len(), 300);
        // A type 1 delta of 0x20 past 2^32 wraps around to 0x10.
        let mut next = BytesMut::new();
        next.put_u8(1 << 6 | 6);
        next.put_uint(0x20, 3);
        next.put_uint(2, 3);
        next.put_u8(8);
        next.put_slice(b"ab");
        let m = decode_all(&mut dec, &next);
        assert_eq!(m[0].timestamp, 0x10);
    }

    #[test]
    fn type3_new_message_repeats_delta() {
        let mut bytes = BytesMut::new();
        encode_message(&mut bytes, 128, 4, 100, 9, 1, b"x");
        bytes.put_u8(2 << 6 | 4); // type 2: delta 40
        bytes.put_uint(40, 3);
        bytes.put_slice(b"y");
        bytes.put_u8(3 << 6 | 4); // type 3: same delta again
        bytes.put_slice(b"z");
        let ts: Vec<u32> =
            decode_all(&mut ChunkDecoder::new(1 << 20, 32), &bytes).iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![100, 140, 180]);
    }

    #[test]
    fn large_chunk_stream_ids() {
        for csid in [2, 63, 64, 319, 320, 65599] {
            let mut out = BytesMut::new();
            encode_message(&mut out, 128, csid, 5, 18, 0, &[1; 200]);
            let m = decode_all(&mut ChunkDecoder::new(1 << 20, 32), &out);
            assert_eq!((m[0].csid, m[0].payload.len()), (csid, 200));
        }
    }

    /// Chunks of `msgs` (csid, payload) interleaved one chunk at a time, as a muxer sends them.
    fn interleave(chunk_size: u32, msgs: &[(u32, Vec<u8>)]) -> BytesMut {
        let mut per_msg: Vec<Vec<BytesMut>> = msgs
            .iter()
            .map(|(csid, payload)| {
                let mut one = BytesMut::new();
                encode_message(&mut one, chunk_size, *csid, 40, 9, 1, payload);
                let header = encoded_len(0, chunk_size, *csid, 40);
                let basic =
                    encoded_len(chunk_size as usize * 2, chunk_size, *csid, 40) - header - 2 * chunk_size as usize;
                let mut chunks = vec![one.split_to(header + (chunk_size as usize).min(payload.len()))];
                while !one.is_empty() {
                    let n = (basic + chunk_size as usize).min(one.len());
                    chunks.push(one.split_to(n));
                }
                chunks.reverse();
                chunks
            })
            .collect();
        let mut out = BytesMut::new();
        while per_msg.iter().any(|c| !c.is_empty()) {
            for chunks in &mut per_msg {
                if let Some(c) = chunks.pop() {
                    out.extend_from_slice(&c);
                }
            }
        }
        out
    }

    #[test]
    fn chunk_stream_ids_of_every_header_size_interleave() {
        let ids = [2, 63, 64, 319, 320, 65599, 3];
        let msgs: Vec<(u32, Vec<u8>)> = ids.iter().map(|&id| (id, vec![id as u8; 300 + id as usize % 7])).collect();
        let mut dec = ChunkDecoder::new(1 << 20, 32);
        let mut got = decode_all(&mut dec, &interleave(128, &msgs));
        got.sort_by_key(|m| m.csid);
        let mut want = msgs.clone();
        want.sort();
        let got: Vec<(u32, Vec<u8>)> = got.into_iter().map(|m| (m.csid, m.payload.to_vec())).collect();
        assert_eq!(got, want);
        // A continuation header (type 3) finds each stream's previous header again.
        let mut again = BytesMut::new();
        for &id in &ids {
            put_basic_header(&mut again, 3, id);
            again.put_slice(&vec![9; 300 + id as usize % 7][..128]);
        }
        assert!(decode_all(&mut dec, &again).is_empty(), "type 3 chunks start 300-byte messages");
    }

    #[test]
    fn chunk_streams_a_peer_opens_are_bounded() {
        let mut dec = ChunkDecoder::new(1 << 20, 4);
        let mut out = BytesMut::new();
        for id in [2, 64, 65599, 5, 2, 64] {
            encode_message(&mut out, 128, id, 0, 9, 1, b"x");
        }
        assert_eq!(decode_all(&mut dec, &out).len(), 6, "four streams, used again");
        let mut fifth = BytesMut::new();
        encode_message(&mut fifth, 128, 6, 0, 9, 1, b"x");
        assert_eq!(dec.read(&mut fifth).unwrap_err(), ChunkError::TooManyChunkStreams { max: 4 });
        let mut fifth_high = BytesMut::new();
        encode_message(&mut fifth_high, 128, 1000, 0, 9, 1, b"x");
        assert_eq!(dec.read(&mut fifth_high).unwrap_err(), ChunkError::TooManyChunkStreams { max: 4 });
    }

    #[test]
    fn a_low_chunk_stream_id_opened_after_many_others_is_found_again() {
        let mut dec = ChunkDecoder::new(1 << 20, 1024);
        let mut out = BytesMut::new();
        for id in (64..64 + 299).chain([MAX_CSID]) {
            encode_message(&mut out, 128, id, 0, 9, 1, b"x");
        }
        // A 200-byte message on csid 7 (entry 301, past what the low table can index): its
        // second chunk has a type 3 header.
        encode_message(&mut out, 128, 7, 0, 9, 1, &[7; 200]);
        let msgs = decode_all(&mut dec, &out);
        assert_eq!(msgs.len(), 301);
        assert_eq!((msgs[300].csid, msgs[300].payload.len()), (7, 200));
        let mut next = BytesMut::new();
        put_basic_header(&mut next, 3, 7);
        next.put_slice(&[8; 200][..128]);
        put_basic_header(&mut next, 3, 7);
        next.put_slice(&[8; 72]);
        let m = decode_all(&mut dec, &next);
        assert_eq!((m[0].csid, m[0].payload.len(), m[0].timestamp), (7, 200, 0));
        let mut high = BytesMut::new();
        put_basic_header(&mut high, 3, MAX_CSID);
        high.put_u8(b'x');
        assert_eq!(decode_all(&mut dec, &high)[0].csid, MAX_CSID);
    }

    #[test]
    fn oversized_message_is_refused() {
        let mut out = BytesMut::new();
        encode_message(&mut out, 128, 3, 0, 9, 1, &[0; 2000]);
        let err = ChunkDecoder::new(1000, 32).read(&mut out).unwrap_err();
        assert_eq!(err, ChunkError::MessageTooLarge { csid: 3, len: 2000, max: 1000 });
    }

    #[test]
    fn oversized_command_is_refused_at_its_first_chunk() {
        let mut out = BytesMut::new();
        let len = crate::command::MAX_COMMAND_SIZE as usize + 1;
        encode_message(&mut out, 128, 3, 0, crate::message::type_id::COMMAND_AMF0, 0, &vec![0; len]);
        let mut first = out.split_to(12 + 128);
        let err = ChunkDecoder::new(1 << 20, 32).read(&mut first).unwrap_err();
        let max = crate::command::MAX_COMMAND_SIZE;
        assert_eq!(err, ChunkError::AmfMessageTooLarge { csid: 3, type_id: 20, len: len as u32, max });
        // Media of that size is fine; data messages have their own, larger limit.
        let mut media = BytesMut::new();
        encode_message(&mut media, 128, 6, 0, crate::message::type_id::VIDEO, 1, &vec![0; len]);
        encode_message(&mut media, 128, 5, 0, crate::message::type_id::DATA_AMF0, 1, &vec![0; len]);
        assert_eq!(decode_all(&mut ChunkDecoder::new(1 << 20, 32), &media).len(), 2);
    }

    /// The first 128-byte chunk of a `length`-byte video message on each of 32 chunk streams;
    /// the bytes and how many payload bytes they carry.
    fn first_chunks_of_32_streams(length: u64) -> (BytesMut, usize) {
        let mut bytes = BytesMut::new();
        for csid in 3..35u8 {
            bytes.put_u8(csid);
            bytes.put_uint(0, 3);
            bytes.put_uint(length, 3);
            bytes.put_u8(9);
            bytes.put_u32_le(1);
            bytes.put_slice(&[0x17; 128]);
        }
        (bytes, 32 * 128)
    }

    #[test]
    fn buffers_grow_with_what_arrives_not_with_what_is_announced() {
        // 32 chunk streams each announce a 16 MiB message and send one 128-byte chunk.
        let mut dec = ChunkDecoder::new(16 << 20, 32);
        let (mut bytes, received) = first_chunks_of_32_streams(0xFF_FFFF);
        assert_eq!(dec.read(&mut bytes), Ok(None));
        assert!(bytes.is_empty());
        let held: usize =
            dec.streams.entries.iter().filter_map(|(_, s)| s.partial.as_ref()).map(BytesMut::capacity).sum();
        assert!(held <= 2 * received + 32 * MIN_PARTIAL, "{held} bytes reserved for {received} received");
        // Messages sized up front stop at the budget: the unfilled room stays within it.
        let mut dec = ChunkDecoder::new(16 << 20, 32);
        let (mut bytes, received) = first_chunks_of_32_streams(300_000);
        assert_eq!(dec.read(&mut bytes), Ok(None));
        let held: usize =
            dec.streams.entries.iter().filter_map(|(_, s)| s.partial.as_ref()).map(BytesMut::capacity).sum();
        assert!(
            held <= PREALLOC_BUDGET + 2 * received + 32 * MIN_PARTIAL,
            "{held} bytes reserved for {received} received"
        );
        assert!(dec.streams.unfilled() <= PREALLOC_BUDGET + 2 * received + 32 * MIN_PARTIAL);
        // A finished message carries no spare capacity.
        let mut whole = BytesMut::new();
        encode_message(&mut whole, 128, 40, 0, 9, 1, &[1; 1000]);
        let mut dec = ChunkDecoder::new(1 << 20, 32);
        let msg = decode_all(&mut dec, &whole).remove(0);
        assert_eq!(msg.payload.len(), 1000);
        let mut partial = BytesMut::new();
        for _ in 0..8 {
            grow(&mut partial, 128, 1000);
            partial.extend_from_slice(&[0; 128][..128.min(1000 - partial.len())]);
            assert!(partial.capacity() <= 1000);
        }
    }

    /// Whether `payload` points into the allocation `base..base + cap`.
    fn inside(payload: &Bytes, base: *const u8, cap: usize) -> bool {
        let p = payload.as_ptr() as usize;
        (base as usize..base as usize + cap).contains(&p)
    }

    #[test]
    fn a_small_payload_does_not_pin_the_read_buffer() {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let (base, cap) = (buf.as_ptr(), buf.capacity());
        encode_message(&mut buf, 4096, 4, 0, 8, 1, &[0xAF; 100]);
        encode_message(&mut buf, 4096, 6, 0, 9, 1, &[0x27; 3000]);
        let mut dec = ChunkDecoder::new(1 << 20, 32);
        dec.set_chunk_size(4096).unwrap();
        let audio = dec.read(&mut buf).unwrap().unwrap();
        let video = dec.read(&mut buf).unwrap().unwrap();
        assert_eq!((audio.payload.len(), video.payload.len()), (100, 3000));
        assert!(!inside(&audio.payload, base, cap) && !inside(&video.payload, base, cap));
        // Nothing else holds the read buffer: the next read reuses the same allocation.
        assert!(buf.is_empty());
        buf.reserve(cap);
        assert_eq!(buf.as_ptr(), base);
    }

    #[test]
    fn a_message_that_spans_chunks_gets_one_buffer_of_its_length() {
        let mut whole = BytesMut::new();
        encode_message(&mut whole, 128, 6, 0, 9, 1, &[0x17; 1000]);
        let mut dec = ChunkDecoder::new(1 << 20, 32);
        let mut first = whole.split_to(12 + 128);
        assert_eq!(dec.read(&mut first), Ok(None));
        let partial = dec.streams.get(6).unwrap().partial.as_ref().unwrap();
        assert_eq!((partial.len(), partial.capacity()), (128, 1000));
        let buffer = partial.as_ptr();
        let msg = decode_all(&mut dec, &whole).remove(0);
        assert_eq!(msg.payload, Bytes::from(vec![0x17; 1000]));
        assert_eq!(msg.payload.as_ptr(), buffer, "the payload is the buffer started with the message");
    }

    #[test]
    fn a_message_that_ends_exactly_at_the_end_of_the_input() {
        let mut dec = ChunkDecoder::new(1 << 20, 32);
        let mut whole = BytesMut::new();
        encode_message(&mut whole, 128, 6, 40, 9, 1, &[3; 300]);
        let end = whole.len();
        // The last chunk arrives alone and fills the input to its last byte.
        let mut head = whole.split_to(end - 44 - 1);
        assert_eq!(dec.read(&mut head), Ok(None));
        assert!(head.is_empty());
        let msg = dec.read(&mut whole).unwrap().unwrap();
        assert_eq!((msg.timestamp, msg.payload.len()), (40, 300));
        assert!(whole.is_empty());
        assert_eq!(dec.read(&mut whole), Ok(None));
        assert!(dec.streams.get(6).unwrap().partial.is_none());
    }

    #[test]
    fn interleaved_chunk_streams_with_a_chunk_size_change() {
        let mut dec = ChunkDecoder::new(1 << 20, 32);
        // Video (csid 6) and audio (csid 4) chunks alternate at 128 bytes a chunk...
        let mut video = BytesMut::new();
        encode_message(&mut video, 128, 6, 0, 9, 1, &[1; 300]);
        let mut audio = BytesMut::new();
        encode_message(&mut audio, 128, 4, 0, 8, 1, &[2; 200]);
        let mut input = BytesMut::new();
        input.extend_from_slice(&video.split_to(12 + 128));
        input.extend_from_slice(&audio.split_to(12 + 128));
        input.extend_from_slice(&video.split_to(1 + 128));
        input.extend_from_slice(&audio);
        input.extend_from_slice(&video);
        let got: Vec<_> = decode_all(&mut dec, &input).into_iter().map(|m| (m.csid, m.payload)).collect();
        assert_eq!(got, vec![(4, Bytes::from(vec![2; 200])), (6, Bytes::from(vec![1; 300]))]);
        // ...then the peer's Set Chunk Size takes effect for the next message.
        dec.set_chunk_size(4096).unwrap();
        let mut big = BytesMut::new();
        encode_message(&mut big, 4096, 6, 33, 9, 1, &[5; 5000]);
        encode_message(&mut big, 4096, 4, 33, 8, 1, &[6; 4096]);
        let got: Vec<_> = decode_all(&mut dec, &big).into_iter().map(|m| (m.csid, m.payload.len())).collect();
        assert_eq!(got, vec![(6, 5000), (4, 4096)]);
    }

    #[test]
    fn continuation_without_header_is_refused() {
        let mut buf = BytesMut::from(&[0xC5u8, 1, 2][..]);
        assert_eq!(
            ChunkDecoder::new(1000, 32).read(&mut buf).unwrap_err(),
            ChunkError::NoPreviousHeader { csid: 5, fmt: 3 }
        );
    }

    #[test]
    fn a_new_header_in_the_middle_of_a_message_is_an_error() {
        let mut dec = ChunkDecoder::new(1 << 20, 8);
        let mut bytes = BytesMut::new();
        // 300-byte message in 128-byte chunks: send only the first chunk...
        let mut whole = BytesMut::new();
        encode_message(&mut whole, 128, 4, 0, 9, 1, &[7u8; 300]);
        bytes.extend_from_slice(&whole[..12 + 128]);
        // ...then a type 0 header with a shorter length on the same chunk stream.
        encode_message(&mut bytes, 128, 4, 0, 9, 1, &[1u8; 10]);
        let err = loop {
            match dec.read(&mut bytes) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ChunkError::InterruptedMessage { csid: 4, fmt: 0, received: 128, length: 300 }), "{err}");
    }

    #[test]
    fn abort_drops_partial_message() {
        let mut out = BytesMut::new();
        encode_message(&mut out, 128, 3, 0, 9, 1, &[0; 200]);
        let mut dec = ChunkDecoder::new(1 << 20, 32);
        let mut first = out.split_to(1 + 11 + 128);
        assert!(dec.read(&mut first).unwrap().is_none());
        dec.abort(3);
        let mut again = BytesMut::new();
        encode_message(&mut again, 128, 3, 7, 9, 1, b"ok");
        assert_eq!(dec.read(&mut again).unwrap().unwrap().payload, Bytes::from_static(b"ok"));
    }

    proptest! {
        /// Interleaved chunk streams, random chunk sizes, input split at random points.
        #[test]
        fn interleaved_streams_round_trip(
            chunk_size in 1u32..600,
            msgs in proptest::collection::vec((2u32..400, any::<u32>(), 1u8..30, proptest::collection::vec(any::<u8>(), 0..1500)), 1..8),
            splits in proptest::collection::vec(1usize..200, 0..20),
        ) {
            // Encode each message's chunks, then interleave chunks of different messages.
            let mut per_msg: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let msgs: Vec<_> = msgs.into_iter().filter(|m| seen.insert(m.0)).collect();
            for (csid, ts, ty, payload) in &msgs {
                let mut out = BytesMut::new();
                encode_message(&mut out, chunk_size, *csid, *ts, *ty, 1, payload);
                // Re-split the encoding into its chunks by re-encoding chunk by chunk.
                let mut chunks = Vec::new();
                let hdr = encoded_len(0, chunk_size, *csid, *ts);
                let cont = encoded_len(chunk_size as usize * 2, chunk_size, *csid, *ts) - encoded_len(chunk_size as usize, chunk_size, *csid, *ts) - chunk_size as usize;
                let first = hdr + payload.len().min(chunk_size as usize);
                chunks.push(out.split_to(first).to_vec());
                while !out.is_empty() {
                    let n = (cont + chunk_size as usize).min(out.len());
                    chunks.push(out.split_to(n).to_vec());
                }
                per_msg.push(chunks);
            }
            let mut stream = Vec::new();
            let mut idx = vec![0usize; per_msg.len()];
            loop {
                let mut progressed = false;
                for (i, chunks) in per_msg.iter().enumerate() {
                    if idx[i] < chunks.len() { stream.extend_from_slice(&chunks[idx[i]]); idx[i] += 1; progressed = true; }
                }
                if !progressed { break; }
            }
            let mut dec = ChunkDecoder::new(1 << 20, 64);
            dec.set_chunk_size(chunk_size).unwrap();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            for s in splits.iter().chain(std::iter::repeat(&usize::MAX)) {
                let n = (*s).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                while let Some(m) = dec.read(&mut buf).unwrap() { got.push(m); }
                if rest.is_empty() { break; }
            }
            prop_assert!(buf.is_empty());
            got.sort_by_key(|m| m.csid);
            let mut want = msgs.clone();
            want.sort_by_key(|m| m.0);
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                prop_assert_eq!((g.csid, g.timestamp, g.type_id, &g.payload[..]), (w.0, w.1, w.2, &w.3[..]));
            }
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut dec = ChunkDecoder::new(1 << 16, 8);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = dec.read(&mut buf) {}
        }
    }
}
