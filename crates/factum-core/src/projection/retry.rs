//! How a runner retries a failing handler, and what it does when the
//! attempts run out.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How often, and how patiently, a runner retries an event whose handler
/// failed.
///
/// The delay before attempt `n + 1` is `base_delay * 2^(n - 1)`, capped at
/// `max_delay`; with `jitter` on, a random share of up to half of it is taken
/// off, so instances that failed together do not retry in lockstep.
///
/// ```
/// # use std::time::Duration;
/// # use factum_core::RetryPolicy;
/// let policy = RetryPolicy::default()
///     .max_attempts(3)
///     .base_delay(Duration::from_millis(10))
///     .max_delay(Duration::from_secs(1))
///     .jitter(false);
/// assert_eq!(policy.delay_after(1), Duration::from_millis(10));
/// assert_eq!(policy.delay_after(2), Duration::from_millis(20));
/// assert_eq!(policy.delay_after(30), Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl Default for RetryPolicy {
    /// Five attempts, 100 ms doubling up to 30 s, with jitter.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry: the first failure poisons the event.
    pub fn no_retry() -> Self {
        Self::default().max_attempts(1)
    }

    /// Sets how many times an event is tried in all (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the delay after the first failure.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Sets the longest delay between two attempts.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Turns the random shortening of delays on or off.
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// How many times an event is tried in all.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay after `failures` failed attempts, before jitter.
    pub fn delay_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base_delay
            .checked_mul(1 << doublings)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The delay to wait after `failures` failed attempts, jitter included.
    pub fn backoff(&self, failures: u32) -> Duration {
        let delay = self.delay_after(failures);
        if !self.jitter {
            return delay;
        }
        jittered(delay, random_u64())
    }
}

/// `delay` less a share of up to half of it, chosen by `random`.
fn jittered(delay: Duration, random: u64) -> Duration {
    let half = delay / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let taken = if nanos == 0 { 0 } else { random % (nanos + 1) };
    delay.saturating_sub(Duration::from_nanos(taken))
}

// The standard library seeds every `RandomState` afresh, which is all the
// randomness jitter needs; no RNG dependency for one number.
fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// What a runner does with an event whose handler failed on every attempt
/// (a *poisoned* event).
///
/// Either way the event is never dropped silently: it goes to the dead-letter
/// store, where it stays listed until replayed or deleted, or the runner
/// stops with its checkpoint before it.
///
/// ```
/// # use factum_core::PoisonPolicy;
/// assert_eq!(PoisonPolicy::default(), PoisonPolicy::DeadLetter);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoisonPolicy {
    /// Record the event and its error as a dead letter, commit the
    /// checkpoint past it, and go on with the next event.
    #[default]
    DeadLetter,
    /// Stop the runner with [`Error::Projection`](crate::Error::Projection);
    /// the checkpoint stays before the event, so a restart meets it again.
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy::default()
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(700))
            .jitter(false);
        let delays: Vec<u128> = (1..=5)
            .map(|failures| policy.backoff(failures).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 700, 700]);
        assert_eq!(policy.delay_after(u32::MAX), Duration::from_millis(700));
    }

    #[test]
    fn jitter_stays_within_the_upper_half() {
        let delay = Duration::from_millis(100);
        for random in [0, 1, 12_345, u64::MAX / 3, u64::MAX] {
            let jittered = jittered(delay, random);
            assert!(jittered <= delay && jittered >= delay / 2, "{jittered:?}");
        }
        assert_eq!(jittered(Duration::ZERO, 7), Duration::ZERO);
        let policy = RetryPolicy::default().base_delay(Duration::from_secs(10));
        let distinct: std::collections::HashSet<Duration> = (0..20).map(|_| policy.backoff(1)).collect();
        assert!(distinct.len() > 1, "jitter produced one value: {distinct:?}");
    }

    #[test]
    fn at_least_one_attempt() {
        assert_eq!(RetryPolicy::default().max_attempts(0).attempts(), 1);
        assert_eq!(RetryPolicy::no_retry().attempts(), 1);
    }
}
