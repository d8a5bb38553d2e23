//! nginx-rtmp's live module: what a publisher's messages become in the hub, and which of the
//! hub's frames a player is sent. The directive table (`live`, `meta`, `wait_key`, `wait_video`,
//! `publish_notify`, `play_restart`, `idle_streams`, `drop_idle_publisher`, `gop_cache`, `sync`,
//! `interleave`) lives in `config::live`; this module applies it.
//!
//! Pure logic, no I/O: the connection task calls it.

use amf0::Value;
use bytes::Bytes;
use rtmp::MediaKind;

use crate::config::{LiveConf, MetaMode};
use crate::hub::{Frame, Tag};

/// Metadata fields kept by `meta on` (nginx-rtmp rebuilds metadata from what it parsed).
const META_ON_FIELDS: &[&str] = &[
    "width",
    "height",
    "displayWidth",
    "displayHeight",
    "duration",
    "framerate",
    "fps",
    "videodatarate",
    "videocodecid",
    "audiodatarate",
    "audiocodecid",
    "audiosamplerate",
    "audiosamplesize",
    "audiochannels",
    "stereo",
    "profile",
    "level",
];

/// Turn one message from a publisher into a hub frame; `None` means it is not forwarded. The
/// tag header is parsed here, once: the frame carries it to every output.
pub fn ingest(conf: &LiveConf, kind: MediaKind, timestamp: u32, payload: Bytes) -> Option<Frame> {
    match kind {
        MediaKind::Video => Frame::video(timestamp, payload),
        MediaKind::Audio => Some(Frame::audio(timestamp, payload)),
        // `onMetaData` is flagged as the data stream's "sequence header": the one data message
        // kept for new players and recordings. Cue points and the rest only pass through.
        MediaKind::Data => {
            let (payload, is_metadata) = metadata(conf.meta, payload)?;
            Some(Frame::data(0, payload, is_metadata))
        }
    }
}

/// Apply `meta on|copy|off` to an `onMetaData` message (returned with `true`). Other data
/// messages pass unchanged (with `false`).
fn metadata(mode: MetaMode, payload: Bytes) -> Option<(Bytes, bool)> {
    let values = amf0::decode_all(&payload).ok()?;
    if values.first().and_then(Value::as_str) != Some("onMetaData") {
        return Some((payload, false));
    }
    let payload = match mode {
        MetaMode::Off => None,
        MetaMode::Copy => Some(payload),
        MetaMode::On => {
            let props = values.get(1).and_then(Value::properties).unwrap_or(&[]);
            let kept: Vec<(String, Value)> =
                props.iter().filter(|(k, _)| META_ON_FIELDS.contains(&k.as_str())).cloned().collect();
            let mut out = Vec::new();
            amf0::encode(&Value::String("onMetaData".into()), &mut out);
            amf0::encode(&Value::EcmaArray(kept), &mut out);
            Some(out.into())
        }
    }?;
    Some((payload, true))
}

/// A one-line description of a sequence header ("video: H.264 High 3.1 1280x720"), for logs
/// and stats; `Ok(None)` for codecs whose configuration is not parsed.
pub fn describe_sequence_header(frame: &Frame) -> Result<Option<String>, flv::FlvError> {
    match frame.tag() {
        Tag::Video(h) => {
            let Some(p) = flv::codec::parse_video_config(h.codec, frame.codec_payload())? else { return Ok(None) };
            let (codec, profile, level) = (p.codec.name(), p.profile_name(), p.level_name());
            Ok(Some(format!("video: {codec} {profile} {level} {}x{}", p.width, p.height)))
        }
        Tag::Audio(h) => {
            let Some(p) = flv::codec::parse_audio_config(h.codec, frame.codec_payload())? else { return Ok(None) };
            Ok(Some(format!("audio: {} {} Hz {} ch", p.codec.name(), p.sample_rate, p.channels)))
        }
        Tag::None => Ok(None),
    }
}

/// Per-player gate: decides which frames a player receives (wait_key, wait_video, pause).
#[derive(Debug, Clone)]
pub struct PlayerGate {
    wait_key: bool,
    wait_video: bool,
    /// Waiting for a video keyframe before sending video.
    need_key: bool,
    /// A video frame has been sent since (re)start.
    sent_video: bool,
    paused: bool,
}

impl PlayerGate {
    /// A gate for a player starting now.
    pub fn new(conf: &LiveConf) -> Self {
        Self {
            wait_key: conf.wait_key,
            wait_video: conf.wait_video,
            need_key: conf.wait_key,
            sent_video: false,
            paused: false,
        }
    }

    /// Start over (new publisher, resume after pause, skip after lag): wait for a keyframe again.
    pub fn restart(&mut self) {
        self.need_key = true;
        self.sent_video = false;
    }

    /// Pause or resume.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        if !paused {
            self.restart();
        }
    }

    /// Whether the player is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Should `frame` be sent to this player?
    pub fn admit(&mut self, frame: &Frame, stream_has_video: bool) -> bool {
        if self.paused {
            return false;
        }
        match frame.kind {
            MediaKind::Data => true,
            _ if frame.sequence_header => true,
            MediaKind::Video => {
                if self.need_key && !frame.keyframe {
                    return !self.wait_key && self.sent_video;
                }
                self.need_key = false;
                self.sent_video = true;
                true
            }
            MediaKind::Audio => !(self.wait_video && stream_has_video && !self.sent_video),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> LiveConf {
        crate::config::Config::default_config().servers[0].apps[0].live.clone()
    }

    fn meta_payload() -> Bytes {
        let mut out = Vec::new();
        amf0::encode(&Value::String("onMetaData".into()), &mut out);
        amf0::encode(
            &Value::EcmaArray(vec![
                ("width".into(), Value::Number(1280.0)),
                ("encoder".into(), Value::String("Lavf".into())),
            ]),
            &mut out,
        );
        out.into()
    }

    #[test]
    fn meta_modes() {
        let copied = metadata(MetaMode::Copy, meta_payload()).unwrap();
        assert_eq!(copied, (meta_payload(), true));
        assert!(metadata(MetaMode::Off, meta_payload()).is_none());
        let rebuilt = amf0::decode_all(&metadata(MetaMode::On, meta_payload()).unwrap().0).unwrap();
        assert_eq!(rebuilt[1].get("width").and_then(Value::as_f64), Some(1280.0));
        assert!(rebuilt[1].get("encoder").is_none(), "meta on keeps only known fields");
    }

    #[test]
    fn only_on_metadata_is_flagged_as_the_data_header() {
        let meta = ingest(&conf(), MediaKind::Data, 0, meta_payload()).unwrap();
        assert!(meta.sequence_header);
        let mut cue = Vec::new();
        amf0::encode(&Value::String("onCuePoint".into()), &mut cue);
        amf0::encode(&Value::EcmaArray(vec![("name".into(), Value::String("ad".into()))]), &mut cue);
        let cue = ingest(&conf(), MediaKind::Data, 0, cue.into()).unwrap();
        assert!(!cue.sequence_header, "a cue point passes through but is not kept as metadata");
    }

    /// Ingest parses the tag header once and the frame carries it to every output; a video
    /// message without one is not forwarded, an audio one is (as it came).
    #[test]
    fn ingest_gives_frames_their_parsed_header() {
        let avc = Bytes::from_static(&[0x27, 1, 0, 0, 0x21, 0, 0, 0, 1, 0x41]);
        let f = ingest(&conf(), MediaKind::Video, 80, avc.clone()).unwrap();
        assert_eq!(f.tag(), &Tag::Video(flv::parse_video(&avc).unwrap()));
        assert_eq!(f.video_header().map(|h| h.composition_time), Some(33));
        assert!(!f.keyframe && !f.sequence_header);
        let aac = ingest(&conf(), MediaKind::Audio, 80, Bytes::from_static(&[0xAF, 1, 0x21])).unwrap();
        assert_eq!(aac.audio_header().map(|h| h.packet), Some(flv::AudioPacket::Coded));
        assert_eq!(aac.codec_payload(), &[0x21]);
        assert!(ingest(&conf(), MediaKind::Video, 0, Bytes::new()).is_none());
        let empty = ingest(&conf(), MediaKind::Audio, 0, Bytes::new()).unwrap();
        assert_eq!(empty.tag(), &Tag::None);
        assert_eq!(ingest(&conf(), MediaKind::Data, 0, meta_payload()).unwrap().tag(), &Tag::None);
    }

    #[test]
    fn describes_sequence_headers_from_the_frame() {
        let aac = ingest(&conf(), MediaKind::Audio, 0, Bytes::from_static(&[0xAF, 0, 0x12, 0x10])).unwrap();
        assert_eq!(describe_sequence_header(&aac).unwrap().as_deref(), Some("audio: AAC 44100 Hz 2 ch"));
        let meta = ingest(&conf(), MediaKind::Data, 0, meta_payload()).unwrap();
        assert_eq!(describe_sequence_header(&meta).unwrap(), None);
    }

    #[test]
    fn wait_key_holds_video_until_keyframe_and_wait_video_holds_audio() {
        let mut c = conf();
        c.wait_key = true;
        c.wait_video = true;
        let mut gate = PlayerGate::new(&c);
        let inter = Frame::video(0, Bytes::from_static(&[0x27, 1, 0, 0, 0])).unwrap();
        let key = Frame::video(0, Bytes::from_static(&[0x17, 1, 0, 0, 0])).unwrap();
        let audio = Frame::audio(0, Bytes::from_static(&[0xAF, 1, 0x21]));
        assert!(!gate.admit(&audio, true));
        assert!(!gate.admit(&inter, true));
        assert!(gate.admit(&key, true));
        assert!(gate.admit(&inter, true));
        assert!(gate.admit(&audio, true));
        gate.set_paused(true);
        assert!(!gate.admit(&key, true));
    }
}
