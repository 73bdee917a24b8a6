//! How a store's [`Error`] crosses the wire: a gRPC status code a client in
//! any language understands, plus an `ErrorDetail` in the trailing metadata
//! `factum-error-bin` from which a factum client rebuilds the exact error
//! (stream, expected and actual version of a conflict...).

use factum_core::{Error, StreamId};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::convert::{WireError, expected_from_wire, expected_to_wire, stream_from_wire, stream_to_wire};
use crate::error::RemoteError;
use crate::proto::{self, error_detail::Kind};

/// The metadata key of the [`proto::ErrorDetail`] beside a failed call's status.
pub const ERROR_DETAIL_KEY: &str = "factum-error-bin";

/// The status a server answers for a store error.
///
/// ```
/// # use factum_core::{Error, ExpectedVersion, StreamId};
/// # use factum_remote::status::{error_from_status, error_to_status};
/// let conflict = Error::Conflict { stream: StreamId::new("Tally", "1"), expected: ExpectedVersion::Exact(2), actual: 3 };
/// let status = error_to_status(&conflict);
/// assert_eq!(status.code(), tonic::Code::Aborted);
/// assert!(matches!(error_from_status(status), Error::Conflict { actual: 3, .. }));
/// ```
pub fn error_to_status(error: &Error) -> Status {
    let (code, kind) = match error {
        Error::Conflict {
            stream,
            expected,
            actual,
        } => (
            Code::Aborted,
            Some(Kind::Conflict(proto::Conflict {
                stream: Some(stream_to_wire(stream)),
                expected: Some(expected_to_wire(*expected)),
                actual: *actual,
            })),
        ),
        Error::DuplicateEventId {
            stream,
            existing_stream,
            event_id,
        } => (
            Code::AlreadyExists,
            Some(Kind::DuplicateEventId(proto::DuplicateEventId {
                stream: Some(stream_to_wire(stream)),
                existing_stream: Some(stream_to_wire(existing_stream)),
                event_id: event_id.to_string(),
            })),
        ),
        Error::InvalidTenant { tenant, reason } => (
            Code::InvalidArgument,
            Some(Kind::InvalidTenant(proto::InvalidTenant {
                tenant: tenant.clone(),
                reason: reason.clone(),
            })),
        ),
        Error::InvalidRequest { stream, reason } => (
            Code::InvalidArgument,
            Some(Kind::InvalidRequest(proto::InvalidRequest {
                stream: Some(stream_to_wire(stream)),
                reason: reason.clone(),
            })),
        ),
        Error::EmptyBatchList => (
            Code::InvalidArgument,
            Some(Kind::EmptyBatchList(proto::EmptyBatchList {})),
        ),
        Error::DuplicateStream { stream } => (
            Code::InvalidArgument,
            Some(Kind::DuplicateStream(proto::DuplicateStream {
                stream: Some(stream_to_wire(stream)),
            })),
        ),
        Error::Corrupt {
            stream,
            version,
            reason,
        } => (
            Code::DataLoss,
            Some(Kind::Corrupt(proto::Corrupt {
                stream: Some(stream_to_wire(stream)),
                version: *version,
                reason: reason.clone(),
            })),
        ),
        _ => (Code::Internal, None),
    };
    with_detail(Status::new(code, error.to_string()), kind)
}

/// `status` carrying `kind` as its [`ERROR_DETAIL_KEY`] metadata.
pub fn with_detail(mut status: Status, kind: Option<Kind>) -> Status {
    if let Some(kind) = kind {
        let detail = proto::ErrorDetail { kind: Some(kind) }.encode_to_vec();
        status
            .metadata_mut()
            .insert_bin(ERROR_DETAIL_KEY, MetadataValue::from_bytes(&detail));
    }
    status
}

/// The error a client reports for a failed call: the store's own error when
/// the status carries an `ErrorDetail`, otherwise [`Error::Store`] holding a
/// [`RemoteError`] with the status.
pub fn error_from_status(status: Status) -> Error {
    match detail_of(&status) {
        Some(Ok(error)) => error,
        Some(Err(wire)) => Error::store(crate::BACKEND, RemoteError::Reply(wire)),
        None => Error::store(crate::BACKEND, RemoteError::from(status)),
    }
}

fn detail_of(status: &Status) -> Option<Result<Error, WireError>> {
    let bytes = status.metadata().get_bin(ERROR_DETAIL_KEY)?.to_bytes().ok()?;
    let kind = proto::ErrorDetail::decode(bytes).ok()?.kind?;
    Some(error_of(kind))
}

fn error_of(kind: Kind) -> Result<Error, WireError> {
    Ok(match kind {
        Kind::Conflict(conflict) => Error::Conflict {
            stream: stream_from_wire(conflict.stream)?,
            expected: expected_from_wire(conflict.expected)?,
            actual: conflict.actual,
        },
        Kind::DuplicateEventId(duplicate) => Error::DuplicateEventId {
            stream: stream_from_wire(duplicate.stream)?,
            existing_stream: stream_from_wire(duplicate.existing_stream)?,
            event_id: Uuid::parse_str(&duplicate.event_id).map_err(|error| WireError {
                field: "event_id".into(),
                reason: error.to_string(),
            })?,
        },
        Kind::InvalidTenant(invalid) => Error::InvalidTenant {
            tenant: invalid.tenant,
            reason: invalid.reason,
        },
        Kind::InvalidRequest(invalid) => Error::InvalidRequest {
            stream: stream_or_all(invalid.stream),
            reason: invalid.reason,
        },
        Kind::EmptyBatchList(_) => Error::EmptyBatchList,
        Kind::DuplicateStream(duplicate) => Error::DuplicateStream {
            stream: stream_from_wire(duplicate.stream)?,
        },
        Kind::Corrupt(corrupt) => Error::Corrupt {
            stream: stream_or_all(corrupt.stream),
            version: corrupt.version,
            reason: corrupt.reason,
        },
    })
}

/// Errors about the log rather than one stream name a placeholder stream
/// (the stores use `$all`), whose id may be empty.
fn stream_or_all(stream: Option<proto::StreamId>) -> StreamId {
    match stream {
        Some(stream) => StreamId::new(stream.aggregate_type, stream.aggregate_id),
        None => StreamId::new("$all", ""),
    }
}

#[cfg(test)]
mod tests {
    use factum_core::ExpectedVersion;

    use super::*;

    #[test]
    fn store_errors_cross_the_wire_exactly() {
        let stream = StreamId::new("Tally", "1");
        let errors = [
            Error::Conflict {
                stream: stream.clone(),
                expected: ExpectedVersion::NoStream,
                actual: 4,
            },
            Error::DuplicateEventId {
                stream: stream.clone(),
                existing_stream: StreamId::new("Tally", "2"),
                event_id: Uuid::now_v7(),
            },
            Error::EmptyBatchList,
            Error::DuplicateStream {
                stream: stream.clone(),
            },
            Error::InvalidRequest {
                stream: stream.clone(),
                reason: "mixed".into(),
            },
        ];
        for error in errors {
            let text = error.to_string();
            let back = error_from_status(error_to_status(&error));
            assert_eq!(back.to_string(), text);
        }
    }

    #[test]
    fn a_plain_status_is_a_store_error() {
        let error = error_from_status(Status::unavailable("down"));
        assert!(
            matches!(
                error,
                Error::Store {
                    backend: "remote",
                    ..
                }
            ),
            "{error}"
        );
    }
}
