//! Basic auth for the endpoint: each request's `Authorization` header against the bcrypt
//! hashes of the web config's `basic_auth_users`, at a cost that neither reveals which user
//! names exist nor lets a flood of wrong passwords starve a valid login.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::HeaderValue;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretSlice};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Credentials that verified, remembered so a scraper pays bcrypt once, not every scrape.
const ACCEPTED_REMEMBERED: usize = 64;
/// Credentials that failed, remembered so a client repeating them costs no bcrypt at all.
const REJECTED_REMEMBERED: usize = 1024;
/// Addresses whose credentials failed lately; their next checks wait behind everyone else's.
const SUSPECTS_REMEMBERED: usize = 4096;
/// Checks from suspect addresses that may wait for bcrypt; more are refused at once.
const SUSPECT_QUEUE: usize = 8;
/// Checks from other addresses that may wait; more are refused at once.
const CLEAN_QUEUE: usize = 64;

/// One `basic_auth_users` entry, its hash checked at load.
pub(super) struct User {
    pub(super) name: String,
    pub(super) hash: String,
    pub(super) cost: u32,
}

/// Checks `Authorization: Basic` credentials against the bcrypt hashes of the file.
///
/// exporter-toolkit's rules, and more: a name that is not listed is checked against the
/// costliest hash, and every check that runs bcrypt lasts at least as long as one at the
/// highest cost, so the time taken tells nothing of which names exist, whatever the costs.
/// Verified credentials are remembered by a hash of the header (bounded), failed ones too.
/// bcrypt runs one check at a time (one core at most); checks from addresses that failed
/// lately queue behind the others in a short queue of their own, so a flood of wrong
/// passwords from elsewhere delays a first valid login by a bcrypt or two.
pub struct BasicAuth {
    users: Vec<User>,
    /// The entry an unlisted name is checked against: the costliest.
    decoy: usize,
    max_cost: u32,
    accepted: Mutex<Recent<[u8; 32]>>,
    rejected: Mutex<Recent<[u8; 32]>>,
    suspects: Mutex<Recent<IpAddr>>,
    queue: Arc<Queue>,
    /// How long a bcrypt at the highest cost takes here, lately; every check is padded to it.
    reference: Arc<Mutex<Duration>>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field(
                "users",
                &self.users.iter().map(|u| &u.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data are caches and queues, consistent after any panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BasicAuth {
    /// Checks the hashes at load and measures one bcrypt at the highest cost, the time every
    /// later check is padded to.
    pub(super) fn new(users: Vec<User>) -> Self {
        let decoy = users
            .iter()
            .enumerate()
            .max_by_key(|(_, u)| u.cost)
            .map_or(0, |(i, _)| i);
        let max_cost = users.get(decoy).map_or(0, |u| u.cost);
        let started = std::time::Instant::now();
        if let Some(user) = users.get(decoy) {
            let _ = bcrypt::verify("", &user.hash);
        }
        BasicAuth {
            decoy,
            max_cost,
            users,
            accepted: Mutex::new(Recent::new(ACCEPTED_REMEMBERED)),
            rejected: Mutex::new(Recent::new(REJECTED_REMEMBERED)),
            suspects: Mutex::new(Recent::new(SUSPECTS_REMEMBERED)),
            queue: Arc::new(Queue::default()),
            reference: Arc::new(Mutex::new(started.elapsed())),
        }
    }

    /// How many users the file lists.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether the `Authorization` header carries a listed user and that user's password.
    /// `peer` is the client's address, which decides its place in the queue.
    pub async fn check(&self, authorization: Option<&HeaderValue>, peer: Option<IpAddr>) -> bool {
        let Some(header) = authorization else {
            return false;
        };
        let digest = fingerprint(header);
        if lock(&self.accepted).contains(&digest) {
            return true;
        }
        if lock(&self.rejected).contains(&digest) {
            return false;
        }
        let Some((name, password)) = parse_basic(header) else {
            return false;
        };
        let suspect = peer.is_some_and(|ip| lock(&self.suspects).contains(&ip));
        let Some(slot) = self.queue.enter(suspect).await else {
            // The queue is full: refused without bcrypt, and not remembered as wrong.
            return false;
        };
        let started = Instant::now();
        let found = self.find(&name);
        let hash = self.users[found.unwrap_or(self.decoy)].hash.clone();
        let at_max_cost = self.users[found.unwrap_or(self.decoy)].cost == self.max_cost;
        let reference = self.reference.clone();
        // The slot moves into the blocking task, so one bcrypt at a time holds even when the
        // request is cancelled (timeout, client gone) while bcrypt runs.
        let verified = tokio::task::spawn_blocking(move || {
            let began = std::time::Instant::now();
            let ok = bcrypt::verify(password.expose_secret(), &hash).unwrap_or(false);
            if at_max_cost {
                // A moving average, so one slow moment does not slow every later login.
                let mut reference = lock(&reference);
                *reference = (*reference * 4 + began.elapsed()) / 5;
            }
            drop(slot);
            ok
        })
        .await
        .unwrap_or(false);
        let ok = verified && found.is_some();
        let padded = *lock(&self.reference);
        if let Some(rest) = padded.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        if ok {
            lock(&self.accepted).insert(digest);
        } else {
            lock(&self.rejected).insert(digest);
            if let Some(ip) = peer {
                lock(&self.suspects).insert(ip);
            }
        }
        ok
    }

    /// The entry named `name`. Every name is compared, each in constant time, so the time
    /// taken tells neither how much of a name matched nor where it is in the list.
    fn find(&self, name: &[u8]) -> Option<usize> {
        let mut found = None;
        for (index, user) in self.users.iter().enumerate() {
            if bool::from(user.name.as_bytes().ct_eq(name)) {
                found = Some(index);
            }
        }
        found
    }
}

/// SHA-256 of the whole header, the key under which a check's result is remembered; the
/// password itself is kept nowhere.
fn fingerprint(header: &HeaderValue) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, header.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// A set of the most recent `capacity` keys.
struct Recent<K> {
    capacity: usize,
    order: VecDeque<K>,
    keys: HashSet<K>,
}

impl<K: Hash + Eq + Clone> Recent<K> {
    fn new(capacity: usize) -> Self {
        Recent {
            capacity,
            order: VecDeque::new(),
            keys: HashSet::new(),
        }
    }

    fn contains(&self, key: &K) -> bool {
        self.keys.contains(key)
    }

    fn insert(&mut self, key: K) {
        if !self.keys.insert(key.clone()) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.keys.remove(&oldest);
            }
        }
    }
}

/// The turn to run bcrypt: one check at a time, those from clean addresses first.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    busy: bool,
    clean: VecDeque<oneshot::Sender<()>>,
    suspect: VecDeque<oneshot::Sender<()>>,
}

/// The turn to run bcrypt; the next waiter gets it when this is dropped.
struct Slot {
    queue: Arc<Queue>,
}

impl Queue {
    /// Waits for the turn, or `None` at once when the lane's queue is full.
    async fn enter(self: &Arc<Self>, suspect: bool) -> Option<Slot> {
        let waiting = {
            let mut state = lock(&self.state);
            if !state.busy {
                state.busy = true;
                None
            } else {
                let (lane, limit) = if suspect {
                    (&mut state.suspect, SUSPECT_QUEUE)
                } else {
                    (&mut state.clean, CLEAN_QUEUE)
                };
                // Waiters that gave up leave closed senders behind; they hold no place.
                lane.retain(|w| !w.is_closed());
                if lane.len() >= limit {
                    return None;
                }
                let (tx, rx) = oneshot::channel();
                lane.push_back(tx);
                Some(rx)
            }
        };
        if let Some(turn) = waiting {
            turn.await.ok()?;
        }
        Some(Slot {
            queue: self.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = lock(&self.queue.state);
        loop {
            let next = state
                .clean
                .pop_front()
                .or_else(|| state.suspect.pop_front());
            let Some(waiter) = next else {
                state.busy = false;
                return;
            };
            // A waiter that is still there takes the turn over; busy stays set.
            if waiter.send(()).is_ok() {
                return;
            }
        }
    }
}

/// The user name and password of an `Authorization: Basic` header (scheme case-insensitive,
/// split at the first colon as RFC 7617 says).
fn parse_basic(header: &HeaderValue) -> Option<(Vec<u8>, SecretSlice<u8>)> {
    let value = header.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, encoded) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"Basic") {
        return None;
    }
    let decoded: SecretSlice<u8> = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?
        .into();
    let decoded = decoded.expose_secret();
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((
        decoded[..colon].to_vec(),
        decoded[colon + 1..].to_vec().into(),
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::WebConfig;
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn basic_headers_parse_like_rfc_7617() {
        let (user, password) = parse_basic(&basic("alice", "pa:ss word")).unwrap();
        assert_eq!(user, b"alice");
        assert_eq!(password.expose_secret(), b"pa:ss word");
        let lower = HeaderValue::from_str("basic YWxpY2U6cHc=").unwrap();
        assert_eq!(parse_basic(&lower).unwrap().0, b"alice");
        for bad in [
            "Bearer YWxpY2U6cHc=",
            "Basic",
            "Basic !!!",
            "Basic YWxpY2U=",
            "",
        ] {
            assert!(
                parse_basic(&HeaderValue::from_str(bad).unwrap()).is_none(),
                "{bad:?}"
            );
        }
    }

    fn auth(users: &[(&str, &str, u32)]) -> BasicAuth {
        let text: String = users
            .iter()
            .map(|(name, password, cost)| {
                format!("  {name}: {}\n", bcrypt::hash(password, *cost).unwrap())
            })
            .collect();
        let web =
            WebConfig::parse(&format!("basic_auth_users:\n{text}"), Path::new("w.yml")).unwrap();
        Arc::try_unwrap(web.basic_auth.unwrap()).unwrap()
    }

    const HERE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[tokio::test]
    async fn only_a_listed_user_with_its_password_passes() {
        let auth = auth(&[("alice", "alice-pw", 4), ("bob", "bob-pw", 4)]);
        assert!(auth.check(Some(&basic("alice", "alice-pw")), HERE).await);
        assert!(auth.check(Some(&basic("bob", "bob-pw")), None).await);
        // Remembered after the first success, and still exact.
        assert!(auth.check(Some(&basic("alice", "alice-pw")), HERE).await);
        for (user, password) in [
            ("alice", "bob-pw"),
            ("alice", "alice-pw "),
            ("carol", "alice-pw"),
            ("Alice", "alice-pw"),
            ("", ""),
        ] {
            assert!(
                !auth.check(Some(&basic(user, password)), HERE).await,
                "{user}:{password}"
            );
            // A failure is remembered too, and stays a failure.
            assert!(
                !auth.check(Some(&basic(user, password)), HERE).await,
                "{user}:{password}"
            );
        }
        assert!(!auth.check(None, HERE).await);
        // The right password still passes after failures from the same address.
        assert!(auth.check(Some(&basic("bob", "bob-pw")), HERE).await);
    }

    #[test]
    fn unknown_users_are_checked_against_the_costliest_hash() {
        let auth = auth(&[("a", "x", 4), ("b", "x", 6), ("c", "x", 5)]);
        assert_eq!(auth.users[auth.decoy].name, "b");
        assert_eq!(auth.max_cost, 6);
    }

    #[test]
    fn recent_sets_keep_the_newest_keys_only() {
        let mut recent = Recent::new(3);
        for key in [1, 2, 3, 2, 4] {
            recent.insert(key);
        }
        assert!(!recent.contains(&1));
        assert!([2, 3, 4].iter().all(|k| recent.contains(k)));
        assert_eq!(recent.order.len(), 3);
    }

    #[tokio::test]
    async fn the_queue_serves_clean_addresses_before_suspect_ones_and_is_bounded() {
        let queue = Arc::new(Queue::default());
        let first = queue.enter(false).await.unwrap();
        // While the first holds the turn, suspects queue up to their bound, then are refused.
        let mut suspects = Vec::new();
        for _ in 0..SUSPECT_QUEUE {
            let queue = queue.clone();
            suspects.push(tokio::spawn(async move {
                queue.enter(true).await.map(|_| "suspect")
            }));
        }
        tokio::task::yield_now().await;
        while lock(&queue.state).suspect.len() < SUSPECT_QUEUE {
            tokio::task::yield_now().await;
        }
        assert!(
            queue.enter(true).await.is_none(),
            "a full suspect queue refuses at once"
        );
        let clean = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let slot = queue.enter(false).await;
                let waiting = lock(&queue.state).suspect.len();
                (slot.is_some(), waiting)
            })
        };
        while lock(&queue.state).clean.is_empty() {
            tokio::task::yield_now().await;
        }
        drop(first);
        // The clean check got the turn while every suspect was still waiting.
        assert_eq!(clean.await.unwrap(), (true, SUSPECT_QUEUE));
        for suspect in suspects {
            assert_eq!(suspect.await.unwrap(), Some("suspect"));
        }
        assert!(!lock(&queue.state).busy);
    }

    #[tokio::test]
    #[ignore = "needs real time: compares wall-clock bcrypt cost"]
    async fn unknown_and_known_users_take_the_same_time_whatever_their_costs() {
        let auth = auth(&[("cheap", "right", 4), ("dear", "right", 10)]);
        let time = |user: &'static str, n: u32| {
            let auth = &auth;
            async move {
                let mut best = Duration::MAX;
                for i in 0..n {
                    let started = Instant::now();
                    assert!(
                        !auth
                            .check(Some(&basic(user, &format!("wrong{i}"))), None)
                            .await
                    );
                    best = best.min(started.elapsed());
                }
                best
            }
        };
        let cheap = time("cheap", 5).await;
        let dear = time("dear", 5).await;
        let unknown = time("nobody", 5).await;
        for (what, took) in [("cheap", cheap), ("unknown", unknown)] {
            let ratio = took.as_secs_f64() / dear.as_secs_f64();
            assert!(
                (0.8..=1.2).contains(&ratio),
                "{what} {took:?} against {dear:?}"
            );
        }
    }

    #[test]
    fn debug_output_names_users_but_not_hashes() {
        let auth = auth(&[("alice", "pw", 4)]);
        let text = format!("{auth:?}");
        assert!(text.contains("alice") && !text.contains("$2"), "{text}");
    }
}
