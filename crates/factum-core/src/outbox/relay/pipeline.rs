//! The relay's pipeline: several batches are with the publisher at once,
//! and while the bus answers for them, in one step, the oldest is marked,
//! the batch claimed in the step before is handed over, and the next one
//! is claimed, all at the same time, so neither the bus's round trip nor
//! the database's work nor the encoding of the messages is paid once per
//! batch.
//!
//! Batch k+1 is claimed behind the batches in flight
//! ([`Outbox::claim_after`]): entries that follow their entries of an
//! aggregate may be in it. The order of an aggregate survives because
//! - batches are handed to the publisher one after another
//!   ([`Publisher::enqueue`]), which keeps the order across calls;
//! - batches are finished (marked) in the order they were handed over;
//! - an entry to be retried makes every later entry of its aggregate in
//!   flight a retry too, even if it went out, so the last copy a consumer
//!   sees of each is in order; the relay then hands nothing new over,
//!   finishes what is in flight, pauses, and claims afresh from the oldest
//!   waiting entry;
//! - when marking a batch fails, the batches after it are given back
//!   unmarked: all are published again, in order.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};

use tracing::Instrument;

use super::{OutboxRelay, Round, outcomes};
use crate::outbox::{Outbox, OutboxClaim, OutboxEntry, Outcome};
use crate::{Error, PendingAnswers, PublishError, Publisher, RecordedEvent, StreamId, telemetry};

/// A claim handed to the publisher, its answers not yet in.
pub(super) struct InFlight<C> {
    claim: C,
    answers: PendingAnswers,
    /// The answers, once seen ready before they were awaited.
    answered: Option<Vec<Result<(), PublishError>>>,
    span: tracing::Span,
}

impl<C> InFlight<C> {
    /// True when the answers are in, without waiting for them.
    fn is_answered(&mut self) -> bool {
        if self.answered.is_none() {
            let mut context = Context::from_waker(Waker::noop());
            if let Poll::Ready(answers) = self.answers.as_mut().poll(&mut context) {
                self.answered = Some(answers);
            }
        }
        self.answered.is_some()
    }

    async fn answers(self) -> (C, Vec<Result<(), PublishError>>, tracing::Span) {
        let answers = match self.answered {
            Some(answers) => answers,
            None => self.answers.await,
        };
        (self.claim, answers, self.span)
    }
}

/// The batches with the publisher, oldest first; the batch claimed behind
/// them, to be handed over next; and the aggregates that have an entry to
/// be retried among those already answered.
pub(super) struct Pipeline<C> {
    in_flight: VecDeque<InFlight<C>>,
    claimed: Option<C>,
    retried: HashSet<StreamId>,
}

impl<C> Default for Pipeline<C> {
    fn default() -> Self {
        Self {
            in_flight: VecDeque::new(),
            claimed: None,
            retried: HashSet::new(),
        }
    }
}

/// What became of the claimed batch a step was to hand over.
enum HandOver<C> {
    /// There was none.
    Nothing,
    /// It is with the publisher.
    Out(InFlight<C>),
    /// Kept back, because an entry ahead of it is to be retried: it is
    /// given back unpublished.
    Kept(C),
}

/// How a step went.
pub(super) enum Step {
    /// A batch was claimed or handed to the publisher, its answers not yet
    /// in; go on at once.
    Working,
    /// A batch was finished with no entry to retry (and the next one
    /// may have been handed over); go on at once.
    Busy,
    /// Nothing waited; the pipeline is empty.
    Idle,
    /// Some entries are to be retried; the pipeline is empty.
    Retrying,
}

impl<O: Outbox, P: Publisher> OutboxRelay<O, P> {
    /// Claims the next batch while the one claimed before is handed to the
    /// publisher. When the pipeline is full, or its oldest batch is
    /// answered, that batch is finished at the same time, and the claimed
    /// batch goes out once the oldest's answers are in. On PostgreSQL the
    /// claim and the finish run on two connections at once, and the
    /// messages are encoded while the database works.
    /// [`Step::Idle`] and [`Step::Retrying`] leave the pipeline empty:
    /// nothing is held while the relay pauses.
    pub(super) async fn step(&self, pipeline: &mut Pipeline<O::Claim>) -> Result<Step, Error> {
        let due = pipeline.in_flight.len() >= self.options.in_flight
            || pipeline.in_flight.front_mut().is_some_and(InFlight::is_answered);
        let oldest = if due { pipeline.in_flight.pop_front() } else { None };
        let settling = oldest.is_some();
        let next = pipeline.claimed.take();
        // The oldest batch is still ahead of the new claim until it is
        // finished, and the claimed one goes out before it.
        let ahead: Vec<u64> = oldest
            .iter()
            .map(|batch| &batch.claim)
            .chain(pipeline.in_flight.iter().map(|batch| &batch.claim))
            .chain(&next)
            .flat_map(OutboxClaim::entries)
            .map(|entry| entry.id)
            .collect();
        // On a task of its own, so the claim's rows are decoded on another
        // worker thread while this one encodes the batch it hands over.
        let claiming = tokio::spawn({
            let outbox = Arc::clone(&self.outbox);
            let limit = self.options.batch_size;
            async move { outbox.claim_after(limit, &ahead).await }
        });
        let retried = &mut pipeline.retried;
        let (claimed, (settled, handed)) = tokio::join!(
            async {
                claiming
                    .await
                    .unwrap_or_else(|failed| Err(claim_task_failed(&failed)))
            },
            self.settle_and_hand_over(oldest, next, retried)
        );
        match handed {
            HandOver::Nothing => {}
            HandOver::Out(batch) => pipeline.in_flight.push_back(batch),
            HandOver::Kept(claim) => give_back(claim).await,
        }
        let claim = match (claimed, settled) {
            (claimed, Some(Err(error))) => {
                if let Ok(claim) = claimed {
                    give_back(claim).await;
                }
                give_back_all(pipeline).await;
                return Err(error);
            }
            // The new claim may hold later entries of the retried
            // aggregates: it waits for the next round, after the pause.
            (claimed, Some(Ok(true))) => {
                if let Ok(claim) = claimed {
                    give_back(claim).await;
                }
                self.drain(pipeline).await?;
                return Ok(Step::Retrying);
            }
            (Err(error), _) => {
                self.drain(pipeline).await?;
                return Err(error);
            }
            (Ok(claim), _) => claim,
        };
        if !claim.entries().is_empty() {
            pipeline.claimed = Some(claim);
        } else {
            give_back(claim).await;
            if pipeline.in_flight.is_empty() {
                return Ok(Step::Idle);
            }
            if !settling {
                return self.settle_oldest(pipeline).await;
            }
        }
        Ok(if settling { Step::Busy } else { Step::Working })
    }

    /// Finishes `oldest`, if any, and hands `next` over: once the oldest's
    /// answers are in, while it is marked, so no more batches than
    /// `in_flight` are ever unanswered, and not at all when an entry of the
    /// oldest is to be retried. The outcome of the finish (true: an entry
    /// is to be retried), and what became of `next`.
    async fn settle_and_hand_over(
        &self,
        oldest: Option<InFlight<O::Claim>>,
        next: Option<O::Claim>,
        retried: &mut HashSet<StreamId>,
    ) -> (Option<Result<bool, Error>>, HandOver<O::Claim>) {
        let hand_over = |claim: O::Claim| async move {
            let (answers, span) = self.hand_over(claim.entries()).await;
            HandOver::Out(InFlight {
                claim,
                answers,
                answered: None,
                span,
            })
        };
        let Some(oldest) = oldest else {
            let handed = match next {
                Some(claim) => hand_over(claim).await,
                None => HandOver::Nothing,
            };
            return (None, handed);
        };
        let (claim, outcomes, retrying) = answered(oldest, retried).await;
        match next {
            Some(next) if retrying => {
                let finished = self.finish(claim, outcomes).await.map(|_| true);
                (Some(finished), HandOver::Kept(next))
            }
            Some(next) => {
                let (finished, handed) = tokio::join!(self.finish(claim, outcomes), hand_over(next));
                (Some(finished.map(|_| retrying)), handed)
            }
            None => (
                Some(self.finish(claim, outcomes).await.map(|_| retrying)),
                HandOver::Nothing,
            ),
        }
    }

    /// Waits for the oldest batch's answers and finishes it. When one of
    /// its entries is to be retried, finishes the rest of the pipeline too
    /// and reports [`Step::Retrying`].
    async fn settle_oldest(&self, pipeline: &mut Pipeline<O::Claim>) -> Result<Step, Error> {
        let Some(oldest) = pipeline.in_flight.pop_front() else {
            return Ok(Step::Idle);
        };
        match self.settle(oldest, &mut pipeline.retried).await {
            Ok(false) => Ok(Step::Busy),
            Ok(true) => {
                self.drain(pipeline).await?;
                Ok(Step::Retrying)
            }
            Err(error) => {
                give_back_all(pipeline).await;
                Err(error)
            }
        }
    }

    /// Finishes `batch` with its answers; true when an entry of it is to
    /// be retried (its aggregate then joins `retried`). When finishing
    /// fails, the caller gives the later batches back.
    async fn settle(
        &self,
        batch: InFlight<O::Claim>,
        retried: &mut HashSet<StreamId>,
    ) -> Result<bool, Error> {
        let (claim, outcomes, retrying) = answered(batch, retried).await;
        self.finish(claim, outcomes).await?;
        Ok(retrying)
    }

    /// Empties the pipeline: every batch in flight is finished with its
    /// answers, in order; the batch claimed behind them is given back.
    pub(super) async fn drain(&self, pipeline: &mut Pipeline<O::Claim>) -> Result<(), Error> {
        if let Some(claim) = pipeline.claimed.take() {
            give_back(claim).await;
        }
        while let Some(oldest) = pipeline.in_flight.pop_front() {
            if let Err(error) = self.settle(oldest, &mut pipeline.retried).await {
                give_back_all(pipeline).await;
                return Err(error);
            }
        }
        pipeline.retried.clear();
        Ok(())
    }

    /// Hands the events of `entries` to the publisher, inside the batch's
    /// span.
    async fn hand_over(&self, entries: &[OutboxEntry]) -> (PendingAnswers, tracing::Span) {
        let events: Vec<RecordedEvent> = entries.iter().map(|entry| entry.event.clone()).collect();
        let span = telemetry::relay_span(entries, events.len());
        let answers = self.publisher.enqueue(&events).instrument(span.clone()).await;
        (answers, span)
    }

    /// Publishes `entries` and waits for the answers; the outcome of each.
    pub(super) async fn publish_entries(&self, entries: &[OutboxEntry]) -> Vec<Outcome> {
        let (answers, span) = self.hand_over(entries).await;
        let answers = answers.instrument(span.clone()).await;
        record_answers(&span, &answers);
        outcomes(entries, answers, &mut HashSet::new())
    }

    /// Records the outcomes of a published batch, then counts them.
    pub(super) async fn finish(&self, claim: O::Claim, outcomes: Vec<Outcome>) -> Result<Round, Error> {
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

/// The error of a claim whose task panicked or was cancelled: nothing was
/// claimed that outlives it (a claim dropped unfinished is released).
fn claim_task_failed(failed: &tokio::task::JoinError) -> Error {
    Error::store(
        "outbox relay",
        format!("claiming the next batch failed: {failed}"),
    )
}

/// Waits for `batch`'s answers: its claim, the outcome of each entry, and
/// whether one is to be retried.
async fn answered<C: OutboxClaim>(
    batch: InFlight<C>,
    retried: &mut HashSet<StreamId>,
) -> (C, Vec<Outcome>, bool) {
    let (claim, answers, span) = batch.answers().await;
    record_answers(&span, &answers);
    let outcomes = outcomes(claim.entries(), answers, retried);
    let retrying = outcomes
        .iter()
        .any(|outcome| matches!(outcome, Outcome::Retry(_)));
    (claim, outcomes, retrying)
}

/// Gives back every batch in flight unmarked, after one could not be
/// marked: they went out after it, so all are published again, in order.
/// The batch claimed behind them goes back too.
async fn give_back_all<C: OutboxClaim>(pipeline: &mut Pipeline<C>) {
    for later in pipeline.in_flight.drain(..) {
        give_back(later.claim).await;
    }
    if let Some(claim) = pipeline.claimed.take() {
        give_back(claim).await;
    }
    pipeline.retried.clear();
}

/// Releases a claim without recording anything (its entries wait again),
/// keeping its connection when it has one; a failure only means the claim
/// is released when dropped or when its lease lapses.
async fn give_back<C: OutboxClaim>(claim: C) {
    if let Err(error) = claim.finish(Vec::new()).await {
        tracing::warn!(%error, "giving back an outbox claim failed; it is released when it lapses");
    }
}
