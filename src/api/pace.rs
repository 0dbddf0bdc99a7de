//! How fast the client may ask: a request-rate limit, a pause for every request after a
//! 429, and a concurrency limit that halves on a 429 and grows back one slot per success.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The longest pause one 429 imposes on every request, whatever its `Retry-After` says: an
/// API that asks for an hour would otherwise silence the exporter for a dozen cycles, and
/// the request that got it gives up at its retry budget anyway.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);
/// The pause after a 429 that names no `Retry-After`.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// The pacing shared by every request of one client.
#[derive(Debug)]
pub struct Pace {
    /// One token per request, none saved up beyond one: at 20 a second the API sees at most
    /// 21 requests in any second, never a second's worth at once after a quiet spell.
    rate: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
    slots: Semaphore,
    /// `FLEXCLOUD_CONCURRENCY`: what the limit grows back to.
    max: usize,
    state: Mutex<State>,
    throttled: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Requests that may be in flight now.
    limit: usize,
    /// Slots taken away by a halving while they were in use: forgotten as they come back.
    debt: usize,
    /// Every request waits until then before it is sent.
    paused_until: Option<Instant>,
    /// When the limit was last halved: a 429 to a request sent before then is part of the
    /// same overload and does not halve it again.
    last_cut: Option<Instant>,
}

/// What a 429 changed, for the caller to log once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// The concurrency limit now in force; `None` when this 429 did not halve it.
    pub halved_to: Option<usize>,
    pub pause: Duration,
}

/// A request's right to be sent; its slot comes back when it is dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    pace: &'a Pace,
    permit: Option<SemaphorePermit<'a>>,
    /// When the request went out, to tell whether a 429 to it predates the last halving.
    pub sent: Instant,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.pace.give_back(permit);
        }
    }
}

impl Pace {
    /// `max` requests in flight at most; `rate` requests a second at most when set.
    pub fn new(max: usize, rate: Option<f64>) -> Self {
        let max = max.max(1);
        let rate = rate
            .filter(|r| r.is_finite() && *r > 0.0)
            .and_then(|r| Quota::with_period(Duration::from_secs_f64(1.0 / r)))
            .map(|quota| RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN)));
        Pace {
            rate,
            clock: DefaultClock::default(),
            slots: Semaphore::new(max),
            max,
            state: Mutex::new(State {
                limit: max,
                debt: 0,
                paused_until: None,
                last_cut: None,
            }),
            throttled: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot, the end of any pause and a rate token, in that order, so a request
    /// that holds a token is sent at once: tokens taken while waiting for a slot would be
    /// spent together when slots free up.
    pub async fn admit(&self) -> Slot<'_> {
        // The semaphore is never closed, so acquiring only waits.
        let permit = self.slots.acquire().await.ok();
        loop {
            self.wait_for_pause().await;
            self.wait_for_token().await;
            // A 429 may have paused everyone while this one waited for its token.
            if !self.is_paused() {
                break;
            }
        }
        Slot {
            pace: self,
            permit,
            sent: Instant::now(),
        }
    }

    async fn wait_for_pause(&self) {
        loop {
            let until = self.lock().paused_until;
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    fn is_paused(&self) -> bool {
        self.lock()
            .paused_until
            .is_some_and(|until| until > Instant::now())
    }

    async fn wait_for_token(&self) {
        let Some(rate) = &self.rate else {
            return;
        };
        while let Err(not_until) = rate.check() {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
    }

    fn give_back(&self, permit: SemaphorePermit<'_>) {
        let mut state = self.lock();
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        }
    }

    /// The API answered 429 to the request sent with `slot`: every request waits for
    /// `retry_after` (bounded), and the limit halves unless a 429 to an earlier request
    /// already halved it.
    pub fn throttled(&self, slot: &Slot<'_>, retry_after: Option<Duration>) -> Throttled {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let pause = retry_after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
        let now = Instant::now();
        let mut state = self.lock();
        let until = now + pause;
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
        if state.last_cut.is_some_and(|cut| slot.sent < cut) {
            return Throttled {
                halved_to: None,
                pause,
            };
        }
        state.last_cut = Some(now);
        let halved = (state.limit / 2).max(1);
        let cut = state.limit - halved;
        state.limit = halved;
        // Free slots go at once; those in use are forgotten when they come back.
        let forgotten = self.slots.forget_permits(cut);
        state.debt += cut - forgotten;
        Throttled {
            halved_to: Some(halved),
            pause,
        }
    }

    /// The request sent with `slot` was answered: the limit grows by one, up to its
    /// configured value, unless the request went out before the last halving (its answer
    /// says nothing about the limit since). Returns true when this brought the limit back to
    /// its configured value.
    pub fn succeeded(&self, slot: &Slot<'_>) -> bool {
        let mut state = self.lock();
        if state.limit >= self.max || state.last_cut.is_some_and(|cut| slot.sent < cut) {
            return false;
        }
        state.limit += 1;
        if state.debt > 0 {
            state.debt -= 1;
        } else {
            self.slots.add_permits(1);
        }
        state.limit == self.max
    }

    /// Requests that may be in flight now.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// 429 answers since start.
    pub fn throttled_total(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_limit_once_per_overload_and_successes_grow_it_back() {
        let pace = Pace::new(8, None);
        let early = pace.admit().await;
        tokio::time::advance(Duration::from_millis(1)).await;
        let first = pace.admit().await;
        let cut = pace.throttled(&first, None);
        assert_eq!(cut.halved_to, Some(4));
        // Sent before the halving: the same overload, not a second one.
        assert_eq!(pace.throttled(&early, None).halved_to, None);
        assert_eq!(pace.limit(), 4);
        assert!(!pace.succeeded(&early), "sent before the halving");
        assert_eq!(pace.limit(), 4);
        drop((early, first));
        for expected in 5..=8 {
            let slot = pace.admit().await;
            let back_to_full = pace.succeeded(&slot);
            assert_eq!(pace.limit(), expected);
            assert_eq!(back_to_full, expected == 8);
        }
        let slot = pace.admit().await;
        assert!(!pace.succeeded(&slot), "never above the configured limit");
        assert_eq!(pace.limit(), 8);
        assert_eq!(pace.throttled_total(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn slots_in_use_when_the_limit_halves_are_taken_back_as_they_return() {
        let pace = Pace::new(4, None);
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| pace.admit())).await;
        tokio::time::advance(Duration::from_millis(1)).await;
        let late = pace.admit();
        tokio::pin!(late);
        assert!(
            late.as_mut().now_or_never().is_none(),
            "all four slots are in use"
        );
        // A 429 to the last one sent: the limit is 2 while all 4 slots are in use.
        pace.throttled(&held[3], Some(Duration::ZERO));
        assert_eq!(pace.limit(), 2);
        let mut held = held.into_iter();
        drop(held.next());
        drop(held.next());
        assert!(
            late.as_mut().now_or_never().is_none(),
            "two returned slots pay the debt, so two are still in flight of a limit of 2"
        );
        drop(held.next());
        let slot = late.await;
        drop(slot);
        drop(held.next());
        // Two slots in all, however many come back.
        let a = pace.admit().await;
        let b = pace.admit().await;
        let third = pace.admit();
        tokio::pin!(third);
        assert!(third.as_mut().now_or_never().is_none());
        drop((a, b));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_every_request_for_its_retry_after_bounded() {
        let pace = Pace::new(8, None);
        let slot = pace.admit().await;
        let cut = pace.throttled(&slot, Some(Duration::from_secs(3)));
        assert_eq!(cut.pause, Duration::from_secs(3));
        drop(slot);
        let started = Instant::now();
        let _next = pace.admit().await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        let slot = pace.admit().await;
        let cut = pace.throttled(&slot, Some(Duration::from_secs(3600)));
        assert_eq!(cut.pause, MAX_PAUSE);
        drop(slot);
        let slot = pace.admit().await;
        assert_eq!(pace.throttled(&slot, None).pause, DEFAULT_PAUSE);
    }

    #[test]
    fn a_rate_that_is_not_a_positive_number_sets_no_limit() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Pace::new(1, Some(rate)).rate.is_none(), "{rate}");
        }
        assert!(Pace::new(1, Some(20.0)).rate.is_some());
    }
}
