//! A ready-made [`Authenticator`]: bearer tokens from a YAML file, each
//! standing for a user and roles. It lets a standalone `goverse-gate`
//! authenticate without user code; services with their own identity
//! provider implement [`Authenticator`] instead.

use std::path::Path;

use super::security::{AuthRequest, Authenticator, Secret};
use crate::access::Identity;
use crate::error::{Error, Result};

/// Bearer tokens and the identities they stand for.
///
/// ```yaml
/// tokens:
///   - token: "a-long-random-secret"
///     user: alice
///     roles: [player]
///   # The token of this one is read from the environment at load.
///   - token_env: MATCHMAKER_TOKEN
///     user: matchmaker
///     roles: [service]
/// ```
///
/// A request is admitted with `Authorization: Bearer <token>` (HTTP header
/// or gRPC metadata); anything else gets `401 UNAUTHENTICATED`.
///
/// ```
/// use goverse::gate::TokenFile;
///
/// let tokens = TokenFile::from_yaml(
///     "tokens:\n  - { token: s3cret-alice-0123456789, user: alice, roles: [player] }\n",
/// )?;
/// assert_eq!(tokens.len(), 1);
/// # Ok::<(), goverse::Error>(())
/// ```
#[derive(Clone)]
pub struct TokenFile {
    tokens: Vec<(Secret, Identity)>,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens are secrets: only the users are shown.
        let users: Vec<&str> = self.tokens.iter().map(|(_, i)| &*i.user_id).collect();
        f.debug_struct("TokenFile").field("users", &users).finish()
    }
}

/// Tokens shorter than this are refused: they could be guessed.
const SHORTEST_TOKEN: usize = 16;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    token: Option<String>,
    token_env: Option<String>,
    user: String,
    #[serde(default)]
    roles: Vec<String>,
}

impl TokenFile {
    /// Reads the tokens from the YAML file at `path`.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` when the file cannot be read or is not valid (see
    /// [`TokenFile::from_yaml`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("tokens file {}: {e}", path.display())))?;
        Self::from_yaml(&text)
            .map_err(|e| Error::Config(format!("tokens file {}: {e}", path.display())))
    }

    /// Parses the tokens from YAML text.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for malformed YAML, an entry with both or neither
    /// of `token` and `token_env`, an unset environment variable, a token
    /// shorter than 16 characters, an empty user, or a token given twice.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let file: File =
            serde_yaml_ng::from_str(text).map_err(|e| Error::Config(format!("tokens: {e}")))?;
        let mut tokens: Vec<(Secret, Identity)> = Vec::with_capacity(file.tokens.len());
        for (index, entry) in file.tokens.into_iter().enumerate() {
            let which = format!("tokens[{index}] (user `{}`)", entry.user);
            let token = match (entry.token, entry.token_env) {
                (Some(token), None) => token,
                (None, Some(name)) => std::env::var(&name).map_err(|_| {
                    Error::Config(format!("{which}: environment variable `{name}` is not set"))
                })?,
                _ => {
                    return Err(Error::Config(format!(
                        "{which}: give exactly one of `token` and `token_env`"
                    )));
                }
            };
            if token.chars().count() < SHORTEST_TOKEN || token.chars().any(char::is_whitespace) {
                return Err(Error::Config(format!(
                    "{which}: a token is at least {SHORTEST_TOKEN} characters, without spaces"
                )));
            }
            if entry.user.trim().is_empty() {
                return Err(Error::Config(format!("{which}: the user is empty")));
            }
            if tokens.iter().any(|(known, _)| known.matches(&token)) {
                return Err(Error::Config(format!(
                    "{which}: the same token is given twice"
                )));
            }
            tokens.push((Secret::new(token), Identity::new(entry.user, entry.roles)));
        }
        Ok(Self { tokens })
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are none (every request is then refused).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The identity `token` stands for, if it is one of the file's. Every
    /// known token is compared, in time independent of where they differ
    /// and of their lengths.
    pub fn identity_of(&self, token: &str) -> Option<&Identity> {
        let mut found = None;
        for (known, identity) in &self.tokens {
            if known.matches(token) && found.is_none() {
                found = Some(identity);
            }
        }
        found
    }
}

impl Authenticator for TokenFile {
    async fn authenticate(&self, request: &AuthRequest) -> std::result::Result<Identity, String> {
        match request.bearer_token() {
            Some(token) => self
                .identity_of(token)
                .cloned()
                .ok_or_else(|| "unknown bearer token".to_string()),
            None => Err("a bearer token is required (Authorization: Bearer <token>)".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> AuthRequest {
        AuthRequest {
            headers: authorization
                .map(|value| vec![("authorization".to_string(), value.to_string())])
                .unwrap_or_default(),
            remote: None,
            protocol: "http",
        }
    }

    #[tokio::test]
    async fn a_known_token_stands_for_its_user_and_nothing_else_passes() {
        let tokens = TokenFile::from_yaml(
            "tokens:\n\
             - { token: alice-0123456789abcdef, user: alice, roles: [player] }\n\
             - { token: bob-0123456789abcdef00, user: bob }\n",
        )
        .expect("valid");
        let alice = tokens
            .authenticate(&request(Some("Bearer alice-0123456789abcdef")))
            .await
            .expect("alice");
        assert_eq!(alice, Identity::new("alice", ["player"]));
        for refused in [
            None,
            Some("Bearer alice-0123456789abcdeF"),
            Some("Bearer alice-0123456789abcde"),
            Some("Basic alice-0123456789abcdef"),
            Some("Bearer "),
        ] {
            assert!(
                tokens.authenticate(&request(refused)).await.is_err(),
                "{refused:?}"
            );
        }
        assert!(
            !format!("{tokens:?}").contains("0123456789"),
            "no secrets in Debug"
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for (text, reason) in [
            ("tokens: [{ token: short, user: a }]", "at least 16"),
            (
                "tokens: [{ token: 0123456789abcdef, user: ' ' }]",
                "user is empty",
            ),
            ("tokens: [{ user: a }]", "exactly one of"),
            (
                "tokens: [{ token: 0123456789abcdef, token_env: X, user: a }]",
                "exactly one of",
            ),
            (
                "tokens: [{ token_env: GOVERSE_TEST_SURELY_UNSET_TOKEN, user: a }]",
                "is not set",
            ),
            (
                "tokens: [{ token: 0123456789abcdef, user: a }, { token: 0123456789abcdef, user: b }]",
                "twice",
            ),
            (
                "tokens: [{ token: 0123456789abcdef, user: a, role: x }]",
                "unknown field",
            ),
            ("nothing: here", "unknown field `nothing`"),
            ("{}", "missing field `tokens`"),
        ] {
            let error = TokenFile::from_yaml(text).expect_err(text);
            assert_eq!(error.code(), "INVALID_CONFIG");
            assert!(error.to_string().contains(reason), "{text}: {error}");
        }
    }
}
