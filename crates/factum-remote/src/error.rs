//! The errors of the remote client itself, beside the store's own errors
//! that cross the wire (see [`status`](crate::status)).

use tonic::Code;

use crate::convert::WireError;

/// What went wrong between a [`RemoteEventStore`](crate::RemoteEventStore)
/// and its server. Reported inside [`factum_core::Error::Store`] (backend
/// `"remote"`), so callers see one error type for every store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The server's address is not a valid URI.
    #[error("invalid server address `{address}`: {reason}")]
    Address {
        /// The address given.
        address: String,
        /// Why it is not valid.
        reason: String,
    },

    /// The TLS settings could not be used (an unreadable certificate...).
    #[error("TLS settings: {0}")]
    Tls(#[source] tonic::transport::Error),

    /// The server answered with a failed status that is not one of the
    /// store's own errors (unreachable, unauthenticated, a limit reached...).
    #[error("server answered {code:?}: {message}")]
    Status {
        /// The gRPC status code.
        code: Code,
        /// The server's message.
        message: String,
    },

    /// The server's answer broke the wire contract.
    #[error("malformed reply from the server: {0}")]
    Reply(#[source] WireError),

    /// A token that cannot be sent in a header.
    #[error("the bearer token holds characters a header cannot carry")]
    Token,
}

impl RemoteError {
    /// The gRPC status code, when the server answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<tonic::Status> for RemoteError {
    fn from(status: tonic::Status) -> Self {
        Self::Status {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}
