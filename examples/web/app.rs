//! The web service of the `web` example: counters saved through an
//! `Application` on SQLite, and a read model of their totals kept by a
//! projection runner in the same process, in the same file. Shared by
//! `main.rs` and `tests/web.rs`.
//!
//! - `POST /counters/{id}/increment` (body `{"amount": n}`, or empty for 1)
//!   saves the `incremented` event, then waits briefly until the projection
//!   has committed it, and answers with the read model: read-your-writes.
//!   `200` when the read model shows the write, `202` when it did not catch
//!   up in time (the write is saved either way).
//! - `GET /counters/{id}`: the read model's row of one counter.
//! - `GET /counters`: every counter's total.
//! - `GET /projection`: the projection's checkpoint, the log's head, the lag.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use factum::prelude::*;
use factum::{RunnerHandle, RunnerStatus, SqliteProjectionStore, SqliteTransaction};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

factum::id!(CounterId);

#[aggregate]
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter {
    pub(crate) id: CounterId,
    pub(crate) value: i64,
}

#[aggregate]
impl Counter {
    #[event("incremented")]
    pub(crate) fn add(&mut self, amount: i64) {
        self.value += amount;
    }

    /// A command: validates, then records.
    pub(crate) fn add_checked(&mut self, amount: i64) -> Result<(), String> {
        if amount <= 0 {
            return Err(format!("amount must be positive, not {amount}"));
        }
        self.add(amount);
        Ok(())
    }
}

/// The projection's name: the key of its checkpoint.
pub(crate) const PROJECTION: &str = "counter_totals";

/// How long a write waits for the read model to show it.
const READ_YOUR_WRITES: Duration = Duration::from_secs(2);

/// Saves that lose a race with another request are retried this often.
const CONFLICT_RETRIES: usize = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS counter_totals (
    counter_id TEXT PRIMARY KEY,
    value      INTEGER NOT NULL,
    increments INTEGER NOT NULL
)";

/// Keeps `counter_totals`, in the transaction that moves its checkpoint.
struct CounterTotals;

impl TransactionalProjection<SqliteProjectionStore> for CounterTotals {
    fn name(&self) -> &str {
        PROJECTION
    }

    fn aggregate_types(&self) -> Option<&[&str]> {
        Some(&[Counter::TYPE])
    }

    async fn handle(
        &mut self,
        transaction: &mut SqliteTransaction,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        let id = event.aggregate_id().to_owned();
        match event.decode::<Counter>()? {
            Some(CounterEvent::Created(created)) => {
                transaction
                    .execute(
                        "INSERT INTO counter_totals VALUES (?1, ?2, 0)",
                        (id, created.value),
                    )
                    .await?;
            }
            Some(CounterEvent::Incremented { amount }) => {
                transaction
                    .execute(
                        "UPDATE counter_totals SET value = value + ?2, increments = increments + 1 \
                         WHERE counter_id = ?1",
                        (id, amount),
                    )
                    .await?;
            }
            None => {}
        }
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut SqliteTransaction) -> Result<(), HandlerError> {
        transaction.execute("DELETE FROM counter_totals", ()).await?;
        Ok(())
    }
}

/// What the handlers share.
struct AppState {
    counters: Application<Counter, SqliteEventStore>,
    read_model: SqliteProjectionStore,
    runner: Arc<RunnerHandle>,
}

/// How the service ended.
#[derive(Debug)]
pub(crate) struct Stopped {
    /// The runner's status at the end (`Stopped` after a clean shutdown).
    pub(crate) status: RunnerStatus,
    /// The projection's committed checkpoint when its runner stopped.
    pub(crate) checkpoint: u64,
    /// The head of the log then.
    pub(crate) head: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves on `listener` with the database at `database` until `shutdown`
/// completes; then stops the HTTP server (finishing the requests in
/// flight), then the projection runner (committing its checkpoint), then
/// closes the database.
pub(crate) async fn serve(
    listener: TcpListener,
    database: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stopped, BoxError> {
    let events = SqliteEventStore::open(&database).await?;
    let read_model = SqliteProjectionStore::new(&events);
    read_model.execute_batch(SCHEMA).await?;
    let runner = Arc::new(
        ProjectionRunner::transactional(events.clone(), CounterTotals, read_model.clone())
            .batch_size(500)
            .spawn(),
    );
    let state = Arc::new(AppState {
        counters: Application::new(events.clone()),
        read_model,
        runner: Arc::clone(&runner),
    });
    let app = Router::new()
        .route("/counters", get(list_counters))
        .route("/counters/{id}", get(get_counter))
        .route("/counters/{id}/increment", post(increment))
        .route("/projection", get(projection))
        .with_state(state);

    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    // The server has stopped: no request can write any more. Stop the runner
    // at its next event boundary, with its checkpoint committed.
    let stopped = runner.shutdown().await;
    let metrics = runner.metrics().await;
    events.close().await?;
    served?;
    stopped?;
    let metrics = metrics?;
    Ok(Stopped {
        status: metrics.status,
        checkpoint: metrics.checkpoint,
        head: metrics.head,
    })
}

/// An error answer: a status and `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<factum::Error> for ApiError {
    fn from(error: factum::Error) -> Self {
        let status = match &error {
            factum::Error::NotFound { .. } => StatusCode::NOT_FOUND,
            factum::Error::Conflict { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, error.to_string())
    }
}

fn counter_id(id: &str) -> Result<CounterId, ApiError> {
    id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a counter id (a UUID)"),
        )
    })
}

#[derive(Deserialize)]
struct Increment {
    amount: i64,
}

async fn increment(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let id = counter_id(&id)?;
    let amount = if body.is_empty() {
        1
    } else {
        serde_json::from_slice::<Increment>(&body)
            .map_err(|error| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"amount\": n}}: {error}"),
                )
            })?
            .amount
    };
    let mut retries = 0;
    let (saved, version) = loop {
        let mut counter = state.counters.load_or_create(id).await?;
        counter
            .add_checked(amount)
            .map_err(|refused| ApiError(StatusCode::UNPROCESSABLE_ENTITY, refused))?;
        match state.counters.save(&mut counter).await {
            Ok(saved) => break (saved, counter.version()),
            Err(factum::Error::Conflict { .. }) if retries < CONFLICT_RETRIES => retries += 1,
            Err(error) => return Err(error.into()),
        }
    };
    let position = saved.positions.last().copied().unwrap_or(0);
    let caught_up = tokio::time::timeout(READ_YOUR_WRITES, state.runner.wait_for_checkpoint(position))
        .await
        .is_ok_and(|waited| waited.is_ok());
    let status = if caught_up {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let total = total(&state.read_model, id).await?;
    Ok((
        status,
        axum::Json(json!({
            "id": id.to_string(),
            "version": version,
            "position": position,
            "read_model": total,
        })),
    ))
}

/// One counter's row of the read model, as JSON (`null` when absent).
async fn total(read_model: &SqliteProjectionStore, id: CounterId) -> Result<Value, factum::Error> {
    let id = id.to_string();
    read_model
        .with_connection(move |connection| {
            let mut statement = connection
                .prepare_cached("SELECT value, increments FROM counter_totals WHERE counter_id = ?1")?;
            let mut rows = statement.query([&id])?;
            let Some(row) = rows.next()? else {
                return Ok(Value::Null);
            };
            let (value, increments): (i64, i64) = (row.get(0)?, row.get(1)?);
            Ok(json!({ "id": id, "value": value, "increments": increments }))
        })
        .await
}

async fn get_counter(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let id = counter_id(&id)?;
    match total(&state.read_model, id).await? {
        Value::Null => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no counter {id} in the read model"),
        )),
        found => Ok(axum::Json(found)),
    }
}

async fn list_counters(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>, ApiError> {
    let counters = state
        .read_model
        .query(
            "SELECT counter_id, value, increments FROM counter_totals ORDER BY counter_id",
            (),
            |row| {
                let (id, value, increments): (String, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
                Ok(json!({ "id": id, "value": value, "increments": increments }))
            },
        )
        .await?;
    Ok(axum::Json(Value::Array(counters)))
}

async fn projection(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>, ApiError> {
    let metrics = state.runner.metrics().await?;
    Ok(axum::Json(json!({
        "projection": metrics.projection,
        "status": format!("{:?}", metrics.status),
        "checkpoint": metrics.checkpoint,
        "head": metrics.head,
        "lag": metrics.lag,
        "handled": metrics.handled,
        "dead_lettered": metrics.dead_lettered,
    })))
}
