//! Which appends run alone and when a group commits: at most `in_flight`
//! appends and groups run at once, and a group gathers until a place frees
//! (or it has waited past its patience). At low load, appends that find
//! the places taken and no group waiting run alone beside them (up to
//! `alone`), see [`LOW_LOAD_GROUP`].
//!
//! A group that gets a place still takes appends until the tasks ready to
//! run have had their turn: the appends whose answers just freed the place
//! are made again at once by closed-loop writers, and they join it instead
//! of one running alone while the rest wait. For the same reason a group
//! keeps its place for one turn after answering its appends.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use factum_core::{NewEvent, StreamId, Tenancy, Tenant};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::{Answer, Request, commit_group};
use crate::PostgresEventStore;
use crate::options::GroupCommit;

/// The largest group that still counts as low load: while the last group
/// held no more appends than this, appends that find the places taken and
/// no group waiting may run alone beside them (up to `alone`), as with
/// group commit off. With two or three writers, groups of one or two save
/// nothing and would make the writers take turns; once a larger group
/// forms, appends gather until the load drops again.
const LOW_LOAD_GROUP: usize = 2;

/// The groups and appends in flight, shared by a store's clones and views.
pub(crate) struct Gate {
    settings: GroupCommit,
    /// The most appends and groups running at once.
    in_flight: usize,
    /// The most appends running alone beside the places at low load.
    alone: usize,
    /// How long a group waits for a place before it takes one anyway.
    patience: Duration,
    state: Mutex<State>,
}

struct State {
    /// Appends and groups holding a place.
    running: usize,
    /// Appends running alone beside the places (see [`LOW_LOAD_GROUP`]).
    running_alone: usize,
    /// How many appends the last group started with.
    last_group: usize,
    /// The group that holds a place and takes the last appends before it
    /// commits.
    gathering: Option<Group>,
    /// The group taking appends while it waits for a place.
    open: Option<Group>,
    /// Groups that could take no more appends (full, or an append came
    /// that could not join), waiting for a place, oldest first.
    closed: VecDeque<Group>,
    /// Numbers the groups, so that a gathering task takes only its own.
    opened: u64,
}

impl State {
    /// The gathering group, if it is group `number`.
    fn take_gathering(&mut self, number: u64) -> Option<Group> {
        if self.gathering.as_ref()?.number != number {
            return None;
        }
        self.gathering.take()
    }
}

/// Appends gathered for one statement.
struct Group {
    number: u64,
    opened_at: Instant,
    /// The runtime of the append that opened it, on which it commits,
    /// whoever frees the place it takes.
    runtime: Handle,
    tenant: Option<Tenant>,
    streams: HashSet<StreamId>,
    events: usize,
    requests: Vec<Request>,
}

impl Group {
    fn accepts(
        &self,
        settings: &GroupCommit,
        store: &PostgresEventStore,
        stream: &StreamId,
        events: usize,
    ) -> bool {
        self.requests.len() < settings.max_appends
            && self.events + events <= settings.max_events
            && self.tenant.as_ref() == store.tenant()
            && !self.streams.contains(stream)
    }

    fn push(&mut self, request: Request) {
        self.events += request.events.len();
        self.streams.insert(request.stream.clone());
        self.requests.push(request);
    }
}

/// How an append enters the gate.
pub(crate) enum Entry {
    /// There was a place in flight: run now, and drop the slot after.
    Run(Slot),
    /// In a group: the answer comes through here.
    Grouped(oneshot::Receiver<Answer>),
}

/// A group given a place, to be started once the gate's lock is released
/// (a task that cannot be spawned gives its place back, which takes the
/// lock).
enum Start {
    /// Commit these appends now.
    Commit(Handle, Slot, Vec<Request>),
    /// Let group `number` take the appends ready to run, then commit it.
    Gather(Handle, Slot, u64),
}

impl Start {
    fn spawn(self) {
        // If the runtime has shut down, the task is dropped unrun: its
        // appends' answers are dropped (they run alone) and the slot gives
        // its place back and drops the gathering group's appends likewise.
        match self {
            Start::Commit(runtime, slot, requests) => {
                runtime.spawn(commit_group(slot, requests));
            }
            Start::Gather(runtime, slot, number) => {
                runtime.spawn(gather_then_commit(slot, number));
            }
        }
    }
}

impl Gate {
    pub(crate) fn new(settings: GroupCommit) -> Self {
        Self {
            in_flight: settings.in_flight.max(1),
            alone: settings.alone,
            patience: settings.patience.max(settings.window),
            settings,
            state: Mutex::new(State {
                running: 0,
                running_alone: 0,
                last_group: 0,
                gathering: None,
                open: None,
                closed: VecDeque::new(),
                opened: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the append at once when no group waits and there is a place
    /// (or, at low load, room beside the places); otherwise adds it to the
    /// gathering or the open group, or opens a group when neither can take
    /// it (another tenant, a stream it holds, full).
    pub(crate) fn enter(
        &self,
        store: &PostgresEventStore,
        stream: &StreamId,
        expected: Option<i64>,
        events: &Arc<[NewEvent]>,
    ) -> Entry {
        let mut state = self.state();
        // A group commits on a task of its own: without a runtime to spawn
        // it on, the append runs alone.
        let runtime = match Handle::try_current() {
            Ok(runtime) => runtime,
            Err(_) => return self.run_alone(store, &mut state, true),
        };
        let waiting = state.gathering.is_some() || state.open.is_some() || !state.closed.is_empty();
        if !waiting {
            let low_load = state.last_group <= LOW_LOAD_GROUP && state.running_alone < self.alone;
            if state.running < self.in_flight || low_load {
                return self.run_alone(store, &mut state, false);
            }
        }
        let (answer, receiver) = oneshot::channel();
        let request = Request {
            store: store.clone(),
            stream: stream.clone(),
            expected,
            events: Arc::clone(events),
            answer,
        };
        let settings = &self.settings;
        let takes = |group: &Option<Group>| {
            group
                .as_ref()
                .is_some_and(|group| group.accepts(settings, store, stream, events.len()))
        };
        if takes(&state.gathering) {
            if let Some(group) = state.gathering.as_mut() {
                group.push(request);
            }
        } else {
            if !takes(&state.open) {
                if let Some(full) = state.open.take() {
                    state.closed.push_back(full);
                }
                state.opened += 1;
                runtime.spawn(wake_when_due(store.clone()));
                state.open = Some(Group {
                    number: state.opened,
                    opened_at: Instant::now(),
                    runtime,
                    tenant: store.tenant().cloned(),
                    streams: HashSet::new(),
                    events: 0,
                    requests: Vec::new(),
                });
            }
            if let Some(group) = state.open.as_mut() {
                group.push(request);
            }
        }
        self.start_next(store, state);
        Entry::Grouped(receiver)
    }

    /// Lets the append run alone: in a place when one is free (or `forced`,
    /// without a runtime for a group), else beside the places, at low load.
    fn run_alone(&self, store: &PostgresEventStore, state: &mut State, forced: bool) -> Entry {
        if forced || state.running < self.in_flight {
            state.running += 1;
            Entry::Run(Slot::new(store))
        } else {
            state.running_alone += 1;
            Entry::Run(Slot::beside(store))
        }
    }

    /// Gives the places free (or due) to the groups next in line, and
    /// starts them once the lock is released.
    fn start_next(&self, store: &PostgresEventStore, mut state: MutexGuard<'_, State>) {
        let mut starts = Vec::new();
        while let Some(start) = self.next(store, &mut state) {
            starts.push(start);
        }
        drop(state);
        for start in starts {
            start.spawn();
        }
    }

    /// The group to give a place to, if one is free or the group has
    /// waited past its patience: the oldest closed group, else the open
    /// one once its window has passed (and no other is gathering).
    fn next(&self, store: &PostgresEventStore, state: &mut State) -> Option<Start> {
        let full = state.running >= self.in_flight;
        let may_start = |group: &Group| !full || group.opened_at.elapsed() >= self.patience;
        if state.closed.front().is_some_and(may_start) {
            let group = state.closed.pop_front()?;
            state.last_group = group.requests.len();
            state.running += 1;
            return Some(Start::Commit(group.runtime, Slot::new(store), group.requests));
        }
        let ripe = |group: &Group| group.opened_at.elapsed() >= self.settings.window && may_start(group);
        if state.gathering.is_some() || !state.open.as_ref().is_some_and(ripe) {
            return None;
        }
        let group = state.open.take()?;
        state.last_group = group.requests.len();
        let start = Start::Gather(
            group.runtime.clone(),
            Slot::gathering(store, group.number),
            group.number,
        );
        state.running += 1;
        state.gathering = Some(group);
        Some(start)
    }

    /// Takes gathering group `number` for commit.
    fn take_gathering(&self, number: u64) -> Option<Vec<Request>> {
        self.state().take_gathering(number).map(|group| group.requests)
    }

    /// Gives a place back; a gathering group that never committed (its
    /// task was dropped unrun) leaves with it. The next group takes it.
    fn finished(&self, store: &PostgresEventStore, gathering: Option<u64>, alone: bool) {
        let mut state = self.state();
        if alone {
            state.running_alone = state.running_alone.saturating_sub(1);
        } else {
            state.running = state.running.saturating_sub(1);
        }
        let stranded = gathering.and_then(|number| state.take_gathering(number));
        self.start_next(store, state);
        // Dropped answers: those appends run alone.
        drop(stranded);
    }

    /// Lets an open group whose window has passed take a free place.
    fn wake(&self, store: &PostgresEventStore) {
        self.start_next(store, self.state());
    }
}

/// Lets a group just opened commit once its window has passed, and once
/// it has waited past its patience for a place. Should this task never
/// run, the next append or freed place lets it.
async fn wake_when_due(store: PostgresEventStore) {
    let Some(gate) = store.shared.group.as_ref() else {
        return;
    };
    let window = gate.settings.window;
    if !window.is_zero() {
        tokio::time::sleep(window).await;
        gate.wake(&store);
    }
    tokio::time::sleep(gate.patience.saturating_sub(window)).await;
    gate.wake(&store);
}

/// Lets the tasks ready to run join group `number`, then commits it.
async fn gather_then_commit(slot: Slot, number: u64) {
    tokio::task::yield_now().await;
    let Some(gate) = slot.store.shared.group.as_ref() else {
        return;
    };
    if let Some(requests) = gate.take_gathering(number) {
        commit_group(slot, requests).await;
    }
}

/// A place among the appends and groups in flight, given back when it is
/// dropped (the append or group finished, or its future was dropped).
pub(crate) struct Slot {
    store: PostgresEventStore,
    /// The gathering group this place was given to, until it commits.
    gathering: Option<u64>,
    /// Held beside the places, at low load.
    alone: bool,
}

impl Slot {
    fn new(store: &PostgresEventStore) -> Self {
        Self {
            store: store.clone(),
            gathering: None,
            alone: false,
        }
    }

    /// A place beside the `in_flight` ones, at low load.
    fn beside(store: &PostgresEventStore) -> Self {
        Self {
            store: store.clone(),
            gathering: None,
            alone: true,
        }
    }

    fn gathering(store: &PostgresEventStore, number: u64) -> Self {
        Self {
            store: store.clone(),
            gathering: Some(number),
            alone: false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.store.shared.group.as_ref() {
            gate.finished(&self.store, self.gathering, self.alone);
        }
    }
}
