//! An axum service on factum: `POST /counters/{id}/increment` saves a
//! Counter through an `Application` on SQLite; `GET /counters/{id}` and
//! `GET /counters` answer from a read model that a projection runner in the
//! same process keeps in the same file, exactly once; `GET /projection`
//! shows the runner's checkpoint and lag. Ctrl-C (or SIGTERM) stops the HTTP
//! server, then the runner, cleanly.
//!
//! ```text
//! cargo run --example web                 # database web.db, http://127.0.0.1:3000
//! cargo run --example web -- other.db     # or FACTUM_WEB_DB=other.db
//! FACTUM_WEB_ADDR=0.0.0.0:8080 cargo run --example web
//!
//! curl -X POST localhost:3000/counters/0196b4e2-7c1a-7c3e-9f00-000000000001/increment -d '{"amount":2}'
//! curl localhost:3000/counters
//! curl localhost:3000/projection
//! ```

#![allow(missing_docs)]

mod app;

use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let address = std::env::var("FACTUM_WEB_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let database = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FACTUM_WEB_DB").ok())
        .unwrap_or_else(|| "web.db".to_owned());
    let listener = TcpListener::bind(&address).await?;
    let address = listener.local_addr()?;
    println!("serving on http://{address} (database {database}); Ctrl-C stops");
    println!(
        "  curl -X POST http://{address}/counters/{}/increment -d '{{\"amount\":2}}'",
        app::CounterId::generate()
    );
    println!("  curl http://{address}/counters");
    println!("  curl http://{address}/projection");
    let stopped = app::serve(listener, database.into(), shutdown_signal()).await?;
    println!(
        "HTTP server stopped, then the projection runner ({:?}): checkpoint {} committed (log head {})",
        stopped.status, stopped.checkpoint, stopped.head
    );
    Ok(())
}

/// Completes on Ctrl-C, or on SIGTERM where there is one.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            eprintln!("cannot listen for Ctrl-C ({error}); stop the process another way");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    println!("shutting down: finishing requests in flight");
}
