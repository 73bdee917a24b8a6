#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use factum_core::*;

/// Turns a struct and its impl block into an event-sourced aggregate.
///
/// Put `#[aggregate]` on the struct (above its `#[derive]`, so the derives
/// see the field it adds) and on the impl block that holds its `#[event]`
/// methods:
///
/// ```
/// use factum::prelude::*;
///
/// factum::id!(CounterId);
///
/// #[aggregate]
/// #[derive(Debug, Clone, Default)]
/// pub struct Counter {
///     pub id: CounterId, // the field named `id` is the aggregate id
///     pub value: i64,
/// }
///
/// #[aggregate]
/// impl Counter {
///     #[event("incremented")]
///     pub fn add(&mut self, amount: i64) {
///         self.value += amount;
///     }
///
///     #[event("reset")]
///     pub fn reset(&mut self) -> Result<(), String> {
///         if self.value == 0 {
///             return Err("already at zero".into()); // nothing is recorded
///         }
///         self.value = 0;
///         Ok(())
///     }
/// }
///
/// let id = CounterId::generate();
/// let mut counter = Counter::create(id, 0); // records `created`
/// counter.add(2);
/// assert!(counter.reset().is_ok());
/// assert!(counter.reset().is_err());
/// assert_eq!(counter.version(), 3);
/// assert_eq!(
///     counter.pending_events(),
///     [
///         CounterEvent::Created(CounterCreated { id, value: 0 }),
///         CounterEvent::Incremented { amount: 2 },
///         CounterEvent::Reset,
///     ]
/// );
///
/// // Replay calls the method bodies directly: it rebuilds the state and
/// // records nothing.
/// let mut history = counter.pending_events().to_vec().into_iter();
/// let mut replayed = Counter::from_first_event(history.next().unwrap()).unwrap();
/// for event in history {
///     replayed.apply(event).unwrap();
/// }
/// assert_eq!(replayed.value, 0);
/// assert!(replayed.pending_events().is_empty());
/// ```
///
/// # On the struct
///
/// The struct needs named fields, one of them `id` (its type is the
/// aggregate id: a `factum::id!` type, `String`, `Uuid`, an integer...), and
/// no generics. Every field type must be `Serialize + DeserializeOwned +
/// Clone + Send + Sync + 'static`, plus `Debug` and `PartialEq`, because it
/// is stored in the `created` event. The macro generates:
///
/// - a hidden bookkeeping field (version, pending events) that takes no part
///   in the struct's derives: it compares equal, hashes to nothing, and serde
///   skips it when the struct derives `Serialize` or `Deserialize`. A struct
///   literal outside the macro sets it with `__factum: Default::default()`;
/// - `<Name>Created`, a struct with every field (same order, same
///   visibility), deriving serde, `Debug`, `Clone` and `PartialEq`;
/// - `Name::create(field, ...)`, taking every field in order, which builds
///   the aggregate and records `created`;
/// - when the struct derives `Default`, or says `#[aggregate(default)]`
///   beside a hand-written `impl Default`, an impl of [`DefaultAggregate`]
///   (the start [`Application::load_or_create`] uses: default fields, the
///   given id, `created` recorded).
///
/// Options of the struct: `default` (above), `name = "counter"` (the stored
/// aggregate type, [`Aggregate::TYPE`]; default: the struct's name; keep it
/// when renaming the struct) and `snapshot_version = N` (the version of the
/// shape its snapshots record; default: derived from the fields' names,
/// types and serde attributes). Option of the impl block: `retired =
/// ["name"]`, event types removed from the code whose stored events replay
/// skips and counts. See the README's "Evolving your aggregates", and
/// [`upcast`](macro@upcast) for upcasters.
///
/// # On the impl block
///
/// - `pub enum <Name>Event` with `Created(<Name>Created)` and one variant per
///   `#[event]` method, named in UpperCamelCase after the event name
///   (`money_deposited`, `money-deposited`, `money.deposited` →
///   `MoneyDeposited`), holding the method's arguments as fields. It derives
///   `Debug`, `Clone`, `PartialEq` and serde, written as
///   `{"event_type": "incremented", "payload": {"amount": 2}}`; the payload
///   stored for an event is the JSON object of its fields;
/// - `impl From<<Name>Created> for <Name>Event` and [`DomainEvent`] for it;
/// - [`Aggregate`] for the struct;
/// - for each `#[event]` method, a method with the same signature that runs
///   the body and, when it returns `()` or `Ok(())`, records the event with
///   (clones of) the arguments. On `Err` nothing is recorded.
///
/// Other methods and items of the block pass through untouched.
///
/// # Replay
///
/// [`Aggregate::apply`] calls the bodies directly, so replay cannot record
/// anything. A body that returns `Err` during replay becomes
/// [`Error::Replay`] naming the stream, version and event type. Its
/// `source()` is the body's own error when that type implements
/// `std::error::Error` (downcast it to get it back), otherwise an
/// [`ApplyError`] holding its `Display` text (`String` errors, for
/// instance): the error type of an `#[event]` method must implement one of
/// the two.
///
/// ```
/// # use factum::prelude::*;
/// # #[derive(Debug, PartialEq)]
/// # pub struct AlreadyZero;
/// # impl std::fmt::Display for AlreadyZero {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("already at zero") }
/// # }
/// # impl std::error::Error for AlreadyZero {}
/// # #[aggregate]
/// # #[derive(Debug, Clone, Default)]
/// # pub struct Counter { pub id: String, pub value: i64 }
/// # #[aggregate]
/// # impl Counter {
/// #     #[event("reset")]
/// #     pub fn reset(&mut self) -> Result<(), AlreadyZero> {
/// #         if self.value == 0 { return Err(AlreadyZero); }
/// #         self.value = 0;
/// #         Ok(())
/// #     }
/// # }
/// let mut counter = Counter::create("c-1".into(), 0);
/// // What replay meets when the stored history holds a `reset` at zero;
/// // `Error::Replay::source()` is this same `AlreadyZero`.
/// let error = counter.apply(CounterEvent::Reset).unwrap_err();
/// let body = error.get_ref().and_then(|body| body.downcast_ref::<AlreadyZero>());
/// assert_eq!(body, Some(&AlreadyZero));
/// ```
///
/// # Checked at compile time
///
/// A missing `id` field, a tuple, unit or generic struct, an unknown option
/// or one on the wrong item,
/// `Copy`, `#[derive(...)]` written above `#[aggregate]`, a duplicate or
/// reserved (`created`) event name, two names that become the same variant,
/// a malformed event name, an `#[event]` method that is `async`, `const`,
/// `unsafe` or generic, that takes anything but `&mut self`, destructures or
/// borrows an argument, or returns anything but `()` or `Result<(), E>`, an
/// error type `E` that is neither `std::error::Error` nor `Display`, a field
/// or argument type that cannot be stored, an id type that cannot be an id,
/// a struct without its `#[aggregate]` impl block (or an impl block whose
/// struct lacks `#[aggregate]`), `load_or_create` on an
/// aggregate without `Default`, and the rules of evolution (a version of 0
/// or not a whole number, an upcaster of an unknown event, of an old name or
/// from a version at or above the current one, two upcasters for one step, a
/// missing step, an alias equal to another event's name, a retired event
/// still in the code, a malformed aggregate name or alias): each is one error, on the token at fault,
/// whose first line says what to write instead; all of an item's
/// independent mistakes are reported together.
///
/// Two mistakes also bring rustc's own errors, from code factum does not
/// write: `#[derive]` above `#[aggregate]` (the derives expand before the
/// hidden field exists, so factum's message is followed by "missing field
/// `__factum`"), and an impl block whose struct lacks `#[aggregate]` (the
/// enum names `<Name>Created`, so "cannot find type `<Name>Created`" comes
/// before factum's "`<Name>` is missing `#[aggregate]` on its struct").
pub use factum_macros::aggregate;

/// Marks a method of an `#[aggregate]` impl block as an event:
/// `#[event("name")]`.
///
/// The name is what the store keeps as the event type: it starts with an
/// ASCII letter, followed by ASCII letters, digits, `_`, `-` or `.`.
/// `created` is reserved for the first event of every aggregate. To rename
/// an event, keep the old name readable: `#[event("added", aliases =
/// ["incremented"])]`. When its payload changes shape, raise its schema
/// version, `#[event("added", version = 2)]` (default 1; new events are
/// written at it), and lift older payloads with [`upcast`](macro@upcast)
/// functions.
///
/// The method takes `&mut self` and named arguments of storable types, and
/// returns `()` or `Result<(), E>` with `E: std::error::Error` or
/// `E: Display`. Calling it runs the body
/// and records the event when the body succeeds; replay runs only the body.
///
/// ```
/// use factum::prelude::*;
///
/// #[aggregate]
/// #[derive(Debug, Clone)]
/// pub struct Account {
///     pub id: String,
///     pub balance: i64,
/// }
///
/// #[aggregate]
/// impl Account {
///     /// Puts money in.
///     #[event("money.deposited")]
///     pub fn deposit(&mut self, amount: i64, reference: Option<String>) {
///         self.balance += amount;
///     }
///
///     #[event("money.withdrawn")]
///     pub fn withdraw(&mut self, amount: i64) -> Result<(), String> {
///         if amount > self.balance {
///             return Err(format!("balance {} does not cover {amount}", self.balance));
///         }
///         self.balance -= amount;
///         Ok(())
///     }
/// }
///
/// let mut account = Account::create("acc-1".into(), 0);
/// account.deposit(10, None);
/// assert!(account.withdraw(50).is_err()); // not recorded
/// account.withdraw(4).unwrap();
/// assert_eq!(account.version(), 3);
/// assert_eq!(account.pending_events()[2], AccountEvent::MoneyWithdrawn { amount: 4 });
/// assert_eq!(account.pending_events()[2].event_type(), "money.withdrawn");
/// ```
///
/// Outside an `#[aggregate]` impl block, `#[event]` is a compile error that
/// says to put `#[aggregate]` on the impl block.
pub use factum_macros::event;

/// Marks a function of an `#[aggregate]` impl block as an upcaster: it
/// lifts stored payloads of one event type from schema version `N` to
/// `N + 1` while reading (stored events are never rewritten).
///
/// `#[upcast("name", from = N)]` lifts the event `name`, which declares its
/// current version with `#[event("name", version = M)]`; every step from 1
/// to `M - 1` must be there (a missing one is a compile error naming the
/// event and version). `#[upcast("created", from = N)]` lifts `created`,
/// whose version is one above its last upcaster.
/// `#[upcast(snapshot, from = N)]` lifts snapshots taken at shape version
/// `N` (with `#[aggregate(snapshot_version = M)]` on the struct); without
/// one, a snapshot of an older shape is rebuilt from the events.
///
/// The function takes the payload as a `serde_json::Value` and returns
/// `Result<Value, UpcastError>`; an `Err` is [`Error::Upcast`] naming the
/// stream, version, event type and both schema versions.
///
/// ```
/// use factum::prelude::*;
/// use serde_json::Value;
///
/// #[aggregate]
/// #[derive(Debug, Clone, Default)]
/// pub struct Counter {
///     pub id: String,
///     pub value: i64,
/// }
///
/// #[aggregate]
/// impl Counter {
///     // Version 1 called the amount `by`.
///     #[event("incremented", version = 2)]
///     pub fn add(&mut self, amount: i64) {
///         self.value += amount;
///     }
///
///     #[upcast("incremented", from = 1)]
///     fn incremented_v1(mut payload: Value) -> Result<Value, UpcastError> {
///         let by = payload.get("by").cloned().ok_or("`by` is missing")?;
///         payload["amount"] = by;
///         Ok(payload)
///     }
/// }
///
/// assert_eq!(Counter::EVOLUTION.event("incremented").map(|event| event.version()), Some(2));
/// ```
///
/// Outside an `#[aggregate]` impl block, `#[upcast]` is a compile error.
pub use factum_macros::upcast;

/// The names most programs need: `use factum::prelude::*;` brings the
/// traits, the application and store types, and the `#[aggregate]` and
/// `#[event]` macros.
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::{aggregate, event, upcast};
    #[doc(no_inline)]
    pub use factum_core::prelude::*;
    #[cfg(feature = "postgres")]
    #[doc(no_inline)]
    pub use factum_postgres::PostgresEventStore;
    #[cfg(feature = "sqlite")]
    #[doc(no_inline)]
    pub use factum_sqlite::SqliteEventStore;
}

// The backends' types are documented once, in their module (`factum::sqlite`,
// `factum::postgres`, the sqlx shape); the root re-exports the common ones
// without inlining them again, so `factum::SqliteEventStore` works too.
#[cfg(feature = "sqlite")]
#[doc(no_inline)]
pub use factum_sqlite::{
    Durability, SqliteError, SqliteEventStore, SqliteOptions, SqliteOutbox, SqliteProjectionStore,
    SqliteTransaction,
};

/// The SQLite store (`factum-sqlite`): the embedded, durable default. Its
/// main types are also re-exported at the crate root.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite {
    #[doc(inline)]
    pub use factum_sqlite::*;
}

#[cfg(feature = "kafka")]
#[doc(no_inline)]
pub use factum_kafka::{KafkaNotifier, KafkaNotifierBuilder};

/// Publishing to Kafka (`factum-kafka`): [`KafkaNotifier`],
/// a notifier and outbox publisher on rdkafka with a bundled librdkafka.
/// Its main types are also re-exported at the crate root.
#[cfg(feature = "kafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
pub mod kafka {
    #[doc(inline)]
    pub use factum_kafka::*;
}

#[cfg(feature = "postgres")]
#[doc(no_inline)]
pub use factum_postgres::{
    PostgresError, PostgresEventStore, PostgresOptions, PostgresOutbox, PostgresProjectionStore,
    PostgresTransaction,
};

/// The PostgreSQL store (`factum-postgres`), with the pool and connection
/// types it takes. Its main types are also re-exported at the crate root.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres {
    #[doc(inline)]
    pub use factum_postgres::*;
}
