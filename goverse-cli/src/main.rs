//! `goverse`: operations on a goverse deployment's storage.
//!
//! ```text
//! goverse migrate --postgres <url> | --sqlite <file> | --config <node.yaml>
//! goverse check   --postgres <url> | --config <node.yaml>
//! ```
//!
//! `migrate` applies the embedded schema migrations (idempotent, safe to
//! run while nodes run); `check` exits with status 1 and says why when the
//! schema is missing or older than this build. Storage flags are those of
//! a node (`goverse::config::NodeFile::from_args`), so a node's own
//! `--config` file works as it is.

use std::process::ExitCode;

use goverse::config::NodeFile;

const USAGE: &str = "usage: goverse <migrate|check> (--postgres <url> | --sqlite <file> | --config <node.yaml>) [--max-connections <n>]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let outcome = match command.as_deref() {
        Some("migrate") => run(args, true).await,
        Some("check") => run(args, false).await,
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_string()),
    };
    match outcome {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("goverse: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the storage the flags name, migrating it first if `migrate`.
async fn run(args: impl Iterator<Item = String>, migrate: bool) -> Result<String, String> {
    let file = NodeFile::from_args(args).map_err(|e| e.to_string())?;
    let Some(mut storage) = file.storage else {
        return Err(format!("no storage given\n{USAGE}"));
    };
    let what = match (&storage.postgres, &storage.sqlite) {
        (Some(_), _) => "PostgreSQL",
        (None, Some(_)) => "SQLite",
        (None, None) => return Err(format!("no storage given\n{USAGE}")),
    };
    storage.migrate = migrate;
    goverse::storage::open(storage)
        .await
        .map_err(|e| format!("[{}] {e}", e.code()))?;
    Ok(if migrate {
        format!("{what} schema is current (migrations applied)")
    } else {
        format!("{what} schema is current")
    })
}
