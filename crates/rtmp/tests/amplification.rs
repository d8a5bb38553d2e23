//! A command that amplifies on decoding, sent before `connect`: the session fails with the
//! budget error after allocating about its budget, not gigabytes (a counting allocator checks).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use rtmp::chunk::{encode_message, ChunkError};
use rtmp::command::{CommandError, COMMAND_BUDGET, MAX_COMMAND_SIZE};
use rtmp::message::type_id;
use rtmp::{ServerConfig, ServerSession, SessionError};

/// Counts this thread's live heap bytes and their peak (tests run on several threads).
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn track(grow: usize, shrink: usize) {
    let _ = LIVE.try_with(|live| {
        let now = (live.get() + grow).saturating_sub(shrink);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size(), 0);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(0, layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size, layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap bytes allocated on this thread while `f` runs, above what was live before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

fn handshaken_server() -> ServerSession {
    let mut rng = rand::thread_rng();
    let mut server = ServerSession::new(ServerConfig::default(), 0, &mut rng);
    let mut client = rtmp::handshake::ClientHandshake::new(false, 0, &mut rng);
    let mut c0c1 = Vec::new();
    client.start(&mut c0c1);
    let mut events = Vec::new();
    server.feed(&mut BytesMut::from(&c0c1[..]), &mut events).unwrap();
    let mut c2 = Vec::new();
    client.feed(&mut BytesMut::from(&server.take_output()[..]), &mut c2).unwrap();
    server.feed(&mut BytesMut::from(&c2[..]), &mut events).unwrap();
    server
}

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
