//! `goverse status` and `goverse shards`: a cluster's state, read from
//! etcd without joining it, as text for an operator or `--json` for a
//! script.

use std::collections::BTreeMap;

use goverse::cluster::{ClusterAdmin, ClusterView};
use serde_json::json;

/// Where the cluster is, and how to answer.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
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
    /// Answer in JSON.
    #[arg(long)]
    json: bool,
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

async fn view(args: &AdminArgs) -> Result<ClusterView, String> {
    let prefix = args.prefix.as_deref().unwrap_or("/goverse");
    let admin = ClusterAdmin::etcd(&args.etcd, prefix)
        .await
        .map_err(|e| format!("[{}] {e}", e.code()))?;
    admin
        .view()
        .await
        .map_err(|e| format!("[{}] {e}", e.code()))
}

/// One screen of the cluster: its nodes with their shards, the leader,
/// and what is moving, pinned or without an owner.
pub(crate) async fn status(args: AdminArgs) -> Result<String, String> {
    let view = view(&args).await?;
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
                    "shards": shards,
                    "moving_away": moving_away,
                    "pinned": pinned,
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
        "{:<24} {:<22} {:>7} {:>7} {:>7}  {}\n",
        "NODE", "ADDRESS", "SHARDS", "MOVING", "PINNED", "STATE"
    ));
    for (node, shards, moving_away, pinned) in &nodes {
        let state = match (node.hosts_objects, node.leaving) {
            (_, true) => "leaving",
            (true, false) => "live",
            (false, false) => "live, routes only (a gate)",
        };
        text.push_str(&format!(
            "{:<24} {:<22} {shards:>7} {moving_away:>7} {pinned:>7}  {state}\n",
            node.id, node.address
        ));
    }
    Ok(text.trim_end().to_string())
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
