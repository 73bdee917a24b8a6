//! Test support: the conformance suites every event store and projection
//! store runs, and a given/when/then harness for aggregates.
//!
//! Enabled by the `testing` feature.

mod chaos;
pub mod conformance;
mod fixture;
mod harness;
pub mod outbox;
pub mod projection;

use std::future::Future;
use std::time::Duration;

pub use chaos::{ChaosSchedule, ChaosStore, Fault, FaultCounts, InjectedFault, Operation};
pub use fixture::{Tally, TallyEvent};
pub use harness::{AggregateTest, CommandOutcome, Then};

/// How long one conformance check may take before it fails as hung.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one conformance check on a fresh store from `factory`, on a
/// multi-threaded runtime; does nothing when the factory reports the
/// backend unavailable (`None`).
///
/// # Panics
///
/// When the check fails or takes longer than two minutes: this is test code.
pub fn run<S, Factory, Made, Check, Checked>(factory: Factory, check: Check)
where
    Factory: FnOnce() -> Made,
    Made: Future<Output = Option<S>>,
    Check: FnOnce(S) -> Checked,
    Checked: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a test runtime can be built");
    runtime.block_on(async {
        let Some(store) = factory().await else {
            return;
        };
        if tokio::time::timeout(CHECK_TIMEOUT, check(store)).await.is_err() {
            panic!("conformance check did not finish within {CHECK_TIMEOUT:?}");
        }
    });
}

/// Reports a test as skipped because `service` cannot be reached, and returns
/// `None` for a store factory to pass on.
///
/// # Panics
///
/// When the environment variable `CI` is `true`: in CI a missing service is
/// a failure, not a skip.
pub fn service_unavailable<T>(service: &str, reason: impl std::fmt::Display) -> Option<T> {
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{service} is required under CI=true but unavailable: {reason}");
    }
    eprintln!("SKIPPED: {service} unavailable: {reason}");
    None
}

/// Expands to one `#[test]` per guarantee of the [`EventStore`](crate::EventStore),
/// [`SnapshotStore`](crate::SnapshotStore) and [`Tenancy`](crate::Tenancy)
/// contracts, each on a fresh store made by `$factory`.
///
/// `$factory` is an `async fn() -> Option<S>` (`S: EventStore + SnapshotStore
/// + Tenancy + Clone`) that returns a fresh, empty store, or `None` when its
/// server is unreachable (see [`service_unavailable`]).
///
/// ```
/// use factum_core::InMemoryEventStore;
///
/// async fn fresh_store() -> Option<InMemoryEventStore> {
///     Some(InMemoryEventStore::new())
/// }
///
/// factum_core::conformance_suite!(fresh_store);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::__conformance_tests!(
            $factory;
            any_on_fresh_and_existing_streams,
            no_stream_admits_only_a_fresh_stream,
            exact_version_admits_only_that_version,
            conflict_writes_nothing,
            empty_append_checks_the_expected_version,
            batch_is_atomic,
            idempotent_retry_returns_original_positions,
            same_event_id_with_other_content_is_rejected,
            mixed_batch_of_stored_and_new_events_is_invalid,
            stored_id_with_other_content_is_a_duplicate,
            versions_are_gapless_from_one,
            positions_strictly_increase_and_match_append_results,
            read_stream_from_a_version,
            read_all_resumes_after_a_position_exclusively,
            read_all_honours_limits,
            envelope_round_trips,
            unusual_names_and_payloads_round_trip,
            large_batch_is_atomic_and_ordered,
            long_stream_reads_in_order,
            stream_pages_match_the_stream,
            undecodable_payload_is_an_error_not_a_skip,
            unknown_event_type_is_an_error_not_a_skip,
            concurrent_writers_on_one_stream,
            writers_and_readers_lose_nothing,
            catch_up_hands_over_to_live,
            subscription_starts_after_its_position,
            head_position_follows_appends,
            latest_snapshot_wins,
            application_loads_from_its_snapshots,
            snapshot_ahead_of_its_stream_is_never_loaded,
            undeserializable_snapshot_means_a_full_replay,
        );
        $crate::__conformance_tests!(
            $factory;
            subscribe_stream_catches_up_then_goes_live,
            subscribe_stream_ignores_other_streams,
            subscribe_stream_starts_at_its_version,
            subscribe_stream_follows_a_stream_created_later,
            subscribe_from_the_end_hands_out_only_later_events,
            subscribe_after_a_position_equals_subscribe_all,
        );
        $crate::__conformance_tests!(
            $factory;
            append_many_is_all_or_nothing,
            append_many_checks_each_stream_against_its_own_version,
            append_many_batch_without_events_checks_its_version,
            append_many_positions_match_read_all,
            append_many_retry_returns_the_original_positions,
            append_many_refuses_bad_input,
            readers_never_see_half_of_an_atomic_append,
        );
        $crate::__conformance_tests!(
            $factory;
            snapshot_shape_versions_round_trip,
            snapshot_of_another_shape_is_rebuilt_and_replaced,
            event_of_a_newer_schema_is_refused,
            old_schema_versions_are_lifted_while_reading,
        );
        $crate::__conformance_tests!(
            $factory;
            tenant_names_are_checked_and_views_cannot_widen,
            same_stream_id_under_two_tenants_is_two_streams,
            metadata_cannot_name_another_tenant,
            a_tenants_log_holds_only_its_events_in_global_order,
            a_tenants_subscription_sees_only_its_events,
            snapshots_cannot_reach_another_tenant,
            retry_with_another_tenants_event_id_reveals_nothing,
            applications_on_tenant_views_keep_aggregates_apart,
            append_many_on_a_view_writes_only_its_tenants_streams,
            append_many_with_another_tenants_event_ids_reveals_nothing,
            subscribe_stream_on_a_view_follows_only_its_tenant,
            start_at_the_end_of_a_view_is_its_tenants_end,
        );
    };
}

/// Expands to the checks of what only some stores promise about atomic
/// appends across streams: that the positions of one
/// [`append_many`](crate::EventStore::append_many) call are contiguous in
/// `$all`. The in-memory and SQLite stores run it beside
/// [`conformance_suite!`]; a store that keeps only the global order
/// (PostgreSQL, whose concurrent calls may interleave) does not.
///
/// ```
/// use factum_core::InMemoryEventStore;
///
/// async fn fresh_store() -> Option<InMemoryEventStore> {
///     Some(InMemoryEventStore::new())
/// }
///
/// factum_core::contiguous_append_suite!(fresh_store);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! contiguous_append_suite {
    ($factory:path) => {
        $crate::__conformance_tests!($factory; atomic_appends_are_contiguous);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:path; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::run($factory, $crate::testing::conformance::$check);
            }
        )*
    };
}
