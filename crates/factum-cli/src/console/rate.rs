//! "Events per second now": the console samples the head of the log once a
//! second and divides how far it moved over the last ten seconds by the
//! time taken. Positions, not a count of rows: a rolled-back append leaves
//! a hole that is counted, which is the price of a one-row query a second
//! on a store of any size.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Shared;
use crate::commands::Store;

/// How often the head is read.
const EVERY: Duration = Duration::from_secs(1);
/// The window the rate is taken over: samples older than this are dropped.
const WINDOW: Duration = Duration::from_secs(10);

/// The last head samples, oldest first.
#[derive(Default)]
pub(crate) struct Rate {
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Rate {
    /// Records the head read at `at`.
    fn record(&self, at: Instant, head: u64) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back((at, head));
        while samples
            .front()
            .is_some_and(|(first, _)| at.duration_since(*first) > WINDOW)
        {
            samples.pop_front();
        }
    }

    /// Events per second over the window; `None` until two samples exist.
    pub(crate) fn per_second(&self) -> Option<f64> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let (first_at, first) = *samples.front()?;
        let (last_at, last) = *samples.back()?;
        let elapsed = last_at.duration_since(first_at).as_secs_f64();
        (elapsed > 0.0).then(|| last.saturating_sub(first) as f64 / elapsed)
    }
}

/// Events per second as pages show it.
pub(crate) fn shown(rate: Option<f64>) -> String {
    match rate {
        None => "measuring…".to_owned(),
        Some(rate) if rate < 10.0 => format!("{rate:.1}"),
        Some(rate) => crate::output::count(rate.round() as u64),
    }
}

/// Samples the head until the task is aborted; a failed read is skipped
/// (the pages show the store's error themselves).
pub(crate) async fn sample<S: Store>(console: Shared<S>) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Ok(head) = console.store.head_position().await {
            console.rate.record(Instant::now(), head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_taken_over_the_window() {
        let rate = Rate::default();
        let start = Instant::now();
        assert_eq!(rate.per_second(), None);
        rate.record(start, 100);
        assert_eq!(rate.per_second(), None);
        rate.record(start + Duration::from_secs(2), 300);
        assert_eq!(rate.per_second(), Some(100.0));
        // The first sample leaves the window.
        rate.record(start + Duration::from_secs(12), 400);
        assert_eq!(rate.per_second(), Some(10.0));
        assert_eq!(shown(Some(2.24)), "2.2");
        assert_eq!(shown(Some(12_345.4)), "12,345");
    }
}
