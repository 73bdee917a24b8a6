//! Which librdkafka errors a retry can cure.

use factum_core::PublishError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// `error` as a [`PublishError`]: rejected when the broker or the producer
/// refused this message for good (too large, invalid topic, not
/// authorised, against a policy), retriable otherwise (transport, timeouts,
/// a full queue, leader changes).
pub(crate) fn classify(error: &KafkaError) -> PublishError {
    let reason = error.to_string();
    match error.rdkafka_error_code() {
        Some(code) if is_refusal(code) => PublishError::rejected(reason),
        _ => PublishError::retriable(reason),
    }
}

/// Errors that sending the same message again would only repeat.
fn is_refusal(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        MessageSizeTooLarge
            | InvalidMessageSize
            | MessageBatchTooLarge
            | InvalidMessage
            | BadMessage
            | InvalidRecord
            | UnsupportedForMessageFormat
            | InvalidTopic
            | TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | PolicyViolation
            | InvalidRequiredAcks
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production(code: RDKafkaErrorCode) -> PublishError {
        classify(&KafkaError::MessageProduction(code))
    }

    #[test]
    fn refusals_are_rejected() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidTopic,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
        ] {
            let error = production(code);
            assert!(!error.retriable, "{code:?} should be rejected");
            assert!(error.reason.contains(&code.to_string()), "{}", error.reason);
        }
    }

    #[test]
    fn transport_timeouts_and_full_queues_are_retriable() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::RequestTimedOut,
        ] {
            assert!(production(code).retriable, "{code:?} should be retriable");
        }
        assert!(classify(&KafkaError::Canceled).retriable);
    }
}
