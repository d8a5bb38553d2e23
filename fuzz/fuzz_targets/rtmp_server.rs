//! A whole server session fed arbitrary bytes (handshake, chunks, commands): errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let config = rtmp::ServerConfig { chunk_size: 4096, ack_window: 5_000_000, max_message: 1 << 20, max_streams: 32 };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut session = rtmp::ServerSession::new(config, 0, &mut rng);
    let mut events = Vec::new();
    // Feed in two pieces so partial input is exercised too.
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    for part in [&data[..split], &data[split..]] {
        let mut buf = bytes::BytesMut::from(part);
        if session.feed(&mut buf, &mut events).is_err() {
            return;
        }
        for ev in events.drain(..) {
            if let rtmp::ServerEvent::Connect(_) = ev {
                session.accept_connect();
            }
        }
    }
});
