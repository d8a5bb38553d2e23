//! Message types (RTMP spec 1.0 sections 5.4 and 7) and the encoding of protocol control and
//! user control messages.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::chunk::encode_message;

/// Message type ids.
pub mod type_id {
    /// Set Chunk Size (5.4.1).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (5.4.2).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (5.4.3).
    pub const ACK: u8 = 3;
    /// User Control Message (6.2, 7.1.7).
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (5.4.4).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (5.4.5).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio (7.1.4).
    pub const AUDIO: u8 = 8;
    /// Video (7.1.5).
    pub const VIDEO: u8 = 9;
    /// AMF3 data message (7.1.2).
    pub const DATA_AMF3: u8 = 15;
    /// AMF3 shared object (7.1.3).
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// AMF3 command message (7.1.1).
    pub const COMMAND_AMF3: u8 = 17;
    /// AMF0 data message, e.g. `@setDataFrame`/`onMetaData` (7.1.2).
    pub const DATA_AMF0: u8 = 18;
    /// AMF0 shared object (7.1.3).
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// AMF0 command message (7.1.1).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message (7.1.6).
    pub const AGGREGATE: u8 = 22;
}

/// Chunk stream ids sluice sends on (the ones nginx-rtmp uses, so captures look alike).
pub mod csid {
    /// Protocol control messages (must be 2, section 5.4).
    pub const CONTROL: u32 = 2;
    /// Command messages.
    pub const COMMAND: u32 = 3;
    /// Data messages (metadata).
    pub const DATA: u32 = 5;
    /// Audio.
    pub const AUDIO: u32 = 6;
    /// Video.
    pub const VIDEO: u32 = 7;
}

/// User control event types (7.1.7).
pub mod user_control {
    /// Stream Begin.
    pub const STREAM_BEGIN: u16 = 0;
    /// Stream EOF.
    pub const STREAM_EOF: u16 = 1;
    /// Stream Dry.
    pub const STREAM_DRY: u16 = 2;
    /// Set Buffer Length.
    pub const SET_BUFFER_LENGTH: u16 = 3;
    /// Stream Is Recorded.
    pub const STREAM_IS_RECORDED: u16 = 4;
    /// Ping Request.
    pub const PING_REQUEST: u16 = 6;
    /// Ping Response.
    pub const PING_RESPONSE: u16 = 7;
}

/// Set Peer Bandwidth limit types (5.4.5).
pub const LIMIT_DYNAMIC: u8 = 2;

/// A user control event as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    /// Stream Begin / EOF / Dry / Is Recorded, with the stream id.
    Stream(u16, u32),
    /// The client's buffer length for a stream, in milliseconds.
    SetBufferLength { stream_id: u32, millis: u32 },
    /// Ping Request with its timestamp.
    PingRequest(u32),
    /// Ping Response with the echoed timestamp.
    PingResponse(u32),
    /// An event type sluice does not know.
    Unknown(u16),
}

impl UserControl {
    /// Parse a User Control message body; `None` when it is too short.
    pub fn parse(mut body: &[u8]) -> Option<Self> {
        if body.len() < 2 {
            return None;
        }
        let event = body.get_u16();
        let need = if event == user_control::SET_BUFFER_LENGTH { 8 } else { 4 };
        if event > user_control::PING_RESPONSE || body.len() < need {
            return Some(Self::Unknown(event));
        }
        let value = body.get_u32();
        Some(match event {
            user_control::SET_BUFFER_LENGTH => Self::SetBufferLength { stream_id: value, millis: body.get_u32() },
            user_control::PING_REQUEST => Self::PingRequest(value),
            user_control::PING_RESPONSE => Self::PingResponse(value),
            e => Self::Stream(e, value),
        })
    }
}

/// Append a protocol control message whose body is one 32-bit number.
fn control_u32(out: &mut BytesMut, type_id: u8, value: u32) {
    encode_message(out, 128, csid::CONTROL, 0, type_id, 0, &value.to_be_bytes());
}

/// Append Set Chunk Size.
pub fn set_chunk_size(out: &mut BytesMut, size: u32) {
    control_u32(out, type_id::SET_CHUNK_SIZE, size);
}

/// Append Acknowledgement of `sequence` bytes received.
pub fn ack(out: &mut BytesMut, sequence: u32) {
    control_u32(out, type_id::ACK, sequence);
}

/// Append Window Acknowledgement Size.
pub fn window_ack_size(out: &mut BytesMut, size: u32) {
    control_u32(out, type_id::WINDOW_ACK_SIZE, size);
}

/// Append Set Peer Bandwidth (dynamic limit, as nginx-rtmp sends it).
pub fn set_peer_bandwidth(out: &mut BytesMut, size: u32) {
    let mut body = [0u8; 5];
    body[..4].copy_from_slice(&size.to_be_bytes());
    body[4] = LIMIT_DYNAMIC;
    encode_message(out, 128, csid::CONTROL, 0, type_id::SET_PEER_BANDWIDTH, 0, &body);
}

/// Append a User Control event with one 32-bit value (Stream Begin/EOF/Dry, ping).
pub fn user_control(out: &mut BytesMut, event: u16, value: u32) {
    let mut body = [0u8; 6];
    body[..2].copy_from_slice(&event.to_be_bytes());
    body[2..].copy_from_slice(&value.to_be_bytes());
    encode_message(out, 128, csid::CONTROL, 0, type_id::USER_CONTROL, 0, &body);
}

/// Append Set Buffer Length (sent by clients).
pub fn set_buffer_length(out: &mut BytesMut, stream_id: u32, millis: u32) {
    let mut body = BytesMut::with_capacity(10);
    body.put_u16(user_control::SET_BUFFER_LENGTH);
    body.put_u32(stream_id);
    body.put_u32(millis);
    encode_message(out, 128, csid::CONTROL, 0, type_id::USER_CONTROL, 0, &body);
}

/// Read the 32-bit body of a control message; `None` when too short.
pub fn parse_u32(body: &Bytes) -> Option<u32> {
    (body.len() >= 4).then(|| u32::from_be_bytes([body[0], body[1], body[2], body[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_control_parses() {
        assert_eq!(UserControl::parse(&[0, 6, 0, 0, 1, 0]), Some(UserControl::PingRequest(256)));
        assert_eq!(
            UserControl::parse(&[0, 3, 0, 0, 0, 1, 0, 0, 3, 232]),
            Some(UserControl::SetBufferLength { stream_id: 1, millis: 1000 })
        );
        assert_eq!(UserControl::parse(&[0, 1, 0, 0, 0, 1]), Some(UserControl::Stream(1, 1)));
        assert_eq!(UserControl::parse(&[0]), None);
        assert_eq!(UserControl::parse(&[0, 31, 1, 2, 3, 4]), Some(UserControl::Unknown(31)));
    }
}
