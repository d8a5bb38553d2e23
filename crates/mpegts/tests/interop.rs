//! Interop: media ffmpeg made (FLV, or raw HEVC), converted with `es`, muxed, and judged by
//! ffprobe: no warnings, the right streams, every frame decodes, the duration holds.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use flv::{AudioCodec, FlvReader, VideoCodec, VideoPacket, TAG_AUDIO, TAG_VIDEO};
use mpegts::es::{self, AacConfig, ParameterSets};
use mpegts::{AudioType, Muxer, Pes, Track, VideoType, PACKET_SIZE};
use serde_json::Value;

/// Timestamps start this far in (90 kHz), as nginx-rtmp's HLS delay, so the PCR can run behind.
const TS_OFFSET: u64 = 63_000;
/// How far the PCR runs behind the DTS of the PES it rides on.
const PCR_DELAY: u64 = 63_000;
/// The clip length every source is made with.
const CLIP_SECONDS: f64 = 2.0;

/// One thing to mux, whatever container it came from.
enum Input {
    VideoConfig(Vec<u8>),
    Video { dts_ms: u32, cts_ms: i32, key: bool, data: Vec<u8> },
    AudioConfig(Vec<u8>),
    Audio { ts_ms: u32, data: Vec<u8> },
}

struct Muxed {
    ts: Vec<u8>,
    video_frames: usize,
    audio_frames: usize,
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// ffmpeg with lavfi sources for `seconds`, extra arguments, then the output file.
fn ffmpeg(video: bool, audio: bool, args: &[&str], out: &Path) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y"]);
    if video {
        cmd.args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]);
    }
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
    }
    cmd.args(["-t", &CLIP_SECONDS.to_string()]).args(args).arg(out);
    run(&mut cmd);
}

fn video_type(codec: VideoCodec) -> VideoType {
    match codec {
        VideoCodec::Avc => VideoType::H264,
        VideoCodec::Hevc => VideoType::H265,
        other => panic!("no TS mapping for {other:?}"),
    }
}

/// Reads an FLV file into inputs, and the codecs it uses.
fn read_flv(path: &Path) -> (Option<VideoType>, Option<AudioType>, Vec<Input>) {
    let data = Bytes::from(std::fs::read(path).unwrap());
    let (mut video, mut audio, mut inputs) = (None, None, Vec::new());
    for tag in FlvReader::new(data).unwrap() {
        let tag = tag.unwrap();
        let body = &tag.body[..];
        match tag.tag_type {
            TAG_VIDEO => {
                let h = flv::parse_video(body).unwrap();
                video = Some(video_type(h.codec));
                let payload = h.payload(body).to_vec();
                // ffmpeg ends the file with an end-of-sequence tag, which carries no frame.
                match h.packet {
                    VideoPacket::SequenceStart => inputs.push(Input::VideoConfig(payload)),
                    VideoPacket::Coded => {
                        let (key, cts_ms) = (h.is_keyframe(), h.composition_time);
                        inputs.push(Input::Video { dts_ms: tag.timestamp, cts_ms, key, data: payload });
                    }
                    _ => {}
                }
            }
            TAG_AUDIO => {
                let h = flv::parse_audio(body).unwrap();
                audio = Some(match h.codec {
                    AudioCodec::Aac => AudioType::Aac,
                    AudioCodec::Mp3 => AudioType::Mp3,
                    other => panic!("no TS mapping for {other:?}"),
                });
                let payload = h.payload(body).to_vec();
                if h.is_sequence_header() {
                    inputs.push(Input::AudioConfig(payload));
                } else {
                    inputs.push(Input::Audio { ts_ms: tag.timestamp, data: payload });
                }
            }
            _ => {}
        }
    }
    (video, audio, inputs)
}

/// What a live HLS writer does: tables first, one PES per frame, ADTS for AAC, Annex B with
/// parameter sets on keyframes for video, a PCR on every PES of the PCR PID.
fn mux(video: Option<VideoType>, audio: Option<AudioType>, inputs: &[Input]) -> Muxed {
    let mut muxer = Muxer::new(video, audio);
    let pcr_on_audio = video.is_none();
    let mut out = Muxed { ts: Vec::new(), video_frames: 0, audio_frames: 0 };
    muxer.write_tables(&mut out.ts);
    let mut ps: Option<ParameterSets> = None;
    let mut aac: Option<AacConfig> = None;
    let mut es_buf = Vec::new();
    for input in inputs {
        es_buf.clear();
        match input {
            Input::VideoConfig(rec) => {
                ps = Some(match video.unwrap() {
                    VideoType::H264 => es::avc_parameter_sets(rec).unwrap(),
                    VideoType::H265 => es::hevc_parameter_sets(rec).unwrap(),
                });
            }
            Input::Video { dts_ms, cts_ms, key, data } => {
                let ps = ps.as_ref().expect("video before its sequence header");
                es::to_annex_b(video.unwrap(), ps, data, *key, &mut es_buf).unwrap();
                let dts = u64::from(*dts_ms) * 90 + TS_OFFSET;
                let pts = dts.checked_add_signed(i64::from(*cts_ms) * 90).unwrap();
                let pes = Pes { pts, dts: Some(dts), pcr: Some(dts - PCR_DELAY), random_access: *key, data: &es_buf };
                muxer.write_pes(Track::Video, &pes, &mut out.ts).unwrap();
                out.video_frames += 1;
            }
            Input::AudioConfig(asc) => aac = Some(es::parse_audio_specific_config(asc).unwrap()),
            Input::Audio { ts_ms, data } => {
                let payload: &[u8] = match audio.unwrap() {
                    AudioType::Aac => {
                        es::write_adts(aac.as_ref().expect("AAC before its config"), data, &mut es_buf).unwrap();
                        &es_buf
                    }
                    AudioType::Mp3 => data,
                };
                let pts = u64::from(*ts_ms) * 90 + TS_OFFSET;
                let pcr = pcr_on_audio.then(|| pts - PCR_DELAY);
                let pes = Pes { pts, dts: None, pcr, random_access: pcr_on_audio, data: payload };
                muxer.write_pes(Track::Audio, &pes, &mut out.ts).unwrap();
                out.audio_frames += 1;
            }
        }
    }
    assert_eq!(out.ts.len() % PACKET_SIZE, 0);
    out
}

/// ffprobe's verdict on a .ts file: the streams, after asserting it printed no warning.
fn probe(path: &Path) -> Vec<Value> {
    let out =
        run(Command::new("ffprobe").args(["-v", "warning", "-show_streams", "-count_frames", "-of", "json"]).arg(path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "ffprobe complained about {}:\n{stderr}", path.display());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["streams"].as_array().cloned().unwrap_or_default()
}

fn field<'a>(stream: &'a Value, name: &str) -> &'a str {
    stream[name].as_str().unwrap_or_else(|| panic!("no {name} in {stream}"))
}

fn stream<'a>(streams: &'a [Value], codec: &str) -> &'a Value {
    streams.iter().find(|s| s["codec_name"] == codec).unwrap_or_else(|| panic!("no {codec} stream in {streams:#?}"))
}

fn assert_video(streams: &[Value], codec: &str, frames: usize) {
    let v = stream(streams, codec);
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(320), Some(240)), "{v}");
    assert_eq!(field(v, "nb_read_frames"), frames.to_string(), "every video frame decodes: {v}");
    assert_eq!(frames, 50, "2 s at 25 fps");
    assert_duration(v);
}

fn assert_audio(streams: &[Value], codec: &str, frames: usize) {
    let a = stream(streams, codec);
    assert_eq!(a["sample_rate"], "44100", "{a}");
    assert_eq!(field(a, "nb_read_frames"), frames.to_string(), "every audio frame decodes: {a}");
    assert!(frames > 60, "2 s of audio is more than 60 frames, got {frames}");
    assert_duration(a);
}

fn assert_duration(s: &Value) {
    let d: f64 = field(s, "duration").parse().unwrap();
    assert!((d - CLIP_SECONDS).abs() <= 0.1, "duration {d} s, want {CLIP_SECONDS} s: {s}");
}

fn flv_case(video: bool, audio: bool, args: &[&str]) -> (Vec<Value>, Muxed) {
    let dir = tempfile::tempdir().unwrap();
    let flv = dir.path().join("in.flv");
    ffmpeg(video, audio, args, &flv);
    let (v, a, inputs) = read_flv(&flv);
    assert_eq!((v.is_some(), a.is_some()), (video, audio));
    let muxed = mux(v, a, &inputs);
    let ts = dir.path().join("out.ts");
    std::fs::write(&ts, &muxed.ts).unwrap();
    let streams = probe(&ts);
    assert_eq!(streams.len(), usize::from(video) + usize::from(audio), "{streams:#?}");
    (streams, muxed)
}

const H264: [&str; 6] = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25"];

#[test]
fn h264_and_aac_from_flv() {
    let args = [&H264[..], &["-c:a", "aac", "-f", "flv"]].concat();
    let (streams, muxed) = flv_case(true, true, &args);
    assert_video(&streams, "h264", muxed.video_frames);
    assert_audio(&streams, "aac", muxed.audio_frames);
}

#[test]
fn h264_only_from_flv() {
    let args = [&H264[..], &["-f", "flv"]].concat();
    let (streams, muxed) = flv_case(true, false, &args);
    assert_video(&streams, "h264", muxed.video_frames);
}

#[test]
fn aac_only_from_flv() {
    let (streams, muxed) = flv_case(false, true, &["-c:a", "aac", "-f", "flv"]);
    assert_audio(&streams, "aac", muxed.audio_frames);
}

#[test]
fn mp3_only_from_flv() {
    let (streams, muxed) = flv_case(false, true, &["-c:a", "libmp3lame", "-ar", "44100", "-f", "flv"]);
    assert_audio(&streams, "mp3", muxed.audio_frames);
}

/// Splits an Annex B byte stream into NAL units (start codes removed).
fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::new();
    for (n, &s) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |&next| next - 3);
        // A 4-byte start code's zero_byte (and trailing_zero_8bits) belong to no NAL.
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        nals.push(&data[s..end]);
    }
    nals
}

/// Builds an `HEVCDecoderConfigurationRecord` around VPS, SPS and PPS, with 4-byte NAL lengths.
/// The profile fields are not read by `es`; they carry Main profile, level 2 values.
fn hvcc(vps: &[u8], sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let mut rec = vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 60, 0xF0, 0, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0, 0x0F, 3];
    for (t, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        rec.push(0x80 | t);
        rec.extend_from_slice(&1u16.to_be_bytes());
        rec.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        rec.extend_from_slice(nal);
    }
    rec
}

#[test]
fn hevc_from_annex_b() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("in.hevc");
    let x265 = "keyint=25:min-keyint=25:bframes=0:log-level=error";
    let args = ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", x265, "-f", "hevc"];
    ffmpeg(true, false, &args, &raw);
    let data = std::fs::read(&raw).unwrap();

    // Parameter sets go to the record; every other NAL to the access unit it belongs to. A VCL
    // NAL with first_slice_segment_in_pic_flag starts a picture; so do non-VCL NALs after one.
    let (mut vps, mut sps, mut pps) = (None, None, None);
    let mut units: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut unit_has_vcl = true;
    for nal in split_annex_b(&data) {
        let t = (nal[0] >> 1) & 0x3F;
        match t {
            32 => vps = Some(nal.to_vec()),
            33 => sps = Some(nal.to_vec()),
            34 => pps = Some(nal.to_vec()),
            _ => {
                let vcl = t < 32;
                let first_slice = vcl && nal[2] & 0x80 != 0;
                if unit_has_vcl && (first_slice || !vcl) {
                    units.push((false, Vec::new()));
                    unit_has_vcl = false;
                }
                let unit = units.last_mut().unwrap();
                unit.0 |= (16..=23).contains(&t); // IRAP
                unit.1.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                unit.1.extend_from_slice(nal);
                unit_has_vcl |= vcl;
            }
        }
    }
    let record = hvcc(&vps.unwrap(), &sps.unwrap(), &pps.unwrap());
    let mut inputs = vec![Input::VideoConfig(record)];
    for (i, (key, data)) in units.into_iter().enumerate() {
        inputs.push(Input::Video { dts_ms: i as u32 * 40, cts_ms: 0, key, data });
    }
    assert!(matches!(inputs[1], Input::Video { key: true, .. }), "the stream starts on a keyframe");

    let muxed = mux(Some(VideoType::H265), None, &inputs);
    let ts = dir.path().join("out.ts");
    std::fs::write(&ts, &muxed.ts).unwrap();
    let streams = probe(&ts);
    assert_eq!(streams.len(), 1, "{streams:#?}");
    assert_video(&streams, "hevc", muxed.video_frames);
}
