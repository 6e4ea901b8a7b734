//! Shared state of one test point: configuration, key, payload and sessions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ispeed_proto::receipt::{decode_public_key, encode_public_key};
use ispeed_proto::registry::{AccessClaims, AccessMode, RegistrationStatus};
use ispeed_proto::wire::Finished;
use ispeed_proto::{ErrorCode, SigningKey, VerifyingKey};
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::error::ApiFailure;
use crate::metrics::Metrics;
use crate::payload::PayloadPool;
use crate::session::{unix_ms, Session};

/// How long a finished or expired session is remembered, so that late
/// requests get `session_finished`/`session_expired` rather than `unknown_session`.
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);
/// Most tombstones kept; beyond this the oldest are forgotten.
const MAX_TOMBSTONES: usize = 100_000;

enum Entry {
    Live(Arc<Session>),
    Finished(Arc<Finished>, Instant),
    Expired(Instant),
}

/// Cheaply clonable handle on the test point's state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: ServerConfig,
    pub key: SigningKey,
    pub public_key: String,
    pub payload: PayloadPool,
    pub metrics: Metrics,
    /// Parent of every session's token; cancelled at shutdown.
    pub shutdown: CancellationToken,
    /// Addresses actually bound (ports resolved), for advertising URLs.
    pub bound: Vec<SocketAddr>,
    sessions: Mutex<HashMap<String, Entry>>,
    /// The key whose access tokens this test point accepts: pinned in the
    /// config, or learnt from the collector's heartbeat answer.
    collector_key: Mutex<Option<VerifyingKey>>,
    /// Nonces of accepted tokens, with their expiry: each is accepted once.
    used_nonces: Mutex<HashMap<String, u64>>,
    /// What the collector last said of this test point.
    registration: Mutex<Option<RegistrationStatus>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: ServerConfig,
        key: SigningKey,
        payload: PayloadPool,
        bound: Vec<SocketAddr>,
        shutdown: CancellationToken,
    ) -> AppState {
        let collector_key = config
            .collector_key
            .as_deref()
            .and_then(|k| decode_public_key(k).ok());
        AppState(Arc::new(Inner {
            public_key: encode_public_key(&key.verifying_key()),
            collector_key: Mutex::new(collector_key),
            used_nonces: Mutex::new(HashMap::new()),
            registration: Mutex::new(None),
            config,
            key,
            payload,
            metrics: Metrics::default(),
            shutdown,
            bound,
            sessions: Mutex::new(HashMap::new()),
        }))
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a client: checks its access token when this test point
    /// requires one (consuming the token only if a session is created), then
    /// creates the session unless the test point is full.
    pub fn admit(
        &self,
        token: Option<&str>,
        client_addr: SocketAddr,
        now_ms: u64,
    ) -> Result<Arc<Session>, ApiFailure> {
        if self.config.access == AccessMode::Open {
            return self.create_session(client_addr);
        }
        let token = token.ok_or_else(|| {
            ApiFailure::new(
                ErrorCode::TokenMissing,
                "this test point admits only clients sent by its collector: \
                 get an access token from the collector's /api/v1/locate",
            )
        })?;
        let key = lock(&self.collector_key).ok_or_else(|| {
            ApiFailure::new(
                ErrorCode::TokenInvalid,
                "this test point does not know its collector's key yet",
            )
        })?;
        let claims = AccessClaims::verify(token, &key, &self.config.test_point_id, now_ms)
            .map_err(|r| ApiFailure::new(r.code, r.message))?;
        {
            let mut used = lock(&self.used_nonces);
            if used.contains_key(&claims.nonce) {
                return Err(ApiFailure::new(
                    ErrorCode::TokenReused,
                    "this access token was used before; ask the collector for a new one",
                ));
            }
            used.insert(claims.nonce.clone(), claims.exp_ms);
        }
        self.create_session(client_addr).inspect_err(|_| {
            // Not admitted: the client may retry with the same token.
            lock(&self.used_nonces).remove(&claims.nonce);
        })
    }

    /// The collector key tokens are checked with.
    pub fn collector_key(&self) -> Option<VerifyingKey> {
        *lock(&self.collector_key)
    }

    /// Learns the collector's key from its heartbeat answer, unless one is
    /// pinned in the config (a pinned key is never replaced).
    pub fn learn_collector_key(&self, key: VerifyingKey) {
        if self.config.collector_key.is_none() {
            *lock(&self.collector_key) = Some(key);
        }
    }

    pub fn set_registration(&self, status: RegistrationStatus) {
        *lock(&self.registration) = Some(status);
    }

    pub fn registration(&self) -> Option<RegistrationStatus> {
        *lock(&self.registration)
    }

    /// Creates a session unless the test point is full.
    pub fn create_session(&self, client_addr: SocketAddr) -> Result<Arc<Session>, ApiFailure> {
        if self.shutdown.is_cancelled() {
            return Err(ApiFailure::shutting_down());
        }
        let mut sessions = self.sessions();
        let live = sessions
            .values()
            .filter(|e| matches!(e, Entry::Live(_)))
            .count();
        if live >= self.config.max_sessions as usize {
            drop(sessions);
            self.metrics
                .sessions_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut failure = ApiFailure::new(
                ErrorCode::OverCapacity,
                format!(
                    "test point is at its capacity of {} sessions",
                    self.config.max_sessions
                ),
            );
            // A test takes about 20 s; retrying sooner than a few seconds only adds load.
            failure.retry_after_s = Some(5);
            return Err(failure);
        }
        let session = Arc::new(Session::new(
            new_session_id(),
            client_addr,
            self.config.session_ttl,
            self.config.byte_budget,
            self.shutdown.child_token(),
        ));
        sessions.insert(session.id.clone(), Entry::Live(session.clone()));
        self.metrics
            .sessions_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(session)
    }

    /// Looks up a live session, turning an overdue one into an expired one.
    pub fn session(&self, id: &str) -> Result<Arc<Session>, ApiFailure> {
        let mut sessions = self.sessions();
        match sessions.get(id) {
            Some(Entry::Live(session)) if Instant::now() < session.expires => Ok(session.clone()),
            Some(Entry::Live(session)) => {
                session.cancel.cancel();
                sessions.insert(id.to_owned(), Entry::Expired(Instant::now()));
                self.metrics
                    .sessions_expired
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(expired(id))
            }
            Some(Entry::Finished(..)) => Err(ApiFailure::new(
                ErrorCode::SessionFinished,
                format!("session {id} is finished; its receipt was issued"),
            )),
            Some(Entry::Expired(_)) => Err(expired(id)),
            None => Err(ApiFailure::new(
                ErrorCode::UnknownSession,
                format!("no session {id}"),
            )),
        }
    }

    /// The receipt of a finished session, so `finish` is idempotent.
    pub fn finished(&self, id: &str) -> Option<Arc<Finished>> {
        match self.sessions().get(id) {
            Some(Entry::Finished(finished, _)) => Some(finished.clone()),
            _ => None,
        }
    }

    /// Marks a session finished with its receipt and ends its streams.
    pub fn mark_finished(&self, session: &Session, finished: Arc<Finished>) -> Arc<Finished> {
        let mut sessions = self.sessions();
        if let Some(Entry::Finished(existing, _)) = sessions.get(&session.id) {
            return existing.clone();
        }
        session.cancel.cancel();
        sessions.insert(
            session.id.clone(),
            Entry::Finished(finished.clone(), Instant::now()),
        );
        self.metrics
            .sessions_finished
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        finished
    }

    /// Expires overdue sessions and forgets old tombstones.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut sessions = self.sessions();
        let mut expired_now = 0;
        for entry in sessions.values_mut() {
            if let Entry::Live(session) = entry {
                if now >= session.expires {
                    session.cancel.cancel();
                    *entry = Entry::Expired(now);
                    expired_now += 1;
                }
            }
        }
        sessions.retain(|_, entry| match entry {
            Entry::Live(_) => true,
            Entry::Finished(_, at) | Entry::Expired(at) => now.duration_since(*at) < TOMBSTONE_TTL,
        });
        if sessions.len() > MAX_TOMBSTONES {
            let mut old: Vec<(String, Instant)> = sessions
                .iter()
                .filter_map(|(id, e)| match e {
                    Entry::Finished(_, at) | Entry::Expired(at) => Some((id.clone(), *at)),
                    Entry::Live(_) => None,
                })
                .collect();
            old.sort_by_key(|(_, at)| *at);
            let excess = sessions.len() - MAX_TOMBSTONES;
            for (id, _) in old.into_iter().take(excess) {
                sessions.remove(&id);
            }
        }
        drop(sessions);
        self.metrics
            .sessions_expired
            .fetch_add(expired_now, std::sync::atomic::Ordering::Relaxed);
        // An expired token is refused as expired; its nonce need not be kept.
        let now_ms = unix_ms();
        lock(&self.used_nonces).retain(|_, exp_ms| *exp_ms > now_ms);
    }

    /// Live sessions and their active streams.
    pub fn activity(&self) -> (usize, u64) {
        let sessions = self.sessions();
        let live: Vec<&Arc<Session>> = sessions
            .values()
            .filter_map(|e| match e {
                Entry::Live(s) => Some(s),
                _ => None,
            })
            .collect();
        let streams = live.iter().map(|s| u64::from(s.active_streams())).sum();
        (live.len(), streams)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn expired(id: &str) -> ApiFailure {
    ApiFailure::new(
        ErrorCode::SessionExpired,
        format!("session {id} ran out of time; start a new one"),
    )
}

/// A random 128-bit id in the UUID v4 text form.
fn new_session_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
