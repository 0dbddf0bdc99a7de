//! What the exposition costs as the fleet grows: the series budget per account, a stable
//! order, and compressed scrapes that decode to the plain body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read as _;

use common::exposition;
use common::{Harness, Metrics};
use flexcloud_sim::{FleetSpec, Scenario};

/// The budget: series that carry one account's `account_id`, with 4 zones of 6 images: the
/// scale issue's 56, and the lifecycle issue's 12 for its families in a steady fleet
/// (transitions come on top once they happen).
const SERIES_PER_ACCOUNT: usize = 56 + 12;

fn fleet(accounts: usize) -> Scenario {
    Scenario {
        generate: Some(FleetSpec {
            seed: 20_261_129,
            accounts,
            zones_per_account: 4,
            images_per_zone: 6,
            // As the load tool's fleets, where about one zone in eight has a SAVING image.
            saving_share: 0.02,
            user: common::USER.into(),
            password: common::PASSWORD.into(),
        }),
        ..Default::default()
    }
}

/// Series per account, and per family within the account that has the most.
fn per_account(m: &Metrics) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let parsed = exposition::parse(&m.text);
    let mut accounts: BTreeMap<String, usize> = BTreeMap::new();
    let mut families: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in &parsed.samples {
        if let Some((_, account)) = s.labels.iter().find(|(l, _)| l == "account_id") {
            if account.is_empty() {
                continue;
            }
            *accounts.entry(account.clone()).or_default() += 1;
            *families
                .entry((account.clone(), s.name.clone()))
                .or_default() += 1;
        }
    }
    let heaviest = accounts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(a, _)| a.clone())
        .unwrap_or_default();
    let breakdown = families
        .into_iter()
        .filter(|((a, _), _)| *a == heaviest)
        .map(|((_, name), n)| (name, n))
        .collect();
    (accounts, breakdown)
}

#[tokio::test]
async fn a_generated_fleet_costs_at_most_the_budget_of_series_per_account() {
    let mut small = Harness::start(fleet(20), &[]).await;
    let mut large = Harness::start(fleet(60), &[]).await;
    let (s, l) = (small.cycle().await, large.cycle().await);
    let (accounts, breakdown) = per_account(&l);
    assert_eq!(accounts.len(), 60, "every account has series");
    let heaviest = accounts.values().copied().max().unwrap();
    assert!(
        heaviest <= SERIES_PER_ACCOUNT,
        "an account has {heaviest} series, over the budget of {SERIES_PER_ACCOUNT}: {breakdown:#?}"
    );
    // What the exposition grows by per account, whatever carries the label: the fleet-wide
    // series (latency histogram, self-metrics) do not grow with it.
    let count = |m: &Metrics| exposition::parse(&m.text).samples.len();
    let growth = (count(&l) - count(&s)) as f64 / 40.0;
    assert!(
        growth <= SERIES_PER_ACCOUNT as f64,
        "{growth} series more per account"
    );
    let average = accounts.values().sum::<usize>() as f64 / 60.0;
    eprintln!(
        "series per account: {average:.1} on average, {heaviest} at most ({breakdown:?}); \
         the exposition grows by {growth:.1} per account"
    );
    small.stop().await;
    large.stop().await;
}

/// The series of an exposition in the order written, each as its name and labels.
fn order(m: &Metrics) -> Vec<String> {
    m.text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.rsplit_once(' ')
                .map_or(l, |(series, _)| series)
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn series_keep_one_order_from_cycle_to_cycle_grouped_by_account_and_zone() {
    let mut h = Harness::start(fleet(30), &[]).await;
    let first = h.cycle().await;
    // Values change between the cycles (counters, durations); the order must not.
    let second = h.cycle().await;
    let third = h.cycle().await;
    assert_eq!(order(&second), order(&third));
    assert!(order(&first).len() <= order(&second).len());
    let parsed = exposition::parse(&third.text);
    let mut last: BTreeMap<&str, (String, String)> = BTreeMap::new();
    for s in &parsed.samples {
        let label = |name: &str| {
            s.labels
                .iter()
                .find(|(l, _)| l == name)
                .map(|(_, v)| v.clone())
        };
        let Some(account) = label("account_id") else {
            continue;
        };
        let key = (account, label("zone_id").unwrap_or_default());
        let family = s.name.as_str();
        if let Some(before) = last.get(family) {
            assert!(
                *before <= key,
                "{family}: {key:?} comes after {before:?}; series are sorted by account, then zone"
            );
        }
        last.insert(family, key);
    }
    h.stop().await;
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("one whole gzip member");
    out
}

/// A GET of `/metrics` that does not decode what comes back.
async fn get(base: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::builder()
        .no_gzip()
        .build()
        .unwrap()
        .get(format!("{base}/metrics"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    response
}

/// The cycle's part of an exposition: everything before the scrape-time families, which
/// change from one scrape to the next.
fn cycle_part(body: &str) -> &str {
    let at = body
        .find("# HELP process_")
        .or_else(|| body.find("# HELP flexcloud_http_"))
        .unwrap_or(body.len());
    &body[..at]
}

#[tokio::test]
async fn a_gzip_scrape_decodes_to_the_plain_body_in_both_formats() {
    let mut h = Harness::start(fleet(40), &[]).await;
    h.cycle().await;
    let base = h.serve().await;
    let openmetrics = "application/openmetrics-text;version=1.0.0";
    for accept in ["text/plain", openmetrics] {
        let plain = get(&base, &[("Accept", accept)]).await;
        assert!(plain.headers().get("content-encoding").is_none());
        let plain_type = plain.headers()["content-type"].clone();
        let plain = plain.text().await.unwrap();

        let zipped = get(
            &base,
            &[("Accept", accept), ("Accept-Encoding", "gzip, deflate, br")],
        )
        .await;
        assert_eq!(zipped.headers()["content-encoding"], "gzip");
        assert_eq!(zipped.headers()["content-type"], plain_type);
        let vary = zipped.headers()["vary"].to_str().unwrap().to_string();
        assert!(vary.contains("Accept-Encoding"), "{vary}");
        let wire = zipped.bytes().await.unwrap();
        let decoded = String::from_utf8(gunzip(&wire)).unwrap();

        assert_eq!(cycle_part(&decoded), cycle_part(&plain), "{accept}");
        assert!(cycle_part(&plain).len() > 100_000, "a real body");
        // The scrape-time families follow, whole, in either answer.
        let tail = &decoded[cycle_part(&decoded).len()..];
        assert!(tail.contains("process_resident_memory_bytes"), "{tail}");
        if accept == openmetrics {
            assert!(decoded.ends_with("# EOF\n"));
        }
        exposition::parse(&decoded);
        assert!(
            wire.len() * 5 < plain.len(),
            "{} bytes compressed, {} plain",
            wire.len(),
            plain.len()
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn gzip_is_sent_only_to_clients_that_take_it() {
    let mut h = Harness::start(fleet(2), &[]).await;
    h.cycle().await;
    let base = h.serve().await;
    for refused in [
        "gzip;q=0",
        "identity",
        "br",
        "deflate",
        "",
        "gzip;q=0, *;q=0.1",
    ] {
        let response = get(&base, &[("Accept-Encoding", refused)]).await;
        assert!(
            response.headers().get("content-encoding").is_none(),
            "Accept-Encoding: {refused:?}"
        );
        exposition::parse(&response.text().await.unwrap());
    }
    for taken in ["gzip", "GZIP", "x-gzip", "*", "br;q=1, gzip;q=0.5"] {
        let response = get(&base, &[("Accept-Encoding", taken)]).await;
        assert_eq!(
            response.headers()["content-encoding"],
            "gzip",
            "Accept-Encoding: {taken:?}"
        );
        gunzip(&response.bytes().await.unwrap());
    }
    h.stop().await;
}

#[tokio::test]
#[ignore = "needs promtool"]
async fn the_decoded_gzip_scrape_passes_promtool_check_metrics() {
    let mut h = Harness::start(fleet(10), &[]).await;
    h.cycle().await;
    let base = h.serve().await;
    let wire = get(&base, &[("Accept-Encoding", "gzip")])
        .await
        .bytes()
        .await
        .unwrap();
    common::promtool::assert_clean_metrics(&gunzip(&wire));
    h.stop().await;
}
