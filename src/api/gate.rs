//! The credential back-off: after a 401 the credentials are held back for a wait that
//! doubles with every rejection in a row, so a wrong password cannot lock the account.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

/// The longest wait, unless the interval itself is longer.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Decides whether a request may carry the credentials. Time is Tokio's, so tests run the
/// policy under paused time.
#[derive(Debug)]
pub struct CredentialGate {
    first_wait: Duration,
    max_wait: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    /// Rejections in a row; each one is a back-off step.
    rejections: u32,
    /// When the credentials may be sent again; `None` while they are not held back.
    until: Option<Instant>,
    /// Bumped by every rejection, so that answers to requests sent before it (several were
    /// in flight when the first 401 came) neither count as another step nor end the wait.
    epoch: u64,
}

/// Leave to send the credentials once; hand it back with the answer.
#[derive(Debug)]
pub struct Pass {
    epoch: u64,
}

/// What the gate is doing, for the metrics and the status page.
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait_for(&self, rejections: u32) -> Duration {
        let doublings = rejections.saturating_sub(1).min(31);
        self.first_wait
            .saturating_mul(1u32 << doublings)
            .min(self.max_wait)
    }

    /// Leave to send the credentials now, or `None` while they are held back.
    pub fn admit(&self) -> Option<Pass> {
        let state = self.lock();
        match state.until {
            Some(until) if Instant::now() < until => None,
            _ => Some(Pass { epoch: state.epoch }),
        }
    }

    /// The API answered 401 to a request sent with `pass`.
    pub fn rejected(&self, pass: Pass) {
        let mut state = self.lock();
        if pass.epoch != state.epoch {
            return;
        }
        state.rejections = state.rejections.saturating_add(1);
        state.epoch += 1;
        let wait = self.wait_for(state.rejections);
        state.until = Some(Instant::now() + wait);
        warn!(
            wait = %humantime::format_duration(wait),
            rejections = state.rejections,
            "API rejected the credentials (401); not sending them again until the wait is over"
        );
    }

    /// The API answered a request sent with `pass` with anything but a 401.
    pub fn accepted(&self, pass: Pass) {
        let mut state = self.lock();
        if pass.epoch != state.epoch || state.rejections == 0 {
            return;
        }
        *state = State {
            epoch: state.epoch + 1,
            ..State::default()
        };
        info!("API accepts the credentials again; credential backoff reset");
    }

    pub fn state(&self) -> CredentialState {
        let state = self.lock();
        if state.rejections == 0 {
            return CredentialState::Accepted;
        }
        let wait = self.wait_for(state.rejections);
        let now = Instant::now();
        match state.until {
            Some(until) if now < until => CredentialState::Suspended {
                rejections: state.rejections,
                wait,
                remaining: until - now,
            },
            _ => CredentialState::Retrying {
                rejections: state.rejections,
                wait,
            },
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

    #[tokio::test(start_paused = true)]
    async fn a_rejection_holds_the_credentials_back_for_two_intervals() {
        let gate = CredentialGate::new(INTERVAL);
        assert_eq!(gate.state(), CredentialState::Accepted);
        gate.rejected(gate.admit().unwrap());
        assert!(gate.admit().is_none());
        assert_eq!(
            gate.state(),
            CredentialState::Suspended {
                rejections: 1,
                wait: minutes(2),
                remaining: minutes(2)
            }
        );
        advance(minutes(2) - Duration::from_millis(1)).await;
        assert!(gate.admit().is_none());
        advance(Duration::from_millis(1)).await;
        assert!(gate.admit().is_some());
        assert_eq!(
            gate.state(),
            CredentialState::Retrying {
                rejections: 1,
                wait: minutes(2)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_rejection_in_a_row_doubles_the_wait_up_to_an_hour() {
        let gate = CredentialGate::new(INTERVAL);
        let mut waits = Vec::new();
        for _ in 0..8 {
            gate.rejected(gate.admit().unwrap());
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
            gate.rejected(gate.admit().unwrap());
            advance(gate.state().wait()).await;
        }
        assert_eq!(gate.state().wait(), minutes(90));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_when_the_first_401_came_count_once() {
        let gate = CredentialGate::new(INTERVAL);
        let passes: Vec<Pass> = (0..8).map(|_| gate.admit().unwrap()).collect();
        for pass in passes {
            gate.rejected(pass);
        }
        assert_eq!(gate.state().wait(), minutes(2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_other_than_401_after_the_wait_resets_the_back_off() {
        let gate = CredentialGate::new(INTERVAL);
        gate.rejected(gate.admit().unwrap());
        advance(minutes(2)).await;
        gate.rejected(gate.admit().unwrap());
        advance(minutes(4)).await;
        gate.accepted(gate.admit().unwrap());
        assert_eq!(gate.state(), CredentialState::Accepted);
        // The next rejection starts again at the first step.
        gate.rejected(gate.admit().unwrap());
        assert_eq!(gate.state().wait(), minutes(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_success_of_a_request_sent_before_the_401_does_not_end_the_wait() {
        let gate = CredentialGate::new(INTERVAL);
        let early = gate.admit().unwrap();
        gate.rejected(gate.admit().unwrap());
        gate.accepted(early);
        assert!(matches!(
            gate.state(),
            CredentialState::Suspended { rejections: 1, .. }
        ));
    }
}
