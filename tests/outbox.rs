//! The outbox through the facade: `Application::save` on a store with its
//! outbox enabled writes the rows with the events, and a save that cannot
//! serialise its payload writes neither (on SQLite and PostgreSQL).

#![allow(missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use factum::prelude::*;
use factum::testing::outbox::{ScriptedBus, Watched};
use factum::{Outbox, OutboxRelay, PostgresOptions};

factum::id!(SurveyId);

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Survey {
    pub id: SurveyId,
    pub answers: u32,
}

#[aggregate]
impl Survey {
    #[event("answered")]
    pub fn answer(&mut self, scores: HashMap<(u8, u8), u32>) {
        let _ = scores;
        self.answers += 1;
    }

    #[event("noted")]
    pub fn note(&mut self, text: String) {
        let _ = text;
    }
}

/// JSON object keys must be strings: a map keyed by pairs cannot be saved.
fn unserialisable() -> HashMap<(u8, u8), u32> {
    HashMap::from([((1, 2), 3)])
}

async fn saves_write_rows_and_a_failed_save_writes_none<S: EventStore + Clone, O: Outbox>(
    store: S,
    outbox: O,
) {
    let app = Application::<Survey, _>::new(store.clone());
    let mut survey = Survey::create(SurveyId::generate(), 0);
    survey.note("first".to_owned());
    app.save(&mut survey).await.expect("a plain save succeeds");
    assert_eq!(outbox.pending().await.unwrap(), 2, "one row per saved event");

    survey.note("kept in memory".to_owned());
    survey.answer(unserialisable());
    let error = app
        .save(&mut survey)
        .await
        .expect_err("the payload cannot be serialised");
    assert!(error.to_string().contains("answered"), "{error}");
    assert_eq!(store.head_position().await.unwrap(), 2, "no event stored");
    assert_eq!(outbox.pending().await.unwrap(), 2, "and no outbox row");

    let bus = Watched::new(ScriptedBus::new());
    let relay = OutboxRelay::new(outbox, bus.clone())
        .poll_interval(Duration::from_millis(5))
        .spawn();
    tokio::time::timeout(Duration::from_secs(30), async {
        while bus.published().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the relay publishes the saved events");
    relay.shutdown().await.unwrap();
    let types: Vec<String> = bus
        .published()
        .iter()
        .map(|event| event.event_type.to_string())
        .collect();
    assert_eq!(types, ["created", "noted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_saves_write_rows_and_a_failed_save_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("surveys.db"))
        .await
        .unwrap();
    store.enable_outbox().await.unwrap();
    saves_write_rows_and_a_failed_save_writes_none(store.clone(), store.outbox()).await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_saves_write_rows_and_a_failed_save_writes_none() {
    let url = std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let schema = format!("fs_outbox_{}", std::process::id());
    let store = match PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(&schema)).await {
        Ok(store) => store,
        Err(error) => {
            factum::testing::service_unavailable::<()>("PostgreSQL", error);
            return;
        }
    };
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
    store.ensure_schema().await.unwrap();
    store.enable_outbox().await.unwrap();
    saves_write_rows_and_a_failed_save_writes_none(store.clone(), store.outbox()).await;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
    store.close().await.unwrap();
}
