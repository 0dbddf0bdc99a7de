//! The exporter's collection and metrics contract against the simulator over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Harness, Metrics, PASSWORD, USER};
use flexcloud_sim::{Fault, FaultAction, Scenario};

fn fleet() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &["acme", "globex", "secret"])
        .account("acme", &["TAMPA", "AUSTIN"])
        .account("globex", &["TAMPA"])
        .account("other", &["TAMPA"])
        .account_with_status("closedco", "closed", &["TAMPA"])
        .image("acme", "1", "ACTIVE", "BASE", &["TAMPA"])
        .image("acme", "2", "ACTIVE", "BASE", &["TAMPA", "AUSTIN"])
        .image("acme", "3", "ACTIVE", "SERVER", &["AUSTIN"])
        .image("acme", "4", "DELETED", "SERVER", &["TAMPA"])
        .image_with("acme", "5", "SAVING", "SERVER", &["TAMPA"], |mut i| {
            i.name = "db \"primary\"\nsnapshot".into();
            i.age = Some(Duration::from_secs(3 * 3600));
            i
        })
        .image_with("acme", "6", "SAVING", "SERVER", &["TAMPA"], |mut i| {
            i.age = Some(Duration::from_secs(600));
            i
        })
        .image_with("acme", "lenny", "ACTIVE", "BASE", &["AUSTIN"], |mut i| {
            i.legacy = true;
            i
        })
        .image("globex", "7", "ACTIVE", "SERVER", &["TAMPA"])
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const IMAGES: &str = "flexcloud_images";

fn images(
    account: &str,
    zone: &str,
    status: &str,
    image_type: &str,
) -> [(&'static str, String); 4] {
    [
        ("account_id", account.into()),
        ("zone_id", zone.into()),
        ("status", status.into()),
        ("image_type", image_type.into()),
    ]
}

fn labels<'a, const N: usize>(
    pairs: &'a [(&'static str, String); N],
) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn realistic_fleet_is_counted_by_status_type_and_zone() {
    let mut h = Harness::start(fleet(), &[]).await;
    // Times are checked against these two, however long the cycle took.
    let before = now();
    let m = h.cycle().await;
    let after = now();
    let expect = [
        ("acme", "TAMPA", "ACTIVE", "BASE", 2.0),
        ("acme", "TAMPA", "SAVING", "SERVER", 2.0),
        ("acme", "TAMPA", "DELETED", "SERVER", 1.0),
        ("acme", "TAMPA", "ACTIVE", "SERVER", 0.0),
        ("acme", "TAMPA", "SAVING", "BASE", 0.0),
        ("acme", "TAMPA", "DELETED", "BASE", 0.0),
        // Image 2 is in both zones and counts in each; the legacy image has no zones
        // field but was listed under the AUSTIN filter.
        ("acme", "AUSTIN", "ACTIVE", "BASE", 2.0),
        ("acme", "AUSTIN", "ACTIVE", "SERVER", 1.0),
        ("acme", "AUSTIN", "SAVING", "SERVER", 0.0),
        ("globex", "TAMPA", "ACTIVE", "SERVER", 1.0),
        ("globex", "TAMPA", "ACTIVE", "BASE", 0.0),
    ];
    for (account, zone, status, image_type, n) in expect {
        let l = images(account, zone, status, image_type);
        assert_eq!(
            m.value(IMAGES, &labels(&l)),
            n,
            "{account} {zone} {status} {image_type}"
        );
    }
    // Every status x type combination for each of the 3 zones with data, nothing else.
    assert_eq!(m.series(IMAGES, &[]).len(), 3 * 6);
    // "secret" is readable per the user but does not exist; "other" is not the user's;
    // "closedco" is not open: discovery lists acme and globex only.
    assert_eq!(m.value("flexcloud_accounts_watched", &[]), 2.0);
    assert_eq!(m.value("flexcloud_zones_watched", &[]), 3.0);
    assert_eq!(m.value("flexcloud_up", &[]), 1.0);

    let age = m.value(
        "flexcloud_images_saving_oldest_age_seconds",
        &[
            ("account_id", "acme"),
            ("zone_id", "TAMPA"),
            ("image_type", "SERVER"),
        ],
    );
    // The simulator writes `created` as (request time - 3 h) cut to whole seconds; the
    // exporter takes the age when it publishes, after the request.
    let three_hours = 3.0 * 3600.0;
    assert!(
        (three_hours..=three_hours + (after - before) + 1.0).contains(&age),
        "oldest SAVING age {age}"
    );
    assert_eq!(
        m.value(
            "flexcloud_images_saving_oldest_age_seconds",
            &[
                ("account_id", "acme"),
                ("zone_id", "TAMPA"),
                ("image_type", "BASE")
            ]
        ),
        0.0
    );
    let created = m.value(
        "flexcloud_image_saving_created_timestamp_seconds",
        &[
            ("account_id", "acme"),
            ("zone_id", "TAMPA"),
            ("image_type", "SERVER"),
            ("image_id", "5"),
            ("image_name", "db \"primary\"\nsnapshot"),
        ],
    );
    assert!(
        (before - three_hours - 1.0..=after - three_hours).contains(&created),
        "created {created}, cycle from {before} to {after}"
    );
    assert_eq!(
        m.series("flexcloud_image_saving_created_timestamp_seconds", &[])
            .len(),
        2
    );

    for (account, zone) in [("acme", "TAMPA"), ("acme", "AUSTIN"), ("globex", "TAMPA")] {
        let z = [("account_id", account), ("zone_id", zone)];
        assert_eq!(m.value("flexcloud_probe_success", &z), 1.0);
        assert_eq!(m.value("flexcloud_probe_http_status_code", &z), 200.0);
        let last_success = m.value("flexcloud_last_success_timestamp_seconds", &z);
        assert!(
            (before..=after).contains(&last_success),
            "last success {last_success}, cycle from {before} to {after}"
        );
        assert!(m.value("flexcloud_probe_duration_seconds", &z) > 0.0);
    }
    // One accounts call, one zone call per account, two image calls per zone.
    let requests = |endpoint: &str, account: &str| {
        m.value(
            "flexcloud_api_requests_total",
            &[
                ("account_id", account),
                ("endpoint", endpoint),
                ("code", "200"),
            ],
        )
    };
    assert_eq!(requests("accounts", ""), 1.0);
    assert_eq!(requests("zones", "acme"), 1.0);
    assert_eq!(requests("images_detail", "acme"), 4.0);
    assert_eq!(requests("images_detail", "globex"), 2.0);
    assert_eq!(
        m.value(
            "flexcloud_api_request_duration_seconds_count",
            &[("endpoint", "images_detail")]
        ),
        6.0,
        "the latency is per endpoint only: acme's 4 requests and globex's 2"
    );
    assert_eq!(
        m.value(
            "flexcloud_discovery_success",
            &[("account_id", ""), ("step", "accounts")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "flexcloud_discovery_success",
            &[("account_id", "acme"), ("step", "zones")]
        ),
        1.0
    );
    assert_eq!(m.value("flexcloud_collection_cycles_total", &[]), 1.0);
    assert_eq!(
        m.value(
            "flexcloud_exporter_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", env!("FLEXCLOUD_REVISION"))
            ]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn the_exporter_asks_for_each_type_per_zone_with_credentials_and_json_headers() {
    let mut h = Harness::start(fleet(), &[]).await;
    h.cycle().await;
    let mut image_queries: Vec<String> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/accounts/acme/flexcloud/images/detail")
        .map(|r| r.query)
        .collect();
    image_queries.sort();
    assert_eq!(
        image_queries,
        [
            "zone=AUSTIN&type=BASE&page=1&pageSize=400",
            "zone=AUSTIN&type=SERVER&page=1&pageSize=400",
            "zone=TAMPA&type=BASE&page=1&pageSize=400",
            "zone=TAMPA&type=SERVER&page=1&pageSize=400"
        ]
    );
    assert!(
        h.sim
            .requests()
            .iter()
            .all(|r| r.user.as_deref() == Some(USER))
    );
    h.stop().await;
}

#[tokio::test]
async fn more_than_400_accounts_are_discovered_page_by_page_asking_for_400_at_once() {
    let mut scenario = Scenario::default().user(USER, PASSWORD, &["*"]);
    for i in 0..460 {
        scenario = scenario.account(&format!("acct{i:03}"), &["Z1"]);
    }
    for i in 0..5 {
        scenario = scenario.account_with_status(&format!("gone{i}"), "closed", &["Z1"]);
    }
    let mut h = Harness::start(scenario, &[("FLEXCLOUD_CONCURRENCY", "32")]).await;
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_accounts_watched", &[]), 460.0);
    assert_eq!(m.value("flexcloud_zones_watched", &[]), 460.0);
    let accounts = |code| {
        m.value(
            "flexcloud_api_requests_total",
            &[("account_id", ""), ("endpoint", "accounts"), ("code", code)],
        )
    };
    // 465 accounts in the list (five closed) are two pages of 400; no 303 is spent.
    assert_eq!(
        m.get(
            "flexcloud_api_requests_total",
            &[
                ("account_id", ""),
                ("endpoint", "accounts"),
                ("code", "303")
            ]
        ),
        None
    );
    assert_eq!(accounts("200"), 2.0);
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "acct459"), ("zone_id", "Z1")]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn large_image_lists_are_followed_across_pages() {
    let mut scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("big", &["Z1"]);
    for i in 0..930 {
        let status = if i % 10 == 0 { "DELETED" } else { "ACTIVE" };
        scenario = scenario.image("big", &i.to_string(), status, "SERVER", &["Z1"]);
    }
    let mut h = Harness::start(scenario, &[]).await;
    let m = h.cycle().await;
    let active = images("big", "Z1", "ACTIVE", "SERVER");
    let deleted = images("big", "Z1", "DELETED", "SERVER");
    assert_eq!(m.value(IMAGES, &labels(&active)), 837.0);
    assert_eq!(m.value(IMAGES, &labels(&deleted)), 93.0);
    let detail = |code| {
        m.value(
            "flexcloud_api_requests_total",
            &[
                ("account_id", "big"),
                ("endpoint", "images_detail"),
                ("code", code),
            ],
        )
    };
    // SERVER: three pages of 400; BASE: one short answer; no 303.
    assert_eq!(
        m.get(
            "flexcloud_api_requests_total",
            &[
                ("account_id", "big"),
                ("endpoint", "images_detail"),
                ("code", "303")
            ]
        ),
        None
    );
    assert_eq!(detail("200"), 4.0);
    h.stop().await;
}

#[tokio::test]
async fn zones_are_discovered_per_account_unless_configured() {
    let mut h = Harness::start(fleet(), &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    let m = h.cycle().await;
    assert_eq!(m.series("flexcloud_probe_success", &[]).len(), 2);
    assert!(
        m.get(
            "flexcloud_discovery_success",
            &[("account_id", ""), ("step", "accounts")]
        )
        .is_none()
    );
    h.stop().await;

    let mut h = Harness::start(
        fleet(),
        &[
            ("FLEXCLOUD_ACCOUNTS", "acme,globex"),
            ("FLEXCLOUD_ZONES", "AUSTIN"),
        ],
    )
    .await;
    let m = h.cycle().await;
    assert_eq!(m.series("flexcloud_probe_success", &[]).len(), 2);
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "globex"), ("zone_id", "AUSTIN")]
        ),
        1.0
    );
    assert!(
        h.sim.requests().iter().all(|r| !r.path.ends_with("/zone")),
        "no zone discovery when zones are set"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_password_costs_two_rejected_requests_then_nothing_is_sent() {
    let scenario = fleet();
    let mut h = Harness::start(
        scenario,
        &[
            ("FLEXCLOUD_ACCOUNTS", "acme,globex"),
            ("FLEXCLOUD_CONCURRENCY", "8"),
        ],
    )
    .await;
    h.sim.update(|s| s.users[0].password = "rotated".into());
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_up", &[]), 0.0);
    // One request went alone, got a 401; a second, alone too, confirmed it: two requests,
    // both rejected, whatever the concurrency.
    let statuses: Vec<f64> = m
        .series("flexcloud_discovery_http_status_code", &[("step", "zones")])
        .iter()
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(statuses, [401.0, 401.0]);
    assert_eq!(h.sim.requests().len(), 2);
    let rejected: f64 = m
        .series("flexcloud_api_requests_total", &[("code", "401")])
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(rejected, 2.0);
    assert!(m.series(IMAGES, &[]).is_empty());
    assert_eq!(m.value("flexcloud_credential_backoff_seconds", &[]), 120.0);

    // Held back: the next cycle sends nothing, and says so without claiming a 401.
    let held = h.cycle().await;
    assert_eq!(h.sim.requests().len(), 2);
    let statuses: Vec<f64> = held
        .series("flexcloud_discovery_http_status_code", &[("step", "zones")])
        .iter()
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(statuses, [0.0, 0.0]);
    assert_eq!(held.value("flexcloud_up", &[]), 0.0);
    h.stop().await;
}

#[tokio::test]
async fn a_401_for_one_account_is_reported_on_it_and_does_not_stop_the_others() {
    let scenario = fleet().account("locked", &["TAMPA"]).fault(Fault::on(
        "/accounts/locked/*",
        FaultAction::Status {
            status: 401,
            body: None,
            retry_after: None,
        },
    ));
    let scenario = Scenario {
        users: vec![],
        ..scenario
    }
    .user(USER, PASSWORD, &["acme", "globex", "locked"]);
    let mut h = Harness::start(scenario, &[("FLEXCLOUD_ACCOUNTS", "acme,globex,locked")]).await;
    let m = h.cycle().await;
    let zones = |m: &Metrics, account: &str| {
        m.value(
            "flexcloud_discovery_http_status_code",
            &[("account_id", account), ("step", "zones")],
        )
    };
    assert_eq!(zones(&m, "locked"), 401.0);
    assert_eq!(zones(&m, "acme"), 200.0);
    assert_eq!(zones(&m, "globex"), 200.0);
    assert_eq!(m.value("flexcloud_up", &[]), 1.0, "the credentials work");
    assert_eq!(m.value("flexcloud_credential_backoff_seconds", &[]), 0.0);
    assert_eq!(
        m.value(
            "flexcloud_account_credential_backoff_seconds",
            &[("account_id", "locked")]
        ),
        120.0
    );
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "acme"), ("zone_id", "TAMPA")]
        ),
        1.0
    );
    // The next cycle leaves that account alone and reads the others.
    let next = h.cycle().await;
    assert_eq!(zones(&next, "locked"), 0.0);
    assert_eq!(zones(&next, "globex"), 200.0);
    let to_locked = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/accounts/locked/"))
        .count();
    assert_eq!(
        to_locked, 1,
        "one rejected request for that account in two cycles"
    );
    h.stop().await;
}

#[tokio::test]
async fn unknown_account_is_404_and_leaves_the_others_intact() {
    let mut h = Harness::start(fleet(), &[("FLEXCLOUD_ACCOUNTS", "acme,ghost")]).await;
    let m = h.cycle().await;
    let ghost = [("account_id", "ghost"), ("step", "zones")];
    assert_eq!(m.value("flexcloud_discovery_success", &ghost), 0.0);
    assert_eq!(
        m.value("flexcloud_discovery_http_status_code", &ghost),
        404.0
    );
    assert_eq!(
        m.value(
            "flexcloud_api_requests_total",
            &[
                ("account_id", "ghost"),
                ("endpoint", "zones"),
                ("code", "404")
            ]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "acme"), ("zone_id", "TAMPA")]
        ),
        1.0
    );
    assert_eq!(
        m.value(IMAGES, &labels(&images("acme", "TAMPA", "ACTIVE", "BASE"))),
        2.0
    );
    assert_eq!(m.value("flexcloud_up", &[]), 1.0);
    h.stop().await;

    // With zones configured the 404 comes from the image list itself.
    let mut h = Harness::start(
        fleet(),
        &[
            ("FLEXCLOUD_ACCOUNTS", "acme,ghost"),
            ("FLEXCLOUD_ZONES", "TAMPA"),
        ],
    )
    .await;
    let m = h.cycle().await;
    let z = [("account_id", "ghost"), ("zone_id", "TAMPA")];
    assert_eq!(m.value("flexcloud_probe_success", &z), 0.0);
    assert_eq!(m.value("flexcloud_probe_http_status_code", &z), 404.0);
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "acme"), ("zone_id", "TAMPA")]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn forbidden_account_is_403() {
    let mut h = Harness::start(fleet(), &[("FLEXCLOUD_ACCOUNTS", "other,globex")]).await;
    let m = h.cycle().await;
    let other = [("account_id", "other"), ("step", "zones")];
    assert_eq!(m.value("flexcloud_discovery_success", &other), 0.0);
    assert_eq!(
        m.value("flexcloud_discovery_http_status_code", &other),
        403.0
    );
    assert_eq!(
        m.value(
            "flexcloud_api_requests_total",
            &[
                ("account_id", "other"),
                ("endpoint", "zones"),
                ("code", "403")
            ]
        ),
        1.0
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

async fn probe_with_fault(
    action: FaultAction,
    extra: &[(&str, &str)],
) -> (Harness, common::Metrics) {
    let mut settings = vec![("FLEXCLOUD_ACCOUNTS", "acme,globex")];
    settings.extend_from_slice(extra);
    let mut h = Harness::start(fleet(), &settings).await;
    h.sim.add_fault(
        Fault::on("/accounts/acme/flexcloud/images/detail", action).with_query("zone=TAMPA"),
    );
    let m = h.cycle().await;
    (h, m)
}

const ACME_TAMPA: [(&str, &str); 2] = [("account_id", "acme"), ("zone_id", "TAMPA")];

#[tokio::test]
async fn probes_recover_after_faults_end() {
    let (mut h, m) = probe_with_fault(
        FaultAction::Status {
            status: 503,
            body: None,
            retry_after: None,
        },
        &[],
    )
    .await;
    assert_eq!(m.value("flexcloud_probe_success", &ACME_TAMPA), 0.0);
    assert_eq!(
        m.value("flexcloud_probe_http_status_code", &ACME_TAMPA),
        503.0
    );
    h.sim.clear_faults();
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_probe_success", &ACME_TAMPA), 1.0);
    assert_eq!(
        m.value("flexcloud_probe_http_status_code", &ACME_TAMPA),
        200.0
    );
    assert_eq!(
        m.value(
            IMAGES,
            &labels(&images("acme", "TAMPA", "SAVING", "SERVER"))
        ),
        2.0
    );
    h.stop().await;
}

/// Two cycles with `stale_after`: a good one, then one where acme/TAMPA's images fail.
async fn good_cycle_then_failing_zone(stale_after: &str) -> (Harness, common::Metrics) {
    let mut h = Harness::start(
        fleet(),
        &[
            ("FLEXCLOUD_ACCOUNTS", "acme"),
            ("FLEXCLOUD_STALE_AFTER", stale_after),
        ],
    )
    .await;
    let first = h.cycle().await;
    let last_success = first.value("flexcloud_last_success_timestamp_seconds", &ACME_TAMPA);
    h.sim.add_fault(
        Fault::on(
            "/accounts/acme/flexcloud/images/detail",
            FaultAction::Status {
                status: 500,
                body: None,
                retry_after: None,
            },
        )
        .with_query("zone=TAMPA"),
    );
    let failing = h.cycle().await;
    assert_eq!(
        failing.value("flexcloud_probe_success", &ACME_TAMPA),
        0.0,
        "the probe shows the failure at once"
    );
    assert_eq!(
        failing.value("flexcloud_last_success_timestamp_seconds", &ACME_TAMPA),
        last_success,
        "the last success is kept in any case"
    );
    assert_eq!(
        failing.value(IMAGES, &labels(&images("acme", "AUSTIN", "ACTIVE", "BASE"))),
        2.0,
        "the healthy zone is fresh"
    );
    (h, failing)
}

#[tokio::test]
async fn failing_zone_keeps_last_good_images_within_the_stale_bound() {
    // An hour: the second cycle is inside it on any machine.
    let (h, failing) = good_cycle_then_failing_zone("1h").await;
    assert_eq!(
        failing.value(IMAGES, &labels(&images("acme", "TAMPA", "ACTIVE", "BASE"))),
        2.0,
        "images kept"
    );
    assert!(
        failing
            .get(
                "flexcloud_images_saving_oldest_age_seconds",
                &[
                    ("account_id", "acme"),
                    ("zone_id", "TAMPA"),
                    ("image_type", "SERVER")
                ]
            )
            .is_some()
    );
    h.stop().await;
}

#[tokio::test]
async fn failing_zone_drops_its_images_past_the_stale_bound() {
    // A nanosecond: the last success is older than that by the second cycle on any machine.
    // Where exactly the bound falls is unit-tested with `snapshot::carry_over`.
    let (h, expired) = good_cycle_then_failing_zone("1ns").await;
    assert!(
        expired
            .get(IMAGES, &labels(&images("acme", "TAMPA", "ACTIVE", "BASE")))
            .is_none(),
        "images dropped"
    );
    assert!(
        expired
            .get(
                "flexcloud_images_saving_oldest_age_seconds",
                &[
                    ("account_id", "acme"),
                    ("zone_id", "TAMPA"),
                    ("image_type", "SERVER")
                ]
            )
            .is_none()
    );
    // The SAVING images are held until the zone is read again: their state is unknown,
    // and their series going would resolve FlexcloudImageStuckSaving as if fixed.
    let held: Vec<String> = expired
        .series(
            "flexcloud_image_saving_created_timestamp_seconds",
            &[("account_id", "acme"), ("zone_id", "TAMPA")],
        )
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(held.len(), 2, "{held:?}");
    h.stop().await;
}

#[tokio::test]
async fn saving_series_are_capped_keeping_the_oldest_and_the_cut_is_counted() {
    let mut scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("a", &["Z"]);
    for i in 0..10u64 {
        scenario = scenario.image_with(
            "a",
            &format!("s{i}"),
            "SAVING",
            "SERVER",
            &["Z"],
            |mut img| {
                img.age = Some(Duration::from_secs(1000 * (i + 1)));
                img
            },
        );
    }
    let mut h = Harness::start(scenario, &[("FLEXCLOUD_SAVING_SERIES_LIMIT", "3")]).await;
    let m = h.cycle().await;
    let kept: Vec<String> = m
        .series("flexcloud_image_saving_created_timestamp_seconds", &[])
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kept.len(), 3);
    for id in ["s9", "s8", "s7"] {
        assert!(
            kept.iter()
                .any(|k| k.contains(&format!("image_id=\"{id}\""))),
            "{id} in {kept:?}"
        );
    }
    assert_eq!(
        m.value("flexcloud_image_saving_series_dropped_total", &[]),
        7.0
    );
    assert_eq!(
        m.value(IMAGES, &labels(&images("a", "Z", "SAVING", "SERVER"))),
        10.0
    );
    h.stop().await;
}

#[tokio::test]
async fn account_discovery_failure_is_visible_and_keeps_known_zones_stale() {
    let mut h = Harness::start(fleet(), &[]).await;
    h.cycle().await;
    h.sim.add_fault(Fault::on(
        "/accounts",
        FaultAction::Status {
            status: 500,
            body: None,
            retry_after: None,
        },
    ));
    let m = h.cycle().await;
    let step = [("account_id", ""), ("step", "accounts")];
    assert_eq!(m.value("flexcloud_discovery_success", &step), 0.0);
    assert_eq!(
        m.value("flexcloud_discovery_http_status_code", &step),
        500.0
    );
    assert_eq!(
        m.value(IMAGES, &labels(&images("acme", "TAMPA", "ACTIVE", "BASE"))),
        2.0
    );
    assert!(
        m.get("flexcloud_probe_success", &ACME_TAMPA).is_none(),
        "not probed this cycle"
    );
    assert!(
        m.get("flexcloud_last_success_timestamp_seconds", &ACME_TAMPA)
            .is_some()
    );
    assert_eq!(
        m.value("flexcloud_up", &[]),
        1.0,
        "the API answered and accepted the credentials"
    );
    h.stop().await;
}

#[tokio::test]
async fn unknown_statuses_missing_fields_and_bad_timestamps_are_tolerated() {
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("a", &["Z"])
        .image("a", "1", "pending_upload", "BASE", &["Z"])
        .image_with("a", "2", "SAVING", "BASE", &["Z"], |mut i| {
            i.created = "not a date".into();
            i
        })
        .image_with("a", "3", "ACTIVE", "BASE", &["Z"], |mut i| {
            i.extra
                .insert("unexpected".into(), serde_json::json!([1, 2]));
            i
        });
    let mut h = Harness::start(scenario, &[]).await;
    let m = h.cycle().await;
    assert_eq!(
        m.value(IMAGES, &labels(&images("a", "Z", "PENDING_UPLOAD", "BASE"))),
        1.0
    );
    assert_eq!(
        m.value(IMAGES, &labels(&images("a", "Z", "SAVING", "BASE"))),
        1.0
    );
    assert_eq!(
        m.value(IMAGES, &labels(&images("a", "Z", "ACTIVE", "BASE"))),
        1.0
    );
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "a"), ("zone_id", "Z")]
        ),
        1.0
    );
    assert!(
        m.series("flexcloud_image_saving_created_timestamp_seconds", &[])
            .is_empty()
    );
    h.stop().await;
}

#[tokio::test]
async fn credentials_that_see_no_open_account_leave_up_1_and_nothing_watched() {
    // Every account closed: the API answers and accepts the credentials, yet there is
    // nothing to watch. FlexcloudNoAccountsWatched pages on exactly this pair of values.
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account_with_status("gone", "closed", &["TAMPA"])
        .image("gone", "1", "ACTIVE", "BASE", &["TAMPA"]);
    let mut h = Harness::start(scenario, &[]).await;
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_up", &[]), 1.0);
    assert_eq!(m.value("flexcloud_accounts_watched", &[]), 0.0);
    assert_eq!(
        m.value(
            "flexcloud_discovery_success",
            &[("account_id", ""), ("step", "accounts")]
        ),
        1.0
    );
    assert!(m.series(IMAGES, &[]).is_empty());
    h.stop().await;
}
