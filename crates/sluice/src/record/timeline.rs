//! Recording timestamps: every file starts at 0 (or where an appended file left off) and runs
//! on without jumps, whatever the publisher's clock does. RTMP timestamps are 32-bit
//! milliseconds that wrap after 49.7 days, and encoders restart, reconnect through relays or
//! stamp wall-clock time; a jump is taken out by moving both tracks by the same amount, so
//! audio and video stay in sync.
//!
//! Pure logic, no clock: the recorder feeds it each frame's timestamp.

/// A step back further than this is a jump (audio and video interleave within far less).
const MAX_BACKWARDS_MS: i64 = 1000;
/// A step forward further than this is a jump, not a pause in a slow stream.
const MAX_FORWARDS_MS: i64 = 5000;
/// Where a frame after a jump is placed: just after the latest frame so far.
const JUMP_STEP_MS: u64 = 20;

/// Maps a publisher's timestamps to a recording's.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// What the first frame maps to.
    start: u64,
    /// Added to the (unwrapped) publisher timestamp; set by the first frame.
    offset: Option<i64>,
    /// Latest recording timestamp given out.
    latest: u64,
    /// 32-bit wrap tracking: the last raw timestamp and the wraps seen.
    last_raw: Option<u32>,
    epochs: i64,
    /// Jumps taken out so far.
    jumps: u64,
}

impl Timeline {
    /// A timeline whose first frame maps to `start` milliseconds.
    pub fn new(start: u64) -> Self {
        Timeline { start, offset: None, latest: start, last_raw: None, epochs: 0, jumps: 0 }
    }

    /// The recording timestamp (milliseconds) of a frame the publisher stamped `ts`.
    pub fn map(&mut self, ts: u32) -> u64 {
        let t = self.unwrap(ts);
        let offset = *self.offset.get_or_insert(self.start as i64 - t);
        let mut out = t + offset;
        let latest = self.latest as i64;
        if out < latest - MAX_BACKWARDS_MS || out > latest + MAX_FORWARDS_MS {
            let placed = (self.latest + JUMP_STEP_MS) as i64;
            self.offset = Some(placed - t);
            self.jumps += 1;
            out = placed;
        }
        // A frame a little before the start (audio interleaved before the first keyframe).
        let out = out.max(0) as u64;
        self.latest = self.latest.max(out);
        out
    }

    /// How many jumps were taken out.
    pub fn jumps(&self) -> u64 {
        self.jumps
    }

    fn unwrap(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last_raw {
            if ts < last && last - ts > u32::MAX / 2 {
                self.epochs += 1;
            } else if ts > last && ts - last > u32::MAX / 2 && self.epochs > 0 {
                // A late frame from before the wrap.
                return ((self.epochs - 1) << 32) | i64::from(ts);
            }
        }
        self.last_raw = Some(ts);
        (self.epochs << 32) | i64::from(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_zero_and_keeps_spacing() {
        let mut t = Timeline::new(0);
        let out: Vec<u64> = [5000, 5023, 5040, 5046, 5080].iter().map(|&ts| t.map(ts)).collect();
        assert_eq!(out, [0, 23, 40, 46, 80]);
        assert_eq!(t.jumps(), 0);
    }

    #[test]
    fn appended_files_continue() {
        let mut t = Timeline::new(10_000);
        assert_eq!(t.map(0), 10_000);
        assert_eq!(t.map(40), 10_040);
    }

    #[test]
    fn early_audio_is_clamped_to_the_start() {
        let mut t = Timeline::new(0);
        assert_eq!(t.map(1000), 0);
        assert_eq!(t.map(990), 0);
        assert_eq!(t.map(1040), 40);
    }

    #[test]
    fn an_encoder_restart_continues_where_the_file_was_in_sync() {
        let mut t = Timeline::new(0);
        for ts in (0..=10_000).step_by(40) {
            t.map(100_000 + ts);
        }
        // The publisher's clock starts over at 0: video and audio keep their spacing.
        let v = t.map(0);
        let a = t.map(10);
        let v2 = t.map(40);
        assert_eq!((v, a, v2), (10_020, 10_030, 10_060));
        assert_eq!(t.jumps(), 1);
        // A jump forwards (wall-clock stamps) too.
        assert_eq!(t.map(3_600_000), 10_080);
        assert_eq!(t.jumps(), 2);
    }

    #[test]
    fn the_32_bit_wrap_is_not_a_jump() {
        let mut t = Timeline::new(0);
        assert_eq!(t.map(u32::MAX - 39), 0);
        assert_eq!(t.map(0), 40);
        assert_eq!(t.map(u32::MAX - 19), 20, "a late frame from before the wrap");
        assert_eq!(t.map(40), 80);
        assert_eq!(t.jumps(), 0);
    }
}
