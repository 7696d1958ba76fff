//! The time the ETL, the sweep and compaction read: the system clock in service; in tests, a
//! clock that follows tokio's paused clock or one moved forward by hand, so a test passes a
//! lease by advancing time rather than sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A source of "now" in epoch milliseconds. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Clock(Kind);

#[derive(Clone, Debug, Default)]
enum Kind {
    #[default]
    System,
    /// The system time when made, plus the time elapsed since on tokio's clock (which a paused
    /// test runtime advances).
    Tokio {
        anchor_ms: i64,
        start: tokio::time::Instant,
    },
    /// The system time plus an offset moved by [`Clock::advance`].
    Shifted(Arc<AtomicI64>),
}

impl Clock {
    pub fn system() -> Self {
        Self(Kind::System)
    }

    /// Follows tokio's clock: under `#[tokio::test(start_paused = true)]` it moves only as the
    /// runtime's time does, together with the heartbeat's and the refreshes' timers.
    pub fn following_tokio() -> Self {
        Self(Kind::Tokio {
            anchor_ms: now_ms(),
            start: tokio::time::Instant::now(),
        })
    }

    /// The system time, moved forward by [`Clock::advance`]: for tests against an emulator,
    /// where tokio's paused clock would also skip the requests' own timeouts.
    pub fn shifted() -> Self {
        Self(Kind::Shifted(Arc::new(AtomicI64::new(0))))
    }

    /// Moves a [`Clock::shifted`] clock forward; the others follow their own time.
    pub fn advance(&self, ms: i64) {
        if let Kind::Shifted(offset) = &self.0 {
            offset.fetch_add(ms, Ordering::SeqCst);
        }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Kind::System => now_ms(),
            Kind::Tokio { anchor_ms, start } => {
                anchor_ms + i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
            }
            Kind::Shifted(offset) => now_ms() + offset.load(Ordering::SeqCst),
        }
    }
}
