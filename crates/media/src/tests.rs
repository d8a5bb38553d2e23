use bytes::Bytes;
use fmp4::{
    fragment, init_segment, progressive_head, Codec as F4Codec, Sample as F4Sample, TableBuilder, TrackInfo, TrackRun,
};

use super::*;

/// A minimal but valid `AVCDecoderConfigurationRecord` (no parameter sets).
const AVCC: &[u8] = &[1, 0x64, 0, 0x1F, 0xFF, 0xE0, 0];
/// AAC LC, 44.1 kHz, stereo.
const ASC: &[u8] = &[0x12, 0x10];

fn tracks() -> Vec<TrackInfo> {
    vec![
        TrackInfo {
            id: 1,
            timescale: 1000,
            codec: F4Codec::Avc { avcc: Bytes::from_static(AVCC), width: 320, height: 240 },
        },
        TrackInfo {
            id: 2,
            timescale: 1000,
            codec: F4Codec::Aac { asc: Bytes::from_static(ASC), channels: 2, sample_rate: 44100 },
        },
    ]
}

fn video(i: u32) -> F4Sample {
    F4Sample {
        duration: 40,
        keyframe: i.is_multiple_of(25),
        cts_offset: 80,
        data: Bytes::from(vec![i as u8; 100 + i as usize]),
    }
}

fn audio(i: u32) -> F4Sample {
    F4Sample { duration: 20, keyframe: true, cts_offset: 0, data: Bytes::from(vec![0xA0 | (i as u8 & 0xF); 10]) }
}

/// A fragmented file: 4 fragments of 1 s (25 video frames, 50 audio frames each).
fn fragmented() -> Vec<u8> {
    let mut file = init_segment(&tracks()).unwrap();
    for f in 0..4u32 {
        let v: Vec<F4Sample> = (f * 25..f * 25 + 25).map(video).collect();
        let a: Vec<F4Sample> = (f * 50..f * 50 + 50).map(audio).collect();
        let runs = [
            TrackRun { track_id: 1, base_decode_time: u64::from(f) * 1000, samples: &v },
            TrackRun { track_id: 2, base_decode_time: u64::from(f) * 1000, samples: &a },
        ];
        file.extend(fragment(f + 1, &runs).unwrap());
    }
    file
}

/// The same media as a progressive file, `moov` first; with `moov_last`, `moov` after `mdat`.
fn progressive(moov_last: bool) -> Vec<u8> {
    let frag = fragmented();
    let init_len = find_len(&frag, b"moov");
    let mut tables = TableBuilder::new();
    let mut payload = Vec::new();
    let mut pos = init_len;
    while pos < frag.len() {
        let moof_len = be32(&frag[pos..]) as usize;
        let mdat_len = be32(&frag[pos + moof_len..]) as usize;
        tables.add_fragment(&frag[pos..pos + moof_len], 8, mdat_len as u64 - 8).unwrap();
        payload.extend_from_slice(&frag[pos + moof_len + 8..pos + moof_len + mdat_len]);
        pos += moof_len + mdat_len;
    }
    let (tables, len) = tables.finish();
    let head = progressive_head(&frag[..init_len], &tables, len).unwrap();
    let mut file = head.clone();
    file.extend_from_slice(&payload);
    if !moov_last {
        return file;
    }
    // Move `moov` after `mdat`: the chunk offsets shift back by the moov's length.
    let ftyp_len = be32(&head) as usize;
    let moov_len = be32(&head[ftyp_len..]) as usize;
    let moov = &head[ftyp_len..ftyp_len + moov_len];
    let mut shifted = moov.to_vec();
    shift_co64(&mut shifted, moov_len as u64);
    let mut out = head[..ftyp_len].to_vec();
    out.extend_from_slice(&file[ftyp_len + moov_len..]);
    out.extend_from_slice(&shifted);
    out
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Offset just past the top-level box `kind`.
fn find_len(file: &[u8], kind: &[u8; 4]) -> usize {
    let b = fmp4::find(file, kind).unwrap();
    b.end()
}

/// Subtract `by` from every `co64` entry of `moov` (found by scanning for the box type).
fn shift_co64(moov: &mut [u8], by: u64) {
    let mut i = 0;
    while i + 4 <= moov.len() {
        if &moov[i..i + 4] == b"co64" {
            let count = be32(&moov[i + 8..]) as usize;
            for e in 0..count {
                let at = i + 12 + e * 8;
                let v = u64::from_be_bytes(moov[at..at + 8].try_into().unwrap()) - by;
                moov[at..at + 8].copy_from_slice(&v.to_be_bytes());
            }
        }
        i += 1;
    }
}

/// Checks the index of the 4-second H.264+AAC file against what was written, and that every
/// sample's bytes are the ones written.
fn check_mp4(file: &[u8], format: Format) {
    let media = Media::open(&mut Slice(file)).unwrap();
    assert_eq!(media.format, format);
    assert_eq!(media.describe(), "h264+aac");
    assert!((3990..=4010).contains(&media.duration_ms), "{}", media.duration_ms);
    assert_eq!(media.samples.len(), 100 + 200);
    let videos: Vec<&Sample> = media.samples.iter().filter(|s| media.kind(s) == Kind::Video).collect();
    assert_eq!(videos.len(), 100);
    for (i, s) in videos.iter().enumerate() {
        assert_eq!(s.dts, i as u32 * 40);
        assert_eq!(s.cts, 80);
        assert_eq!(s.keyframe, i % 25 == 0);
        let data = &file[s.offset as usize..s.offset as usize + s.size as usize];
        assert_eq!(data, &vec![i as u8; 100 + i][..]);
        let payload = media.payload(s, data);
        assert_eq!(&payload[..5], &[if s.keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 80]);
    }
    assert!(media.samples.windows(2).all(|w| w[0].dts <= w[1].dts), "decode order");
    assert_eq!(media.headers[1], (Kind::Video, Bytes::from([&[0x17, 0, 0, 0, 0], AVCC].concat())));
    assert_eq!(media.headers[2], (Kind::Audio, Bytes::from([&[0xAF, 0], ASC].concat())));
    let meta = amf0::decode_all(&media.headers[0].1).unwrap();
    assert_eq!(meta[0].as_str(), Some("onMetaData"));
    // Seeking lands on the keyframe at or before the time.
    let at = media.seek(2500);
    assert_eq!((media.samples[at].dts, media.samples[at].keyframe), (2000, true));
    assert_eq!(media.seek(0), 0);
}

#[test]
fn fragmented_mp4_is_indexed_from_its_moofs() {
    check_mp4(&fragmented(), Format::FragmentedMp4);
}

#[test]
fn progressive_mp4_is_indexed_from_its_sample_tables() {
    check_mp4(&progressive(false), Format::Mp4);
}

#[test]
fn progressive_mp4_with_moov_at_the_end() {
    let file = progressive(true);
    assert_eq!(&file[be32(&file) as usize + 4..be32(&file) as usize + 8], b"mdat", "moov moved after mdat");
    check_mp4(&file, Format::Mp4);
}

fn flv_file(with_headers: bool) -> Vec<u8> {
    let mut out = flv::file_header(true, true).to_vec();
    let meta = metadata(vec![("duration", amf0::Value::Number(2.0))]);
    flv::write_tag(&mut out, flv::TAG_SCRIPT, 0, &meta).unwrap();
    if with_headers {
        flv::write_tag(&mut out, flv::TAG_VIDEO, 0, &[&[0x17, 0, 0, 0, 0], AVCC].concat()).unwrap();
        flv::write_tag(&mut out, flv::TAG_AUDIO, 0, &[&[0xAF, 0], ASC].concat()).unwrap();
    }
    for i in 0..50u32 {
        let key = if i.is_multiple_of(25) { 0x17 } else { 0x27 };
        flv::write_tag(&mut out, flv::TAG_VIDEO, i * 40, &[key, 1, 0, 0, 0, i as u8]).unwrap();
        flv::write_tag(&mut out, flv::TAG_AUDIO, i * 40, &[0xAF, 1, i as u8]).unwrap();
    }
    out
}

#[test]
fn flv_tags_are_indexed_with_headers_apart() {
    let file = flv_file(true);
    let media = Media::open(&mut Slice(&file)).unwrap();
    assert_eq!(media.format, Format::Flv);
    assert_eq!(media.headers.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [Kind::Data, Kind::Video, Kind::Audio]);
    assert_eq!(media.samples.len(), 100);
    assert_eq!(media.duration_ms, 2000, "onMetaData's duration, which is longer than the last tag");
    let s = media.samples[2];
    let body = &file[s.offset as usize..(s.offset + u64::from(s.size)) as usize];
    assert_eq!(media.payload(&s, body), Bytes::from_static(&[0x27, 1, 0, 0, 0, 1]), "sent as it is");
    let at = media.seek(1500);
    assert_eq!((media.samples[at].dts, media.samples[at].keyframe), (1000, true));
}

#[test]
fn a_cut_flv_plays_up_to_its_last_whole_tag() {
    let file = flv_file(false);
    let media = Media::open(&mut Slice(&file[..file.len() - 6])).unwrap();
    assert_eq!(media.samples.len(), 99);
}

#[test]
fn garbage_and_empty_files_are_refused() {
    assert!(matches!(Media::open(&mut Slice(b"")), Err(MediaError::UnknownFormat)));
    assert!(matches!(Media::open(&mut Slice(b"hello world, not media")), Err(MediaError::UnknownFormat)));
    let header_only = flv::file_header(true, true);
    assert!(matches!(Media::open(&mut Slice(&header_only)), Err(MediaError::Empty)));
    let init = init_segment(&tracks()).unwrap();
    assert!(matches!(Media::open(&mut Slice(&init)), Err(MediaError::Empty)));
}

/// A `trun` claiming four billion samples with no per-sample fields must not allocate them.
#[test]
fn a_huge_trun_count_is_refused() {
    let mut file = fragmented();
    let at = file.windows(4).position(|w| w == b"trun").unwrap();
    // Flags: no per-sample fields, no data offset; count 0xFFFFFFFF.
    file[at + 4..at + 8].copy_from_slice(&0u32.to_be_bytes());
    file[at + 8..at + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(Media::open(&mut Slice(&file)), Err(MediaError::TooLarge(_) | MediaError::Malformed(_))));
}

/// Every prefix and many corruptions of a valid file are answered without a panic.
#[test]
fn truncated_and_corrupted_files_never_panic() {
    for file in [fragmented(), progressive(false), progressive(true), flv_file(true)] {
        for cut in (0..file.len()).step_by(97) {
            let _ = Media::open(&mut Slice(&file[..cut]));
        }
        for i in (0..file.len()).step_by(13) {
            let mut bad = file.clone();
            bad[i] ^= 0xFF;
            if let Ok(m) = Media::open(&mut Slice(&bad)) {
                assert!(m.samples.len() <= MAX_SAMPLES);
            }
        }
    }
}

/// An FLV file without `onMetaData` gets one saying its duration (players read it there).
#[test]
fn flv_without_metadata_gets_its_duration() {
    let mut out = flv::file_header(false, true).to_vec();
    for i in 0..50u32 {
        flv::write_tag(&mut out, flv::TAG_VIDEO, i * 40, &[0x17, 1, 0, 0, 0, i as u8]).unwrap();
    }
    let media = Media::open(&mut Slice(&out)).unwrap();
    assert_eq!(media.headers[0].0, Kind::Data);
    let values = amf0::decode_all(&media.headers[0].1).unwrap();
    assert_eq!(values[0].as_str(), Some("onMetaData"));
    let duration = values[1].get("duration").and_then(amf0::Value::as_f64);
    assert_eq!(duration, Some(1.96));
}

proptest::proptest! {
    /// Arbitrary bytes, and valid files with arbitrary bytes written over them, are indexed or
    /// refused with a typed error, never a panic, within the bounds.
    #[test]
    fn hostile_files_are_refused_or_bounded(
        junk in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
        at in 0usize..100_000,
        kind in 0usize..4,
    ) {
        let mut file = match kind {
            0 => fragmented(),
            1 => progressive(false),
            2 => progressive(true),
            _ => flv_file(true),
        };
        let at = at % file.len();
        let end = (at + junk.len()).min(file.len());
        file[at..end].copy_from_slice(&junk[..end - at]);
        for input in [&file[..], &junk[..]] {
            if let Ok(m) = Media::open(&mut Slice(input)) {
                proptest::prop_assert!(m.samples.len() <= MAX_SAMPLES);
                let _ = m.seek(m.duration_ms / 2);
            }
        }
    }
}

/// Of several video tracks the first plays (nginx-rtmp's `vindex=0`); the others' samples are
/// not sent.
#[test]
fn only_the_first_track_of_a_kind_plays() {
    let mut t = tracks();
    t.push(TrackInfo {
        id: 3,
        timescale: 1000,
        codec: F4Codec::Avc { avcc: Bytes::from_static(AVCC), width: 64, height: 64 },
    });
    let mut file = init_segment(&t).unwrap();
    let v: Vec<F4Sample> = (0..25).map(video).collect();
    let runs = [
        TrackRun { track_id: 1, base_decode_time: 0, samples: &v },
        TrackRun { track_id: 3, base_decode_time: 0, samples: &v },
    ];
    file.extend(fragment(1, &runs).unwrap());
    let media = Media::open(&mut Slice(&file)).unwrap();
    assert_eq!(media.describe(), "h264+aac");
    assert_eq!(media.samples.len(), 25);
}

/// Found by the `media_file` fuzz target: a top-level box whose 64-bit size overflows when
/// added to its offset.
#[test]
fn fuzz_top_box_size_overflow() {
    let file = include_bytes!("../testdata/fuzz-top-box-size-overflow.bin");
    let _ = Media::open(&mut Slice(file));
}

/// Chunk offsets, base data offsets and decode times near `u64::MAX` saturate instead of
/// overflowing.
#[test]
fn huge_offsets_and_times_do_not_overflow() {
    let mut file = fragmented();
    let at = file.windows(4).position(|w| w == b"tfdt").unwrap();
    // tfdt version 1: 64-bit base decode time.
    if file[at + 4] == 1 {
        file[at + 8..at + 16].copy_from_slice(&u64::MAX.to_be_bytes());
    } else {
        file[at + 8..at + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    }
    let _ = Media::open(&mut Slice(&file));
    let mut file = progressive(false);
    let at = file.windows(4).position(|w| w == b"co64").unwrap();
    file[at + 12..at + 20].copy_from_slice(&(u64::MAX - 10).to_be_bytes());
    let _ = Media::open(&mut Slice(&file));
}

/// Opus in MP4 (`Opus` + `dOps`, as sluice's own recordings write it) plays as Enhanced RTMP:
/// the sequence start carries the `OpusHead` made from `dOps`, each frame `Opus` CodedFrames.
#[test]
fn opus_in_mp4_plays_as_enhanced_rtmp() {
    let mut info = tracks();
    info[1] = TrackInfo {
        id: 2,
        timescale: 48000,
        codec: F4Codec::Opus { channels: 2, pre_skip: 312, input_sample_rate: 44100 },
    };
    let mut file = init_segment(&info).unwrap();
    let v: Vec<F4Sample> = (0..25).map(video).collect();
    let a: Vec<F4Sample> = (0..50).map(|i| F4Sample { duration: 960, ..audio(i) }).collect();
    let runs = [
        TrackRun { track_id: 1, base_decode_time: 0, samples: &v },
        TrackRun { track_id: 2, base_decode_time: 0, samples: &a },
    ];
    file.extend(fragment(1, &runs).unwrap());
    let m = Media::open(&mut Slice(&file)).unwrap();
    assert_eq!(m.describe(), "h264+opus");
    let (_, head) = m.headers.iter().find(|(k, _)| *k == Kind::Audio).unwrap();
    let mut want = b"\x90OpusOpusHead\x01\x02".to_vec();
    want.extend_from_slice(&312u16.to_le_bytes());
    want.extend_from_slice(&44100u32.to_le_bytes());
    want.extend_from_slice(&[0, 0, 0]);
    assert_eq!(&head[..], &want[..]);
    let s = m.samples.iter().find(|s| m.kind(s) == Kind::Audio).unwrap();
    assert_eq!(&m.payload(s, &[0xAB])[..], b"\x91Opus\xAB");
    let (_, meta) = &m.headers[0];
    assert!(meta.windows(12).any(|w| w == b"audiocodecid"), "onMetaData names the codec");
}

/// MP3 is sent as FLV sound format 2 with no sequence header; its tag byte says the rate
/// (48 kHz, which FLV has no code for, as 44 kHz), 16-bit, and the channels.
#[test]
fn mp3_tag_headers() {
    assert_eq!(mp3_tag_header(48000, 2), 0x2F);
    assert_eq!(mp3_tag_header(44100, 1), 0x2E);
    assert_eq!(mp3_tag_header(22050, 2), 0x2B);
    assert_eq!(mp3_tag_header(8000, 1), 0x22);
    let m = Media {
        format: Format::Mp4,
        duration_ms: 0,
        start_ms: 0,
        headers: Vec::new(),
        codecs: vec![(Kind::Audio, Codec::Mp3 { header: 0x2F })],
        samples: Vec::new(),
    };
    let s = Sample { offset: 0, size: 1, dts: 0, cts: 0, keyframe: false, track: 0 };
    assert_eq!(&m.payload(&s, &[0xFF])[..], [0x2F, 0xFF]);
}
