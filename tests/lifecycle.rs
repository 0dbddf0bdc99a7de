//! Images followed across cycles against the simulator: the collector's cycles run one by
//! one, the scenario changes in between (or on the simulator's schedule), and the lifecycle
//! counters, histogram and gauges are read from the published exposition with exact values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{Harness, Metrics, PASSWORD, USER};
use flexcloud_sim::{Fault, FaultAction, ImageChange, Scenario};

const TRANSITIONS: &str = "flexcloud_image_transitions_total";
const APPEARED: &str = "flexcloud_images_appeared_total";
const DISAPPEARED: &str = "flexcloud_images_disappeared_total";
const TRACKED: &str = "flexcloud_images_tracked";
const DELETED_AGE: &str = "flexcloud_images_deleted_oldest_seen_age_seconds";
const SAVES: &str = "flexcloud_image_save_duration_seconds";

/// A creation time `ago` before now, in the API's format (whole seconds).
fn created_ago(ago: Duration) -> (String, SystemTime) {
    let at = SystemTime::now() - ago;
    let text = humantime::format_rfc3339_seconds(at).to_string();
    let whole = SystemTime::UNIX_EPOCH
        + Duration::from_secs(at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs());
    (text.trim_end_matches('Z').to_string(), whole)
}

fn transitions(m: &Metrics) -> Vec<(String, f64)> {
    m.series(TRANSITIONS, &[])
}

fn transition(m: &Metrics, account: &str, image_type: &str, from: &str, to: &str) -> f64 {
    m.value(
        TRANSITIONS,
        &[
            ("account_id", account),
            ("image_type", image_type),
            ("from", from),
            ("to", to),
        ],
    )
}

fn per_account(m: &Metrics, name: &str, account: &str) -> f64 {
    m.value(name, &[("account_id", account)])
}

fn set_status(scenario: &mut Scenario, id: &str, status: &str) {
    let image = scenario.images.iter_mut().find(|i| i.id == id).unwrap();
    image.status = status.into();
}

/// A listing of `zone` of `account` that answers 403 (not retried), so the zone's probe fails.
fn zone_fails(account: &str, zone: &str) -> Fault {
    Fault::on(
        &format!("/accounts/{account}/flexcloud/images/detail"),
        FaultAction::Status {
            status: 403,
            body: None,
            retry_after: None,
        },
    )
    .with_query(&format!("zone={zone}"))
}

#[tokio::test]
async fn the_first_cycle_is_a_baseline_then_changes_and_a_save_are_counted_exactly() {
    let (created, created_at) = created_ago(Duration::from_secs(240));
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("acme", &["Z1", "Z2"])
        .image_with("acme", "1", "SAVING", "SERVER", &["Z1"], |mut i| {
            i.created = created.clone();
            i
        })
        .image("acme", "2", "ACTIVE", "BASE", &["Z1", "Z2"])
        .image("acme", "3", "ACTIVE", "SERVER", &["Z2"])
        .image("acme", "4", "DELETED", "SERVER", &["Z2"]);
    let mut h = Harness::start(scenario, &[]).await;

    let first = h.cycle().await;
    let baseline_at = SystemTime::now();
    assert!(transitions(&first).is_empty(), "{}", first.text);
    assert_eq!(per_account(&first, APPEARED, "acme"), 0.0);
    assert_eq!(per_account(&first, DISAPPEARED, "acme"), 0.0);
    // Image 2 is in two zones and counts once.
    assert_eq!(per_account(&first, TRACKED, "acme"), 4.0);
    for image_type in ["BASE", "SERVER"] {
        let count = first.value(&format!("{SAVES}_count"), &[("image_type", image_type)]);
        assert_eq!(count, 0.0, "{image_type}");
    }
    let z2_server = [
        ("account_id", "acme"),
        ("zone_id", "Z2"),
        ("image_type", "SERVER"),
    ];
    assert!(first.value(DELETED_AGE, &z2_server) <= 1.0);
    assert_eq!(
        first.value(
            DELETED_AGE,
            &[
                ("account_id", "acme"),
                ("zone_id", "Z1"),
                ("image_type", "SERVER")
            ]
        ),
        0.0
    );

    // The save completes, image 2 is deleted, 3 vanishes and 5 is new.
    let switched_at = SystemTime::now();
    h.sim.update(|s| {
        set_status(s, "1", "ACTIVE");
        set_status(s, "2", "DELETED");
        s.images.retain(|i| i.id != "3");
    });
    h.sim
        .update(|s| *s = s.clone().image("acme", "5", "ACTIVE", "BASE", &["Z1"]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = h.cycle().await;
    let seen_at = SystemTime::now();
    assert_eq!(transitions(&second).len(), 2, "{}", second.text);
    assert_eq!(
        transition(&second, "acme", "SERVER", "SAVING", "ACTIVE"),
        1.0
    );
    assert_eq!(
        transition(&second, "acme", "BASE", "ACTIVE", "DELETED"),
        1.0
    );
    assert_eq!(per_account(&second, APPEARED, "acme"), 1.0);
    assert_eq!(per_account(&second, DISAPPEARED, "acme"), 1.0);
    assert_eq!(per_account(&second, TRACKED, "acme"), 4.0);

    // The save took from `created` to the switch; the exporter saw the end in the next
    // cycle, within one interval (here: between the switch and the end of that cycle).
    let server = [("image_type", "SERVER")];
    assert_eq!(second.value(&format!("{SAVES}_count"), &server), 1.0);
    assert_eq!(
        second.value(&format!("{SAVES}_count"), &[("image_type", "BASE")]),
        0.0
    );
    let observed = second.value(&format!("{SAVES}_sum"), &server);
    let truth = switched_at
        .duration_since(created_at)
        .unwrap()
        .as_secs_f64();
    let interval = seen_at.duration_since(switched_at).unwrap().as_secs_f64();
    assert!(
        observed >= truth.floor() && observed <= truth + interval + 1.0,
        "save of {observed} s, truth {truth} s, seen within {interval} s"
    );
    assert_eq!(
        second.value(
            &format!("{SAVES}_bucket"),
            &[("image_type", "SERVER"), ("le", "120")]
        ),
        0.0
    );
    assert_eq!(
        second.value(
            &format!("{SAVES}_bucket"),
            &[("image_type", "SERVER"), ("le", "300")]
        ),
        1.0
    );

    // Image 4 has been DELETED since the baseline; image 2 since this cycle, in both zones.
    let since_baseline = SystemTime::now()
        .duration_since(baseline_at)
        .unwrap()
        .as_secs_f64();
    let age = second.value(DELETED_AGE, &z2_server);
    assert!(
        age >= 1.0 && age <= since_baseline + 2.0,
        "{age} vs {since_baseline}"
    );
    for zone in ["Z1", "Z2"] {
        let base = [
            ("account_id", "acme"),
            ("zone_id", zone),
            ("image_type", "BASE"),
        ];
        assert!(second.value(DELETED_AGE, &base) <= 1.0, "{zone}");
    }

    // Nothing changes: the counters stay, nothing new is observed.
    let third = h.cycle().await;
    assert_eq!(transitions(&third), transitions(&second));
    assert_eq!(per_account(&third, APPEARED, "acme"), 1.0);
    assert_eq!(per_account(&third, DISAPPEARED, "acme"), 1.0);
    assert_eq!(third.value(&format!("{SAVES}_count"), &server), 1.0);
    h.stop().await;
}

#[tokio::test]
async fn a_failed_zone_counts_nothing_and_an_image_moving_zones_is_one_image() {
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("acme", &["Z1", "Z2"])
        .image("acme", "1", "ACTIVE", "SERVER", &["Z1"])
        .image("acme", "2", "SAVING", "SERVER", &["Z1"])
        .image("acme", "3", "ACTIVE", "SERVER", &["Z2"]);
    let mut h = Harness::start(scenario, &[]).await;
    h.cycle().await;

    // Z1 cannot be read. Image 1 moves to Z2 and turns DELETED, image 2 finishes saving
    // unseen, image 3 goes.
    h.sim.add_fault(zone_fails("acme", "Z1"));
    h.sim.update(|s| {
        for image in &mut s.images {
            if image.id == "1" {
                image.zones = vec!["Z2".into()];
                image.status = "DELETED".into();
            }
        }
        set_status(s, "2", "ACTIVE");
        s.images.retain(|i| i.id != "3");
    });
    let during = h.cycle().await;
    assert_eq!(
        during.value(
            "flexcloud_probe_success",
            &[("account_id", "acme"), ("zone_id", "Z1")]
        ),
        0.0
    );
    // Image 1 is read in Z2: its change counts, and it is the same image, not a new one.
    assert_eq!(
        transitions(&during),
        [(
            format!(
                "{TRANSITIONS}{{account_id=\"acme\",from=\"ACTIVE\",image_type=\"SERVER\",to=\"DELETED\"}}"
            ),
            1.0
        )]
    );
    assert_eq!(per_account(&during, APPEARED, "acme"), 0.0);
    // Image 3 was last seen in Z2, which was read: gone. Image 2 may still be in Z1: kept.
    assert_eq!(per_account(&during, DISAPPEARED, "acme"), 1.0);
    assert_eq!(per_account(&during, TRACKED, "acme"), 2.0);

    h.sim.clear_faults();
    let after = h.cycle().await;
    assert_eq!(transitions(&after).len(), 2, "{}", after.text);
    assert_eq!(
        transition(&after, "acme", "SERVER", "SAVING", "ACTIVE"),
        1.0
    );
    assert_eq!(
        transition(&after, "acme", "SERVER", "ACTIVE", "DELETED"),
        1.0
    );
    // Image 1 is no longer in Z1 now that Z1 is read, but is in Z2: no disappearance.
    assert_eq!(per_account(&after, APPEARED, "acme"), 0.0);
    assert_eq!(per_account(&after, DISAPPEARED, "acme"), 1.0);
    assert_eq!(per_account(&after, TRACKED, "acme"), 2.0);
    h.stop().await;
}

#[tokio::test]
async fn a_failed_zone_list_leaves_the_account_as_it_was() {
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("acme", &["Z1"])
        .image("acme", "1", "ACTIVE", "SERVER", &["Z1"])
        .image("acme", "2", "ACTIVE", "SERVER", &["Z1"]);
    let mut h = Harness::start(scenario, &[]).await;
    h.cycle().await;
    h.sim.add_fault(Fault::on(
        "/accounts/acme/flexcloud/zone",
        FaultAction::Status {
            status: 403,
            body: None,
            retry_after: None,
        },
    ));
    h.sim.update(|s| s.images.clear());
    let during = h.cycle().await;
    assert_eq!(per_account(&during, DISAPPEARED, "acme"), 0.0);
    h.sim.clear_faults();
    let after = h.cycle().await;
    assert_eq!(per_account(&after, DISAPPEARED, "acme"), 2.0);
    assert_eq!(per_account(&after, TRACKED, "acme"), 0.0);
    h.stop().await;
}

#[tokio::test]
async fn an_account_discovered_later_sets_its_own_baseline() {
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("acme", &["Z1"])
        .image("acme", "1", "ACTIVE", "SERVER", &["Z1"]);
    let mut h = Harness::start(scenario, &[]).await;
    h.cycle().await;
    h.sim.update(|s| {
        *s = s
            .clone()
            .account("later", &["Z1"])
            .image("later", "7", "ACTIVE", "SERVER", &["Z1"])
            .image("later", "8", "SAVING", "BASE", &["Z1"])
            .image("acme", "2", "ACTIVE", "SERVER", &["Z1"]);
    });
    let m = h.cycle().await;
    assert_eq!(per_account(&m, APPEARED, "later"), 0.0);
    assert_eq!(per_account(&m, TRACKED, "later"), 2.0);
    assert_eq!(per_account(&m, APPEARED, "acme"), 1.0);
    assert!(transitions(&m).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn scheduled_changes_are_counted_once_seen_and_a_save_is_timed_within_one_interval() {
    // Changes 3 s after the scenario loads, so the baseline cycle surely comes first.
    let after = Duration::from_secs(3);
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("acme", &["Z1", "Z2"])
        .image_with("acme", "save", "SAVING", "SERVER", &["Z1"], |i| {
            let mut i = i.change(ImageChange::status(after, "ACTIVE"));
            i.age = Some(Duration::from_secs(240));
            i
        })
        .image_with("acme", "move", "ACTIVE", "BASE", &["Z1"], |i| {
            i.change(ImageChange::zones(after, &["Z2"]))
        })
        .image_with("acme", "delete", "ACTIVE", "SERVER", &["Z2"], |i| {
            i.change(ImageChange::status(after, "DELETED"))
        })
        .image_with("acme", "vanish", "ACTIVE", "SERVER", &["Z2"], |i| {
            i.change(ImageChange::vanish(after))
        });
    let before_load = SystemTime::now();
    let mut h = Harness::start(scenario, &[]).await;
    let first = h.cycle().await;
    assert!(
        SystemTime::now() < before_load + after,
        "the baseline cycle took too long to come before the changes"
    );
    assert!(transitions(&first).is_empty());
    assert_eq!(per_account(&first, TRACKED, "acme"), 4.0);

    // Cycles a quarter of a second apart until one sees the changes.
    let mut previous_end = SystemTime::now();
    let (m, seen_at) = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let m = h.cycle().await;
        let end = SystemTime::now();
        if !transitions(&m).is_empty() {
            break (m, end);
        }
        assert!(
            end < before_load + after + Duration::from_secs(30),
            "no change seen"
        );
        previous_end = end;
    };
    assert!(previous_end < seen_at);
    assert_eq!(transitions(&m).len(), 2, "{}", m.text);
    assert_eq!(transition(&m, "acme", "SERVER", "SAVING", "ACTIVE"), 1.0);
    assert_eq!(transition(&m, "acme", "SERVER", "ACTIVE", "DELETED"), 1.0);
    // The moved image is one image; the vanished one is gone.
    assert_eq!(per_account(&m, APPEARED, "acme"), 0.0);
    assert_eq!(per_account(&m, DISAPPEARED, "acme"), 1.0);
    assert_eq!(per_account(&m, TRACKED, "acme"), 3.0);

    // The truth is 240 s of age at load plus 3 s to the switch; the end was seen by the
    // first cycle after it, at most one interval (that cycle's start and run) late.
    let server = [("image_type", "SERVER")];
    assert_eq!(m.value(&format!("{SAVES}_count"), &server), 1.0);
    let observed = m.value(&format!("{SAVES}_sum"), &server);
    let truth = 243.0;
    let late = seen_at
        .duration_since(before_load + after)
        .unwrap()
        .as_secs_f64();
    assert!(
        observed >= truth - 1.0 && observed <= truth + late + 1.0,
        "save of {observed} s, truth {truth} s, seen at most {late} s late"
    );
    h.stop().await;
}

/// The demo (`--demo`, the binary with its built-in simulated fleet) completes a save
/// 40 s after it starts; its 15 s cycles see it by the cycle at 45 s.
#[tokio::test]
#[ignore = "needs real time (up to two minutes)"]
async fn the_demo_shows_a_completed_save_within_two_minutes() {
    let env = [
        ("FLEXCLOUD_LISTEN_ADDRESS", "127.0.0.1:0"),
        ("FLEXCLOUD_LOG_FORMAT", "json"),
    ];
    let mut demo = common::Running::start(&env, &["--demo"]);
    let address = demo.address();
    let started = std::time::Instant::now();
    let client = reqwest::Client::new();
    loop {
        let text = client
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        let m = Metrics::parse(&text);
        let saves: f64 = m
            .series(&format!("{SAVES}_count"), &[])
            .iter()
            .map(|(_, n)| n)
            .sum();
        if saves >= 1.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no completed save in the demo after two minutes:\n{}",
            demo.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
