//! The credential back-off: after a 401 the credentials are held back for a wait that
//! doubles with every rejection in a row, so a wrong password cannot lock the account.
//!
//! The rule, in full:
//! - Until the API has accepted the credentials in this cycle, one request at a time
//!   carries them; the others wait for its answer. So a wrong password is found by one
//!   request, not by as many as run at once.
//! - A first 401 is confirmed by the next request, sent alone. A 401 to that one too, or a
//!   401 to the account list (which concerns every account), rejects the credentials: they
//!   are held back for the whole wait of the back-off step. So a bad password costs at most
//!   two rejected requests per step.
//! - When the confirming request is answered otherwise, the first 401 concerned its account
//!   only: that account is held back with a back-off of its own, and the others go on.
//! - Any answer but a 401 to a request sent after the latest rejection ends the back-off of
//!   its scope (the credentials, or the account).
//!
//! Time is Tokio's, so the tests run the policy under paused time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

/// The longest wait, unless the interval itself is longer.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Accounts whose back-off is remembered at most; the oldest go first.
const MAX_HELD_ACCOUNTS: usize = 10_000;

/// Decides whether a request may carry the credentials.
#[derive(Debug)]
pub struct CredentialGate {
    first_wait: Duration,
    max_wait: Duration,
    state: Mutex<State>,
    /// Wakes the requests waiting while one request alone carries the credentials.
    turn: Notify,
}

#[derive(Debug, Default)]
struct State {
    credentials: Backoff,
    accounts: HashMap<String, Backoff>,
    /// Whether a request of this cycle got an answer other than a 401 (then every request
    /// may go), or not yet (then one at a time).
    verified: bool,
    /// Whether the one request allowed before verification is out.
    probing: bool,
    /// The account (or `None`: the account list) of a 401 that the next request confirms.
    doubted: Option<Option<String>>,
}

/// One scope's rejections in a row and how long its credentials are held back.
#[derive(Debug, Clone, Copy, Default)]
struct Backoff {
    rejections: u32,
    until: Option<Instant>,
    /// Bumped by every rejection, so that answers to requests sent before it neither count
    /// as another step nor end the wait.
    epoch: u64,
}

/// Leave to send the credentials once; say how the API answered with [`Pass::rejected`] or
/// [`Pass::accepted`]. Dropped unanswered (a timeout, a connection error), it lets the next
/// request go.
#[derive(Debug)]
pub struct Pass<'g> {
    gate: &'g CredentialGate,
    account: Option<String>,
    credentials_epoch: u64,
    account_epoch: u64,
    /// Whether this is the one request sent before the credentials were verified.
    alone: bool,
}

/// The credentials are held back for the scope of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held;

/// What the gate is doing with a scope, for the metrics and the status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CredentialState {
    /// Not held back: the API has not rejected them since they last worked.
    #[default]
    Accepted,
    /// Rejected `rejections` times in a row; held back for `wait`, of which `remaining`
    /// is left.
    Suspended {
        rejections: u32,
        wait: Duration,
        remaining: Duration,
    },
    /// Rejected before; the wait is over and the next request tries them again.
    Retrying { rejections: u32, wait: Duration },
}

impl CredentialState {
    /// The wait of the current back-off step, zero when the credentials are accepted.
    pub fn wait(self) -> Duration {
        match self {
            CredentialState::Accepted => Duration::ZERO,
            CredentialState::Suspended { wait, .. } | CredentialState::Retrying { wait, .. } => {
                wait
            }
        }
    }
}

impl CredentialGate {
    /// The first wait is two collection intervals; each further rejection doubles it, up
    /// to an hour (or one interval, if that is longer).
    pub fn new(interval: Duration) -> Self {
        CredentialGate {
            first_wait: interval.saturating_mul(2),
            max_wait: MAX_WAIT.max(interval),
            state: Mutex::new(State::default()),
            turn: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait_for(&self, rejections: u32) -> Duration {
        let doublings = rejections.saturating_sub(1).min(31);
        self.first_wait
            .saturating_mul(1u32 << doublings)
            .min(self.max_wait)
    }

    /// A new cycle: until one of its requests is accepted, they go one at a time.
    pub fn begin_cycle(&self) {
        let mut state = self.lock();
        state.verified = false;
    }

    /// The cycle is over: a 401 that no other request of it could confirm or clear (a fleet
    /// of one account) counts as a rejection of the credentials.
    pub fn end_cycle(&self) {
        let mut state = self.lock();
        if state.doubted.take().is_some() {
            let mut credentials = state.credentials;
            let wait = self.step(&mut credentials);
            state.credentials = credentials;
            warn!(
                wait = %humantime::format_duration(wait),
                rejections = credentials.rejections,
                "API rejected the credentials (401); not sending them again until the wait is over"
            );
        }
    }

    /// Leave to send the credentials for a request about `account` (`None`: the account
    /// list), waiting while another request alone carries them; `Err` while they are held
    /// back for that scope.
    pub async fn admit(&self, account: Option<&str>) -> Result<Pass<'_>, Held> {
        loop {
            let notified = self.turn.notified();
            tokio::pin!(notified);
            {
                let mut state = self.lock();
                let now = Instant::now();
                if state.credentials.until.is_some_and(|until| now < until) {
                    return Err(Held);
                }
                let account_held = account
                    .and_then(|a| state.accounts.get(a))
                    .and_then(|b| b.until)
                    .is_some_and(|until| now < until);
                // A request for the account in doubt would only be rejected again.
                let doubted = account.is_some()
                    && state.doubted.as_ref().and_then(|d| d.as_deref()) == account;
                if account_held || doubted {
                    return Err(Held);
                }
                let alone = !state.verified;
                if !alone || !state.probing {
                    state.probing |= alone;
                    return Ok(Pass {
                        gate: self,
                        account: account.map(String::from),
                        credentials_epoch: state.credentials.epoch,
                        account_epoch: account
                            .and_then(|a| state.accounts.get(a))
                            .map_or(0, |b| b.epoch),
                        alone,
                    });
                }
                // Registered before the lock is released, so no wake-up is missed.
                notified.as_mut().enable();
            }
            notified.await;
        }
    }

    /// New credentials (the password file changed): every back-off ends, and answers to
    /// requests sent with the old ones count for nothing.
    pub fn new_credentials(&self) {
        let mut state = self.lock();
        state.credentials = Backoff {
            epoch: state.credentials.epoch + 1,
            ..Backoff::default()
        };
        state.accounts.clear();
        state.doubted = None;
        state.verified = false;
        drop(state);
        self.turn.notify_waiters();
    }

    /// The credentials' state.
    pub fn state(&self) -> CredentialState {
        let state = self.lock();
        self.describe(&state.credentials)
    }

    /// The state of every account held back or retrying on its own.
    pub fn account_states(&self) -> BTreeMap<String, CredentialState> {
        let state = self.lock();
        state
            .accounts
            .iter()
            .map(|(account, backoff)| (account.clone(), self.describe(backoff)))
            .filter(|(_, s)| *s != CredentialState::Accepted)
            .collect()
    }

    fn describe(&self, backoff: &Backoff) -> CredentialState {
        if backoff.rejections == 0 {
            return CredentialState::Accepted;
        }
        let wait = self.wait_for(backoff.rejections);
        let now = Instant::now();
        match backoff.until {
            Some(until) if now < until => CredentialState::Suspended {
                rejections: backoff.rejections,
                wait,
                remaining: until - now,
            },
            _ => CredentialState::Retrying {
                rejections: backoff.rejections,
                wait,
            },
        }
    }

    /// Holds `backoff` back for the wait of its next step.
    fn step(&self, backoff: &mut Backoff) -> Duration {
        backoff.rejections = backoff.rejections.saturating_add(1);
        backoff.epoch += 1;
        let wait = self.wait_for(backoff.rejections);
        backoff.until = Some(Instant::now() + wait);
        wait
    }

    fn reject(&self, pass: &Pass<'_>) {
        let mut state = self.lock();
        if pass.credentials_epoch != state.credentials.epoch {
            // Sent before the credentials were rejected; that step is counted already.
            return;
        }
        let scope = pass.account.clone();
        let confirmed = match &state.doubted {
            // The account list concerns every account: no need to ask again.
            None if scope.is_none() => true,
            None => {
                state.doubted = Some(scope);
                state.verified = false;
                false
            }
            // Another 401 for the account in doubt, from a request sent alongside it.
            Some(doubted) if *doubted == scope => false,
            Some(_) => true,
        };
        if confirmed {
            state.doubted = None;
            state.verified = false;
            let mut credentials = state.credentials;
            let wait = self.step(&mut credentials);
            state.credentials = credentials;
            warn!(
                wait = %humantime::format_duration(wait),
                rejections = credentials.rejections,
                "API rejected the credentials (401); not sending them again until the wait is over"
            );
        }
    }

    fn accept(&self, pass: &Pass<'_>) {
        let mut state = self.lock();
        if pass.credentials_epoch != state.credentials.epoch {
            return;
        }
        state.verified = true;
        if let Some(doubted) = state.doubted.take() {
            match doubted {
                Some(account) if pass.account.as_ref() != Some(&account) => {
                    // The 401 concerned that account only.
                    if state.accounts.len() >= MAX_HELD_ACCOUNTS {
                        let oldest = state
                            .accounts
                            .iter()
                            .min_by_key(|(_, b)| b.until)
                            .map(|(a, _)| a.clone());
                        if let Some(oldest) = oldest {
                            state.accounts.remove(&oldest);
                        }
                    }
                    let mut backoff = state.accounts.get(&account).copied().unwrap_or_default();
                    let wait = self.step(&mut backoff);
                    state.accounts.insert(account.clone(), backoff);
                    warn!(
                        account_id = account,
                        wait = %humantime::format_duration(wait),
                        rejections = backoff.rejections,
                        "API rejected the credentials (401) for this account only; the others go on"
                    );
                }
                // The doubted request's own scope answered after all.
                _ => {}
            }
        }
        if state.credentials.rejections > 0 {
            state.credentials = Backoff {
                epoch: state.credentials.epoch + 1,
                ..Backoff::default()
            };
            info!("API accepts the credentials again; credential backoff reset");
        }
        if let Some(account) = &pass.account {
            let ended = state
                .accounts
                .get(account)
                .is_some_and(|b| b.rejections > 0 && b.epoch == pass.account_epoch);
            if ended {
                state.accounts.remove(account);
                info!(account_id = %account, "API accepts the credentials for this account again");
            }
        }
    }
}

impl Pass<'_> {
    /// The API answered 401.
    pub fn rejected(self) {
        self.gate.reject(&self);
    }

    /// The API answered with anything but a 401.
    pub fn accepted(self) {
        self.gate.accept(&self);
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.alone {
            let mut state = self.gate.lock();
            state.probing = false;
            drop(state);
            // The next request goes alone, or every one does if this one verified them.
            self.gate.turn.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const INTERVAL: Duration = Duration::from_secs(60);

    fn minutes(n: u64) -> Duration {
        Duration::from_secs(60 * n)
    }

    async fn pass<'g>(gate: &'g CredentialGate, account: Option<&str>) -> Pass<'g> {
        gate.admit(account).await.expect("admitted")
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_password_costs_two_rejected_requests_then_waits_two_intervals() {
        let gate = CredentialGate::new(INTERVAL);
        gate.begin_cycle();
        pass(&gate, Some("a")).await.rejected();
        assert_eq!(
            gate.state(),
            CredentialState::Accepted,
            "one 401 is only a doubt"
        );
        pass(&gate, Some("b")).await.rejected();
        assert_eq!(
            gate.state(),
            CredentialState::Suspended {
                rejections: 1,
                wait: minutes(2),
                remaining: minutes(2)
            }
        );
        assert_eq!(gate.admit(Some("c")).await.err(), Some(Held));
        assert_eq!(gate.admit(None).await.err(), Some(Held));
        advance(minutes(2) - Duration::from_millis(1)).await;
        assert!(gate.admit(Some("c")).await.is_err());
        advance(Duration::from_millis(1)).await;
        assert!(matches!(
            gate.state(),
            CredentialState::Retrying { rejections: 1, .. }
        ));
        assert!(gate.admit(Some("c")).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_to_the_account_list_rejects_at_once() {
        let gate = CredentialGate::new(INTERVAL);
        gate.begin_cycle();
        pass(&gate, None).await.rejected();
        assert_eq!(gate.state().wait(), minutes(2));
        assert!(gate.admit(Some("a")).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn each_rejected_step_doubles_the_wait_up_to_an_hour() {
        let gate = CredentialGate::new(INTERVAL);
        let mut waits = Vec::new();
        for _ in 0..8 {
            gate.begin_cycle();
            pass(&gate, Some("a")).await.rejected();
            pass(&gate, Some("b")).await.rejected();
            let wait = gate.state().wait();
            waits.push(wait.as_secs() / 60);
            advance(wait).await;
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_longer_than_an_hour_is_the_longest_wait() {
        let gate = CredentialGate::new(minutes(90));
        for _ in 0..3 {
            pass(&gate, None).await.rejected();
            advance(gate.state().wait()).await;
        }
        assert_eq!(gate.state().wait(), minutes(90));
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_for_one_account_holds_that_account_back_and_not_the_others() {
        let gate = CredentialGate::new(INTERVAL);
        gate.begin_cycle();
        pass(&gate, Some("locked")).await.rejected();
        pass(&gate, Some("fine")).await.accepted();
        assert_eq!(gate.state(), CredentialState::Accepted);
        assert_eq!(gate.admit(Some("locked")).await.err(), Some(Held));
        assert!(gate.admit(Some("fine")).await.is_ok());
        assert!(gate.admit(None).await.is_ok());
        assert_eq!(
            gate.account_states()["locked"],
            CredentialState::Suspended {
                rejections: 1,
                wait: minutes(2),
                remaining: minutes(2)
            }
        );
        // The account's own back-off doubles, and ends when the account is answered.
        advance(minutes(2)).await;
        gate.begin_cycle();
        pass(&gate, Some("locked")).await.rejected();
        pass(&gate, Some("fine")).await.accepted();
        assert_eq!(gate.account_states()["locked"].wait(), minutes(4));
        advance(minutes(4)).await;
        pass(&gate, Some("locked")).await.accepted();
        assert!(gate.account_states().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn until_the_credentials_are_verified_one_request_at_a_time_carries_them() {
        let gate = std::sync::Arc::new(CredentialGate::new(INTERVAL));
        gate.begin_cycle();
        let first = pass(&gate, Some("a")).await;
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.admit(Some("b")).await.is_ok() })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "the second request waits for the first's answer"
        );
        first.accepted();
        assert!(waiting.await.unwrap());
        // Verified: now any number go at once.
        let many: Vec<Pass> = vec![
            pass(&gate, Some("c")).await,
            pass(&gate, Some("d")).await,
            pass(&gate, Some("e")).await,
        ];
        assert_eq!(many.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_that_got_no_answer_lets_the_next_one_go() {
        let gate = std::sync::Arc::new(CredentialGate::new(INTERVAL));
        gate.begin_cycle();
        let first = pass(&gate, Some("a")).await;
        let next = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.admit(Some("b")).await.map(|p| p.alone) })
        };
        tokio::task::yield_now().await;
        drop(first);
        assert_eq!(
            next.await.unwrap(),
            Ok(true),
            "the next one goes alone in turn"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_account_in_doubt_is_not_asked_again_until_the_doubt_is_settled() {
        let gate = CredentialGate::new(INTERVAL);
        gate.begin_cycle();
        pass(&gate, Some("x")).await.rejected();
        assert_eq!(gate.admit(Some("x")).await.err(), Some(Held));
        pass(&gate, Some("y")).await.rejected();
        assert!(matches!(
            gate.state(),
            CredentialState::Suspended { rejections: 1, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_doubt_nothing_could_settle_in_a_cycle_rejects_the_credentials_at_its_end() {
        let gate = CredentialGate::new(INTERVAL);
        gate.begin_cycle();
        pass(&gate, Some("only")).await.rejected();
        assert_eq!(gate.state(), CredentialState::Accepted);
        gate.end_cycle();
        assert!(matches!(
            gate.state(),
            CredentialState::Suspended { rejections: 1, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn answers_to_requests_sent_before_a_rejection_change_nothing() {
        let gate = CredentialGate::new(INTERVAL);
        gate.begin_cycle();
        pass(&gate, Some("a")).await.accepted();
        // Sent while the credentials were verified, answered after they were rejected.
        let early = [pass(&gate, Some("x")).await, pass(&gate, Some("y")).await];
        gate.begin_cycle();
        pass(&gate, None).await.rejected();
        let [x, y] = early;
        x.rejected();
        y.accepted();
        assert!(matches!(
            gate.state(),
            CredentialState::Suspended { rejections: 1, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_other_than_401_after_the_wait_resets_the_back_off() {
        let gate = CredentialGate::new(INTERVAL);
        pass(&gate, None).await.rejected();
        advance(minutes(2)).await;
        pass(&gate, None).await.rejected();
        advance(minutes(4)).await;
        pass(&gate, None).await.accepted();
        assert_eq!(gate.state(), CredentialState::Accepted);
        pass(&gate, None).await.rejected();
        assert_eq!(
            gate.state().wait(),
            minutes(2),
            "the next rejection starts at step one"
        );
    }
}
