//! Ping and timeouts of one connection, without a clock: the `poll_timeout`/`handle_timeout`
//! pair of quinn-proto.
//!
//! Time is a [`Duration`] since the session started, on whatever monotonic clock the caller
//! keeps (sluice: `Instant` of accept + this offset). A plain offset rather than an `Instant`
//! keeps this crate free of any clock type and lets tests state times exactly; the ping value
//! RTMP sends is this offset in milliseconds anyway.
//!
//! The caller reports input with [`Timers::on_input`], asks [`Timers::poll_timeout`] when to
//! wake, and calls [`Timers::handle_timeout`] then (waking early or late is harmless: nothing
//! fires before its deadline, and a late wake fires what is due).

use std::time::Duration;

/// Settings (nginx-rtmp's `timeout`, `ping`, `ping_timeout`). The default turns everything off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Drop a peer not connected this long after the session started (`timeout`).
    pub connect: Option<Duration>,
    /// Ping a connected peer that sent nothing for this long (`ping`).
    pub ping: Option<Duration>,
    /// Drop the peer when nothing arrives this long after a ping (`ping_timeout`).
    pub ping_timeout: Duration,
}

/// Why the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutError {
    /// No accepted `connect` within [`Timeouts::connect`].
    #[error("no connect within {0:?} (timeout)")]
    Connect(Duration),
    /// Nothing received within [`Timeouts::ping_timeout`] of a ping.
    #[error("no reply to ping within {0:?}")]
    Ping(Duration),
}

/// The timer state of one connection.
#[derive(Debug, Clone)]
pub struct Timers {
    config: Timeouts,
    /// Pings start once connected; before that only the connect deadline runs (the handshake
    /// may not even be done).
    connected: bool,
    last_input: Duration,
    ping_sent: Option<Duration>,
}

impl Timers {
    /// Timers of a session that starts at time zero.
    pub fn new(config: Timeouts) -> Self {
        Self { config, connected: false, last_input: Duration::ZERO, ping_sent: None }
    }

    /// Bytes arrived at `now`: any input, not only a ping response, proves the peer alive
    /// (as in nginx-rtmp).
    pub fn on_input(&mut self, now: Duration) {
        self.last_input = self.last_input.max(now);
        self.ping_sent = None;
    }

    /// The connect was accepted: the connect deadline stops, pings start.
    pub fn on_connected(&mut self) {
        self.connected = true;
    }

    /// When [`Timers::handle_timeout`] has something to do; `None`: nothing until more input.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if !self.connected {
            return self.config.connect;
        }
        match self.ping_sent {
            Some(sent) => Some(sent + self.config.ping_timeout),
            None => self.config.ping.map(|ping| self.last_input + ping),
        }
    }

    /// Fire what is due at `now`: `Ok(Some(value))` asks the caller to send a ping carrying
    /// `value` (milliseconds since the start, wrapping like RTMP timestamps).
    pub fn handle_timeout(&mut self, now: Duration) -> Result<Option<u32>, TimeoutError> {
        if !self.connected {
            return match self.config.connect {
                Some(limit) if now >= limit => Err(TimeoutError::Connect(limit)),
                _ => Ok(None),
            };
        }
        if let Some(sent) = self.ping_sent {
            if now >= sent + self.config.ping_timeout {
                return Err(TimeoutError::Ping(self.config.ping_timeout));
            }
            return Ok(None);
        }
        match self.config.ping {
            Some(ping) if now >= self.last_input + ping => {
                self.ping_sent = Some(now);
                Ok(Some(now.as_millis() as u32))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn connected(ping: u64, ping_timeout: u64) -> Timers {
        let mut t = Timers::new(Timeouts { connect: Some(s(5)), ping: Some(s(ping)), ping_timeout: s(ping_timeout) });
        t.on_connected();
        t
    }

    #[test]
    fn pings_after_silence() {
        let mut t = connected(10, 3);
        assert_eq!(t.poll_timeout(), Some(s(10)));
        assert_eq!(t.handle_timeout(s(9)), Ok(None), "not yet silent long enough");
        assert_eq!(t.handle_timeout(s(10)), Ok(Some(10_000)));
        // The ping is sent once; next comes its deadline.
        assert_eq!(t.poll_timeout(), Some(s(13)));
        assert_eq!(t.handle_timeout(s(11)), Ok(None));
    }

    #[test]
    fn unanswered_ping_times_out() {
        let mut t = connected(10, 3);
        assert_eq!(t.handle_timeout(s(10)), Ok(Some(10_000)));
        assert_eq!(t.handle_timeout(s(12)), Ok(None));
        assert_eq!(t.handle_timeout(s(13)), Err(TimeoutError::Ping(s(3))));
    }

    #[test]
    fn reply_clears_the_ping() {
        let mut t = connected(10, 3);
        assert_eq!(t.handle_timeout(s(10)), Ok(Some(10_000)));
        t.on_input(s(12));
        assert_eq!(t.poll_timeout(), Some(s(22)), "next ping after another silence");
        assert_eq!(t.handle_timeout(s(13)), Ok(None));
        assert_eq!(t.handle_timeout(s(22)), Ok(Some(22_000)));
    }

    #[test]
    fn activity_postpones_the_ping() {
        let mut t = connected(10, 3);
        t.on_input(s(7));
        assert_eq!(t.poll_timeout(), Some(s(17)));
        assert_eq!(t.handle_timeout(s(10)), Ok(None));
        assert_eq!(t.handle_timeout(s(17)), Ok(Some(17_000)));
    }

    #[test]
    fn connect_timeout_fires_before_connect_only() {
        let mut t = Timers::new(Timeouts { connect: Some(s(5)), ping: Some(s(1)), ping_timeout: s(1) });
        assert_eq!(t.poll_timeout(), Some(s(5)));
        t.on_input(s(2));
        assert_eq!(t.handle_timeout(s(4)), Ok(None), "no pings before connect");
        assert_eq!(t.handle_timeout(s(5)), Err(TimeoutError::Connect(s(5))), "input does not postpone it");

        let mut t = Timers::new(Timeouts { connect: Some(s(5)), ping: None, ping_timeout: s(1) });
        t.on_connected();
        assert_eq!(t.poll_timeout(), None, "connected, no pings: nothing to wait for");
        assert_eq!(t.handle_timeout(s(100)), Ok(None));
    }

    #[test]
    fn off_by_default() {
        let mut t = Timers::new(Timeouts::default());
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.handle_timeout(s(1000)), Ok(None));
    }
}
