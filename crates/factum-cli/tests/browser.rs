//! `factum console` in a real headless Chromium, driven through
//! chromedriver as a person would use it: each page shows the store, a
//! search opens a stream, an event saved while the live log is open appears
//! there without a reload, and payloads holding markup render as text.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or FACTUM_CHROMIUM and
//! FACTUM_CHROMEDRIVER naming the binaries); skipped with the reason when
//! they are missing, a failure under `CI=true`. With
//! FACTUM_CONSOLE_SCREENSHOTS=DIR it saves a PNG of each page in DIR (how
//! docs/console/ is made).

mod common;

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::console::ConsoleProcess;
use factum_core::{
    CheckpointStore, DeadLetter, DeadLetterStore, EventStore, ExpectedVersion, Lease, Metadata, NewEvent,
    Payload, StreamId,
};
use factum_sqlite::{SqliteEventStore, SqliteProjectionStore};
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{Value, json};

/// What a page may take to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(15);

/// The review whose text tries to inject a script.
const HOSTILE_REVIEW: &str = "<script>alert('xss')</script>Great tea!";
/// The customer name of the event saved while the live log is open.
const HOSTILE_CUSTOMER: &str = "<img src=x onerror=alert(1)>";

#[test]
fn the_console_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    let head = runtime.block_on(seed_shop(&path));
    let console = ConsoleProcess::start_in(Some(dir.path()), &["--store", "shop.db"], &[]);
    let driver = Driver::start(&chromedriver);
    let profile = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let client = connect(&driver, &chromium, profile.path()).await;
        // Close the browser whatever the checks find, then report them.
        let checks =
            std::panic::AssertUnwindSafe(every_page(&client, &console.url, &path, head)).catch_unwind();
        let outcome = checks.await;
        let _ = client.close().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}

async fn every_page(client: &Client, url: &str, path: &Path, head: u64) {
    let shots = screenshots();

    // Overview: the counts and the head, and the last events.
    client.goto(&format!("{url}/")).await.unwrap();
    assert_eq!(text(client, "h1").await, "Overview");
    assert_eq!(text(client, "[data-figure=events]").await, head.to_string());
    assert_eq!(text(client, "[data-figure=head]").await, head.to_string());
    assert_eq!(text(client, "[data-figure=projections]").await, "3");
    assert_eq!(text(client, "[data-figure=dead_letters]").await, "2");
    assert_eq!(
        client
            .find_all(Locator::Css("table.events tbody tr"))
            .await
            .unwrap()
            .len(),
        10
    );
    // The rate appears once the console has two samples of the head.
    wait_until(|| async { text(client, "[data-figure=rate]").await != "measuring…" }).await;
    shot(client, &shots, "overview").await;

    // Streams: every type, then a search by type and id opens the stream.
    client.goto(&format!("{url}/streams")).await.unwrap();
    let rows = texts(client, "table.streams tbody tr").await;
    assert!(
        rows.iter()
            .any(|row| row.contains("Order") && row.contains("ord-1003")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|row| row.contains("Review") && row.contains("rev-1")),
        "{rows:?}"
    );
    shot(client, &shots, "streams").await;
    let form = client.form(Locator::Css("form.search")).await.unwrap();
    form.set_by_name("type", "Order").await.unwrap();
    form.set_by_name("id", "ord-1002").await.unwrap();
    form.submit().await.unwrap();
    wait_for(client, "article.event").await;
    assert_eq!(text(client, "h1").await, "Order/ord-1002");
    let versions = texts(client, "article.event .version").await;
    assert_eq!(versions, ["v1", "v2", "v3", "v4", "v5"]);
    let payload = text(client, "article.event[data-version='3'] pre.payload").await;
    assert!(payload.contains("\"sku\": \"TEA-OOLONG-100\""), "{payload}");
    shot(client, &shots, "stream").await;

    // A payload holding a script shows as text, and nothing was injected.
    client
        .goto(&format!("{url}/stream?type=Review&id=rev-1"))
        .await
        .unwrap();
    let review = text(client, "article.event pre.payload").await;
    assert!(
        review.contains(&format!("\"text\": \"{HOSTILE_REVIEW}\"")),
        "{review}"
    );
    assert_eq!(injected(client).await, 0);

    // Live log: an event saved now appears without a reload.
    client.goto(&format!("{url}/live")).await.unwrap();
    wait_until(|| async { text(client, "#live-status").await == "live" }).await;
    let before = client
        .find_all(Locator::Css("#live-rows tr"))
        .await
        .unwrap()
        .len();
    let position = save_while_watching(path).await;
    let row = format!("#live-rows tr[data-position='{position}']");
    wait_for(client, &row).await;
    let shown = text(client, &row).await;
    assert!(
        shown.contains("Order/ord-1009") && shown.contains("placed"),
        "{shown}"
    );
    assert!(shown.contains(HOSTILE_CUSTOMER), "{shown}");
    assert_eq!(injected(client).await, 0);
    let first = client.find(Locator::Css("#live-rows tr")).await.unwrap();
    assert_eq!(
        first.attr("data-position").await.unwrap(),
        Some(position.to_string())
    );
    assert_eq!(
        client
            .find_all(Locator::Css("#live-rows tr"))
            .await
            .unwrap()
            .len(),
        before + 1
    );
    shot(client, &shots, "live").await;

    // Projections: checkpoint, lag, status, dead letters with their error.
    client.goto(&format!("{url}/projections")).await.unwrap();
    let totals = text(client, "tr[data-projection=order_totals]").await;
    assert!(totals.contains("running on worker-1"), "{totals}");
    let emails = text(client, "tr[data-projection=shipping_emails]").await;
    assert!(emails.contains("stopped") && emails.contains('2'), "{emails}");
    let lag = text(client, "tr[data-projection=search_index] td.num.behind").await;
    assert_eq!(lag, (position - (head - 20)).to_string());
    let letters = texts(client, "article.letter pre.error").await;
    assert_eq!(letters.len(), 2);
    assert!(letters[0].starts_with("SMTP 550"), "{letters:?}");
    shot(client, &shots, "projections").await;
}

/// Elements the store's data could have injected into the page.
async fn injected(client: &Client) -> u64 {
    let count = client
        .execute(
            "return document.querySelectorAll('main script, main img, main b').length;",
            vec![],
        )
        .await
        .unwrap();
    count.as_u64().unwrap()
}

async fn text(client: &Client, css: &str) -> String {
    wait_for(client, css).await;
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn texts(client: &Client, css: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for element in client.find_all(Locator::Css(css)).await.unwrap() {
        texts.push(element.text().await.unwrap());
    }
    texts
}

async fn wait_for(client: &Client, css: &str) {
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("`{css}` did not appear: {error}"));
}

async fn wait_until<F: Future<Output = bool>>(mut condition: impl FnMut() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "the page did not get there in {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn screenshots() -> Option<PathBuf> {
    std::env::var_os("FACTUM_CONSOLE_SCREENSHOTS").map(PathBuf::from)
}

async fn shot(client: &Client, dir: &Option<PathBuf>, name: &str) {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).unwrap();
        let png = client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Chromium and chromedriver, or `None` (skipped; a failure under CI=true).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |variable: &str, names: &[&str]| -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(variable) {
            return Some(PathBuf::from(path));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    };
    let chromium = find(
        "FACTUM_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let chromedriver = find("FACTUM_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Some((chromium, chromedriver)),
        _ => factum_core::testing::service_unavailable(
            "Chromium",
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
        ),
    }
}

/// A chromedriver of this test, on a free port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(binary: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let driver = Self { child, port };
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--hide-scrollbars", "--force-device-scale-factor=1",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap_or_else(|error| panic!("cannot open a Chromium session: {error}"))
}

fn event(event_type: &str, payload: Value) -> NewEvent {
    let metadata = Metadata::default()
        .with_correlation_id(uuid::Uuid::now_v7())
        .with("user", "alice@example.com");
    NewEvent::new(event_type, Payload::encode(&payload).unwrap()).with_metadata(metadata)
}

/// A small shop: orders, accounts, a review trying to inject a script, and
/// three projections (caught up and running; stopped with dead letters;
/// behind). Returns the head position.
async fn seed_shop(path: &Path) -> u64 {
    let store = SqliteEventStore::open(path).await.unwrap();
    let teas = [
        ("TEA-GREEN-250", "7.90"),
        ("TEA-OOLONG-100", "12.40"),
        ("TEA-EARL-500", "9.10"),
    ];
    for order in 0..8u64 {
        let (sku, price) = teas[order as usize % teas.len()];
        let mut events = vec![
            event(
                "placed",
                json!({ "customer": format!("cust-{}", 17 + order), "currency": "EUR" }),
            ),
            event(
                "item_added",
                json!({ "sku": "TEA-GREEN-250", "quantity": 1 + order % 3, "unit_price": "7.90" }),
            ),
            event(
                "item_added",
                json!({ "sku": sku, "quantity": 2, "unit_price": price }),
            ),
            event(
                "paid",
                json!({ "amount": "27.80", "method": if order % 2 == 0 { "card" } else { "invoice" } }),
            ),
        ];
        if order % 3 != 2 {
            events.push(event(
                "shipped",
                json!({ "carrier": "DHL", "tracking": format!("JD01460000{order:04}") }),
            ));
        }
        let stream = StreamId::new("Order", format!("ord-{}", 1001 + order));
        store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    for (index, owner) in ["Ada Lovelace", "Grace Hopper", "Edsger Dijkstra"]
        .iter()
        .enumerate()
    {
        let stream = StreamId::new("Account", format!("acc-{}", 501 + index));
        let events = vec![
            event("opened", json!({ "owner": owner, "plan": "pro" })),
            event("deposited", json!({ "amount": 120 + 35 * index as u64 })),
        ];
        store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    let review = event(
        "posted",
        json!({ "order": "ord-1003", "rating": 1, "text": HOSTILE_REVIEW }),
    );
    store
        .append(
            &StreamId::new("Review", "rev-1"),
            ExpectedVersion::NoStream,
            vec![review],
        )
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();

    let projections = SqliteProjectionStore::new(&store);
    projections.save("order_totals", head).await.unwrap();
    assert!(
        projections
            .acquire("order_totals", "worker-1", Duration::from_secs(3600))
            .await
            .unwrap()
    );
    projections.save("shipping_emails", head - 6).await.unwrap();
    for position in [head - 9, head - 7] {
        let failed = store.read_all(position - 1, 1).await.unwrap().remove(0);
        let error = "SMTP 550 5.1.1 <ada@example.com>: mailbox unavailable";
        projections
            .put(DeadLetter::new("shipping_emails", failed, error, 5))
            .await
            .unwrap();
    }
    assert!(
        projections
            .acquire("shipping_emails", "worker-2", Duration::from_millis(1))
            .await
            .unwrap()
    );
    projections.save("search_index", head - 20).await.unwrap();
    assert!(
        projections
            .acquire("search_index", "worker-3", Duration::from_secs(3600))
            .await
            .unwrap()
    );
    store.close().await.unwrap();
    head
}

/// Saves an order through the store, as an application beside the console
/// would; returns its position.
async fn save_while_watching(path: &Path) -> u64 {
    let store = SqliteEventStore::open(path).await.unwrap();
    let placed = event(
        "placed",
        json!({ "customer": HOSTILE_CUSTOMER, "currency": "EUR" }),
    );
    let result = store
        .append(
            &StreamId::new("Order", "ord-1009"),
            ExpectedVersion::NoStream,
            vec![placed],
        )
        .await
        .unwrap();
    store.close().await.unwrap();
    result.positions[0]
}
