//! The MP4 recording writer (`sluice::record::mp4_file`) fed hostile timestamps: frozen
//! clocks, steps back, resets to 0, jumps of hours or 2^32 ms, values near `u64::MAX`; either
//! straight or through the recorder's timeline, as the recorder feeds it. Asserts no panic,
//! the samples waiting for a fragment stay within the bound, and what was written converts
//! to a progressive MP4 the way the `moov`-first rewrite does it.
//!
//! Input: a header byte (tracks, timeline, faststart), then records of 5 bytes and a payload:
//! op (timestamp mode, frame kind, keyframe, tick), a 16-bit argument, a repeat count and the
//! payload length.
#![no_main]
use libfuzzer_sys::fuzz_target;
use bytes::Bytes;
use sluice::hub::Frame;
use sluice::record::mp4_file::{Mp4Mux, MAX_PENDING_BYTES, MAX_PENDING_SAMPLES};
use sluice::record::timeline::Timeline;

/// AVC sequence header with a 64x48 SPS.
const AVC_HEADER: &[u8] = &[
    0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 21, 0x67, 0x42, 0xC0, 0x0A, 0xD9, 0x07, 0x3C, 0x04, 0x40,
    0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0C, 0x83, 0xC4, 0x89, 0x92, 1, 0, 4, 0x68, 0xCE, 0x3C, 0x80,
];
/// AAC-LC, 44.1 kHz, stereo.
const AAC_HEADER: &[u8] = &[0xAF, 0, 0x12, 0x10];
/// Frames per input at most, so one input runs in milliseconds.
const MAX_FRAMES: usize = 20_000;

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut rest)) = data.split_first() else { return };
    let avc = Frame::video(0, Bytes::from_static(AVC_HEADER)).expect("an AVC sequence header");
    let aac = Frame::audio(0, Bytes::from_static(AAC_HEADER));
    let mut m = Mp4Mux::new((head & 1 == 1).then_some(&avc), (head & 2 == 2).then_some(&aac), head & 4 == 4);
    let through_timeline = head & 8 == 8;
    let mut timeline = Timeline::new(0);
    let mut out = Vec::new();
    let mut ms = 0u64;
    let mut frames = 0;
    while rest.len() >= 5 && frames < MAX_FRAMES {
        let op = rest[0];
        let arg = u64::from(u16::from_be_bytes([rest[1], rest[2]]));
        let repeat = usize::from(rest[3]) + 1;
        let len = usize::from(rest[4]).min(rest.len() - 5);
        let payload = &rest[5..5 + len];
        rest = &rest[5 + len..];
        let key = op & 0x10 != 0;
        let body: Vec<u8> = match (op >> 2) & 3 {
            0 => [&[if key { 0x17 } else { 0x27 }, 1, 0, (arg >> 8) as u8, arg as u8][..], payload].concat(),
            1 => [&[0xAF, 1][..], payload].concat(),
            // Anything at all: sequence headers mid-stream, other codecs, garbage.
            _ => payload.to_vec(),
        };
        // Parsed once, as sluice's ingest does; video whose header does not parse never
        // reaches a recorder.
        let frame = if (op >> 2) & 1 == 0 {
            Frame::video(0, Bytes::from(body))
        } else {
            Some(Frame::audio(0, Bytes::from(body)))
        };
        for _ in 0..repeat {
            ms = match op >> 5 {
                0 => ms,
                1 => ms.wrapping_add(arg),
                2 => ms.wrapping_sub(arg),
                3 => 0,
                4 => ms.wrapping_add(arg << 32),
                5 => u64::MAX - arg,
                6 => arg * 3_600_000,
                _ => ms.wrapping_add(40),
            };
            let at = if through_timeline { timeline.map(ms as u32) } else { ms };
            if let Some(frame) = &frame {
                m.push(at, frame, &mut out);
            }
            let (samples, bytes) = m.pending();
            assert!(samples <= MAX_PENDING_SAMPLES, "{samples} samples waiting");
            assert!(bytes <= MAX_PENDING_BYTES + len + 5, "{bytes} bytes waiting");
            frames += 1;
        }
        if op & 2 != 0 {
            // The recorder's tick for a stalled stream.
            m.flush(&mut out);
        }
        let _ = m.take_warnings();
    }
    let _ = m.duration_ms();
    if let Some((at, mark)) = m.finish(&mut out) {
        out[at as usize..at as usize + mark.len()].copy_from_slice(&mark);
        progressive(&out);
    }
});

/// The `moov`-first rewrite of a finished recording, in memory: every fragment must be
/// readable and the sample tables must fit the initialization segment.
fn progressive(file: &[u8]) {
    let list: Vec<fmp4::BoxRef> = fmp4::boxes(file).map(|b| b.expect("the writer writes whole boxes")).collect();
    let mut tables = fmp4::TableBuilder::new();
    let mut init_end = 0;
    for (i, b) in list.iter().enumerate() {
        match &b.kind {
            b"ftyp" | b"moov" => init_end = b.end(),
            b"moof" => {
                let mdat = list.get(i + 1).expect("an mdat after every moof");
                assert_eq!(&mdat.kind, b"mdat");
                let (header, payload) = (mdat.header_size as u64, (mdat.size - mdat.header_size) as u64);
                tables
                    .add_fragment(&file[b.offset..b.end()], header, payload)
                    .expect("fragments the writer wrote read back");
            }
            _ => {}
        }
    }
    let (tables, payload) = tables.finish();
    fmp4::progressive_head(&file[..init_end], &tables, payload).expect("the moov-first head builds");
}
