//! Who may use a gate, and how much: the authentication hook, the binding
//! of client ids to their sessions, and rate limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::errors::GateError;
use super::sessions::Sessions;
use crate::Code;
use crate::access::{Identity, Origin};
use crate::future::BoxFuture;
use crate::sync::MutexExt;

/// What an [`Authenticator`] sees of a request: its headers (HTTP) or
/// metadata (gRPC), with lower-case names, and where it came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthRequest {
    /// Header or metadata names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The peer's address, when known.
    pub remote: Option<SocketAddr>,
    /// `"http"` or `"grpc"`.
    pub protocol: &'static str,
}

impl AuthRequest {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub fn bearer_token(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

/// Decides who a request is for. Objects see the identity as
/// [`Context::identity`](crate::Context::identity), and it travels with
/// the calls they make.
///
/// ```
/// use goverse::access::Identity;
/// use goverse::gate::{AuthRequest, Authenticator};
///
/// struct Tokens;
///
/// impl Authenticator for Tokens {
///     async fn authenticate(&self, request: &AuthRequest) -> Result<Identity, String> {
///         match request.bearer_token() {
///             Some("alice-secret") => Ok(Identity::new("alice", ["player"])),
///             Some(_) => Err("unknown token".to_string()),
///             None => Err("a bearer token is required".to_string()),
///         }
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// The identity of the request, or why it is refused (`401
    /// UNAUTHENTICATED`). Implement it as an `async fn`; the future must
    /// be `Send`.
    fn authenticate(
        &self,
        request: &AuthRequest,
    ) -> impl Future<Output = Result<Identity, String>> + Send;
}

/// [`Authenticator`] behind a pointer: the gate keeps any one as
/// `Arc<dyn ErasedAuthenticator>`, boxing the future of each call.
pub(crate) trait ErasedAuthenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        request: &'a AuthRequest,
    ) -> BoxFuture<'a, Result<Identity, String>>;
}

impl<T: Authenticator> ErasedAuthenticator for T {
    fn authenticate<'a>(
        &'a self,
        request: &'a AuthRequest,
    ) -> BoxFuture<'a, Result<Identity, String>> {
        Box::pin(Authenticator::authenticate(self, request))
    }
}

/// A secret kept with a keyed digest of itself, so that checking a
/// candidate takes time that depends on the candidate alone: neither where
/// it differs from the secret nor the secret's length shows.
#[derive(Clone)]
pub(crate) struct Secret {
    text: String,
    digest: u64,
}

impl Secret {
    pub(crate) fn new(text: String) -> Self {
        let digest = keyed_digest(&text);
        Self { text, digest }
    }

    /// Whether `candidate` is the secret.
    pub(crate) fn matches(&self, candidate: &str) -> bool {
        // The digest is keyed with this process's random key, so a guess
        // cannot aim at it; equal digests all but prove equality, and the
        // full comparison, reached only then, settles it.
        keyed_digest(candidate) == self.digest && same_secret(&self.text, candidate)
    }
}

/// SipHash under a key drawn once per process.
fn keyed_digest(text: &str) -> u64 {
    use std::hash::BuildHasher as _;
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    KEY.get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one(text)
}

/// Compares secrets of one length in time independent of where they
/// differ (secrets of varying lengths go through [`Secret`]), with
/// `subtle`, whose comparison the optimizer cannot turn into an early exit.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A token bucket's settings: `per_second` requests on average, bursts of
/// up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, on average.
    pub per_second: f64,
    /// Requests at once after a quiet while.
    pub burst: u32,
}

impl RateLimit {
    /// A limit of `per_second` with bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second: per_second.max(0.0),
            burst: burst.max(1),
        }
    }
}

/// Token buckets by key, in shards with a bounded number of buckets each:
/// a flood of new keys costs each request O(1), and never grows memory
/// past the bound.
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: RateLimit,
    shards: Box<[Mutex<Buckets>]>,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug, Default)]
struct Buckets {
    by_key: HashMap<String, (f64, Instant)>,
    /// When the full buckets (those a newcomer would start as) were last
    /// forgotten; at most one such sweep a second.
    swept: Option<Instant>,
}

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 100_000;
const BUCKET_SHARDS: usize = 16;

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            shards: (0..BUCKET_SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// How many buckets are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.locked().by_key.len()).sum()
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub(crate) fn take(&self, key: &str) -> Result<(), Duration> {
        use std::hash::BuildHasher as _;
        let now = Instant::now();
        let (rate, burst) = (self.limit.per_second, f64::from(self.limit.burst));
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % BUCKET_SHARDS];
        let mut shard = shard.locked();
        let Buckets { by_key, swept } = &mut *shard;
        if !by_key.contains_key(key) && by_key.len() >= MAX_BUCKETS / BUCKET_SHARDS {
            if swept.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
                by_key.retain(|_, (tokens, at)| {
                    *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
                });
                *swept = Some(now);
            }
            if by_key.len() >= MAX_BUCKETS / BUCKET_SHARDS {
                // Still full: the least recently used of a few goes.
                let oldest = by_key
                    .iter()
                    .take(8)
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    by_key.remove(&oldest);
                }
            }
        }
        let (tokens, at) = by_key.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = if rate > 0.0 {
            (1.0 - *tokens) / rate
        } else {
            f64::MAX
        };
        Err(Duration::from_secs_f64(wait.min(86_400.0)))
    }
}

/// A refusal by a rate limit.
fn too_many(who: &str, wait: Duration) -> GateError {
    GateError::new(
        Code::RateLimited,
        format!("{who} is over its rate limit; try again in {wait:?}"),
    )
}

/// What a gate checks before it forwards a request.
pub(crate) struct Guard {
    pub(crate) authenticator: Option<Arc<dyn ErasedAuthenticator>>,
    pub(crate) per_client: Option<Limiter>,
    pub(crate) per_object: Option<Limiter>,
    pub(crate) sessions: Arc<Sessions>,
    /// Where refusals by a rate limit are counted.
    pub(crate) meters: Arc<crate::meters::Meters>,
}

impl Guard {
    /// Authenticates a request and binds its claimed client id (which
    /// needs the client's session token): the origin its calls carry.
    pub(crate) async fn admit(
        &self,
        request: &AuthRequest,
        claimed_client: Option<&str>,
        session_token: Option<&str>,
    ) -> Result<Origin, GateError> {
        let identity = match &self.authenticator {
            Some(hook) => Some(
                hook.authenticate(request)
                    .await
                    .map_err(|reason| GateError::new(Code::Unauthenticated, reason))?,
            ),
            None => None,
        };
        let client_id = match claimed_client.filter(|c| !c.is_empty()) {
            Some(client) => {
                if !self
                    .sessions
                    .verify(client, session_token.unwrap_or_default())
                {
                    return Err(GateError::new(
                        Code::AccessDenied,
                        "a client id is used with its session token (X-Session-Token) only",
                    ));
                }
                Some(client.to_string())
            }
            None => None,
        };
        Ok(Origin {
            external: true,
            identity,
            client_id,
        })
    }

    /// Applies the per-client rate limit to a request by the client `origin`
    /// and `remote` stand for (a call, or the opening of a push stream).
    pub(crate) fn limit_client(
        &self,
        origin: &Origin,
        remote: Option<SocketAddr>,
    ) -> Result<(), GateError> {
        let Some(limiter) = &self.per_client else {
            return Ok(());
        };
        let key = match (&origin.client_id, &origin.identity, remote) {
            (Some(client), _, _) => format!("client:{client}"),
            (None, Some(identity), _) => format!("user:{}", identity.user_id),
            (None, None, Some(remote)) => format!("ip:{}", remote.ip()),
            (None, None, None) => "anonymous".to_string(),
        };
        limiter
            .take(&key)
            .map_err(|wait| self.too_many("this client", wait))
    }

    /// A refusal by a rate limit, counted.
    fn too_many(&self, who: &str, wait: Duration) -> GateError {
        crate::meters::bump(&self.meters.rate_limited);
        too_many(who, wait)
    }

    /// Applies the rate limits to a call of `target` (`Type/id`) by the
    /// client `origin` and `remote` stand for.
    pub(crate) fn limit(
        &self,
        origin: &Origin,
        remote: Option<SocketAddr>,
        target: &str,
    ) -> Result<(), GateError> {
        self.limit_client(origin, remote)?;
        if let Some(limiter) = &self.per_object {
            // A key is a valid object's: ids nobody could call do not take
            // buckets from real ones.
            let id = target.split_once('/').map_or("", |(_, id)| id);
            crate::placement::validate_id(id, u32::MAX).map_err(GateError::from)?;
            limiter
                .take(target)
                .map_err(|wait| self.too_many(&format!("object {target}"), wait))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_new_keys_stays_bounded_and_cheap() {
        let limiter = Limiter::new(RateLimit::new(0.001, 2));
        let started = std::time::Instant::now();
        for n in 0..(MAX_BUCKETS * 3 / 2) {
            let _ = limiter.take(&format!("Room/flood-{n}"));
        }
        assert!(limiter.len() <= MAX_BUCKETS, "{}", limiter.len());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        // A key in use keeps its bucket's state.
        assert!(limiter.take("Room/busy").is_ok());
        assert!(limiter.take("Room/busy").is_ok());
        assert!(limiter.take("Room/busy").is_err());
    }

    #[test]
    fn a_secret_matches_itself_only_whatever_the_lengths() {
        let secret = Secret::new("alice-0123456789abcdef".into());
        assert!(secret.matches("alice-0123456789abcdef"));
        for other in [
            "",
            "a",
            "alice-0123456789abcde",
            "alice-0123456789abcdeF",
            "alice-0123456789abcdef0",
            "bob-0123456789abcdef",
        ] {
            assert!(!secret.matches(other), "{other}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_refills_at_its_rate() {
        let limiter = Limiter::new(RateLimit::new(10.0, 3));
        for _ in 0..3 {
            limiter.take("a").expect("burst");
        }
        let wait = limiter.take("a").unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        limiter.take("b").expect("another key has its own bucket");
        tokio::time::advance(Duration::from_millis(100)).await;
        limiter.take("a").expect("refilled one");
        assert!(limiter.take("a").is_err());
    }
}
