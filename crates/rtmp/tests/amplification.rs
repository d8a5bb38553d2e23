//! A command that amplifies on decoding, sent before `connect`: the session fails with the
//! budget error after allocating about its budget, not gigabytes (a counting allocator checks).

mod common;
#[path = "../../amf0/tests/common/counting.rs"]
mod counting;

use bytes::BytesMut;
use common::handshaken_server;
use counting::peak_during;
use rtmp::chunk::{encode_message, ChunkError};
use rtmp::command::{CommandError, COMMAND_BUDGET, MAX_COMMAND_SIZE};
use rtmp::message::type_id;
use rtmp::SessionError;

/// `U29` of AMF3 (AMF 3 spec 1.3.1), for values below 2^14.
fn u29(n: u32, out: &mut Vec<u8>) {
    assert!(n < 1 << 14);
    if n >= 1 << 7 {
        out.push(0x80 | (n >> 7) as u8);
    }
    out.push((n & 0x7F) as u8);
}

/// An AMF3 command message (type 17) body: format byte, "connect", 1, then AMF3 arrays of
/// 2000 references to an array of 1000 nulls, one per 0x11 switch, as many as fit in `size`.
fn amf3_bomb(size: usize) -> Vec<u8> {
    let mut out = vec![0];
    out.extend(amf0::encode_all(&["connect".into(), 1.0.into()]));
    let mut value = vec![amf0::marker::AVMPLUS_OBJECT, amf0::amf3::marker::ARRAY];
    u29((2001 << 1) | 1, &mut value);
    value.extend_from_slice(&[0x01, amf0::amf3::marker::ARRAY]);
    u29((1000 << 1) | 1, &mut value);
    value.push(0x01);
    value.extend(std::iter::repeat_n(amf0::amf3::marker::NULL, 1000));
    for _ in 0..2000 {
        value.extend_from_slice(&[amf0::amf3::marker::ARRAY, 1 << 1]);
    }
    while out.len() + value.len() <= size {
        out.extend_from_slice(&value);
    }
    out
}

#[test]
fn an_amplifying_command_before_connect_fails_within_its_budget() {
    let body = amf3_bomb(MAX_COMMAND_SIZE as usize);
    let mut bytes = BytesMut::new();
    encode_message(&mut bytes, 128, 3, 0, type_id::COMMAND_AMF3, 0, &body);
    let mut server = handshaken_server();
    let mut events = Vec::new();
    let (result, peak) = peak_during(|| server.feed(&mut bytes, &mut events));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, SessionError::Command(CommandError::Amf { source: amf0::Amf0Error::BudgetExceeded { .. }, .. })),
        "{err}"
    );
    assert!(events.is_empty());
    // The message itself (64 KiB, reassembled) plus at most a few times the budget.
    assert!(peak <= 4 * COMMAND_BUDGET, "{peak} bytes allocated for a {COMMAND_BUDGET}-byte budget");
}

#[test]
fn a_command_far_larger_than_real_ones_is_refused_before_it_is_buffered() {
    let body = vec![0u8; 1 << 20];
    let mut bytes = BytesMut::new();
    encode_message(&mut bytes, 128, 3, 0, type_id::COMMAND_AMF0, 0, &body);
    let mut server = handshaken_server();
    let err = server.feed(&mut bytes, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, SessionError::Chunk(ChunkError::AmfMessageTooLarge { len: 1_048_576, type_id: 20, .. })),
        "{err}"
    );
    // Refused at the first chunk: the rest of the message was never read.
    assert!(bytes.len() > body.len() - 256, "{} bytes left unread", bytes.len());
}
