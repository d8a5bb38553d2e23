//! The built-in transcode ladder (`transcode 720p 2500k;` lines, [`crate::config::TranscodeConf`]):
//! an output module that runs ONE supervised ffmpeg per published stream and publishes what it
//! makes as ordinary streams `NAME_720p`, ... (playable, HLS, recordable, pushable).
//!
//! ```text
//! stream NAME ─ hub subscriber ─ FLV ─▶ stdin ┐
//!                                             ffmpeg (decode once, encode each rendition)
//!   NAME_720p ◀─ streams::publish ◀─ FLV ─ pipe:3 ┘ (pipe:4, ... one per rendition)
//! ```
//!
//! - The module subscribes like a player: a transcoder that falls behind skips to the next
//!   keyframe (the hub's rule) and never slows the publisher.
//! - No network loop: sluice writes the stream to ffmpeg's stdin and reads each rendition from
//!   its own pipe; a pipe's FLV tags are bounded by [`MAX_TAG`] (a larger one ends that
//!   rendition's reader, logged).
//! - The child is supervised by [`crate::exec`]'s [`Managed`]: killed (SIGTERM, then SIGKILL)
//!   when the publisher leaves, respawned with backoff (`respawn_timeout`) when it dies while
//!   the stream is live, never orphaned, its stderr logged as `transcode app=.. stream=..`.
//!   Each start gets fresh pipes; the rendition streams are unpublished when the child ends.
//! - No loops: a stream whose name is one of the application's rendition names
//!   (`*_720p` for `transcode 720p`) is never transcoded.
//! - Only downscales: a rendition at or above the source's height is skipped (logged); the
//!   source itself is the top rendition.
//! - At most `transcode_max` streams are transcoded at once; a stream past it gets the source
//!   only (one log line).
//! - The master playlist listing the source and its renditions is not written here: with `hls
//!   on`, the HLS tasks of those streams list themselves in it (`hls::variant`).

pub mod argv;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rtmp::MediaKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use crate::config::{AppConf, Rendition};
use crate::exec::command::Resolved;
use crate::exec::{Label, Limits, Managed, Pipes, MAX_CHILDREN, MAX_CHILDREN_PER_APP};
use crate::hub::{Entry, Frame, Publisher, Stream, StreamKey, StreamOptions, Subscriber};
use crate::modules::{Module, PublishCtx};
use crate::streams::{Source, Streams};
use crate::untrusted::{self, for_log};

/// The largest FLV tag accepted from ffmpeg (`max_message`'s default): the most one pipe
/// makes us hold at once.
pub const MAX_TAG: u32 = 1 << 20;
/// Ring length of a rendition stream (`out_queue`'s default).
const RENDITION_RING: usize = 256;
/// Entries taken from the hub per write to ffmpeg.
const BATCH: usize = 64;

/// The transcode output module.
pub struct Transcode {
    /// Streams being transcoded now (against `transcode_max`).
    running: Arc<Mutex<usize>>,
    /// The ffmpeg children alive, bounded as exec's are (one instance, this module's).
    limits: Arc<Limits>,
}

impl Default for Transcode {
    /// The module (one per server process).
    fn default() -> Self {
        let limits = Arc::new(Limits::new(MAX_CHILDREN, MAX_CHILDREN_PER_APP));
        Transcode { running: Arc::default(), limits }
    }
}

impl Transcode {
    /// A place under `max`, or `None`.
    fn admit(&self, max: u32) -> Option<Admitted> {
        let mut n = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if *n >= max as usize {
            return None;
        }
        *n += 1;
        Some(Admitted(self.running.clone()))
    }
}

/// One stream's place under `transcode_max`, given back when dropped.
struct Admitted(Arc<Mutex<usize>>);

impl Drop for Admitted {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
    }
}

impl Module for Transcode {
    fn name(&self) -> &'static str {
        "transcode"
    }

    fn on_publish(&self, ctx: &PublishCtx<'_>) {
        let conf = &ctx.source.app.transcode;
        if conf.renditions.is_empty() {
            return;
        }
        let (app, stream) = (ctx.source.app.name.as_str(), for_log(ctx.source.name));
        if conf.is_rendition_name(ctx.source.name) {
            tracing::debug!(app = %app, stream = %stream, "transcode: a rendition is not transcoded again");
            return;
        }
        let Some(admitted) = self.admit(conf.max) else {
            tracing::warn!(app = %app, stream = %stream, max = conf.max, "transcode: not transcoded, transcode_max streams are being transcoded: players get the source only");
            return;
        };
        // Subscribed now, before the first frame: the end of this publish is in the ring.
        let (pack, sub) = ctx.stream.subscribe();
        let job = Job {
            streams: ctx.streams.clone(),
            app: ctx.source.app.clone(),
            name: ctx.source.name.to_owned(),
            srv: ctx.source.srv,
            stream: ctx.stream.clone(),
            limits: self.limits.clone(),
        };
        tokio::spawn(async move {
            job.run(pack.video_header, sub).await;
            drop(admitted);
        });
    }
}

/// One published stream's transcode.
#[derive(Clone)]
struct Job {
    /// The publish path the renditions take (held while the job runs).
    streams: Arc<Streams>,
    app: Arc<AppConf>,
    name: String,
    srv: usize,
    stream: Arc<Stream>,
    limits: Arc<Limits>,
}

impl Job {
    fn prefix(&self) -> String {
        format!("transcode app={} stream={}", self.app.name, for_log(&self.name))
    }

    /// Waits for the video sequence header, starts the supervised ffmpeg for the renditions
    /// below the source's height, and stops it when the publisher leaves.
    async fn run(self, header: Option<Arc<Frame>>, mut sub: Subscriber) {
        let header = match header {
            Some(h) => h,
            None => match first_video_header(&mut sub).await {
                Some(h) => h,
                None => return,
            },
        };
        let height = source_height(&header);
        let conf = &self.app.transcode;
        let (kept, skipped) = ladder(&conf.renditions, height);
        for r in &skipped {
            tracing::info!(
                "{}: {} skipped: the source is {height} pixels high (never upscaled)",
                self.prefix(),
                r.label()
            );
        }
        if kept.is_empty() {
            return;
        }
        let labels: Vec<String> = kept.iter().map(|r| r.label()).collect();
        let cmd = Resolved { program: conf.ffmpeg.clone(), args: argv::args(conf, &kept), redirects: Vec::new() };
        let label = Label {
            origin: "transcode".into(),
            directive: "transcode".into(),
            app: Some(self.app.name.clone()),
            stream: Some(self.name.clone()),
        };
        let managed = Managed {
            label,
            cmd,
            respawn: Some(self.app.exec.respawn_timeout),
            kill_signal: libc::SIGTERM,
            limits: self.limits.clone(),
        };
        tracing::info!("{}: renditions {}", self.prefix(), labels.join(", "));
        let stop = CancellationToken::new();
        let plumbing = Plumbing { job: self.clone(), labels, stop: stop.clone() };
        let supervised = {
            let stop = stop.clone();
            tokio::spawn(async move { managed.run_with(stop, &plumbing).await })
        };
        until_unpublished(&mut sub, &stop).await;
        stop.cancel();
        let _ = supervised.await;
    }
}

/// The first video sequence header of the publish; `None` when it ends first.
async fn first_video_header(sub: &mut Subscriber) -> Option<Arc<Frame>> {
    loop {
        for e in sub.next_batch(BATCH).await.entries {
            match e {
                Entry::Frame(f) if f.kind == MediaKind::Video && f.sequence_header => return Some(f),
                Entry::Unpublished => return None,
                _ => {}
            }
        }
    }
}

/// Reads the subscriber (discarding media) until the publish ends or `stop` is cancelled.
async fn until_unpublished(sub: &mut Subscriber, stop: &CancellationToken) {
    loop {
        tokio::select! {
            batch = sub.next_batch(BATCH) => {
                if batch.entries.iter().any(|e| matches!(e, Entry::Unpublished)) {
                    return;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// The source's height from its video sequence header (0 when it cannot be read).
fn source_height(header: &Frame) -> u32 {
    let Some(h) = header.video_header() else { return 0 };
    match flv::codec::parse_video_config(h.codec, header.codec_payload()) {
        Ok(Some(p)) => p.height,
        _ => 0,
    }
}

/// The renditions to make of a source `height` pixels high (0: unknown, all of them), and those
/// skipped because they would not be smaller.
fn ladder(renditions: &[Rendition], height: u32) -> (Vec<&Rendition>, Vec<&Rendition>) {
    renditions.iter().partition(|r| height == 0 || r.height < height)
}

/// Fresh pipes for each start of the stream's ffmpeg, and the tasks on sluice's ends.
struct Plumbing {
    job: Job,
    labels: Vec<String>,
    /// Cancelled when the publish ends: the feeding task stops too.
    stop: CancellationToken,
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array on success; each is owned once, here.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just opened and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Pipes for Plumbing {
    fn open(&self) -> io::Result<Vec<(i32, OwnedFd)>> {
        let (stdin_read, stdin_write) = pipe_pair()?;
        let feeder = pipe::Sender::from_owned_fd(stdin_write)?;
        let mut child_ends = vec![(0, stdin_read)];
        let mut readers = Vec::new();
        for (i, label) in self.labels.iter().enumerate() {
            let (read, write) = pipe_pair()?;
            readers.push((label.clone(), pipe::Receiver::from_owned_fd(read)?));
            child_ends.push((argv::FIRST_OUTPUT_FD + i as i32, write));
        }
        tokio::spawn(feed(self.job.clone(), feeder, self.stop.clone()));
        for (label, rx) in readers {
            tokio::spawn(read_rendition(self.job.clone(), label, rx));
        }
        Ok(child_ends)
    }
}

/// The FLV tag type of a hub frame.
fn tag_type(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Audio => flv::TAG_AUDIO,
        MediaKind::Video => flv::TAG_VIDEO,
        MediaKind::Data => flv::TAG_SCRIPT,
    }
}

/// Appends `frame` as an FLV tag.
fn write_frame(out: &mut Vec<u8>, frame: &Frame) {
    // A hub frame is an RTMP message, never over FLV's 24-bit size.
    let _ = flv::write_tag(out, tag_type(frame.kind), frame.timestamp, &frame.payload);
}

/// The FLV stream for ffmpeg's stdin: header, what a new player gets (metadata, sequence
/// headers, the GOP), then the stream as it comes, until the publish ends, the child goes
/// away (EPIPE) or `stop`.
async fn feed(job: Job, mut w: pipe::Sender, stop: CancellationToken) {
    let (pack, mut sub) = job.stream.subscribe();
    let mut buf = flv::file_header(pack.audio_header.is_some(), true).to_vec();
    let start = pack.metadata.iter().chain(&pack.video_header).chain(&pack.audio_header).chain(&pack.gop);
    for f in start {
        write_frame(&mut buf, f);
    }
    loop {
        let write = w.write_all(&buf);
        let written = tokio::select! {
            r = write => r,
            () = stop.cancelled() => return,
        };
        if let Err(e) = written {
            tracing::debug!("{}: feeding ffmpeg ended: {e}", job.prefix());
            return;
        }
        buf.clear();
        let batch = tokio::select! {
            b = sub.next_batch(BATCH) => b,
            () = stop.cancelled() => return,
        };
        for e in batch.entries {
            match e {
                Entry::Frame(f) => write_frame(&mut buf, &f),
                Entry::Unpublished => return,
                Entry::Published => {}
            }
        }
    }
}

/// Why reading a rendition pipe stopped.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("bad FLV from ffmpeg: {0}")]
    Flv(#[from] flv::FlvError),
    #[error("an FLV tag of {0} bytes, over the limit of {MAX_TAG}")]
    TooLarge(u32),
}

/// Reads one rendition's FLV from its pipe and publishes it as `NAME_<label>` from its first
/// tag until the pipe ends: the child is gone (the supervisor kills it when the publish ends,
/// and ffmpeg flushes its encoders into the pipes first).
async fn read_rendition(job: Job, label: String, mut rx: pipe::Receiver) {
    let name = format!("{}_{label}", job.name);
    let prefix = format!("{} rendition={label}", job.prefix());
    let mut publisher: Option<Publisher> = None;
    let mut refused = false;
    let read = async {
        read_header(&mut rx).await?;
        loop {
            let Some((kind, timestamp, body)) = read_tag(&mut rx).await? else { return Ok(()) };
            // Until it is published, tried at each tag: the previous child of a stream that was
            // published again at once may still hold the name for a moment. Meanwhile the tags
            // are read and dropped, so that ffmpeg never blocks on this pipe.
            if publisher.is_none() {
                match publish_rendition(&job, &name) {
                    Ok(p) => publisher = Some(p),
                    Err(e) if !refused => {
                        tracing::warn!("{prefix}: not published yet: {e}; trying again at each frame");
                        refused = true;
                    }
                    Err(_) => {}
                }
            }
            let Some(p) = &publisher else { continue };
            if let Some(frame) = crate::live::ingest(&job.app.live, kind, timestamp, body) {
                // As any source: what stats and master playlists show of the stream.
                if frame.sequence_header {
                    if let Ok(Some(desc)) = crate::live::describe_sequence_header(&frame) {
                        tracing::info!("{prefix}: {desc}");
                        p.stream().set_codec_info(frame.kind, desc);
                    }
                }
                p.stream().push(frame);
            }
        }
    };
    let outcome: Result<(), ReadError> = read.await;
    if let Err(e) = outcome {
        tracing::warn!("{prefix}: reading ffmpeg's output ended: {e}");
    }
    if publisher.is_some() {
        tracing::info!("{prefix}: {} unpublished", for_log(&name));
    }
}

/// THE place renditions enter the hub: through the streams publish path, as any source, so
/// every output module runs on them (and this one skips them by name).
fn publish_rendition(job: &Job, name: &str) -> Result<Publisher, String> {
    untrusted::stream_name(name).map_err(|e| e.to_string())?;
    let source = Source { app: &job.app, name, args: "", client: None, push_to: None, srv: job.srv };
    let opts = StreamOptions { ring_len: RENDITION_RING, gop_cache: job.app.live.gop_cache };
    let published = job.streams.publish(&source, opts).map_err(|e| e.to_string())?;
    // Statuses are for a publishing client; a rendition has none to tell.
    drop(published.status);
    let key = StreamKey { app: job.app.name.clone(), name: name.to_owned() };
    tracing::info!(app = %key.app, stream = %for_log(&key.name), "transcode: rendition published");
    Ok(published.publisher)
}

/// The FLV file header (and PreviousTagSize0).
async fn read_header(rx: &mut pipe::Receiver) -> Result<(), ReadError> {
    let mut head = [0u8; flv::writer::HEADER_SIZE];
    rx.read_exact(&mut head).await?;
    let (_, first_tag) = flv::parse_file_header(&head)?;
    // The rest of a longer header, and PreviousTagSize0; bounded by the 32-bit offset check.
    let rest = first_tag.saturating_sub(head.len() as u64);
    if rest > u64::from(MAX_TAG) {
        return Err(ReadError::TooLarge(rest as u32));
    }
    let mut skip = vec![0u8; rest as usize];
    rx.read_exact(&mut skip).await?;
    Ok(())
}

/// The next audio, video or script tag (others are skipped); `None` at a clean end.
async fn read_tag(rx: &mut pipe::Receiver) -> Result<Option<(MediaKind, u32, Bytes)>, ReadError> {
    loop {
        let mut h = [0u8; flv::writer::TAG_HEADER_SIZE];
        match rx.read_exact(&mut h).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let header = flv::TagHeader::parse(&h)?;
        if header.size > MAX_TAG {
            return Err(ReadError::TooLarge(header.size));
        }
        // The body and the PreviousTagSize after it.
        let mut body = vec![0u8; header.size as usize + 4];
        rx.read_exact(&mut body).await?;
        body.truncate(header.size as usize);
        let kind = match header.tag_type {
            flv::TAG_AUDIO => MediaKind::Audio,
            flv::TAG_VIDEO => MediaKind::Video,
            flv::TAG_SCRIPT => MediaKind::Data,
            _ => continue,
        };
        return Ok(Some((kind, header.timestamp, Bytes::from(body))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(height: u32) -> Rendition {
        Rendition { height, video_bitrate: 1_000_000, audio_bitrate: None, fps: None }
    }

    #[test]
    fn never_upscales() {
        let all = [r(1080), r(720), r(480)];
        let (kept, skipped) = ladder(&all, 720);
        assert_eq!(kept.iter().map(|r| r.height).collect::<Vec<_>>(), [480]);
        assert_eq!(skipped.iter().map(|r| r.height).collect::<Vec<_>>(), [1080, 720]);
        assert_eq!(ladder(&all, 0).0.len(), 3, "unknown height: every rendition");
    }

    #[tokio::test]
    async fn reads_bounded_flv_tags_from_a_pipe() {
        let (read, write) = pipe_pair().unwrap();
        let mut rx = pipe::Receiver::from_owned_fd(read).unwrap();
        let mut tx = pipe::Sender::from_owned_fd(write).unwrap();
        let mut data = flv::file_header(true, true).to_vec();
        flv::write_tag(&mut data, flv::TAG_VIDEO, 40, &[0x17, 1, 0, 0, 0]).unwrap();
        flv::write_tag(&mut data, 7, 40, b"skipped").unwrap();
        flv::write_tag(&mut data, flv::TAG_AUDIO, 0x0100_0001, &[0xaf, 1]).unwrap();
        // A tag header announcing more than MAX_TAG.
        data.extend_from_slice(&[9, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        tokio::spawn(async move { tx.write_all(&data).await.unwrap() });
        read_header(&mut rx).await.unwrap();
        let (kind, ts, body) = read_tag(&mut rx).await.unwrap().unwrap();
        assert_eq!((kind, ts, &body[..]), (MediaKind::Video, 40, &[0x17, 1, 0, 0, 0][..]));
        let (kind, ts, _) = read_tag(&mut rx).await.unwrap().unwrap();
        assert_eq!((kind, ts), (MediaKind::Audio, 0x0100_0001), "extended timestamp, unknown tag skipped");
        assert!(matches!(read_tag(&mut rx).await, Err(ReadError::TooLarge(0x20_0000))));
    }

    #[tokio::test]
    async fn a_clean_end_of_the_pipe_is_not_an_error() {
        let (read, write) = pipe_pair().unwrap();
        let mut rx = pipe::Receiver::from_owned_fd(read).unwrap();
        drop(write);
        assert!(read_tag(&mut rx).await.unwrap().is_none());
    }
}
