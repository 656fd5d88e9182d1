//! `goverse`: operations on a goverse deployment's storage and cluster.
//!
//! ```text
//! goverse migrate --postgres <url> | --sqlite <file> | --config <node.yaml>
//! goverse check   --postgres <url> | --config <node.yaml>
//! goverse status  --etcd <url,...> [--prefix /goverse] [--json]
//! goverse shards  [SHARD | --object <id>] --etcd <url,...> [--json]
//! goverse move    SHARD | --object <id> --to <node> --etcd <url,...>
//! goverse pin     SHARD | --object <id> --etcd <url,...>
//! goverse unpin   SHARD | --object <id> --etcd <url,...>
//! goverse drain   NODE --etcd <url,...>
//! goverse undrain NODE --etcd <url,...>
//! goverse inspector --etcd <url,...> [--listen 127.0.0.1:8090] [--tokens <file>]
//! ```
//!
//! `migrate` applies the embedded schema migrations (idempotent, safe to
//! run while nodes run); `check` exits with status 1 and says why when the
//! schema is missing or older than this build. The storage flags are a
//! node's (`goverse::config::StorageArgs`, each also read from its
//! `GOVERSE_*` variable), so a node's own `--config` file works as it is.
//! `goverse <command> --help` lists them. `status` and `shards` read the
//! cluster's state from etcd without joining it.

mod admin;
mod inspector;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use goverse::config::{NodeFile, StorageArgs};

/// Operations on a goverse deployment's storage and cluster.
#[derive(Debug, Parser)]
#[command(name = "goverse", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Applies the schema migrations this build embeds (idempotent, safe
    /// while nodes run).
    Migrate(StorageCommand),
    /// Exits with status 1, saying why, when the schema is missing or older
    /// than this build.
    Check(StorageCommand),
    /// The cluster in one screen: its nodes and their shards, the leader,
    /// and the shards moving, pinned or without an owner.
    Status(admin::AdminArgs),
    /// The owner, target, epoch and pin of a shard, of an object's shard
    /// (`--object`), or of every shard.
    Shards(admin::ShardsArgs),
    /// Moves a shard to a node and pins it there (until `unpin`).
    Move(admin::MoveArgs),
    /// Pins a shard to the node serving it: balancing leaves it there.
    Pin(admin::PinArgs),
    /// Unpins a shard: balancing places it again.
    Unpin(admin::PinArgs),
    /// Moves every shard of a node to the others and gives it none (before
    /// a restart); its next incarnation takes shards again.
    Drain(admin::NodeArgs),
    /// Ends a node's drain.
    Undrain(admin::NodeArgs),
    /// Serves the cluster's state, and the operators' actions on it, as a
    /// JSON API (and, with `--tokens`, takes actions).
    Inspector(inspector::InspectorArgs),
}

#[derive(Debug, clap::Args)]
struct StorageCommand {
    /// A node file whose `storage:` section names the storage.
    #[arg(long, env = "GOVERSE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    storage: StorageArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let _telemetry = match logging::init("goverse") {
        Ok(telemetry) => telemetry,
        Err(message) => {
            eprintln!("goverse: {message}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Migrate(args) => run(args, true).await,
        Command::Check(args) => run(args, false).await,
        Command::Status(args) => admin::status(args).await,
        Command::Shards(args) => admin::shards(args).await,
        Command::Move(args) => admin::move_shard(args).await,
        Command::Pin(args) => admin::pin(args, true).await,
        Command::Unpin(args) => admin::pin(args, false).await,
        Command::Drain(args) => admin::drain(args, true).await,
        Command::Undrain(args) => admin::drain(args, false).await,
        Command::Inspector(args) => inspector::run(args).await,
    };
    match outcome {
        Ok(message) => {
            // Nothing to say (the inspector, stopped) writes nothing: its
            // reader may be gone by then.
            if !message.is_empty() {
                println!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("goverse: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the storage the flags name, migrating it first if `migrate`.
async fn run(args: StorageCommand, migrate: bool) -> Result<String, String> {
    let mut storage = match &args.config {
        Some(path) => NodeFile::load(path).map_err(|e| e.to_string())?.storage,
        None => None,
    };
    args.storage.apply(&mut storage);
    let no_storage =
        "no storage given: --postgres <url>, --sqlite <file> or --config <node.yaml> (see --help)";
    let Some(mut storage) = storage else {
        return Err(no_storage.to_string());
    };
    let what = match (&storage.postgres, &storage.sqlite) {
        (Some(_), _) => "PostgreSQL",
        (None, Some(_)) => "SQLite",
        (None, None) => return Err(no_storage.to_string()),
    };
    storage.migrate = migrate;
    storage
        .open()
        .await
        .map_err(|e| format!("[{}] {e}", e.code()))?;
    Ok(if migrate {
        format!("{what} schema is current (migrations applied)")
    } else {
        format!("{what} schema is current")
    })
}
