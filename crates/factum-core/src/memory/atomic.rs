//! Atomic appends across streams in memory: every check runs under the
//! log's write lock before anything is stored, so a call is stored whole,
//! at contiguous positions, or not at all. Every stream of a call is the
//! view's tenant's, as for a single append.

use super::{InMemoryEventStore, Log};
use crate::backend::{check_batches, first_conflict, original_append_many, repeated_event_id};
use crate::{AppendBatch, AppendResult, Error, Tenant};

impl InMemoryEventStore {
    /// [`EventStore::append_many`](crate::EventStore::append_many).
    pub(super) fn append_batches(&self, batches: Vec<AppendBatch>) -> Result<Vec<AppendResult>, Error> {
        let tenant = self.home();
        check_batches(tenant, &batches)?;
        let mut guard = self.write_log();
        let log = &mut *guard;
        // Each stream's number, if known, and version: one lookup each.
        let known = log.tenant(tenant).map(|entry| &entry.streams);
        let mut streams: Vec<(Option<u32>, u64)> = batches
            .iter()
            .map(|batch| {
                let number = known.and_then(|streams| streams.get(&batch.stream)).copied();
                let version = number.map_or(0, |number| log.streams[number as usize].indexes.len() as u64);
                (number, version)
            })
            .collect();
        if let Some(conflict) = first_conflict(&batches, streams.iter().map(|&(_, version)| version)) {
            // A retry meets the version check first: it is still a retry.
            return log.retried_many(tenant, &batches)?.ok_or(conflict);
        }
        if batches.iter().any(|batch| !batch.events.is_empty()) {
            let tenant_number = log.tenant_number(tenant, &batches[0].stream)?;
            for (batch, (number, _)) in batches.iter().zip(&mut streams) {
                if number.is_none() && !batch.events.is_empty() {
                    *number = Some(log.stream_number(tenant_number, &batch.stream)?);
                }
            }
        }
        if let Some(originals) = log.claim_call_ids(tenant, &batches)? {
            return Ok(originals);
        }
        let mut results = Vec::with_capacity(batches.len());
        for (batch, (number, actual)) in batches.into_iter().zip(streams) {
            let positions: Vec<u64> = match number {
                Some(number) => (actual + 1..)
                    .zip(batch.events)
                    .map(|(version, event)| log.store(number, version, event))
                    .collect(),
                None => Vec::new(),
            };
            results.push(AppendResult {
                stream_version: actual + positions.len() as u64,
                positions,
            });
        }
        let head = log.len as u64;
        drop(guard);
        self.shared.head.send_replace(head);
        Ok(results)
    }
}

impl Log {
    /// The original results when `batches` is a retry of an earlier call.
    fn retried_many(
        &self,
        tenant: &Tenant,
        batches: &[AppendBatch],
    ) -> Result<Option<Vec<AppendResult>>, Error> {
        original_append_many(
            tenant,
            batches,
            |event| {
                Ok(self
                    .event_ids
                    .get(&event.event_id.as_u128())
                    .map(|&index| self.recorded(index)))
            },
            |stream| Ok(self.stream_version(tenant, stream)),
        )
    }

    /// Claims the ids of every event of the call for the log indexes from
    /// the end of the log on, in call order. When one is stored already,
    /// releases those claimed and answers as [`original_append_many`] does
    /// (the call was checked to carry no id twice).
    fn claim_call_ids(
        &mut self,
        tenant: &Tenant,
        batches: &[AppendBatch],
    ) -> Result<Option<Vec<AppendResult>>, Error> {
        let first_index = self.len;
        let mut claimed = 0;
        for batch in batches {
            for event in &batch.events {
                let id = event.event_id.as_u128();
                let Some(previous) = self.event_ids.insert(id, first_index + claimed) else {
                    claimed += 1;
                    continue;
                };
                self.event_ids.insert(id, previous);
                for earlier in batches.iter().flat_map(|batch| &batch.events).take(claimed) {
                    self.event_ids.remove(&earlier.event_id.as_u128());
                }
                // This id is stored, so the rule answers with a retry or an
                // error; `None` would contradict the lookup just made.
                let original = self.retried_many(tenant, batches)?;
                return original
                    .map(Some)
                    .ok_or_else(|| repeated_event_id(&batch.stream, event.event_id));
            }
        }
        Ok(None)
    }
}
