//! Every cycle ends on time: a step the API never answers fails with the error kind
//! `deadline` when the cycle's time is up, and the other steps are published with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, PASSWORD, USER};
use flexcloud_exporter::api::ErrorKind;
use flexcloud_sim::{Fault, FaultAction, Scenario};

fn fleet() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &["acme", "globex"])
        .account("acme", &["TAMPA", "AUSTIN"])
        .account("globex", &["TAMPA"])
        .image("acme", "1", "ACTIVE", "BASE", &["TAMPA"])
        .image("globex", "2", "ACTIVE", "BASE", &["TAMPA"])
}

/// Requests to `path` wait an hour: only the cycle's deadline can end them.
fn never_answered(path: &str) -> Fault {
    Fault::on(
        path,
        FaultAction::Delay {
            delay: Duration::from_secs(3600),
        },
    )
}

const SLOW: &[(&str, &str)] = &[
    ("FLEXCLOUD_INTERVAL", "2h"),
    ("FLEXCLOUD_CYCLE_TIMEOUT", "1s"),
    ("FLEXCLOUD_TIMEOUT", "1h"),
    ("FLEXCLOUD_READ_TIMEOUT", "1h"),
];

#[tokio::test]
async fn probes_still_running_at_the_deadline_fail_as_deadline_and_the_rest_is_published() {
    let scenario = fleet().fault(never_answered("/accounts/acme/flexcloud/images/detail"));
    let mut h = Harness::start(scenario, SLOW).await;
    let snapshot = h.snapshot_cycle().await;
    for zone in ["TAMPA", "AUSTIN"] {
        let probe = snapshot.zones[&("acme".to_string(), zone.to_string())]
            .probe
            .clone()
            .unwrap();
        assert!(!probe.success, "{zone}");
        assert_eq!(probe.error_kind, Some(ErrorKind::Deadline), "{zone}");
        assert_eq!(probe.http_status, 0, "{zone}");
    }
    let globex = &snapshot.zones[&("globex".to_string(), "TAMPA".to_string())];
    assert!(globex.probe.as_ref().unwrap().success);
    // What the cycle published says so: no success reported for a probe that never ended.
    let m = h.metrics();
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "acme"), ("zone_id", "TAMPA")]
        ),
        0.0
    );
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "globex"), ("zone_id", "TAMPA")]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn discovery_cut_by_the_deadline_fails_as_deadline() {
    let scenario = fleet().fault(never_answered("/accounts"));
    let mut h = Harness::start(scenario, SLOW).await;
    let snapshot = h.snapshot_cycle().await;
    let discovery = snapshot.accounts_discovery.clone().unwrap();
    assert_eq!(discovery.error_kind, Some(ErrorKind::Deadline));
    assert_eq!(h.metrics().value("flexcloud_up", &[]), 0.0);
    h.stop().await;
}

#[tokio::test]
async fn retries_stop_at_the_deadline() {
    // A 503 is retried; with the retry budget spent on waits the deadline ends the step.
    let scenario = fleet().fault(Fault::on(
        "/accounts/acme/flexcloud/zone",
        FaultAction::Status {
            status: 503,
            body: None,
            retry_after: Some("1".into()),
        },
    ));
    let mut extra = SLOW.to_vec();
    extra.push(("FLEXCLOUD_ACCOUNTS", "acme"));
    let mut h = Harness::start(scenario, &extra).await;
    let snapshot = h.snapshot_cycle().await;
    let zones = snapshot.zones_discovery["acme"].clone();
    assert_eq!(zones.error_kind, Some(ErrorKind::Deadline));
    let attempts = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/accounts/acme/flexcloud/zone")
        .count();
    assert!(
        attempts <= 2,
        "{attempts} attempts within a 1 s cycle, each waiting 1 s"
    );
    h.stop().await;
}
