//! Events out through the transactional outbox: accounts saved on SQLite
//! with the outbox enabled, an `OutboxRelay` publishing them to Kafka, and
//! a consumer printing what it reads back from the topic.
//!
//! Run it with a broker at `FACTUM_KAFKA_BOOTSTRAP` (default
//! `127.0.0.1:9092`; `docker compose up -d` starts one):
//! `cargo run --example kafka`. It publishes to the topic
//! `factum-example-accounts`, creating it when missing. Without a broker it
//! says so on one line and exits with status 1.

#![allow(missing_docs)]

use std::collections::HashSet;
use std::time::Duration;

use factum::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use factum::kafka::rdkafka::client::DefaultClientContext;
use factum::kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use factum::kafka::rdkafka::message::Message;
use factum::kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use factum::kafka::{Error as KafkaError, KafkaNotifier};
use factum::prelude::*;
use factum::{Outbox, OutboxRelay};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TOPIC: &str = "factum-example-accounts";
const PARTITIONS: i32 = 3;

factum::id!(AccountId);

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub id: AccountId,
    pub balance: i64,
}

#[aggregate]
impl Account {
    #[event("deposited")]
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    #[event("withdrawn")]
    pub fn withdraw(&mut self, amount: i64) -> Result<(), String> {
        if amount > self.balance {
            return Err(format!(
                "cannot withdraw {amount} from a balance of {}",
                self.balance
            ));
        }
        self.balance -= amount;
        Ok(())
    }
}

fn bootstrap() -> String {
    std::env::var("FACTUM_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// The notifier for [`TOPIC`], creating the topic when the broker lacks it.
async fn notifier() -> Result<KafkaNotifier, BoxError> {
    let start = || {
        KafkaNotifier::builder(bootstrap())
            .topic(TOPIC)
            .startup_timeout(Duration::from_secs(5))
            .build()
    };
    match tokio::task::spawn_blocking(start).await? {
        Err(KafkaError::TopicNotFound { .. }) => {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", bootstrap())
                .create()?;
            let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
            for created in admin.create_topics([&topic], &AdminOptions::new()).await? {
                created.map_err(|(name, code)| format!("creating topic {name}: {code}"))?;
            }
            Ok(tokio::task::spawn_blocking(start).await??)
        }
        started => Ok(started?),
    }
}

/// Reads the topic from the beginning until every event id of `wanted`
/// has come by, printing those messages.
async fn read_back(wanted: &HashSet<String>) -> Result<(), BoxError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", "factum-example-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    // assign(), not subscribe(): no group membership to wait for.
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition_offset(TOPIC, partition, Offset::Beginning)?;
    }
    consumer.assign(&partitions)?;
    let mut seen = HashSet::new();
    while seen.len() < wanted.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .map_err(|_| "no message arrived within 30 s")??;
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        let id = serde_json::from_str::<serde_json::Value>(&value)?["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if wanted.contains(&id) && seen.insert(id) {
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            println!("partition {} key {key}\n  {value}", message.partition());
        }
    }
    Ok(())
}

async fn run() -> Result<(), BoxError> {
    let notifier = notifier().await?;
    let dir = tempfile::tempdir()?;
    let store = SqliteEventStore::open(dir.path().join("accounts.db")).await?;
    // Every save from now on writes its outbox rows in its own transaction.
    store.enable_outbox().await?;
    let accounts = Application::<Account, _>::new(store.clone());

    let mut alice = Account::create(AccountId::generate(), 0);
    alice.deposit(100);
    accounts.save(&mut alice).await?;
    let mut bob = Account::create(AccountId::generate(), 0);
    bob.deposit(20);
    bob.withdraw(5)?;
    accounts.save(&mut bob).await?;
    alice.withdraw(30)?;
    accounts.save(&mut alice).await?;
    let saved = store.read_all(0, 100).await?;
    println!(
        "saved {} events; {} wait in the outbox",
        saved.len(),
        store.outbox().pending().await?
    );

    let relay = OutboxRelay::new(store.outbox(), notifier).spawn();
    while store.outbox().pending().await? > 0 {
        if let Some(error) = relay.metrics().last_error {
            println!("the relay retries: {error}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.shutdown().await?;
    println!(
        "the relay published {} messages to {TOPIC}; reading them back:",
        relay.metrics().published
    );

    let wanted: HashSet<String> = saved.iter().map(|event| event.event_id.to_string()).collect();
    read_back(&wanted).await?;
    store.close().await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(error) = run().await {
        // One line: the error and each cause it does not already spell out.
        let mut line = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            source = cause.source();
        }
        eprintln!("error: {line}");
        std::process::exit(1);
    }
}
