//! Start-up: a broker that is not there, or a topic that is not there, is a
//! clear error within the start-up timeout, never a hang.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use factum_kafka::{Error, KafkaNotifier};

/// Builds a notifier on another thread; a guard far above the start-up
/// timeout turns a hang into a failure.
fn build_within_guard(bootstrap: &str, topic: &str) -> Result<KafkaNotifier, Error> {
    let builder = KafkaNotifier::builder(bootstrap)
        .topic(topic)
        .startup_timeout(Duration::from_secs(2));
    let (answer, answered) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = answer.send(builder.build());
    });
    answered
        .recv_timeout(Duration::from_secs(60))
        .expect("build returned instead of hanging")
}

#[test]
fn a_port_where_nothing_listens_is_a_connect_error() {
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let error = build_within_guard("127.0.0.1:1", "events").unwrap_err();
    assert!(
        matches!(&error, Error::Connect { bootstrap_servers, .. } if bootstrap_servers == "127.0.0.1:1"),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("no Kafka broker at 127.0.0.1:1 answered"),
        "{error}"
    );
}

#[test]
fn an_address_that_does_not_resolve_is_a_connect_error() {
    // `.invalid` never resolves (RFC 2606).
    let error = build_within_guard("broker.factum.invalid:9092", "events").unwrap_err();
    assert!(matches!(&error, Error::Connect { .. }), "{error:?}");
    assert!(
        error.to_string().contains("broker.factum.invalid:9092"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_does_not_exist_is_named_in_the_error() {
    // Makes sure a broker answers (or skips), then asks for another topic.
    let Some(_existing) = common::fresh_topic("startup", 1).await else {
        return;
    };
    let missing = format!("factum-missing-{}", uuid::Uuid::new_v4().simple());
    let bootstrap = common::bootstrap();
    let error = tokio::task::spawn_blocking(move || build_within_guard(&bootstrap, &missing))
        .await
        .expect("the build thread ran")
        .unwrap_err();
    assert!(matches!(&error, Error::TopicNotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_starts_on_an_existing_topic() {
    let Some(topic) = common::fresh_topic("new", 1).await else {
        return;
    };
    let bootstrap = common::bootstrap();
    let notifier = tokio::task::spawn_blocking(move || KafkaNotifier::new(bootstrap, topic))
        .await
        .expect("the build thread ran")
        .expect("the notifier starts");
    assert!(notifier.topic().starts_with("factum-new-"));
}
