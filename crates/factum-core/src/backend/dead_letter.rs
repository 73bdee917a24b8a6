//! Dead letters to rows and back.

use std::fmt::Display;

use time::OffsetDateTime;

use super::{corrupt, home, metadata_to_json};
use crate::{DeadLetter, Error, RecordedEvent, Tenant};

/// The columns of a dead letter's row that need checking before they are
/// stored; the rest are the letter's own fields.
#[derive(Debug)]
pub struct DeadLetterRow<'a> {
    /// The letter.
    pub letter: &'a DeadLetter,
    /// The event's position.
    pub position: i64,
    /// The event's version in its stream.
    pub version: i64,
    /// The event's metadata as JSON text, without its tenant (`None`: empty).
    pub metadata: Option<String>,
    /// The tenant the event lives in: kept in a column of its own.
    pub event_tenant: Tenant,
}

impl<'a> DeadLetterRow<'a> {
    /// Checks and converts `letter` for storage by a view of `tenant`
    /// (`None`: the unscoped handle).
    ///
    /// The event's tenant is its metadata's (the default tenant when unset,
    /// or for a view, the view's); a view refuses a letter whose event
    /// names another tenant with [`Error::InvalidTenant`].
    pub fn new(letter: &'a DeadLetter, tenant: Option<&Tenant>) -> Result<Self, Error> {
        let event = &letter.event;
        let event_tenant = letter_tenant(letter, tenant)?;
        let row = Self {
            letter,
            position: 0,
            version: 0,
            metadata: None,
            event_tenant,
        };
        Ok(Self {
            position: row.convert(event.position, "position")?,
            version: row.convert(event.version, "version")?,
            metadata: metadata_to_json(&event.stream, event.event_id, &event.metadata)?,
            ..row
        })
    }

    /// `value` as the column's type; [`Error::InvalidRequest`] naming the
    /// letter when the column cannot hold it.
    pub fn convert<T, S>(&self, value: S, what: &str) -> Result<T, Error>
    where
        T: TryFrom<S>,
        S: Copy + Display,
    {
        T::try_from(value).map_err(|_| self.invalid(format!("{what} {value} is out of range")))
    }

    /// The error for a letter the store cannot keep.
    pub fn invalid(&self, reason: String) -> Error {
        let event = &self.letter.event;
        Error::InvalidRequest {
            stream: event.stream.clone(),
            reason: format!(
                "dead letter of `{}` at {}: {reason}",
                self.letter.projection, event.position
            ),
        }
    }
}

/// The tenant of the event of `letter`, stored by a view of `tenant`: a
/// view keeps dead letters of its own tenant's events only.
pub fn letter_tenant(letter: &DeadLetter, tenant: Option<&Tenant>) -> Result<Tenant, Error> {
    let named = letter.event.metadata.tenant.as_ref();
    match (tenant, named) {
        (Some(own), Some(named)) if named != own => Err(Error::InvalidTenant {
            tenant: named.to_string(),
            reason: format!(
                "a view of tenant `{own}` cannot keep a dead letter of `{}` for an event of another tenant",
                letter.projection
            ),
        }),
        (_, Some(named)) => Ok(named.clone()),
        (own, None) => Ok(home(own).clone()),
    }
}

/// What a dead letter's row holds besides its event, as read back.
#[derive(Debug)]
pub struct Failure {
    /// What the handler reported.
    pub error: String,
    /// How many attempts failed.
    pub attempts: u32,
    /// When the last one failed.
    pub failed_at: OffsetDateTime,
}

/// A dead letter read back from a row: `failure` is its failure columns, or
/// what is wrong with them ([`Error::Corrupt`] naming the letter).
pub fn dead_letter_from_row(
    projection: &str,
    event: RecordedEvent,
    failure: Result<Failure, String>,
) -> Result<DeadLetter, Error> {
    let failure = failure.map_err(|reason| {
        corrupt(
            &event.stream,
            event.version,
            format!(
                "the dead letter of `{projection}` at position {} is damaged: {reason}",
                event.position
            ),
        )
    })?;
    Ok(DeadLetter {
        projection: projection.to_owned(),
        event,
        error: failure.error,
        attempts: failure.attempts,
        failed_at: failure.failed_at,
    })
}
