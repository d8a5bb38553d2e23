//! The ffmpeg command line of one stream's ladder: built by sluice word by word (no shell), from
//! the configuration only (the stream name is not in it: ffmpeg reads stdin and writes pipes).
//! Sans-IO.

use crate::config::{Rendition, TranscodeConf};

/// The first fd of the rendition pipes: rendition `i` is written to `pipe:{FIRST_OUTPUT_FD + i}`.
pub const FIRST_OUTPUT_FD: i32 = 3;
/// The VA-API device `h264_vaapi` and friends encode on.
pub const VAAPI_DEVICE: &str = "/dev/dri/renderD128";

fn is_vaapi(encoder: &str) -> bool {
    encoder.ends_with("_vaapi")
}

/// ffmpeg's arguments (without the program) for `renditions` of `conf`: FLV on stdin, decoded
/// once, each rendition encoded and written as FLV to its own pipe, in order. Every rendition's
/// timestamps are the source's and its keyframes are where the source has them, so its HLS
/// segments (with `hls_fragment_slicing aligned`) start at the source's times:
/// - `-copyts` keeps the input timestamps;
/// - `-enc_time_base:v -1` encodes in the input's millisecond time base (not 1/fps, which would
///   round the timestamps to the frame grid);
/// - `-bf 0`: no B-frames, so a frame's FLV timestamp (its decode time) is its presentation
///   time, as in the source of a live encoder;
/// - `asetpts=PTS+1024/SR/TB` delays the audio by the AAC encoder's priming (1024 samples),
///   which otherwise starts at a negative time and makes the muxer shift every timestamp;
/// - `-force_key_frames source` and `-sc_threshold 0`: keyframes where the source's are, and
///   no others on scene changes.
pub fn args(conf: &TranscodeConf, renditions: &[&Rendition]) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-loglevel", "warning", "-nostdin"].map(String::from).to_vec();
    if is_vaapi(&conf.encoder) {
        a.extend(["-vaapi_device".into(), VAAPI_DEVICE.into()]);
    }
    a.extend(["-copyts", "-f", "flv", "-i", "pipe:0"].map(String::from));
    for (i, r) in renditions.iter().enumerate() {
        a.extend(output(conf, r, FIRST_OUTPUT_FD + i as i32));
    }
    a
}

/// One rendition's output options.
fn output(conf: &TranscodeConf, r: &Rendition, fd: i32) -> Vec<String> {
    let scale = if is_vaapi(&conf.encoder) {
        format!("scale=-2:{},format=nv12,hwupload", r.height)
    } else {
        format!("scale=-2:{}", r.height)
    };
    let v = r.video_bitrate;
    let mut o: Vec<String> = vec!["-map".into(), "0:v:0".into(), "-map".into(), "0:a:0?".into()];
    o.extend(["-vf".into(), scale, "-c:v".into(), conf.encoder.clone()]);
    if let Some(p) = &conf.preset {
        o.extend(["-preset".into(), p.to_owned()]);
    }
    o.extend([
        "-b:v".into(),
        v.to_string(),
        "-maxrate".into(),
        v.to_string(),
        "-bufsize".into(),
        (v * 2).to_string(),
        "-bf".into(),
        "0".into(),
        "-enc_time_base:v".into(),
        "-1".into(),
        "-force_key_frames".into(),
        "source".into(),
        "-sc_threshold".into(),
        "0".into(),
    ]);
    if let Some(fps) = r.fps {
        o.extend(["-fpsmax".into(), fps.to_string()]);
    }
    let audio = r.audio_bitrate.unwrap_or(conf.audio_bitrate);
    o.extend(["-af".into(), "asetpts=PTS+1024/SR/TB".into(), "-c:a".into(), "aac".into()]);
    o.extend(["-b:a".into(), audio.to_string()]);
    o.extend(["-f".into(), "flv".into(), format!("pipe:{fd}")]);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(body: &str) -> TranscodeConf {
        let text = format!("rtmp {{ server {{ application live {{ {body} }} }} }}");
        crate::config::Config::parse(&text, "t").unwrap().servers[0].apps[0].transcode.clone()
    }

    fn line(a: &[String]) -> String {
        a.join(" ")
    }

    #[test]
    fn one_input_and_one_flv_pipe_per_rendition() {
        let c = conf("transcode 480p 800k; transcode 240p 300k audio=64k fps=15;");
        let r: Vec<&Rendition> = c.renditions.iter().collect();
        let a = line(&args(&c, &r));
        assert!(a.starts_with("-hide_banner -loglevel warning -nostdin -copyts -f flv -i pipe:0 "), "{a}");
        assert_eq!(a.matches("-i ").count(), 1, "decoded once: {a}");
        let first = "-map 0:v:0 -map 0:a:0? -vf scale=-2:480 -c:v libx264 -preset veryfast -b:v 800000 -maxrate 800000 -bufsize 1600000 -bf 0 -enc_time_base:v -1 -force_key_frames source -sc_threshold 0 -af asetpts=PTS+1024/SR/TB -c:a aac -b:a 128000 -f flv pipe:3";
        assert!(a.contains(first), "{a}");
        let second = "-vf scale=-2:240 -c:v libx264 -preset veryfast -b:v 300000 -maxrate 300000 -bufsize 600000 -bf 0 -enc_time_base:v -1 -force_key_frames source -sc_threshold 0 -fpsmax 15 -af asetpts=PTS+1024/SR/TB -c:a aac -b:a 64000 -f flv pipe:4";
        assert!(a.ends_with(second), "{a}");
    }

    #[test]
    fn encoder_options() {
        let c = conf("transcode 360p 600k; transcode_encoder h264_nvenc;");
        let a = line(&args(&c, &[&c.renditions[0]]));
        assert!(a.contains("-c:v h264_nvenc -b:v") && !a.contains("-preset"), "hardware default preset: {a}");
        let c = conf("transcode 360p 600k; transcode_encoder h264_nvenc; transcode_preset p4;");
        assert!(line(&args(&c, &[&c.renditions[0]])).contains("-c:v h264_nvenc -preset p4 "));
        let c = conf("transcode 360p 600k; transcode_encoder h264_vaapi;");
        let a = line(&args(&c, &[&c.renditions[0]]));
        assert!(a.contains("-vaapi_device /dev/dri/renderD128 -copyts -f flv -i pipe:0"), "{a}");
        assert!(a.contains("-vf scale=-2:360,format=nv12,hwupload -c:v h264_vaapi -b:v"), "{a}");
        let c = conf("transcode 360p 600k; transcode_preset slow;");
        assert!(line(&args(&c, &[&c.renditions[0]])).contains("-c:v libx264 -preset slow "));
    }
}
