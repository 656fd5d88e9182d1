//! Wallets whose deposits, withdrawals and transfers are reliable calls,
//! and an audit that proves it: transfers between wallets with timeouts
//! injected into their calls, each retried with the same call id until it
//! has an answer, then every balance checked against a ledger of what the
//! transfers did. No money is created or lost.
//!
//! Run with: cargo run -p example-wallet

use std::collections::BTreeMap;
use std::time::Duration;

use goverse::Caller;
use goverse::prelude::*;

// ANCHOR: wallet
/// A wallet: a balance that never goes below zero. Persistent, so its
/// methods can be called reliably: a call retried with the same call id
/// changes the balance once, and the retry gets the first answer.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Wallet {
    balance: i64,
}

#[goverse::object(persistent)]
impl Wallet {
    /// Adds `request.value` (positive) and returns the new balance.
    pub async fn deposit(&mut self, _ctx: &Context, request: Int64Value) -> Result<Int64Value> {
        positive(request.value)?;
        self.balance += request.value;
        Ok(Int64Value {
            value: self.balance,
        })
    }

    /// Takes `request.value` (positive) out, or fails with
    /// `INSUFFICIENT_FUNDS`; returns the new balance.
    pub async fn withdraw(&mut self, _ctx: &Context, request: Int64Value) -> Result<Int64Value> {
        positive(request.value)?;
        if request.value > self.balance {
            return Err(goverse::Error::application(
                "INSUFFICIENT_FUNDS",
                format!("balance is {}", self.balance),
            ));
        }
        self.balance -= request.value;
        Ok(Int64Value {
            value: self.balance,
        })
    }

    /// The balance now.
    pub async fn balance(&self, _ctx: &Context, _request: Empty) -> Result<Int64Value> {
        Ok(Int64Value {
            value: self.balance,
        })
    }
}

fn positive(amount: i64) -> Result<()> {
    if amount <= 0 {
        return Err(goverse::Error::application(
            "INVALID_AMOUNT",
            format!("an amount must be positive, not {amount}"),
        ));
    }
    Ok(())
}
// ANCHOR_END: wallet

/// What an audit does.
#[derive(Debug, Clone)]
pub struct AuditPlan {
    /// A name for the run: wallet ids and call ids start with it, so runs
    /// on one database do not meet.
    pub run: String,
    /// Wallets, each opened with `opening` coins.
    pub wallets: usize,
    /// Coins each wallet opens with.
    pub opening: i64,
    /// Transfers in all, of 1 to `max_amount` coins between random wallets.
    pub transfers: usize,
    /// The largest transfer.
    pub max_amount: i64,
    /// Transfers made at once.
    pub concurrency: usize,
    /// One attempt in this many gets a timeout too short to finish.
    pub timeout_one_in: u64,
    /// Whether a retry keeps its call id (true, the right way). False
    /// gives each attempt an id of its own, as a client that does not
    /// know about call ids would: a cut-short attempt that ran is then run
    /// again, and the audit shows the money it creates or loses.
    pub same_call_id: bool,
}

impl AuditPlan {
    /// A plan named `run` with the example's sizes.
    pub fn new(run: impl Into<String>) -> Self {
        Self {
            run: run.into(),
            wallets: 8,
            opening: 1_000,
            transfers: 400,
            max_amount: 400,
            concurrency: 16,
            timeout_one_in: 4,
            same_call_id: true,
        }
    }
}

/// What an audit saw.
#[derive(Debug, Default, Clone)]
pub struct Audit {
    /// Coins in all wallets before the transfers.
    pub before: i64,
    /// Coins in all wallets after them.
    pub after: i64,
    /// Transfers that moved money.
    pub done: usize,
    /// Transfers refused for want of funds (nothing moved).
    pub refused: usize,
    /// Attempts given a timeout too short to finish.
    pub injected_timeouts: u64,
    /// Attempts repeated with the same call id.
    pub retries: u64,
    /// Wallets whose balance differs from the ledger's, with both.
    pub mismatches: Vec<(String, i64, i64)>,
}

impl Audit {
    /// Whether no money was created or lost, and every wallet holds what
    /// the ledger says.
    pub fn balanced(&self) -> bool {
        self.before == self.after && self.mismatches.is_empty()
    }
}

impl std::fmt::Display for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "transfers: {} done, {} refused for want of funds",
            self.done, self.refused
        )?;
        writeln!(
            f,
            "attempts cut short by a timeout: {}; retried with the same call id: {}",
            self.injected_timeouts, self.retries
        )?;
        writeln!(f, "coins before: {}; after: {}", self.before, self.after)?;
        for (wallet, held, expected) in &self.mismatches {
            writeln!(
                f,
                "MISMATCH: {wallet} holds {held}, the ledger says {expected}"
            )?;
        }
        if self.balanced() {
            write!(
                f,
                "balanced: no money created or lost, every wallet matches the ledger"
            )
        } else {
            write!(f, "NOT BALANCED")
        }
    }
}

/// A small deterministic random source (xorshift), so a run is
/// reproducible from its seed.
#[derive(Debug, Clone)]
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

// ANCHOR: retry
/// Calls `attempt` with call id `call_id` until it has an answer that is
/// not a passing failure, giving one attempt in `plan.timeout_one_in` a
/// timeout too short to finish; counts both in `counts`.
async fn until_answered<T, F, Fut>(
    random: &mut Random,
    plan: &AuditPlan,
    counts: &tokio::sync::Mutex<Audit>,
    call_id: &str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(Duration, String) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (one_in, mut tries) = (plan.timeout_one_in, 0u32);
    loop {
        let cut_short = random.below(one_in) == 0;
        let timeout = if cut_short {
            Duration::from_micros(1 + random.below(2_000))
        } else {
            Duration::from_secs(10)
        };
        let id = if plan.same_call_id {
            call_id.to_string()
        } else {
            format!("{call_id}#{tries}")
        };
        let outcome = attempt(timeout, id).await;
        let mut audit = counts.lock().await;
        audit.injected_timeouts += u64::from(cut_short);
        match outcome {
            // A passing failure: safe to send again with the same id.
            Err(error) if error.code().is_transient() && tries < 100 => {
                tries += 1;
                audit.retries += 1;
            }
            outcome => return outcome,
        }
    }
}
// ANCHOR_END: retry

/// Runs `plan` through `caller` (a node, or a client of a gate): opens the
/// wallets, makes the transfers, and checks every balance.
///
/// # Errors
///
/// A call that failed for good (not a refused transfer).
pub async fn audit(caller: Caller, plan: &AuditPlan) -> Result<Audit> {
    let wallet = |i: usize| wallet_id(&plan.run, i);
    let counts = std::sync::Arc::new(tokio::sync::Mutex::new(Audit::default()));
    let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ plan.run.len() as u64);
    for i in 0..plan.wallets {
        let proxy = WalletClient::new(caller.clone(), wallet(i));
        let call_id = format!("{}-open-{i}", plan.run);
        until_answered(&mut random, plan, &counts, &call_id, |timeout, call_id| {
            let proxy = proxy.clone().with_timeout(timeout);
            async move {
                proxy
                    .reliable(&call_id)
                    .deposit(Int64Value {
                        value: plan.opening,
                    })
                    .await
            }
        })
        .await?;
    }
    let before = plan.opening * plan.wallets as i64;

    // The transfers, `concurrency` at a time; each its own ledger lines.
    let ledger = std::sync::Arc::new(tokio::sync::Mutex::new(BTreeMap::<String, i64>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..plan.concurrency {
        let (caller, plan, counts, ledger) =
            (caller.clone(), plan.clone(), counts.clone(), ledger.clone());
        let mut random = Random(random.below(u64::MAX) | 1);
        tasks.spawn(async move {
            for t in (worker..plan.transfers).step_by(plan.concurrency) {
                let from = random.below(plan.wallets as u64) as usize;
                let to = (from + 1 + random.below(plan.wallets as u64 - 1) as usize) % plan.wallets;
                let amount = 1 + random.below(plan.max_amount as u64) as i64;
                transfer(
                    &caller,
                    &plan,
                    (
                        &wallet_id(&plan.run, from),
                        &wallet_id(&plan.run, to),
                        amount,
                    ),
                    &format!("{}-transfer-{t}", plan.run),
                    (&mut random, &counts, &ledger),
                )
                .await?;
            }
            Ok::<_, goverse::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| goverse::Error::Internal(format!("a transfer task failed: {e}")))??;
    }

    let ledger = ledger.lock().await.clone();
    let mut audit = counts.lock().await.clone();
    audit.before = before;
    for i in 0..plan.wallets {
        let id = wallet(i);
        let held = WalletClient::new(caller.clone(), id.clone())
            .balance(Empty {})
            .await?
            .value;
        let expected = plan.opening + ledger.get(&id).copied().unwrap_or(0);
        if held != expected {
            audit.mismatches.push((id, held, expected));
        }
        audit.after += held;
    }
    Ok(audit)
}

/// Wallet `i` of the run named `run`.
fn wallet_id(run: &str, i: usize) -> String {
    format!("{run}-wallet-{i}")
}

// ANCHOR: transfer
/// Moves `amount` from one wallet to another as two reliable calls with
/// ids derived from the transfer's, each retried until answered: the
/// withdrawal, then (unless it was refused) the deposit. However often
/// either is retried, the money moves once.
async fn transfer(
    caller: &Caller,
    plan: &AuditPlan,
    (from, to, amount): (&str, &str, i64),
    transfer_id: &str,
    (random, counts, ledger): (
        &mut Random,
        &tokio::sync::Mutex<Audit>,
        &tokio::sync::Mutex<BTreeMap<String, i64>>,
    ),
) -> Result<()> {
    let debit = format!("{transfer_id}/debit");
    let source = WalletClient::new(caller.clone(), from);
    let withdrawn = until_answered(random, plan, counts, &debit, |timeout, debit| {
        let source = source.clone().with_timeout(timeout);
        async move {
            source
                .reliable(&debit)
                .withdraw(Int64Value { value: amount })
                .await
        }
    })
    .await;
    match withdrawn {
        Ok(_) => {}
        Err(error) if error.code() == "INSUFFICIENT_FUNDS" => {
            counts.lock().await.refused += 1;
            return Ok(());
        }
        Err(error) => return Err(error),
    }
    let credit = format!("{transfer_id}/credit");
    let target = WalletClient::new(caller.clone(), to);
    until_answered(random, plan, counts, &credit, |timeout, credit| {
        let target = target.clone().with_timeout(timeout);
        async move {
            target
                .reliable(&credit)
                .deposit(Int64Value { value: amount })
                .await
        }
    })
    .await?;
    let mut ledger = ledger.lock().await;
    *ledger.entry(from.to_string()).or_default() -= amount;
    *ledger.entry(to.to_string()).or_default() += amount;
    counts.lock().await.done += 1;
    Ok(())
}
// ANCHOR_END: transfer
