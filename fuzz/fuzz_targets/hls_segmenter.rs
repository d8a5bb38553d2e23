//! The HLS segmenter fed arbitrary messages: each message is a kind byte, a 16-bit timestamp
//! step and a 16-bit length, then the body, whose tag header is parsed first as sluice's
//! ingest does.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for container in [hls::Container::Ts, hls::Container::Fmp4] {
        let settings = hls::Settings {
            container,
            fragment: std::time::Duration::from_millis(200),
            part_target: (data.len() % 2 == 0).then(|| std::time::Duration::from_millis(100)),
            ..hls::Settings::default()
        };
        let Ok(mut seg) = hls::Segmenter::new(settings, "f", Box::new(|| [0; 16])) else { return };
        let mut rest = data;
        let mut ts = 0u32;
        while rest.len() >= 5 {
            let video = rest[0] & 1 == 1;
            ts = ts.wrapping_add(u32::from(u16::from_be_bytes([rest[1], rest[2]])));
            let len = (u16::from_be_bytes([rest[3], rest[4]]) as usize).min(rest.len() - 5);
            let body = bytes::Bytes::copy_from_slice(&rest[5..5 + len]);
            if video {
                seg.push_video(ts, flv::parse_video(&body).ok().as_ref(), &body, 0);
            } else {
                seg.push_audio(ts, flv::parse_audio(&body).ok().as_ref(), &body, 0);
            }
            while seg.poll_event().is_some() {}
            let _ = seg.playlist();
            rest = &rest[5 + len..];
        }
        seg.finish();
        while seg.poll_event().is_some() {}
    }
});
