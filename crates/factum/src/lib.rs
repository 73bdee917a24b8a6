#![doc = include_str!("../../../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use factum_core::*;

/// Turns a struct and its impl block into an event-sourced aggregate.
///
/// See the crate documentation for what it generates.
pub use factum_macros::aggregate;

/// Marks a method of an `#[aggregate]` impl block as an event: `#[event("name")]`.
pub use factum_macros::event;

/// The names most programs need: `use factum::prelude::*;` brings the
/// traits, the application and store types, and the `#[aggregate]` and
/// `#[event]` macros.
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::{aggregate, event};
    #[doc(no_inline)]
    pub use factum_core::prelude::*;
    #[cfg(feature = "sqlite")]
    #[doc(no_inline)]
    pub use factum_sqlite::SqliteEventStore;
}

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
#[doc(inline)]
pub use factum_sqlite::{Durability, SqliteError, SqliteEventStore, SqliteOptions};

/// Everything of the SQLite store (`factum-sqlite`), including its backend name.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite {
    #[doc(inline)]
    pub use factum_sqlite::*;
}
