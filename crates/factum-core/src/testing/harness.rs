//! Given past events, when a command, then expect these events or this error.

use std::convert::Infallible;
use std::fmt::{Debug, Display};

use crate::Aggregate;

/// A given/when/then test of one aggregate, without a store.
///
/// ```
/// use factum_core::testing::{AggregateTest, Tally, TallyEvent};
///
/// AggregateTest::<Tally>::given([
///     TallyEvent::Created { id: "t-1".into(), total: 0 },
///     TallyEvent::Added { amount: 5 },
/// ])
/// .when(|tally| tally.add(2))
/// .then_expect_events([TallyEvent::Added { amount: 2 }]);
///
/// AggregateTest::<Tally>::given([TallyEvent::Created { id: "t-1".into(), total: i64::MAX }])
///     .when(|tally| tally.add(1))
///     .then_expect_error_message("adding 1 to 9223372036854775807 overflows");
/// ```
#[derive(Debug)]
pub struct AggregateTest<A> {
    aggregate: Option<A>,
}

impl<A: Aggregate> AggregateTest<A> {
    /// Starts from this history, replayed as a store would replay it.
    ///
    /// # Panics
    ///
    /// When the history cannot be replayed: the test is wrong.
    pub fn given(history: impl IntoIterator<Item = A::Event>) -> Self {
        let mut aggregate: Option<A> = None;
        let mut version = 0;
        for event in history {
            version += 1;
            let replayed = match aggregate {
                None => A::from_first_event(event),
                Some(mut aggregate) => aggregate.apply(event).map(|()| aggregate),
            };
            match replayed {
                Ok(replayed) => aggregate = Some(replayed),
                Err(error) => {
                    panic!("the given history does not replay at version {version}: {error}")
                }
            }
        }
        if let Some(aggregate) = aggregate.as_mut() {
            aggregate.state_mut().loaded_at(version);
        }
        Self { aggregate }
    }

    /// Starts with no history: the command creates the aggregate.
    pub fn given_no_history() -> Self {
        Self { aggregate: None }
    }

    /// Runs a command on the aggregate built from the history.
    ///
    /// # Panics
    ///
    /// When there is no history: use [`when_creating`](Self::when_creating).
    pub fn when<R: CommandOutcome>(self, command: impl FnOnce(&mut A) -> R) -> Then<A, R::Error> {
        let Some(mut aggregate) = self.aggregate else {
            panic!(
                "`when` needs a history; start a new aggregate with `given_no_history().when_creating(..)`"
            );
        };
        let outcome = command(&mut aggregate).into_outcome();
        Then {
            aggregate: Some(aggregate),
            outcome,
        }
    }

    /// Runs a command that creates the aggregate (for example `Counter::create`).
    pub fn when_creating<R: CreationOutcome<A>>(self, create: impl FnOnce() -> R) -> Then<A, R::Error> {
        match create().into_outcome() {
            Ok(aggregate) => Then {
                aggregate: Some(aggregate),
                outcome: Ok(()),
            },
            Err(error) => Then {
                aggregate: None,
                outcome: Err(error),
            },
        }
    }
}

/// What a command returns: `()` or `Result<T, E>`.
pub trait CommandOutcome {
    /// The command's error type.
    type Error;
    /// The outcome without its value.
    fn into_outcome(self) -> Result<(), Self::Error>;
}

impl CommandOutcome for () {
    type Error = Infallible;
    fn into_outcome(self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl<T, E> CommandOutcome for Result<T, E> {
    type Error = E;
    fn into_outcome(self) -> Result<(), E> {
        self.map(drop)
    }
}

/// What a creating command returns: the aggregate or `Result<A, E>`.
pub trait CreationOutcome<A> {
    /// The command's error type.
    type Error;
    /// The created aggregate, or the error.
    fn into_outcome(self) -> Result<A, Self::Error>;
}

impl<A: Aggregate> CreationOutcome<A> for A {
    type Error = Infallible;
    fn into_outcome(self) -> Result<A, Infallible> {
        Ok(self)
    }
}

impl<A: Aggregate, E> CreationOutcome<A> for Result<A, E> {
    type Error = E;
    fn into_outcome(self) -> Result<A, E> {
        self
    }
}

/// The result of a command under test, with the expectations to check.
#[derive(Debug)]
#[must_use = "a test without a `then_…` expectation checks nothing"]
pub struct Then<A, E> {
    aggregate: Option<A>,
    outcome: Result<(), E>,
}

impl<A: Aggregate, E: Debug> Then<A, E> {
    /// Expects the command to succeed and record exactly `expected`.
    ///
    /// # Panics
    ///
    /// When it failed or recorded other events.
    #[track_caller]
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = A::Event>) -> A
    where
        A::Event: PartialEq,
    {
        let aggregate = self.succeeded();
        let expected: Vec<A::Event> = expected.into_iter().collect();
        assert_eq!(
            aggregate.pending_events(),
            expected.as_slice(),
            "the command recorded other events"
        );
        aggregate
    }

    /// Expects the command to succeed and record nothing.
    ///
    /// # Panics
    ///
    /// When it failed or recorded events.
    #[track_caller]
    pub fn then_expect_no_events(self) -> A {
        let aggregate = self.succeeded();
        assert!(
            aggregate.pending_events().is_empty(),
            "expected no events, the command recorded {:?}",
            aggregate.pending_events()
        );
        aggregate
    }

    /// Expects the command to fail with `expected` and record nothing.
    ///
    /// # Panics
    ///
    /// When it succeeded, failed otherwise, or recorded events.
    #[track_caller]
    pub fn then_expect_error(self, expected: E)
    where
        E: PartialEq,
    {
        let error = self.failed();
        assert_eq!(error, expected, "the command failed with another error");
    }

    /// Expects the command to fail with an error that displays as `expected`.
    ///
    /// # Panics
    ///
    /// When it succeeded, failed otherwise, or recorded events.
    #[track_caller]
    pub fn then_expect_error_message(self, expected: &str)
    where
        E: Display,
    {
        let error = self.failed();
        assert_eq!(
            error.to_string(),
            expected,
            "the command failed with another message"
        );
    }

    /// The aggregate after the command, for checks of its state.
    ///
    /// # Panics
    ///
    /// When a creating command failed, so there is no aggregate.
    #[track_caller]
    pub fn aggregate(&self) -> &A {
        self.aggregate
            .as_ref()
            .expect("the creating command failed, so there is no aggregate")
    }

    #[track_caller]
    fn succeeded(self) -> A {
        if let Err(error) = self.outcome {
            panic!("expected the command to succeed, it failed with {error:?}");
        }
        self.aggregate.expect("a successful command leaves an aggregate")
    }

    #[track_caller]
    fn failed(self) -> E {
        match self.outcome {
            Ok(()) => panic!(
                "expected the command to fail, it succeeded and recorded {:?}",
                self.aggregate
                    .as_ref()
                    .map(|aggregate| aggregate.pending_events())
            ),
            Err(error) => {
                if let Some(aggregate) = &self.aggregate {
                    assert!(
                        aggregate.pending_events().is_empty(),
                        "the failed command still recorded {:?}",
                        aggregate.pending_events()
                    );
                }
                error
            }
        }
    }
}
