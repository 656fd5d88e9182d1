//! The listings of the book's "Evolving persistent state" chapter, and the
//! tests behind its claims: how a persistent object's stored state (the
//! JSON of its serde form) behaves when a release adds, renames or removes
//! a field, or changes the form altogether, and what a node does with a
//! stored state that no longer deserializes.
//!
//! Each "release" is a node started on one shared `MemoryStorage` with a
//! different Rust type registered under the same object type name, the way
//! a new build of a program meets the rows the previous build wrote.

use std::sync::Arc;

use goverse::prelude::*;
use goverse::storage::{Fence, MemoryStorage, Storage as _};

/// Starts a node hosting `O` on `storage`: one release of the program.
async fn release<O: goverse::Object>(storage: &Arc<MemoryStorage>) -> Node {
    Node::builder()
        .register::<O>()
        .storage(storage.clone())
        .start()
        .await
        .expect("the release starts")
}

/// The stored state of `type_name/id`, as JSON.
async fn stored(storage: &MemoryStorage, type_name: &str, id: &str) -> serde_json::Value {
    let row = storage
        .load(type_name, id)
        .await
        .expect("load")
        .expect("the object has a row");
    serde_json::from_slice(&row.data).expect("stored state is JSON")
}

/// Stores `state` as `type_name/id`, as the earlier release `ProfileV1`
/// would have: by running it.
async fn stored_by_v1(storage: &Arc<MemoryStorage>, id: &str, name: &str) {
    let node = release::<ProfileV1>(storage).await;
    ProfileV1Client::new(&node, id)
        .set_name(StringValue { value: name.into() })
        .await
        .expect("release 1 stores the name");
    node.shutdown().await;
    assert_eq!(
        stored(storage, "Profile", id).await,
        serde_json::json!({ "name": name })
    );
}

// ANCHOR: v1
/// A player's profile as the first release stores it: `{"name":"Ada"}`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProfileV1 {
    name: String,
}

// `name` keeps the stored type name when the Rust type is renamed.
#[goverse::object(persistent, name = "Profile")]
impl ProfileV1 {
    /// Sets the player's name.
    pub async fn set_name(
        &mut self,
        _ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<Empty> {
        self.name = request.value;
        Ok(Empty {})
    }

    /// The player's name.
    pub async fn name(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: self.name.clone(),
        })
    }
}
// ANCHOR_END: v1

// ANCHOR: added
/// The next release adds a level and a title.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProfileV2 {
    name: String,
    /// Rows written before it existed load with `0`, the type's default.
    #[serde(default)]
    level: u32,
    /// An `Option` needs no attribute: where it is missing, it is `None`.
    title: Option<String>,
}

#[goverse::object(persistent, name = "Profile")]
impl ProfileV2 {
    /// Raises the level by one and returns it.
    pub async fn level_up(
        &mut self,
        _ctx: &Context,
        _request: Empty,
    ) -> goverse::Result<UInt32Value> {
        self.level += 1;
        Ok(UInt32Value { value: self.level })
    }

    /// `name, level N`, and the title if there is one.
    pub async fn describe(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        let mut text = format!("{}, level {}", self.name, self.level);
        if let Some(title) = &self.title {
            text.push_str(&format!(", {title}"));
        }
        Ok(StringValue { value: text })
    }
}
// ANCHOR_END: added

// ANCHOR: container_default
/// `#[serde(default)]` on the struct: a field missing from a row takes its
/// value from the type's own `Default`, the one new objects start from.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ProfileWithDefaults {
    name: String,
    level: u32,
}

impl Default for ProfileWithDefaults {
    fn default() -> Self {
        Self {
            name: "anonymous".into(),
            level: 1,
        }
    }
}
// ANCHOR_END: container_default

#[goverse::object(persistent, name = "Profile")]
impl ProfileWithDefaults {
    /// `name, level N`.
    pub async fn describe(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: format!("{}, level {}", self.name, self.level),
        })
    }
}

/// The same new field without `#[serde(default)]`: rows written before it
/// existed no longer load.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProfileRequired {
    name: String,
    level: u32,
}

#[goverse::object(persistent, name = "Profile")]
impl ProfileRequired {
    /// The player's level.
    pub async fn level(&self, _ctx: &Context, _request: Empty) -> goverse::Result<UInt32Value> {
        Ok(UInt32Value { value: self.level })
    }
}

// ANCHOR: renamed
/// A release that renames `name` to `display_name`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProfileV3 {
    /// Reads rows that call it `name` too; writes `display_name`.
    #[serde(alias = "name")]
    display_name: String,
}

#[goverse::object(persistent, name = "Profile")]
impl ProfileV3 {
    /// Sets the display name.
    pub async fn set_display_name(
        &mut self,
        _ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<Empty> {
        self.display_name = request.value;
        Ok(Empty {})
    }

    /// The display name.
    pub async fn display_name(
        &self,
        _ctx: &Context,
        _request: Empty,
    ) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: self.display_name.clone(),
        })
    }
}
// ANCHOR_END: renamed

// ANCHOR: renamed_in_rust
/// A new name in Rust only: the stored key stays `name`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProfileRustName {
    #[serde(rename = "name")]
    display_name: String,
}
// ANCHOR_END: renamed_in_rust

#[goverse::object(persistent, name = "Profile")]
impl ProfileRustName {
    /// Sets the display name.
    pub async fn set_display_name(
        &mut self,
        _ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<Empty> {
        self.display_name = request.value;
        Ok(Empty {})
    }

    /// The display name.
    pub async fn display_name(
        &self,
        _ctx: &Context,
        _request: Empty,
    ) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: self.display_name.clone(),
        })
    }
}

// ANCHOR: keep_unknown
/// A release that keeps the fields it does not know, and writes them back.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProfileKeeper {
    name: String,
    #[serde(flatten)]
    unknown: serde_json::Map<String, serde_json::Value>,
}
// ANCHOR_END: keep_unknown

#[goverse::object(persistent, name = "Profile")]
impl ProfileKeeper {
    /// Sets the player's name.
    pub async fn set_name(
        &mut self,
        _ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<Empty> {
        self.name = request.value;
        Ok(Empty {})
    }
}

/// A type that refuses fields it does not know.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDenying {
    name: String,
}

#[goverse::object(persistent, name = "Profile")]
impl ProfileDenying {
    /// The player's name.
    pub async fn name(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: self.name.clone(),
        })
    }
}

// ANCHOR: versions
/// A release that splits the name in two: `{"first":"Ada","last":"Lovelace"}`.
/// It reads every form the profile was ever stored in, and writes its own.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "StoredProfile")]
pub struct ProfileV4 {
    first: String,
    last: String,
}

/// The forms a profile has been stored in, newest first: serde tries each
/// in turn and takes the first that fits.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StoredProfile {
    Split { first: String, last: String },
    Whole { name: String },
}

impl From<StoredProfile> for ProfileV4 {
    fn from(stored: StoredProfile) -> Self {
        match stored {
            StoredProfile::Split { first, last } => ProfileV4 { first, last },
            StoredProfile::Whole { name } => {
                let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
                ProfileV4 {
                    first: first.to_string(),
                    last: last.to_string(),
                }
            }
        }
    }
}
// ANCHOR_END: versions

#[goverse::object(persistent, name = "Profile")]
impl ProfileV4 {
    /// Sets the last name.
    pub async fn set_last(
        &mut self,
        _ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<Empty> {
        self.last = request.value;
        Ok(Empty {})
    }

    /// `last, first`.
    pub async fn filed_as(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: format!("{}, {}", self.last, self.first),
        })
    }
}

/// A profile stored under the Rust type's own name: the `name` option was
/// dropped, so it looks for rows under `PlayerProfile`, not `Profile`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PlayerProfile {
    name: String,
}

#[goverse::object(persistent)]
impl PlayerProfile {
    /// The player's name.
    pub async fn name(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: self.name.clone(),
        })
    }
}

/// A wallet as the first release stores it: whole coins, `{"coins":5}`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WalletV1 {
    coins: i64,
}

#[goverse::object(persistent, name = "Wallet")]
impl WalletV1 {
    /// Adds coins and returns the balance.
    pub async fn deposit(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.coins += request.value;
        Ok(Int64Value { value: self.coins })
    }
}

// ANCHOR: migration
/// The form this release writes.
const WALLET_VERSION: u32 = 2;

/// A later release keeps cents instead of coins, and says which form a
/// state is in.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WalletV2 {
    /// Rows of the first release have no version: they load as 0.
    #[serde(default)]
    version: u32,
    /// The first release's balance, read from its rows, never written.
    #[serde(default, skip_serializing)]
    coins: Option<i64>,
    #[serde(default)]
    cents: i64,
}

#[goverse::object(persistent, name = "Wallet")]
impl WalletV2 {
    /// Adds cents and returns the balance in cents.
    pub async fn deposit_cents(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.cents += request.value;
        Ok(Int64Value { value: self.cents })
    }

    /// The balance in cents.
    pub async fn cents(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int64Value> {
        Ok(Int64Value { value: self.cents })
    }

    /// Brings a loaded state to this release's form, before the first call.
    #[on_activate]
    async fn migrate(&mut self, _ctx: &Context) -> goverse::Result<()> {
        if self.version > WALLET_VERSION {
            // Written by a newer release: do not load it, or this one
            // would overwrite it with less.
            return Err(Error::application(
                "STATE_TOO_NEW",
                format!(
                    "wallet state version {} is newer than this release",
                    self.version
                ),
            ));
        }
        if self.version < 2 {
            self.cents = self.coins.take().unwrap_or(0) * 100;
        }
        self.version = WALLET_VERSION;
        Ok(())
    }
}
// ANCHOR_END: migration

#[tokio::test]
async fn a_field_added_with_a_default_loads_old_rows() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada").await;

    let node = release::<ProfileV2>(&storage).await;
    let profile = ProfileV2Client::new(&node, "ada");
    assert_eq!(
        profile
            .describe(Empty {})
            .await
            .expect("old row loads")
            .value,
        "Ada, level 0",
        "`level` took its default and `title` is None"
    );
    assert_eq!(profile.level_up(Empty {}).await.expect("level up").value, 1);
    assert_eq!(
        stored(&storage, "Profile", "ada").await,
        serde_json::json!({ "name": "Ada", "level": 1, "title": null }),
        "the next write stores the new form"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_container_default_fills_missing_fields_from_default() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada").await;

    let node = release::<ProfileWithDefaults>(&storage).await;
    let describe = |id: &'static str| {
        let profile = ProfileWithDefaultsClient::new(&node, id);
        async move { profile.describe(Empty {}).await.expect("loads").value }
    };
    assert_eq!(describe("ada").await, "Ada, level 1", "an old row");
    assert_eq!(describe("bob").await, "anonymous, level 1", "a new object");
    node.shutdown().await;
}

#[tokio::test]
async fn a_field_added_without_a_default_fails_old_rows() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada").await;

    let node = release::<ProfileRequired>(&storage).await;
    let error = ProfileRequiredClient::new(&node, "ada")
        .level(Empty {})
        .await
        .expect_err("a row without `level` does not load");
    assert_eq!(error.code(), Code::ActivationFailed);
    assert!(
        error.to_string().contains("missing field `level`"),
        "{error}"
    );
    node.shutdown().await;
    assert_eq!(
        stored(&storage, "Profile", "ada").await,
        serde_json::json!({ "name": "Ada" }),
        "the row is left as it was"
    );
}

#[tokio::test]
async fn a_renamed_field_reads_its_old_name_through_an_alias() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada").await;

    let node = release::<ProfileV3>(&storage).await;
    let profile = ProfileV3Client::new(&node, "ada");
    assert_eq!(
        profile.display_name(Empty {}).await.expect("loads").value,
        "Ada"
    );
    profile
        .set_display_name(StringValue {
            value: "Ada L.".into(),
        })
        .await
        .expect("set");
    assert_eq!(
        stored(&storage, "Profile", "ada").await,
        serde_json::json!({ "display_name": "Ada L." }),
        "the new name is written, the old one is gone"
    );
    node.shutdown().await;

    // Rolling back to the first release now fails: it needs `name`.
    let old = release::<ProfileV1>(&storage).await;
    let error = ProfileV1Client::new(&old, "ada")
        .name(Empty {})
        .await
        .expect_err("the first release cannot read the new name");
    assert_eq!(error.code(), Code::ActivationFailed);
    old.shutdown().await;
}

#[tokio::test]
async fn a_rust_rename_keeps_the_stored_key() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada").await;

    let node = release::<ProfileRustName>(&storage).await;
    let profile = ProfileRustNameClient::new(&node, "ada");
    assert_eq!(
        profile.display_name(Empty {}).await.expect("loads").value,
        "Ada"
    );
    profile
        .set_display_name(StringValue {
            value: "Ada L.".into(),
        })
        .await
        .expect("set");
    assert_eq!(
        stored(&storage, "Profile", "ada").await,
        serde_json::json!({ "name": "Ada L." })
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_removed_field_is_ignored_then_dropped_at_the_next_write() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada").await;
    let node = release::<ProfileV2>(&storage).await;
    ProfileV2Client::new(&node, "ada")
        .level_up(Empty {})
        .await
        .expect("level up");
    node.shutdown().await;

    // A release without `level` and `title` (here: the first one again,
    // as during a rolling upgrade, or after a rollback) loads the row...
    let old = release::<ProfileV1>(&storage).await;
    let profile = ProfileV1Client::new(&old, "ada");
    assert_eq!(profile.name(Empty {}).await.expect("loads").value, "Ada");
    // ...and its next write stores its own form: the level is gone.
    profile
        .set_name(StringValue {
            value: "Ada L.".into(),
        })
        .await
        .expect("set");
    assert_eq!(
        stored(&storage, "Profile", "ada").await,
        serde_json::json!({ "name": "Ada L." })
    );
    old.shutdown().await;

    let again = release::<ProfileV2>(&storage).await;
    assert_eq!(
        ProfileV2Client::new(&again, "ada")
            .describe(Empty {})
            .await
            .expect("loads")
            .value,
        "Ada L., level 0",
        "the level the old release dropped is lost"
    );
    again.shutdown().await;
}

#[tokio::test]
async fn flatten_keeps_the_fields_a_release_does_not_know() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada").await;
    let node = release::<ProfileV2>(&storage).await;
    ProfileV2Client::new(&node, "ada")
        .level_up(Empty {})
        .await
        .expect("level up");
    node.shutdown().await;

    let keeper = release::<ProfileKeeper>(&storage).await;
    ProfileKeeperClient::new(&keeper, "ada")
        .set_name(StringValue {
            value: "Ada L.".into(),
        })
        .await
        .expect("set");
    assert_eq!(
        stored(&storage, "Profile", "ada").await,
        serde_json::json!({ "name": "Ada L.", "level": 1, "title": null }),
        "the fields it does not know are written back"
    );
    keeper.shutdown().await;
}

#[tokio::test]
async fn deny_unknown_fields_refuses_rows_with_more_fields() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada").await;
    let node = release::<ProfileV2>(&storage).await;
    ProfileV2Client::new(&node, "ada")
        .level_up(Empty {})
        .await
        .expect("level up");
    node.shutdown().await;

    let strict = release::<ProfileDenying>(&storage).await;
    let error = ProfileDenyingClient::new(&strict, "ada")
        .name(Empty {})
        .await
        .expect_err("`level` is unknown to it");
    assert_eq!(error.code(), Code::ActivationFailed);
    assert!(error.to_string().contains("unknown field"), "{error}");
    strict.shutdown().await;
}

#[tokio::test]
async fn an_untagged_enum_reads_every_stored_form() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada Lovelace").await;
    stored_by_v1(&storage, "plato", "Plato").await;

    let node = release::<ProfileV4>(&storage).await;
    let ada = ProfileV4Client::new(&node, "ada");
    assert_eq!(
        ada.filed_as(Empty {}).await.expect("loads").value,
        "Lovelace, Ada"
    );
    assert_eq!(
        ProfileV4Client::new(&node, "plato")
            .filed_as(Empty {})
            .await
            .expect("loads")
            .value,
        ", Plato"
    );
    ada.set_last(StringValue {
        value: "King".into(),
    })
    .await
    .expect("set");
    assert_eq!(
        stored(&storage, "Profile", "ada").await,
        serde_json::json!({ "first": "Ada", "last": "King" }),
        "it writes the newest form"
    );
    node.shutdown().await;

    // The newest form reads back through the same enum.
    let again = release::<ProfileV4>(&storage).await;
    assert_eq!(
        ProfileV4Client::new(&again, "ada")
            .filed_as(Empty {})
            .await
            .expect("loads")
            .value,
        "King, Ada"
    );
    again.shutdown().await;
}

#[tokio::test]
async fn a_version_field_and_the_activation_hook_migrate_old_rows() {
    let storage = Arc::new(MemoryStorage::new());
    let first = release::<WalletV1>(&storage).await;
    WalletV1Client::new(&first, "w1")
        .deposit(Int64Value { value: 5 })
        .await
        .expect("deposit");
    first.shutdown().await;
    assert_eq!(
        stored(&storage, "Wallet", "w1").await,
        serde_json::json!({ "coins": 5 })
    );

    let second = release::<WalletV2>(&storage).await;
    let wallet = WalletV2Client::new(&second, "w1");
    assert_eq!(wallet.cents(Empty {}).await.expect("migrated").value, 500);
    // Only a `&self` call ran: the migrated state is written when the
    // object is deactivated (here, by the shutdown).
    second.shutdown().await;
    assert_eq!(
        stored(&storage, "Wallet", "w1").await,
        serde_json::json!({ "version": 2, "cents": 500 })
    );

    // An object new to this release starts from `Default`, migrated too.
    let third = release::<WalletV2>(&storage).await;
    assert_eq!(
        WalletV2Client::new(&third, "w2")
            .deposit_cents(Int64Value { value: 7 })
            .await
            .expect("deposit")
            .value,
        7
    );
    assert_eq!(
        stored(&storage, "Wallet", "w2").await,
        serde_json::json!({ "version": 2, "cents": 7 })
    );
    third.shutdown().await;
}

#[tokio::test]
async fn the_activation_hook_refuses_a_state_from_a_newer_release() {
    let storage = Arc::new(MemoryStorage::new());
    let newer = br#"{"version": 3, "cents": 900, "currency": "EUR"}"#;
    storage
        .save("Wallet", "w1", newer, Fence { epoch: 1 })
        .await
        .expect("a row of a newer release");

    let node = release::<WalletV2>(&storage).await;
    let error = WalletV2Client::new(&node, "w1")
        .cents(Empty {})
        .await
        .expect_err("too new");
    assert_eq!(error.code(), Code::ActivationFailed);
    let Error::ActivationFailed { source, .. } = &error else {
        panic!("not an activation failure: {error:?}");
    };
    assert_eq!(source.code(), "STATE_TOO_NEW");
    node.shutdown().await;
    assert_eq!(
        storage
            .load("Wallet", "w1")
            .await
            .expect("load")
            .expect("row")
            .data,
        newer,
        "the newer state is untouched"
    );
}

#[tokio::test]
async fn a_state_that_does_not_deserialize_fails_its_activation_and_is_kept() {
    let storage = Arc::new(MemoryStorage::new());
    // A row in no form `ProfileV4` knows.
    let row = br#"{"nickname": "ada"}"#;
    storage
        .save("Profile", "ada", row, Fence { epoch: 1 })
        .await
        .expect("row");

    let node = release::<ProfileV4>(&storage).await;
    let profile = ProfileV4Client::new(&node, "ada");
    // ANCHOR: unreadable
    let error = profile.filed_as(Empty {}).await.expect_err("no form fits");
    assert_eq!(error.code(), Code::ActivationFailed);
    assert!(!error.code().is_transient());
    let Error::ActivationFailed { source, .. } = &error else {
        panic!("not an activation failure: {error:?}");
    };
    assert_eq!(source.code(), Code::StorageError);
    assert!(
        source
            .to_string()
            .contains("cannot deserialize stored state")
    );
    // ANCHOR_END: unreadable
    assert!(
        error
            .to_string()
            .contains("did not match any variant of untagged enum StoredProfile"),
        "{error}"
    );

    // Every call tries again, and fails again; nothing is written.
    let again = profile.filed_as(Empty {}).await.expect_err("still");
    assert_eq!(again.code(), Code::ActivationFailed);
    assert_eq!(node.stats().active, 0, "no activation is kept");
    let kept = storage
        .load("Profile", "ada")
        .await
        .expect("load")
        .expect("row");
    assert_eq!(kept.data, row, "the row is left as it was");

    // Repaired in the store, the row loads at the next call: the failed
    // activations were not kept.
    storage
        .save(
            "Profile",
            "ada",
            br#"{"name": "Ada Lovelace"}"#,
            Fence { epoch: kept.epoch },
        )
        .await
        .expect("repair");
    assert_eq!(
        profile.filed_as(Empty {}).await.expect("repaired").value,
        "Lovelace, Ada"
    );

    // Or the object is deleted, and starts afresh from `Default`.
    storage
        .save("Profile", "bob", row, Fence { epoch: 1 })
        .await
        .expect("row");
    let bob = ProfileV4Client::new(&node, "bob");
    assert_eq!(
        bob.filed_as(Empty {})
            .await
            .expect_err("no form fits")
            .code(),
        Code::ActivationFailed
    );
    node.delete::<ProfileV4>("bob").await.expect("delete");
    assert_eq!(bob.filed_as(Empty {}).await.expect("afresh").value, ", ");
    node.shutdown().await;
}

#[tokio::test]
async fn a_type_stored_under_another_name_does_not_see_the_rows() {
    let storage = Arc::new(MemoryStorage::new());
    stored_by_v1(&storage, "ada", "Ada").await;

    let node = release::<PlayerProfile>(&storage).await;
    assert_eq!(
        PlayerProfileClient::new(&node, "ada")
            .name(Empty {})
            .await
            .expect("a new object")
            .value,
        "",
        "`PlayerProfile/ada` is another object than `Profile/ada`"
    );
    node.shutdown().await;
    assert_eq!(
        stored(&storage, "Profile", "ada").await,
        serde_json::json!({ "name": "Ada" })
    );
}
