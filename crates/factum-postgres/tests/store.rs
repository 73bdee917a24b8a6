//! Behaviour of the PostgreSQL store beyond the shared conformance suite:
//! SQL details, paging, conflicts from races, bad input.

mod common;

use factum_core::{Error, EventStore, ExpectedVersion, Metadata, NewEvent, Payload, StreamId};
use futures::{StreamExt, TryStreamExt};

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "incremented",
        Payload::parse(format!(r#"{{"amount":{n}}}"#)).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_then_read_back_everything_stored() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let stream = StreamId::new("Counter", "1");
    let metadata = Metadata::default().with("user", "ann");
    let first = event(1).with_metadata(metadata.clone()).with_schema_version(3);
    let result = store
        .append(&stream, ExpectedVersion::NoStream, vec![first.clone(), event(2)])
        .await
        .unwrap();
    assert_eq!(result.stream_version, 2);
    assert_eq!(result.positions.len(), 2);
    assert!(result.positions[0] < result.positions[1]);

    let events: Vec<_> = store.read_stream(&stream, 1).try_collect().await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event_id, first.event_id);
    assert_eq!(
        events[0].metadata,
        metadata.with_tenant(factum_core::Tenant::DEFAULT)
    );
    assert_eq!(events[0].schema_version, 3);
    assert_eq!(events[0].payload, first.payload);
    assert_eq!(events[0].version, 1);
    assert_eq!(events[1].version, 2);
    assert_eq!(
        events[0].occurred_at.unix_timestamp(),
        first.occurred_at.unix_timestamp()
    );
    assert_eq!(store.stream_version(&stream).await.unwrap(), 2);
    assert_eq!(store.head_position().await.unwrap(), result.positions[1]);
    let all = store.read_all(0, 10).await.unwrap();
    assert_eq!(all, events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reads_page_through_long_streams() {
    let Some(store) = common::fresh_store_with(|options| options.page_size(7)).await else {
        return;
    };
    let stream = StreamId::new("Counter", "long");
    for chunk in 0..5 {
        let events = (0..10).map(|n| event(chunk * 10 + n)).collect();
        store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    }
    let versions: Vec<u64> = store
        .read_stream(&stream, 1)
        .map_ok(|event| event.version)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(versions, (1..=50).collect::<Vec<_>>());
    let from_43: Vec<u64> = store
        .read_stream(&stream, 43)
        .map_ok(|event| event.version)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(from_43, (43..=50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_name_stream_expected_and_actual() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let stream = StreamId::new("Counter", "c");
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let error = store
        .append(&stream, ExpectedVersion::NoStream, vec![event(2)])
        .await
        .unwrap_err();
    match error {
        Error::Conflict {
            stream: s,
            expected,
            actual,
        } => {
            assert_eq!(s, stream);
            assert_eq!(expected, ExpectedVersion::NoStream);
            assert_eq!(actual, 1);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let error = store
        .append(&stream, ExpectedVersion::Exact(5), vec![event(2)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                actual: 1,
                expected: ExpectedVersion::Exact(5),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(store.stream_version(&stream).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_one_stream_get_conflicts_not_errors() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let stream = StreamId::new("Counter", "race");
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(&stream, ExpectedVersion::NoStream, vec![event(n)])
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::Conflict { actual: 1, .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);

    // With `Any`, racing appends all land, one after another.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(&stream, ExpectedVersion::Any, vec![event(n), event(n)])
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.stream_version(&stream).await.unwrap(), 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_return_original_positions_and_reuse_is_refused() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let stream = StreamId::new("Counter", "idem");
    let batch = vec![event(1), event(2)];
    let first = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    let again = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(first, again);

    let mut changed = batch[0].clone();
    changed.payload = Payload::parse(r#"{"amount":99}"#).unwrap();
    let error = store
        .append(&stream, ExpectedVersion::Any, vec![changed])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::DuplicateEventId { .. }), "{error:?}");

    let error = store
        .append(&stream, ExpectedVersion::Any, vec![batch[0].clone(), event(3)])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");

    let repeated = event(4);
    let error = store
        .append(&stream, ExpectedVersion::Any, vec![repeated.clone(), repeated])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
    assert_eq!(store.stream_version(&stream).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_and_types_are_data_not_sql() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let stream = StreamId::new("Robert'); DROP TABLE students;--", "1' OR '1'='1");
    let hostile = NewEvent::new("x'; DELETE FROM factum_events; --", Payload::parse("{}").unwrap());
    store
        .append(&stream, ExpectedVersion::NoStream, vec![hostile.clone()])
        .await
        .unwrap();
    let events: Vec<_> = store.read_stream(&stream, 1).try_collect().await.unwrap();
    assert_eq!(events[0].event_type, hostile.event_type);
    assert_eq!(events[0].stream, stream);

    let nul = StreamId::new("Counter", "nul\0byte");
    let error = store
        .append(&nul, ExpectedVersion::Any, vec![event(1)])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");

    let not_json = NewEvent::new("bad", Payload::from_stored("{not json"));
    let error = store
        .append(&stream, ExpectedVersion::Any, vec![not_json])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_row_is_a_typed_error_naming_stream_and_version() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(raw) = common::raw_client().await else {
        return;
    };
    let stream = StreamId::new("Counter", "damaged");
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![event(1), event(2), event(3)],
        )
        .await
        .unwrap();
    let table = format!(
        "\"{}\".factum_events",
        store.schema_name().trim_end_matches(".factum_")
    );
    raw.execute(
        &format!("UPDATE {table} SET metadata = '{{\"correlation_id\": 42}}' WHERE version = 2"),
        &[],
    )
    .await
    .unwrap();
    let read: Vec<Result<_, _>> = store.read_stream(&stream, 1).collect().await;
    assert_eq!(read.len(), 2, "the read stops at the damaged row: {read:?}");
    assert!(read[0].is_ok());
    match &read[1] {
        Err(Error::Corrupt {
            stream: s,
            version,
            reason,
        }) => {
            assert_eq!(s, &stream);
            assert_eq!(*version, 2);
            assert!(reason.contains("metadata"), "{reason}");
        }
        other => panic!("expected a corrupt event, got {other:?}"),
    }
    let error = store.read_all(0, 10).await.unwrap_err();
    assert!(matches!(error, Error::Corrupt { version: 2, .. }), "{error:?}");

    // A payload that no longer fits its type is handed on, and decoding it
    // names the event: it is not skipped.
    raw.execute(
        &format!("UPDATE {table} SET metadata = NULL, payload = '\"text\"' WHERE version = 2"),
        &[],
    )
    .await
    .unwrap();
    let events: Vec<_> = store.read_stream(&stream, 1).try_collect().await.unwrap();
    assert_eq!(events.len(), 3);
    #[derive(serde::Deserialize)]
    struct Incremented {
        #[allow(dead_code)]
        amount: i64,
    }
    assert!(events[1].payload.decode::<Incremented>().is_err());
}

/// A missing version is corruption on both stream reads (checked once, in
/// the decoder), and so is a negative stored number: never a silent 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_gap_or_a_negative_number_is_corrupt_on_every_read() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(raw) = common::raw_client().await else {
        return;
    };
    let stream = StreamId::new("Counter", "gap");
    let events: Vec<NewEvent> = (1..=4).map(event).collect();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    let table = format!(
        "\"{}\".factum_events",
        store.schema_name().trim_end_matches(".factum_")
    );
    raw.execute(&format!("DELETE FROM {table} WHERE version = 2"), &[])
        .await
        .unwrap();
    let read: Vec<Result<_, _>> = store.read_stream(&stream, 1).collect().await;
    assert_eq!(read.len(), 2, "the read stops at the gap: {read:?}");
    assert!(
        matches!(&read[1], Err(Error::Corrupt { version: 2, reason, .. }) if reason.contains("missing")),
        "{read:?}"
    );
    let pages: Vec<Result<_, _>> = store.read_stream_pages(&stream, 1).collect().await;
    assert!(
        matches!(pages.as_slice(), [Err(Error::Corrupt { version: 2, .. })]),
        "{pages:?}"
    );
    let from_three: Vec<_> = store.read_stream(&stream, 3).try_collect().await.unwrap();
    assert_eq!(from_three.len(), 2, "a read from after the gap meets none");

    raw.execute(
        &format!("UPDATE {table} SET schema_version = -1 WHERE version = 3"),
        &[],
    )
    .await
    .unwrap();
    let error = store.read_all(0, 10).await.unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { version: 3, reason, .. } if reason.contains("schema version -1")),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_schema_is_idempotent_and_prefixes_separate_stores() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    store.ensure_schema().await.unwrap();
    store.ensure_schema().await.unwrap();
    let schema = store.schema_name().trim_end_matches(".factum_").to_owned();
    let other = factum_postgres::PostgresEventStore::connect_with(
        &common::url(),
        common::options(&schema).table_prefix("other_"),
    )
    .await
    .unwrap();
    other.ensure_schema().await.unwrap();
    let stream = StreamId::new("Counter", "1");
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    assert_eq!(other.stream_version(&stream).await.unwrap(), 0);
    assert!(other.read_all(0, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_schema_says_to_call_ensure_schema() {
    let Some(_raw) = common::raw_client().await else {
        return;
    };
    let store = factum_postgres::PostgresEventStore::connect_with(
        &common::url(),
        common::options(&common::schema_name()),
    )
    .await
    .unwrap();
    let error = store.head_position().await.unwrap_err();
    assert!(error.to_string().contains("ensure_schema"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused() {
    for options in [
        factum_postgres::PostgresOptions::new().schema("bad\"name"),
        factum_postgres::PostgresOptions::new().table_prefix("x y"),
        factum_postgres::PostgresOptions::new().pool_size(0),
    ] {
        let error = factum_postgres::PostgresEventStore::connect_with(&common::url(), options)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("configuration"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_an_existing_pool() {
    let Some(_raw) = common::raw_client().await else {
        return;
    };
    let config: tokio_postgres::Config = common::url().parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config.clone(), tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()
        .unwrap();
    let schema = common::schema_name();
    let store = factum_postgres::PostgresEventStore::from_pool_with(
        pool,
        common::options(&schema).listen_with(config),
    )
    .unwrap();
    store.ensure_schema().await.unwrap();
    let stream = StreamId::new("Counter", "pooled");
    let mut live = store.subscribe_all(0);
    let appended = store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let delivered = tokio::time::timeout(std::time::Duration::from_secs(5), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(delivered.position, appended.positions[0]);
    assert_eq!(store.address(), common::address());
}
