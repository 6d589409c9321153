//! Restart strategies, after Flink's: what a job does when a task fails —
//! restart after a delay, or give up and fail. A pure state machine: the
//! caller passes the time of each failure (milliseconds, any clock that
//! only moves forward) and, for the exponential strategy's jitter, a
//! number in `[0, 1)`; nothing here reads a clock or draws at random.
//! The job master of the checkpoint issue drives it.

use std::collections::VecDeque;
use std::time::Duration;

/// A restart strategy and its settings, with Flink's defaults.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    /// Never restart: the first failure fails the job.
    None,
    /// Restart up to `attempts` times, `delay` after each failure.
    FixedDelay {
        /// Restarts before the job fails.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restart after a delay that grows by `multiplier` with each failure,
    /// from `initial` up to `max`, with `jitter` (a fraction of the delay,
    /// either way); back to `initial` once the job ran `reset_after`
    /// without failing. Flink's default, and Weir's.
    ExponentialDelay {
        /// The first delay.
        initial: Duration,
        /// The longest delay.
        max: Duration,
        /// How much each failure multiplies the delay (at least 1).
        multiplier: f64,
        /// Running this long without a failure resets the delay.
        reset_after: Duration,
        /// A random fraction of the delay added or taken away, in `[0, 1]`.
        jitter: f64,
        /// Restarts before the job fails (`u32::MAX`: no end).
        attempts: u32,
    },
    /// Restart `delay` after a failure, unless more than `max_failures`
    /// failures fell within the last `interval`.
    FailureRate {
        /// Failures tolerated within one interval.
        max_failures: u32,
        /// The interval.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl Default for RestartStrategy {
    /// Flink's exponential-delay defaults: 1 s doubling by 1.5 up to
    /// 1 min, reset after 1 h without failures, jitter 0.1, no end.
    fn default() -> Self {
        RestartStrategy::ExponentialDelay {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 1.5,
            reset_after: Duration::from_secs(3600),
            jitter: 0.1,
            attempts: u32::MAX,
        }
    }
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart the job after this delay.
    RestartAfter(Duration),
    /// Fail the job: the strategy is exhausted (why, in words).
    Fail(&'static str),
}

/// A strategy's state over one job's life.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    /// Restarts so far (since the last reset, for the exponential one).
    restarts: u32,
    /// The exponential strategy's next delay, before jitter.
    next_delay: Duration,
    /// When the last failure was (ms).
    last_failure: Option<u64>,
    /// The failure-rate strategy's failures within the interval (ms).
    recent: VecDeque<u64>,
}

impl RestartTracker {
    /// A job's tracker for `strategy`, before any failure.
    pub fn new(strategy: RestartStrategy) -> RestartTracker {
        let next_delay = match &strategy {
            RestartStrategy::ExponentialDelay { initial, .. } => *initial,
            _ => Duration::ZERO,
        };
        RestartTracker { strategy, restarts: 0, next_delay, last_failure: None, recent: VecDeque::new() }
    }

    /// Restarts decided so far (since the last reset, for the exponential
    /// strategy).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// A task failed at `now_ms`; `random` is a number in `[0, 1)` (the
    /// exponential strategy's jitter; ignored by the others).
    pub fn on_failure(&mut self, now_ms: u64, random: f64) -> RestartDecision {
        let since_last = self.last_failure.map(|t| now_ms.saturating_sub(t));
        self.last_failure = Some(now_ms);
        match &self.strategy {
            RestartStrategy::None => RestartDecision::Fail("the restart strategy is `none`"),
            RestartStrategy::FixedDelay { attempts, delay } => {
                if self.restarts >= *attempts {
                    return RestartDecision::Fail("the fixed-delay strategy's attempts are used up");
                }
                self.restarts += 1;
                RestartDecision::RestartAfter(*delay)
            }
            RestartStrategy::ExponentialDelay { initial, max, multiplier, reset_after, jitter, attempts } => {
                if since_last.is_some_and(|d| d >= reset_after.as_millis() as u64) {
                    // It ran long enough without failing: start over.
                    self.restarts = 0;
                    self.next_delay = *initial;
                }
                if self.restarts >= *attempts {
                    return RestartDecision::Fail("the exponential-delay strategy's attempts are used up");
                }
                self.restarts += 1;
                let base = self.next_delay.min(*max);
                self.next_delay = base.mul_f64(multiplier.max(1.0)).min(*max);
                let j = jitter.clamp(0.0, 1.0);
                let factor = 1.0 + j * (2.0 * random.clamp(0.0, 1.0) - 1.0);
                RestartDecision::RestartAfter(base.mul_f64(factor).min(*max))
            }
            RestartStrategy::FailureRate { max_failures, interval, delay } => {
                let window = interval.as_millis() as u64;
                while self.recent.front().is_some_and(|&t| now_ms.saturating_sub(t) >= window) {
                    self.recent.pop_front();
                }
                self.recent.push_back(now_ms);
                if self.recent.len() as u64 > u64::from(*max_failures) {
                    return RestartDecision::Fail("the failure-rate strategy's failures per interval are exceeded");
                }
                self.restarts += 1;
                RestartDecision::RestartAfter(*delay)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RestartDecision::{Fail, RestartAfter};

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn none_fails_at_the_first_failure() {
        let mut t = RestartTracker::new(RestartStrategy::None);
        assert!(matches!(t.on_failure(0, 0.5), Fail(_)));
    }

    #[test]
    fn fixed_delay_restarts_its_attempts_then_fails() {
        let mut t = RestartTracker::new(RestartStrategy::FixedDelay { attempts: 2, delay: S(3) });
        assert_eq!(t.on_failure(0, 0.5), RestartAfter(S(3)));
        assert_eq!(t.on_failure(10_000, 0.5), RestartAfter(S(3)));
        assert!(matches!(t.on_failure(20_000, 0.5), Fail(_)));
        assert_eq!(t.restarts(), 2);
    }

    #[test]
    fn exponential_delay_grows_to_its_max_and_resets_after_a_quiet_hour() {
        let strategy = RestartStrategy::ExponentialDelay {
            initial: S(1),
            max: S(10),
            multiplier: 2.0,
            reset_after: S(3600),
            jitter: 0.0,
            attempts: u32::MAX,
        };
        let mut t = RestartTracker::new(strategy);
        let delays: Vec<RestartDecision> = (0..6).map(|i| t.on_failure(i * 1000, 0.9)).collect();
        let want = [1, 2, 4, 8, 10, 10].map(|s| RestartAfter(S(s)));
        assert_eq!(delays, want);
        // An hour without failures: back to the first delay.
        assert_eq!(t.on_failure(5000 + 3_600_000, 0.1), RestartAfter(S(1)));
        assert_eq!(t.restarts(), 1);
    }

    #[test]
    fn exponential_jitter_stays_within_its_fraction_and_the_max() {
        let mut low = RestartTracker::new(RestartStrategy::default());
        let mut high = RestartTracker::new(RestartStrategy::default());
        assert_eq!(low.on_failure(0, 0.0), RestartAfter(Duration::from_millis(900)));
        let RestartAfter(d) = high.on_failure(0, 0.999_999) else { panic!("the default restarts") };
        assert!(d > Duration::from_millis(1099) && d <= Duration::from_millis(1100), "{d:?}");
        for i in 1..40 {
            let RestartAfter(d) = high.on_failure(i, 0.999) else { panic!("the default never gives up") };
            assert!(d <= S(60), "{d:?}");
        }
    }

    #[test]
    fn exponential_attempts_bound_the_restarts() {
        let strategy = RestartStrategy::ExponentialDelay {
            initial: S(1),
            max: S(60),
            multiplier: 1.5,
            reset_after: S(3600),
            jitter: 0.1,
            attempts: 1,
        };
        let mut t = RestartTracker::new(strategy);
        assert!(matches!(t.on_failure(0, 0.5), RestartAfter(_)));
        assert!(matches!(t.on_failure(1000, 0.5), Fail(_)));
    }

    #[test]
    fn failure_rate_fails_past_its_failures_per_interval_and_forgets_old_ones() {
        let mut t = RestartTracker::new(RestartStrategy::FailureRate { max_failures: 2, interval: S(60), delay: S(1) });
        assert_eq!(t.on_failure(0, 0.5), RestartAfter(S(1)));
        assert_eq!(t.on_failure(30_000, 0.5), RestartAfter(S(1)));
        // The first fell out of the interval: two within it, still fine.
        assert_eq!(t.on_failure(60_000, 0.5), RestartAfter(S(1)));
        assert!(matches!(t.on_failure(61_000, 0.5), Fail(_)), "three within one minute");
    }
}
