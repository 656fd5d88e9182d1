//! The crash-safety run: three node processes of a persistent counter on
//! real etcd and PostgreSQL behind a `goverse-gate`, driven through the
//! gate's HTTP API by 16 workers, while nodes are killed (SIGKILL) and
//! restarted, and stopped (SIGSTOP) for a short while (4 s) or past their
//! lease (10 to 40 s: the stopped node comes back, registers again and is
//! handed shards back) before SIGCONT. A ledger of acknowledged increments
//! is checked against the counters at the end.
//!
//! Two modes: plain calls (every counter must hold at least its
//! acknowledged increments and at most those plus the ones in doubt), and
//! reliable calls over `X-Call-Id`, each retried with its id until
//! acknowledged (every counter must hold exactly its acknowledged ones).
//!
//! `GOVERSE_CHAOS_SECONDS` sets each mode's length (default 30);
//! `scripts/chaos.sh` runs it longer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goverse::storage::{PostgresOptions, PostgresStorage};
use goverse_tests::etcd::Etcd;
use goverse_tests::{PATIENCE, database_url, unique_prefix};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const WORKERS: u64 = 16;
const COUNTERS: u64 = 50;
/// How long one HTTP call may take before it is counted in doubt.
const CALL_LIMIT: Duration = Duration::from_secs(20);

/// A small xorshift generator: the run prints its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1
}

/// Reads lines from a child's stdout until one starts with `prefix`, then
/// keeps draining the rest so the child never blocks on a full pipe.
async fn wait_for_line(child: &mut Child, prefix: &str, what: &str) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) if line.starts_with(prefix) => return line,
                Ok(Some(_)) => {}
                other => panic!("{what} ended before it was ready: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not report ready in time"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line
}

/// The programs of the run, built by `cargo test` beside each other.
fn program(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_test-node")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (`cargo test --workspace --all-features --no-run`, as scripts/test.sh and scripts/chaos.sh do)",
        path.display()
    );
    path
}

/// What every process of the run shares.
struct Setup {
    etcd: String,
    prefix: String,
    database: String,
    dir: PathBuf,
}

impl Setup {
    fn cluster_args(&self, id: &str) -> Vec<String> {
        [
            "--node-id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            &self.etcd,
            "--prefix",
            &self.prefix,
            "--shard-count",
            "64",
            "--lease-ttl",
            "2s",
            "--call-timeout",
            "10s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    async fn start_node(&self, id: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{id}.log"))).expect("node log");
        let mut child = Command::new(program("test-node"))
            .args(self.cluster_args(id))
            .args(["--postgres", &self.database])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("test-node starts");
        wait_for_line(&mut child, "ready ", id).await;
        child
    }

    /// The gate process and its HTTP address.
    async fn start_gate(&self) -> (Child, String) {
        let log = std::fs::File::create(self.dir.join("gate.log")).expect("gate log");
        let mut child = Command::new(program("goverse-gate"))
            .args(["--http", "127.0.0.1:0"])
            .args(self.cluster_args("gate-1"))
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("goverse-gate starts");
        let ready = wait_for_line(&mut child, "ready gate-1 ", "the gate").await;
        let http = ready
            .trim_start_matches("ready gate-1 ")
            .split(' ')
            .next()
            .expect("an address")
            .trim_start_matches("http://")
            .to_string();
        (child, http)
    }
}

/// One HTTP/1.1 POST; the status and the JSON body, or why it failed.
async fn post(
    address: &str,
    path: &str,
    call_id: Option<&str>,
    body: &str,
) -> Result<(u16, serde_json::Value), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: gate\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(id) = call_id {
            head.push_str(&format!("x-call-id: {id}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "no status line".to_string())?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, serde_json::from_str(body).unwrap_or_default()))
    };
    tokio::time::timeout(CALL_LIMIT, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Reliable,
}

/// What the workers saw, per counter and per error code.
#[derive(Default)]
struct Ledger {
    acknowledged: BTreeMap<u64, u64>,
    in_doubt: BTreeMap<u64, u64>,
    errors: BTreeMap<String, u64>,
}

impl Ledger {
    fn error(&mut self, error: String) {
        *self.errors.entry(error).or_default() += 1;
    }
}

fn error_code(outcome: &Result<(u16, serde_json::Value), String>) -> String {
    match outcome {
        Ok((status, json)) => json["code"]
            .as_str()
            .map_or_else(|| format!("HTTP_{status}"), str::to_string),
        Err(why) if why == "timed out" => "CLIENT_TIMEOUT".into(),
        Err(_) => "CONNECTION".into(),
    }
}

/// One worker: increments random counters until told to stop; in reliable
/// mode each increment is retried with its call id until acknowledged (for
/// at most `give_up` after the stop).
async fn work(
    worker: u64,
    (mode, run): (Mode, Arc<str>),
    http: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    give_up: Arc<Mutex<Option<Instant>>>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut rng = Rng(seed() ^ (worker + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut sequence = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let counter = rng.below(COUNTERS);
        let path = format!("/api/v1/objects/call/Vault/{run}-{counter}/Deposit");
        sequence += 1;
        let call_id = format!("{run}-w{worker}-{sequence}");
        loop {
            let address = http.lock().expect("http").clone();
            let reliable = (mode == Mode::Reliable).then_some(call_id.as_str());
            let outcome = post(&address, &path, reliable, "1").await;
            let out_of_time = give_up
                .lock()
                .expect("give up")
                .is_some_and(|at| Instant::now() >= at);
            let done = {
                let mut ledger = ledger.lock().expect("ledger");
                if let Ok((200, _)) = outcome {
                    *ledger.acknowledged.entry(counter).or_default() += 1;
                    true
                } else {
                    ledger.error(error_code(&outcome));
                    let done = mode == Mode::Plain || out_of_time;
                    if done {
                        *ledger.in_doubt.entry(counter).or_default() += 1;
                    }
                    done
                }
            };
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads a counter through the gate, retrying until it answers.
async fn total(http: &str, run: &str, counter: u64) -> i64 {
    let path = format!("/api/v1/objects/call/Vault/{run}-{counter}/Total");
    let deadline = Instant::now() + PATIENCE * 3;
    loop {
        match post(http, &path, None, "").await {
            Ok((200, json)) => {
                return json["response"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| json["response"].as_i64())
                    .unwrap_or(0);
            }
            other => assert!(
                Instant::now() < deadline,
                "counter {counter} cannot be read: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn signal(child: &Child, signal: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
    }
}

/// Runs one mode for `seconds`; returns the summary line and whether
/// nothing was lost or applied twice.
async fn run(mode: Mode, seconds: u64) -> (String, bool) {
    let dir = std::env::temp_dir().join(unique_prefix("chaos").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    let etcd = Etcd::start(&dir).await;
    let database = database_url();
    drop(
        PostgresStorage::connect(&database, PostgresOptions::default().migrate(true))
            .await
            .expect("PostgreSQL is reachable and migrates"),
    );
    let setup = Setup {
        etcd: etcd.endpoint(),
        prefix: unique_prefix("chaos"),
        database,
        dir: dir.clone(),
    };
    let mut nodes = Vec::new();
    for id in NODES {
        nodes.push(setup.start_node(id).await);
    }
    let (_gate, http) = setup.start_gate().await;
    let run: Arc<str> = unique_prefix("c").replace(['/', '-'], "").into();
    let http = Arc::new(Mutex::new(http));
    let stop = Arc::new(AtomicBool::new(false));
    let give_up: Arc<Mutex<Option<Instant>>> = Arc::default();
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            tokio::spawn(work(
                worker,
                (mode, run.clone()),
                http.clone(),
                stop.clone(),
                give_up.clone(),
                ledger.clone(),
            ))
        })
        .collect();

    let seed = seed();
    let mut rng = Rng(seed);
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let actions = Arc::new(AtomicU64::new(0));
    eprintln!(
        "chaos {mode:?}: seed {seed}, {seconds} s, logs in {}",
        dir.display()
    );
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(1500 + rng.below(2000))).await;
        if Instant::now() >= end {
            break;
        }
        let which = rng.below(NODES.len() as u64) as usize;
        let left = end.saturating_duration_since(Instant::now()).as_secs();
        actions.fetch_add(1, Ordering::SeqCst);
        match rng.below(3) {
            0 => {
                eprintln!("chaos: SIGKILL {}, then restart", NODES[which]);
                signal(&nodes[which], "-KILL");
                let _ = nodes[which].wait().await;
                nodes[which] = setup.start_node(NODES[which]).await;
            }
            1 => {
                eprintln!("chaos: SIGSTOP {} for 4 s", NODES[which]);
                signal(&nodes[which], "-STOP");
                tokio::time::sleep(Duration::from_secs(4)).await;
                signal(&nodes[which], "-CONT");
            }
            _ => {
                let pause = 10 + rng.below(31).min(left.saturating_sub(10));
                eprintln!("chaos: SIGSTOP {} for {pause} s", NODES[which]);
                signal(&nodes[which], "-STOP");
                tokio::time::sleep(Duration::from_secs(pause)).await;
                signal(&nodes[which], "-CONT");
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    *give_up.lock().expect("give up") = Some(Instant::now() + Duration::from_secs(90));
    for worker in workers {
        worker.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs();
    let http = http.lock().expect("http").clone();
    let ledger = std::mem::take(&mut *ledger.lock().expect("ledger"));
    let (mut lost, mut doubled) = (0u64, 0u64);
    for counter in 0..COUNTERS {
        let stored = u64::try_from(total(&http, &run, counter).await).unwrap_or(0);
        let acknowledged = ledger.acknowledged.get(&counter).copied().unwrap_or(0);
        let in_doubt = ledger.in_doubt.get(&counter).copied().unwrap_or(0);
        lost += acknowledged.saturating_sub(stored);
        doubled += stored.saturating_sub(acknowledged + in_doubt);
        if stored < acknowledged || stored > acknowledged + in_doubt {
            eprintln!(
                "chaos: counter {counter}: stored {stored}, acknowledged {acknowledged}, in doubt {in_doubt}"
            );
        }
    }
    for node in &nodes {
        signal(node, "-KILL");
    }
    let acknowledged: u64 = ledger.acknowledged.values().sum();
    let in_doubt: u64 = ledger.in_doubt.values().sum();
    let errors = ledger
        .errors
        .iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let summary = format!(
        "chaos {}: {elapsed} s, {} faults, {acknowledged} calls acknowledged, {in_doubt} in doubt, errors: [{errors}], {COUNTERS} counters checked, {lost} lost, {doubled} applied twice",
        match mode {
            Mode::Plain => "plain",
            Mode::Reliable => "reliable",
        },
        actions.load(Ordering::SeqCst),
    );
    drop(etcd);
    // A reliable call is retried until acknowledged: none may be left.
    let settled = mode == Mode::Plain || in_doubt == 0;
    let ok = lost == 0 && doubled == 0 && acknowledged > 0 && settled;
    // The logs and etcd's data are kept for a run that failed, to read.
    if ok {
        std::fs::remove_dir_all(&dir).ok();
    }
    (summary, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_under_kills_and_pauses_loses_and_doubles_nothing() {
    let seconds = std::env::var("GOVERSE_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut failed = Vec::new();
    for mode in [Mode::Plain, Mode::Reliable] {
        let (summary, ok) = run(mode, seconds).await;
        println!("{summary}");
        if !ok {
            failed.push(summary);
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
