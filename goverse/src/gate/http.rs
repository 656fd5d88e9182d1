//! The HTTP routes of the gate: calls, creates and deletes of objects by
//! name, with the request as a base64 protobuf `Any` (the original's form)
//! or as plain proto3 JSON.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::GateOptions;
use super::errors::GateError;
use super::security::{AuthRequest, Guard};
use super::sessions::{Ended, Outgoing, Sessions, pump};
use crate::Code;
use crate::access::Origin;
use crate::call::EncodedCall;
use crate::message::Codec;
use crate::node::Node;

/// What every handler shares.
pub(crate) struct HttpState {
    pub(crate) node: Node,
    pub(crate) options: GateOptions,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) guard: Arc<Guard>,
}

/// The address of the peer a request came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) std::net::SocketAddr);

/// What the authentication hook sees of an HTTP request.
fn auth_request(headers: &HeaderMap, peer: Option<&Peer>) -> AuthRequest {
    AuthRequest {
        headers: headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect(),
        remote: peer.map(|p| p.0),
        protocol: "http",
    }
}

/// Authenticates a request, binds its client id, and applies the rate
/// limits for `target`: the origin its call carries.
async fn admit(
    state: &HttpState,
    headers: &HeaderMap,
    peer: Option<&Peer>,
    target: &str,
) -> Result<Arc<Origin>, GateError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = state
        .guard
        .admit(
            &auth_request(headers, peer),
            text("x-client-id"),
            text("x-session-token"),
        )
        .await?;
    state.guard.limit(&origin, peer.map(|p| p.0), target)?;
    Ok(Arc::new(origin))
}

type Shared = State<Arc<HttpState>>;

/// The header that makes a call reliable, carrying its call id.
const CALL_ID: &str = "x-call-id";

/// The gate's routes.
pub(crate) fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/api/v1/objects/call/{type}/{id}/{method}", post(call))
        .route("/api/v1/objects/create/{type}/{id}", post(create))
        .route("/api/v1/objects/delete/{type}/{id}", post(delete))
        .route("/api/v1/events/stream", get(events))
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            cross_site_guard,
        ))
        .layer(cors_layer(&state.options.cors_origins))
        .layer(middleware::from_fn(peer_from_connect_info))
        .with_state(state)
}

/// In a server of the user's (a mounted [`Gate::router`](super::Gate::router)),
/// the peer's address comes from axum's `ConnectInfo`, when the server
/// records it.
async fn peer_from_connect_info(
    mut request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if request.extensions().get::<Peer>().is_none()
        && let Some(axum::extract::ConnectInfo(address)) = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .copied()
    {
        request.extensions_mut().insert(Peer(address));
    }
    next.run(request).await
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Checks a path segment naming a type or a method: what the macro allows
/// (ASCII letters, digits and `_`, starting with a letter or `_`).
pub(crate) fn name_segment(what: &str, value: &str) -> Result<(), GateError> {
    let mut chars = value.chars();
    let valid = value.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(GateError::invalid_path(format!(
            "`{}` is not a valid {what} name",
            value.chars().take(128).collect::<String>()
        )))
    }
}

/// Reads the whole body: at most the configured size, within the
/// configured time (a client that trickles its body is cut off).
async fn read_body(options: &GateOptions, body: Body) -> Result<Bytes, GateError> {
    let limited = http_body_util::Limited::new(body, options.max_body_bytes);
    let collected = tokio::time::timeout(
        options.body_timeout,
        http_body_util::BodyExt::collect(limited),
    )
    .await
    .map_err(|_| {
        GateError::new(
            Code::RequestTimeout,
            format!(
                "the request body did not arrive within {:?}",
                options.body_timeout
            ),
        )
    })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(GateError::new(
            Code::BodyTooLarge,
            format!("the request body is over {} bytes", options.max_body_bytes),
        )),
        Err(error) => Err(GateError::invalid_body(format!(
            "the request body could not be read: {error}"
        ))),
    }
}

/// How a call's request came, and so how its response goes back.
enum CallBody {
    /// `{"request": "<base64 Any>"}`.
    Any(Vec<u8>),
    /// A proto3 JSON message.
    Json(Vec<u8>),
}

/// Tells the two request forms apart. A JSON object whose only field is
/// the string `request` is the `Any` form; anything else that is JSON is
/// the request message itself. An empty body is the empty message `{}`.
fn parse_call_body(body: &[u8]) -> Result<CallBody, GateError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CallBody::Json(b"{}".to_vec()));
    }
    // Only a body that mentions `request` can be the Any form; any other
    // goes to the object as it is, whose decoder checks it.
    if !body.windows(9).any(|w| w == br#""request""#) {
        return Ok(CallBody::Json(body.to_vec()));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        GateError::new(
            Code::InvalidJson,
            format!("the request body is not JSON: {e}"),
        )
    })?;
    if let serde_json::Value::Object(fields) = &value
        && fields.len() == 1
        && let Some(request) = fields.get("request")
    {
        let serde_json::Value::String(encoded) = request else {
            return Err(GateError::invalid_body(
                "`request` must be a string: a base64-encoded protobuf Any",
            ));
        };
        let any = STANDARD
            .decode(encoded.trim())
            .map_err(|e| GateError::new(Code::InvalidBase64, e.to_string()))?;
        return Ok(CallBody::Any(any));
    }
    Ok(CallBody::Json(body.to_vec()))
}

async fn call(
    State(state): Shared,
    path: Result<Path<(String, String, String)>, PathRejection>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GateError> {
    let header = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let (span, trace) = crate::trace::gate_request(
        "POST /api/v1/objects/call",
        header,
        state.node.inner.config.trace_sampling,
    );
    let Some(span) = span else {
        return serve_call(state, path, peer, headers, body, trace).await;
    };
    let served = serve_call(state, path, peer, headers, body, trace);
    let served = crate::trace::within(Some(&span.span), served).await;
    if let Err(error) = &served {
        crate::trace::failed(&span.span, error.code.as_str());
    }
    served
}

/// A call by a client, in its trace (`trace`: what the call carries).
async fn serve_call(
    state: Arc<HttpState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
    trace: Option<Arc<str>>,
) -> Result<Response, GateError> {
    let Path((type_name, id, method)) = path.map_err(|e| GateError::invalid_path(e.body_text()))?;
    name_segment("type", &type_name)?;
    name_segment("method", &method)?;
    let target = format!("{type_name}/{id}");
    let origin = admit(&state, &headers, peer.as_deref(), &target).await?;
    let body = read_body(&state.options, body).await?;
    let (codec, request) = match parse_call_body(&body)? {
        CallBody::Any(any) => (Codec::Any, any),
        CallBody::Json(json) => (Codec::Json, json),
    };
    let mut call =
        EncodedCall::new(type_name, id, method, codec, request).timeout(state.options.call_timeout);
    call.origin = Some(origin);
    call.trace = trace;
    if let Some(call_id) = headers.get(CALL_ID) {
        let call_id = call_id
            .to_str()
            .map_err(|_| GateError::invalid_body("the X-Call-Id header is not ASCII text"))?;
        call = call.reliable(call_id);
    }
    let response = state.node.call(call).await?;
    let body = match codec {
        Codec::Any => format!(r#"{{"response":"{}"}}"#, STANDARD.encode(response)).into_bytes(),
        // The object's JSON, as its codec wrote it, wrapped as is.
        _ => [br#"{"response":"#.as_slice(), &response, b"}"].concat(),
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A create or delete by a client: checks, admits and runs it; returns
/// the object id.
async fn lifecycle(
    state: &HttpState,
    path: Result<Path<(String, String)>, PathRejection>,
    (peer, headers): (Option<&Peer>, &HeaderMap),
    body: Body,
    create: bool,
) -> Result<String, GateError> {
    let Path((type_name, id)) = path.map_err(|e| GateError::invalid_path(e.body_text()))?;
    name_segment("type", &type_name)?;
    let origin = admit(state, headers, peer, &format!("{type_name}/{id}")).await?;
    read_body(&state.options, body).await?;
    let node = &state.node.inner;
    if create {
        node.create(&type_name, &id, Some(origin)).await?;
    } else {
        node.delete(&type_name, &id, Some(origin)).await?;
    }
    Ok(id)
}

async fn create(
    State(state): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GateError> {
    let id = lifecycle(&state, path, (peer.as_deref(), &headers), body, true).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "id": id }),
    ))
}

async fn delete(
    State(state): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GateError> {
    lifecycle(&state, path, (peer.as_deref(), &headers), body, false).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "success": true }),
    ))
}

/// The `data` of a `message` event: the type, the message in proto3 JSON,
/// and as a base64 protobuf `Any`.
fn message_data(message: &crate::node::PushMessage) -> serde_json::Value {
    let any = crate::types::Any {
        type_url: message.type_url.to_string(),
        value: message.body.to_vec().into(),
    };
    let json: serde_json::Value =
        serde_json::from_str(&message.json).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "type": message.type_name(),
        "json": json,
        "any": STANDARD.encode(prost::Message::encode_to_vec(&any)),
    })
}

/// The push stream's query parameters: what browsers' `EventSource`,
/// which cannot set headers, sends in their place.
#[derive(Debug, Default, serde::Deserialize)]
struct StreamQuery {
    client_id: Option<String>,
    session: Option<String>,
    last_event_id: Option<String>,
}

/// `GET /api/v1/events/stream`: a client's push stream. First a
/// `register` event with its client id and session token, then a `message`
/// event for each push (with an `id:`, its sequence number), and a
/// `heartbeat` whenever nothing else was sent for the heartbeat interval.
/// Reconnecting with `X-Client-ID` and `X-Session-Token` (or `client_id`
/// and `session` query parameters), within the grace period, resumes the
/// session; with `Last-Event-ID` (or `last_event_id`) the messages after
/// that one are sent again.
async fn events(State(state): Shared, request: Request) -> Result<Response, GateError> {
    let peer = request.extensions().get::<Peer>().copied();
    let origin = state
        .guard
        .admit(&auth_request(request.headers(), peer.as_ref()), None, None)
        .await?;
    // Opening a stream counts against the client's rate limit, as a call.
    state.guard.limit_client(&origin, peer.map(|p| p.0))?;
    let query = axum::extract::Query::<StreamQuery>::try_from_uri(request.uri())
        .map_err(|e| GateError::invalid_path(format!("the query string: {e}")))?
        .0;
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let client = header("x-client-id").or(query.client_id);
    let token = header("x-session-token").or(query.session);
    let last_read = header("last-event-id")
        .or(query.last_event_id)
        .and_then(|id| id.trim().parse::<u64>().ok());
    let resume = match (&client, &token) {
        (Some(client), Some(token)) => Some((client.as_str(), token.as_str())),
        _ => None,
    };
    let user = origin.identity.as_ref().map(|i| i.user_id.as_str());
    let attached = state.sessions.attach(resume, last_read, user)?;
    let outgoing = pump(state.sessions.clone(), attached, state.options.heartbeat);
    // Heartbeats are the pump's own events (clients watch for them), so
    // axum's keep-alive comments are not used.
    let stream = tokio_stream::StreamExt::map(outgoing, |outgoing| {
        Ok::<_, std::convert::Infallible>(event_of(outgoing))
    });
    Ok(Sse::new(stream).into_response())
}

/// A server-sent event named `name`, with JSON `data`.
fn sse(name: &str, id: Option<u64>, data: &serde_json::Value) -> Event {
    let event = Event::default().event(name);
    let event = match id {
        Some(id) => event.id(id.to_string()),
        None => event,
    };
    event.data(data.to_string())
}

/// A stream item as a server-sent event.
fn event_of(outgoing: Outgoing) -> Event {
    match outgoing {
        Outgoing::Registered {
            client_id,
            session,
            resumed,
        } => sse(
            "register",
            None,
            &serde_json::json!({ "client_id": client_id, "session": session, "resumed": resumed }),
        ),
        Outgoing::Message(sequence, message) => {
            sse("message", Some(sequence), &message_data(&message))
        }
        Outgoing::Heartbeat => sse("heartbeat", None, &serde_json::json!({})),
        Outgoing::Ended(Ended::Overflow(dropped)) => sse(
            "error",
            None,
            &serde_json::json!({
                "code": Code::ClientOverflow.as_str(),
                "error": "the client fell a whole buffer behind; its unread messages were dropped",
                "dropped": dropped,
            }),
        ),
        Outgoing::Ended(Ended::TakenOver) => sse(
            "error",
            None,
            &serde_json::json!({
                "code": Code::SessionTakenOver.as_str(),
                "error": "another connection resumed this session",
            }),
        ),
    }
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// Ready while the node takes calls and the cluster has an owner for every
/// shard.
async fn ready(State(state): Shared) -> Response {
    let view = state.node.cluster_view();
    let owned = (0..view.shard_count()).all(|shard| view.current_owner(shard).is_some());
    if owned && !state.node.is_shutting_down() {
        json_response(StatusCode::OK, &serde_json::json!({ "status": "ready" }))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "not ready" }),
        )
    }
}

async fn method_not_allowed(method: Method) -> GateError {
    GateError::new(
        Code::MethodNotAllowed,
        format!("{method} is not allowed here"),
    )
}

async fn not_found() -> GateError {
    GateError::new(
        Code::NotFound,
        "no such route; calls go to POST /api/v1/objects/call/{type}/{id}/{method}",
    )
}

/// CORS (tower-http): browsers on the allowed origins may call the gate
/// and read its answers; a preflight is answered without reaching a route.
/// `*` admits every origin, echoed back.
fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::mirror_request()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-client-id"),
            HeaderName::from_static("x-session-token"),
            HeaderName::from_static("x-call-id"),
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// A gate open to some origins only must not run what a page of another
/// origin can send without a preflight: a POST from another origin, or a
/// POST whose content type a form can send (`text/plain`, ...).
async fn cross_site_guard(State(state): Shared, request: Request, next: Next) -> Response {
    let origins = &state.options.cors_origins;
    let restricted = !origins.iter().any(|o| o == "*");
    if restricted && request.method() == Method::POST {
        let foreign = request
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|origin| !origins.iter().any(|o| origin == o.as_str()));
        if foreign {
            return GateError::new(Code::AccessDenied, "this origin may not call the gate")
                .into_response();
        }
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json {
            return GateError::new(
                Code::UnsupportedMediaType,
                "this gate takes calls with `Content-Type: application/json` only",
            )
            .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod fuzz {
    //! Request decoding against arbitrary input: it answers or refuses
    //! with a stable code, and never panics. `PROPTEST_CASES` bounds the
    //! run (the test script runs the default 256 per property).

    use proptest::prelude::*;

    use super::*;
    use crate::message::{decode, types};

    const CODES: [&str; 4] = ["INVALID_JSON", "INVALID_BODY", "INVALID_BASE64", "OK"];

    fn outcome(body: &[u8]) -> &'static str {
        match parse_call_body(body) {
            Ok(_) => "OK",
            Err(error) => CODES
                .into_iter()
                .find(|code| *code == error.code)
                .unwrap_or("UNEXPECTED"),
        }
    }

    proptest! {
        #[test]
        fn any_body_parses_or_is_refused_with_a_code(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert_ne!(outcome(&body), "UNEXPECTED");
        }

        #[test]
        fn any_request_string_is_base64_or_refused(request in ".{0,300}") {
            let body = serde_json::json!({ "request": request }).to_string();
            prop_assert!(matches!(outcome(body.as_bytes()), "OK" | "INVALID_BASE64"));
        }

        #[test]
        fn any_bytes_decode_or_are_refused_in_every_codec(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            for codec in [Codec::Protobuf, Codec::Json, Codec::Any] {
                if let Err(error) = decode::<types::Int32Value>(codec, &body) {
                    prop_assert!(matches!(error.code(), Code::InvalidProtobuf | Code::InvalidJson));
                }
                if let Err(error) = decode::<types::Struct>(codec, &body) {
                    prop_assert!(matches!(error.code(), Code::InvalidProtobuf | Code::InvalidJson));
                }
            }
        }

        #[test]
        fn any_path_segment_is_a_name_or_refused(segment in "\\PC{0,200}") {
            if let Err(error) = name_segment("type", &segment) {
                prop_assert_eq!(error.code, "INVALID_PATH");
            }
        }

        #[test]
        fn any_query_string_is_read_or_refused(query in "\\PC{0,200}") {
            if let Ok(uri) = format!("/api/v1/events/stream?{query}").parse::<axum::http::Uri>() {
                let _ = axum::extract::Query::<StreamQuery>::try_from_uri(&uri);
            }
        }
    }
}
