//! A small hand-written aggregate, so the suite can replay through the
//! repository without the macros.

use serde::{Deserialize, Serialize};

use crate::__private::AggregateState;
use crate::{Aggregate, ApplyError, DecodeError, DomainEvent, Payload};

/// A running total: the aggregate the conformance suite replays (and
/// snapshots, as JSON `{"id": …, "total": …}`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    /// The aggregate id.
    pub id: String,
    /// The sum of all amounts added.
    pub total: i64,
    #[serde(skip)]
    state: AggregateState<Tally>,
}

/// The events of [`Tally`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TallyEvent {
    /// The tally was opened with a starting total.
    Created {
        /// The aggregate id.
        id: String,
        /// The starting total.
        total: i64,
    },
    /// An amount was added.
    Added {
        /// The amount.
        amount: i64,
    },
}

#[derive(Serialize, Deserialize)]
struct Added {
    amount: i64,
}

#[derive(Serialize, Deserialize)]
struct Created {
    id: String,
    total: i64,
}

impl Tally {
    /// Opens a tally: records `created`.
    pub fn create(id: impl Into<String>, total: i64) -> Self {
        let id = id.into();
        let mut tally = Self {
            id: id.clone(),
            total,
            state: AggregateState::default(),
        };
        tally.state.record(TallyEvent::Created { id, total });
        tally
    }

    /// Adds `amount`: records `added`; fails on overflow.
    pub fn add(&mut self, amount: i64) -> Result<(), String> {
        self.apply_added(amount)?;
        self.state.record(TallyEvent::Added { amount });
        Ok(())
    }

    fn apply_added(&mut self, amount: i64) -> Result<(), String> {
        self.total = self
            .total
            .checked_add(amount)
            .ok_or_else(|| format!("adding {amount} to {} overflows", self.total))?;
        Ok(())
    }
}

impl DomainEvent for TallyEvent {
    const EVENT_TYPES: &'static [&'static str] = &["created", "added"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Added { .. } => "added",
        }
    }

    fn to_payload(&self) -> Result<Payload, serde_json::Error> {
        match self {
            Self::Created { id, total } => Payload::encode(&Created {
                id: id.clone(),
                total: *total,
            }),
            Self::Added { amount } => Payload::encode(&Added { amount: *amount }),
        }
    }

    fn from_payload(event_type: &str, payload: &Payload) -> Result<Self, DecodeError> {
        match event_type {
            "created" => {
                let Created { id, total } = payload.decode()?;
                Ok(Self::Created { id, total })
            }
            "added" => {
                let Added { amount } = payload.decode()?;
                Ok(Self::Added { amount })
            }
            _ => Err(DecodeError::UnknownEventType),
        }
    }
}

// A fixture, not an example: kept out of the "the trait `Aggregate` is
// implemented for ..." help that rustc shows a user whose struct lacks its
// `#[aggregate]` impl block.
#[diagnostic::do_not_recommend]
impl Aggregate for Tally {
    const TYPE: &'static str = "Tally";
    type Id = String;
    type Event = TallyEvent;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn from_first_event(event: TallyEvent) -> Result<Self, ApplyError> {
        match event {
            TallyEvent::Created { id, total } => Ok(Self {
                id,
                total,
                state: AggregateState::default(),
            }),
            other => Err(ApplyError::new(format!(
                "the first event of a stream must be `created`, found `{}`",
                other.event_type()
            ))),
        }
    }

    fn apply(&mut self, event: TallyEvent) -> Result<(), ApplyError> {
        match event {
            TallyEvent::Created { .. } => Err(ApplyError::new("`created` after the start of the stream")),
            TallyEvent::Added { amount } => self.apply_added(amount).map_err(ApplyError::new),
        }
    }

    fn state(&self) -> &AggregateState<Self> {
        &self.state
    }

    fn state_mut(&mut self) -> &mut AggregateState<Self> {
        &mut self.state
    }
}
