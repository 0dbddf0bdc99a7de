//! Accounts that come and go leave no series behind: after the stale period an account gone
//! from discovery has no request counter, latency series or image series left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{Harness, Metrics, PASSWORD, USER};
use flexcloud_sim::Scenario;

/// A fixed xorshift, so the churn is the same every run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

fn fleet(accounts: &BTreeSet<u64>) -> Scenario {
    let mut scenario = Scenario::default().user(USER, PASSWORD, &["*"]);
    for n in accounts {
        let id = format!("acct{n:03}");
        scenario =
            scenario
                .account(&id, &["Z"])
                .image(&id, &format!("{n}"), "ACTIVE", "BASE", &["Z"]);
    }
    scenario
}

/// The account ids that a family's series name.
fn accounts_in(m: &Metrics, family: &str) -> BTreeSet<String> {
    m.series(family, &[])
        .iter()
        .filter_map(|(key, _)| key.split("account_id=\"").nth(1)?.split('"').next())
        .filter(|id| !id.is_empty())
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn after_200_cycles_of_churn_only_the_accounts_watched_have_series() {
    let mut dice = Dice(0x5eed_cafe);
    let mut watched: BTreeSet<u64> = (0..8).collect();
    // A stale period shorter than a cycle: whatever the last cycle did not see is gone.
    let mut h = Harness::start(fleet(&watched), &[("FLEXCLOUD_STALE_AFTER", "1ns")]).await;
    let mut ever = BTreeSet::new();
    let mut m = Metrics::default();
    for _ in 0..200 {
        // Each cycle up to three accounts leave and up to three arrive, from a pool of 100.
        for _ in 0..dice.roll(4) {
            let leaving = *watched
                .iter()
                .nth(dice.roll(watched.len() as u64) as usize)
                .unwrap();
            if watched.len() > 1 {
                watched.remove(&leaving);
            }
        }
        for _ in 0..dice.roll(4) {
            watched.insert(dice.roll(100));
        }
        ever.extend(watched.iter().copied());
        h.sim.set_scenario(fleet(&watched)).unwrap();
        m = h.cycle().await;
    }
    let expected: BTreeSet<String> = watched.iter().map(|n| format!("acct{n:03}")).collect();
    assert!(
        ever.len() > 2 * watched.len(),
        "the churn went through many accounts: {}",
        ever.len()
    );
    for family in [
        "flexcloud_api_requests_total",
        "flexcloud_images",
        "flexcloud_probe_success",
        "flexcloud_discovery_success",
    ] {
        assert_eq!(accounts_in(&m, family), expected, "{family}");
    }
    // Latency is per endpoint: 12 series per endpoint whatever the churn.
    assert!(accounts_in(&m, "flexcloud_api_request_duration_seconds_count").is_empty());
    assert_eq!(
        m.value("flexcloud_accounts_watched", &[]),
        watched.len() as f64
    );
    h.stop().await;
}

#[tokio::test]
async fn an_account_gone_for_less_than_the_stale_period_keeps_its_request_series() {
    let both: BTreeSet<u64> = [1, 2].into();
    let mut h = Harness::start(fleet(&both), &[("FLEXCLOUD_STALE_AFTER", "1h")]).await;
    h.cycle().await;
    h.sim.set_scenario(fleet(&[1].into())).unwrap();
    let m = h.cycle().await;
    // The account's counters are history: kept within the stale period.
    assert!(accounts_in(&m, "flexcloud_api_requests_total").contains("acct002"));
    // Its zones are gone from a successful discovery, so its image series are gone at once.
    assert!(!accounts_in(&m, "flexcloud_images").contains("acct002"));
    h.stop().await;
}
