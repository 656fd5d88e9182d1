//! Listings of "Security and access control" (`book/src/security.md`).

// ANCHOR: tokens
use std::collections::HashMap;

use goverse::access::Identity;
use goverse::gate::{AuthRequest, Authenticator, Gate, GateOptions};

/// Bearer tokens, each standing for a user.
struct Tokens {
    users: HashMap<String, Identity>,
}

impl Authenticator for Tokens {
    async fn authenticate(&self, request: &AuthRequest) -> Result<Identity, String> {
        let token = request.bearer_token().ok_or("a bearer token is required")?;
        self.users.get(token).cloned().ok_or_else(|| "unknown token".to_string())
    }
}
// ANCHOR_END: tokens

/// Starts a gate that admits alice and root by their bearer tokens.
#[rustfmt::skip]
pub async fn start_with_tokens(node: Node) -> Result<Gate, Box<dyn std::error::Error>> {
// ANCHOR: tokens_gate
let users = HashMap::from([
    ("t-alice".to_string(), Identity::new("alice", ["player"])),
    ("t-root".to_string(), Identity::new("root", ["player", "admin"])),
]);
let options = GateOptions::default()
    .http("127.0.0.1:8080".parse()?)
    .authenticator(Tokens { users });
let gate = Gate::start(&node, options).await?;
// ANCHOR_END: tokens_gate
Ok(gate)
}

/// Connects to a gate as alice.
#[rustfmt::skip]
pub async fn connect_as_alice() -> goverse::Result<goverse::Client> {
// ANCHOR: client_token
use goverse::{Client, ClientOptions};

let client = Client::connect(
    ["http://127.0.0.1:9090"],
    ClientOptions::default().metadata("authorization", "Bearer t-alice"),
)
.await?;
// ANCHOR_END: client_token
Ok(client)
}

/// Starts a gate that admits the bearer tokens of `tokens.yaml`.
#[rustfmt::skip]
pub async fn start_with_a_token_file(node: Node) -> Result<Gate, Box<dyn std::error::Error>> {
// ANCHOR: token_file
use goverse::gate::{Gate, GateOptions, TokenFile};

let options = GateOptions::default()
    .http("0.0.0.0:8080".parse()?)
    .authenticator(TokenFile::load("tokens.yaml")?);
let gate = Gate::start(&node, options).await?;
// ANCHOR_END: token_file
Ok(gate)
}

// ANCHOR: account
use goverse::prelude::*;

/// A bank account, whose id is its owner's user id.
#[derive(Debug, Default)]
pub struct Account {
    balance: i64,
    closed: bool,
}

#[goverse::object]
impl Account {
    /// Closes the account: for admins only.
    pub async fn close(&mut self, ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        if !ctx.identity().is_some_and(|who| who.has_role("admin")) {
            return Err(goverse::Error::application("NOT_ADMIN", "closing accounts is for admins"));
        }
        self.closed = true;
        Ok(Empty {})
    }

    /// The balance: for its owner, and for objects.
    pub async fn get_balance(&self, ctx: &Context, _request: Empty) -> goverse::Result<Int64Value> {
        let own = ctx.identity().is_some_and(|who| who.user_id == ctx.id());
        if ctx.is_external() && !own {
            return Err(goverse::Error::application("NOT_YOURS", "this is not your account"));
        }
        Ok(Int64Value { value: self.balance })
    }

    /// Takes `request.value` from the balance of an open account.
    pub async fn debit(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        if self.closed {
            return Err(goverse::Error::application("CLOSED", "the account is closed"));
        }
        self.balance -= request.value;
        Ok(Int64Value { value: self.balance })
    }
}
// ANCHOR_END: account

/// A lobby whose members are the clients that joined it for themselves.
#[derive(Debug, Default)]
pub struct Lobby {
    members: Vec<String>,
}

#[goverse::object]
#[rustfmt::skip]
impl Lobby {
// ANCHOR: join
/// Adds the client that made the call to the members.
pub async fn join(&mut self, ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
    let Some(client) = ctx.client_id() else {
        return Err(goverse::Error::application("NO_CLIENT", "call with X-Client-ID and X-Session-Token"));
    };
    self.members.push(client.to_string());
    Ok(Empty {})
}
// ANCHOR_END: join

/// How many clients joined.
pub async fn count(&self, _ctx: &Context, _request: Empty) -> goverse::Result<UInt64Value> {
    Ok(UInt64Value { value: self.members.len() as u64 })
}
}

/// A shop: sells to clients, charging their accounts.
#[derive(Debug, Default)]
pub struct Shop {
    stock: i64,
}

#[goverse::object]
impl Shop {
    /// Sells one item to the user named in the request, for 10 from their
    /// account; returns the stock left.
    pub async fn buy(
        &mut self,
        ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<Int64Value> {
        AccountClient::new(ctx, request.value).debit(Int64Value { value: 10 }).await?;
        self.stock -= 1;
        Ok(Int64Value { value: self.stock })
    }

    /// Adds `request.value` items to the stock; returns the stock.
    pub async fn restock(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.stock += request.value;
        Ok(Int64Value { value: self.stock })
    }
}

/// Starts a node hosting accounts and the shop under the rules of
/// `access.yaml`.
#[rustfmt::skip]
pub async fn start_with_rules() -> goverse::Result<Node> {
// ANCHOR: access_rules
use goverse::access::AccessRules;

let node = Node::builder()
    .register::<Account>()
    .register::<Shop>()
    .access_rules(AccessRules::from_file("access.yaml")?)
    .start()
    .await?;
// ANCHOR_END: access_rules
Ok(node)
}

/// Checks what the rules of `access.yaml` answer, as a node would.
///
/// # Panics
///
/// When a rule does not answer as the book says.
#[rustfmt::skip]
pub fn check_the_rules() -> goverse::Result<()> {
// ANCHOR: check_rules
use goverse::access::{AccessRules, Lifecycle};

let rules = AccessRules::from_file("access.yaml")?;
assert!(rules.check_call("Account", "alice", "GetBalance", true).is_ok());
assert!(rules.check_call("Account", "alice", "Debit", true).is_err());
assert!(rules.check_call("Account", "alice", "Debit", false).is_ok());
assert!(rules.check_lifecycle("Account", "bob", Lifecycle::Create, true).is_err());
// ANCHOR_END: check_rules
Ok(())
}

/// A gate's options with rate limits per client and per object.
#[rustfmt::skip]
pub fn rate_limited() -> Result<GateOptions, std::net::AddrParseError> {
// ANCHOR: rate_limits
use goverse::gate::{GateOptions, RateLimit};

let options = GateOptions::default()
    .http("0.0.0.0:8080".parse()?)
    .rate_limit_per_client(RateLimit::new(20.0, 40))   // 20/s on average, bursts of 40
    .rate_limit_per_object(RateLimit::new(200.0, 400));
// ANCHOR_END: rate_limits
Ok(options)
}

#[cfg(test)]
mod tests {
    use goverse::ClientOptions;
    use goverse::access::Lifecycle;

    use super::*;
    use crate::testing::{gate_and_client, gate_and_client_with};

    fn as_user(token: &str) -> ClientOptions {
        ClientOptions::default().metadata("authorization", format!("Bearer {token}"))
    }

    #[tokio::test]
    async fn objects_see_who_the_authenticator_says_a_call_is_for() {
        let node = Node::builder().register::<Account>().start().await.expect("a node");
        let users = HashMap::from([
            ("t-alice".to_string(), Identity::new("alice", ["player"])),
            ("t-root".to_string(), Identity::new("root", ["player", "admin"])),
        ]);
        let options = GateOptions::default().authenticator(Tokens { users });
        let (gate, alice) = gate_and_client_with(&node, options, as_user("t-alice")).await;
        let address = format!("http://{}", gate.grpc_address().expect("gRPC"));
        let connect = |options| goverse::Client::connect([address.clone()], options);
        let root = connect(as_user("t-root")).await.expect("root");
        let nobody = connect(ClientOptions::default()).await.expect("nobody");

        let alices = AccountClient::new(&alice, "alice");
        assert_eq!(alices.get_balance(Empty {}).await.expect("her own").value, 0);
        let bobs = AccountClient::new(&alice, "bob").get_balance(Empty {}).await;
        assert_eq!(bobs.expect_err("not hers").code(), "NOT_YOURS");
        assert_eq!(alices.close(Empty {}).await.expect_err("no admin").code(), "NOT_ADMIN");
        let anonymous = AccountClient::new(&nobody, "alice").get_balance(Empty {}).await;
        assert_eq!(anonymous.expect_err("no token").code(), "UNAUTHENTICATED");
        AccountClient::new(&root, "alice").close(Empty {}).await.expect("root closes");
        let closed = AccountClient::new(&node, "alice").debit(Int64Value { value: 1 }).await;
        assert_eq!(closed.expect_err("closed").code(), "CLOSED");
        gate.shutdown().await;
        node.shutdown().await;
    }

    #[tokio::test]
    async fn an_object_that_is_not_called_for_a_client_sees_none() {
        let node = Node::builder().register::<Lobby>().start().await.expect("a node");
        let lobby = LobbyClient::new(&node, "main");
        assert_eq!(lobby.join(Empty {}).await.expect_err("no client").code(), "NO_CLIENT");
        assert_eq!(lobby.count(Empty {}).await.expect("count").value, 0);
        node.shutdown().await;
    }

    #[tokio::test]
    async fn the_rules_decide_by_where_a_call_comes_from() {
        check_the_rules().expect("the rules file");
        let node = start_with_rules().await.expect("a node");
        let (gate, client) = gate_and_client(&node, GateOptions::default()).await;

        // From code on the node: internal.
        let denied = AccountClient::new(&node, "admin-1").get_balance(Empty {}).await;
        assert_eq!(denied.expect_err("rule 1").code(), "ACCESS_DENIED");
        let runs = AccountClient::new(&node, "alice").close(Empty {}).await;
        assert_eq!(runs.expect_err("rule 7 lets it run").code(), "NOT_ADMIN");
        let restocked = ShopClient::new(&node, "main").restock(Int64Value { value: 5 }).await;
        assert_eq!(restocked.expect("rule 5").value, 5);

        // From a client, through the gate: external.
        let read = AccountClient::new(&client, "alice").get_balance(Empty {}).await;
        assert_eq!(read.expect_err("rule 2 lets it run").code(), "NOT_YOURS");
        let debit = AccountClient::new(&client, "alice").debit(Int64Value { value: 1 }).await;
        assert_eq!(debit.expect_err("rule 3").code(), "ACCESS_DENIED");
        let bought =
            ShopClient::new(&client, "main").buy(StringValue { value: "alice".into() }).await;
        assert_eq!(bought.expect("rule 4, and rule 3 for the shop's debit").value, 4);
        assert_eq!(
            AccountClient::new(&node, "alice").get_balance(Empty {}).await.expect("read").value,
            -10
        );
        let create = client.create::<Account>("bob").await;
        assert_eq!(create.expect_err("lifecycle rule 2").code(), "ACCESS_DENIED");
        client.create::<Shop>("kiosk").await.expect("no lifecycle rule: allowed");
        let delete = client.delete::<Shop>("main").await;
        assert_eq!(delete.expect_err("lifecycle rule 3").code(), "ACCESS_DENIED");

        let rules = goverse::access::AccessRules::from_file("access.yaml").expect("rules");
        assert!(rules.check_lifecycle("Room", "r1", Lifecycle::Delete, true).is_ok());
        gate.shutdown().await;
        node.shutdown().await;
    }

    #[test]
    fn the_rate_limits_are_set() -> Result<(), std::net::AddrParseError> {
        let options = rate_limited()?;
        let client = options.rate_limit_per_client.expect("per client");
        let object = options.rate_limit_per_object.expect("per object");
        assert_eq!((client.per_second, client.burst), (20.0, 40));
        assert_eq!((object.per_second, object.burst), (200.0, 400));
        Ok(())
    }

    #[test]
    fn the_rules_file_is_the_one_the_book_shows() {
        let chapter = std::fs::read_to_string("../src/security.md").expect("the chapter");
        let start =
            chapter.find("```yaml\n# access.yaml\n").expect("the rules block") + "```yaml\n".len();
        let length = chapter[start..].find("```").expect("its end");
        let file = std::fs::read_to_string("access.yaml").expect("access.yaml");
        assert_eq!(&chapter[start..start + length], file);
    }
}
