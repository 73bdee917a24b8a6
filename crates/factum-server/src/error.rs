//! The errors of starting and running a server.

/// What can keep a server from starting or end it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Reading a file or binding the address failed.
    #[error("{what}: {source}")]
    Io {
        /// What the server was doing.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The token file is not what [`Tokens`](crate::Tokens) describes.
    #[error("token file: {reason}")]
    Tokens {
        /// What is wrong, naming the entry.
        reason: String,
    },

    /// The transport failed (TLS settings refused, the connection loop ended).
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),

    /// The task serving the address ended abnormally.
    #[error("the server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}
