//! Every method form, hooks and options, called through the proxy.
use std::time::Duration;

use goverse::prelude::*;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[goverse::object(name = "BankAccount", idle_timeout = "1h30m", persistent)]
impl Account {
    /// Deposits money.
    pub async fn deposit(&mut self, _ctx: &Context, request: Int64Value) -> goverse::Result<Int64Value> {
        self.balance += request.value;
        Ok(Int64Value { value: self.balance })
    }

    /// Reads the balance.
    pub async fn balance(&self, _ctx: &Context, _request: Empty) -> Result<Int64Value> {
        Ok(Int64Value { value: self.balance })
    }

    /// A raw identifier is a fine method name.
    pub async fn r#type(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue { value: "account".into() })
    }

    /// The lifetime of a context may be written out too.
    pub async fn owner(&self, ctx: &Context<'_>, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue { value: self.describe(ctx).await })
    }

    fn helper(&self) -> i64 {
        self.balance
    }

    /// An `async` helper inside the impl may take `&Context` as well.
    async fn describe(&self, ctx: &Context) -> String {
        format!("{} holds {}", ctx.id(), self.balance)
    }

    #[on_activate]
    async fn activated(&mut self, ctx: &Context) -> goverse::Result<()> {
        ctx.start_timer("audit", Duration::from_secs(60));
        Ok(())
    }

    #[on_deactivate]
    async fn deactivated(&mut self, _ctx: &Context) -> goverse::Result<()> {
        Ok(())
    }

    #[on_timer]
    async fn fired(&mut self, _ctx: &Context, _timer: &str) -> goverse::Result<()> {
        let _ = self.helper();
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let node = Node::builder().register::<Account>().start().await.expect("node");
    let account = AccountClient::new(&node, "acc-1").with_timeout(Duration::from_secs(5));
    assert_eq!(account.deposit(Int64Value { value: 10 }).await.expect("deposit").value, 10);
    assert_eq!(account.balance(Empty {}).await.expect("balance").value, 10);
    assert_eq!(account.r#type(Empty {}).await.expect("type").value, "account");
    assert_eq!(account.owner(Empty {}).await.expect("owner").value, "acc-1 holds 10");
    assert_eq!(account.id(), "acc-1");
    let descriptor = goverse::descriptor_of::<Account>();
    assert_eq!(descriptor.type_name, "BankAccount");
    assert_eq!(descriptor.idle_timeout, Some(Duration::from_secs(5400)));
    assert!(descriptor.persistent);
    assert_eq!(descriptor.methods.iter().map(|m| m.name).collect::<Vec<_>>(), ["Deposit", "Balance", "Type", "Owner"]);
    node.shutdown().await;
}
