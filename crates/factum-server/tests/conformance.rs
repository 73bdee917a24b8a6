//! The shared event-store conformance suite, run through a real server on
//! 127.0.0.1 and a `RemoteEventStore`: over the in-memory store and over a
//! SQLite file.

mod common;

mod memory {
    use super::common;

    use factum_remote::RemoteEventStore;

    async fn fresh_store() -> Option<RemoteEventStore> {
        common::remote_memory_store().await
    }

    factum_core::conformance_suite!(fresh_store);
    factum_core::contiguous_append_suite!(fresh_store);
    factum_core::__conformance_tests!(fresh_store; unscoped_stream_subscription_follows_the_default_tenant);
}

mod sqlite {
    use super::common;

    use factum_remote::{RemoteEventStore, RemoteOptions};
    use factum_server::Server;
    use factum_sqlite::SqliteEventStore;

    async fn fresh_store() -> Option<RemoteEventStore> {
        // The server keeps the file open until the test's runtime ends, after
        // this function returns, so the directory is kept (under the target
        // directory's scratch space, which cargo provides to integration tests).
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temporary directory")
            .keep();
        let store = SqliteEventStore::open(dir.join("events.db"))
            .await
            .expect("a fresh SQLite store opens");
        let server = common::start(Server::new(store)).await;
        Some(common::connect(&server, RemoteOptions::new()).await)
    }

    factum_core::conformance_suite!(fresh_store);
    factum_core::contiguous_append_suite!(fresh_store);
    factum_core::__conformance_tests!(fresh_store; unscoped_stream_subscription_follows_the_default_tenant);
}
