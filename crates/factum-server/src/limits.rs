//! What one client may take of the server: the size of a request, the
//! number of open subscriptions, and the size of a page of events.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// The server's limits.
///
/// ```
/// # use factum_server::Limits;
/// let limits = Limits::new().max_message_size(1 << 20).max_subscriptions(100);
/// # let _ = limits;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub(crate) max_message_size: usize,
    pub(crate) max_subscriptions: usize,
    pub(crate) page_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

impl Limits {
    /// Requests up to 4 MiB, 1,024 open subscriptions, pages of up to 2,048 events.
    pub fn new() -> Self {
        Self {
            max_message_size: 4 * 1024 * 1024,
            max_subscriptions: 1024,
            page_events: 2048,
        }
    }

    /// The largest request accepted, in bytes; a larger one is refused
    /// with RESOURCE_EXHAUSTED before it is read whole.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many subscriptions may be open at once, over all clients; one
    /// more is refused with RESOURCE_EXHAUSTED.
    pub fn max_subscriptions(mut self, count: usize) -> Self {
        self.max_subscriptions = count;
        self
    }

    /// The most events one page of a read or subscription holds.
    pub fn page_events(mut self, count: usize) -> Self {
        self.page_events = count.max(1);
        self
    }
}

/// The open subscriptions, counted against [`Limits::max_subscriptions`].
#[derive(Clone)]
pub(crate) struct SubscriptionSlots(Arc<Semaphore>);

impl SubscriptionSlots {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self(Arc::new(Semaphore::new(limits.max_subscriptions)))
    }

    /// A slot held for as long as the subscription's stream lives.
    pub(crate) fn take(&self) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.0).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("too many open subscriptions on this server; try again later")
        })
    }
}

/// Gives the codec's own refusals the status codes the contract names.
///
/// tonic answers a request above the size limit with OUT_OF_RANGE and one
/// that is not valid protobuf (a string field that is not UTF-8) with
/// INTERNAL; the contract, like gRPC's status code guide, says
/// RESOURCE_EXHAUSTED and INVALID_ARGUMENT. Both refusals happen before a
/// handler runs, so they are recognised here, on the way out, by their
/// message.
pub(crate) fn codec_statuses<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let (Some(code), Some(message)) = (headers.get("grpc-status"), headers.get("grpc-message")) else {
        return response;
    };
    let message = percent_decoded(message.as_bytes());
    let contains = |needle: &[u8]| message.windows(needle.len()).any(|window| window == needle);
    let code = match code.as_bytes() {
        b"11" if contains(b"message length too large") => "8",
        b"13" if contains(b"failed to decode Protobuf message") => "3",
        _ => return response,
    };
    headers.insert("grpc-status", http::HeaderValue::from_static(code));
    response
}

/// `grpc-message` is percent-encoded on the wire.
fn percent_decoded(text: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        let hex = text
            .get(index + 1..index + 3)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 16).ok());
        match (text[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &'static str, message: &'static str) -> http::Response<()> {
        let mut response = http::Response::new(());
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static(code));
        response
            .headers_mut()
            .insert("grpc-message", http::HeaderValue::from_static(message));
        response
    }

    #[test]
    fn codec_refusals_get_the_contracts_codes() {
        let cases = [
            (
                "11",
                "Error,%20decoded%20message%20length%20too%20large:%20found",
                "8",
            ),
            (
                "13",
                "failed%20to%20decode%20Protobuf%20message:%20invalid%20string",
                "3",
            ),
            ("13", "something%20else", "13"),
            ("11", "out%20of%20range", "11"),
        ];
        for (code, message, expected) in cases {
            let response = codec_statuses(refused(code, message));
            assert_eq!(response.headers()["grpc-status"], expected, "{message}");
        }
    }
}
