//! A whole server session: a real client handshake first (so the fuzzer spends its time on
//! chunks, control messages and commands), then arbitrary bytes. Errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let config = rtmp::ServerConfig::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut server = rtmp::ServerSession::new(config, 0, &mut rng);
    let mut client = rtmp::handshake::ClientHandshake::new(false, 0, &mut rng);
    let mut events = Vec::new();
    let mut c0c1 = Vec::new();
    client.start(&mut c0c1);
    let mut buf = bytes::BytesMut::from(&c0c1[..]);
    if server.feed(&mut buf, &mut events).is_err() {
        return;
    }
    let mut s0s1s2 = bytes::BytesMut::from(&server.take_output()[..]);
    let mut c2 = Vec::new();
    if client.feed(&mut s0s1s2, &mut c2).is_err() {
        return;
    }
    // C2, then the fuzzer's bytes, in two pieces so partial input is exercised too.
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    for part in [&c2[..], &data[..split], &data[split..]] {
        let mut buf = bytes::BytesMut::from(part);
        if server.feed(&mut buf, &mut events).is_err() {
            return;
        }
        for ev in events.drain(..) {
            match ev {
                rtmp::ServerEvent::Connect(_) => server.accept_connect(),
                rtmp::ServerEvent::Publish { stream_id, name, .. } => server.accept_publish(stream_id, &name),
                rtmp::ServerEvent::Play { stream_id, name, reset, .. } => server.accept_play(stream_id, &name, reset),
                _ => {}
            }
        }
        let _ = server.take_output();
    }
});
