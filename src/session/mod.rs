//! One actor per WebSocket: [`StudentSession`] and [`ProctorSession`], and what they share.
//!
//! A session parses and validates what its client sends, routes a student's status and chat
//! through the [`Router`] on its own thread, hands the rest to the registry, and writes what
//! it is sent. It never blocks on I/O: frames wait in its [`Outbox`] and one write at a time
//! goes to the socket.
//!
//! # Slow consumers
//!
//! A socket that cannot take its traffic as fast as it comes does not grow memory without
//! bound and does not slow anyone else: while a status of an attempt waits in the outbox, a
//! newer status of the same attempt replaces it (the dashboard would drop the older one by its
//! `seq` anyway); when the outbox still holds `limits.outbox_frames` frames or
//! `limits.outbox_bytes` bytes, the socket is closed with 1013 (try again later) and its
//! client reconnects and resyncs from a snapshot.

mod outbox;
mod proctor;
mod socket;
mod student;

use std::{sync::Arc, time::Instant};

pub use outbox::Outbox;
pub use proctor::{ProctorCommand, ProctorSession};
pub use socket::Socket;
pub use student::{StudentCommand, StudentSession};

use crate::{
    config::{HeartbeatSettings, LimitSettings},
    metrics::Metrics,
    protocol::ids::InstanceId,
    registry::Router,
};

/// What every session of one server shares.
pub struct SessionContext {
    pub instance: InstanceId,
    pub limits: LimitSettings,
    pub heartbeat: HeartbeatSettings,
    pub metrics: Arc<Metrics>,
    /// Routes students' statuses and chat lines from the thread they arrive on.
    pub router: Arc<Router>,
}

/// A token bucket: `rate` messages per second sustained, `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Take one token if there is one.
    pub fn allow(&mut self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Refused messages in a row; too many close the socket with 4008.
#[derive(Debug, Default)]
pub struct Strikes {
    count: u32,
}

impl Strikes {
    /// Count one refused message; true when the limit is passed.
    pub fn strike(&mut self, limit: u32) -> bool {
        self.count += 1;
        self.count > limit
    }

    pub fn clear(&mut self) {
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = RateLimiter::new(10.0, 20.0);
        bucket.last = start;
        let allowed = (0..25).filter(|_| bucket.allow_at(start)).count();
        assert_eq!(allowed, 20);
        // One second later, ten more.
        let later = start + Duration::from_secs(1);
        let allowed = (0..25).filter(|_| bucket.allow_at(later)).count();
        assert_eq!(allowed, 10);
        // Sustained at the rate: one every 100 ms is always allowed.
        for i in 1..=50 {
            assert!(bucket.allow_at(later + Duration::from_millis(100 * i)));
        }
    }

    #[test]
    fn strikes_close_after_the_limit() {
        let mut s = Strikes::default();
        assert!(!s.strike(2));
        assert!(!s.strike(2));
        assert!(s.strike(2));
        s.clear();
        assert!(!s.strike(2));
    }
}
