//! `factum serve`: the store over gRPC until Ctrl-C or SIGTERM, then a
//! graceful shutdown (in-flight calls finish, subscriptions end with
//! UNAVAILABLE so that clients resume elsewhere).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use factum_server::{Limits, Server, Tokens};

use crate::commands::{Context, Store};
use crate::error::CliError;

/// `factum serve` options.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "HOST:PORT")]
    pub(crate) addr: SocketAddr,
    /// A TOML file of bearer tokens (see factum-server's `Tokens`); without
    /// it the server is open to every caller.
    #[arg(long, value_name = "FILE")]
    pub(crate) tokens: Option<PathBuf>,
    /// The server's TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The largest request accepted, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub(crate) max_message_size: usize,
    /// How many subscriptions may be open at once.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub(crate) max_subscriptions: usize,
}

pub(crate) async fn run<S: Store>(store: &S, args: &ServeArgs, context: &Context) -> Result<(), CliError> {
    let limits = Limits::new()
        .max_message_size(args.max_message_size)
        .max_subscriptions(args.max_subscriptions);
    let mut server = Server::new(store.clone()).limits(limits);
    if let Some(path) = &args.tokens {
        let tokens = Tokens::from_file(path)
            .await
            .map_err(|error| CliError::refused("the token file is refused").with_source(error))?;
        server = server.tokens(tokens);
    } else {
        eprintln!("warning: no --tokens file: every caller may read and write every tenant");
    }
    if let (Some(certificate), Some(key)) = (&args.tls_cert, &args.tls_key) {
        server = server.tls(read(certificate).await?, read(key).await?);
    }
    let running = server
        .start(args.addr)
        .await
        .map_err(|error| CliError::failed(format!("cannot serve on {}", args.addr)).with_source(error))?;
    let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
    // The first line of standard output, for scripts that start on port 0.
    println!("listening on {scheme}://{}", running.local_addr());
    eprintln!("serving {} (Ctrl-C stops)", context.description);
    let stopper = running.stopper();
    tokio::spawn(async move {
        super::tail::stopped().await;
        stopper.stop();
    });
    running
        .wait()
        .await
        .map_err(|error| CliError::failed("the server failed").with_source(error))
}

async fn read(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    tokio::fs::read(path)
        .await
        .map_err(|error| CliError::refused(format!("cannot read {}", path.display())).with_source(error))
}
