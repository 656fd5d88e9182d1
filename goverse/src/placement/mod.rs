//! Where an object lives: object id validation and the id -> shard mapping.
//!
//! `shard = fnv1a32(id) % shard_count`, as in GoVerse, except for ids of the
//! form `shard#<N>/<rest>`, which are pinned to shard `N`. Which node owns a
//! shard is decided by [`plan`], a pure function of the live nodes and the
//! current shard map.

mod plan;

pub use plan::{Move, ShardPlacement, plan};

use crate::error::{Error, Result};

/// The default number of shards in a cluster.
pub const DEFAULT_SHARD_COUNT: u32 = 8192;

/// The longest object id accepted, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// 32-bit FNV-1a, the hash GoVerse places objects with.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// Checks that an object id is usable: non-empty, at most [`MAX_ID_LEN`]
/// bytes, no control characters, and a well-formed `shard#N/` prefix if any.
///
/// # Errors
///
/// [`Error::InvalidObjectId`] naming the problem.
pub fn validate_id(id: &str, shard_count: u32) -> Result<()> {
    let invalid = |reason: &'static str| Error::InvalidObjectId {
        id: id.chars().take(64).collect(),
        reason: reason.into(),
    };
    if id.is_empty() {
        return Err(invalid("object ids cannot be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(invalid("object ids are at most 1024 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(invalid("object ids cannot contain control characters"));
    }
    if let Some(pinned) = id.strip_prefix("shard#") {
        let Some((number, _rest)) = pinned.split_once('/') else {
            return Err(invalid("a pinned id is written `shard#<N>/<rest>`"));
        };
        match number.parse::<u32>() {
            Ok(shard) if shard < shard_count => {}
            Ok(_) => return Err(invalid("pinned shard number is out of range")),
            Err(_) => return Err(invalid("pinned shard number is not a number")),
        }
    }
    Ok(())
}

/// The pseudo-shard of objects pinned to one node by an id of the form
/// `<host>:<port>/<rest>` (the node's address, then anything).
pub const NODE_PINNED: u32 = u32::MAX;

/// The node address an id is pinned to: the part before the first `/`, when
/// it has the form `host:port`.
///
/// # Examples
///
/// ```
/// use goverse::placement::pinned_node;
/// assert_eq!(pinned_node("10.0.0.7:7001/monitor"), Some("10.0.0.7:7001"));
/// assert_eq!(pinned_node("room/7"), None);
/// assert_eq!(pinned_node("shard#3/x"), None);
/// ```
pub fn pinned_node(id: &str) -> Option<&str> {
    let (prefix, _) = id.split_once('/')?;
    let (host, port) = prefix.rsplit_once(':')?;
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    (!host.is_empty() && port_ok).then_some(prefix)
}

/// Where an object id is placed: its shard, or [`NODE_PINNED`] for an id
/// pinned to a node. Assumes [`validate_id`] passed.
pub fn shard_for(id: &str, shard_count: u32) -> u32 {
    if pinned_node(id).is_some() {
        return NODE_PINNED;
    }
    shard_of(id, shard_count)
}

/// The shard an object id belongs to. Assumes [`validate_id`] passed.
///
/// # Examples
///
/// ```
/// use goverse::placement::shard_of;
/// assert_eq!(shard_of("shard#7/monitor", 8192), 7);
/// assert!(shard_of("my-counter", 8192) < 8192);
/// ```
pub fn shard_of(id: &str, shard_count: u32) -> u32 {
    if let Some((number, _)) = id.strip_prefix("shard#").and_then(|p| p.split_once('/'))
        && let Ok(shard) = number.parse::<u32>()
        && shard < shard_count
    {
        return shard;
    }
    fnv1a32(id.as_bytes()) % shard_count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn pinned_ids_go_to_their_shard() {
        assert_eq!(shard_of("shard#12/x", 8192), 12);
        assert_eq!(shard_of("shard#0/", 16), 0);
    }

    #[test]
    fn bad_ids_are_rejected_with_reasons() {
        for (id, reason) in [
            ("", "empty"),
            ("a\nb", "control"),
            ("shard#x/y", "not a number"),
            ("shard#9000/y", "out of range"),
            ("shard#3", "written"),
        ] {
            let error = validate_id(id, 8192).unwrap_err();
            assert_eq!(error.code(), "INVALID_OBJECT_ID");
            assert!(error.to_string().contains(reason), "{id:?}: {error}");
        }
        assert!(validate_id(&"x".repeat(MAX_ID_LEN + 1), 8192).is_err());
        assert!(validate_id("shard#5/ok", 8192).is_ok());
    }
}
