//! Interop harness: media made by ffmpeg, turned into tracks and samples (from FLV with the
//! `flv` crate, or from a plain MP4 with a small sample-table reader), written as fragmented
//! MP4 and checked with ffprobe and ffmpeg.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use fmp4::{boxes, find, fragment, init_segment, Codec, Sample, TrackInfo, TrackRun};
use serde_json::Value;

/// Video timescale for tracks made from FLV: the MPEG 90 kHz clock.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Samples per AAC-LC frame.
pub const AAC_FRAME: u32 = 1024;

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!("fmp4-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs ffmpeg with `args` (after `-y -v error`) and panics with its stderr if it fails.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-y", "-v", "error"]).args(args).output().expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// True if this ffmpeg has the named encoder.
pub fn has_encoder(name: &str) -> bool {
    let out = Command::new("ffmpeg").args(["-hide_banner", "-encoders"]).output().expect("ffmpeg runs");
    String::from_utf8_lossy(&out.stdout).split_whitespace().any(|w| w == name)
}

/// The lavfi inputs for `seconds` of test pattern and a 440 Hz tone.
pub fn lavfi_inputs(seconds: &str) -> Vec<String> {
    [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        seconds,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One track and its samples, with decode times.
pub struct Track {
    pub info: TrackInfo,
    pub samples: Vec<Sample>,
    /// Decode time of each sample in the track's timescale.
    pub dts: Vec<u64>,
}

impl Track {
    fn new(info: TrackInfo) -> Self {
        Track { info, samples: Vec::new(), dts: Vec::new() }
    }

    pub fn seconds(&self, t: u64) -> f64 {
        t as f64 / f64::from(self.info.timescale)
    }

    /// Total duration in seconds.
    pub fn duration(&self) -> f64 {
        self.seconds(self.samples.iter().map(|s| u64::from(s.duration)).sum())
    }
}

/// Reads an FLV file ffmpeg wrote (H.264 and/or AAC) into tracks: video (id 1) at 90 kHz, audio
/// (id 2) at its sample rate.
pub fn tracks_from_flv(path: &Path) -> Vec<Track> {
    let data = Bytes::from(std::fs::read(path).unwrap());
    let mut video: Option<Track> = None;
    let mut audio: Option<Track> = None;
    let mut video_times = Vec::new();
    for tag in flv::FlvReader::new(data).unwrap() {
        let tag = tag.unwrap();
        let body = &tag.body;
        match tag.tag_type {
            flv::TAG_VIDEO => {
                let h = flv::parse_video(body).unwrap();
                let payload = tag.body.slice(h.payload_offset..h.payload_end);
                if h.is_sequence_header() {
                    let params = flv::parse_avc_config(&payload).unwrap();
                    let codec = Codec::Avc { avcc: payload, width: params.width as u16, height: params.height as u16 };
                    video = Some(Track::new(TrackInfo { id: 1, timescale: VIDEO_TIMESCALE, codec }));
                } else if h.packet == flv::VideoPacket::Coded {
                    let track = video.as_mut().expect("sequence header first");
                    let cts_offset = h.composition_time * (VIDEO_TIMESCALE / 1000) as i32;
                    track.samples.push(Sample { duration: 0, keyframe: h.is_keyframe(), cts_offset, data: payload });
                    video_times.push(u64::from(tag.timestamp) * u64::from(VIDEO_TIMESCALE / 1000));
                }
            }
            flv::TAG_AUDIO => {
                let h = flv::parse_audio(body).unwrap();
                let payload = tag.body.slice(h.payload_offset..h.payload_end);
                if h.is_sequence_header() {
                    let params = flv::parse_aac_config(&payload).unwrap();
                    let codec =
                        Codec::Aac { asc: payload, sample_rate: params.sample_rate, channels: params.channels.into() };
                    audio = Some(Track::new(TrackInfo { id: 2, timescale: params.sample_rate, codec }));
                } else {
                    let track = audio.as_mut().expect("sequence header first");
                    track.dts.push(u64::from(AAC_FRAME) * track.samples.len() as u64);
                    track.samples.push(Sample { duration: AAC_FRAME, keyframe: true, cts_offset: 0, data: payload });
                }
            }
            _ => {}
        }
    }
    if let Some(v) = video.as_mut() {
        set_durations(v, &video_times);
    }
    video.into_iter().chain(audio).collect()
}

/// Durations from decode time differences; the last sample lasts as long as the one before.
fn set_durations(track: &mut Track, dts: &[u64]) {
    let mut last = 0;
    for i in 0..dts.len() {
        let d = dts.get(i + 1).map_or(last, |next| next - dts[i]);
        track.samples[i].duration = d as u32;
        last = d;
    }
    track.dts = dts.to_vec();
}

/// Splits every track at the video keyframe nearest the middle (or the middle of the audio)
/// and writes init segment + `fragments` fragments of it.
pub fn write_fmp4(tracks: &[Track]) -> Vec<u8> {
    let infos: Vec<_> = tracks.iter().map(|t| t.info.clone()).collect();
    let mut out = init_segment(&infos).unwrap();
    let split = split_time(tracks);
    let cuts: Vec<usize> =
        tracks.iter().map(|t| t.dts.iter().position(|&d| t.seconds(d) >= split).unwrap_or(t.dts.len())).collect();
    for (sequence, half) in [(1, 0), (2, 1)] {
        let runs: Vec<_> = tracks
            .iter()
            .zip(&cuts)
            .map(|(t, &cut)| {
                let (range, base) =
                    if half == 0 { (0..cut, Some(0)) } else { (cut..t.samples.len(), t.dts.get(cut).copied()) };
                let base = base.unwrap_or_else(|| t.samples.iter().map(|s| u64::from(s.duration)).sum());
                TrackRun { track_id: t.info.id, base_decode_time: base, samples: &t.samples[range] }
            })
            .collect();
        out.extend_from_slice(&fragment(sequence, &runs).unwrap());
    }
    out
}

fn split_time(tracks: &[Track]) -> f64 {
    let video = tracks.iter().find(|t| t.info.codec.is_video());
    let Some(v) = video else {
        return tracks[0].duration() / 2.0;
    };
    let middle = v.duration() / 2.0;
    let keys = v.samples.iter().zip(&v.dts).filter(|(s, _)| s.keyframe).map(|(_, &d)| v.seconds(d));
    keys.filter(|&t| t > 0.0).min_by(|a, b| (a - middle).abs().total_cmp(&(b - middle).abs())).unwrap_or(middle)
}

/// Runs ffprobe on `path`; asserts it printed no warning or error; returns the streams.
pub fn probe(path: &Path) -> Vec<Value> {
    let out = Command::new("ffprobe")
        .args(["-v", "warning", "-show_streams", "-show_format", "-count_frames", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffprobe complained: {stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["streams"].as_array().unwrap().clone()
}

/// Decodes the whole file with ffmpeg; asserts a clean exit and an empty stderr.
pub fn decodes_cleanly(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffmpeg decode errors: {stderr}");
}

/// What ffprobe must say about one stream.
pub struct Expect<'a> {
    pub codec: &'a str,
    pub size: Option<(u64, u64)>,
    pub frames: usize,
    /// Packets ffprobe must flag as keyframes: the sync samples.
    pub keyframes: usize,
    pub duration: f64,
}

impl<'a> Expect<'a> {
    /// Expects `track` as written: its picture size, sample and sync sample counts, and
    /// `duration` seconds.
    pub fn track(codec: &'a str, track: &Track, duration: f64) -> Self {
        let size = match &track.info.codec {
            Codec::Avc { width, height, .. } | Codec::Hevc { width, height, .. } | Codec::Av1 { width, height, .. } => {
                Some((u64::from(*width), u64::from(*height)))
            }
            _ => None,
        };
        let keyframes = track.samples.iter().filter(|s| s.keyframe).count();
        Expect { codec, size, frames: track.samples.len(), keyframes, duration }
    }
}

/// Probes `path` and checks its streams against `expects` (same order as the tracks); checks
/// ffmpeg decodes it without a word. Returns the streams for more checks.
pub fn check(path: &Path, expects: &[Expect<'_>]) -> Vec<Value> {
    let streams = probe(path);
    assert_eq!(streams.len(), expects.len(), "stream count: {streams:#?}");
    let keyframes = keyframe_packets(path, streams.len());
    for ((s, e), keys) in streams.iter().zip(expects).zip(keyframes) {
        assert_eq!(s["codec_name"], e.codec, "{s:#}");
        if let Some((w, h)) = e.size {
            assert_eq!((s["width"].as_u64(), s["height"].as_u64()), (Some(w), Some(h)), "{s:#}");
        }
        let frames: usize = s["nb_read_frames"].as_str().unwrap().parse().unwrap();
        assert_eq!(frames, e.frames, "frames of {}", e.codec);
        assert_eq!(keys, e.keyframes, "keyframe packets of {}", e.codec);
        let duration: f64 = s["duration"].as_str().expect("stream duration").parse().unwrap();
        assert!((duration - e.duration).abs() < 0.1, "{} duration {duration}, expected {}", e.codec, e.duration);
    }
    decodes_cleanly(path);
    streams
}

/// How many packets of each stream ffprobe flags as keyframes. The flags come from the `trun`
/// sample flags for HEVC and audio; for H.264 and AV1 ffmpeg's parsers re-derive them from the
/// bitstream, so only the unit tests guard those tracks' flags.
fn keyframe_packets(path: &Path, streams: usize) -> Vec<usize> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=stream_index,flags", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let mut counts = vec![0; streams];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (index, flags) = line.split_once(',').unwrap();
        if flags.starts_with('K') {
            counts[index.parse::<usize>().unwrap()] += 1;
        }
    }
    counts
}

/// The plain (non-fragmented) MP4 ffmpeg writes, read back into tracks through its sample
/// tables. Only what ffmpeg writes for one sample entry per track is handled.
pub fn tracks_from_mp4(path: &Path) -> Vec<Track> {
    let file = Bytes::from(std::fs::read(path).unwrap());
    let moov = child(&file, b"moov");
    let mut tracks = Vec::new();
    for trak in boxes(moov).map(Result::unwrap).filter(|b| &b.kind == b"trak") {
        let trak = trak.payload(moov);
        let tkhd = child(trak, b"tkhd");
        let id = be32(tkhd, if tkhd[0] == 1 { 20 } else { 12 });
        let mdia = child(trak, b"mdia");
        let mdhd = child(mdia, b"mdhd");
        let timescale = be32(mdhd, if mdhd[0] == 1 { 20 } else { 12 });
        let stbl = child(child(mdia, b"minf"), b"stbl");
        let codec = sample_entry_codec(child(stbl, b"stsd"));
        let mut track = Track::new(TrackInfo { id, timescale, codec });
        read_samples(&mut track, stbl, &file);
        tracks.push(track);
    }
    tracks
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    find(data, kind).unwrap_or_else(|| panic!("no {} box", String::from_utf8_lossy(kind))).payload(data)
}

fn be16(data: &[u8], pos: usize) -> u16 {
    u16::from_be_bytes([data[pos], data[pos + 1]])
}

fn be32(data: &[u8], pos: usize) -> u32 {
    u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap())
}

fn sample_entry_codec(stsd: &[u8]) -> Codec {
    let entry = boxes(&stsd[8..]).next().unwrap().unwrap();
    let body = entry.payload(&stsd[8..]);
    let config = |kind: &[u8; 4], fixed: usize| Bytes::copy_from_slice(child(&body[fixed..], kind));
    let (width, height) = (be16(body, 24), be16(body, 26));
    match &entry.kind {
        b"avc1" => Codec::Avc { avcc: config(b"avcC", 78), width, height },
        b"hvc1" | b"hev1" => Codec::Hevc { hvcc: config(b"hvcC", 78), width, height },
        b"av01" => Codec::Av1 { av1c: config(b"av1C", 78), width, height },
        b"Opus" => {
            let dops = config(b"dOps", 28);
            Codec::Opus { channels: dops[1].into(), pre_skip: be16(&dops, 2), input_sample_rate: be32(&dops, 4) }
        }
        // The AudioSpecificConfig is not dug out of `esds`: tests compare AAC samples only.
        b"mp4a" => Codec::Aac { asc: Bytes::new(), sample_rate: be16(body, 24).into(), channels: be16(body, 16) },
        other => panic!("sample entry {} not handled", String::from_utf8_lossy(other)),
    }
}

/// (count, value) pairs of `stts` / `ctts` / `stsc`-like tables after version/flags and count.
fn table(data: &[u8], fields: usize) -> Vec<Vec<u32>> {
    let count = be32(data, 4) as usize;
    (0..count).map(|i| (0..fields).map(|f| be32(data, 8 + (i * fields + f) * 4)).collect()).collect()
}

fn read_samples(track: &mut Track, stbl: &[u8], file: &Bytes) {
    let stsz = child(stbl, b"stsz");
    let (fixed, count) = (be32(stsz, 4), be32(stsz, 8) as usize);
    let sizes: Vec<u32> = (0..count).map(|i| if fixed != 0 { fixed } else { be32(stsz, 12 + 4 * i) }).collect();

    let durations: Vec<u32> =
        table(child(stbl, b"stts"), 2).iter().flat_map(|e| std::iter::repeat_n(e[1], e[0] as usize)).collect();
    let cts: Vec<i32> = find(stbl, b"ctts").map_or(vec![0; count], |b| {
        table(b.payload(stbl), 2).iter().flat_map(|e| std::iter::repeat_n(e[1] as i32, e[0] as usize)).collect()
    });
    let sync: Option<Vec<u32>> =
        find(stbl, b"stss").map(|b| table(b.payload(stbl), 1).into_iter().map(|e| e[0]).collect());

    let chunk_offsets: Vec<u64> = match find(stbl, b"stco") {
        Some(b) => table(b.payload(stbl), 1).into_iter().map(|e| u64::from(e[0])).collect(),
        None => {
            let co64 = child(stbl, b"co64");
            (0..be32(co64, 4) as usize)
                .map(|i| u64::from_be_bytes(co64[8 + 8 * i..16 + 8 * i].try_into().unwrap()))
                .collect()
        }
    };
    let stsc = table(child(stbl, b"stsc"), 3);
    let mut offsets = Vec::with_capacity(count);
    for (chunk, &start) in chunk_offsets.iter().enumerate() {
        let per_chunk = stsc.iter().rev().find(|e| e[0] as usize <= chunk + 1).unwrap()[1];
        let mut pos = start;
        for _ in 0..per_chunk {
            if offsets.len() == count {
                break;
            }
            offsets.push(pos);
            pos += u64::from(sizes[offsets.len() - 1]);
        }
    }

    let mut t = 0;
    for i in 0..count {
        let start = offsets[i] as usize;
        let data = file.slice(start..start + sizes[i] as usize);
        let keyframe = sync.as_ref().is_none_or(|s| s.contains(&(i as u32 + 1)));
        track.samples.push(Sample { duration: durations[i], keyframe, cts_offset: cts[i], data });
        track.dts.push(t);
        t += u64::from(durations[i]);
    }
}
