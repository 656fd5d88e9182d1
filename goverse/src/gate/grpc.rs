//! The gate's gRPC service (`proto/gate.proto`): `Register` (a client's
//! push stream), and calls, creates, deletes and reliable calls of objects
//! by name, with requests and responses as `google.protobuf.Any`.

use std::pin::Pin;
use std::sync::Arc;

use prost::Message as _;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::GateOptions;
use super::errors::GateError;
use super::security::{AuthRequest, Guard};
use super::sessions::{Ended, Outgoing, Sessions, pump};
use crate::access::Origin;
use crate::call::EncodedCall;
use crate::message::Codec;
use crate::node::Node;

/// The generated service and messages of `proto/gate.proto`.
pub use crate::gate_proto as proto;

use proto::client_event::Event;
use proto::gate_server::Gate as GateService;

pub use crate::gate_proto::CODE_METADATA;

/// The gate's gRPC service, to add to a tonic server of your own
/// ([`Gate::grpc_service`](super::Gate::grpc_service)).
#[derive(Clone)]
pub struct GrpcGate {
    pub(crate) node: Node,
    pub(crate) options: GateOptions,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) guard: Arc<Guard>,
}

impl std::fmt::Debug for GrpcGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcGate")
            .field("node", &self.node.id())
            .finish_non_exhaustive()
    }
}

/// The service with its message size limits: requests up to `max` bytes,
/// responses up to 64 MiB.
pub(crate) fn server(service: GrpcGate, max: usize) -> proto::gate_server::GateServer<GrpcGate> {
    proto::gate_server::GateServer::new(service)
        .max_decoding_message_size(max)
        .max_encoding_message_size(64 << 20)
}

/// What the authentication hook sees of a gRPC request.
fn auth_request<T>(request: &Request<T>) -> AuthRequest {
    AuthRequest {
        headers: request
            .metadata()
            .iter()
            .filter_map(|entry| match entry {
                tonic::metadata::KeyAndValueRef::Ascii(key, value) => {
                    Some((key.as_str().to_string(), value.to_str().ok()?.to_string()))
                }
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect(),
        remote: request.remote_addr(),
        protocol: "grpc",
    }
}

/// A gate error as a gRPC status: the code by kind, goverse's code in
/// metadata.
pub(crate) fn status_of(error: GateError) -> Status {
    use tonic::Code;
    let code = match error.status.as_u16() {
        400 | 413 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::Aborted,
        422 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        _ => Code::Internal,
    };
    let mut status = Status::new(code, error.message);
    if let Ok(value) = error.code.as_str().parse() {
        status.metadata_mut().insert(CODE_METADATA, value);
    }
    status
}

fn fail(error: impl Into<GateError>) -> Status {
    status_of(error.into())
}

/// Checks a type or method name as the HTTP gate does.
fn name(what: &str, value: &str) -> Result<(), Status> {
    super::http::name_segment(what, value).map_err(fail)
}

impl GrpcGate {
    /// Authenticates a request, binds its client id, and applies the rate
    /// limits for `target`.
    async fn admit(
        &self,
        auth: &AuthRequest,
        client_id: &str,
        target: &str,
    ) -> Result<Arc<Origin>, Status> {
        let origin = self
            .guard
            .admit(auth, Some(client_id), auth.header("x-session-token"))
            .await
            .map_err(fail)?;
        self.guard
            .limit(&origin, auth.remote, target)
            .map_err(fail)?;
        Ok(Arc::new(origin))
    }

    /// A create or delete by a client.
    async fn lifecycle(
        &self,
        auth: &AuthRequest,
        type_name: &str,
        id: &str,
        create: bool,
    ) -> Result<(), Status> {
        name("type", type_name)?;
        let origin = self.admit(auth, "", &format!("{type_name}/{id}")).await?;
        let node = &self.node.inner;
        let done = if create {
            node.create(type_name, id, Some(origin)).await
        } else {
            node.delete(type_name, id, Some(origin)).await
        };
        done.map_err(fail)
    }

    async fn call(
        &self,
        auth: AuthRequest,
        names: (String, String, String, String),
        request: Option<crate::types::Any>,
        call_id: Option<String>,
    ) -> Result<Response<proto::CallObjectResponse>, Status> {
        let (span, trace) = crate::trace::gate_request(
            "goverse.gate.v1.Gate/CallObject",
            auth.header("traceparent"),
            self.node.inner.config.trace_sampling,
        );
        let Some(span) = span else {
            return self.serve_call(auth, names, request, call_id, trace).await;
        };
        let served = self.serve_call(auth, names, request, call_id, trace);
        let served = crate::trace::within(Some(&span.span), served).await;
        if let Err(status) = &served {
            crate::trace::failed(&span.span, &status.code().to_string());
        }
        served
    }

    /// A call by a client, in its trace (`trace`: what the call carries).
    async fn serve_call(
        &self,
        auth: AuthRequest,
        (type_name, id, method, client_id): (String, String, String, String),
        request: Option<crate::types::Any>,
        call_id: Option<String>,
        trace: Option<Arc<str>>,
    ) -> Result<Response<proto::CallObjectResponse>, Status> {
        name("type", &type_name)?;
        name("method", &method)?;
        let origin = self
            .admit(&auth, &client_id, &format!("{type_name}/{id}"))
            .await?;
        let request = request.unwrap_or_default().encode_to_vec();
        let mut call = EncodedCall::new(type_name, id, method, Codec::Any, request)
            .timeout(self.options.call_timeout);
        call.origin = Some(origin);
        call.trace = trace;
        if let Some(call_id) = call_id {
            call = call.reliable(call_id);
        }
        let response = self.node.call(call).await.map_err(fail)?;
        let response = crate::types::Any::decode(response.as_slice()).map_err(|e| {
            fail(crate::Error::Internal(format!(
                "an object's response is not an Any: {e}"
            )))
        })?;
        Ok(Response::new(proto::CallObjectResponse {
            response: Some(response),
        }))
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<proto::ClientEvent, Status>> + Send>>;

#[tonic::async_trait]
impl GateService for GrpcGate {
    type RegisterStream = Events;

    async fn register(
        &self,
        request: Request<proto::RegisterRequest>,
    ) -> Result<Response<Events>, Status> {
        let auth = auth_request(&request);
        let origin = self.guard.admit(&auth, None, None).await.map_err(fail)?;
        // Opening a stream counts against the client's rate limit, as a call.
        self.guard
            .limit_client(&origin, auth.remote)
            .map_err(fail)?;
        let request = request.into_inner();
        let resume = (!request.client_id.is_empty() && !request.session.is_empty())
            .then_some((request.client_id.as_str(), request.session.as_str()));
        let last_read = (request.last_sequence > 0).then_some(request.last_sequence);
        let user = origin.identity.as_ref().map(|i| i.user_id.as_str());
        let attached = self
            .sessions
            .attach(resume, last_read, user)
            .map_err(fail)?;
        let outgoing = pump(self.sessions.clone(), attached, self.options.heartbeat);
        let events = tokio_stream::StreamExt::map(outgoing, |outgoing| match outgoing {
            Outgoing::Registered {
                client_id,
                session,
                resumed,
            } => Ok(proto::ClientEvent {
                event: Some(Event::Registered(proto::Registered {
                    client_id,
                    session,
                    resumed,
                })),
            }),
            Outgoing::Message(sequence, message) => Ok(proto::ClientEvent {
                event: Some(Event::Message(proto::Pushed {
                    sequence,
                    message: Some(crate::types::Any {
                        type_url: message.type_url.to_string(),
                        value: message.body.to_vec().into(),
                    }),
                })),
            }),
            Outgoing::Heartbeat => Ok(proto::ClientEvent {
                event: Some(Event::Heartbeat(proto::Heartbeat {})),
            }),
            Outgoing::Ended(Ended::Overflow(dropped)) => Err(fail(crate::Error::ClientOverflow {
                client: String::new(),
                buffered: dropped,
            })),
            Outgoing::Ended(Ended::TakenOver) => {
                Err(Status::aborted("another connection resumed this session"))
            }
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn call_object(
        &self,
        request: Request<proto::CallObjectRequest>,
    ) -> Result<Response<proto::CallObjectResponse>, Status> {
        let auth = auth_request(&request);
        let request = request.into_inner();
        self.call(
            auth,
            (
                request.r#type,
                request.id,
                request.method,
                request.client_id,
            ),
            request.request,
            None,
        )
        .await
    }

    async fn reliable_call_object(
        &self,
        request: Request<proto::ReliableCallObjectRequest>,
    ) -> Result<Response<proto::CallObjectResponse>, Status> {
        let auth = auth_request(&request);
        let request = request.into_inner();
        self.call(
            auth,
            (
                request.r#type,
                request.id,
                request.method,
                request.client_id,
            ),
            request.request,
            Some(request.call_id),
        )
        .await
    }

    async fn create_object(
        &self,
        request: Request<proto::CreateObjectRequest>,
    ) -> Result<Response<proto::CreateObjectResponse>, Status> {
        let auth = auth_request(&request);
        let request = request.into_inner();
        self.lifecycle(&auth, &request.r#type, &request.id, true)
            .await?;
        Ok(Response::new(proto::CreateObjectResponse {
            id: request.id,
        }))
    }

    async fn delete_object(
        &self,
        request: Request<proto::DeleteObjectRequest>,
    ) -> Result<Response<proto::DeleteObjectResponse>, Status> {
        let auth = auth_request(&request);
        let request = request.into_inner();
        self.lifecycle(&auth, &request.r#type, &request.id, false)
            .await?;
        Ok(Response::new(proto::DeleteObjectResponse { success: true }))
    }
}
