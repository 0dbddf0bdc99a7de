//! A polite client against an API that limits requests: `FLEXCLOUD_MAX_REQUEST_RATE` spreads
//! requests evenly, and a 429 pauses every request for its `Retry-After` and halves the
//! requests in flight, which then grow back, while the cycle still completes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Metrics, Running, USER, binary_env};
use flexcloud_sim::{RequestRecord, Scenario, Simulator};

/// Accounts of one zone with an image each: two image requests and one zone list an
/// account, so a cycle makes three requests per account.
fn fleet(accounts: usize) -> (Scenario, String) {
    let mut scenario = Scenario::default();
    let ids: Vec<String> = (0..accounts).map(|n| format!("acct{n:02}")).collect();
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    scenario = scenario.user(USER, common::PASSWORD, &names);
    for id in &ids {
        scenario = scenario.account(id, &["TAMPA"]).image(
            id,
            &format!("{id}-1"),
            "ACTIVE",
            "BASE",
            &["TAMPA"],
        );
    }
    (scenario, ids.join(","))
}

/// The most requests that arrived within any one second.
fn busiest_second(requests: &[RequestRecord]) -> usize {
    let mut at: Vec<_> = requests.iter().map(|r| r.at).collect();
    at.sort();
    let mut most = 0;
    let mut first = 0;
    for last in 0..at.len() {
        while at[last].duration_since(at[first]) >= Duration::from_secs(1) {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// Starts the binary against `sim`, waits until its first cycle is published and scrapes it.
async fn first_cycle(sim: &Simulator, extra: &[(&str, &str)]) -> (Running, Metrics) {
    let url = sim.url();
    let mut exporter = Running::start(&binary_env(&url, extra), &[]);
    let base = format!("http://{}", exporter.address());
    let client = reqwest::Client::new();
    common::eventually("the first cycle", || async {
        let ready = client.get(format!("{base}/-/ready")).send().await.ok()?;
        ready.status().is_success().then_some(())
    })
    .await;
    let metrics = common::scrape(&base).await;
    (exporter, metrics)
}

fn every_probe_succeeded(metrics: &Metrics, accounts: usize) {
    let probes = metrics.series("flexcloud_probe_success", &[]);
    assert_eq!(probes.len(), accounts, "{probes:?}");
    assert!(probes.iter().all(|(_, v)| *v == 1.0), "{probes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real time: counts requests per wall-clock second"]
async fn at_20_requests_a_second_the_api_never_sees_more_than_22_in_a_second() {
    // 60 requests: three seconds at 20 a second, a fraction of one at full concurrency.
    let (scenario, accounts) = fleet(20);
    let sim = Simulator::start_local(scenario).await.unwrap();
    let (exporter, metrics) = first_cycle(
        &sim,
        &[
            ("FLEXCLOUD_ACCOUNTS", &accounts),
            ("FLEXCLOUD_CONCURRENCY", "32"),
            ("FLEXCLOUD_MAX_REQUEST_RATE", "20"),
        ],
    )
    .await;
    drop(exporter);
    every_probe_succeeded(&metrics, 20);
    let requests = sim.requests();
    assert!(requests.len() >= 60, "{} requests", requests.len());
    let busiest = busiest_second(&requests);
    assert!(
        busiest <= 22,
        "{busiest} requests in one second at a limit of 20"
    );
    assert_eq!(metrics.value("flexcloud_api_throttled_total", &[]), 0.0);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_counted_halves_the_requests_in_flight_and_the_cycle_still_completes() {
    let (scenario, accounts) = fleet(8);
    // Eight accounts ask for their zones at once; the API answers five a second.
    let sim = Simulator::start_local(scenario.rate_limit(5, 1))
        .await
        .unwrap();
    let (mut exporter, metrics) = first_cycle(
        &sim,
        &[
            ("FLEXCLOUD_ACCOUNTS", &accounts),
            ("FLEXCLOUD_CONCURRENCY", "8"),
            ("FLEXCLOUD_INTERVAL", "20s"),
        ],
    )
    .await;
    every_probe_succeeded(&metrics, 8);
    let requests = sim.requests();
    let throttled = requests.iter().filter(|r| r.throttled).count();
    assert!(throttled >= 1, "the first burst of eight is over the limit");
    assert_eq!(
        metrics.value("flexcloud_api_throttled_total", &[]),
        throttled as f64,
        "every 429 the API sent is counted"
    );
    let limit = metrics.value("flexcloud_api_concurrency_limit", &[]);
    assert!((1.0..=8.0).contains(&limit), "limit in force {limit}");
    // The first 429 halves eight to four; a 429 to a request sent before that does not
    // halve it again.
    let log = exporter.log();
    let halvings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the API throttles the exporter"))
        .collect();
    assert!(!halvings.is_empty(), "{log}");
    assert!(halvings[0].contains(r#""limit":4"#), "{}", halvings[0]);
    assert!(
        halvings.len() <= throttled,
        "at most one halving per 429: {halvings:?}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real time: measures the pause in wall-clock time"]
async fn after_a_429_no_request_is_sent_until_its_retry_after_has_passed() {
    let (scenario, accounts) = fleet(8);
    let sim = Simulator::start_local(scenario.rate_limit(4, 2))
        .await
        .unwrap();
    let (exporter, metrics) = first_cycle(
        &sim,
        &[
            ("FLEXCLOUD_ACCOUNTS", &accounts),
            ("FLEXCLOUD_CONCURRENCY", "8"),
            ("FLEXCLOUD_INTERVAL", "40s"),
        ],
    )
    .await;
    drop(exporter);
    // At four a second with two-second pauses some probes may run out of retry budget;
    // what is checked here is the pause, not the outcome.
    assert!(metrics.value("flexcloud_api_throttled_total", &[]) >= 1.0);
    let requests = sim.requests();
    let first_429 = requests
        .iter()
        .find(|r| r.throttled)
        .expect("the first burst of eight is over the limit")
        .at;
    // Requests already on their way when the 429 left arrive within moments; nothing the
    // exporter sent after reading it may arrive before the two seconds are up.
    let early: Vec<_> = requests
        .iter()
        .map(|r| r.at.saturating_duration_since(first_429))
        .filter(|since| *since > Duration::from_millis(300) && *since < Duration::from_millis(1900))
        .collect();
    assert!(early.is_empty(), "requests during the pause: {early:?}");
    sim.stop().await;
}
