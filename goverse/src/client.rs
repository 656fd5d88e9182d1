//! [`Client`] (feature `client`): a program outside the cluster calling
//! objects through gates over gRPC, with the same typed proxies as inside
//! (`CounterClient::new(&client, "my-counter")`), and receiving what
//! objects push to it.
//!
//! It connects to one of several gates and fails over to the next when
//! one cannot be reached, reconnecting with exponential backoff and
//! jitter. A call that could not be sent (no connection) is sent to the
//! next gate; a plain call whose connection dropped after it was sent
//! fails with `UNAVAILABLE`, since it may have run; a reliable call is
//! sent again, since its call id makes a repeat safe.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::call::{Caller, IntoCaller, Target};
use crate::error::{Error, Result};
use crate::gate_proto::gate_client::GateClient;
use crate::gate_proto::{self as proto, client_event::Event};
use crate::message::{Message, held_type, type_url};
use crate::object::Object;
use crate::sync::MutexExt;

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The timeout of a call whose proxy sets none (default 30 s).
    pub call_timeout: Duration,
    /// How long one attempt to connect to a gate may take (default 5 s).
    pub connect_timeout: Duration,
    /// The first pause between reconnection attempts (default 100 ms); it
    /// doubles each time, with random jitter, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest pause between reconnection attempts (default 5 s).
    pub max_backoff: Duration,
    /// Metadata sent with every request, e.g. `authorization` for a gate
    /// with an authentication hook.
    pub metadata: Vec<(String, String)>,
    /// The CA (PEM) that signed the gates' certificates, for `https://`
    /// gate addresses (feature `tls`).
    #[cfg(feature = "tls")]
    pub tls_ca: Option<Vec<u8>>,
    /// Pushed messages held for the program before the client stops
    /// reading its stream (default 1024; the gate then buffers, and past
    /// its own limit disconnects the client, visibly).
    pub push_buffer: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            metadata: Vec::new(),
            #[cfg(feature = "tls")]
            tls_ca: None,
            push_buffer: 1024,
        }
    }
}

impl ClientOptions {
    /// Sets the default call timeout.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sends `name: value` with every request (e.g. `authorization`,
    /// `Bearer <token>`).
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// Trusts the gates' certificates signed by this CA (PEM): for
    /// `https://` gate addresses.
    #[cfg(feature = "tls")]
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(pem.into());
        self
    }

    /// Sets the pauses between reconnection attempts.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }
}

/// A message an object pushed to this client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushedMessage {
    /// Its number in the session (1, 2, ...), in push order.
    pub sequence: u64,
    /// Full protobuf name of the message.
    pub type_name: String,
    /// The message, protobuf-encoded.
    pub body: Vec<u8>,
}

impl PushedMessage {
    /// Decodes the message as `M`.
    ///
    /// # Errors
    ///
    /// `INVALID_PROTOBUF` when it is another type or does not decode.
    pub fn decode<M: Message>(&self) -> Result<M> {
        if self.type_name != M::FULL_NAME {
            return Err(Error::InvalidRequest {
                message_type: M::FULL_NAME,
                codec: "protobuf",
                reason: format!("the message is a `{}`", self.type_name),
            });
        }
        crate::message::decode(crate::Codec::Protobuf, &self.body)
    }
}

/// A connection to a cluster through its gates. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("gates", &self.inner.gates)
            .field("client_id", &self.client_id())
            .finish()
    }
}

/// The session a client holds with a gate.
#[derive(Debug, Clone, Default)]
struct SessionState {
    client_id: String,
    token: String,
    last_sequence: u64,
}

pub(crate) struct ClientInner {
    gates: Vec<String>,
    options: ClientOptions,
    /// The gate in use (an index into `gates`) and its connection.
    current: Mutex<(usize, Option<GateClient<Channel>>)>,
    session: Mutex<Option<SessionState>>,
    /// Set once `messages` has started the registration.
    registering: std::sync::atomic::AtomicBool,
}

impl Client {
    /// Connects to one of `gates` (`http://host:port` of their gRPC
    /// service), trying each in turn, with backoff, for up to the call
    /// timeout.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for no gates or a malformed address; `UNAVAILABLE`
    /// when none could be reached in time.
    pub async fn connect(
        gates: impl IntoIterator<Item = impl Into<String>>,
        options: ClientOptions,
    ) -> Result<Client> {
        crate::call::check_duration("client's call timeout", options.call_timeout)?;
        crate::call::check_duration("client's connect timeout", options.connect_timeout)?;
        let gates: Vec<String> = gates.into_iter().map(Into::into).collect();
        if gates.is_empty() {
            return Err(Error::Config("a client needs at least one gate".into()));
        }
        for gate in &gates {
            Endpoint::from_shared(gate.clone())
                .map_err(|e| Error::Config(format!("gate address `{gate}`: {e}")))?;
        }
        let inner = Arc::new(ClientInner {
            gates,
            current: Mutex::new((0, None)),
            session: Mutex::new(None),
            registering: std::sync::atomic::AtomicBool::new(false),
            options,
        });
        inner
            .connection(Instant::now() + inner.options.call_timeout)
            .await?;
        Ok(Client { inner })
    }

    /// The caller typed proxies use (`CounterClient::new(&client, id)`
    /// takes `&Client` directly).
    pub fn caller(&self) -> Caller {
        self.into_caller()
    }

    /// The client id gates know this client by, once it has registered
    /// (see [`messages`](Client::messages)); objects push to it.
    pub fn client_id(&self) -> Option<String> {
        self.inner
            .session
            .locked()
            .as_ref()
            .map(|s| s.client_id.clone())
    }

    /// Registers with a gate and returns the stream of messages objects
    /// push to this client. The registration is kept up in the background:
    /// when the stream breaks it reconnects (backoff and jitter, failing
    /// over to another gate), resuming its session where the gate still
    /// has it, so the client keeps its id and gets what was pushed
    /// meanwhile. A session the gate no longer has (another gate, or past
    /// its grace) gives the client a new id ([`client_id`](Client::client_id)).
    ///
    /// Resolves once the first registration is done.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` when called twice; `UNAVAILABLE` when no gate took
    /// the registration within the call timeout.
    pub async fn messages(&self) -> Result<mpsc::Receiver<PushedMessage>> {
        if self
            .inner
            .registering
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::Config(
                "`messages` was already called on this client".into(),
            ));
        }
        let (sender, receiver) = mpsc::channel(self.inner.options.push_buffer.max(1));
        let (registered, first) = tokio::sync::oneshot::channel();
        tokio::spawn(ClientInner::keep_registered(
            Arc::downgrade(&self.inner),
            sender,
            registered,
        ));
        match tokio::time::timeout(self.inner.options.call_timeout, first).await {
            Ok(Ok(())) => Ok(receiver),
            _ => Err(Error::Unavailable(
                "no gate took the registration in time".into(),
            )),
        }
    }

    /// Activates object `id` of type `O`, through a gate; as
    /// `OProxy::new(&client, id).create()`.
    ///
    /// # Errors
    ///
    /// As for [`Node::create`](crate::Node::create), and `UNAVAILABLE`.
    pub async fn create<O: crate::Object>(&self, id: &str) -> Result<()> {
        crate::call::ObjectRef::<O>::new(self, id.to_string())
            .create()
            .await
    }

    /// Deletes object `id` of type `O`, through a gate; as
    /// `OProxy::new(&client, id).delete()`.
    ///
    /// # Errors
    ///
    /// As for [`Node::delete`](crate::Node::delete), and `UNAVAILABLE`.
    pub async fn delete<O: crate::Object>(&self, id: &str) -> Result<()> {
        crate::call::ObjectRef::<O>::new(self, id.to_string())
            .delete()
            .await
    }
}

impl IntoCaller for &Client {
    fn into_caller(self) -> Caller {
        Caller {
            target: Target::Gate(self.inner.clone()),
            chain: None,
            deadline: None,
            trace: None,
            origin: None,
        }
    }
}

impl ClientInner {
    /// Creates or deletes object `type_name/id` through a gate.
    pub(crate) async fn lifecycle(
        &self,
        what: crate::call::Lifecycle,
        type_name: &str,
        id: &str,
    ) -> Result<()> {
        let deadline = Instant::now() + self.options.call_timeout;
        let mut gate = self.connection(deadline).await?;
        let (r#type, id) = (type_name.to_string(), id.to_string());
        let sent = match what {
            crate::call::Lifecycle::Create => gate
                .create_object(self.request(proto::CreateObjectRequest { r#type, id }))
                .await
                .map(|_| ()),
            crate::call::Lifecycle::Delete => gate
                .delete_object(self.request(proto::DeleteObjectRequest { r#type, id }))
                .await
                .map(|_| ()),
        };
        sent.map_err(|status| self.failed(&status))
    }

    /// `message` as a request carrying the client's metadata.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        for (name, value) in &self.options.metadata {
            if let (Ok(name), Ok(value)) = (
                name.parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(),
                value.parse(),
            ) {
                request.metadata_mut().insert(name, value);
            }
        }
        request
    }

    /// The pause before reconnection attempt `attempt`: doubling, capped,
    /// with jitter (between half and all of it) so clients spread out.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .options
            .initial_backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.options.max_backoff);
        let jitter = getrandom::u64().unwrap_or(u64::from(attempt) * 7919) % 1000;
        base.mul_f64(0.5 + jitter as f64 / 2000.0)
    }

    /// The connection to the gate in use, connecting (and failing over
    /// through the gates, with backoff) if there is none.
    async fn connection(&self, deadline: Instant) -> Result<GateClient<Channel>> {
        let mut attempt = 0u32;
        loop {
            let index = {
                let current = self.current.locked();
                if let Some(connected) = &current.1 {
                    return Ok(connected.clone());
                }
                current.0
            };
            let url = &self.gates[index % self.gates.len()];
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| Error::Config(format!("gate address `{url}`: {e}")))?
                .connect_timeout(self.options.connect_timeout)
                .tcp_nodelay(true);
            #[cfg(feature = "tls")]
            let endpoint = match &self.options.tls_ca {
                Some(ca) if url.starts_with("https://") => endpoint
                    .tls_config(
                        tonic::transport::ClientTlsConfig::new()
                            .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                    )
                    .map_err(|e| Error::Config(format!("gate TLS: {e}")))?,
                _ => endpoint,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, endpoint.connect()).await {
                Ok(Ok(channel)) => {
                    let client = GateClient::new(channel);
                    let mut current = self.current.locked();
                    current.1 = Some(client.clone());
                    return Ok(client);
                }
                Ok(Err(error)) => {
                    tracing::debug!(gate = %url, %error, "gate unreachable; trying the next");
                    self.fail_over(index);
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "no gate could be reached ({})",
                    self.gates.join(", ")
                )));
            }
            let pause = self.backoff(attempt);
            attempt += 1;
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
        }
    }

    /// Drops the connection to gate `index` and moves on to the next gate.
    fn fail_over(&self, index: usize) {
        let mut current = self.current.locked();
        if current.0 == index {
            current.0 = (index + 1) % self.gates.len();
            current.1 = None;
        }
    }

    fn current_index(&self) -> usize {
        self.current.locked().0
    }

    /// The error a failed gRPC call stands for.
    fn failed(&self, status: &tonic::Status) -> Error {
        if let Some(code) = status
            .metadata()
            .get(crate::gate_proto::CODE_METADATA)
            .and_then(|v| v.to_str().ok())
        {
            return crate::transport::error_from_wire(crate::transport::proto::ErrorReply {
                code: code.to_string(),
                message: status.message().to_string(),
            });
        }
        match status.code() {
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Error::DeadlineExceeded {
                target: "a call through a gate".into(),
                timeout: Duration::ZERO,
            },
            _ => Error::Unavailable(format!("the gate failed the call: {}", status.message())),
        }
    }

    /// A typed call through a gate.
    pub(crate) async fn call<O: Object, Req: Message, Resp: Message>(
        &self,
        id: &str,
        method: usize,
        request: Req,
        timeout: Option<Duration>,
        call_id: Option<&str>,
    ) -> Result<Resp> {
        let deadline = crate::call::deadline_after(
            Instant::now(),
            timeout.unwrap_or(self.options.call_timeout),
        );
        let method = O::DESCRIPTOR.methods.get(method).map_or("?", |m| m.name);
        let any = crate::types::Any {
            type_url: type_url(Req::FULL_NAME),
            value: request.encode_to_vec().into(),
        };
        let mut attempt = 0u32;
        loop {
            let mut gate = self.connection(deadline).await?;
            let index = self.current_index();
            let left = deadline.saturating_duration_since(Instant::now());
            let sent = match call_id {
                Some(call_id) => {
                    let mut request = self.request(proto::ReliableCallObjectRequest {
                        call_id: call_id.to_string(),
                        r#type: O::DESCRIPTOR.type_name.to_string(),
                        id: id.to_string(),
                        method: method.to_string(),
                        request: Some(any.clone()),
                        client_id: String::new(),
                    });
                    request.set_timeout(left);
                    gate.reliable_call_object(request).await
                }
                None => {
                    let mut request = self.request(proto::CallObjectRequest {
                        r#type: O::DESCRIPTOR.type_name.to_string(),
                        id: id.to_string(),
                        method: method.to_string(),
                        request: Some(any.clone()),
                        client_id: String::new(),
                    });
                    request.set_timeout(left);
                    gate.call_object(request).await
                }
            };
            let status = match sent {
                Ok(response) => return decode_response(response.into_inner()),
                Err(status) => status,
            };
            let has_code = status
                .metadata()
                .get(crate::gate_proto::CODE_METADATA)
                .is_some();
            if has_code || status.code() != tonic::Code::Unavailable {
                return Err(self.failed(&status));
            }
            // The gate went away. A call that never left (the connection
            // was refused) or a reliable one goes again, elsewhere.
            self.fail_over(index);
            let resend = call_id.is_some() || never_sent(&status);
            if !resend || Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "the connection to the gate was lost during the call; it may have run: {}",
                    status.message()
                )));
            }
            let pause = self.backoff(attempt);
            attempt += 1;
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
        }
    }

    /// Keeps a registration up and forwards pushes, until the client or
    /// the receiver is dropped.
    async fn keep_registered(
        client: std::sync::Weak<ClientInner>,
        pushes: mpsc::Sender<PushedMessage>,
        registered: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut registered = Some(registered);
        let mut attempt = 0u32;
        loop {
            let Some(inner) = client.upgrade() else {
                return;
            };
            let far = Instant::now() + Duration::from_secs(3600);
            let Ok(mut gate) = inner.connection(far).await else {
                continue;
            };
            let index = inner.current_index();
            let resume = inner.session.locked().clone().unwrap_or_default();
            let request = proto::RegisterRequest {
                client_id: resume.client_id.clone(),
                session: resume.token.clone(),
                last_sequence: resume.last_sequence,
            };
            let backoff = inner.backoff(attempt);
            let request = inner.request(request);
            let stream = gate.register(request).await;
            drop(inner);
            let mut stream = match stream {
                Ok(stream) => stream.into_inner(),
                Err(status) => {
                    if status.code() == tonic::Code::PermissionDenied {
                        // Not ours to resume: start afresh.
                        if let Some(inner) = client.upgrade() {
                            *inner.session.locked() = None;
                        }
                    } else if let Some(inner) = client.upgrade() {
                        inner.fail_over(index);
                    }
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            loop {
                let event = tokio::select! {
                    () = pushes.closed() => return,
                    event = stream.message() => event,
                };
                let Ok(Some(event)) = event else {
                    break;
                };
                let Some(inner) = client.upgrade() else {
                    return;
                };
                match event.event {
                    Some(Event::Registered(registered_as)) => {
                        attempt = 0;
                        let mut session = inner.session.locked();
                        let same = session
                            .as_ref()
                            .is_some_and(|s| s.client_id == registered_as.client_id);
                        let last_sequence = if same {
                            session.as_ref().map_or(0, |s| s.last_sequence)
                        } else {
                            0
                        };
                        *session = Some(SessionState {
                            client_id: registered_as.client_id,
                            token: registered_as.session,
                            last_sequence,
                        });
                        drop(session);
                        if let Some(first) = registered.take() {
                            let _ = first.send(());
                        }
                    }
                    Some(Event::Message(pushed)) => {
                        if let Some(session) = inner.session.locked().as_mut() {
                            session.last_sequence = pushed.sequence;
                        }
                        let message = pushed.message.unwrap_or_default();
                        let pushed = PushedMessage {
                            sequence: pushed.sequence,
                            type_name: held_type(&message.type_url).to_string(),
                            body: Vec::from(message.value),
                        };
                        drop(inner);
                        if pushes.send(pushed).await.is_err() {
                            return;
                        }
                    }
                    Some(Event::Heartbeat(_)) | None => {}
                }
            }
            // The stream broke: reconnect, to this gate if it is still
            // there (resuming the session), or the next.
            if let Some(inner) = client.upgrade() {
                inner.fail_over(index);
            }
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }
}

/// Whether a failed call never reached a gate (its connection was
/// refused), so sending it elsewhere cannot run it twice.
fn never_sent(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotConnected
            )
        {
            return true;
        }
        source = error.source();
    }
    false
}

fn decode_response<Resp: Message>(response: proto::CallObjectResponse) -> Result<Resp> {
    let any = response.response.unwrap_or_default();
    let held = held_type(&any.type_url);
    if held != Resp::FULL_NAME {
        return Err(Error::InvalidRequest {
            message_type: Resp::FULL_NAME,
            codec: "any",
            reason: format!("the gate answered a `{held}`"),
        });
    }
    crate::message::decode(crate::Codec::Protobuf, &any.value)
}
