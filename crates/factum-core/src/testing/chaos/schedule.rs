//! What a [`ChaosStore`](super::ChaosStore) injects and when: a seeded
//! schedule of fault rates, plus faults queued for particular calls.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// A store call a fault can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`EventStore::append`](crate::EventStore::append).
    Append,
    /// [`EventStore::read_stream`](crate::EventStore::read_stream) and its pages.
    ReadStream,
    /// [`EventStore::read_all`](crate::EventStore::read_all).
    ReadAll,
    /// Each event a subscription delivers.
    Subscription,
    /// [`EventStore::stream_version`](crate::EventStore::stream_version).
    StreamVersion,
    /// [`EventStore::head_position`](crate::EventStore::head_position).
    HeadPosition,
    /// [`SnapshotStore::save_snapshot`](crate::SnapshotStore::save_snapshot).
    SaveSnapshot,
    /// [`SnapshotStore::load_snapshot`](crate::SnapshotStore::load_snapshot).
    LoadSnapshot,
}

impl Operation {
    const ALL: [Self; 8] = [
        Self::Append,
        Self::ReadStream,
        Self::ReadAll,
        Self::Subscription,
        Self::StreamVersion,
        Self::HeadPosition,
        Self::SaveSnapshot,
        Self::LoadSnapshot,
    ];

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|&operation| operation == self)
            .unwrap_or_default()
    }

    /// True for calls that write: only they can conflict or lose an answer.
    pub fn writes(self) -> bool {
        matches!(self, Self::Append | Self::SaveSnapshot)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Append => "append",
            Self::ReadStream => "read_stream",
            Self::ReadAll => "read_all",
            Self::Subscription => "subscription",
            Self::StreamVersion => "stream_version",
            Self::HeadPosition => "head_position",
            Self::SaveSnapshot => "save_snapshot",
            Self::LoadSnapshot => "load_snapshot",
        };
        f.write_str(name)
    }
}

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// An append fails with [`Error::Conflict`](crate::Error::Conflict),
    /// writing nothing. On other calls it acts as [`Fault::Transient`].
    Conflict,
    /// The call fails with [`Error::Store`](crate::Error::Store) without
    /// reaching the store: a dropped connection, a busy database.
    Transient,
    /// A write reaches the store and commits, then fails with
    /// [`Error::Store`](crate::Error::Store) as if the answer were lost on
    /// the way back, so the caller retries (the idempotent path). On reads
    /// it acts as [`Fault::Transient`].
    LostAnswer,
    /// The call waits this long, then proceeds normally.
    Delay(Duration),
}

/// Fault rates for a [`ChaosStore`](super::ChaosStore), drawn from a seeded
/// generator: the same seed gives the same sequence of decisions.
///
/// Each call draws once: with probability `conflicts` (appends only) it
/// conflicts, else with `lost_answers` (writes only) it loses its answer,
/// else with `transient_errors` it fails, else with `delays` it waits up to
/// the maximum delay. Rates are clamped to 0..=1.
///
/// ```
/// use std::time::Duration;
/// use factum_core::testing::ChaosSchedule;
///
/// // About 10% of calls fail one way or another, 5% are slowed down.
/// let schedule = ChaosSchedule::seeded(42)
///     .conflicts(0.03)
///     .lost_answers(0.03)
///     .transient_errors(0.04)
///     .delays(0.05, Duration::from_millis(5));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ChaosSchedule {
    seed: u64,
    conflicts: f64,
    lost_answers: f64,
    transient_errors: f64,
    delays: f64,
    max_delay: Duration,
}

impl ChaosSchedule {
    /// No faults at all, until some are queued with
    /// [`ChaosStore::inject`](super::ChaosStore::inject).
    pub fn none() -> Self {
        Self::seeded(0)
    }

    /// No faults yet; add rates with the other methods. `seed` fixes the
    /// sequence of decisions.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            conflicts: 0.0,
            lost_answers: 0.0,
            transient_errors: 0.0,
            delays: 0.0,
            max_delay: Duration::ZERO,
        }
    }

    /// The share of appends that conflict.
    pub fn conflicts(mut self, rate: f64) -> Self {
        self.conflicts = clamp(rate);
        self
    }

    /// The share of writes that commit but lose their answer.
    pub fn lost_answers(mut self, rate: f64) -> Self {
        self.lost_answers = clamp(rate);
        self
    }

    /// The share of calls that fail without reaching the store.
    pub fn transient_errors(mut self, rate: f64) -> Self {
        self.transient_errors = clamp(rate);
        self
    }

    /// The share of calls delayed, each by up to `max`.
    pub fn delays(mut self, rate: f64, max: Duration) -> Self {
        self.delays = clamp(rate);
        self.max_delay = max;
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

fn clamp(rate: f64) -> f64 {
    if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) }
}

/// The seeded draws and the faults queued per operation.
#[derive(Debug)]
pub(super) struct Plan {
    schedule: ChaosSchedule,
    random: SplitMix64,
    queued: [VecDeque<Fault>; Operation::ALL.len()],
}

impl Plan {
    pub(super) fn new(schedule: ChaosSchedule) -> Self {
        Self {
            random: SplitMix64(schedule.seed),
            schedule,
            queued: Default::default(),
        }
    }

    pub(super) fn queue(&mut self, operation: Operation, fault: Fault) {
        self.queued[operation.index()].push_back(fault);
    }

    pub(super) fn reschedule(&mut self, schedule: ChaosSchedule) {
        self.random = SplitMix64(schedule.seed);
        self.schedule = schedule;
    }

    /// The fault for the next call of `operation`, if any: a queued one
    /// first, else one drawn from the schedule.
    pub(super) fn next(&mut self, operation: Operation) -> Option<Fault> {
        if let Some(fault) = self.queued[operation.index()].pop_front() {
            return Some(fault);
        }
        let draw = self.random.unit();
        let schedule = &self.schedule;
        let mut threshold = 0.0;
        let mut within = |rate: f64| {
            threshold += rate;
            draw < threshold
        };
        if operation == Operation::Append && within(schedule.conflicts) {
            Some(Fault::Conflict)
        } else if operation.writes() && within(schedule.lost_answers) {
            Some(Fault::LostAnswer)
        } else if within(schedule.transient_errors) {
            Some(Fault::Transient)
        } else if within(schedule.delays) {
            let nanos = schedule.max_delay.as_nanos() as f64 * self.random.unit();
            Some(Fault::Delay(Duration::from_nanos(nanos as u64)))
        } else {
            None
        }
    }
}

/// A small seeded generator: enough for fault schedules, and the same on
/// every platform, so a seed reproduces a failure anywhere.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in 0..1.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(schedule: ChaosSchedule, operation: Operation, count: usize) -> Vec<Option<Fault>> {
        let mut plan = Plan::new(schedule);
        (0..count).map(|_| plan.next(operation)).collect()
    }

    #[test]
    fn a_seed_reproduces_its_sequence() {
        let schedule = ChaosSchedule::seeded(7).transient_errors(0.3).conflicts(0.2);
        assert_eq!(
            draws(schedule.clone(), Operation::Append, 200),
            draws(schedule, Operation::Append, 200)
        );
    }

    #[test]
    fn rates_are_honoured_roughly() {
        let schedule = ChaosSchedule::seeded(1)
            .conflicts(0.1)
            .lost_answers(0.1)
            .transient_errors(0.1);
        let faults = draws(schedule, Operation::Append, 10_000);
        let count = |wanted: Fault| faults.iter().filter(|fault| **fault == Some(wanted)).count();
        for fault in [Fault::Conflict, Fault::LostAnswer, Fault::Transient] {
            let seen = count(fault);
            assert!(
                (800..1200).contains(&seen),
                "{fault:?} drawn {seen} times in 10,000 at 10%"
            );
        }
    }

    #[test]
    fn reads_never_conflict_or_lose_answers() {
        let schedule = ChaosSchedule::seeded(3).conflicts(0.5).lost_answers(0.5);
        assert!(
            draws(schedule, Operation::ReadAll, 1000)
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn queued_faults_come_first_and_in_order() {
        let mut plan = Plan::new(ChaosSchedule::none());
        plan.queue(Operation::Append, Fault::LostAnswer);
        plan.queue(Operation::Append, Fault::Conflict);
        assert_eq!(plan.next(Operation::ReadAll), None);
        assert_eq!(plan.next(Operation::Append), Some(Fault::LostAnswer));
        assert_eq!(plan.next(Operation::Append), Some(Fault::Conflict));
        assert_eq!(plan.next(Operation::Append), None);
    }

    #[test]
    fn delays_stay_within_the_maximum() {
        let max = Duration::from_millis(3);
        let schedule = ChaosSchedule::seeded(9).delays(1.0, max);
        for fault in draws(schedule, Operation::HeadPosition, 500) {
            match fault {
                Some(Fault::Delay(delay)) => assert!(delay <= max),
                other => panic!("expected a delay, got {other:?}"),
            }
        }
    }
}
