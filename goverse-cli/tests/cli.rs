//! The `goverse` command against a real PostgreSQL database of its own,
//! and an SQLite file.

use std::process::Command;

use goverse::storage::{PostgresOptions, PostgresStorage};
use goverse_tests::{database_url, unique_prefix};
use sqlx::Connection as _;

fn goverse(args: &[&str]) -> (bool, String) {
    goverse_with(args, &[])
}

/// Runs `goverse` with only the environment variables given.
fn goverse_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_goverse"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("goverse runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn migrate_then_check_a_fresh_database() {
    let url = database_url();
    let name = unique_prefix("cli").replace(['/', '-'], "_").to_lowercase();
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let (base, _) = url.rsplit_once('/').expect("url has a database");
    let fresh = format!("{base}/{name}");

    let (ok, text) = goverse(&["check", "--postgres", &fresh]);
    assert!(!ok, "no schema yet: {text}");
    assert!(
        text.contains("STORAGE_ERROR") && text.contains("schema is missing"),
        "{text}"
    );
    assert!(
        PostgresStorage::connect(&fresh, PostgresOptions::default())
            .await
            .is_err(),
        "a node refuses it too"
    );

    let (ok, text) = goverse(&["migrate", "--postgres", &fresh]);
    assert!(ok, "{text}");
    assert!(text.contains("migrations applied"), "{text}");
    let (ok, text) = goverse(&["migrate", "--postgres", &fresh]);
    assert!(ok, "migrating twice is fine: {text}");
    let (ok, text) = goverse(&["check", "--postgres", &fresh]);
    assert!(ok, "{text}");
    PostgresStorage::connect(&fresh, PostgresOptions::default())
        .await
        .expect("a node opens it without migrating");

    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
}

#[test]
fn bad_invocations_say_what_is_wrong() {
    let (ok, text) = goverse(&[]);
    assert!(!ok && text.contains("Usage: goverse <COMMAND>"), "{text}");
    let (ok, text) = goverse(&["migrate"]);
    assert!(!ok && text.contains("no storage given"), "{text}");
    let (ok, text) = goverse(&["migrate", "--postgres"]);
    assert!(!ok, "{text}");
    let (ok, text) = goverse(&[
        "check",
        "--postgres",
        "postgres://u:${GOVERSE_CLI_UNSET}@127.0.0.1:1/x",
    ]);
    assert!(
        !ok && text.contains("INVALID_CONFIG") && text.contains("GOVERSE_CLI_UNSET"),
        "{text}"
    );
    let (ok, text) = goverse(&["frobnicate"]);
    assert!(
        !ok && text.contains("unrecognized subcommand 'frobnicate'"),
        "{text}"
    );
    let (ok, text) = goverse(&["migrate", "--sqlite", "a.db", "--postgres", "postgres://x"]);
    assert!(!ok && text.contains("cannot be used with"), "{text}");
    let (ok, text) = goverse_with(&["migrate"], &[("GOVERSE_LOG_FORMAT", "xml")]);
    assert!(
        !ok && text.contains("GOVERSE_LOG_FORMAT must be `text` or `json`, not `xml`"),
        "{text}"
    );
}

#[test]
fn every_command_has_help_naming_its_variables() {
    let (ok, text) = goverse(&["--help"]);
    assert!(
        ok && text.contains("migrate") && text.contains("check"),
        "{text}"
    );
    for command in ["migrate", "check"] {
        let (ok, text) = goverse(&[command, "--help"]);
        assert!(ok, "{text}");
        for expected in [
            "--postgres <URL>",
            "[env: GOVERSE_DATABASE_URL=]",
            "--sqlite <FILE>",
            "[env: GOVERSE_SQLITE=]",
            "--config <FILE>",
            "--max-connections <N>",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }
}

#[test]
fn storage_can_be_named_by_environment_variables() {
    let dir = std::env::temp_dir().join(unique_prefix("cli-env").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("state.db");
    let path = path.to_str().expect("utf-8");
    let (ok, text) = goverse_with(&["migrate"], &[("GOVERSE_SQLITE", path)]);
    assert!(ok, "{text}");
    assert!(std::path::Path::new(path).exists());
    // A flag wins over its variable.
    let other = dir.join("other.db");
    let other = other.to_str().expect("utf-8");
    let (ok, text) = goverse_with(
        &["migrate", "--sqlite", other],
        &[("GOVERSE_SQLITE", "/nonexistent/dir/x.db")],
    );
    assert!(ok, "{text}");
    assert!(std::path::Path::new(other).exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sqlite_files_are_created_and_migrated() {
    let dir = std::env::temp_dir().join(unique_prefix("cli-sqlite").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("state.db");
    let (ok, text) = goverse(&["migrate", "--sqlite", path.to_str().expect("utf-8")]);
    assert!(ok, "{text}");
    assert!(path.exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// The admin commands against a two-node cluster on the test etcd:
/// `status` and `shards` read it without joining; `move`, `pin`, `unpin`,
/// `drain` and `undrain` change it, and refuse what cannot be done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_read_and_change_a_live_cluster_on_etcd() {
    use goverse::Node;
    use goverse_tests::processes::{Vault, VaultClient};
    use goverse_tests::{Backend, PATIENCE, wait_until};

    let backend = Backend::etcd();
    let Backend::Etcd(endpoint) = &backend else {
        unreachable!("an etcd backend")
    };
    let prefix = unique_prefix("admin");
    let start = |id: &'static str| {
        let (backend, prefix) = (backend.clone(), prefix.clone());
        async move {
            Node::builder()
                .register::<Vault>()
                .node_id(id)
                .shard_count(16)
                .listen("127.0.0.1:0".parse().expect("address"))
                .summary_interval(std::time::Duration::from_millis(100))
                .coordinator(
                    backend
                        .coordinator(&prefix, std::time::Duration::from_secs(2))
                        .await,
                )
                .start()
                .await
                .expect("node starts")
        }
    };
    let (a, b) = (start("admin-a").await, start("admin-b").await);
    wait_until("both nodes own shards", PATIENCE, || {
        let (a, b) = (a.stats().shards, b.stats().shards);
        async move { a > 0 && b > 0 && a + b == 16 }
    })
    .await;
    let env = [
        ("GOVERSE_ETCD", endpoint.as_str()),
        ("GOVERSE_PREFIX", &prefix),
        ("GOVERSE_OPERATOR", "ops-bob"),
    ];

    let (ok, text) = goverse_with(&["status", "--json"], &env);
    assert!(ok, "{text}");
    let status: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(status["shard_count"], 16, "{status}");
    assert_eq!(status["unowned"], 0, "{status}");
    let nodes = status["nodes"].as_array().expect("nodes");
    let ids: Vec<&str> = nodes.iter().filter_map(|n| n["id"].as_str()).collect();
    assert_eq!(ids, ["admin-a", "admin-b"], "{status}");
    for node in nodes {
        let id = node["id"].as_str().expect("id");
        let served = if id == "admin-a" { &a } else { &b };
        assert_eq!(node["shards"], served.stats().shards, "{status}");
        assert_eq!(node["address"], &*served.address(), "{status}");
    }
    assert!(
        status["leader"]
            .as_str()
            .is_some_and(|leader| ids.contains(&leader)),
        "{status}"
    );
    let (ok, text) = goverse_with(&["status"], &env);
    assert!(
        ok && text.contains("2 nodes") && text.contains("admin-b"),
        "{text}"
    );

    // An object's shard is owned by the node the object runs on.
    let host = VaultClient::new(&a, "v7")
        .host(goverse::types::Empty {})
        .await
        .expect("host")
        .value;
    let (ok, text) = goverse_with(&["shards", "--object", "v7", "--json"], &env);
    assert!(ok, "{text}");
    let shards: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let row = &shards["shards"][0];
    assert_eq!(
        row["shard"],
        goverse::placement::shard_of("v7", 16),
        "{shards}"
    );
    assert_eq!(row["owner"], host.as_str(), "{shards}");
    assert!(row["epoch"].as_u64().is_some_and(|e| e >= 1), "{shards}");
    // Each node's summary says how many objects it holds.
    wait_until("the vault's node reports it active", PATIENCE, || async {
        let (ok, text) = goverse_with(&["status", "--json"], &env);
        let status: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        ok && status["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|node| node["id"] == host.as_str() && node["summary"]["objects"]["Vault"] == 1)
        })
    })
    .await;
    let (ok, text) = goverse_with(&["status"], &env);
    assert!(ok && text.contains("OBJECTS"), "{text}");
    let (ok, text) = goverse_with(&["shards", "--json"], &env);
    assert!(ok, "{text}");
    let all: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(all["shards"].as_array().map(Vec::len), Some(16));

    // Bad input is refused with a reason.
    let (ok, text) = goverse_with(&["shards", "16"], &env);
    assert!(!ok && text.contains("no shard 16"), "{text}");
    let (ok, text) = goverse_with(&["shards", "--object", ""], &env);
    assert!(!ok && text.contains("INVALID_OBJECT_ID"), "{text}");
    let elsewhere = [
        ("GOVERSE_ETCD", endpoint.as_str()),
        ("GOVERSE_PREFIX", "/nobody-here"),
    ];
    let (ok, text) = goverse_with(&["status"], &elsewhere);
    assert!(!ok && text.contains("no cluster has started"), "{text}");
    let (ok, text) = goverse_with(&["status"], &[]);
    assert!(!ok && text.contains("--etcd"), "{text}");

    // move: a shard `a` serves goes to `b`, pinned; not to a stranger.
    let shard = (0..16)
        .find(|&s| {
            a.cluster_view()
                .current_owner(s)
                .is_some_and(|n| &*n.id == "admin-a")
        })
        .expect("a serves shards")
        .to_string();
    let (ok, text) = goverse_with(&["move", &shard, "--to", "nobody"], &env);
    assert!(
        !ok && text.contains("INVALID_CONFIG") && text.contains("nobody"),
        "{text}"
    );
    let (ok, text) = goverse_with(&["move", &shard, "--to", "admin-b", "--json"], &env);
    assert!(ok, "{text}");
    let shard_now = |shard: &str| {
        let (ok, text) = goverse_with(&["shards", shard, "--json"], &env);
        assert!(ok, "{text}");
        let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        answer["shards"][0].clone()
    };
    wait_until("the moved shard is on b, pinned", PATIENCE, || async {
        let row = shard_now(&shard);
        row["owner"] == "admin-b" && row["pinned"] == true && row["moving"] == false
    })
    .await;
    let (ok, text) = goverse_with(&["unpin", &shard], &env);
    assert!(ok && text.contains("unpinned"), "{text}");
    assert_eq!(shard_now(&shard)["pinned"], false);
    let (ok, text) = goverse_with(&["pin", "--object", "v7"], &env);
    assert!(ok && text.contains("pinned to"), "{text}");
    let v7 = goverse::placement::shard_of("v7", 16).to_string();
    assert_eq!(shard_now(&v7)["pinned"], true);
    let (ok, text) = goverse_with(&["unpin", "--object", "v7"], &env);
    assert!(ok, "{text}");

    // drain: b hands everything to a; a, then the last, cannot be drained.
    let (ok, text) = goverse_with(&["drain", "admin-b"], &env);
    assert!(ok && text.contains("draining"), "{text}");
    wait_until("b has handed every shard over", PATIENCE, || async {
        b.stats().shards == 0 && a.stats().shards == 16
    })
    .await;
    let (ok, text) = goverse_with(&["drain", "admin-a"], &env);
    assert!(!ok && text.contains("last node"), "{text}");
    let (ok, text) = goverse_with(&["status", "--json"], &env);
    assert!(ok, "{text}");
    assert!(text.contains(r#""draining":true"#), "{text}");
    let (ok, text) = goverse_with(&["undrain", "admin-b"], &env);
    assert!(ok, "{text}");
    wait_until("b takes shards again", PATIENCE, || async {
        b.stats().shards > 0
    })
    .await;

    // Every action, refused ones too, is in the audit log under the
    // operator named; `status` shows the last five.
    let (ok, text) = goverse_with(&["status", "--json"], &env);
    assert!(ok, "{text}");
    let status: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let recent = status["recent_actions"].as_array().expect("recent actions");
    assert_eq!(recent.len(), 5, "{status}");
    let last = &recent[4];
    assert_eq!(last["user"], "ops-bob (cli)", "{last}");
    assert_eq!(last["action"]["action"], "undrain", "{last}");
    assert_eq!(last["action"]["node"], "admin-b", "{last}");
    assert_eq!(last["outcome"], "OK", "{last}");
    assert!(
        recent[3]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("INVALID_CONFIG")),
        "the refused drain of the last node is recorded: {status}"
    );
    let (ok, text) = goverse_with(&["status"], &env);
    assert!(ok && text.contains("RECENT ACTIONS"), "{text}");
    assert!(text.contains("undrain node=admin-b"), "{text}");
    let log = backend
        .admin(&prefix)
        .await
        .audit_log()
        .await
        .expect("audit log");
    assert!(log.len() >= 5, "{log:?}");
    assert!(
        log.iter().all(|entry| entry.user == "ops-bob (cli)"),
        "{log:?}"
    );

    a.shutdown().await;
    b.shutdown().await;
}

/// A rolling restart of a three-node cluster on the test etcd, driven
/// through the command line as an operator would: each node is drained
/// first, restarted once it serves nothing, and takes shards again; a
/// caller calling throughout sees no error and loses no deposit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_with_drains_fails_no_call() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use goverse::Node;
    use goverse::types::{Empty, Int64Value};
    use goverse_tests::processes::{Vault, VaultClient};
    use goverse_tests::{Backend, PATIENCE, wait_until};

    let backend = Backend::etcd();
    let Backend::Etcd(endpoint) = &backend else {
        unreachable!("an etcd backend")
    };
    let prefix = unique_prefix("rolling");
    let storage = Arc::new(goverse::storage::MemoryStorage::new());
    let start = |id: String, hosts: bool| {
        let (backend, prefix, storage) = (backend.clone(), prefix.clone(), storage.clone());
        async move {
            let builder = Node::builder()
                .node_id(id)
                .shard_count(16)
                .listen("127.0.0.1:0".parse().expect("address"))
                .storage(storage)
                .call_timeout(std::time::Duration::from_secs(20))
                .coordinator(
                    backend
                        .coordinator(&prefix, std::time::Duration::from_secs(2))
                        .await,
                );
            let builder = if hosts {
                builder.register::<Vault>()
            } else {
                builder
            };
            builder.start().await.expect("node starts")
        }
    };
    let names = ["roll-a", "roll-b", "roll-c"];
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(start(name.to_string(), true).await);
    }
    // The caller hosts nothing: it routes every call to the three.
    let caller = start("roll-caller".to_string(), false).await;
    let owned = |nodes: &[Node]| nodes.iter().map(|n| n.stats().shards).collect::<Vec<_>>();
    wait_until("every node serves shards", PATIENCE, || {
        let counts = owned(&nodes);
        async move { counts.iter().all(|&c| c > 0) && counts.iter().sum::<u64>() == 16 }
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let done: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    let driver = tokio::spawn({
        let (caller, stop, errors, done, calls) = (
            caller.clone(),
            stop.clone(),
            errors.clone(),
            done.clone(),
            calls.clone(),
        );
        async move {
            while !stop.load(Ordering::SeqCst) {
                for i in 0..24 {
                    let id = format!("roll-{i}");
                    match VaultClient::new(&caller, id.clone())
                        .deposit(Int64Value { value: 1 })
                        .await
                    {
                        Ok(_) => *done.lock().expect("done").entry(id).or_default() += 1,
                        Err(error) => errors.lock().expect("errors").push(error.to_string()),
                    }
                    calls.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    let env = [
        ("GOVERSE_ETCD", endpoint.as_str()),
        ("GOVERSE_PREFIX", &prefix),
    ];
    // Calls made meanwhile, so every step of the restart is called through.
    let calls_go_on = || async {
        let from = calls.load(Ordering::SeqCst);
        wait_until("calls go on", PATIENCE, || {
            let now = calls.load(Ordering::SeqCst);
            async move { now >= from + 48 }
        })
        .await;
    };
    calls_go_on().await;
    for (index, name) in names.iter().enumerate() {
        let (ok, text) = goverse_with(&["drain", name], &env);
        assert!(ok, "{text}");
        calls_go_on().await;
        wait_until("the drained node serves nothing", PATIENCE, || {
            let shards = nodes[index].stats().shards;
            async move { shards == 0 }
        })
        .await;
        let old = nodes.remove(index);
        old.shutdown().await;
        calls_go_on().await;
        nodes.insert(index, start(name.to_string(), true).await);
        wait_until("the restarted node serves shards again", PATIENCE, || {
            let counts = owned(&nodes);
            async move { counts.iter().all(|&c| c > 0) && counts.iter().sum::<u64>() == 16 }
        })
        .await;
        calls_go_on().await;
    }
    stop.store(true, Ordering::SeqCst);
    driver.await.expect("driver");
    let errors = errors.lock().expect("errors").clone();
    assert!(errors.is_empty(), "callers saw errors: {errors:?}");
    let done = done.lock().expect("done").clone();
    assert_eq!(done.len(), 24, "every vault was called");
    for (id, deposits) in done {
        let total = VaultClient::new(&caller, id.clone())
            .total(Empty {})
            .await
            .expect("total")
            .value;
        assert_eq!(total, deposits, "{id} kept every acknowledged deposit");
    }
    caller.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
}
