//! Listings of "Reliable calls" (`book/src/reliable-calls.md`).

use goverse::prelude::*;

use crate::payments::{Payment, Receipt};

/// A wallet of coins: persistent, so its proxy offers `reliable`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Wallet {
    coins: i64,
}

#[goverse::object(persistent)]
impl Wallet {
    /// Adds `request.value` coins and returns the new balance.
    pub async fn deposit(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.coins += request.value;
        Ok(Int64Value { value: self.coins })
    }

    /// Takes `request.value` coins and returns what is left; fails with
    /// `INSUFFICIENT_FUNDS` when there are not that many.
    pub async fn withdraw(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        if request.value > self.coins {
            return Err(goverse::Error::application(
                "INSUFFICIENT_FUNDS",
                format!("{} coins", self.coins),
            ));
        }
        self.coins -= request.value;
        Ok(Int64Value { value: self.coins })
    }
}

/// Deposits 5 into `alice` under the call id `deposit-7f3a`, and returns
/// the balance: the first outcome, however often it runs.
#[rustfmt::skip]
pub async fn deposit_reliably(node: Node) -> goverse::Result<Int64Value> {
// ANCHOR: reliable
let wallet = WalletClient::new(&node, "alice");
let balance = wallet.reliable("deposit-7f3a").deposit(Int64Value { value: 5 }).await?;
// ANCHOR_END: reliable
Ok(balance)
}

/// The same deposit, by name, with its request and response in proto3
/// JSON.
#[rustfmt::skip]
pub async fn deposit_reliably_by_name(node: &Node) -> goverse::Result<Vec<u8>> {
// ANCHOR: reliable_by_name
use goverse::{Codec, EncodedCall};

let body = br#""5""#.to_vec(); // an Int64Value in proto3 JSON
let response = node
    .call(EncodedCall::new("Wallet", "alice", "Deposit", Codec::Json, body).reliable("deposit-7f3a"))
    .await?;
// ANCHOR_END: reliable_by_name
Ok(response)
}

/// An order to pay into a wallet.
#[derive(Debug, Clone)]
pub struct Order {
    /// The order's id, fixed when the order is made.
    pub id: String,
    /// The coins it deposits.
    pub amount: i64,
}

/// Deposits `order.amount` into `wallet` under the order's id, retrying
/// while the error says the deposit may succeed later.
#[rustfmt::skip]
pub async fn deposit_for(wallet: &WalletClient, order: &Order) -> goverse::Result<Int64Value> {
// ANCHOR: retry
let call_id = order.id.clone(); // fixed before the first attempt
let deposit = loop {
    match wallet.reliable(&call_id).deposit(Int64Value { value: order.amount }).await {
        Err(e) if matches!(e.code(), Code::DeadlineExceeded | Code::Unavailable | Code::StaleOwner
            | Code::StorageError | Code::NodeShuttingDown) => continue, // bound this in real code
        outcome => break outcome,
    }
};
// ANCHOR_END: retry
let balance = deposit?;
Ok(balance)
}

/// Starts a node that keeps reliable-call records for 48 hours.
#[rustfmt::skip]
pub async fn start_with_retention() -> goverse::Result<Node> {
// ANCHOR: retention
use std::time::Duration;

let node = Node::builder()
    .register::<Wallet>()
    .reliable_call_retention(Duration::from_secs(48 * 3600))
    .start()
    .await?;
// ANCHOR_END: retention
Ok(node)
}

// ANCHOR: pay
/// A customer who pays merchants from a balance.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Customer {
    balance: i64,
}

#[goverse::object(persistent)]
impl Customer {
    /// Pays `request.amount` to the merchant's wallet and `request.fee` to
    /// the wallet `fees`, each exactly once, and returns the balance left.
    pub async fn pay(&mut self, ctx: &Context, request: Payment) -> goverse::Result<Receipt> {
        let call_id = ctx.call_id().unwrap_or(&request.payment_id);
        WalletClient::new(ctx, &request.merchant)
            .reliable(format!("{call_id}/credit"))
            .deposit(Int64Value { value: request.amount })
            .await?;
        WalletClient::new(ctx, "fees")
            .reliable(format!("{call_id}/fee"))
            .deposit(Int64Value { value: request.fee })
            .await?;
        self.balance -= request.amount + request.fee;
        Ok(Receipt { balance: self.balance })
    }
}
// ANCHOR_END: pay

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reliable_deposit_applies_once_however_often_it_is_sent() {
        let node = start_with_retention().await.expect("a node");
        assert_eq!(deposit_reliably(node.clone()).await.expect("deposit").value, 5);
        assert_eq!(deposit_reliably(node.clone()).await.expect("retry").value, 5, "recorded");
        // By name, in JSON, under the same id: the same record.
        assert_eq!(deposit_reliably_by_name(&node).await.expect("by name"), br#""5""#);

        let wallet = WalletClient::new(&node, "alice");
        let order = Order { id: "order-1".into(), amount: 7 };
        assert_eq!(deposit_for(&wallet, &order).await.expect("deposit").value, 12);
        assert_eq!(deposit_for(&wallet, &order).await.expect("again").value, 12, "once");
        let error =
            wallet.reliable("order-1").withdraw(Int64Value { value: 1 }).await.expect_err("reused");
        assert_eq!(error.code(), "CALL_ID_REUSED");
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_payment_and_its_nested_calls_apply_once() {
        let node = Node::builder()
            .register::<Wallet>()
            .register::<Customer>()
            .start()
            .await
            .expect("a node");
        let customer = CustomerClient::new(&node, "dora");
        let balance = |id: &'static str| {
            let wallet = WalletClient::new(&node, id);
            async move { wallet.deposit(Int64Value { value: 0 }).await.expect("read").value }
        };

        // A reliable payment, sent twice: it runs once, and so do its
        // nested calls, whose ids derive from its own.
        let payment =
            Payment { payment_id: "p-1".into(), merchant: "shop".into(), amount: 30, fee: 2 };
        for _ in 0..2 {
            let receipt = customer.reliable("pay-1").pay(payment.clone()).await.expect("paid");
            assert_eq!(receipt.balance, -32);
        }
        assert_eq!((balance("shop").await, balance("fees").await), (30, 2));

        // A plain payment, sent twice, runs twice, but its nested calls
        // carry ids derived from the payment's own: the wallets are paid
        // once.
        let payment = Payment { payment_id: "p-2".into(), ..payment };
        assert_eq!(customer.pay(payment.clone()).await.expect("paid").balance, -64);
        assert_eq!(customer.pay(payment).await.expect("paid").balance, -96);
        assert_eq!((balance("shop").await, balance("fees").await), (60, 4));
        node.shutdown().await;
    }
}
