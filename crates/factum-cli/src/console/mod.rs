//! `console [--addr 127.0.0.1:7070] [--token T]`: a read-only web console
//! of the store, served by the command itself.
//!
//! Pages are rendered on the server with `maud`, which escapes every value
//! it writes, so a payload holding markup shows as text; the stylesheet
//! and the one small script are compiled into the binary. Each page reads
//! a bounded slice of the store (a page of streams, a page of one stream's
//! events, the last events of the log), whatever its size. The live log is
//! a server-sent event stream; `/metrics` is the Prometheus exposition of
//! this process's recorder plus gauges of the store read at scrape time.
//!
//! Off loopback the console needs a token (`--token`): a client sends it as
//! `Authorization: Bearer T`, or opens any page once with `?token=T`, which
//! sets a cookie and drops the token from the address.

mod assets;
mod auth;
mod html;
mod json;
mod live;
mod overview;
mod projections;
mod prometheus;
mod rate;
mod stream;
mod streams;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::get;
use clap::Args;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::commands::{Context, Store};
use crate::error::CliError;

/// `factum console`'s options.
#[derive(Debug, Args)]
pub(crate) struct ConsoleArgs {
    /// Where to listen. Anything but a loopback address needs --token.
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "IP:PORT")]
    pub(crate) addr: SocketAddr,
    /// Require this token: `Authorization: Bearer T`, or open `/?token=T`
    /// once (it is kept in a cookie).
    #[arg(long, env = "FACTUM_CONSOLE_TOKEN", hide_env_values = true, value_name = "T")]
    pub(crate) token: Option<String>,
}

/// What every handler reads: the store and the console's own state.
pub(crate) struct Console<S> {
    pub(crate) store: S,
    /// The store, as the page header names it.
    pub(crate) description: String,
    pub(crate) rate: rate::Rate,
    pub(crate) prometheus: PrometheusHandle,
    pub(crate) token: Option<auth::Token>,
    /// Turns true when the console stops: live streams end with it, so
    /// the server's graceful shutdown does not wait for browsers.
    pub(crate) stopping: watch::Receiver<bool>,
}

pub(crate) type Shared<S> = Arc<Console<S>>;

pub(crate) async fn run<S: Store>(store: &S, args: &ConsoleArgs, context: &Context) -> Result<(), CliError> {
    let token = auth::Token::required(args.addr, args.token.as_deref())?;
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| CliError::failed("cannot install the Prometheus recorder").with_source(error))?;
    prometheus::describe();
    let listener = tokio::net::TcpListener::bind(args.addr).await.map_err(|error| {
        CliError::unavailable(format!("cannot listen on {}", args.addr)).with_source(error)
    })?;
    let bound = listener
        .local_addr()
        .map_err(|error| CliError::failed("cannot read the console's address").with_source(error))?;
    let (stop, stopping) = watch::channel(false);
    let console = Arc::new(Console {
        store: store.clone(),
        description: context.description.clone(),
        rate: rate::Rate::default(),
        prometheus,
        token,
        stopping,
    });
    let sampler = tokio::spawn(rate::sample(console.clone()));
    announce(bound, console.token.is_some(), &context.description);
    let served = axum::serve(listener, router(console))
        .with_graceful_shutdown(async move {
            crate::commands::tail::stopped().await;
            let _ = stop.send(true);
        })
        .await;
    sampler.abort();
    served.map_err(|error| CliError::failed("the console stopped").with_source(error))
}

/// The console's address on standard output (tests read it there, which
/// is how `--addr 127.0.0.1:0` is usable).
fn announce(bound: SocketAddr, with_token: bool, description: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "factum console for {description} at http://{bound}/");
    if with_token {
        let _ = writeln!(
            out,
            "a token is required: open http://{bound}/?token=YOUR_TOKEN once, or send Authorization: Bearer YOUR_TOKEN"
        );
    }
    let _ = writeln!(out, "Ctrl-C stops it");
    let _ = out.flush();
}

/// Every page and feed of the console, behind the token check.
pub(crate) fn router<S: Store>(console: Shared<S>) -> Router {
    Router::new()
        .route("/", get(overview::page::<S>))
        .route("/overview.json", get(overview::figures::<S>))
        .route("/streams", get(streams::page::<S>))
        .route("/stream", get(stream::page::<S>))
        .route("/live", get(live::page::<S>))
        .route("/live/events", get(live::feed::<S>))
        .route("/projections", get(projections::page::<S>))
        .route("/metrics", get(prometheus::scrape::<S>))
        .route("/assets/console.css", get(assets::stylesheet))
        .route("/assets/console.js", get(assets::script))
        .fallback(html::not_found)
        .layer(middleware::from_fn_with_state(console.clone(), auth::check::<S>))
        .layer(middleware::from_fn(html::security_headers))
        .with_state(console)
}
