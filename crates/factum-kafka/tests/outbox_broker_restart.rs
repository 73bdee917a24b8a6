//! A broker stopped and started again while a relay runs: nothing is lost,
//! and the relay recovers on its own (its metrics show failing rounds, then
//! none). Each test runs its own tansu broker on a free port (the shared
//! broker stays up for the other tests); tansu keeps its log in memory, so
//! the restarted broker is empty and the test creates the topic again (and
//! the notifier has to replace its idempotent producer, whose producer id
//! the new broker does not know).
//! Needs the `tansu` binary (`TANSU`, `PATH` or `~/.cargo/bin`); skipped
//! without it, except under `CI=true`.

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::stores::{self, PATIENCE, quick};
use common::{create_topic, read_until};
use factum_core::{
    EventStore, ExpectedVersion, NewEvent, Outbox, Payload, RecordedEvent, RelayHandle, StreamId,
};
use factum_kafka::KafkaNotifier;
use uuid::Uuid;

/// A tansu broker of this test, stopped when dropped.
struct Broker {
    binary: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Starts tansu on a free port, or `None` (skipped) without a binary.
    async fn start(log_dir: &std::path::Path) -> Option<Self> {
        let Some(binary) = tansu_binary() else {
            return factum_core::testing::service_unavailable(
                "a tansu broker of the test's own",
                "no tansu binary (set TANSU, or put it on PATH or in ~/.cargo/bin)",
            );
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut broker = Self {
            binary,
            port,
            log: log_dir.join("tansu.log"),
            child: None,
        };
        broker.run().await;
        Some(broker)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until it listens.
    async fn run(&mut self) {
        let url = format!("tcp://{}", self.address());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the broker's log file opens");
        let child = Command::new(&self.binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::from(log.try_clone().expect("the log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let listening = tokio::time::timeout(Duration::from_secs(60), async {
            while tokio::net::TcpStream::connect(self.address()).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        if listening.await.is_err() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("tansu did not listen on {} within 60 s:\n{log}", self.address());
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|directory| directory.join("tansu"));
    let in_cargo = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/tansu"));
    on_path.chain(in_cargo).find(|candidate| candidate.is_file())
}

async fn append_round<S: EventStore>(store: &S, round: u64) {
    for account in 0..5 {
        let events = (0..4)
            .map(|index| {
                NewEvent::new(
                    "deposited",
                    Payload::encode(&serde_json::json!({ "round": round, "index": index })).unwrap(),
                )
            })
            .collect();
        store
            .append(
                &StreamId::new("Account", format!("acct-{account}")),
                ExpectedVersion::Any,
                events,
            )
            .await
            .expect("the append succeeds");
    }
}

/// Reads `topic` at `address` until every event of `events` has arrived.
async fn read_every(address: &str, topic: &str, events: &[RecordedEvent]) {
    let wanted: HashSet<Uuid> = events.iter().map(|event| event.event_id).collect();
    let mut seen = HashSet::new();
    read_until(address, topic, 2, |received| {
        if let Some(last) = received.last() {
            seen.insert(last.event_id());
        }
        wanted.is_subset(&seen)
    })
    .await;
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not happen within {PATIENCE:?}"));
}

async fn survives_a_broker_restart<S: EventStore, O: Outbox + Clone>(store: &S, outbox: O) {
    let log_dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = Broker::start(log_dir.path()).await else {
        return;
    };
    let address = broker.address();
    let topic = format!("factum-restart-{}", Uuid::now_v7().simple());
    create_topic(&address, &topic, 2)
        .await
        .expect("the topic is created");
    let notifier = KafkaNotifier::builder(&address)
        .topic(&topic)
        .set("delivery.timeout.ms", "2000")
        .set("reconnect.backoff.max.ms", "200")
        .set("topic.metadata.refresh.interval.ms", "500")
        .restart_stalled_after(Duration::from_secs(3))
        .build()
        .expect("the notifier starts");
    let relay: RelayHandle = quick(outbox.clone(), notifier.clone()).spawn();

    append_round(store, 1).await;
    let before = store.read_all(0, 1000).await.unwrap();
    wait_for("publishing before the outage", async || {
        outbox.pending().await.unwrap() == 0
    })
    .await;
    read_every(&address, &topic, &before).await;

    broker.stop();
    append_round(store, 2).await;
    let during = store.read_all(before.len() as u64, 1000).await.unwrap();
    wait_for("failing rounds while the broker is down", async || {
        relay.metrics().failing_rounds >= 2
    })
    .await;
    assert_eq!(
        outbox.pending().await.unwrap(),
        during.len() as u64,
        "nothing is marked sent while the broker is down"
    );

    broker.run().await;
    create_topic(&address, &topic, 2)
        .await
        .expect("the topic is created on the empty broker");
    wait_for("recovery", async || {
        outbox.pending().await.unwrap() == 0 && relay.metrics().failing_rounds == 0
    })
    .await;
    read_every(&address, &topic, &during).await;
    let metrics = relay.metrics();
    relay.shutdown().await.unwrap();
    assert!(metrics.retried >= during.len() as u64, "{metrics:?}");
    assert!(metrics.last_error.is_some(), "{metrics:?}");
    assert_eq!(metrics.parked, 0, "an outage parks nothing: {metrics:?}");
    // tansu keeps its log in memory and comes back empty, without the
    // producer state the idempotent producer resumes from.
    assert!(notifier.producer_restarts() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_and_the_relay_recovers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = stores::sqlite(&dir).await;
    survives_a_broker_restart(&store, store.outbox()).await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_and_the_relay_recovers_on_postgres() {
    let Some(store) = stores::postgres().await else {
        return;
    };
    survives_a_broker_restart(&store, store.outbox()).await;
    stores::drop_postgres(store).await;
}
