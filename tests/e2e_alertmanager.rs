//! The stuck-SAVING alert delivered for real, and held through an API outage.
//!
//! The simulator (in this process) serves one account with two zones and image 102 stuck
//! in SAVING for 3h in one of them; the exporter binary watches it every second with
//! FLEXCLOUD_STALE_AFTER at 5s; Prometheus scrapes it and evaluates the bundled rules (every
//! `for` cut to 0s) every second; Alertmanager runs the example configuration
//! (deploy/alertmanager/alertmanager.yml) with its webhook URLs pointed at a receiver in this
//! test and its group and repeat times cut short.
//!
//! The receiver gets FlexcloudImageStuckSaving with the account, zone and image labels and
//! an absolute runbook URL. Then the image's zone answers 503 for five times the stale
//! bound, and no `resolved` may arrive: the image is still SAVING as far as anyone knows.
//! The image becomes ACTIVE while the zone still fails, and still nothing may resolve; once
//! the zone answers again, the `resolved` must arrive.
//!
//! Every payload delivered is written to target/alertmanager-deliveries.json, and each
//! alert's status, summary and labels are printed (`-- --nocapture` to see them).
//!
//! Needs `prometheus` and `alertmanager` (Debian: `prometheus`, `prometheus-alertmanager`,
//! whose binary is `prometheus-alertmanager`) on PATH:
//! `cargo test --test e2e_alertmanager -- --include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use flexcloud_sim::{Fault, FaultAction, Scenario};
use serde_json::Value;

#[path = "common/e2e.rs"]
mod e2e;
use e2e::{
    JOB, Running, exporter_address, firing_with, instant_query, listening_address, scratch_dir,
    start_exporter, start_prometheus, start_simulator, toolkit_address, wait_ready,
};
#[path = "common/alerting.rs"]
mod alerting;
use alerting::{Receiver, alerting_to, delivered_alerts, start_alertmanager};

const USER: &str = "exporter";
const PASSWORD: &str = "e2e-secret";
const ACCOUNT: &str = "acme1234";
const ZONE: &str = "USOTE-2012-TAMPA";
const OTHER_ZONE: &str = "USOTE-2012-DALLAS";
const IMAGE_ID: &str = "102";
const IMAGE_NAME: &str = "web-01-nightly";
const ALERT: &str = "FlexcloudImageStuckSaving";
/// FLEXCLOUD_STALE_AFTER for the exporter: the outage lasts five times as long.
const STALE_AFTER: Duration = Duration::from_secs(5);
const OUTAGE: Duration = Duration::from_secs(25);
/// How long any one condition may take to come true.
const WAIT: Duration = Duration::from_secs(90);

fn wait_for<T>(
    what: &str,
    processes: &mut [&mut Running],
    check: impl FnMut() -> Result<T, String>,
) -> T {
    e2e::wait_for(what, WAIT, processes, check)
}

/// The stuck-SAVING alerts of image 102 in its zone with `status`, from every delivery.
fn stuck_alerts(deliveries: &[Value], status: &str) -> Vec<Value> {
    delivered_alerts(deliveries)
        .into_iter()
        .filter(|a| {
            a["status"] == status
                && a["labels"]["alertname"] == ALERT
                && a["labels"]["image_id"] == IMAGE_ID
                && a["labels"]["zone_id"] == ZONE
        })
        .collect()
}

fn scenario() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &[ACCOUNT])
        .account(ACCOUNT, &[ZONE, OTHER_ZONE])
        .image(ACCOUNT, "101", "ACTIVE", "BASE", &[ZONE, OTHER_ZONE])
        .image_with(
            ACCOUNT,
            IMAGE_ID,
            "SAVING",
            "SERVER",
            &[ZONE],
            |mut image| {
                image.name = IMAGE_NAME.into();
                image.age = Some(Duration::from_secs(3 * 3600));
                image
            },
        )
}

#[test]
#[ignore = "needs prometheus and alertmanager"]
fn stuck_saving_alert_is_delivered_held_through_an_outage_and_resolved_when_fixed() {
    let dir = scratch_dir("e2e_alertmanager");
    let api = start_simulator(scenario());
    let receiver = Receiver::start("alertmanager-deliveries.json");
    let stale_after = format!("{}s", STALE_AFTER.as_secs());
    let mut exporter = start_exporter(
        &dir,
        api.sim.addr(),
        &[
            ("FLEXCLOUD_USERNAME", USER),
            ("FLEXCLOUD_PASSWORD", PASSWORD),
            ("FLEXCLOUD_ACCOUNTS", ACCOUNT),
            ("FLEXCLOUD_INTERVAL", "1s"),
            ("FLEXCLOUD_TIMEOUT", "900ms"),
            ("FLEXCLOUD_STALE_AFTER", &stale_after),
        ],
    );
    let exporter_addr = listening_address(&mut exporter, exporter_address);
    wait_ready("the exporter", exporter_addr, &mut [&mut exporter]);

    let mut alertmanager = start_alertmanager(&dir, receiver.addr);
    let am = listening_address(&mut alertmanager, toolkit_address);
    wait_ready("Alertmanager", am, &mut [&mut exporter, &mut alertmanager]);

    let mut prometheus = start_prometheus(&dir, exporter_addr, &alerting_to(am));
    let prom = listening_address(&mut prometheus, toolkit_address);
    let mut all = [&mut exporter, &mut alertmanager, &mut prometheus];
    wait_ready("Prometheus", prom, &mut all);

    // Delivered firing, with everything a person needs at 3 a.m.
    let fired = wait_for("the stuck-SAVING alert to be delivered", &mut all, || {
        stuck_alerts(&receiver.deliveries(), "firing")
            .into_iter()
            .next()
            .ok_or_else(|| format!("deliveries so far: {:?}", receiver.deliveries()))
    });
    let labels = &fired["labels"];
    for (label, value) in [
        ("job", JOB),
        ("severity", "warning"),
        ("account_id", ACCOUNT),
        ("zone_id", ZONE),
        ("image_id", IMAGE_ID),
        ("image_name", IMAGE_NAME),
        ("image_type", "SERVER"),
    ] {
        assert_eq!(labels[label], value, "{label} of {fired}");
    }
    let summary = fired["annotations"]["summary"].as_str().unwrap_or_default();
    for part in [
        ACCOUNT,
        ZONE,
        IMAGE_NAME,
        IMAGE_ID,
        "stuck in SAVING for 3h",
    ] {
        assert!(
            summary.contains(part),
            "summary without {part:?}: {summary}"
        );
    }
    let runbook_url = fired["annotations"]["runbook_url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        runbook_url.starts_with("https://")
            && runbook_url.ends_with("/docs/runbook.md#flexcloudimagestucksaving"),
        "runbook_url is not an absolute link to the section: {runbook_url}"
    );

    // The outage: the image's zone answers 503, for five times the stale bound.
    api.sim.add_fault(
        Fault::on(
            &format!("/accounts/{ACCOUNT}/flexcloud/images/detail"),
            FaultAction::Status {
                status: 503,
                body: None,
                retry_after: None,
            },
        )
        .with_query(&format!("zone={ZONE}")),
    );
    let zone = format!("account_id=\"{ACCOUNT}\",zone_id=\"{ZONE}\"");
    wait_for("Prometheus to see the zone fail", &mut all, || {
        let failed = instant_query(prom, &format!("flexcloud_probe_success{{{zone}}} == 0"))?;
        if failed.is_empty() {
            Err("the zone's probe still succeeds".into())
        } else {
            Ok(())
        }
    });
    let no_resolve_for = |what: &str, how_long: Duration, all: &mut [&mut Running]| {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            for process in all.iter_mut() {
                process.assert_alive();
            }
            let resolved = stuck_alerts(&receiver.deliveries(), "resolved");
            assert!(resolved.is_empty(), "resolved {what}: {resolved:?}");
            thread::sleep(Duration::from_millis(500));
        }
    };
    no_resolve_for("during the outage", OUTAGE, &mut all);
    // Well past the stale bound: the zone's counts are gone, its SAVING image is held, and
    // the alert still fires.
    let counts = instant_query(prom, &format!("flexcloud_images{{{zone}}}")).unwrap();
    assert!(
        counts.is_empty(),
        "counts outlived FLEXCLOUD_STALE_AFTER: {counts:?}"
    );
    let held = instant_query(
        prom,
        &format!("flexcloud_image_saving_created_timestamp_seconds{{{zone}}}"),
    )
    .unwrap();
    assert_eq!(held.len(), 1, "the SAVING image is held: {held:?}");
    firing_with(prom, ALERT, &[("zone_id", ZONE), ("image_id", IMAGE_ID)])
        .unwrap_or_else(|e| panic!("{e}"));

    // Fixed at the API while the zone still fails: nobody can know yet.
    api.sim.update(|scenario| {
        for image in scenario.images.iter_mut().filter(|i| i.id == IMAGE_ID) {
            image.status = "ACTIVE".into();
        }
    });
    no_resolve_for(
        "while the zone could not be read",
        Duration::from_secs(5),
        &mut all,
    );

    // The zone answers again and shows the image ACTIVE: now it resolves.
    api.sim.clear_faults();
    let resolved = wait_for("the resolve to be delivered", &mut all, || {
        stuck_alerts(&receiver.deliveries(), "resolved")
            .into_iter()
            .next()
            .ok_or_else(|| "no resolved FlexcloudImageStuckSaving yet".to_string())
    });
    assert_eq!(
        resolved["labels"], fired["labels"],
        "the same alert resolves"
    );
    // The failure alert of the outage resolves with it.
    wait_for("the failing probe's resolve", &mut all, || {
        let deliveries = receiver.deliveries();
        deliveries
            .iter()
            .flat_map(|d| d["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| {
                a["status"] == "resolved"
                    && a["labels"]["alertname"] == "FlexcloudProbeFailing"
                    && a["labels"]["zone_id"] == ZONE
            })
            .ok_or_else(|| "no resolved FlexcloudProbeFailing yet".to_string())
    });
    // Never a second firing episode: one page for the incident.
    let starts: Vec<Value> = stuck_alerts(&receiver.deliveries(), "firing")
        .iter()
        .map(|a| a["startsAt"].clone())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] == w[1]),
        "the alert started more than once: {starts:?}"
    );

    // Stop everything before removing the directory Prometheus and Alertmanager write into.
    drop(prometheus);
    drop(alertmanager);
    drop(exporter);
    drop(api);
    drop(receiver);
    let _ = fs::remove_dir_all(&dir);
}
