//! `goverse inspector`: a cluster's state for a browser (the page at `/`)
//! and for scripts,
//! read from etcd (the shard map and the nodes' summaries) without
//! joining, and the operator's actions on it (move, pin, unpin, drain,
//! undrain), each made with an operator token and written to the
//! cluster's audit log of who did what (which the `goverse` commands'
//! actions go to too).
//!
//! The JSON API:
//!
//! | route | answers |
//! | --- | --- |
//! | `GET /api/cluster` | nodes with their summaries, and every shard's owner, target, epoch and pin |
//! | `GET /api/stream` | server-sent `state` events: the cluster and the audit log, at once and after each change |
//! | `GET /api/objects/{id}` | the shard and node of an object id |
//! | `POST /api/actions` | an action, with `Authorization: Bearer <operator token>` |
//! | `GET /api/actions` | the cluster's audit log, newest last |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use goverse::cluster::{AdminAction, ClusterAdmin, ClusterSnapshot, NodeSummary};
use goverse::gate::TokenFile;
use serde_json::json;

use crate::admin::ClusterAt;

/// `goverse inspector`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectorArgs {
    /// Where to serve the page and the API.
    #[arg(
        long,
        env = "GOVERSE_INSPECTOR_LISTEN",
        value_name = "ADDRESS",
        default_value = "127.0.0.1:8090"
    )]
    listen: SocketAddr,
    /// The operators' tokens, in the gate's token file format; without
    /// it, the inspector only shows.
    #[arg(long, env = "GOVERSE_INSPECTOR_TOKENS", value_name = "FILE")]
    tokens: Option<PathBuf>,
    #[command(flatten)]
    at: ClusterAt,
}

struct Inspector {
    admin: Arc<ClusterAdmin>,
    tokens: Option<TokenFile>,
    /// The cluster's state as the stream sends it, kept current.
    latest: tokio::sync::watch::Receiver<Arc<str>>,
}

type Shared = State<Arc<Inspector>>;

/// Serves the inspector until the process is stopped.
pub(crate) async fn run(args: InspectorArgs) -> Result<String, String> {
    let admin = crate::admin::connect(&args.at).await?;
    // Fail at start, not at the first request, for a wrong prefix.
    admin.view().await.map_err(crate::admin::failed)?;
    let tokens = match &args.tokens {
        Some(path) => Some(TokenFile::load(path).map_err(crate::admin::failed)?),
        None => None,
    };
    let admin = Arc::new(admin);
    let changes = admin.watch().await.map_err(crate::admin::failed)?;
    let first = snapshot(&admin).await.map_err(crate::admin::failed)?;
    let (latest, receiver) = tokio::sync::watch::channel::<Arc<str>>(first.into());
    let follower = tokio::spawn(follow(admin.clone(), changes, latest));
    let inspector = Arc::new(Inspector {
        admin,
        tokens,
        latest: receiver,
    });
    let router = axum::Router::new()
        .route("/", get(page))
        .route("/api/cluster", get(cluster))
        .route("/api/stream", get(stream))
        .route("/api/objects/{id}", get(object))
        .route("/api/actions", post(act).get(actions))
        .with_state(inspector);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|error| format!("cannot read the listening address: {error}"))?;
    // The line a supervisor (or a test) waits for.
    println!("ready http://{bound}");
    tracing::info!(listen = %bound, "inspector ready");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            stopped().await;
            // Its end drops the stream's sender, which ends the pages'
            // streams, so that their connections close too.
            follower.abort();
        })
        .await
        .map_err(|error| format!("the inspector stopped: {error}"))?;
    Ok(String::new())
}

/// Resolves on SIGTERM or Ctrl-C: a supervisor's stop, or a container's
/// (where the inspector may be process 1, which no signal stops by
/// default).
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("inspector stopping");
}

/// The page: plain HTML, CSS and script, built into the binary, which
/// follows the stream (and reads the API while the stream is down).
const PAGE: &str = include_str!("inspector.html");

async fn page() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        PAGE,
    )
        .into_response()
}

/// An error as the API answers it: a status, a stable code, a message.
fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "code": code, "message": message.into() })),
    )
        .into_response()
}

fn refuse_error(error: &goverse::Error) -> Response {
    let code = error.code();
    let status = match code.as_str() {
        "INVALID_CONFIG" | "INVALID_OBJECT_ID" => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    refuse(status, code.as_str(), error.to_string())
}

async fn cluster(State(inspector): Shared) -> Response {
    match inspector.admin.snapshot().await {
        Ok(snapshot) => Json(cluster_state(&snapshot)).into_response(),
        Err(error) => refuse_error(&error),
    }
}

/// The cluster as `GET /api/cluster` gives it: the nodes with their
/// summaries, and every shard's owner, target, epoch and pin.
fn cluster_state(snapshot: &ClusterSnapshot) -> serde_json::Value {
    let view = &snapshot.view;
    let summaries: BTreeMap<&str, &NodeSummary> = snapshot
        .summaries
        .iter()
        .map(|summary| (summary.node.as_str(), summary))
        .collect();
    let count = view.shard_count();
    let owner: Vec<Option<&str>> = (0..count)
        .map(|s| view.current_owner(s).map(|n| &*n.id))
        .collect();
    let mut served: BTreeMap<&str, usize> = BTreeMap::new();
    for node in owner.iter().flatten() {
        *served.entry(node).or_default() += 1;
    }
    let nodes: Vec<_> = view
        .nodes
        .values()
        .map(|node| {
            let shards = served.get(&*node.id).copied().unwrap_or(0);
            json!({
                "id": &*node.id,
                "address": &*node.address,
                "hosts_objects": node.hosts_objects,
                "leaving": node.leaving,
                "draining": node.draining,
                "leader": view.leader.as_ref() == Some(&node.id),
                "shards": shards,
                "summary": summaries.get(&*node.id),
            })
        })
        .collect();
    // Every shard, as columns: 8192 rows as objects would be most of the
    // answer's size.
    let target: Vec<Option<&str>> = (0..count)
        .map(|s| view.shard(s).and_then(|st| st.target.as_deref()))
        .collect();
    let epoch: Vec<u64> = (0..count)
        .map(|s| view.shard(s).map_or(0, |st| st.epoch))
        .collect();
    let pinned: Vec<u32> = (0..count)
        .filter(|&s| view.shard(s).is_some_and(|st| st.pinned))
        .collect();
    let moving: Vec<u32> = (0..count).filter(|&s| view.is_moving(s)).collect();
    json!({
        "leader": view.leader.as_deref(),
        "shard_count": count,
        "nodes": nodes,
        "shards": {
            "owner": owner,
            "target": target,
            "epoch": epoch,
            "pinned": pinned,
            "moving": moving,
        },
    })
}

/// What `GET /api/stream` sends: the cluster and the audit log together.
async fn snapshot(admin: &ClusterAdmin) -> Result<String, goverse::Error> {
    let snapshot = admin.snapshot().await?;
    let cluster = cluster_state(&snapshot);
    Ok(json!({ "cluster": cluster, "actions": snapshot.audit }).to_string())
}

/// Keeps `latest` at the cluster's state, made again after each change
/// in the store (changes within 100 ms are taken together, so a burst of
/// moves costs a few reads, not one each), until the
/// inspector stops.
async fn follow(
    admin: Arc<ClusterAdmin>,
    mut changes: tokio::sync::watch::Receiver<i64>,
    latest: tokio::sync::watch::Sender<Arc<str>>,
) {
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        changes.borrow_and_update();
        match snapshot(&admin).await {
            Ok(state) => {
                latest.send_replace(state.into());
            }
            Err(error) => tracing::debug!(%error, "the cluster could not be read"),
        }
    }
}

/// The cluster's state as server-sent events: the current one at once,
/// then a new one after each change, as `state` events (the JSON of
/// `{cluster, actions}`).
async fn stream(
    State(inspector): Shared,
) -> axum::response::sse::Sse<
    impl futures_core::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio_stream::StreamExt as _;
    let states = tokio_stream::wrappers::WatchStream::new(inspector.latest.clone())
        .map(|state| Ok(Event::default().event("state").data(&*state)));
    Sse::new(states).keep_alive(KeepAlive::default())
}

async fn object(State(inspector): Shared, Path(id): Path<String>) -> Response {
    let view = match inspector.admin.view().await {
        Ok(view) => view,
        Err(error) => return refuse_error(&error),
    };
    let count = view.shard_count();
    if let Err(error) = goverse::placement::validate_id(&id, count) {
        return refuse_error(&error);
    }
    if let Some(address) = goverse::placement::pinned_node(&id) {
        let node = view
            .nodes
            .values()
            .find(|n| &*n.address == address)
            .map(|n| &*n.id);
        return Json(
            json!({ "object": id, "shard": null, "node": node, "pinned_to_address": address }),
        )
        .into_response();
    }
    let shard = goverse::placement::shard_of(&id, count);
    let node = view.current_owner(shard).map(|n| n.id.to_string());
    Json(json!({ "object": id, "shard": shard, "node": node })).into_response()
}

async fn actions(State(inspector): Shared) -> Response {
    match inspector.admin.audit_log().await {
        Ok(log) => Json(json!({ "actions": log })).into_response(),
        Err(error) => refuse_error(&error),
    }
}

async fn act(State(inspector): Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Some(tokens) = &inspector.tokens else {
        return refuse(
            StatusCode::FORBIDDEN,
            "ACCESS_DENIED",
            "this inspector has no operator tokens (--tokens): it only shows",
        );
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(user) = token
        .and_then(|token| tokens.identity_of(token))
        .map(|identity| identity.user_id.to_string())
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "an operator token is required (Authorization: Bearer <token>)",
        );
    };
    let action: AdminAction = match serde_json::from_slice(&body) {
        Ok(action) => action,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "INVALID_JSON",
                format!("not an action: {error}"),
            );
        }
    };
    let done = inspector.admin.apply(&user, &action).await;
    match done {
        Ok(_) => Json(json!({ "ok": true, "user": user, "action": action })).into_response(),
        Err(error) => refuse_error(&error),
    }
}
