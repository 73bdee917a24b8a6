//! Tenant isolation of projection state: a projection's checkpoint, dead
//! letters and lease under one tenant are invisible to another tenant and
//! to the unscoped store, and a projection run on a tenant's view counts
//! that tenant's events only.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{
    Ledger, begin, checkpoint, commit, dead_letters, letter, projection_name, put_letter, read, save,
    until_checkpoint,
};
use crate::{
    CheckpointStore, DeadLetter, DeadLetterStore, Error, EventStore, ExpectedVersion, HandlerError,
    InMemoryEventStore, Lease, Metadata, NewEvent, Payload, ProjectionRunner, ProjectionStore, RecordedEvent,
    StreamId, Tenancy, Tenant, TransactionalProjection,
};

fn view<S: Tenancy>(store: &S, tenant: &str) -> S {
    store
        .for_tenant(tenant)
        .unwrap_or_else(|error| panic!("opening tenant {tenant} failed: {error}"))
}

fn tenant_name(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::now_v7().simple())
}

/// A dead letter of `projection` at `position` for an event of `tenant`.
fn letter_of(projection: &str, position: u64, tenant: &str) -> DeadLetter {
    let mut letter = letter(projection, position);
    let tenant = Tenant::new(tenant).unwrap_or_else(|error| panic!("{error}"));
    letter.event.metadata = Metadata::default().with_tenant(tenant);
    letter
}

/// The checkpoint and dead letters of a projection committed under one
/// tenant are invisible to another tenant with a projection of the same
/// name, and to the unscoped store; the other tenant's compare-and-set,
/// removals and clears leave them alone; and a view refuses a dead letter
/// for an event of another tenant.
pub async fn tenant_checkpoints_and_dead_letters_are_apart<S, L>(store: S, _ledger: L)
where
    S: ProjectionStore + Tenancy,
    L: Ledger<S>,
{
    let (acme_name, globex_name) = (tenant_name("acme"), tenant_name("globex"));
    let (acme, globex) = (view(&store, &acme_name), view(&store, &globex_name));
    let projection = projection_name("tenants");
    let mut transaction = begin(&acme, &projection).await;
    put_letter(&acme, &mut transaction, letter_of(&projection, 4, &acme_name)).await;
    save(&acme, &mut transaction, &projection, 0, 7).await;
    commit(&acme, transaction).await;

    for (other, who) in [(&globex, "another tenant"), (&store, "the unscoped store")] {
        assert_eq!(
            checkpoint(other, &projection).await,
            0,
            "{who} sees acme's checkpoint"
        );
        assert!(
            dead_letters(other, &projection).await.is_empty(),
            "{who} sees acme's dead letters"
        );
    }

    // Globex's own projection of the same name starts from 0, and what it
    // does to its letters does not touch acme's.
    let mut transaction = begin(&globex, &projection).await;
    save(&globex, &mut transaction, &projection, 0, 3).await;
    let removed = globex
        .remove_dead_letter(&mut transaction, &projection, 4)
        .await
        .unwrap_or_else(|error| panic!("removing a dead letter failed: {error}"));
    assert!(!removed, "globex removed acme's dead letter");
    globex
        .clear_dead_letters(&mut transaction, &projection)
        .await
        .unwrap_or_else(|error| panic!("clearing dead letters failed: {error}"));
    let foreign = globex
        .put_dead_letter(&mut transaction, letter_of(&projection, 5, &acme_name))
        .await;
    assert!(
        matches!(foreign, Err(Error::InvalidTenant { .. })),
        "globex kept a dead letter of acme's event: {foreign:?}"
    );
    commit(&globex, transaction).await;

    assert_eq!(checkpoint(&acme, &projection).await, 7);
    assert_eq!(checkpoint(&globex, &projection).await, 3);
    let kept = dead_letters(&acme, &projection).await;
    assert_eq!(kept.iter().map(DeadLetter::position).collect::<Vec<_>>(), [4]);
    assert_eq!(
        kept[0].event.metadata.tenant.as_ref().map(Tenant::as_str),
        Some(acme_name.as_str()),
        "a dead letter's event names its tenant"
    );
}

/// Records each event's position in the ledger under `key`.
struct TenantLedger<L> {
    name: String,
    key: String,
    ledger: Arc<L>,
}

impl<S: ProjectionStore, L: Ledger<S>> TransactionalProjection<S> for TenantLedger<L> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(
        &mut self,
        transaction: &mut S::Transaction,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        self.ledger.record(transaction, &self.key, event.position).await
    }
}

/// A projection run on a tenant's view of the log, with its state in the
/// tenant's view of the projection store, handles that tenant's events
/// only (in order, once each), and the same projection name run for
/// another tenant keeps a checkpoint of its own.
pub async fn a_projection_on_a_tenant_view_counts_only_its_events<S, L>(store: S, ledger: L)
where
    S: ProjectionStore + Tenancy + Clone,
    L: Ledger<S>,
{
    let events = InMemoryEventStore::new();
    let names = [tenant_name("acme"), tenant_name("globex")];
    let mut expected: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for amount in 0..12_u64 {
        let stream = StreamId::new("Tally", format!("t-{}", amount % 2));
        let event = NewEvent::new("added", Payload::from(json!({ "amount": amount })));
        let which = (amount % 3) as usize;
        let target = match names.get(which) {
            Some(name) => view(&events, name),
            None => events.clone(),
        };
        let appended = target
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap_or_else(|error| panic!("appending to the in-memory log failed: {error}"));
        if let Some(positions) = expected.get_mut(which) {
            positions.extend(appended.positions);
        }
    }
    let ledger = Arc::new(ledger);
    let projection = projection_name("per-tenant");
    for (name, wanted) in names.iter().zip(&expected) {
        let state = view(&store, name);
        let key = format!("{projection}-{name}");
        let counter = TenantLedger {
            name: projection.clone(),
            key: key.clone(),
            ledger: Arc::clone(&ledger),
        };
        let last = *wanted.last().unwrap_or(&0);
        ProjectionRunner::transactional(view(&events, name), counter, state.clone())
            .batch_size(2)
            .checkpoint_every(2)
            .run(until_checkpoint(&state, &projection, last))
            .await
            .unwrap_or_else(|error| panic!("the projection of {name} failed: {error}"));
        assert_eq!(read(&*ledger, &state, &key).await, *wanted, "{name} handled");
        assert_eq!(checkpoint(&state, &projection).await, last);
    }
    assert_eq!(
        checkpoint(&store, &projection).await,
        0,
        "the unscoped store's checkpoint moved"
    );
}

/// A [`CheckpointStore`] and a [`DeadLetterStore`] keep each tenant's
/// checkpoints and dead letters apart from every other tenant's and from
/// the unscoped store's, under the same projection name.
pub async fn plain_stores_keep_tenants_apart<C, D>(checkpoints: C, letters: D)
where
    C: CheckpointStore + Tenancy,
    D: DeadLetterStore + Tenancy,
{
    let (acme_name, globex_name) = (tenant_name("acme"), tenant_name("globex"));
    let projection = projection_name("plain-tenants");
    let (acme, globex) = (view(&checkpoints, &acme_name), view(&checkpoints, &globex_name));
    acme.save(&projection, 12)
        .await
        .unwrap_or_else(|error| panic!("saving a checkpoint failed: {error}"));
    let load = async |store: &C| store.load(&projection).await;
    assert_eq!(load(&globex).await.ok(), Some(0), "globex sees acme's checkpoint");
    assert_eq!(
        load(&checkpoints).await.ok(),
        Some(0),
        "the unscoped store sees it"
    );
    assert_eq!(load(&acme).await.ok(), Some(12));

    let (acme, globex) = (view(&letters, &acme_name), view(&letters, &globex_name));
    acme.put(letter_of(&projection, 4, &acme_name))
        .await
        .unwrap_or_else(|error| panic!("storing a dead letter failed: {error}"));
    let listed = async |store: &D| store.list(&projection).await;
    assert_eq!(listed(&globex).await.map(|letters| letters.len()).ok(), Some(0));
    assert_eq!(listed(&letters).await.map(|letters| letters.len()).ok(), Some(0));
    assert_eq!(globex.remove(&projection, 4).await.ok(), Some(false));
    globex
        .clear(&projection)
        .await
        .unwrap_or_else(|error| panic!("clearing dead letters failed: {error}"));
    let foreign = globex.put(letter_of(&projection, 5, &acme_name)).await;
    assert!(matches!(foreign, Err(Error::InvalidTenant { .. })), "{foreign:?}");
    assert_eq!(listed(&acme).await.map(|letters| letters.len()).ok(), Some(1));
}

/// A [`Lease`] of a projection held under one tenant does not stop another
/// tenant (or the unscoped store) from taking its own lease of the same
/// name, and cannot be released by it.
pub async fn leases_of_tenants_are_apart<L: Lease + Tenancy>(lease: L) {
    const TTL: Duration = Duration::from_secs(30);
    let projection = projection_name("lease-tenants");
    let (acme, globex) = (
        view(&lease, &tenant_name("acme")),
        view(&lease, &tenant_name("globex")),
    );
    let acquire = async |store: &L, holder: &'static str| store.acquire(&projection, holder, TTL).await;
    assert_eq!(acquire(&acme, "a").await.ok(), Some(true));
    assert_eq!(
        acquire(&globex, "b").await.ok(),
        Some(true),
        "acme's lease blocked globex"
    );
    assert_eq!(
        acquire(&lease, "c").await.ok(),
        Some(true),
        "acme's lease blocked the unscoped store"
    );
    globex
        .release(&projection, "a")
        .await
        .unwrap_or_else(|error| panic!("releasing failed: {error}"));
    assert_eq!(
        acquire(&acme, "d").await.ok(),
        Some(false),
        "globex released acme's lease"
    );
}
