//! Replaying a stream of a million events keeps memory flat, event by event
//! and page by page: rows are decoded as they arrive, one page at a time. (Alone in its test binary, so
//! the peak resident size measured is this test's.)

mod common;

use factum_core::{EventStore, StreamId};
use futures::StreamExt;

const EVENTS: i64 = 1_000_000;

/// Peak resident memory of this process so far, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_million_event_stream_keeps_memory_flat() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(raw) = common::raw_client().await else {
        return;
    };
    let schema = store.schema_name().trim_end_matches(".factum_").to_owned();
    // Written server-side in one statement: the test is about reading.
    raw.execute(
        &format!(
            "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id, event_type, \
             schema_version, payload, metadata, occurred_at, tenant) \
             SELECT nextval('\"{schema}\".factum_position'), 'Counter', 'long', v, gen_random_uuid(), 'incremented', 1, \
                    ('{{\"amount\":' || v || ',\"note\":\"a payload of a typical size for an event\"}}')::json, NULL, now(), \
                    'default' \
               FROM generate_series(1, $1::bigint) v"
        ),
        &[&EVENTS],
    )
    .await
    .unwrap();

    let Some(before) = peak_rss_kib() else {
        eprintln!("SKIPPED: no /proc/self/status to measure memory with");
        return;
    };
    let mut events = store.read_stream(&StreamId::new("Counter", "long"), 1);
    let mut expected = 1;
    let mut payload_bytes = 0;
    while let Some(event) = events.next().await {
        let event = event.unwrap();
        assert_eq!(event.version, expected);
        payload_bytes += event.payload.as_str().len();
        expected += 1;
    }
    assert_eq!(expected, EVENTS as u64 + 1);
    drop(events);
    // Replay's path: the store's pages as they are, one in memory at a time.
    let mut pages = store.read_stream_pages(&StreamId::new("Counter", "long"), 1);
    let mut expected = 1;
    let mut largest_page = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        largest_page = largest_page.max(page.len());
        for event in page {
            assert_eq!(event.version, expected);
            expected += 1;
        }
    }
    assert_eq!(expected, EVENTS as u64 + 1);
    assert_eq!(largest_page, 4096, "the store's own page size");
    let after = peak_rss_kib().unwrap_or(before);
    let grown_mib = (after.saturating_sub(before)) / 1024;
    // Holding the stream would take well over 200 MiB (the payloads alone
    // are about 60 MiB); pages of 4096 events take a few.
    assert!(
        grown_mib < 48,
        "peak memory grew by {grown_mib} MiB while replaying {EVENTS} events ({} MiB of payload)",
        payload_bytes / (1024 * 1024)
    );
}
