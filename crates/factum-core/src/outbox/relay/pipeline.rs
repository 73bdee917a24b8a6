//! The relay's pipeline: while one batch is published, the batch before it
//! is finished and the next one claimed, so the database's work and the
//! bus's overlap instead of adding up.
//!
//! Batch k+1 is claimed behind batch k ([`Outbox::claim_after`]): entries
//! that follow batch k's entries of an aggregate may be in it. The order
//! of an aggregate survives because
//! - batches are published one after another: batch k+1 goes to the
//!   publisher once every entry of batch k has its answer;
//! - an aggregate with an entry of batch k to be retried is not published
//!   in batch k+1 (its entries there are retried too), and the relay then
//!   pauses and claims afresh from the oldest waiting entry;
//! - batch k is finished (marked) before batch k+1, and when marking batch
//!   k fails, batch k+1 is given back unmarked: both are published again,
//!   in order.

use std::collections::HashSet;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Instrument;

use super::{OutboxRelay, Round, outcomes};
use crate::outbox::{Outbox, OutboxClaim, OutboxEntry, Outcome};
use crate::{Error, PublishError, Publisher, RecordedEvent, StreamId, telemetry};

/// Why an entry was not sent: an earlier entry of its aggregate, in the
/// batch before, is to be retried.
const HELD: &str = "an earlier event of the same aggregate is to be retried";

/// A claim published, not yet finished, with the outcome of each entry.
pub(super) struct Published<C> {
    pub(super) claim: C,
    pub(super) outcomes: Vec<Outcome>,
}

impl<C: OutboxClaim> Published<C> {
    fn ids(&self) -> Vec<u64> {
        self.claim.entries().iter().map(|entry| entry.id).collect()
    }

    /// Aggregates with an entry to be retried: their entries in the next
    /// batch must not go out before it.
    fn retried_streams(&self) -> HashSet<StreamId> {
        self.claim
            .entries()
            .iter()
            .zip(&self.outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Retry(_)))
            .map(|(entry, _)| entry.event.stream.clone())
            .collect()
    }

    fn retried(&self) -> bool {
        self.outcomes
            .iter()
            .any(|outcome| matches!(outcome, Outcome::Retry(_)))
    }
}

/// What the relay holds between steps: a batch published and not yet
/// finished, and the next batch, claimed and not yet published.
pub(super) struct Pipeline<C> {
    published: Option<Published<C>>,
    claimed: Option<C>,
}

impl<C> Default for Pipeline<C> {
    fn default() -> Self {
        Self {
            published: None,
            claimed: None,
        }
    }
}

/// How a step went.
pub(super) enum Step {
    /// A batch went out; go on at once.
    Busy,
    /// Nothing waited; the pipeline is empty.
    Idle,
    /// Some entries are to be retried; the pipeline is empty.
    Retrying,
}

/// What went wrong beside the publishing.
enum Beside {
    /// Marking the batch before failed.
    Finish(Error),
    /// Claiming the batch after failed.
    Claim(Error),
}

impl<O: Outbox, P: Publisher> OutboxRelay<O, P> {
    /// Publishes the claimed batch (claiming one first if none is), while
    /// the batch before it is finished and the next one claimed. Unless it
    /// returns [`Step::Busy`], the pipeline is left empty: nothing is held
    /// while the relay pauses.
    pub(super) async fn step(&self, pipeline: &mut Pipeline<O::Claim>) -> Result<Step, Error> {
        let current = match pipeline.claimed.take() {
            Some(claim) => claim,
            None => {
                let ahead = pipeline
                    .published
                    .as_ref()
                    .map(Published::ids)
                    .unwrap_or_default();
                match self.outbox.claim_after(self.options.batch_size, &ahead).await {
                    Ok(claim) => claim,
                    Err(error) => {
                        self.drain(pipeline).await?;
                        return Err(error);
                    }
                }
            }
        };
        if current.entries().is_empty() {
            current.finish(Vec::new()).await?;
            self.drain(pipeline).await?;
            return Ok(Step::Idle);
        }
        let before = pipeline.published.take();
        let held = before
            .as_ref()
            .map(Published::retried_streams)
            .unwrap_or_default();
        let ids: Vec<u64> = current.entries().iter().map(|entry| entry.id).collect();
        let (outcomes, beside) = tokio::join!(self.publish_entries(current.entries(), &held), async {
            if let Some(before) = before {
                self.finish(before).await.map_err(Beside::Finish)?;
            }
            self.outbox
                .claim_after(self.options.batch_size, &ids)
                .await
                .map_err(Beside::Claim)
        });
        let published = Published {
            claim: current,
            outcomes,
        };
        match beside {
            Err(Beside::Finish(error)) => {
                // This batch went out after the unmarked one: give it back
                // too, so both are published again, in order.
                give_back(published.claim).await;
                Err(error)
            }
            Err(Beside::Claim(error)) => {
                self.finish(published).await?;
                Err(error)
            }
            Ok(next) if published.retried() => {
                give_back(next).await;
                self.finish(published).await?;
                Ok(Step::Retrying)
            }
            Ok(next) => {
                pipeline.published = Some(published);
                pipeline.claimed = Some(next);
                Ok(Step::Busy)
            }
        }
    }

    /// Empties the pipeline: the published batch is finished, the claimed
    /// one given back.
    pub(super) async fn drain(&self, pipeline: &mut Pipeline<O::Claim>) -> Result<(), Error> {
        if let Some(claimed) = pipeline.claimed.take() {
            give_back(claimed).await;
        }
        match pipeline.published.take() {
            Some(published) => self.finish(published).await.map(drop),
            None => Ok(()),
        }
    }

    /// Publishes `entries` but those of the `held` aggregates, which are to
    /// be retried; the outcome of each entry.
    pub(super) async fn publish_entries(
        &self,
        entries: &[OutboxEntry],
        held: &HashSet<StreamId>,
    ) -> Vec<Outcome> {
        let sent: Vec<RecordedEvent> = entries
            .iter()
            .filter(|entry| !held.contains(&entry.event.stream))
            .map(|entry| entry.event.clone())
            .collect();
        let answers = if sent.is_empty() {
            Vec::new()
        } else {
            let span = telemetry::relay_span(entries, sent.len());
            let answers = self.publisher.publish(&sent).instrument(span.clone()).await;
            record_answers(&span, &answers);
            answers
        };
        let mut answers = answers.into_iter();
        let results = entries
            .iter()
            .map(|entry| {
                if held.contains(&entry.event.stream) {
                    Err(PublishError::retriable(HELD))
                } else {
                    answers.next().unwrap_or_else(|| {
                        Err(PublishError::retriable(
                            "the publisher gave no answer for this event",
                        ))
                    })
                }
            })
            .collect();
        outcomes(entries, results)
    }

    /// Records the outcomes of a published batch, then counts them.
    pub(super) async fn finish(&self, published: Published<O::Claim>) -> Result<Round, Error> {
        let Published { claim, outcomes } = published;
        let count = |wanted: fn(&Outcome) -> bool| outcomes.iter().filter(|outcome| wanted(outcome)).count();
        let round = Round {
            claimed: outcomes.len(),
            retried: count(|outcome| matches!(outcome, Outcome::Retry(_))),
        };
        let sent = count(|outcome| *outcome == Outcome::Sent);
        let parked = count(|outcome| matches!(outcome, Outcome::Park(_)));
        let reason = outcomes.iter().find_map(|outcome| match outcome {
            Outcome::Retry(reason) | Outcome::Park(reason) => Some(reason.clone()),
            Outcome::Sent => None,
        });
        claim.finish(outcomes).await?;
        let add = |counter: &AtomicU64, amount: usize| counter.fetch_add(amount as u64, Ordering::Relaxed);
        add(&self.metrics.published, sent);
        add(&self.metrics.retried, round.retried);
        add(&self.metrics.parked, parked);
        if let Some(reason) = reason {
            *self
                .metrics
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(reason);
        }
        Ok(round)
    }
}

/// Counts the publisher's answers for a batch on its span and in the
/// metrics.
fn record_answers(span: &tracing::Span, answers: &[Result<(), PublishError>]) {
    let (mut published, mut retriable, mut permanent) = (0, 0, 0);
    for answer in answers {
        match answer {
            Ok(()) => published += 1,
            Err(error) if error.retriable => retriable += 1,
            Err(_) => permanent += 1,
        }
    }
    telemetry::relay_answered(span, published, retriable, permanent);
}

/// Releases a claim without recording anything (its entries wait again),
/// keeping its connection when it has one; a failure only means the claim
/// is released when dropped or when its lease lapses.
async fn give_back<C: OutboxClaim>(claim: C) {
    if let Err(error) = claim.finish(Vec::new()).await {
        tracing::warn!(%error, "giving back an outbox claim failed; it is released when it lapses");
    }
}
