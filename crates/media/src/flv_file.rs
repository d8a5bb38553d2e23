//! FLV files: every tag's header is read once (11 bytes and the first bytes of its body) to
//! index the tags; the first `onMetaData`, video and audio sequence headers become the
//! [`Media::headers`], every other tag a sample sent as it is. Keyframes come from the video
//! tags themselves, so seeking works in files without an `onMetaData` `keyframes` index.
//! Defined by: FLV spec v10.1, E.2 (header), E.3 (tags), E.4.3 (video tag header), and the
//! Enhanced RTMP spec (ex-header video tags).

use bytes::Bytes;

use crate::{read_exact, Codec, Format, Kind, Media, MediaError, ReadAt, Sample, MAX_HEADER, MAX_ITEMS, MAX_SAMPLES};

const TAG_HEADER: u64 = 11;
/// Tag header plus the body bytes that say what the tag is.
const PEEK: usize = 16;

/// Tracks of an FLV file, by tag kind (indexes into [`Media::codecs`]).
const VIDEO: u8 = 0;
const AUDIO: u8 = 1;
const DATA: u8 = 2;

pub(crate) fn open(r: &mut dyn ReadAt) -> Result<Media, MediaError> {
    let header = read_exact(r, 0, 9, "FLV header")?;
    let data_offset = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    // The first tag follows the header and the first PreviousTagSize.
    let mut pos = u64::from(data_offset.max(9)) + 4;
    let size = r.size();
    let mut media = Media {
        format: Format::Flv,
        duration_ms: 0,
        start_ms: 0,
        headers: Vec::new(),
        codecs: vec![(Kind::Video, Codec::Tag), (Kind::Audio, Codec::Tag), (Kind::Data, Codec::Tag)],
        samples: Vec::new(),
    };
    let (mut meta, mut video_hdr, mut audio_hdr) = (None, None, None);
    let mut walked = 0;
    while pos + TAG_HEADER <= size {
        walked += 1;
        if walked > MAX_ITEMS {
            return Err(MediaError::TooLarge("FLV tags"));
        }
        let peek = r.read_at(pos, PEEK)?;
        if peek.len() < TAG_HEADER as usize {
            break;
        }
        let tag_type = peek[0] & 0x1F;
        let body_len = u32::from_be_bytes([0, peek[1], peek[2], peek[3]]);
        let ts = u32::from_be_bytes([peek[7], peek[4], peek[5], peek[6]]);
        let body = pos + TAG_HEADER;
        let next = body + u64::from(body_len) + 4;
        // A tag cut short by the end of the file (a recording that was interrupted) ends it.
        if body + u64::from(body_len) > size {
            break;
        }
        let first = &peek[TAG_HEADER as usize..];
        let sample = |track, keyframe| Sample { offset: body, size: body_len, dts: ts, cts: 0, keyframe, track };
        match tag_type {
            9 if body_len > 0 => {
                if is_video_header(first) && video_hdr.is_none() {
                    video_hdr = Some(read_header(r, body, body_len)?);
                } else {
                    let keyframe = first[0] >> 4 & 0x7 == 1 && !is_video_header(first);
                    push(&mut media.samples, sample(VIDEO, keyframe))?;
                }
            }
            8 if body_len > 0 => {
                if is_audio_header(first) && audio_hdr.is_none() {
                    audio_hdr = Some(read_header(r, body, body_len)?);
                } else {
                    push(&mut media.samples, sample(AUDIO, false))?;
                }
            }
            18 => {
                if meta.is_none() && body_len as usize <= MAX_HEADER {
                    let data = read_exact(r, body, body_len as usize, "FLV script tag")?;
                    if is_on_metadata(&data) {
                        meta = Some(Bytes::from(data));
                        pos = next;
                        continue;
                    }
                }
                push(&mut media.samples, sample(DATA, false))?;
            }
            _ => {}
        }
        media.duration_ms = media.duration_ms.max(u64::from(ts));
        pos = next;
    }
    media.headers = [(Kind::Data, meta), (Kind::Video, video_hdr), (Kind::Audio, audio_hdr)]
        .into_iter()
        .filter_map(|(k, b)| Some((k, b?)))
        .collect();
    match metadata_duration(&media.headers) {
        Some(d) => media.duration_ms = media.duration_ms.max(d),
        // Players take the duration from `onMetaData`: say it when the file does not (a file
        // written to a pipe has 0, a file without metadata nothing).
        None => set_duration(&mut media.headers, media.duration_ms),
    }
    Ok(media)
}

fn push(samples: &mut Vec<Sample>, s: Sample) -> Result<(), MediaError> {
    if samples.len() >= MAX_SAMPLES {
        return Err(MediaError::TooLarge("samples"));
    }
    samples.push(s);
    Ok(())
}

fn read_header(r: &mut dyn ReadAt, at: u64, len: u32) -> Result<Bytes, MediaError> {
    if len as usize > MAX_HEADER {
        return Err(MediaError::TooLarge("sequence header"));
    }
    Ok(Bytes::from(read_exact(r, at, len as usize, "FLV sequence header")?))
}

/// An AVC/HEVC sequence header (legacy), or an Enhanced RTMP SequenceStart.
fn is_video_header(body: &[u8]) -> bool {
    match body {
        [b0, ..] if b0 & 0x80 != 0 => b0 & 0x0F == 0,
        [b0, 0, ..] => matches!(b0 & 0x0F, 7 | 12),
        _ => false,
    }
}

/// An AAC sequence header.
fn is_audio_header(body: &[u8]) -> bool {
    matches!(body, [b0, 0, ..] if b0 >> 4 == 10)
}

fn is_on_metadata(body: &[u8]) -> bool {
    let mut rest = body;
    matches!(amf0::decode(&mut rest), Ok(amf0::Value::String(s)) if s == "onMetaData")
}

/// Sets (or adds) `duration` in the `onMetaData` of `headers` (adding one when there is none).
fn set_duration(headers: &mut Vec<(Kind, Bytes)>, ms: u64) {
    let duration = ("duration".to_owned(), amf0::Value::Number(ms as f64 / 1000.0));
    let old = headers.iter().position(|(k, _)| *k == Kind::Data);
    let mut props = match old.map(|i| amf0::decode_all(&headers[i].1)) {
        Some(Ok(values)) => match values.into_iter().nth(1) {
            Some(amf0::Value::EcmaArray(p) | amf0::Value::Object(p)) => p,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    props.retain(|(k, _)| k != "duration");
    props.insert(0, duration);
    let body =
        Bytes::from(amf0::encode_all(&[amf0::Value::String("onMetaData".into()), amf0::Value::EcmaArray(props)]));
    match old {
        Some(i) => headers[i].1 = body,
        None => headers.insert(0, (Kind::Data, body)),
    }
}

/// `onMetaData`'s `duration`, in milliseconds (none when absent or 0).
fn metadata_duration(headers: &[(Kind, Bytes)]) -> Option<u64> {
    let (_, meta) = headers.iter().find(|(k, _)| *k == Kind::Data)?;
    let values = amf0::decode_all(meta).ok()?;
    let props = match values.get(1)? {
        amf0::Value::EcmaArray(p) | amf0::Value::Object(p) => p,
        _ => return None,
    };
    let secs = props.iter().find(|(k, _)| k == "duration")?.1.as_f64()?;
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then_some((secs * 1000.0) as u64)
}
