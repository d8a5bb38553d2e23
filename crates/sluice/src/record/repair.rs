//! Reading recordings back: the tag chain of an FLV file and the box list of an MP4 file,
//! to continue a file (`record_append`, retries), to finish an MP4 file with `moov` first
//! (`record_mp4_faststart`), and at start-up to repair files a crash left unfinished.
//!
//! A file is ours and unfinished when its `onMetaData` says `sluiceRecording: true` (FLV) or
//! its mark box says `sluice recording` (MP4); nothing else in `record_path` is touched.
//! Repair cuts a torn last tag or fragment and writes the end-of-file metadata: FLV
//! `duration`, `filesize` and keyframe index; MP4 the mark, and the `moov`-first rewrite when
//! the recorder asked for it.
//!
//! Blocking I/O: run it on the blocking pool (or before serving, at start-up).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flv::writer::{FileWriter, MetaSlot, FIRST_TAG_OFFSET, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use flv::{RecordingMeta, TagHeader};

use super::mp4_file::{MARK_BOX_SIZE, MARK_FINISHED, MARK_RECORDING, MARK_RECORDING_FASTSTART};

/// How much of a file is read at a time while walking it.
const WINDOW: usize = 1 << 20;
/// Bytes of a video tag body read to tell a keyframe.
const VIDEO_PREFIX: usize = 16;
/// Largest `onMetaData` body read (a recorder's is tens of KiB).
const MAX_META: u32 = 1 << 20;
/// Largest `moof` read (a second of media has a few thousand samples: tens of KiB).
const MAX_MOOF: u64 = 64 << 20;
/// Largest initialization segment read.
const MAX_INIT: u64 = 16 << 20;
/// Suffix of the temporary file of a `moov`-first rewrite, left behind only by a crash.
pub const TEMP_SUFFIX: &str = ".sluice-tmp";

/// A file read through a sliding window: walking tags or boxes costs one read per MiB, not
/// one per tag.
struct Window<'a> {
    file: &'a File,
    len: u64,
    buf: Vec<u8>,
    start: u64,
}

impl<'a> Window<'a> {
    fn new(file: &'a File) -> io::Result<Self> {
        Ok(Window { file, len: file.metadata()?.len(), buf: Vec::new(), start: 0 })
    }

    /// `n` bytes at `at`, which must lie inside the file.
    fn get(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        let end = at + n as u64;
        if end > self.len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if at < self.start || end > self.start + self.buf.len() as u64 {
            let size = ((self.len - at) as usize).min(WINDOW.max(n));
            self.buf.resize(size, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.start = at;
        }
        let from = (at - self.start) as usize;
        Ok(&self.buf[from..from + n])
    }
}

/// What walking an FLV file found.
pub struct FlvScan {
    /// Bytes up to the end of the last whole tag; the rest is torn.
    pub sound_len: u64,
    /// The file's length.
    pub len: u64,
    /// A writer positioned after the last whole tag, knowing the tags before (keyframes,
    /// duration) and the recording metadata, if the file has it.
    pub writer: FileWriter,
    /// The recording metadata still says the file is being written.
    pub in_progress: bool,
}

/// Walks an FLV file's tags; `None` when it is not an FLV file (too short, other signature).
pub fn scan_flv(file: &File) -> io::Result<Option<FlvScan>> {
    let mut w = Window::new(file)?;
    let len = w.len;
    let Ok(head) = w.get(0, FIRST_TAG_OFFSET as usize) else { return Ok(None) };
    let Ok((_, first_tag)) = flv::parse_file_header(head) else { return Ok(None) };
    let mut pos = first_tag;
    let mut slot = None;
    let mut tags = Vec::new();
    while let Ok(h) = w.get(pos, flv::writer::TAG_HEADER_SIZE).map(TagHeader::parse) {
        let Ok(h) = h else { break };
        let end = pos + h.tag_len();
        if end > len || !matches!(h.tag_type, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT) {
            break;
        }
        let trailer = w.get(end - 4, 4)?;
        if u64::from(u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]])) != h.tag_len() - 4 {
            break;
        }
        let body_at = pos + flv::writer::TAG_HEADER_SIZE as u64;
        if pos == first_tag && h.tag_type == TAG_SCRIPT && h.size <= MAX_META {
            if let Ok(mut meta) = RecordingMeta::decode(w.get(body_at, h.size as usize)?) {
                // The notes below rebuild the index.
                meta.keyframes.clear();
                slot = Some(MetaSlot { offset: body_at, size: h.size as usize, meta });
            }
        }
        let keyframe = h.tag_type == TAG_VIDEO && {
            let prefix = w.get(body_at, (h.size as usize).min(VIDEO_PREFIX))?;
            flv::parse_video(prefix).is_ok_and(|v| v.is_keyframe() && !v.is_sequence_header())
        };
        tags.push((pos, h.tag_type, h.timestamp, keyframe));
        pos = end;
    }
    let in_progress = slot.as_ref().is_some_and(|s| s.meta.in_progress);
    let mut writer = FileWriter::resume(pos, slot);
    for (at, tag_type, ts, keyframe) in tags {
        writer.note(at, tag_type, ts, keyframe);
    }
    Ok(Some(FlvScan { sound_len: pos, len, writer, in_progress }))
}

/// Writes `data` at `offset`.
fn patch(file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    file.write_all_at(data, offset)
}

/// Repairs an unfinished FLV recording: cuts the torn tail, writes the final metadata.
/// Returns what was done, or `None` for a file that needs nothing.
fn repair_flv(path: &Path, file: &File) -> io::Result<Option<String>> {
    let Some(mut scan) = scan_flv(file)? else { return Ok(None) };
    if !scan.in_progress {
        return Ok(None);
    }
    let torn = scan.len - scan.sound_len;
    if torn > 0 {
        file.set_len(scan.sound_len)?;
    }
    let patches = scan.writer.finish().map_err(io::Error::other)?;
    for p in &patches {
        patch(file, p.offset, &p.data)?;
    }
    file.sync_all()?;
    let secs = scan.writer.duration_ms() as f64 / 1000.0;
    Ok(Some(format!(
        "{}: FLV recording finished: {torn} torn bytes cut, duration {secs:.3} s, {} bytes",
        path.display(),
        scan.sound_len
    )))
}

/// Where an MP4 recording's pieces are.
#[derive(Debug, Default)]
pub struct Mp4Layout {
    /// End of `ftyp` + `moov`.
    pub init_end: u64,
    /// Offset and text of the mark box's payload, if the file has one.
    pub mark: Option<(u64, [u8; 16])>,
    /// Each whole fragment: `moof` offset and size, `mdat` header size and payload size.
    pub fragments: Vec<Fragment>,
    /// Bytes up to the end of the last whole box (a `moof` only with its `mdat`).
    pub sound_len: u64,
    /// The file's length.
    pub len: u64,
}

/// One `moof` + `mdat` of a fragmented file.
#[derive(Debug, Clone, Copy)]
pub struct Fragment {
    /// Offset of the `moof`.
    pub moof: u64,
    /// Its size.
    pub moof_size: u64,
    /// Size of the `mdat` header that follows it.
    pub mdat_header: u64,
    /// Size of the `mdat` payload.
    pub payload: u64,
}

/// Walks an MP4 file's top-level boxes; `None` when it does not start with `ftyp`.
pub fn mp4_layout(file: &File) -> io::Result<Option<Mp4Layout>> {
    let mut w = Window::new(file)?;
    let mut l = Mp4Layout { len: w.len, ..Mp4Layout::default() };
    let mut pos = 0u64;
    let mut pending_moof: Option<(u64, u64)> = None;
    while pos + 8 <= l.len {
        let head = w.get(pos, 8)?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = [head[4], head[5], head[6], head[7]];
        let (size, header) = match size32 {
            1 => {
                let Ok(large) = w.get(pos + 8, 8) else { break };
                (u64::from_be_bytes(large.try_into().unwrap_or_default()), 16)
            }
            // "To the end of the file": a recorder never writes it; a torn file could show it.
            0 => break,
            n => (u64::from(n), 8),
        };
        if pos == 0 && &kind != b"ftyp" {
            return Ok(None);
        }
        if size < header || pos + size > l.len {
            break;
        }
        match &kind {
            b"moof" => pending_moof = Some((pos, size)),
            b"mdat" if pending_moof.is_some() => {
                let (moof, moof_size) = pending_moof.take().unwrap_or_default();
                l.fragments.push(Fragment { moof, moof_size, mdat_header: header, payload: size - header });
                l.sound_len = pos + size;
            }
            _ if pending_moof.is_some() => break,
            b"ftyp" | b"moov" => {
                l.init_end = pos + size;
                l.sound_len = pos + size;
            }
            b"free" if size == MARK_BOX_SIZE => {
                let mut text = [0u8; 16];
                text.copy_from_slice(w.get(pos + 8, 16)?);
                l.mark = Some((pos + 8, text));
                l.sound_len = pos + size;
            }
            _ => l.sound_len = pos + size,
        }
        pos += size;
    }
    Ok(Some(l))
}

/// Repairs an unfinished MP4 recording: cuts at the last whole fragment, marks it finished,
/// and rewrites it with `moov` first when its recorder asked for that.
fn repair_mp4(path: &Path, file: &File) -> io::Result<Option<String>> {
    let Some(l) = mp4_layout(file)? else { return Ok(None) };
    let Some((mark_at, mark)) = l.mark else { return Ok(None) };
    if &mark != MARK_RECORDING && &mark != MARK_RECORDING_FASTSTART {
        return Ok(None);
    }
    let torn = l.len - l.sound_len;
    if torn > 0 {
        file.set_len(l.sound_len)?;
    }
    patch(file, mark_at, MARK_FINISHED)?;
    file.sync_all()?;
    let mut what = format!(
        "{}: MP4 recording finished: {torn} torn bytes cut, {} fragments kept",
        path.display(),
        l.fragments.len()
    );
    if &mark == MARK_RECORDING_FASTSTART {
        faststart(path)?;
        what.push_str(", rewritten with moov first");
    }
    Ok(Some(what))
}

/// The temporary file a `moov`-first rewrite of `path` writes: hidden, next to it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMP_SUFFIX}"))
}

/// Rewrites a finished fragmented MP4 recording as a progressive MP4 (`ftyp`, `moov` with
/// full sample tables, one `mdat`), through a temporary file renamed over it, so the file
/// is whole at every moment.
pub fn faststart(path: &Path) -> io::Result<()> {
    let src = File::open(path)?;
    let Some(l) = mp4_layout(&src)? else {
        return Err(io::Error::other("not an MP4 file"));
    };
    if l.init_end == 0 || l.init_end > MAX_INIT {
        return Err(io::Error::other("no initialization segment"));
    }
    let mut init = vec![0; l.init_end as usize];
    src.read_exact_at(&mut init, 0)?;
    let mut tables = fmp4::TableBuilder::new();
    for f in &l.fragments {
        if f.moof_size > MAX_MOOF {
            return Err(io::Error::other(format!("a moof of {} bytes", f.moof_size)));
        }
        let mut moof = vec![0; f.moof_size as usize];
        src.read_exact_at(&mut moof, f.moof)?;
        tables.add_fragment(&moof, f.mdat_header, f.payload).map_err(io::Error::other)?;
    }
    let (tables, payload_len) = tables.finish();
    let head = fmp4::progressive_head(&init, &tables, payload_len).map_err(io::Error::other)?;
    let tmp = temp_path(path);
    let result = (|| {
        let out = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        out.write_all_at(&head, 0)?;
        let mut at = head.len() as u64;
        let mut buf = vec![0; WINDOW];
        for f in &l.fragments {
            let mut from = f.moof + f.moof_size + f.mdat_header;
            let mut left = f.payload;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                src.read_exact_at(&mut buf[..n], from)?;
                out.write_all_at(&buf[..n], at)?;
                (from, at, left) = (from + n as u64, at + n as u64, left - n as u64);
            }
        }
        out.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Repairs `path` if it is an unfinished recording; `Ok(None)` when it is anything else.
pub fn repair_file(path: &Path) -> io::Result<Option<String>> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut magic = [0u8; 8];
    if file.read_at(&mut magic, 0)? < magic.len() {
        return Ok(None);
    }
    if &magic[..3] == b"FLV" {
        repair_flv(path, &file)
    } else if &magic[4..8] == b"ftyp" {
        repair_mp4(path, &file)
    } else {
        Ok(None)
    }
}

/// Repairs every unfinished recording in `dir` and removes temporary files of interrupted
/// rewrites; returns one line per file touched. A missing directory has nothing to repair.
pub fn repair_dir(dir: &Path) -> Vec<Result<String, String>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
            out.push(match std::fs::remove_file(&path) {
                Ok(()) => Ok(format!("{}: removed an interrupted rewrite's temporary file", path.display())),
                Err(e) => Err(format!("{}: cannot remove: {e}", path.display())),
            });
            continue;
        }
        match repair_file(&path) {
            Ok(Some(what)) => out.push(Ok(what)),
            Ok(None) => {}
            Err(e) => out.push(Err(format!("{}: cannot repair: {e}", path.display()))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Frame;
    use crate::record::mp4_file::Mp4Mux;
    use bytes::Bytes;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-repair-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An FLV recording of `ms` milliseconds as a recorder leaves it mid-way: metadata in
    /// progress (with the progress patch applied), no end patches.
    fn unfinished_flv(ms: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = FileWriter::create(RecordingMeta::new(None, true, true), 100, &mut out).unwrap();
        let mut t = 0;
        while t < ms {
            let key = t % 1000 == 0;
            w.write(&mut out, TAG_VIDEO, t, &[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 7], key).unwrap();
            w.write(&mut out, TAG_AUDIO, t + 5, &[0xAF, 1, 3], false).unwrap();
            t += 40;
        }
        out
    }

    fn meta_of(path: &Path) -> RecordingMeta {
        let data = bytes::Bytes::from(std::fs::read(path).unwrap());
        let tag = flv::FlvReader::new(data).unwrap().next().unwrap().unwrap();
        RecordingMeta::decode(&tag.body).unwrap()
    }

    #[test]
    fn a_torn_flv_recording_is_cut_and_finished() {
        let dir = temp("flv");
        let whole = unfinished_flv(3000);
        let path = dir.join("s.flv");
        std::fs::write(&path, &whole[..whole.len() - 7]).unwrap();
        let done = repair_dir(&dir);
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].as_ref().unwrap().contains("torn bytes cut"), "{done:?}");
        let m = meta_of(&path);
        assert!(!m.in_progress);
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(m.filesize, len);
        assert_eq!(len, whole.len() as u64 - 18, "the torn last (audio) tag of 18 bytes is gone");
        assert_eq!(m.duration_ms, 3000, "the last video frame (2960) and its 40 ms");
        assert_eq!(m.keyframes.len(), 3);
        // A finished file is left alone.
        assert!(repair_dir(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn foreign_files_are_left_alone() {
        let dir = temp("foreign");
        let mut plain = flv::file_header(true, true).to_vec();
        flv::write_tag(&mut plain, TAG_AUDIO, 0, &[0xAF, 1, 2]).unwrap();
        std::fs::write(dir.join("nginx.flv"), &plain[..plain.len() - 2]).unwrap();
        std::fs::write(dir.join("notes.txt"), "hello").unwrap();
        std::fs::write(dir.join(".x.mp4.sluice-tmp"), "half").unwrap();
        let done = repair_dir(&dir);
        assert_eq!(done.len(), 1, "only the temporary file: {done:?}");
        assert_eq!(std::fs::read(dir.join("nginx.flv")).unwrap().len(), plain.len() - 2, "untouched");
        assert!(!dir.join(".x.mp4.sluice-tmp").exists());
        assert!(repair_dir(&dir.join("missing")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn mp4(faststart: bool) -> Vec<u8> {
        let avc =
            [0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x0A, 1, 0, 2, 0x68, 0xCE];
        let avc = Frame::video(0, Bytes::copy_from_slice(&avc)).unwrap();
        let aac = Frame::audio(0, Bytes::from_static(&[0xAF, 0, 0x12, 0x10]));
        let mut m = Mp4Mux::new(Some(&avc), Some(&aac), faststart);
        let mut out = Vec::new();
        for i in 0..100u64 {
            let key = i % 25 == 0;
            let v = Bytes::copy_from_slice(&[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
            m.push(i * 40, &Frame::video(0, v).unwrap(), &mut out);
            m.push(i * 40 + 3, &Frame::audio(0, Bytes::from_static(&[0xAF, 1, 0x21, 0x10])), &mut out);
        }
        out
    }

    #[test]
    fn a_torn_mp4_recording_is_cut_and_marked() {
        let dir = temp("mp4");
        let whole = mp4(false);
        let path = dir.join("s.mp4");
        std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
        let done = repair_dir(&dir);
        assert!(done[0].as_ref().unwrap().contains("fragments kept"), "{done:?}");
        let repaired = std::fs::read(&path).unwrap();
        assert_eq!(repaired.len(), fmp4::complete_len(&whole[..whole.len() - 5]));
        assert!(repaired.windows(16).any(|w| w == MARK_FINISHED));
        assert!(repair_dir(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn faststart_recordings_are_rewritten_on_repair() {
        let dir = temp("fast");
        let path = dir.join("s.mp4");
        std::fs::write(&path, mp4(true)).unwrap();
        let done = repair_dir(&dir);
        assert!(done[0].as_ref().unwrap().contains("moov first"), "{done:?}");
        let data = std::fs::read(&path).unwrap();
        let kinds: Vec<_> = fmp4::boxes(&data).map(|b| b.unwrap().kind).collect();
        assert_eq!(kinds, [*b"ftyp", *b"moov", *b"mdat"]);
        assert!(!temp_path(&path).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
