//! Basic auth for the endpoint: each request's `Authorization` header against the bcrypt
//! hashes of the web config's `basic_auth_users`.

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderValue;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretSlice};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// One `basic_auth_users` entry, its hash checked at load.
pub(super) struct User {
    pub(super) name: String,
    pub(super) hash: String,
    pub(super) cost: u32,
}

/// Checks `Authorization: Basic` credentials against the bcrypt hashes of the file.
pub struct BasicAuth {
    users: Vec<User>,
    /// The entry whose hash an unknown user name is checked against: the costliest, so a
    /// wrong name takes as long as a wrong password and does not reveal which names exist.
    decoy: usize,
    /// The last password that verified, per user. Prometheus sends the same credentials
    /// every scrape, and bcrypt at cost 10 costs tens of milliseconds of CPU each time
    /// (exporter-toolkit caches for the same reason). Zeroed when dropped.
    verified: Mutex<Vec<Option<SecretSlice<u8>>>>,
    /// One bcrypt at a time, as in exporter-toolkit, so a flood of wrong passwords costs at
    /// most one core and never blocks the async workers.
    bcrypt_slot: Arc<Semaphore>,
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

impl BasicAuth {
    pub(super) fn new(users: Vec<User>) -> Self {
        let decoy = users
            .iter()
            .enumerate()
            .max_by_key(|(_, u)| u.cost)
            .map_or(0, |(i, _)| i);
        let verified = Mutex::new(users.iter().map(|_| None).collect());
        BasicAuth {
            users,
            decoy,
            verified,
            bcrypt_slot: Arc::new(Semaphore::new(1)),
        }
    }

    /// How many users the file lists.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether the `Authorization` header carries a listed user and that user's password.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((name, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let found = self.find(&name);
        if let Some(index) = found {
            if self.remembered(index, password.expose_secret()) {
                return true;
            }
        }
        let hash = self.users[found.unwrap_or(self.decoy)].hash.clone();
        let Ok(permit) = self.bcrypt_slot.clone().acquire_owned().await else {
            return false;
        };
        // The permit moves into the blocking task, so the one-at-a-time rule holds even when
        // the request is cancelled (timeout, client gone) while bcrypt runs.
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let ok = bcrypt::verify(password.expose_secret(), &hash).unwrap_or(false);
            (ok, password)
        })
        .await;
        match (found, verified) {
            (Some(index), Ok((true, password))) => {
                self.remember(index, password);
                true
            }
            _ => false,
        }
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

    fn remembered(&self, index: usize, password: &[u8]) -> bool {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|known| bool::from(known.expose_secret().ct_eq(password)))
    }

    fn remember(&self, index: usize, password: SecretSlice<u8>) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = verified.get_mut(index) {
            *slot = Some(password);
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
    use std::time::{Duration, Instant};

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

    #[tokio::test]
    async fn only_a_listed_user_with_its_password_passes() {
        let auth = auth(&[("alice", "alice-pw", 4), ("bob", "bob-pw", 4)]);
        assert!(auth.check(Some(&basic("alice", "alice-pw"))).await);
        assert!(auth.check(Some(&basic("bob", "bob-pw"))).await);
        // Remembered after the first success, and still exact.
        assert!(auth.check(Some(&basic("alice", "alice-pw"))).await);
        assert!(!auth.check(Some(&basic("alice", "bob-pw"))).await);
        assert!(!auth.check(Some(&basic("alice", "alice-pw "))).await);
        assert!(!auth.check(Some(&basic("carol", "alice-pw"))).await);
        assert!(!auth.check(Some(&basic("Alice", "alice-pw"))).await);
        assert!(!auth.check(Some(&basic("", ""))).await);
        assert!(!auth.check(None).await);
    }

    #[test]
    fn unknown_users_are_checked_against_the_costliest_hash() {
        let auth = auth(&[("a", "x", 4), ("b", "x", 6), ("c", "x", 5)]);
        assert_eq!(auth.users[auth.decoy].name, "b");
    }

    #[tokio::test]
    #[ignore = "needs real time: compares wall-clock bcrypt cost"]
    async fn a_wrong_user_costs_the_bcrypt_work_of_a_wrong_password() {
        let cost = 8;
        let hash = bcrypt::hash("right", cost).unwrap();
        let fastest_verify = (0..3)
            .map(|_| {
                let start = Instant::now();
                let _ = bcrypt::verify("wrong", &hash);
                start.elapsed()
            })
            .min()
            .unwrap();
        let auth = auth(&[("alice", "right", cost)]);
        let start = Instant::now();
        assert!(!auth.check(Some(&basic("mallory", "right"))).await);
        let wrong_user = start.elapsed();
        // Load on the machine can only make the check slower, never faster than bcrypt itself;
        // an early return for an unknown name would take microseconds.
        assert!(
            wrong_user >= fastest_verify / 2 && fastest_verify > Duration::from_millis(1),
            "wrong user {wrong_user:?}, bcrypt {fastest_verify:?}"
        );
    }

    #[test]
    fn debug_output_names_users_but_not_hashes() {
        let auth = auth(&[("alice", "pw", 4)]);
        let text = format!("{auth:?}");
        assert!(text.contains("alice") && !text.contains("$2"), "{text}");
    }
}
