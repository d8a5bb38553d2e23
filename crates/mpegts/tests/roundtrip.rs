//! Property test: whatever sequence of tables and PES the muxer writes, an independent demuxer
//! (the `mpeg2ts-reader` crate) finds whole packets with continuous counters, the announced
//! streams, and exactly the PES payloads, timestamps, PCRs and random access flags written.

use std::collections::HashMap;

use mpeg2ts_reader::demultiplex::{self, FilterChangeset, FilterRequest};
use mpeg2ts_reader::packet::Packet;
use mpeg2ts_reader::pes::{self, PesContents, PesHeader, PesLength, PtsDts};
use mpeg2ts_reader::psi;
use mpeg2ts_reader::StreamType;
use mpegts::mux::TIMESTAMP_MASK;
use mpegts::{AudioType, Muxer, Pes, Track, VideoType, AUDIO_PID, PACKET_SIZE, PAT_PID, PMT_PID, VIDEO_PID};
use proptest::prelude::*;

mpeg2ts_reader::packet_filter_switch! {
    Filters<Ctx> {
        Pat: demultiplex::PatPacketFilter<Ctx>,
        Pmt: demultiplex::PmtPacketFilter<Ctx>,
        Null: demultiplex::NullPacketFilter<Ctx>,
        Pes: pes::PesPacketFilter<Ctx, Collect>,
    }
}

/// One PES as the reader reassembled it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenPes {
    pts: Option<u64>,
    dts: Option<u64>,
    /// PES_packet_length; `None` for unbounded.
    length: Option<u16>,
    data: Vec<u8>,
}

/// The demux context: filter bookkeeping plus everything the reader reported.
#[derive(Default)]
pub struct Ctx {
    changeset: FilterChangeset<Filters>,
    streams: Vec<(u16, StreamType)>,
    done: HashMap<u16, Vec<SeenPes>>,
    open: HashMap<u16, SeenPes>,
    continuity_errors: usize,
    bad_headers: usize,
}

impl Ctx {
    /// Closes the PES still open on each PID: the reader only ends one when the next starts.
    fn finish(&mut self) {
        for (pid, p) in self.open.drain() {
            self.done.entry(pid).or_default().push(p);
        }
    }
}

impl demultiplex::DemuxContext for Ctx {
    type F = Filters;

    fn filter_changeset(&mut self) -> &mut FilterChangeset<Filters> {
        &mut self.changeset
    }

    fn construct(&mut self, req: FilterRequest<'_, '_>) -> Filters {
        match req {
            FilterRequest::ByPid(psi::pat::PAT_PID) => Filters::Pat(demultiplex::PatPacketFilter::default()),
            FilterRequest::ByPid(_) | FilterRequest::Nit { .. } => {
                Filters::Null(demultiplex::NullPacketFilter::default())
            }
            FilterRequest::Pmt { pid, program_number } => {
                Filters::Pmt(demultiplex::PmtPacketFilter::new(pid, program_number))
            }
            FilterRequest::ByStream { stream_type, stream_info, .. } => {
                let pid = u16::from(stream_info.elementary_pid());
                self.streams.push((pid, stream_type));
                Filters::Pes(pes::PesPacketFilter::new(Collect { pid }))
            }
        }
    }
}

/// Collects the PES of one PID into the context.
pub struct Collect {
    pid: u16,
}

impl pes::ElementaryStreamConsumer<Ctx> for Collect {
    fn start_stream(&mut self, _ctx: &mut Ctx) {}

    fn begin_packet(&mut self, ctx: &mut Ctx, header: PesHeader<'_>) {
        let length = match header.pes_packet_length() {
            PesLength::Unbounded => None,
            PesLength::Bounded(n) => Some(n.get()),
        };
        let PesContents::Parsed(Some(parsed)) = header.contents() else {
            ctx.bad_headers += 1;
            return;
        };
        let (pts, dts) = match parsed.pts_dts() {
            Ok(PtsDts::PtsOnly(Ok(pts))) => (Some(pts.value()), None),
            Ok(PtsDts::Both { pts: Ok(pts), dts: Ok(dts) }) => (Some(pts.value()), Some(dts.value())),
            _ => {
                ctx.bad_headers += 1;
                (None, None)
            }
        };
        ctx.open.insert(self.pid, SeenPes { pts, dts, length, data: parsed.payload().to_vec() });
    }

    fn continue_packet(&mut self, ctx: &mut Ctx, data: &[u8]) {
        if let Some(p) = ctx.open.get_mut(&self.pid) {
            p.data.extend_from_slice(data);
        }
    }

    fn end_packet(&mut self, ctx: &mut Ctx) {
        if let Some(p) = ctx.open.remove(&self.pid) {
            ctx.done.entry(self.pid).or_default().push(p);
        }
    }

    fn continuity_error(&mut self, ctx: &mut Ctx) {
        ctx.continuity_errors += 1;
    }
}

/// What to write.
#[derive(Debug, Clone)]
enum Op {
    Tables,
    Pes { track: Track, pts: u64, dts_delta: Option<u64>, pcr: Option<u64>, random_access: bool, data: Vec<u8> },
}

fn op(video: bool, audio: bool) -> impl Strategy<Value = Op> {
    let mut tracks = Vec::new();
    if video {
        tracks.push(Track::Video);
    }
    if audio {
        tracks.push(Track::Audio);
    }
    // Sizes around packet boundaries matter most; a few video PES exceed PES_packet_length.
    let small = prop::collection::vec(any::<u8>(), 0..600);
    let mid = prop::collection::vec(any::<u8>(), 600..5000);
    let pes = (
        prop::sample::select(tracks),
        any::<u64>(), // beyond 33 bits on purpose: the muxer wraps
        prop::option::of(0u64..20_000),
        prop::option::of(any::<u64>()),
        any::<bool>(),
        prop_oneof![6 => small, 3 => mid, 1 => Just(vec![0xA5; 70_000])],
    )
        .prop_map(|(track, pts, dts_delta, pcr, random_access, mut data)| {
            if track == Track::Audio {
                data.truncate(60_000);
            }
            Op::Pes { track, pts, dts_delta, pcr, random_access, data }
        });
    prop_oneof![1 => Just(Op::Tables), 8 => pes]
}

fn case() -> impl Strategy<Value = (Option<VideoType>, Option<AudioType>, Vec<Op>)> {
    let video = prop::option::of(prop::sample::select(vec![VideoType::H264, VideoType::H265]));
    let audio = prop::option::of(prop::sample::select(vec![AudioType::Aac, AudioType::Mp3]));
    (video, audio)
        .prop_filter("at least one track", |(v, a)| v.is_some() || a.is_some())
        .prop_flat_map(|(v, a)| (Just(v), Just(a), prop::collection::vec(op(v.is_some(), a.is_some()), 1..40)))
}

/// What one PES should look like after the round trip.
struct Expected {
    seen: SeenPes,
    pcr: Option<u64>,
    random_access: bool,
}

fn expected(track: Track, pts: u64, dts_delta: Option<u64>, data: &[u8]) -> SeenPes {
    let pts_w = pts & TIMESTAMP_MASK;
    let dts = dts_delta.map(|d| pts.wrapping_sub(d) & TIMESTAMP_MASK).filter(|&d| d != pts_w);
    let header = if dts.is_some() { 13 } else { 8 };
    // Only video may be unbounded; the generator keeps audio under the limit.
    let length = u16::try_from(header + data.len()).ok();
    assert!(length.is_some() || track == Track::Video);
    SeenPes { pts: Some(pts_w), dts, length, data: data.to_vec() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn independent_demuxer_reads_back_what_was_written((video, audio, ops) in case()) {
        let mut mux = Muxer::new(video, audio);
        let mut ts = Vec::new();
        // A reader finds streams through the tables, so a stream starts with them.
        mux.write_tables(&mut ts);
        let mut want: HashMap<u16, Vec<Expected>> = HashMap::new();
        for op in &ops {
            match op {
                Op::Tables => mux.write_tables(&mut ts),
                Op::Pes { track, pts, dts_delta, pcr, random_access, data } => {
                    let dts = dts_delta.map(|d| pts.wrapping_sub(d));
                    let pes = Pes { pts: *pts, dts, pcr: *pcr, random_access: *random_access, data };
                    mux.write_pes(*track, &pes, &mut ts).unwrap();
                    want.entry(track.pid()).or_default().push(Expected {
                        seen: expected(*track, *pts, *dts_delta, data),
                        pcr: pcr.map(|p| p & TIMESTAMP_MASK),
                        random_access: *random_access,
                    });
                }
            }
        }

        // Whole packets, sync bytes, continuity per PID, and the first-packet adaptation fields.
        prop_assert_eq!(ts.len() % PACKET_SIZE, 0);
        let mut last_cc: HashMap<u16, u8> = HashMap::new();
        let mut starts: HashMap<u16, Vec<(Option<u64>, bool)>> = HashMap::new();
        for chunk in ts.chunks(PACKET_SIZE) {
            prop_assert_eq!(chunk[0], 0x47);
            let pk = Packet::new(chunk);
            let pid = u16::from(pk.pid());
            prop_assert!([PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID].contains(&pid));
            prop_assert!(pk.adaptation_control().has_payload());
            let cc = pk.continuity_counter().count();
            if let Some(prev) = last_cc.insert(pid, cc) {
                prop_assert_eq!(cc, (prev + 1) % 16, "PID {:#x}", pid);
            }
            if pk.payload_unit_start_indicator() && (pid == VIDEO_PID || pid == AUDIO_PID) {
                let af = pk.adaptation_field();
                let pcr = af.as_ref().and_then(|a| a.pcr().ok()).map(|c| {
                    assert_eq!(c.extension(), 0);
                    c.base()
                });
                let rai = af.map(|a| a.random_access_indicator()).unwrap_or(false);
                starts.entry(pid).or_default().push((pcr, rai));
            }
        }

        let mut ctx = Ctx::default();
        let mut demux = demultiplex::Demultiplex::new(&mut ctx);
        demux.push(&mut ctx, &ts);
        ctx.finish();
        prop_assert_eq!(ctx.continuity_errors, 0);
        prop_assert_eq!(ctx.bad_headers, 0);

        let mut want_streams = Vec::new();
        if let Some(v) = video {
            let t = match v {
                VideoType::H264 => StreamType::H264,
                VideoType::H265 => StreamType::H265,
            };
            want_streams.push((VIDEO_PID, t));
        }
        if let Some(a) = audio {
            let t = match a {
                AudioType::Aac => StreamType::ADTS,
                AudioType::Mp3 => StreamType::ISO_11172_AUDIO,
            };
            want_streams.push((AUDIO_PID, t));
        }
        prop_assert_eq!(&ctx.streams, &want_streams, "the PMT is read once, CRC and all");

        for pid in [VIDEO_PID, AUDIO_PID] {
            let want = want.remove(&pid).unwrap_or_default();
            let got = ctx.done.remove(&pid).unwrap_or_default();
            prop_assert_eq!(got.len(), want.len(), "PES count on PID {:#x}", pid);
            let starts = starts.remove(&pid).unwrap_or_default();
            for ((g, w), (pcr, rai)) in got.iter().zip(&want).zip(&starts) {
                prop_assert_eq!(g, &w.seen);
                prop_assert_eq!(*pcr, w.pcr);
                prop_assert_eq!(*rai, w.random_access);
            }
        }
    }
}

#[test]
fn reader_sees_an_unbounded_video_pes() {
    // A fixed case, so the 70 000-byte path is covered whatever proptest draws.
    let mut mux = Muxer::new(Some(VideoType::H264), None);
    let mut ts = Vec::new();
    mux.write_tables(&mut ts);
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let pes = Pes { pts: 9000, dts: Some(6000), pcr: Some(3000), random_access: true, data: &data };
    mux.write_pes(Track::Video, &pes, &mut ts).unwrap();
    let mut ctx = Ctx::default();
    let mut demux = demultiplex::Demultiplex::new(&mut ctx);
    demux.push(&mut ctx, &ts);
    ctx.finish();
    let got = &ctx.done[&VIDEO_PID];
    assert_eq!(got, &[SeenPes { pts: Some(9000), dts: Some(6000), length: None, data }]);
}
