//! Publishing to a real Kafka-protocol broker and reading the messages back
//! with a consumer. Needs a broker at `FACTUM_KAFKA_BOOTSTRAP` (default
//! `127.0.0.1:9092`); skipped without one, except under `CI=true`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{event, fresh_topic, notifier, read};
use factum_core::{Metadata, Notifier, Publisher};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

fn timestamp(value: &Value) -> OffsetDateTime {
    let text = value.as_str().expect("a timestamp is a string");
    assert!(text.ends_with('Z'), "not UTC: {text}");
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|error| panic!("not RFC 3339 ({error}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_has_exactly_the_documented_fields_key_and_headers() {
    let Some(topic) = fresh_topic("content", 1).await else {
        return;
    };
    let correlation = Uuid::now_v7();
    let causation = Uuid::now_v7();
    let metadata = Metadata::default()
        .with_correlation_id(correlation)
        .with_causation_id(causation)
        .with_tenant(factum_core::Tenant::new("acme").expect("a valid tenant"))
        .with("channel", "web");
    // Stored the way PostgreSQL's jsonb hands it back: blanks after `:` and `,`.
    let with_context = event(
        "a-1",
        1,
        r#"{"amount": 250, "note": "rent, March"}"#,
        metadata.clone(),
    );
    let bare = event("a-1", 2, r#"{"amount":5}"#, Metadata::default());
    let notifier = notifier(&topic);

    let before = OffsetDateTime::now_utc();
    let answers = notifier.publish(&[with_context.clone(), bare.clone()]).await;
    let after = OffsetDateTime::now_utc();
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");

    let messages = read(&topic, 1, 2).await;
    println!("example message: {}", messages[0].text);
    let fields: BTreeSet<&str> = messages[0]
        .value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected_fields = [
        "id",
        "aggregate_type",
        "aggregate_id",
        "event_type",
        "payload",
        "occurred_at",
        "published_at",
        "metadata",
    ];
    assert_eq!(fields, BTreeSet::from(expected_fields));

    let first = &messages[0];
    assert_eq!(first.value["id"], with_context.event_id.to_string());
    assert_eq!(first.value["aggregate_type"], "Account");
    assert_eq!(first.value["aggregate_id"], "a-1");
    assert_eq!(first.value["event_type"], "deposited");
    assert_eq!(
        first.value["payload"],
        json!({"amount": 250, "note": "rent, March"})
    );
    assert_eq!(first.value["metadata"], serde_json::to_value(&metadata).unwrap());
    assert_eq!(
        first.value["metadata"],
        json!({
            "correlation_id": correlation.to_string(),
            "causation_id": causation.to_string(),
            "tenant": "acme",
            "user": {"channel": "web"},
        })
    );
    assert_eq!(timestamp(&first.value["occurred_at"]), with_context.occurred_at);
    let published_at = timestamp(&first.value["published_at"]);
    assert!(
        before <= published_at && published_at <= after,
        "{published_at} outside the publish call"
    );
    assert!(
        first
            .text
            .contains(r#""payload":{"amount":250,"note":"rent, March"}"#),
        "not compact: {}",
        first.text
    );

    assert_eq!(first.key, "a-1");
    assert_eq!(
        first.headers,
        [
            ("event_type".to_owned(), "deposited".to_owned()),
            ("correlation_id".to_owned(), correlation.to_string()),
            ("causation_id".to_owned(), causation.to_string()),
        ]
    );

    let second = &messages[1];
    assert_eq!(second.value["id"], bare.event_id.to_string());
    assert_eq!(second.value["metadata"], json!({}));
    assert_eq!(second.key, "a-1");
    assert_eq!(
        second.headers,
        [("event_type".to_owned(), "deposited".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_aggregate_keeps_its_order_in_one_partition() {
    const PARTITIONS: i32 = 3;
    const AGGREGATES: u64 = 6;
    const VERSIONS: u64 = 200;
    let Some(topic) = fresh_topic("order", PARTITIONS).await else {
        return;
    };
    let notifier = notifier(&topic);
    // The aggregates interleaved, as a relay reads an outbox in commit order.
    let events: Vec<_> = (1..=VERSIONS)
        .flat_map(|version| (0..AGGREGATES).map(move |aggregate| (aggregate, version)))
        .map(|(aggregate, version)| {
            event(
                &format!("acct-{aggregate}"),
                version,
                r#"{"amount":1}"#,
                Metadata::default(),
            )
        })
        .collect();
    for batch in events.chunks(150) {
        let answers = notifier.publish(batch).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    }

    let messages = read(&topic, PARTITIONS, events.len()).await;
    let version_of: BTreeMap<String, u64> = events
        .iter()
        .map(|event| (event.event_id.to_string(), event.version))
        .collect();
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for message in &messages {
        assert_eq!(
            message.key, message.value["aggregate_id"],
            "the key is the aggregate id"
        );
        let id = message.value["id"].as_str().unwrap().to_owned();
        let version = version_of[&id];
        versions.entry(message.key.clone()).or_default().push(version);
        partitions
            .entry(message.key.clone())
            .or_default()
            .insert(message.partition);
        ids.insert(id);
    }
    assert_eq!(ids.len(), events.len(), "a message was duplicated");
    assert_eq!(versions.len(), AGGREGATES as usize);
    for (aggregate, found) in &versions {
        assert_eq!(
            found,
            &(1..=VERSIONS).collect::<Vec<_>>(),
            "{aggregate} out of order"
        );
        assert_eq!(
            partitions[aggregate].len(),
            1,
            "{aggregate} spread over partitions"
        );
    }
    let used: BTreeSet<i32> = partitions.values().flatten().copied().collect();
    assert!(
        used.len() > 1,
        "every aggregate hashed to one partition: the test proves little"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_is_rejected_and_holds_back_its_aggregate_only() {
    let Some(topic) = fresh_topic("too-large", 1).await else {
        return;
    };
    let notifier = common::builder(&topic)
        .set("message.max.bytes", "10000")
        .build()
        .expect("the notifier starts");
    let huge = format!(r#"{{"blob":"{}"}}"#, "x".repeat(20_000));
    let batch = [
        event("big", 1, &huge, Metadata::default()),
        event("small", 1, r#"{"amount":1}"#, Metadata::default()),
        event("big", 2, r#"{"amount":1}"#, Metadata::default()),
    ];
    let answers = notifier.publish(&batch).await;

    let refused = answers[0].as_ref().unwrap_err();
    assert!(
        !refused.retriable,
        "too large must be rejected, not retried: {refused:?}"
    );
    assert!(
        refused.reason.to_lowercase().contains("too large"),
        "{}",
        refused.reason
    );
    assert!(answers[1].is_ok(), "{:?}", answers[1]);
    let held_back = answers[2].as_ref().unwrap_err();
    assert!(held_back.retriable, "{held_back:?}");
    assert!(held_back.reason.contains("Account-big"), "{}", held_back.reason);

    // The notifier path reports it too, naming the event.
    let error = notifier.notify(&batch[..1]).await.unwrap_err();
    let error = error
        .downcast_ref::<factum_kafka::Error>()
        .expect("a factum_kafka::Error");
    assert!(
        matches!(error, factum_kafka::Error::Publish { version: 1, source, .. } if !source.retriable),
        "{error:?}"
    );
    assert!(error.to_string().contains("version 1 of Account-big"), "{error}");

    // Only the small event reached the topic: the next message after it is
    // the held-back one, sent now.
    assert!(notifier.publish(&batch[2..]).await[0].is_ok());
    let messages = read(&topic, 1, 2).await;
    assert_eq!(messages[0].value["id"], batch[1].event_id.to_string());
    assert_eq!(messages[1].value["id"], batch[2].event_id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_json_is_never_sent() {
    let Some(topic) = fresh_topic("bad-payload", 1).await else {
        return;
    };
    let notifier = notifier(&topic);
    let batch = [
        event("broken", 1, r#"{"amount": "#, Metadata::default()),
        event("fine", 1, r#"{"amount":1}"#, Metadata::default()),
    ];
    let answers = notifier.publish(&batch).await;
    let refused = answers[0].as_ref().unwrap_err();
    assert!(!refused.retriable, "{refused:?}");
    assert!(
        refused.reason.contains("version 1 of Account-broken"),
        "{}",
        refused.reason
    );
    assert!(answers[1].is_ok(), "{:?}", answers[1]);

    let error = notifier.notify(&batch[..1]).await.unwrap_err();
    assert!(
        matches!(
            error.downcast_ref::<factum_kafka::Error>(),
            Some(factum_kafka::Error::Serialize { version: 1, .. })
        ),
        "{error:?}"
    );

    let messages = read(&topic, 1, 1).await;
    assert_eq!(
        messages[0].value["id"],
        batch[1].event_id.to_string(),
        "the first message is the good one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_publishes_every_event_of_a_save_from_concurrent_callers() {
    let Some(topic) = fresh_topic("notify", 2).await else {
        return;
    };
    let notifier = notifier(&topic);
    let saves: Vec<Vec<_>> = (0..4)
        .map(|save| {
            (1..=25)
                .map(|version| {
                    event(
                        &format!("n-{save}"),
                        version,
                        r#"{"amount":1}"#,
                        Metadata::default(),
                    )
                })
                .collect()
        })
        .collect();
    let tasks: Vec<_> = saves
        .iter()
        .cloned()
        .map(|events| {
            let notifier = notifier.clone();
            tokio::spawn(async move { notifier.notify(&events).await.map_err(|error| error.to_string()) })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task ran").expect("notify succeeded");
    }

    let messages = read(&topic, 2, 100).await;
    let sent: BTreeSet<String> = saves
        .iter()
        .flatten()
        .map(|event| event.event_id.to_string())
        .collect();
    let received: BTreeSet<String> = messages
        .iter()
        .map(|message| message.value["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(received, sent);
}
