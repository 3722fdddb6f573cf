//! Liveness of a peer connection, decided from what was heard and when.
//!
//! Each side sends a ping when it has sent nothing for `interval`; any frame
//! from the remote counts as a sign of life. Silence longer than `timeout`
//! means the remote is gone (tab closed, machine asleep, network lost) even
//! when ICE has not noticed yet. With the defaults (1 s, 4 s) a vanished
//! peer is detected in 4–5 s.

use super::broker::Millis;

/// What the glue should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    Nothing,
    SendPing,
    Dead,
}

/// Keep-alive accounting for one connection.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    interval: Millis,
    timeout: Millis,
    last_heard: Millis,
    last_sent: Millis,
}

impl KeepAlive {
    pub fn new(interval_ms: f64, timeout_ms: f64, now: Millis) -> Self {
        Self {
            interval: interval_ms,
            timeout: timeout_ms,
            last_heard: now,
            last_sent: now,
        }
    }

    /// Any frame arrived.
    pub fn heard(&mut self, now: Millis) {
        self.last_heard = now;
    }

    /// Any frame was sent.
    pub fn sent(&mut self, now: Millis) {
        self.last_sent = now;
    }

    /// Called on every timer tick.
    pub fn tick(&mut self, now: Millis) -> Tick {
        // Compared as `next_deadline` computes them: `now - last >= d`
        // can miss by a rounding error at `last + d`, and a timer armed
        // for that moment would then fire forever.
        if now >= self.last_heard + self.timeout {
            Tick::Dead
        } else if now >= self.last_sent + self.interval {
            self.last_sent = now;
            Tick::SendPing
        } else {
            Tick::Nothing
        }
    }

    /// Like `tick`, without the verdict: pings only (while the path is
    /// being restored, silence is expected).
    pub fn tick_ping(&mut self, now: Millis) -> Tick {
        if now >= self.last_sent + self.interval {
            self.last_sent = now;
            Tick::SendPing
        } else {
            Tick::Nothing
        }
    }

    /// When the next ping is due.
    pub fn next_ping(&self) -> Millis {
        self.last_sent + self.interval
    }

    /// When `tick` next has something to do.
    pub fn next_deadline(&self) -> Millis {
        (self.last_heard + self.timeout).min(self.last_sent + self.interval)
    }

    /// Milliseconds since the remote was last heard.
    pub fn silence(&self, now: Millis) -> Millis {
        now - self.last_heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_when_idle_and_declares_death_after_silence() {
        let mut k = KeepAlive::new(1000.0, 4000.0, 0.0);
        assert_eq!(k.tick(500.0), Tick::Nothing);
        assert_eq!(k.tick(1000.0), Tick::SendPing);
        assert_eq!(k.tick(1500.0), Tick::Nothing);
        k.heard(1800.0);
        assert_eq!(k.tick(2000.0), Tick::SendPing);
        assert_eq!(k.tick(5700.0), Tick::SendPing);
        assert_eq!(k.tick(5800.0), Tick::Dead);
        assert_eq!(k.silence(5800.0), 4000.0);
    }

    #[test]
    fn traffic_replaces_pings() {
        let mut k = KeepAlive::new(1000.0, 4000.0, 0.0);
        for t in (100..10_000).step_by(100) {
            k.sent(t as f64);
            k.heard(t as f64);
            assert_eq!(k.tick(t as f64 + 50.0), Tick::Nothing);
        }
    }
}
