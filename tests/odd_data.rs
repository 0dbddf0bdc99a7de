//! Odd data from the API costs only itself: recorded bodies with adversarial entries, served
//! in place of the simulator's own answers, and what the exporter makes of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, Metrics, PASSWORD, USER};
use flexcloud_sim::{Fault, FaultAction, Scenario};

const ZONE: [(&str, &str); 2] = [("account_id", "acme"), ("zone_id", "TAMPA")];

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/api/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A 200 with `body`, for the requests to `path` whose query holds `query`.
fn recorded(path: &str, query: &str, body: String) -> Fault {
    Fault::on(
        path,
        FaultAction::Status {
            status: 200,
            body: Some(body),
            retry_after: None,
        },
    )
    .with_query(query)
}

fn fleet() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &["acme"])
        .account("acme", &["TAMPA"])
}

fn images(m: &Metrics, status: &str, image_type: &str) -> f64 {
    m.value(
        "flexcloud_images",
        &[
            ("account_id", "acme"),
            ("zone_id", "TAMPA"),
            ("status", status),
            ("image_type", image_type),
        ],
    )
}

fn problems(m: &Metrics, reason: &str) -> f64 {
    m.get(
        "flexcloud_api_invalid_images_total",
        &[("account_id", "acme"), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_wrongly_typed_entry_is_skipped_and_counted_and_the_zone_still_succeeds() {
    let scenario = fleet().fault(recorded(
        "/accounts/acme/flexcloud/images/detail",
        "type=BASE",
        fixture("images_odd_entries.json"),
    ));
    let mut h = Harness::start(scenario, &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_probe_success", &ZONE), 1.0);
    // 1, 2, 6, 8 (a string or a number as id; a created unreadable or of any shape).
    assert_eq!(images(&m, "ACTIVE", "BASE"), 4.0);
    // 3 and 4 with Unix created (seconds, milliseconds), 7 with a created of no known shape.
    assert_eq!(images(&m, "SAVING", "BASE"), 3.0);
    assert_eq!(images(&m, "DELETED", "BASE"), 1.0);
    // Seven entries of no use (status 3, name 12, id true, id object, null, a string, a
    // number) are skipped; the repeated id 1 counts once; two creates are unreadable.
    assert_eq!(problems(&m, "malformed"), 7.0);
    assert_eq!(problems(&m, "duplicate"), 1.0);
    assert_eq!(problems(&m, "bad_created"), 2.0);
    // 2026-01-01T00:00:00Z as a Unix number, in seconds and in milliseconds: both SAVING
    // images have that creation time; the one with the unreadable created has none.
    let created = m.series("flexcloud_image_saving_created_timestamp_seconds", &ZONE);
    let mut times: Vec<f64> = created.iter().map(|(_, v)| *v).collect();
    times.sort_by(f64::total_cmp);
    assert_eq!(times, [1_767_225_600.0, 1_767_225_600.0], "{created:?}");

    // The counter counts each cycle's reading: a second cycle of the same list doubles it.
    let again = h.cycle().await;
    assert_eq!(problems(&again, "malformed"), 14.0);
    h.stop().await;
}

#[tokio::test]
async fn a_zone_listed_twice_is_probed_once() {
    let scenario = fleet().fault(recorded(
        "/accounts/acme/flexcloud/zone",
        "",
        r#"{"acme": [{"zone": "TAMPA"}, {"zone": "TAMPA"}, {"zone": "AUSTIN"}]}"#.into(),
    ));
    let mut h = Harness::start(scenario, &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_zones_watched", &[]), 2.0);
    let image_requests = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/images/detail") && r.query.contains("zone=TAMPA"))
        .count();
    assert_eq!(image_requests, 2, "one request per type, not two");
    h.stop().await;
}

#[tokio::test]
async fn undocumented_statuses_are_capped_per_zone_across_both_types() {
    let entries = |prefix: &str| {
        let list: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"id": "{prefix}{i}", "status": "{prefix}_STATE_{i}"}}"#))
            .collect();
        format!(r#"{{"images": [{}]}}"#, list.join(","))
    };
    let scenario = fleet()
        .fault(recorded(
            "/accounts/acme/flexcloud/images/detail",
            "type=BASE",
            entries("B"),
        ))
        .fault(recorded(
            "/accounts/acme/flexcloud/images/detail",
            "type=SERVER",
            entries("S"),
        ));
    let mut h = Harness::start(scenario, &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    let m = h.cycle().await;
    let series = m.series("flexcloud_images", &ZONE);
    let mut statuses: Vec<String> = series
        .iter()
        .filter_map(|(key, _)| {
            key.split("status=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(String::from)
        })
        .filter(|s| !["ACTIVE", "SAVING", "DELETED"].contains(&s.as_str()))
        .collect();
    statuses.sort();
    statuses.dedup();
    // Eight undocumented statuses for the zone, both types together, then OTHER.
    assert_eq!(statuses.len(), 9, "{statuses:?}");
    assert!(statuses.contains(&"OTHER".to_string()));
    let total: f64 = series.iter().map(|(_, v)| v).sum();
    assert_eq!(total, 20.0, "every image counted once");
    h.stop().await;
}

fn image_requests(h: &Harness) -> usize {
    h.sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/images/detail"))
        .count()
}

fn zone_of(images: usize) -> Scenario {
    let mut scenario = fleet();
    for i in 0..images {
        scenario = scenario.image("acme", &i.to_string(), "ACTIVE", "SERVER", &["TAMPA"]);
    }
    scenario
}

#[tokio::test]
async fn a_zone_of_10000_images_costs_25_pages_of_400() {
    let mut h = Harness::start(zone_of(10_000), &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_probe_success", &ZONE), 1.0);
    assert_eq!(images(&m, "ACTIVE", "SERVER"), 10_000.0);
    // SERVER in 25 pages, BASE in one (empty) answer: 100 + 1 at the API's default of 100.
    assert_eq!(image_requests(&h), 26);
    h.stop().await;
}

#[tokio::test]
async fn a_zone_of_exactly_100000_images_is_read_whole() {
    let mut h = Harness::start(zone_of(100_000), &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_probe_success", &ZONE), 1.0);
    assert_eq!(images(&m, "ACTIVE", "SERVER"), 100_000.0);
    assert_eq!(image_requests(&h), 251);
    h.stop().await;
}

fn redirect(location: &str, status: u16) -> FaultAction {
    FaultAction::Redirect {
        location: location.into(),
        status,
    }
}

#[tokio::test]
async fn a_redirect_changes_the_page_size_but_never_the_page_and_counts_its_own_code() {
    for status in [301u16, 302, 303, 307, 308] {
        let scenario = zone_of(250).fault(
            Fault::on(
                "/accounts/acme/flexcloud/images/detail",
                redirect(
                    "/accounts/acme/flexcloud/images/detail?page=999999&pageSize=100",
                    status,
                ),
            )
            .with_query("type=SERVER")
            .times(1),
        );
        let mut h = Harness::start(scenario, &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
        let m = h.cycle().await;
        assert_eq!(m.value("flexcloud_probe_success", &ZONE), 1.0, "{status}");
        // Page 1 at the size the redirect asked for, not page 999999: every image is there.
        assert_eq!(images(&m, "ACTIVE", "SERVER"), 250.0, "{status}");
        let code = status.to_string();
        assert_eq!(
            m.value(
                "flexcloud_api_requests_total",
                &[
                    ("account_id", "acme"),
                    ("endpoint", "images_detail"),
                    ("code", &code)
                ]
            ),
            1.0,
            "{status}"
        );
        let server_pages: Vec<String> = h
            .sim
            .requests()
            .iter()
            .filter(|r| r.query.contains("type=SERVER"))
            .map(|r| r.query.clone())
            .collect();
        assert_eq!(
            server_pages,
            [
                "zone=TAMPA&type=SERVER&page=1&pageSize=400",
                "zone=TAMPA&type=SERVER&page=1&pageSize=100",
                "zone=TAMPA&type=SERVER&page=2&pageSize=100",
                "zone=TAMPA&type=SERVER&page=3&pageSize=100",
            ],
            "{status}"
        );
        h.stop().await;
    }
}

#[tokio::test]
async fn a_redirect_loop_fails_its_probe_with_the_redirects_status() {
    let scenario = zone_of(3).fault(Fault::on(
        "/accounts/acme/flexcloud/images/detail",
        redirect("/accounts/acme/flexcloud/images/detail", 302),
    ));
    let mut h = Harness::start(scenario, &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_probe_success", &ZONE), 0.0);
    assert_eq!(m.value("flexcloud_probe_http_status_code", &ZONE), 302.0);
    // Each list: the first page, then the same request without a size, then a repeat: cut.
    assert_eq!(image_requests(&h), 4);
    h.stop().await;
}

#[tokio::test]
async fn next_links_that_go_on_with_empty_pages_are_cut() {
    let page = |n: u32| {
        format!(
            r#"{{"images": [], "links": [{{"rel": "next", "href": "/accounts/acme/flexcloud/images/detail?zone=TAMPA&type=BASE&page={n}&pageSize=400"}}]}}"#
        )
    };
    let mut scenario = fleet();
    for n in 1..=10 {
        scenario = scenario.fault(recorded(
            "/accounts/acme/flexcloud/images/detail",
            &format!("type=BASE&page={n}&"),
            page(n + 1),
        ));
    }
    let mut h = Harness::start(scenario, &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_probe_success", &ZONE), 0.0);
    let base_requests = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.query.contains("type=BASE"))
        .count();
    assert_eq!(
        base_requests, 3,
        "three empty pages naming a next one, then the list is cut"
    );
    h.stop().await;
}

#[tokio::test]
async fn ids_that_cannot_be_a_path_segment_are_never_requested_and_are_counted() {
    let list = r#"{"list": [
        {"accountNumber": ".", "status": "open"},
        {"accountNumber": "..", "status": "open"},
        {"accountNumber": "", "status": "open"},
        {"accountNumber": "acme", "status": "open"}
    ], "links": []}"#;
    let scenario = fleet().fault(recorded("/accounts", "filterStatus", list.into()));
    let mut h = Harness::start(scenario, &[]).await;
    let m = h.cycle().await;
    assert_eq!(m.value("flexcloud_accounts_watched", &[]), 1.0);
    assert_eq!(m.value("flexcloud_probe_success", &ZONE), 1.0);
    for request in h.sim.requests() {
        assert!(
            request.path == "/accounts" || request.path.starts_with("/accounts/acme/"),
            "requested {}",
            request.path
        );
    }
    assert_eq!(
        m.value(
            "flexcloud_api_unusable_ids_total",
            &[("endpoint", "accounts")]
        ),
        3.0
    );
    h.stop().await;
}

#[tokio::test]
async fn odd_characters_in_an_account_id_stay_inside_one_path_segment() {
    let odd = "a/../b?c#d %e";
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &[odd])
        .account(odd, &["TAMPA"])
        .image(odd, "1", "ACTIVE", "BASE", &["TAMPA"]);
    let mut h = Harness::start(scenario, &[]).await;
    let m = h.cycle().await;
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", odd), ("zone_id", "TAMPA")]
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn two_long_ids_that_share_their_first_128_characters_keep_their_own_series() {
    let stem = "x".repeat(140);
    let (a, b) = (format!("{stem}-a"), format!("{stem}-b"));
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account(&a, &["TAMPA"])
        .account(&b, &["TAMPA"])
        .image(&a, "1", "ACTIVE", "BASE", &["TAMPA"])
        .image(&b, "2", "ACTIVE", "BASE", &["TAMPA"])
        .image(&b, "3", "ACTIVE", "BASE", &["TAMPA"]);
    let mut h = Harness::start(scenario, &[]).await;
    let m = h.cycle().await;
    let active = m.series(
        "flexcloud_images",
        &[("status", "ACTIVE"), ("image_type", "BASE")],
    );
    let mut counts: Vec<f64> = active.iter().map(|(_, v)| *v).collect();
    counts.sort_by(f64::total_cmp);
    assert_eq!(counts, [1.0, 2.0], "{active:?}");
    for (series, _) in &active {
        let id = series
            .split("account_id=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(id.chars().count(), 128, "{id}");
        assert!(id.starts_with(&"x".repeat(111)) && id.contains('~'), "{id}");
    }
    h.stop().await;
}

#[tokio::test]
async fn image_lists_are_asked_for_compressed_and_read_the_same() {
    let mut h = Harness::start(zone_of(1_000), &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    let m = h.cycle().await;
    assert_eq!(images(&m, "ACTIVE", "SERVER"), 1_000.0);
    for request in h.sim.requests() {
        assert!(
            request
                .accept_encoding
                .as_deref()
                .is_some_and(|e| e.contains("gzip")),
            "{request:?}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn a_zip_bomb_is_cut_at_the_body_cap_counted_in_decoded_bytes() {
    let scenario = zone_of(3).fault(
        Fault::on(
            "/accounts/acme/flexcloud/images/detail",
            FaultAction::GzipBomb {
                decoded_bytes: 1 << 32,
            },
        )
        .with_query("type=SERVER"),
    );
    let mut h = Harness::start(
        scenario,
        &[
            ("FLEXCLOUD_ACCOUNTS", "acme"),
            ("FLEXCLOUD_MAX_BODY_BYTES", "1048576"),
        ],
    )
    .await;
    let snapshot = h.snapshot_cycle().await;
    let probe = snapshot.zones[&("acme".to_string(), "TAMPA".to_string())]
        .probe
        .clone()
        .unwrap();
    assert!(!probe.success);
    let detail = probe.detail.unwrap_or_default();
    assert!(
        detail.contains("body is larger than 1048576 bytes"),
        "{detail}"
    );
    h.stop().await;
}
