//! The rules of an atomic append across streams that every store shares:
//! what it refuses before touching the store, and what a retried one
//! returns.

use std::collections::HashSet;

use uuid::Uuid;

use super::append::{original_append, repeated_event_id};
use super::tenant::check_events;
use crate::{AppendBatch, AppendResult, Error, NewEvent, RecordedEvent, StreamId, Tenant};

/// Up to this many items, repeats are found by comparing each with those
/// before it: cheaper than hashing for the few streams of a typical call.
const SCAN: usize = 16;

/// Refuses a call no store may write to `tenant`'s streams, before
/// anything is written: no batches ([`Error::EmptyBatchList`]), a stream in
/// two batches ([`Error::DuplicateStream`]), an event id twice in the call
/// ([`Error::InvalidRequest`] naming the stream of its second batch), an
/// event whose metadata names another tenant ([`Error::InvalidTenant`], as
/// [`check_events`] refuses it for a single append).
pub fn check_batches(tenant: &Tenant, batches: &[AppendBatch]) -> Result<(), Error> {
    if batches.is_empty() {
        return Err(Error::EmptyBatchList);
    }
    if let Some(stream) = repeated_stream(batches) {
        return Err(Error::DuplicateStream {
            stream: stream.clone(),
        });
    }
    if let Some((stream, event_id)) = repeated_id(batches) {
        return Err(repeated_event_id(stream, event_id));
    }
    batches
        .iter()
        .try_for_each(|batch| check_events(tenant, &batch.stream, &batch.events))
}

/// The first stream that has a second batch, if any.
fn repeated_stream(batches: &[AppendBatch]) -> Option<&StreamId> {
    if batches.len() <= SCAN {
        return batches
            .iter()
            .enumerate()
            .find(|(index, batch)| batches[..*index].iter().any(|other| other.stream == batch.stream))
            .map(|(_, batch)| &batch.stream);
    }
    let mut seen = HashSet::with_capacity(batches.len());
    batches
        .iter()
        .find(|batch| !seen.insert(&batch.stream))
        .map(|batch| &batch.stream)
}

/// The first event id the call carries twice, with the stream of the
/// batch where it appears again.
fn repeated_id(batches: &[AppendBatch]) -> Option<(&StreamId, Uuid)> {
    let events = || {
        batches.iter().flat_map(|batch| {
            batch
                .events
                .iter()
                .map(move |event| (&batch.stream, event.event_id))
        })
    };
    let total: usize = batches.iter().map(|batch| batch.events.len()).sum();
    if total <= SCAN {
        return events()
            .enumerate()
            .find(|(index, (_, id))| events().take(*index).any(|(_, other)| other == *id))
            .map(|(_, found)| found);
    }
    let mut seen = HashSet::with_capacity(total);
    events().find(|(_, id)| !seen.insert(*id))
}

/// Decides whether an atomic append to `tenant`'s streams is the retry of
/// an earlier call: the rule every store shares, built on
/// [`original_append`] for each batch (so an id stored in another tenant is
/// the hidden [`Error::DuplicateEventId`], never a retry).
///
/// `stored` returns the event already stored under a new event's id, if
/// any; `stream_version` the current version of a stream (asked only for
/// the batches without events of a retry, which report it). The answer is
/// `Ok(None)` when no id of the call is stored, the original results when
/// every batch with events is a retry, and otherwise the error of the
/// first batch that [`original_append`] refuses, or [`Error::InvalidRequest`]
/// for a call that mixes stored batches with new ones.
pub fn original_append_many(
    tenant: &Tenant,
    batches: &[AppendBatch],
    mut stored: impl FnMut(&NewEvent) -> Result<Option<RecordedEvent>, Error>,
    mut stream_version: impl FnMut(&StreamId) -> Result<u64, Error>,
) -> Result<Option<Vec<AppendResult>>, Error> {
    let mut originals = Vec::with_capacity(batches.len());
    let mut fresh = None;
    for batch in batches {
        if batch.events.is_empty() {
            originals.push(None);
            continue;
        }
        let original = original_append(tenant, &batch.stream, &batch.events, &mut stored)?;
        if original.is_none() {
            fresh.get_or_insert(&batch.stream);
        }
        originals.push(original);
    }
    let any_stored = originals.iter().any(Option::is_some);
    match (any_stored, fresh) {
        (false, _) => Ok(None),
        (true, Some(stream)) => Err(Error::InvalidRequest {
            stream: stream.clone(),
            reason: "the atomic append mixes batches already stored with a new batch for this stream; \
                     retry the original call unchanged"
                .to_owned(),
        }),
        (true, None) => batches
            .iter()
            .zip(originals)
            .map(|(batch, original)| match original {
                Some(original) => Ok(original),
                None => Ok(AppendResult {
                    stream_version: stream_version(&batch.stream)?,
                    positions: Vec::new(),
                }),
            })
            .collect::<Result<_, Error>>()
            .map(Some),
    }
}

/// The conflict of the first batch whose stream is not at the version the
/// batch expects; `actual` holds each batch's stream version, in order.
pub fn first_conflict(batches: &[AppendBatch], actual: impl IntoIterator<Item = u64>) -> Option<Error> {
    batches
        .iter()
        .zip(actual)
        .find(|(batch, actual)| !batch.expected.admits(*actual))
        .map(|(batch, actual)| Error::Conflict {
            stream: batch.stream.clone(),
            expected: batch.expected,
            actual,
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{ExpectedVersion, Payload};

    fn event() -> NewEvent {
        NewEvent::new("added", Payload::parse("{}").unwrap())
    }

    fn batch(id: &str, events: Vec<NewEvent>) -> AppendBatch {
        AppendBatch::new(StreamId::new("Tally", id), ExpectedVersion::Any, events)
    }

    #[test]
    fn bad_calls_are_refused_with_typed_errors() {
        assert!(matches!(
            check_batches(&Tenant::DEFAULT, &[]),
            Err(Error::EmptyBatchList)
        ));
        for count in [2, SCAN + 3] {
            let mut batches: Vec<_> = (0..count).map(|i| batch(&i.to_string(), vec![event()])).collect();
            assert!(check_batches(&Tenant::DEFAULT, &batches).is_ok());
            batches.push(batch("1", vec![]));
            let error = check_batches(&Tenant::DEFAULT, &batches).unwrap_err();
            assert!(matches!(&error, Error::DuplicateStream { stream } if stream.aggregate_id() == "1"));
            assert!(error.to_string().contains("Tally-1"), "{error}");
        }
        for count in [1, SCAN + 3] {
            let repeated = event();
            let mut events: Vec<_> = (0..count).map(|_| event()).collect();
            events.push(repeated.clone());
            let batches = [batch("a", events), batch("b", vec![event(), repeated.clone()])];
            let error = check_batches(&Tenant::DEFAULT, &batches).unwrap_err();
            assert!(
                matches!(&error, Error::InvalidRequest { stream, reason }
                    if stream.aggregate_id() == "b" && reason.contains(&repeated.event_id.to_string())),
                "{error}"
            );
        }
    }

    #[test]
    fn a_retry_is_recognised_for_the_whole_call_only() {
        let first = batch("a", vec![event(), event()]);
        let second = batch("b", vec![event()]);
        let guard = batch("c", vec![]);
        let mut stored: HashMap<Uuid, RecordedEvent> = HashMap::new();
        for (position, (stream, event)) in [
            (&first, &first.events[0]),
            (&first, &first.events[1]),
            (&second, &second.events[0]),
        ]
        .into_iter()
        .enumerate()
        {
            let version = if position == 2 { 1 } else { position as u64 + 1 };
            let mut recorded = event
                .clone()
                .recorded(stream.stream.clone(), version, position as u64 + 7);
            recorded.metadata.tenant = Some(Tenant::DEFAULT);
            stored.insert(event.event_id, recorded);
        }
        let lookup = |event: &NewEvent| Ok(stored.get(&event.event_id).cloned());
        let call = [first.clone(), second.clone(), guard.clone()];
        let originals = original_append_many(&Tenant::DEFAULT, &call, lookup, |_| Ok(4))
            .unwrap()
            .unwrap();
        assert_eq!(originals[0].positions, [7, 8]);
        assert_eq!(originals[1].positions, [9]);
        assert_eq!(
            originals[2],
            AppendResult {
                stream_version: 4,
                positions: vec![]
            }
        );

        let fresh = [batch("d", vec![event()]), guard];
        assert_eq!(
            original_append_many(&Tenant::DEFAULT, &fresh, lookup, |_| Ok(0)).unwrap(),
            None
        );
        let mixed = [first, batch("e", vec![event()])];
        let error = original_append_many(&Tenant::DEFAULT, &mixed, lookup, |_| Ok(0)).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidRequest { stream, reason } if stream.aggregate_id() == "e" && reason.contains("mixes")),
            "{error}"
        );
    }

    #[test]
    fn tenants_are_not_crossed() {
        let acme = Tenant::new("acme").unwrap();
        let globex = Tenant::new("globex").unwrap();
        let foreign = NewEvent::new("added", Payload::parse("{}").unwrap())
            .with_metadata(crate::Metadata::default().with_tenant(globex.clone()));
        let call = [batch("a", vec![event()]), batch("b", vec![foreign])];
        let error = check_batches(&acme, &call).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidTenant { tenant, .. } if tenant == "globex"),
            "{error}"
        );
        assert!(check_batches(&globex, &call).is_ok());

        let theirs = batch("a", vec![event()]);
        let mut recorded = theirs.events[0].clone().recorded(theirs.stream.clone(), 1, 1);
        recorded.metadata.tenant = Some(globex);
        let lookup = |_: &NewEvent| Ok(Some(recorded.clone()));
        let error =
            original_append_many(&acme, std::slice::from_ref(&theirs), lookup, |_| Ok(1)).unwrap_err();
        assert!(
            matches!(&error, Error::DuplicateEventId { existing_stream, .. } if *existing_stream == crate::backend::hidden_stream()),
            "{error}"
        );
    }

    #[test]
    fn the_first_conflicting_batch_is_named() {
        let mut call = [batch("a", vec![]), batch("b", vec![]), batch("c", vec![])];
        call[1].expected = ExpectedVersion::Exact(2);
        call[2].expected = ExpectedVersion::NoStream;
        assert!(first_conflict(&call, [5, 2, 0]).is_none());
        let conflict = first_conflict(&call, [5, 3, 1]).unwrap();
        assert!(
            matches!(&conflict, Error::Conflict { stream, actual: 3, .. } if stream.aggregate_id() == "b"),
            "{conflict}"
        );
    }
}
