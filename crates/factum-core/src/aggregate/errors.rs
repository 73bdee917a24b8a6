//! Why replaying a stored event failed: it did not decode, or it could not
//! be applied.

use std::fmt::{self, Display};

/// Why a stored event could not be turned back into a [`DomainEvent`](crate::DomainEvent).
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// The event enum has no variant of this type.
    UnknownEventType,
    /// The payload does not match the variant's fields.
    Payload(serde_json::Error),
}

impl From<serde_json::Error> for DecodeError {
    fn from(error: serde_json::Error) -> Self {
        Self::Payload(error)
    }
}

impl Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownEventType => f.write_str("the event enum has no variant of this event type"),
            Self::Payload(error) => write!(f, "the payload does not match the event's fields: {error}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::UnknownEventType => None,
            Self::Payload(error) => Some(error),
        }
    }
}

/// The error an `#[event]` method body returned, boxed as a source.
type BodyError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A replayed event could not be applied: its method body returned `Err`,
/// or the history does not start with `created`.
///
/// Like `std::io::Error` around a custom error, it is transparent: it
/// displays as the body's error, and [`get_ref`](Self::get_ref) or
/// [`into_inner`](Self::into_inner) give the body's error back for
/// downcasting. [`Error::Replay`](crate::Error::Replay) keeps it as its
/// `source()`.
#[derive(Debug)]
pub struct ApplyError {
    message: String,
    body: Option<BodyError>,
}

impl ApplyError {
    /// An error with this message: a rule of the history was broken (e.g.
    /// `created` found twice).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            body: None,
        }
    }

    /// The error an event method's body returned, kept whole so it can be
    /// downcast back to its type.
    pub fn from_error<E>(error: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Self {
            message: error.to_string(),
            body: Some(Box::new(error)),
        }
    }

    /// What went wrong, as text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error the event method's body returned, when it implements
    /// `std::error::Error`.
    pub fn get_ref(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.body.as_deref()
    }

    /// The error the event method's body returned, when it implements
    /// `std::error::Error`.
    pub fn into_inner(self) -> Option<BodyError> {
        self.body
    }

    /// The body's error when there is one, else this error: what
    /// [`Error::Replay`](crate::Error::Replay) keeps as its source.
    pub(crate) fn into_source(self) -> BodyError {
        match self.body {
            Some(body) => body,
            None => Box::new(self),
        }
    }
}

impl Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApplyError {
    // Transparent: the body's error is what displays, so its own source
    // is the next link of the chain.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.body.as_ref()?.source()
    }
}
