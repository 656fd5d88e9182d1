//! Client sessions of a gate: each registered client has an id (which
//! names this node, so pushes find their way here), a secret session token
//! (so nobody else can take the id over), and a bounded buffer of pushed
//! messages. A client that disconnects keeps its session, and what is
//! pushed meanwhile, for a grace period; reconnecting with its token it
//! gets the same id and the buffered messages. A client that falls a whole
//! buffer behind is disconnected, and the drop is counted and shown to it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::errors::GateError;
use super::security::same_secret;
use crate::Code;
use crate::error::{Error, Result};
use crate::node::{ClientSink, PushMessage};
use crate::sync::MutexExt;

/// What a gate counts about its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GateStats {
    /// Clients with a session now (connected, or within their grace).
    pub clients: u64,
    /// Messages put in a client's buffer.
    pub pushed: u64,
    /// Messages in clients' buffers now, not yet handed to their
    /// connections (a client that is away, or slow to read).
    pub buffered: u64,
    /// Messages dropped: buffered for a client that overflowed or did not
    /// come back within its grace.
    pub dropped: u64,
    /// Clients disconnected for falling a whole buffer behind.
    pub overflows: u64,
}

/// Why a session's stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The client fell a buffer behind; this many messages were dropped.
    Overflow(usize),
    /// Another connection resumed the session.
    TakenOver,
}

/// What a session's stream gets next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Messages with their sequence numbers; none means a quiet interval.
    Messages(Vec<(u64, PushMessage)>),
    Ended(Ended),
}

struct State {
    /// Not yet handed to a connection.
    queue: VecDeque<(u64, PushMessage)>,
    /// Handed to a connection lately, kept (up to a buffer's worth) so a
    /// client that reconnects saying the last one it read gets the rest
    /// again: what was in flight on a dropped connection is not lost.
    sent: VecDeque<(u64, PushMessage)>,
    /// The sequence number of the next message.
    next_sequence: u64,
    /// Bumped by every connection that takes the session: only the newest
    /// one reads it.
    generation: u64,
    attached: bool,
    ended: Option<Ended>,
}

pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) token: String,
    /// The user who opened it, when the gate authenticates.
    user: Option<String>,
    state: Mutex<State>,
    wake: Notify,
    /// How many sent messages are kept for a replay.
    window: usize,
}

impl Session {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Waits for messages (or the end) for the connection of `generation`,
    /// up to `idle`; an empty batch means nothing came (send a heartbeat).
    pub(crate) async fn next(&self, generation: u64, idle: Duration) -> Next {
        loop {
            let notified = self.wake.notified();
            {
                let mut state = self.state();
                if state.generation != generation {
                    return Next::Ended(Ended::TakenOver);
                }
                if let Some(ended) = state.ended {
                    return Next::Ended(ended);
                }
                if !state.queue.is_empty() {
                    let batch: Vec<_> = state.queue.drain(..).collect();
                    state.sent.extend(batch.iter().cloned());
                    let excess = state.sent.len().saturating_sub(self.window);
                    state.sent.drain(..excess);
                    return Next::Messages(batch);
                }
            }
            if tokio::time::timeout(idle, notified).await.is_err() {
                return Next::Messages(Vec::new());
            }
        }
    }
}

/// The sessions of one gate.
pub(crate) struct Sessions {
    /// `<node address>/`: what every client id of this gate starts with.
    prefix: String,
    live: Mutex<HashMap<String, Arc<Session>>>,
    /// Sessions this gate keeps at most, and at most per user.
    limits: SessionLimits,
    buffer: usize,
    grace: Duration,
    pushed: AtomicU64,
    dropped: AtomicU64,
    overflows: AtomicU64,
    this: Weak<Sessions>,
}

/// How many sessions a gate keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    pub(crate) max_clients: usize,
    pub(crate) max_clients_per_user: usize,
}

/// A connection's hold on a session.
pub(crate) struct Attached {
    pub(crate) session: Arc<Session>,
    pub(crate) generation: u64,
    pub(crate) resumed: bool,
}

impl Sessions {
    pub(crate) fn new(
        node_address: &str,
        buffer: usize,
        grace: Duration,
        limits: SessionLimits,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Sessions {
            prefix: format!("{node_address}/"),
            live: Mutex::new(HashMap::new()),
            limits,
            buffer: buffer.max(1),
            grace,
            pushed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            this: this.clone(),
        })
    }

    fn live(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.live.locked()
    }

    pub(crate) fn stats(&self) -> GateStats {
        let sessions: Vec<Arc<Session>> = self.live().values().cloned().collect();
        GateStats {
            clients: sessions.len() as u64,
            buffered: sessions
                .iter()
                .map(|session| session.state().queue.len() as u64)
                .sum(),
            pushed: self.pushed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            overflows: self.overflows.load(Ordering::Relaxed),
        }
    }

    /// Registers a connection: resumes the session `resume` names if its
    /// token matches, or opens a new one (also when the named session is
    /// gone: the client learns its new id from the register event).
    ///
    /// # Errors
    ///
    /// `ACCESS_DENIED` when the session exists and the token is wrong: a
    /// client id cannot be taken over without its token.
    /// With `last_read`, the sequence number of the last message the
    /// client read, the messages after it that were already sent are sent
    /// again.
    pub(crate) fn attach(
        &self,
        resume: Option<(&str, &str)>,
        last_read: Option<u64>,
        user: Option<&str>,
    ) -> std::result::Result<Attached, GateError> {
        // The live map stays locked while a session is taken back, so the
        // end of its grace period (which removes it under the same lock)
        // comes wholly before or wholly after.
        let live = self.live();
        if let Some((id, token)) = resume
            && let Some(session) = live.get(id).cloned()
        {
            if !same_secret(&session.token, token) {
                return Err(GateError::new(
                    Code::AccessDenied,
                    "the session token does not match this client id",
                ));
            }
            let generation = {
                let mut state = session.state();
                state.generation += 1;
                state.attached = true;
                if let Some(last_read) = last_read {
                    let unread: Vec<_> = state
                        .sent
                        .iter()
                        .filter(|(sequence, _)| *sequence > last_read)
                        .cloned()
                        .collect();
                    state.sent.retain(|(sequence, _)| *sequence <= last_read);
                    for entry in unread.into_iter().rev() {
                        state.queue.push_front(entry);
                    }
                }
                state.generation
            };
            drop(live);
            // The connection that had it (if any) ends.
            session.wake.notify_waiters();
            return Ok(Attached {
                session,
                generation,
                resumed: true,
            });
        }
        let full = |message: &str| GateError::new(Code::Overloaded, message);
        if live.len() >= self.limits.max_clients {
            return Err(full(
                "the gate has as many clients as it takes; try again later",
            ));
        }
        if let Some(user) = user
            && live
                .values()
                .filter(|s| s.user.as_deref() == Some(user))
                .count()
                >= self.limits.max_clients_per_user
        {
            return Err(full(
                "this user has as many push streams as a user may open",
            ));
        }
        drop(live);
        // Without the OS's randomness there are no safe tokens: refuse
        // rather than hand out guessable ones.
        let no_randomness = || {
            GateError::new(
                Code::Unavailable,
                "no randomness for a session token; try again",
            )
        };
        let session = Arc::new(Session {
            id: format!(
                "{}c-{}",
                self.prefix,
                random_hex(8).ok_or_else(no_randomness)?
            ),
            token: random_hex(16).ok_or_else(no_randomness)?,
            user: user.map(str::to_string),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                sent: VecDeque::new(),
                next_sequence: 1,
                generation: 1,
                attached: true,
                ended: None,
            }),
            wake: Notify::new(),
            window: self.buffer,
        });
        self.live().insert(session.id.clone(), session.clone());
        Ok(Attached {
            session,
            generation: 1,
            resumed: false,
        })
    }

    /// Whether `token` is the session token of client `client`.
    pub(crate) fn verify(&self, client: &str, token: &str) -> bool {
        self.live()
            .get(client)
            .is_some_and(|session| same_secret(&session.token, token))
    }

    /// The connection of `generation` went away: the session waits for
    /// its client to come back for the grace period, then goes, with
    /// whatever it still buffers counted as dropped.
    pub(crate) fn detach(&self, session: &Arc<Session>, generation: u64) {
        {
            let mut state = session.state();
            if state.generation != generation || state.ended.is_some() {
                return;
            }
            state.attached = false;
        }
        let (sessions, session, grace) = (self.this.clone(), session.clone(), self.grace);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let Some(sessions) = sessions.upgrade() else {
                return;
            };
            // Decided and done under the live map's lock, as a resume is.
            let buffered = {
                let mut live = sessions.live();
                let state = session.state();
                if state.attached || state.generation != generation {
                    return;
                }
                if live
                    .get(&session.id)
                    .is_some_and(|s| Arc::ptr_eq(s, &session))
                {
                    live.remove(&session.id);
                }
                state.queue.len()
            };
            sessions
                .dropped
                .fetch_add(buffered as u64, Ordering::Relaxed);
        });
    }

    fn remove(&self, session: &Arc<Session>) {
        let mut live = self.live();
        if live
            .get(&session.id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            live.remove(&session.id);
        }
    }

    /// Ends every session (the gate is stopping).
    pub(crate) fn close_all(&self) {
        let sessions: Vec<_> = self.live().drain().map(|(_, s)| s).collect();
        for session in sessions {
            session.state().generation += 1;
            session.wake.notify_waiters();
        }
    }
}

impl Sessions {
    /// Buffers `message` for `session`'s client.
    fn deliver_to(&self, session: &Arc<Session>, message: PushMessage) -> Result<()> {
        let client = session.id.as_str();
        let mut state = session.state();
        if state.ended.is_some() {
            return Err(Error::ClientNotFound {
                client: client.to_string(),
            });
        }
        if state.queue.len() >= self.buffer {
            // Bounded: the client is cut off rather than the node's memory.
            let buffered = state.queue.len();
            state.queue.clear();
            state.ended = Some(Ended::Overflow(buffered + 1));
            drop(state);
            self.remove(session);
            session.wake.notify_waiters();
            self.overflows.fetch_add(1, Ordering::Relaxed);
            self.dropped
                .fetch_add(buffered as u64 + 1, Ordering::Relaxed);
            tracing::warn!(
                client,
                buffered,
                "client fell a whole buffer behind; disconnected"
            );
            return Err(Error::ClientOverflow {
                client: client.to_string(),
                buffered,
            });
        }
        // Unread and kept-for-replay messages share the one buffer: the
        // oldest kept ones make room.
        let excess = (state.queue.len() + state.sent.len() + 1).saturating_sub(self.buffer);
        let excess = excess.min(state.sent.len());
        state.sent.drain(..excess);
        let sequence = state.next_sequence;
        state.next_sequence += 1;
        state.queue.push_back((sequence, message));
        drop(state);
        self.pushed.fetch_add(1, Ordering::Relaxed);
        session.wake.notify_waiters();
        Ok(())
    }
}

impl ClientSink for Sessions {
    fn deliver(&self, client: &str, message: PushMessage) -> Result<()> {
        let Some(session) = self.live().get(client).cloned() else {
            return Err(Error::ClientNotFound {
                client: client.chars().take(256).collect(),
            });
        };
        self.deliver_to(&session, message)
    }

    fn broadcast(&self, message: &PushMessage) -> usize {
        let sessions: Vec<Arc<Session>> = self.live().values().cloned().collect();
        sessions
            .iter()
            .filter(|session| self.deliver_to(session, message.clone()).is_ok())
            .count()
    }

    fn counts(&self) -> crate::node::ClientCounts {
        let GateStats {
            clients,
            pushed,
            buffered,
            dropped,
            overflows,
        } = self.stats();
        crate::node::ClientCounts {
            clients,
            pushed,
            buffered,
            dropped,
            overflows,
        }
    }
}

/// `bytes` random bytes from the operating system, as hex.
/// `bytes` random bytes from the OS, in hex; `None` if it has none to give.
fn random_hex(bytes: usize) -> Option<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).ok()?;
    Some(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SessionLimits = SessionLimits {
        max_clients: 100,
        max_clients_per_user: 3,
    };

    #[test]
    fn sessions_are_capped_per_gate_and_per_user() {
        let sessions = Sessions::new("gate", 8, Duration::from_secs(30), LIMITS);
        for _ in 0..3 {
            sessions.attach(None, None, Some("alice")).expect("alice's");
        }
        let refused = sessions
            .attach(None, None, Some("alice"))
            .err()
            .expect("a fourth for alice");
        assert_eq!(
            (refused.status.as_u16(), refused.code.as_str()),
            (503, "OVERLOADED")
        );
        for _ in 3..100 {
            sessions.attach(None, None, None).expect("room left");
        }
        let refused = sessions
            .attach(None, None, Some("bob"))
            .err()
            .expect("full");
        assert_eq!(refused.code, "OVERLOADED");
    }

    #[tokio::test]
    async fn unread_and_replayable_messages_share_one_buffer() {
        let sessions = Sessions::new("gate", 4, Duration::from_secs(30), LIMITS);
        let attached = sessions.attach(None, None, None).expect("attach");
        let id = attached.session.id.clone();
        for n in 1..=4 {
            sessions.deliver(&id, message(n)).expect("buffered");
        }
        // Read all four: they are kept for a replay.
        let _ = attached
            .session
            .next(attached.generation, Duration::from_secs(1))
            .await;
        for n in 5..=6 {
            sessions.deliver(&id, message(n)).expect("buffered");
        }
        let state = attached.session.state();
        assert_eq!(state.queue.len() + state.sent.len(), 4);
        assert_eq!(state.sent.front().map(|(sequence, _)| *sequence), Some(3));
    }

    fn message(n: u8) -> PushMessage {
        PushMessage {
            type_url: "type.googleapis.com/t".into(),
            body: vec![n].into(),
            json: n.to_string().into(),
        }
    }

    #[tokio::test]
    async fn a_full_buffer_disconnects_the_client_and_counts_the_drop() {
        let sessions = Sessions::new("gate", 2, Duration::from_secs(30), LIMITS);
        let attached = sessions.attach(None, None, None).expect("attach");
        let id = attached.session.id.clone();
        assert!(id.starts_with("gate/c-"), "{id}");
        sessions.deliver(&id, message(1)).expect("buffered");
        sessions.deliver(&id, message(2)).expect("buffered");
        assert_eq!(sessions.stats().buffered, 2, "two wait for the client");
        let error = sessions.deliver(&id, message(3)).unwrap_err();
        assert_eq!(error.code(), "CLIENT_OVERFLOW");
        assert!(matches!(
            attached
                .session
                .next(attached.generation, Duration::from_secs(1))
                .await,
            Next::Ended(Ended::Overflow(3))
        ));
        let stats = sessions.stats();
        assert_eq!(
            (stats.clients, stats.pushed, stats.dropped, stats.overflows),
            (0, 2, 3, 1)
        );
        assert_eq!(
            sessions.deliver(&id, message(4)).unwrap_err().code(),
            "CLIENT_NOT_FOUND"
        );
    }

    /// A resume that races the end of the grace period either resumes a
    /// session that stays, or opens a new one: never `resumed` for a
    /// session that is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resume_racing_the_grace_expiry_never_gets_a_dead_session() {
        let sessions = Sessions::new("gate", 8, Duration::from_millis(1), LIMITS);
        for _ in 0..1000 {
            let first = sessions.attach(None, None, None).expect("attach");
            let (id, token) = (first.session.id.clone(), first.session.token.clone());
            sessions.detach(&first.session, first.generation);
            tokio::time::sleep(Duration::from_micros(900)).await;
            let again = sessions
                .attach(Some((&id, &token)), None, None)
                .expect("resumed or new");
            if again.resumed {
                // The expiry, if it was under way, must have seen the resume.
                tokio::time::sleep(Duration::from_millis(3)).await;
                assert!(
                    sessions.verify(&id, &token),
                    "resumed a session that then expired"
                );
            }
            sessions.detach(&again.session, again.generation);
        }
    }

    #[tokio::test]
    async fn a_session_is_resumed_only_with_its_token() {
        let sessions = Sessions::new("gate", 8, Duration::from_secs(30), LIMITS);
        let first = sessions.attach(None, None, None).expect("attach");
        let id = first.session.id.clone();
        let token = first.session.token.clone();
        assert_eq!(token.len(), 32);
        assert!(
            sessions
                .attach(Some((&id, "0".repeat(32).as_str())), None, None)
                .is_err()
        );
        sessions.deliver(&id, message(1)).expect("buffered");
        sessions.deliver(&id, message(2)).expect("buffered");
        // The first connection got both, but the client read only the first.
        match first
            .session
            .next(first.generation, Duration::from_secs(1))
            .await
        {
            Next::Messages(messages) => assert_eq!(messages.len(), 2),
            other => panic!("{other:?}"),
        }
        sessions.deliver(&id, message(3)).expect("buffered");
        let second = sessions
            .attach(Some((&id, &token)), Some(1), None)
            .expect("resumed");
        assert!(second.resumed);
        assert!(matches!(
            first
                .session
                .next(first.generation, Duration::from_secs(1))
                .await,
            Next::Ended(Ended::TakenOver)
        ));
        match second
            .session
            .next(second.generation, Duration::from_secs(1))
            .await
        {
            Next::Messages(messages) => {
                assert_eq!(messages, vec![(2, message(2)), (3, message(3))]);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// What a client's stream carries, whatever the protocol.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Registered {
        client_id: String,
        session: String,
        resumed: bool,
    },
    Message(u64, PushMessage),
    Heartbeat,
    Ended(Ended),
}

/// A connection's stream, read straight from its session: the
/// registration, then messages as they are pushed, heartbeats when idle,
/// and why it ended. Dropped before its end (the connection went away),
/// it puts back what it had taken but not handed on, and detaches the
/// session (its grace begins).
pub(crate) struct SessionStream {
    sessions: Arc<Sessions>,
    session: Arc<Session>,
    generation: u64,
    heartbeat: Duration,
    ready: VecDeque<Outgoing>,
    waiting: Option<crate::future::BoxFuture<'static, Next>>,
    ended: bool,
}

/// The stream of a connection that took `attached`.
pub(crate) fn pump(
    sessions: Arc<Sessions>,
    attached: Attached,
    heartbeat: Duration,
) -> SessionStream {
    let registered = Outgoing::Registered {
        client_id: attached.session.id.clone(),
        session: attached.session.token.clone(),
        resumed: attached.resumed,
    };
    SessionStream {
        sessions,
        session: attached.session,
        generation: attached.generation,
        heartbeat,
        ready: VecDeque::from([registered]),
        waiting: None,
        ended: false,
    }
}

impl tokio_stream::Stream for SessionStream {
    type Item = Outgoing;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Outgoing>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if let Some(item) = this.ready.pop_front() {
                if matches!(item, Outgoing::Ended(_)) {
                    this.ended = true;
                }
                return Poll::Ready(Some(item));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let waiting = this.waiting.get_or_insert_with(|| {
                let (session, generation, heartbeat) =
                    (this.session.clone(), this.generation, this.heartbeat);
                Box::pin(async move { session.next(generation, heartbeat).await })
            });
            let next = std::task::ready!(waiting.as_mut().poll(cx));
            this.waiting = None;
            match next {
                Next::Messages(messages) if messages.is_empty() => {
                    this.ready.push_back(Outgoing::Heartbeat);
                }
                Next::Messages(messages) => this.ready.extend(
                    messages
                        .into_iter()
                        .map(|(sequence, message)| Outgoing::Message(sequence, message)),
                ),
                Next::Ended(ended) => this.ready.push_back(Outgoing::Ended(ended)),
            }
        }
    }
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let untaken = self.ready.drain(..).filter_map(|item| match item {
            Outgoing::Message(sequence, message) => Some((sequence, message)),
            _ => None,
        });
        self.session
            .put_back(untaken.collect::<Vec<_>>().into_iter());
        self.sessions.detach(&self.session, self.generation);
    }
}

impl Session {
    /// Returns messages a connection did not take to the front of the queue.
    fn put_back(&self, messages: impl DoubleEndedIterator<Item = (u64, PushMessage)>) {
        let mut state = self.state();
        let messages: Vec<_> = messages.collect();
        state
            .sent
            .retain(|(sequence, _)| !messages.iter().any(|(s, _)| s == sequence));
        for entry in messages.into_iter().rev() {
            state.queue.push_front(entry);
        }
    }
}
