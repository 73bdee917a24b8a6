//! The notifier an `Application` holds, and the recorded events of a save
//! it is told about.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Notifier, NotifyError};
use crate::{AppendBatch, AppendResult, Error, RecordedEvent, Tenant};

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

/// The notifier of an application, shared by its clones, with the tenant
/// the application's store writes to.
#[derive(Clone)]
pub(crate) struct SharedNotifier {
    notifier: Arc<dyn BoxedNotifier>,
    /// Where the saved events live: what a read of them would say in
    /// `metadata.tenant`.
    tenant: Tenant,
}

impl SharedNotifier {
    pub(crate) fn new(notifier: impl Notifier, tenant: Tenant) -> Self {
        Self {
            notifier: Arc::new(notifier),
            tenant,
        }
    }

    /// Tells the notifier about the events `batch` stored, as `result`
    /// placed them.
    pub(crate) async fn saved(&self, batch: AppendBatch, result: &AppendResult) -> Result<(), Error> {
        let stream = batch.stream.clone();
        let events = recorded(batch, result, &self.tenant);
        if events.is_empty() {
            return Ok(());
        }
        self.notifier
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

/// The events of `batch` as stored in `tenant`: the versions end at the
/// result's stream version, the positions are the result's (the original
/// ones for a retry), and the metadata names the tenant, as a read would.
fn recorded(batch: AppendBatch, result: &AppendResult, tenant: &Tenant) -> Vec<RecordedEvent> {
    let first_version = result.stream_version + 1 - batch.events.len() as u64;
    batch
        .events
        .into_iter()
        .zip(&result.positions)
        .enumerate()
        .map(|(offset, (event, &position))| {
            let mut event = event.recorded(batch.stream.clone(), first_version + offset as u64, position);
            event.metadata.tenant = Some(tenant.clone());
            event
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
        let acme = Tenant::new("acme").unwrap();
        let events = recorded(batch, &result, &acme);
        let placed: Vec<(u64, u64)> = events
            .iter()
            .map(|event| (event.version, event.position))
            .collect();
        assert_eq!(placed, [(4, 40), (5, 42)]);
        assert!(events.iter().all(|event| event.stream == stream));
        assert!(
            events
                .iter()
                .all(|event| event.metadata.tenant.as_ref() == Some(&acme))
        );
    }
}
