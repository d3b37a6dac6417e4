//! `maxloop` / `loop_interval`: error-triggered actions are counted, and the
//! (maxloop + 1)-th within the window stops the module ("Action stop called
//! by maxloop"). Administrator commands reset the counter.

use std::time::{Duration, Instant};

/// The counter behind resource `heart.stopstartloop`.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoopGuard {
    /// Actions counted in the current window.
    count: u32,
    /// When the current window started.
    since: Option<Instant>,
}

impl LoopGuard {
    /// Counts one error-triggered action; true if it exceeds `maxloop`.
    pub(crate) fn exceeded(&mut self, now: Instant, maxloop: u32, interval: Duration) -> bool {
        if interval.is_zero() {
            return false;
        }
        match self.since {
            Some(s) if now.saturating_duration_since(s) <= interval => {}
            _ => {
                self.since = Some(now);
                self.count = 0;
            }
        }
        self.count += 1;
        self.count > maxloop
    }

    /// An administrator command: start counting afresh.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Actions counted in the current window.
    pub(crate) const fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fourth_action_within_the_window_exceeds_maxloop_3() {
        let t0 = Instant::now();
        let day = Duration::from_secs(86_400);
        let mut g = LoopGuard::default();
        assert!(!g.exceeded(t0, 3, day));
        assert!(!g.exceeded(t0 + Duration::from_secs(1), 3, day));
        assert!(!g.exceeded(t0 + Duration::from_secs(2), 3, day));
        assert!(g.exceeded(t0 + Duration::from_secs(3), 3, day));
        g.reset();
        assert!(!g.exceeded(t0 + Duration::from_secs(4), 3, day));
        // A new window after loop_interval.
        let mut g = LoopGuard::default();
        for i in 0..3 {
            assert!(!g.exceeded(t0 + Duration::from_secs(i), 3, day));
        }
        assert!(!g.exceeded(t0 + day + Duration::from_secs(10), 3, day));
        assert!(!LoopGuard::default().exceeded(t0, 0, Duration::ZERO), "loop_interval 0 disables");
    }
}
