//! The segmenter's clock: a publisher's 32-bit millisecond timestamps made into one timeline that
//! runs on without jumps, as the recorder does (`sluice::record::timeline`). Encoders restart,
//! reconnect through relays or stamp wall-clock time; a jump is taken out by moving every track
//! by the same amount, so audio and video stay in sync, and reported so the segmenter can mark a
//! discontinuity. Unlike the recorder, the timeline starts where the publisher's does (names by
//! `hls_fragment_naming timestamp` and `aligned` slicing follow the publisher's clock).

/// A step back further than this is a jump (audio and video interleave within far less).
const MAX_BACKWARDS_MS: i64 = 1000;
/// A step forward further than this is a jump, not a pause in a slow stream.
const MAX_FORWARDS_MS: i64 = 5000;
/// Where a frame after a jump is placed: just after the latest frame so far.
const JUMP_STEP_MS: i64 = 20;

/// Maps a publisher's timestamps to the segmenter's, in milliseconds.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    clock: Unwrap,
    /// Added to the unwrapped timestamp; changed at each jump.
    offset: i64,
    /// The latest timestamp given out, once there is one.
    latest: Option<i64>,
}

impl Timeline {
    /// The timeline's millisecond for a frame stamped `ts`, and whether a jump was taken out
    /// just now. `resume_at` is where a jump puts this frame: one frame after its track's last
    /// (so a GOP's spacing, and its B-frames' order, survive a publisher stamping garbage); by
    /// default just after the latest frame.
    pub(crate) fn map(&mut self, ts: u32, resume_at: Option<u64>) -> (u64, bool) {
        let t = self.clock.ms(ts) as i64;
        let mut out = t + self.offset;
        let mut jumped = false;
        if let Some(latest) = self.latest {
            if out < latest - MAX_BACKWARDS_MS || out > latest + MAX_FORWARDS_MS {
                let resume = resume_at.map_or(latest + JUMP_STEP_MS, |r| r as i64);
                out = resume.clamp(latest - MAX_BACKWARDS_MS, latest + MAX_FORWARDS_MS);
                self.offset = out - t;
                jumped = true;
            }
        }
        let out = out.max(0);
        self.latest = Some(self.latest.map_or(out, |l| l.max(out)));
        (out as u64, jumped)
    }
}

/// RTMP timestamps are 32-bit milliseconds that wrap after 49.7 days; this extends them.
#[derive(Debug, Default)]
pub(crate) struct Unwrap {
    last: Option<u32>,
    epochs: u64,
}

impl Unwrap {
    pub(crate) fn ms(&mut self, ts: u32) -> u64 {
        if let Some(last) = self.last {
            // A big step backwards is the 2^32 wrap, not a rewind.
            if ts < last && last - ts > u32::MAX / 2 {
                self.epochs += 1;
            } else if ts > last && ts - last > u32::MAX / 2 && self.epochs > 0 {
                // A late message from before the wrap: `last` stays after the wrap.
                return (self.epochs - 1) << 32 | u64::from(ts);
            }
        }
        self.last = Some(ts);
        self.epochs << 32 | u64::from(ts)
    }
}

/// One track's timestamps made strictly increasing: a frame stamped at or before the track's
/// previous one (frozen or rewound clocks) is placed one frame interval after it.
#[derive(Debug, Default)]
pub(crate) struct TrackClock {
    last: Option<u64>,
}

impl TrackClock {
    pub(crate) fn next(&mut self, ts: u64, interval: u64) -> u64 {
        let out = match self.last {
            Some(last) if ts <= last => last + interval.max(1),
            _ => ts,
        };
        self.last = Some(out);
        out
    }

    pub(crate) fn last(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_timestamps_wrap_at_2_pow_32() {
        let mut u = Unwrap::default();
        assert_eq!(u.ms(u32::MAX - 10), u64::from(u32::MAX - 10));
        assert_eq!(u.ms(5), (1 << 32) + 5);
        assert_eq!(u.ms(u32::MAX - 2), u64::from(u32::MAX - 2), "a late message from before the wrap");
        assert_eq!(u.ms(20), (1 << 32) + 20);
    }

    impl Timeline {
        fn map_default(&mut self, ts: u32) -> (u64, bool) {
            self.map(ts, None)
        }
    }

    #[test]
    fn a_jump_resumes_where_the_track_asks() {
        let mut t = Timeline::default();
        t.map(1000, None);
        t.map(1040, Some(1040));
        assert_eq!(t.map(900_000, Some(1080)), (1080, true));
        assert_eq!(t.map(900_040, Some(1120)), (1120, false));
    }

    #[test]
    fn jumps_are_taken_out_and_reported() {
        let mut t = Timeline::default();
        assert_eq!(t.map_default(4000), (4000, false), "starts where the publisher does");
        assert_eq!(t.map_default(4040), (4040, false));
        assert_eq!(t.map_default(3500), (3500, false), "interleaving within a second is not a jump");
        assert_eq!(t.map_default(4040 + 36_000_000), (4060, true), "+10 h");
        assert_eq!(t.map_default(4080 + 36_000_000), (4100, false), "spacing kept after the jump");
        assert_eq!(t.map_default(0), (4120, true), "reset to 0");
        assert_eq!(t.map_default(40), (4160, false));
    }

    #[test]
    fn track_clocks_never_stand_still() {
        let mut c = TrackClock::default();
        assert_eq!([c.next(100, 10), c.next(100, 10), c.next(90, 10), c.next(200, 10)], [100, 110, 120, 200]);
    }
}
