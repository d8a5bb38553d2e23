//! `onMetaData` for recorded files: the script tag players read before the first frame, with
//! the duration, the file size and a keyframe index for seeking.
//!
//! Defined by: FLV spec v10.1, E.5 (`onMetaData`: `duration`, `filesize`, ...); the keyframe
//! index (`keyframes` object with `times` and `filepositions` arrays) is the convention of
//! yamdi and flvtool2 that ffmpeg and Flash players read.
//!
//! A recorder does not know these values until the file is closed, so it writes the tag first
//! with a fixed, reserved body size ([`RecordingMeta::reserve`]) and rewrites the body in place
//! when the file is closed ([`RecordingMeta::encode`] always returns exactly the size asked
//! for, padding with a filler property). The `sluiceRecording` property is `true` while the
//! file is being written: a file that still says so after a crash is repaired on the next
//! start.

use amf0::Value;

use crate::FlvError;

/// The property that marks a file being written (`true`) or finished (`false`).
pub const IN_PROGRESS_KEY: &str = "sluiceRecording";
/// The filler property that pads the body to its reserved size.
const PADDING_KEY: &str = "sluicePadding";
/// Properties this module writes itself; a publisher's values for them are dropped.
const OWN_KEYS: &[&str] = &[
    IN_PROGRESS_KEY,
    PADDING_KEY,
    "duration",
    "filesize",
    "hasAudio",
    "hasVideo",
    "hasKeyframes",
    "keyframes",
    "metadatacreator",
];
/// Written as `metadatacreator`.
const CREATOR: &str = "sluice";
/// Bytes of one keyframe index entry: a Number in `times` and one in `filepositions`.
const ENTRY_SIZE: usize = 2 * 9;
/// Bytes of the keyframe index without entries: the `keyframes` key, the object marker, the
/// two array keys with their markers and counts, and the object end.
const INDEX_OVERHEAD: usize = (2 + 9) + 1 + (2 + 5) + 5 + (2 + 13) + 5 + 3;
/// Bytes of the padding property with no element: key, strict array marker, count.
const PADDING_MIN: usize = 2 + PADDING_KEY.len() + 1 + 4;

/// One keyframe index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// The keyframe's timestamp in milliseconds.
    pub time_ms: u64,
    /// The file offset of its tag (the tag header's first byte).
    pub position: u64,
}

/// The `onMetaData` of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingMeta {
    /// The file is still being written (`sluiceRecording`).
    pub in_progress: bool,
    /// `duration`, in milliseconds (written in seconds).
    pub duration_ms: u64,
    /// `filesize` in bytes.
    pub filesize: u64,
    /// `hasAudio`.
    pub has_audio: bool,
    /// `hasVideo`.
    pub has_video: bool,
    /// The publisher's own properties (`width`, `framerate`, `encoder`, ...), in its order,
    /// without those this struct writes itself.
    pub fields: Vec<(String, Value)>,
    /// Keyframes, in file order. [`RecordingMeta::encode`] thins them out evenly when they do
    /// not all fit.
    pub keyframes: Vec<Keyframe>,
}

impl RecordingMeta {
    /// Metadata for a new recording: in progress, empty, with the properties of the
    /// publisher's `onMetaData` (an AMF0 data message body) when there is one. A body that
    /// is not `onMetaData` contributes nothing.
    pub fn new(publisher: Option<&[u8]>, has_audio: bool, has_video: bool) -> Self {
        let fields = publisher.map(publisher_fields).unwrap_or_default();
        RecordingMeta {
            in_progress: true,
            duration_ms: 0,
            filesize: 0,
            has_audio,
            has_video,
            fields,
            keyframes: Vec::new(),
        }
    }

    /// The body size to reserve so that the final body, with up to `keyframes` index entries,
    /// fits.
    pub fn reserve(&self, keyframes: usize) -> usize {
        let index = if keyframes == 0 { 0 } else { INDEX_OVERHEAD + ENTRY_SIZE * keyframes };
        self.base_len() + index + PADDING_MIN
    }

    /// The body (`"onMetaData"` and the ECMA array), exactly `size` bytes long. Keyframes are
    /// thinned out evenly (the first is always kept) to what fits; the rest is padding.
    /// Fails when even the properties without an index do not fit.
    pub fn encode(&self, size: usize) -> Result<Vec<u8>, FlvError> {
        let base = self.base_len();
        if base + PADDING_MIN > size {
            return Err(FlvError::MetadataTooLarge { needed: base + PADDING_MIN, reserved: size });
        }
        let room = size - base - PADDING_MIN;
        let fit = room.saturating_sub(INDEX_OVERHEAD) / ENTRY_SIZE;
        let index = thin(&self.keyframes, fit);
        let mut props = self.properties(!index.is_empty());
        if !index.is_empty() {
            props.push(("keyframes".to_owned(), index_value(&index)));
        }
        let mut out = Vec::with_capacity(size);
        amf0::encode(&Value::String("onMetaData".into()), &mut out);
        amf0::encode(&Value::EcmaArray(props), &mut out);
        // The ECMA array ends with 00 00 09: the padding property goes before that end.
        let end = out.split_off(out.len() - 3);
        let left = size - out.len() - end.len();
        out.extend_from_slice(&padding(left));
        out.extend_from_slice(&end);
        debug_assert_eq!(out.len(), size);
        Ok(out)
    }

    /// Reads the metadata of a recording back. Fails when `body` is not an `onMetaData`
    /// message or has no `sluiceRecording` property (a sluice recorder did not write it).
    pub fn decode(body: &[u8]) -> Result<Self, FlvError> {
        let values = amf0::decode_all(body).map_err(|_| FlvError::Invalid("onMetaData AMF0 data"))?;
        if values.first().and_then(Value::as_str) != Some("onMetaData") {
            return Err(FlvError::Invalid("script tag: not onMetaData"));
        }
        let props = values.get(1).and_then(Value::properties).ok_or(FlvError::Invalid("onMetaData properties"))?;
        let get = |k: &str| props.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let flag = |k: &str| get(k).and_then(Value::as_bool).unwrap_or(false);
        let number = |k: &str| get(k).and_then(Value::as_f64).filter(|n| n.is_finite() && *n >= 0.0).unwrap_or(0.0);
        let in_progress = get(IN_PROGRESS_KEY)
            .and_then(Value::as_bool)
            .ok_or(FlvError::Invalid("onMetaData: not a sluice recording"))?;
        Ok(RecordingMeta {
            in_progress,
            duration_ms: (number("duration") * 1000.0).round() as u64,
            filesize: number("filesize") as u64,
            has_audio: flag("hasAudio"),
            has_video: flag("hasVideo"),
            fields: own_fields_removed(props),
            keyframes: get("keyframes").map(read_index).unwrap_or_default(),
        })
    }

    /// Every property but the keyframe index and padding, in the order written.
    fn properties(&self, has_index: bool) -> Vec<(String, Value)> {
        let mut props = vec![
            (IN_PROGRESS_KEY.to_owned(), Value::Boolean(self.in_progress)),
            ("duration".to_owned(), Value::Number(self.duration_ms as f64 / 1000.0)),
            ("filesize".to_owned(), Value::Number(self.filesize as f64)),
            ("hasAudio".to_owned(), Value::Boolean(self.has_audio)),
            ("hasVideo".to_owned(), Value::Boolean(self.has_video)),
            ("hasKeyframes".to_owned(), Value::Boolean(has_index)),
            ("metadatacreator".to_owned(), Value::String(CREATOR.to_owned())),
        ];
        props.extend(self.fields.iter().cloned());
        props
    }

    /// Bytes of everything but the index and the padding. Independent of the values of the
    /// numbers and flags, so the reserve made at the start still fits at the end.
    fn base_len(&self) -> usize {
        let mut out = Vec::new();
        amf0::encode(&Value::String("onMetaData".into()), &mut out);
        amf0::encode(&Value::EcmaArray(self.properties(false)), &mut out);
        out.len()
    }
}

/// The publisher's properties, minus the ones a recording writes itself.
fn publisher_fields(body: &[u8]) -> Vec<(String, Value)> {
    let Ok(values) = amf0::decode_all(body) else { return Vec::new() };
    // Some encoders send `@setDataFrame` first (RTMP's way to set metadata).
    let mut values = values.iter().skip_while(|v| v.as_str() == Some("@setDataFrame"));
    if values.next().and_then(Value::as_str) != Some("onMetaData") {
        return Vec::new();
    }
    values.next().and_then(Value::properties).map(own_fields_removed).unwrap_or_default()
}

fn own_fields_removed(props: &[(String, Value)]) -> Vec<(String, Value)> {
    props.iter().filter(|(k, _)| !OWN_KEYS.contains(&k.as_str())).cloned().collect()
}

/// At most `fit` keyframes spread evenly over `all`, the first included.
fn thin(all: &[Keyframe], fit: usize) -> Vec<Keyframe> {
    if all.len() <= fit {
        return all.to_vec();
    }
    (0..fit).map(|i| all[i * all.len() / fit]).collect()
}

fn index_value(index: &[Keyframe]) -> Value {
    let times = index.iter().map(|k| Value::Number(k.time_ms as f64 / 1000.0)).collect();
    let positions = index.iter().map(|k| Value::Number(k.position as f64)).collect();
    Value::Object(vec![
        ("times".to_owned(), Value::StrictArray(times)),
        ("filepositions".to_owned(), Value::StrictArray(positions)),
    ])
}

fn read_index(v: &Value) -> Vec<Keyframe> {
    let numbers = |k: &str| -> Vec<f64> {
        match v.get(k) {
            Some(Value::StrictArray(items)) => items.iter().filter_map(Value::as_f64).collect(),
            _ => Vec::new(),
        }
    };
    let (times, positions) = (numbers("times"), numbers("filepositions"));
    times
        .iter()
        .zip(&positions)
        .filter(|(t, p)| t.is_finite() && p.is_finite() && **t >= 0.0 && **p >= 0.0)
        .map(|(t, p)| Keyframe { time_ms: (t * 1000.0).round() as u64, position: *p as u64 })
        .collect()
}

/// The filler property, exactly `len` bytes (at least [`PADDING_MIN`]): a strict array of
/// nulls, one byte each. (Not a string: ffmpeg refuses metadata strings of 256 bytes or more.)
fn padding(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(PADDING_KEY.len() as u16).to_be_bytes());
    out.extend_from_slice(PADDING_KEY.as_bytes());
    out.push(amf0::marker::STRICT_ARRAY);
    // Reserves are far below 4 GiB: the tag body itself is limited to 24 bits.
    out.extend_from_slice(&((len - PADDING_MIN) as u32).to_be_bytes());
    out.resize(len, amf0::marker::NULL);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> Vec<u8> {
        amf0::encode_all(&[
            Value::String("@setDataFrame".into()),
            Value::String("onMetaData".into()),
            Value::EcmaArray(vec![
                ("width".into(), Value::Number(640.0)),
                ("duration".into(), Value::Number(0.0)),
                ("encoder".into(), Value::String("Lavf59".into())),
            ]),
        ])
    }

    #[test]
    fn publisher_fields_are_kept_and_own_ones_replaced() {
        let m = RecordingMeta::new(Some(&publisher()), true, true);
        assert_eq!(m.fields.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["width", "encoder"]);
        assert!(RecordingMeta::new(Some(b"\x02\x00\x03abc"), true, false).fields.is_empty());
        assert!(RecordingMeta::new(Some(b"garbage"), true, false).fields.is_empty());
    }

    #[test]
    fn encodes_to_the_reserved_size_and_reads_back() {
        let mut m = RecordingMeta::new(Some(&publisher()), true, true);
        let size = m.reserve(10);
        let start = m.encode(size).unwrap();
        assert_eq!(start.len(), size);
        let back = RecordingMeta::decode(&start).unwrap();
        assert!(back.in_progress);
        assert_eq!(back.fields, m.fields);

        m.in_progress = false;
        m.duration_ms = 10_040;
        m.filesize = 1_234_567;
        m.keyframes = (0..10).map(|i| Keyframe { time_ms: i * 1000, position: 100 + i * 5000 }).collect();
        let end = m.encode(size).unwrap();
        assert_eq!(end.len(), size, "the same size: rewritten in place");
        assert_eq!(RecordingMeta::decode(&end).unwrap(), m);
        let values = amf0::decode_all(&end).unwrap();
        assert_eq!(values[1].get("duration").and_then(Value::as_f64), Some(10.04));
        assert_eq!(values[1].get("hasKeyframes").and_then(Value::as_bool), Some(true));
    }

    #[test]
    fn too_many_keyframes_are_thinned_evenly() {
        let mut m = RecordingMeta::new(None, false, true);
        let size = m.reserve(4);
        m.keyframes = (0..100).map(|i| Keyframe { time_ms: i * 2000, position: i * 10 }).collect();
        let back = RecordingMeta::decode(&m.encode(size).unwrap()).unwrap();
        let times: Vec<u64> = back.keyframes.iter().map(|k| k.time_ms).collect();
        assert_eq!(times, [0, 50_000, 100_000, 150_000]);
        // Without room for an index there is none, and the flag says so.
        let tight = m.reserve(0);
        let values = amf0::decode_all(&m.encode(tight).unwrap()).unwrap();
        assert!(values[1].get("keyframes").is_none());
    }

    #[test]
    fn padding_of_any_length_fills_exactly() {
        let m = RecordingMeta::new(None, true, true);
        let base = m.reserve(0);
        for extra in [0, 1, 17, 18, 65_535, 65_536, 70_000] {
            let body = m.encode(base + extra).unwrap();
            assert_eq!(body.len(), base + extra);
            assert!(RecordingMeta::decode(&body).is_ok(), "{extra}");
        }
        assert_eq!(
            m.encode(base - 1),
            Err(FlvError::MetadataTooLarge { needed: base, reserved: base - 1 }),
            "names what did not fit"
        );
    }

    #[test]
    fn foreign_metadata_is_not_a_recording() {
        let body = amf0::encode_all(&[
            Value::String("onMetaData".into()),
            Value::EcmaArray(vec![("duration".into(), Value::Number(3.5))]),
        ]);
        assert_eq!(RecordingMeta::decode(&body), Err(FlvError::Invalid("onMetaData: not a sluice recording")));
        assert!(RecordingMeta::decode(b"\x02\x00\x04abcd").is_err());
    }
}
