//! [`RemoteEventStore`]: the `EventStore` and `SnapshotStore` contracts
//! carried over gRPC to a factum server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use factum_core::{
    AppendBatch, AppendResult, Error, EventStore, EventStream, ExpectedVersion, NewEvent, RecordedEvent,
    Snapshot, SnapshotStore, StreamId, Tenancy, Tenant,
};
use futures::TryStreamExt;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::convert::{
    append_to_wire, loaded_snapshot_from_wire, result_from_wire, snapshot_to_wire, stream_to_wire,
};
use crate::error::RemoteError;
use crate::proto::event_store_client::EventStoreClient;
use crate::proto::{self};
use crate::status::error_from_status;
use crate::subscription::{Cursor, follow};
use crate::{BACKEND, TENANT_HEADER};

/// How a [`RemoteEventStore`] reaches its server: credentials, TLS, and how
/// hard it tries again when the connection drops.
///
/// ```
/// # use factum_remote::RemoteOptions;
/// let options = RemoteOptions::new().token("s3cret").reconnect_attempts(5);
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    token: Option<String>,
    ca_certificate: Option<Vec<u8>>,
    domain: Option<String>,
    pub(crate) reconnect_attempts: u32,
    first_backoff: Duration,
    max_message_size: usize,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl RemoteOptions {
    /// No token, no TLS, ten attempts to reconnect starting 50 ms apart.
    pub fn new() -> Self {
        Self {
            token: None,
            ca_certificate: None,
            domain: None,
            reconnect_attempts: 10,
            first_backoff: Duration::from_millis(50),
            max_message_size: 256 * 1024 * 1024,
        }
    }

    /// The bearer token sent with every call.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Trusts the server certificates signed by this CA (PEM): what an
    /// `https://` address needs, since the client carries no root
    /// certificates of its own.
    pub fn ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificate = Some(pem.into());
        self
    }

    /// The name the server's certificate must carry, when it is not the
    /// address's host.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// How many times in a row a call or a subscription tries again after a
    /// transient failure (an unreachable server) before it reports it.
    pub fn reconnect_attempts(mut self, attempts: u32) -> Self {
        self.reconnect_attempts = attempts;
        self
    }

    /// The largest answer accepted from the server, in bytes.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
}

/// An event store on a factum server, reached over gRPC: implements
/// [`EventStore`], [`SnapshotStore`] and [`Tenancy`], so an
/// [`Application`](factum_core::Application) or a projection runs on it
/// unchanged.
///
/// Cheap to clone (all clones share one HTTP/2 connection). When the
/// connection drops, calls are retried (appends are idempotent by event id,
/// so a retry never writes twice) and subscriptions resume after the last
/// event they delivered: no gap, no duplicate.
///
/// ```no_run
/// # use factum_core::EventStore;
/// # use factum_remote::{RemoteEventStore, RemoteOptions};
/// # async fn run() -> Result<(), factum_core::Error> {
/// let store = RemoteEventStore::connect_with("http://127.0.0.1:50051", RemoteOptions::new().token("s3cret")).await?;
/// println!("the log reaches position {}", store.head_position().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RemoteEventStore {
    client: EventStoreClient<Channel>,
    headers: Arc<Headers>,
    tenant: Option<Tenant>,
    options: Arc<RemoteOptions>,
}

struct Headers {
    authorization: Option<MetadataValue<Ascii>>,
    tenant: Option<MetadataValue<Ascii>>,
}

impl RemoteEventStore {
    /// Connects to the server at `address` (`http://host:port`, or
    /// `https://…` with TLS) without a token.
    pub async fn connect(address: &str) -> Result<Self, Error> {
        Self::connect_with(address, RemoteOptions::new()).await
    }

    /// Connects to the server at `address` with `options`.
    pub async fn connect_with(address: &str, options: RemoteOptions) -> Result<Self, Error> {
        let invalid = |reason: String| {
            Error::store(
                BACKEND,
                RemoteError::Address {
                    address: address.to_owned(),
                    reason,
                },
            )
        };
        let mut endpoint = Endpoint::from_shared(address.to_owned())
            .map_err(|error| invalid(error.to_string()))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .initial_stream_window_size(4 * 1024 * 1024)
            .initial_connection_window_size(8 * 1024 * 1024);
        if address.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(pem) = &options.ca_certificate {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(domain) = &options.domain {
                tls = tls.domain_name(domain.clone());
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| Error::store(BACKEND, RemoteError::Tls(error)))?;
        }
        let authorization = options
            .token
            .as_ref()
            .map(|token| format!("Bearer {token}").parse())
            .transpose()
            .map_err(|_| Error::store(BACKEND, RemoteError::Token))?;
        // Lazy: the connection is made on the first call and made again
        // after it drops, so a server that restarts is reached again.
        let channel = endpoint.connect_lazy();
        let client = EventStoreClient::new(channel)
            .max_decoding_message_size(options.max_message_size)
            .max_encoding_message_size(options.max_message_size);
        let store = Self {
            client,
            headers: Arc::new(Headers {
                authorization,
                tenant: None,
            }),
            tenant: None,
            options: Arc::new(options),
        };
        // One call now, so a wrong address or token shows at once.
        store.head_position().await?;
        Ok(store)
    }

    /// `message` as a request with this handle's token and tenant.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        if let Some(authorization) = &self.headers.authorization {
            metadata.insert("authorization", authorization.clone());
        }
        if let Some(tenant) = &self.headers.tenant {
            metadata.insert(TENANT_HEADER, tenant.clone());
        }
        request
    }

    pub(crate) fn client(&self) -> EventStoreClient<Channel> {
        self.client.clone()
    }

    pub(crate) fn options(&self) -> &RemoteOptions {
        &self.options
    }

    /// Runs `call` until it succeeds, fails for good, or the reconnect
    /// attempts run out; every call is safe to repeat (appends by event id).
    async fn call<T, M, Call, Answer>(&self, message: M, call: Call) -> Result<T, Error>
    where
        M: Clone,
        Call: Fn(EventStoreClient<Channel>, Request<M>) -> Answer,
        Answer: Future<Output = Result<Response<T>, Status>>,
    {
        let mut attempt = 0;
        loop {
            match call(self.client(), self.request(message.clone())).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if transient(status.code()) && attempt < self.options.reconnect_attempts => {
                    attempt += 1;
                    tokio::time::sleep(backoff(&self.options, attempt)).await;
                }
                Err(status) => return Err(error_from_status(status)),
            }
        }
    }
}

/// True for failures that another attempt may not meet: the server
/// unreachable, restarting, or the connection cut mid-call.
pub(crate) fn transient(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled)
}

/// The wait before attempt `attempt` (from 1): doubling, at most 2 s.
pub(crate) fn backoff(options: &RemoteOptions, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(6);
    (options.first_backoff * factor).min(Duration::from_secs(2))
}

impl EventStore for RemoteEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let request = append_to_wire(stream, expected, &events);
        let answer = self
            .call(request, |mut client, request| async move {
                client.append(request).await
            })
            .await?;
        Ok(result_from_wire(answer))
    }

    async fn append_many(&self, batches: Vec<AppendBatch>) -> Result<Vec<AppendResult>, Error> {
        let request = proto::AppendManyRequest {
            batches: batches
                .iter()
                .map(|batch| append_to_wire(&batch.stream, batch.expected, &batch.events))
                .collect(),
        };
        let answer = self
            .call(request, |mut client, request| async move {
                client.append_many(request).await
            })
            .await?;
        Ok(answer.results.into_iter().map(result_from_wire).collect())
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        follow(self.clone(), Cursor::stream(stream.clone(), from_version), false)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Sized for the first pages, so a long read does not re-copy as it grows.
        let mut events = Vec::with_capacity(limit.min(8192));
        let mut pages = follow(self.clone(), Cursor::all(after, Some(limit as u64)), false);
        while let Some(event) = pages.try_next().await? {
            events.push(event);
        }
        Ok(events)
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        follow(self.clone(), Cursor::all(after, None), true)
    }

    fn subscribe_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'static> {
        follow(self.clone(), Cursor::stream(stream.clone(), from_version), true)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        let request = proto::StreamVersionRequest {
            stream: Some(stream_to_wire(stream)),
        };
        let answer = self
            .call(request, |mut client, request| async move {
                client.stream_version(request).await
            })
            .await?;
        Ok(answer.version)
    }

    async fn head_position(&self) -> Result<u64, Error> {
        let answer = self
            .call(proto::HeadRequest {}, |mut client, request| async move {
                client.head(request).await
            })
            .await?;
        Ok(answer.position)
    }
}

impl SnapshotStore for RemoteEventStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        let request = proto::SaveSnapshotRequest {
            snapshot: Some(snapshot_to_wire(&snapshot)),
        };
        self.call(request, |mut client, request| async move {
            client.save_snapshot(request).await
        })
        .await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        let request = proto::LoadSnapshotRequest {
            stream: Some(stream_to_wire(stream)),
        };
        let answer = self
            .call(request, |mut client, request| async move {
                client.load_snapshot(request).await
            })
            .await?;
        answer
            .snapshot
            .map(loaded_snapshot_from_wire)
            .transpose()
            .map_err(|error| Error::store(BACKEND, RemoteError::Reply(error)))
    }
}

/// A view names its tenant in the `x-factum-tenant` header of every call,
/// and the server answers through its store's own view of that tenant when
/// the token may reach it (an admin token, or that tenant's). A handle
/// whose token belongs to one tenant is confined by the server whatever it
/// asks; its [`tenant`](Tenancy::tenant) is `None` until `for_tenant` names it.
impl Tenancy for RemoteEventStore {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        let tenant = Tenant::new(tenant)?;
        if let Some(own) = &self.tenant
            && *own != tenant
        {
            return Err(Error::InvalidTenant {
                tenant: tenant.to_string(),
                reason: format!("this handle is confined to tenant `{own}`"),
            });
        }
        let header = tenant.as_str().parse().map_err(|_| Error::InvalidTenant {
            tenant: tenant.to_string(),
            reason: "not a header value".into(),
        })?;
        Ok(Self {
            client: self.client.clone(),
            headers: Arc::new(Headers {
                authorization: self.headers.authorization.clone(),
                tenant: Some(header),
            }),
            tenant: Some(tenant),
            options: Arc::clone(&self.options),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}
