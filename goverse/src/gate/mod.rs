//! The gate (feature `gate`): how clients outside the cluster reach
//! objects. It forwards encoded requests by type and method name to the
//! objects' owners and needs no knowledge of the object types itself, so
//! it runs embedded in any node — one hosting objects (the quick start) or
//! one that hosts none and only routes (a gate process of a cluster).
//!
//! HTTP routes (the original's, kept):
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `POST /api/v1/objects/call/{type}/{id}/{method}` | `{"request": "<base64 Any>"}` | `{"response": "<base64 Any>"}` |
//! | the same | a proto3 JSON request, e.g. `{"value": 5}` (empty: `{}`) | `{"response": <proto3 JSON>}` |
//! | `POST /api/v1/objects/create/{type}/{id}` | none | `{"id": "<id>"}` |
//! | `POST /api/v1/objects/delete/{type}/{id}` | none | `{"success": true}` |
//! | `GET /healthz`, `GET /ready` | | `{"status": ...}` |
//!
//! A call with an `X-Call-Id` header is a [reliable
//! call](crate::EncodedCall::reliable). Errors are `{"error": "...",
//! "code": "..."}` with the status of their code (see the book's "Gate and
//! clients" chapter for the table).
//!
//! ```no_run
//! # async fn run(node: goverse::Node) -> goverse::Result<()> {
//! use goverse::gate::{Gate, GateOptions};
//!
//! let gate = Gate::start(&node, GateOptions::default().http("127.0.0.1:8080".parse().unwrap())).await?;
//! println!("gate on http://{}", gate.http_address().expect("serving HTTP"));
//! # gate.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod errors;
pub mod grpc;
mod http;
mod security;
mod sessions;
#[cfg(feature = "tls")]
mod tls;
mod tokens;

pub use security::{AuthRequest, Authenticator, RateLimit};
pub use sessions::GateStats;
#[cfg(feature = "tls")]
pub use tls::GateTls;
pub use tokens::TokenFile;

/// A shared authentication hook.
#[derive(Clone)]
pub(crate) struct AuthHook(Arc<dyn security::ErasedAuthenticator>);

impl std::fmt::Debug for AuthHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<authenticator>")
    }
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::node::Node;

/// Settings of a [`Gate`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GateOptions {
    /// Where to serve HTTP (`None`: no HTTP listener).
    pub http: Option<SocketAddr>,
    /// Where to serve the gRPC gate service (`None`: no gRPC listener).
    pub grpc: Option<SocketAddr>,
    /// The largest request body taken, in bytes (default 1 MiB); larger
    /// ones get `413 BODY_TOO_LARGE`.
    pub max_body_bytes: usize,
    /// How long a request's body may take to arrive (default 10 s); a
    /// slower one gets `408 REQUEST_TIMEOUT`.
    pub body_timeout: Duration,
    /// How long a connection may take to send a request's headers
    /// (default 10 s); a slower one is closed (slow-loris clients).
    pub header_timeout: Duration,
    /// The timeout of calls made through the gate (default 30 s).
    pub call_timeout: Duration,
    /// Origins browsers may call from (`*`: any; default `["*"]`).
    pub cors_origins: Vec<String>,
    /// Pushed messages a client may have unread (default 1024); one more
    /// disconnects it, and the drop is counted.
    pub push_buffer: usize,
    /// How long a disconnected client's session (and its buffered pushes)
    /// waits for it to come back (default 30 s).
    pub reconnect_grace: Duration,
    /// A heartbeat event goes to a push stream idle this long (default 30 s).
    pub heartbeat: Duration,
    /// Client sessions (push streams, and disconnected ones within their
    /// grace) this gate keeps at most (default 10 000); a registration
    /// past it gets `503 OVERLOADED`.
    pub max_clients: usize,
    /// Client sessions one authenticated user may have at once on this
    /// gate (default 16); past it: `503 OVERLOADED`.
    pub max_clients_per_user: usize,
    /// How long [`Gate::shutdown`] waits for open connections to finish
    /// (default 10 s) before it closes them.
    pub shutdown_timeout: Duration,
    /// Decides who each request is for (default: nobody is asked; calls
    /// carry no identity).
    pub(crate) authenticator: Option<AuthHook>,
    /// Requests per client (its verified client id, else its user, else
    /// its IP address); over it: `429 RATE_LIMITED`.
    pub rate_limit_per_client: Option<RateLimit>,
    /// Calls per object (`Type/id`) through this gate; over it: `429
    /// RATE_LIMITED`.
    pub rate_limit_per_object: Option<RateLimit>,
    /// TLS on both listeners (feature `tls`).
    #[cfg(feature = "tls")]
    pub tls: Option<GateTls>,
}

impl Default for GateOptions {
    fn default() -> Self {
        Self {
            http: None,
            grpc: None,
            max_body_bytes: 1 << 20,
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            cors_origins: vec!["*".to_string()],
            push_buffer: 1024,
            reconnect_grace: Duration::from_secs(30),
            heartbeat: Duration::from_secs(30),
            max_clients: 10_000,
            max_clients_per_user: 16,
            shutdown_timeout: Duration::from_secs(10),
            authenticator: None,
            rate_limit_per_client: None,
            rate_limit_per_object: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl GateOptions {
    /// The options a `gate:` section of a node file (or `GateArgs`) gives:
    /// every key given replaces the default. `tls_cert`/`tls_key` need the
    /// `tls` feature; `auth_tokens` is read as a [`TokenFile`].
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for a malformed duration or rate limit, TLS files
    /// that cannot be read (or a build without `tls`), or a bad token file.
    ///
    /// # Examples
    ///
    /// ```
    /// use goverse::config::NodeFile;
    /// use goverse::gate::GateOptions;
    ///
    /// let file = NodeFile::parse("gate:\n  http: 127.0.0.1:8080\n  rate_limit_client: 50/100\n")?;
    /// let options = GateOptions::from_file(&file.gate.unwrap_or_default())?;
    /// assert_eq!(options.http, Some("127.0.0.1:8080".parse().unwrap()));
    /// assert_eq!(options.rate_limit_per_client.map(|l| l.burst), Some(100));
    /// # Ok::<(), goverse::Error>(())
    /// ```
    pub fn from_file(file: &crate::config::GateFile) -> Result<Self> {
        use crate::config::{parse_duration, parse_rate_limit};
        let duration = |text: &Option<String>, default: Duration| {
            text.as_deref().map_or(Ok(default), parse_duration)
        };
        let limit = |text: &Option<String>| {
            text.as_deref()
                .map(|text| parse_rate_limit(text).map(|(rate, burst)| RateLimit::new(rate, burst)))
                .transpose()
        };
        let defaults = Self::default();
        let mut options = Self {
            http: file.http,
            grpc: file.grpc,
            max_body_bytes: file.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            body_timeout: duration(&file.body_timeout, defaults.body_timeout)?,
            header_timeout: duration(&file.header_timeout, defaults.header_timeout)?,
            call_timeout: duration(&file.call_timeout, defaults.call_timeout)?,
            cors_origins: file.cors.clone().unwrap_or(defaults.cors_origins),
            push_buffer: file.push_buffer.unwrap_or(defaults.push_buffer),
            reconnect_grace: duration(&file.reconnect_grace, defaults.reconnect_grace)?,
            heartbeat: duration(&file.heartbeat, defaults.heartbeat)?,
            max_clients: file.max_clients.unwrap_or(defaults.max_clients),
            max_clients_per_user: file
                .max_clients_per_user
                .unwrap_or(defaults.max_clients_per_user),
            shutdown_timeout: duration(&file.shutdown_timeout, defaults.shutdown_timeout)?,
            authenticator: None,
            rate_limit_per_client: limit(&file.rate_limit_client)?,
            rate_limit_per_object: limit(&file.rate_limit_object)?,
            #[cfg(feature = "tls")]
            tls: None,
        };
        if let Some(path) = &file.auth_tokens {
            options = options.authenticator(TokenFile::load(path)?);
        }
        match (&file.tls_cert, &file.tls_key) {
            (None, None) => {}
            #[cfg(feature = "tls")]
            (Some(cert), Some(key)) => options = options.tls(GateTls::from_pem_files(cert, key)?),
            #[cfg(not(feature = "tls"))]
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "gate: TLS needs goverse's `tls` feature".into(),
                ));
            }
            _ => {
                return Err(Error::Config(
                    "gate: `tls_cert` and `tls_key` go together".into(),
                ));
            }
        }
        Ok(options)
    }

    /// Serves HTTP on `address` (`127.0.0.1:0` picks a free port).
    pub fn http(mut self, address: SocketAddr) -> Self {
        self.http = Some(address);
        self
    }

    /// Serves the gRPC gate service on `address`.
    pub fn grpc(mut self, address: SocketAddr) -> Self {
        self.grpc = Some(address);
        self
    }

    /// Sets the largest request body taken.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets how long a request body may take to arrive.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Sets how long a connection may take to send a request's headers.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets the timeout of calls made through the gate.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets how many pushed messages a client may have unread.
    pub fn push_buffer(mut self, messages: usize) -> Self {
        self.push_buffer = messages;
        self
    }

    /// Sets how long a disconnected client's session waits for it.
    pub fn reconnect_grace(mut self, grace: Duration) -> Self {
        self.reconnect_grace = grace;
        self
    }

    /// Sets the interval of heartbeats on idle push streams.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Sets how many client sessions the gate keeps at most.
    pub fn max_clients(mut self, clients: usize) -> Self {
        self.max_clients = clients;
        self
    }

    /// Sets how long shutdown waits for open connections to finish.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets how many client sessions one authenticated user may have.
    pub fn max_clients_per_user(mut self, clients: usize) -> Self {
        self.max_clients_per_user = clients;
        self
    }

    /// Authenticates every request with `hook`: a refusal is `401
    /// UNAUTHENTICATED`; an identity goes with the request's calls.
    pub fn authenticator(mut self, hook: impl Authenticator) -> Self {
        self.authenticator = Some(AuthHook(Arc::new(hook)));
        self
    }

    /// Serves both listeners over TLS with this certificate (HTTPS for
    /// the HTTP routes).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: GateTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Limits each client's requests.
    pub fn rate_limit_per_client(mut self, limit: RateLimit) -> Self {
        self.rate_limit_per_client = Some(limit);
        self
    }

    /// Limits the calls to each object through this gate.
    pub fn rate_limit_per_object(mut self, limit: RateLimit) -> Self {
        self.rate_limit_per_object = Some(limit);
        self
    }

    /// Sets the origins browsers may call from.
    pub fn cors_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cors_origins = origins.into_iter().map(Into::into).collect();
        self
    }
}

/// A running gate. Dropping it leaves it running; [`shutdown`](Gate::shutdown)
/// stops it.
pub struct Gate {
    node: Node,
    http: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
    sessions: Arc<sessions::Sessions>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    shutdown_timeout: Duration,
    /// What the HTTP handlers share, for [`Gate::router`].
    http_state: Arc<http::HttpState>,
    /// The gRPC service, for [`Gate::grpc_service`].
    grpc_service: grpc::GrpcGate,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("node", &self.node.id())
            .field("http", &self.http)
            .field("grpc", &self.grpc)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Gate {
    /// Starts a gate in front of `node`: calls it takes are made through
    /// the node, which routes them to the objects' owners.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` when a listener cannot be bound.
    pub async fn start(node: &Node, options: GateOptions) -> Result<Gate> {
        for (what, value) in [
            ("gate's body timeout", options.body_timeout),
            ("gate's header timeout", options.header_timeout),
            ("gate's call timeout", options.call_timeout),
            ("gate's heartbeat", options.heartbeat),
            ("gate's shutdown timeout", options.shutdown_timeout),
        ] {
            crate::call::check_duration(what, value)?;
        }
        if let Some(bad) = options
            .cors_origins
            .iter()
            .find(|o| o.is_empty() || axum::http::HeaderValue::from_str(o).is_err())
        {
            return Err(Error::Config(format!(
                "gate: `{bad}` is not an origin (write e.g. https://app.example, or *)"
            )));
        }
        if options.reconnect_grace > crate::call::LONGEST_TIMEOUT {
            return Err(Error::Config(
                "the gate's reconnect grace must be at most a year".into(),
            ));
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut http = None;
        let sessions = sessions::Sessions::new(
            &node.address(),
            options.push_buffer,
            options.reconnect_grace,
            sessions::SessionLimits {
                max_clients: options.max_clients.max(1),
                max_clients_per_user: options.max_clients_per_user.max(1),
            },
        );
        node.inner.set_clients(Some(sessions.clone()));
        let guard = Arc::new(security::Guard {
            authenticator: options.authenticator.as_ref().map(|hook| hook.0.clone()),
            per_client: options.rate_limit_per_client.map(security::Limiter::new),
            per_object: options.rate_limit_per_object.map(security::Limiter::new),
            sessions: sessions.clone(),
            meters: node.inner.meters.clone(),
        });
        let http_state = Arc::new(http::HttpState {
            node: node.clone(),
            options: options.clone(),
            sessions: sessions.clone(),
            guard: guard.clone(),
        });
        let grpc_service = grpc::GrpcGate {
            node: node.clone(),
            options: options.clone(),
            sessions: sessions.clone(),
            guard: guard.clone(),
        };
        if let Some(address) = options.http {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|e| Error::Config(format!("gate: cannot listen on {address}: {e}")))?;
            http = Some(
                listener
                    .local_addr()
                    .map_err(|e| Error::Config(format!("gate: {e}")))?,
            );
            #[cfg(feature = "tls")]
            let tls = options
                .tls
                .as_ref()
                .map(GateTls::http_acceptor)
                .transpose()?;
            #[cfg(not(feature = "tls"))]
            let tls = None;
            tasks.spawn(serve_http(
                listener,
                http::router(http_state.clone()),
                (options.header_timeout, tls),
                stopped,
            ));
        }
        let mut grpc = None;
        if let Some(address) = options.grpc {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|e| Error::Config(format!("gate: cannot listen on {address}: {e}")))?;
            grpc = Some(
                listener
                    .local_addr()
                    .map_err(|e| Error::Config(format!("gate: {e}")))?,
            );
            let service = grpc_service.clone();
            let incoming = first_bytes_within(listener, options.header_timeout, stop.subscribe());
            let mut stop = stop.subscribe();
            let max = options.max_body_bytes;
            #[cfg(feature = "tls")]
            let (tls, handshake) = (options.tls.clone(), options.header_timeout);
            tasks.spawn(async move {
                let service = grpc::server(service, max);
                let builder = tonic::transport::Server::builder();
                #[cfg(feature = "tls")]
                let builder = match &tls {
                    Some(tls) => match builder.tls_config(tls.grpc_config(handshake)) {
                        Ok(builder) => builder,
                        Err(error) => {
                            tracing::error!(%error, "gate gRPC TLS");
                            return;
                        }
                    },
                    None => builder,
                };
                // Peers that stop answering are found and closed.
                let mut builder = builder
                    .http2_keepalive_interval(Some(Duration::from_secs(30)))
                    .http2_keepalive_timeout(Some(Duration::from_secs(20)));
                let served = builder
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async move {
                        self::stopped(&mut stop).await
                    })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "gate gRPC server stopped");
                }
            });
        }
        Ok(Gate {
            node: node.clone(),
            http,
            grpc,
            sessions,
            stop,
            tasks,
            shutdown_timeout: options.shutdown_timeout,
            http_state,
            grpc_service,
        })
    }

    /// The HTTP gate as an axum `Router`, to mount in a server you already
    /// run (`app.merge(gate.router())`, or `.nest("/game", gate.router())`),
    /// with or without [`GateOptions::http`].
    ///
    /// Everything the gate does per request comes with it: authentication,
    /// rate limits (by the peer's address when your server is served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`), CORS, body
    /// limits, sessions and pushes. What belongs to the server stays
    /// yours: TLS, the header timeout, and graceful shutdown of its
    /// connections. [`Gate::shutdown`] still ends the gate's push streams.
    pub fn router(&self) -> axum::Router {
        http::router(self.http_state.clone())
    }

    /// The gRPC gate service, to add to a tonic server you already run
    /// (`Server::builder().add_service(gate.grpc_service())`), with or
    /// without [`GateOptions::grpc`]. As with [`Gate::router`], the
    /// server's transport settings (TLS, keep-alive, header timeout) are
    /// yours; message size limits come from [`GateOptions::max_body_bytes`].
    pub fn grpc_service(&self) -> grpc::proto::gate_server::GateServer<grpc::GrpcGate> {
        grpc::server(
            self.grpc_service.clone(),
            self.http_state.options.max_body_bytes,
        )
    }

    /// What the gate counts about its clients and their pushes.
    pub fn stats(&self) -> GateStats {
        self.sessions.stats()
    }

    /// The address HTTP is served on, if it is.
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The address the gRPC service is served on, if it is.
    pub fn grpc_address(&self) -> Option<SocketAddr> {
        self.grpc
    }

    /// Stops taking connections and closes the open ones once their
    /// requests are answered, waiting for that at most
    /// [`GateOptions::shutdown_timeout`] (a client that stops reading
    /// cannot hold it up); then the connections left are closed.
    pub async fn shutdown(mut self) {
        self.node.inner.set_clients(None);
        self.sessions.close_all();
        let _ = self.stop.send(true);
        let wait = self.shutdown_timeout;
        let drained = tokio::time::timeout(wait, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("gate: connections still open after {wait:?}; closing them");
            self.tasks.shutdown().await;
        }
    }
}

/// The listener's next connection. A failure to accept one (out of file
/// descriptors, say) pauses the listener, rather than spinning on it.
async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(%error, "gate: accepting a connection failed; pausing");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The gRPC listener's connections, each handed on only once it has sent
/// its first bytes (the HTTP/2 preface, or a TLS hello) within `deadline`:
/// a connection that says nothing is closed instead of held open for
/// ever.
fn first_bytes_within(
    listener: TcpListener,
    deadline: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<tokio::net::TcpStream>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = accept(&listener) => accepted,
                () = stopped(&mut stop) => return,
            };
            let _ = stream.set_nodelay(true);
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                if let Ok(Ok(n)) = tokio::time::timeout(deadline, stream.peek(&mut first)).await
                    && n > 0
                {
                    let _ = sender.send(Ok(stream)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// Accepts HTTP/1 connections until told to stop. Each connection has a
/// deadline for its request headers (against slow-loris clients), and ends
/// gracefully at shutdown.
/// What a plain listener has instead of a TLS acceptor.
#[cfg(not(feature = "tls"))]
type Acceptor = std::convert::Infallible;
#[cfg(feature = "tls")]
type Acceptor = tokio_rustls::TlsAcceptor;

async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    (header_timeout, tls): (Duration, Option<Acceptor>),
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            (stream, peer) = accept(&listener) => {
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                // Handlers see the peer's address (for rate limits by IP).
                let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(http::Peer(peer));
                    let mut router = router.clone();
                    async move { tower_service::Service::call(&mut router, request).await }
                });
                let stop = stop.clone();
                #[allow(clippy::clone_on_copy)]
                let tls = tls.clone();
                connections.spawn(async move {
                    match tls {
                        None => serve_connection(TokioIo::new(stream), service, header_timeout, stop).await,
                        #[cfg(feature = "tls")]
                        Some(acceptor) => {
                            // The handshake has the headers' deadline too.
                            let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await else {
                                return;
                            };
                            serve_connection(TokioIo::new(stream), service, header_timeout, stop).await;
                        }
                        #[cfg(not(feature = "tls"))]
                        Some(never) => match never {},
                    }
                });
            }
            () = stopped(&mut stop) => break,
        }
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// Serves one HTTP/1 connection, with a deadline for each request's
/// headers, until it ends or the gate stops.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once the gate is told to stop (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
