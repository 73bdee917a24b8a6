//! The notifier an `Application` holds, and the recorded events of a save
//! it is told about.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Notifier, NotifyError};
use crate::{AppendBatch, AppendResult, Error, RecordedEvent};

/// A notifier behind a pointer, so `Application` keeps its two type
/// parameters whatever notifier it is given.
trait BoxedNotifier: Send + Sync {
    fn notify_boxed<'a>(&'a self, events: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), NotifyError>>;
}

impl<N: Notifier> BoxedNotifier for N {
    fn notify_boxed<'a>(&'a self, events: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.notify(events))
    }
}

/// The notifier of an application, shared by its clones.
#[derive(Clone)]
pub(crate) struct SharedNotifier(Arc<dyn BoxedNotifier>);

impl SharedNotifier {
    pub(crate) fn new(notifier: impl Notifier) -> Self {
        Self(Arc::new(notifier))
    }

    /// Tells the notifier about the events `batch` stored, as `result`
    /// placed them.
    pub(crate) async fn saved(&self, batch: AppendBatch, result: &AppendResult) -> Result<(), Error> {
        let stream = batch.stream.clone();
        let events = recorded(batch, result);
        if events.is_empty() {
            return Ok(());
        }
        self.0
            .notify_boxed(&events)
            .await
            .map_err(|source| Error::Notify {
                stream,
                version: result.stream_version,
                source,
            })
    }
}

impl std::fmt::Debug for SharedNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

/// The events of `batch` as stored: the versions end at the result's
/// stream version, the positions are the result's (the original ones for a
/// retry).
fn recorded(batch: AppendBatch, result: &AppendResult) -> Vec<RecordedEvent> {
    let first_version = result.stream_version + 1 - batch.events.len() as u64;
    batch
        .events
        .into_iter()
        .zip(&result.positions)
        .enumerate()
        .map(|(offset, (event, &position))| {
            event.recorded(batch.stream.clone(), first_version + offset as u64, position)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExpectedVersion, NewEvent, Payload, StreamId};

    #[test]
    fn recorded_events_take_the_versions_and_positions_of_the_result() {
        let stream = StreamId::new("Tally", "1");
        let event = || NewEvent::new("added", Payload::parse("{}").unwrap());
        let batch = AppendBatch::new(stream.clone(), ExpectedVersion::Exact(3), vec![event(), event()]);
        let result = AppendResult {
            stream_version: 5,
            positions: vec![40, 42],
        };
        let events = recorded(batch, &result);
        let placed: Vec<(u64, u64)> = events
            .iter()
            .map(|event| (event.version, event.position))
            .collect();
        assert_eq!(placed, [(4, 40), (5, 42)]);
        assert!(events.iter().all(|event| event.stream == stream));
    }
}
