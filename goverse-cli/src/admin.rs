//! `goverse status` and `goverse shards`: a cluster's state, read from
//! etcd without joining it, as text for an operator or `--json` for a
//! script; and `move`, `pin`, `unpin`, `drain` and `undrain`, which change
//! it through the same fenced shard-map writes as the cluster's own moves.

use std::collections::BTreeMap;

use goverse::cluster::{AdminAction, ClusterAdmin, ClusterView, NodeSummary};
use serde_json::json;

/// Where the cluster is.
#[derive(Debug, clap::Args)]
pub(crate) struct ClusterAt {
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "GOVERSE_ETCD",
        value_name = "URL,...",
        value_delimiter = ',',
        required = true
    )]
    etcd: Vec<String>,
    /// The cluster's key prefix in etcd [default: /goverse].
    #[arg(long, env = "GOVERSE_PREFIX", value_name = "PREFIX")]
    prefix: Option<String>,
}

/// Where the cluster is, and how to answer.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    at: ClusterAt,
    /// Answer in JSON.
    #[arg(long)]
    json: bool,
    /// Who the cluster's audit log names for an action this command
    /// takes [default: $USER].
    #[arg(long, env = "GOVERSE_OPERATOR", value_name = "NAME")]
    operator: Option<String>,
}

impl AdminArgs {
    /// The operator an action is recorded for.
    fn operator(&self) -> String {
        let name = self
            .operator
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_else(|| "unknown".to_string());
        format!("{name} (cli)")
    }
}

/// Which shards `goverse shards` shows.
#[derive(Debug, clap::Args)]
pub(crate) struct ShardsArgs {
    /// One shard, by number [default: every shard].
    #[arg(value_name = "SHARD", conflicts_with = "object")]
    shard: Option<u32>,
    /// The shard of this object id.
    #[arg(long, value_name = "ID")]
    object: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// A shard, by number or by an object id in it.
#[derive(Debug, clap::Args)]
pub(crate) struct ShardArgs {
    /// The shard's number.
    #[arg(value_name = "SHARD", required_unless_present = "object")]
    shard: Option<u32>,
    /// The shard of this object id, instead of a number.
    #[arg(long, value_name = "ID", conflicts_with = "shard")]
    object: Option<String>,
}

/// `goverse move`: a shard and the node it goes to.
#[derive(Debug, clap::Args)]
pub(crate) struct MoveArgs {
    #[command(flatten)]
    which: ShardArgs,
    /// The node it moves to (and is pinned to).
    #[arg(long, value_name = "NODE")]
    to: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// `goverse pin` and `goverse unpin`: a shard.
#[derive(Debug, clap::Args)]
pub(crate) struct PinArgs {
    #[command(flatten)]
    which: ShardArgs,
    #[command(flatten)]
    admin: AdminArgs,
}

/// `goverse drain` and `goverse undrain`: a node.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// The node's id.
    #[arg(value_name = "NODE")]
    node: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn failed(error: goverse::Error) -> String {
    format!("[{}] {error}", error.code())
}

pub(crate) async fn connect(at: &ClusterAt) -> Result<ClusterAdmin, String> {
    let prefix = at.prefix.as_deref().unwrap_or("/goverse");
    ClusterAdmin::etcd(&at.etcd, prefix).await.map_err(failed)
}

async fn view(args: &AdminArgs) -> Result<ClusterView, String> {
    connect(&args.at).await?.view().await.map_err(failed)
}

/// The shard `which` names in `view`'s cluster.
fn shard_of(which: &ShardArgs, view: &ClusterView) -> Result<u32, String> {
    let count = view.shard_count();
    let shard = match (&which.object, which.shard) {
        (Some(id), _) => {
            goverse::placement::validate_id(id, count).map_err(failed)?;
            if let Some(address) = goverse::placement::pinned_node(id) {
                return Err(format!(
                    "object `{id}` is pinned to the node at {address}, in no shard"
                ));
            }
            goverse::placement::shard_of(id, count)
        }
        (None, Some(shard)) => shard,
        (None, None) => return Err("give a shard number or --object <id>".into()),
    };
    if shard >= count {
        return Err(format!(
            "no shard {shard}: the cluster has {count} (0 to {})",
            count - 1
        ));
    }
    Ok(shard)
}

/// What an action did, as text or JSON.
fn done(json: bool, answer: serde_json::Value, text: String) -> String {
    if json { answer.to_string() } else { text }
}

/// Moves a shard to a node and pins it there.
pub(crate) async fn move_shard(args: MoveArgs) -> Result<String, String> {
    let admin = connect(&args.admin.at).await?;
    let shard = shard_of(&args.which, &admin.view().await.map_err(failed)?)?;
    let action = AdminAction::Move {
        shard,
        node: args.to.clone(),
    };
    admin
        .apply(&args.admin.operator(), &action)
        .await
        .map_err(failed)?;
    Ok(done(
        args.admin.json,
        json!({ "shard": shard, "to": args.to, "pinned": true }),
        format!(
            "shard {shard} moves to {} and stays there until unpinned",
            args.to
        ),
    ))
}

/// Pins a shard where it is, or unpins it (`pin` false).
pub(crate) async fn pin(args: PinArgs, pin: bool) -> Result<String, String> {
    let admin = connect(&args.admin.at).await?;
    let view = admin.view().await.map_err(failed)?;
    let shard = shard_of(&args.which, &view)?;
    let operator = args.admin.operator();
    if !pin {
        admin
            .apply(&operator, &AdminAction::Unpin { shard })
            .await
            .map_err(failed)?;
        return Ok(done(
            args.admin.json,
            json!({ "shard": shard, "pinned": false }),
            format!("shard {shard} is unpinned: balancing places it again"),
        ));
    }
    let owner = admin
        .apply(&operator, &AdminAction::Pin { shard })
        .await
        .map_err(failed)?
        .unwrap_or_default();
    Ok(done(
        args.admin.json,
        json!({ "shard": shard, "to": &*owner, "pinned": true }),
        format!("shard {shard} is pinned to {owner}"),
    ))
}

/// Drains a node, or ends its drain (`drain` false).
pub(crate) async fn drain(args: NodeArgs, drain: bool) -> Result<String, String> {
    let admin = connect(&args.admin.at).await?;
    let node = args.node.clone();
    let action = if drain {
        AdminAction::Drain { node }
    } else {
        AdminAction::Undrain { node }
    };
    admin
        .apply(&args.admin.operator(), &action)
        .await
        .map_err(failed)?;
    Ok(done(
        args.admin.json,
        json!({ "node": args.node, "draining": drain }),
        if drain {
            format!(
                "{} is draining: its shards move to the other nodes (`goverse status` shows them go)",
                args.node
            )
        } else {
            format!("{} takes shards again", args.node)
        },
    ))
}

/// One screen of the cluster: its nodes with their shards, the leader,
/// and what is moving, pinned or without an owner.
pub(crate) async fn status(args: AdminArgs) -> Result<String, String> {
    let snapshot = connect(&args.at).await?.snapshot().await.map_err(failed)?;
    let view = &snapshot.view;
    // What each node last said of itself: objects, calls, readiness.
    let summaries: BTreeMap<&str, &NodeSummary> = snapshot
        .summaries
        .iter()
        .map(|summary| (summary.node.as_str(), summary))
        .collect();
    let audit = &snapshot.audit;
    let recent = &audit[audit.len().saturating_sub(RECENT_ACTIONS)..];
    let mut owned: BTreeMap<std::sync::Arc<str>, (usize, usize, usize)> = BTreeMap::new();
    let (mut moving, mut pinned, mut unowned) = (0, 0, 0);
    for shard in 0..view.shard_count() {
        let Some(state) = view.shard(shard) else {
            continue;
        };
        match view.current_owner(shard) {
            Some(owner) => {
                let entry = owned.entry(owner.id.clone()).or_default();
                entry.0 += 1;
                entry.1 += usize::from(view.is_moving(shard));
                entry.2 += usize::from(state.pinned);
            }
            None => unowned += 1,
        }
        moving += usize::from(view.is_moving(shard));
        pinned += usize::from(state.pinned);
    }
    let nodes: Vec<_> = view
        .nodes
        .values()
        .map(|node| {
            let (shards, moving_away, pinned) = owned.get(&*node.id).copied().unwrap_or_default();
            (node, shards, moving_away, pinned)
        })
        .collect();
    if args.json {
        let nodes: Vec<_> = nodes
            .iter()
            .map(|(node, shards, moving_away, pinned)| {
                json!({
                    "id": &*node.id,
                    "address": &*node.address,
                    "hosts_objects": node.hosts_objects,
                    "leaving": node.leaving,
                    "draining": node.draining,
                    "shards": shards,
                    "moving_away": moving_away,
                    "pinned": pinned,
                    "summary": summaries.get(&*node.id),
                })
            })
            .collect();
        return Ok(json!({
            "leader": view.leader.as_deref(),
            "shard_count": view.shard_count(),
            "nodes": nodes,
            "moving": moving,
            "pinned": pinned,
            "unowned": unowned,
            "recent_actions": recent,
        })
        .to_string());
    }
    let mut text = format!(
        "{} nodes, leader {}, {} shards: {moving} moving, {pinned} pinned, {unowned} without an owner\n\n",
        view.nodes.len(),
        view.leader.as_deref().unwrap_or("(none)"),
        view.shard_count(),
    );
    text.push_str(&format!(
        "{:<24} {:<22} {:>7} {:>7} {:>7} {:>9} {:>10}  {}\n",
        "NODE", "ADDRESS", "SHARDS", "MOVING", "PINNED", "OBJECTS", "CALLS", "STATE"
    ));
    for (node, shards, moving_away, pinned) in &nodes {
        let state = match (node.hosts_objects, node.leaving, node.draining) {
            (_, true, _) => "leaving",
            (_, false, true) => "draining",
            (true, false, false) => "live",
            (false, false, false) => "live, routes only (a gate)",
        };
        let summary = summaries.get(&*node.id);
        let objects = summary.map_or("-".to_string(), |s| {
            s.objects.values().sum::<u64>().to_string()
        });
        let calls = summary
            .and_then(|s| s.calls)
            .map_or("-".to_string(), |calls| calls.to_string());
        let state = match summary {
            Some(summary) if !summary.ready => format!("{state}, not ready"),
            _ => state.to_string(),
        };
        text.push_str(&format!(
            "{:<24} {:<22} {shards:>7} {moving_away:>7} {pinned:>7} {objects:>9} {calls:>10}  {state}\n",
            node.id, node.address
        ));
    }
    if !recent.is_empty() {
        text.push_str("\nRECENT ACTIONS\n");
        for entry in recent {
            text.push_str(&format!(
                "{} {:<20} {:<40} {}\n",
                clock(entry.at_unix_ms / 1000),
                entry.user,
                entry.action.to_string(),
                entry.outcome
            ));
        }
    }
    Ok(text.trim_end().to_string())
}

/// Audit entries `goverse status` shows.
const RECENT_ACTIONS: usize = 5;

/// `HH:MM:SS` (UTC) of a time in seconds since the epoch.
fn clock(unix_seconds: u64) -> String {
    let day = unix_seconds % 86_400;
    format!("{:02}:{:02}:{:02}Z", day / 3600, day % 3600 / 60, day % 60)
}

/// A shard's owner, target, epoch and pin: one shard, an object's, or all.
pub(crate) async fn shards(args: ShardsArgs) -> Result<String, String> {
    let view = view(&args.admin).await?;
    let count = view.shard_count();
    let chosen: Vec<u32> = match (&args.object, args.shard) {
        (Some(id), _) => {
            goverse::placement::validate_id(id, count)
                .map_err(|e| format!("[{}] {e}", e.code()))?;
            if let Some(address) = goverse::placement::pinned_node(id) {
                return Ok(if args.admin.json {
                    json!({ "object": id, "pinned_to_node": address }).to_string()
                } else {
                    format!("object `{id}` is pinned to the node at {address}, in no shard")
                });
            }
            vec![goverse::placement::shard_of(id, count)]
        }
        (None, Some(shard)) if shard >= count => {
            return Err(format!(
                "no shard {shard}: the cluster has {count} (0 to {})",
                count - 1
            ));
        }
        (None, Some(shard)) => vec![shard],
        (None, None) => (0..count).collect(),
    };
    let rows: Vec<_> = chosen
        .iter()
        .filter_map(|&shard| Some((shard, view.shard(shard)?)))
        .collect();
    if args.admin.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(shard, state)| {
                json!({
                    "shard": shard,
                    "owner": state.owner.as_deref(),
                    "target": state.target.as_deref(),
                    "epoch": state.epoch,
                    "pinned": state.pinned,
                    "moving": view.is_moving(*shard),
                })
            })
            .collect();
        let answer = match &args.object {
            Some(id) => json!({ "object": id, "shards": rows }),
            None => json!({ "shards": rows }),
        };
        return Ok(answer.to_string());
    }
    let mut text = format!(
        "{:>6} {:<24} {:<24} {:>8} {}\n",
        "SHARD", "OWNER", "TARGET", "EPOCH", "PINNED"
    );
    for (shard, state) in &rows {
        text.push_str(&format!(
            "{shard:>6} {:<24} {:<24} {:>8} {}\n",
            state.owner.as_deref().unwrap_or("-"),
            state.target.as_deref().unwrap_or("-"),
            state.epoch,
            if state.pinned { "yes" } else { "no" },
        ));
    }
    Ok(text.trim_end().to_string())
}
