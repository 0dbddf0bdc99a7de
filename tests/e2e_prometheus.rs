//! The bundled dashboard and alert rules against a real Prometheus scraping the real binary.
//!
//! The simulator (in this process, on a runtime of its own) serves
//! `tests/fixtures/e2e/scenario.json`; the exporter binary watches four accounts through it
//! (FLEXCLOUD_ACCOUNTS):
//! - `acme1234`: healthy, two zones, image 102 stuck in SAVING for 3h (in one zone, so one
//!   alert), image 103 SAVING for 5 minutes only, one ACTIVE and one DELETED image (104);
//! - `flaky7890`: zone discovery works, every image listing answers 503;
//! - `other3456`: exists, but the exporter's user may not read it (403);
//! - `ghost0000`: unknown to the API (404).
//!
//! Prometheus scrapes the exporter every second and evaluates a copy of the rules with every
//! `for` set to 0s, and with FlexcloudImageStuckDeleting's 6 hours cut to 5 seconds: its age
//! counts from the exporter's first sight of the DELETED image, which no scenario can move
//! back, so only the threshold can make it fire within the test. The other thresholds are
//! the real ones. Once the exporter has its baseline, image 103 finishes saving (a
//! transition and a save for the lifecycle panels). The test asserts that every dashboard
//! query returns data and that the alerts fire with the right labels; then three of
//! acme1234's four images vanish (FlexcloudImagesMassDisappeared), and last it changes the
//! user's password in the simulator and asserts that the credentials alert fires.
//!
//! Every listener binds port 0 and is found where it says it listens (tests/common/e2e.rs).
//!
//! Needs `prometheus` on PATH (Debian package `prometheus`, 2.42 or later):
//! `cargo test --test e2e_prometheus -- --include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::time::Duration;

use flexcloud_sim::Scenario;

#[path = "common/dashboards.rs"]
mod dashboards;
#[path = "common/e2e.rs"]
mod e2e;
use e2e::{
    JOB, Running, exporter_address, firing, firing_with, instant_query, listening_address, repo,
    scratch_dir, start_exporter, start_prometheus_with, start_simulator, toolkit_address,
    wait_ready,
};

const SCENARIO: &str = "tests/fixtures/e2e/scenario.json";
const USER: &str = "exporter";
const PASSWORD: &str = "e2e-secret";
const ACCOUNTS: &str = "acme1234,flaky7890,other3456,ghost0000";
/// How long any one condition may take to come true.
const WAIT: Duration = Duration::from_secs(90);

fn wait_for<T>(
    what: &str,
    processes: &mut [&mut Running],
    check: impl FnMut() -> Result<T, String>,
) -> T {
    e2e::wait_for(what, WAIT, processes, check)
}

#[test]
#[ignore = "needs prometheus"]
fn dashboards_and_alerts_work_against_a_real_prometheus() {
    let dir = scratch_dir("e2e_prometheus");
    let text = fs::read_to_string(repo(SCENARIO)).unwrap_or_else(|e| panic!("{SCENARIO}: {e}"));
    let scenario = Scenario::from_json(&text).unwrap_or_else(|e| panic!("{SCENARIO}: {e}"));
    let api = start_simulator(scenario);
    let mut exporter = start_exporter(
        &dir,
        api.sim.addr(),
        &[
            ("FLEXCLOUD_USERNAME", USER),
            ("FLEXCLOUD_PASSWORD", PASSWORD),
            ("FLEXCLOUD_ACCOUNTS", ACCOUNTS),
            ("FLEXCLOUD_INTERVAL", "1s"),
            ("FLEXCLOUD_TIMEOUT", "900ms"),
        ],
    );
    let exporter_addr = listening_address(&mut exporter, exporter_address);
    wait_ready("the exporter", exporter_addr, &mut [&mut exporter]);

    let mut prometheus = start_prometheus_with(
        &dir,
        exporter_addr,
        "",
        &[(
            "flexcloud_images_deleted_oldest_seen_age_seconds > 21600",
            "flexcloud_images_deleted_oldest_seen_age_seconds > 5",
        )],
    );
    let prom = listening_address(&mut prometheus, toolkit_address);
    let mut all = [&mut exporter, &mut prometheus];
    wait_ready("Prometheus", prom, &mut all);
    wait_for("the exporter's scrape target to be up", &mut all, || {
        let up = instant_query(prom, &format!("up{{job=\"{JOB}\"}} == 1"))?;
        if up.is_empty() {
            Err("up is not 1 yet".into())
        } else {
            Ok(())
        }
    });

    // A save completes after the exporter's first cycle set the baseline: a transition, and
    // an observation in the save histogram.
    wait_for("the exporter to track acme1234's images", &mut all, || {
        let tracked = instant_query(
            prom,
            "flexcloud_images_tracked{account_id=\"acme1234\"} == 4",
        )?;
        if tracked.is_empty() {
            Err("not 4 images tracked yet".into())
        } else {
            Ok(())
        }
    });
    api.sim.update(|s| {
        for image in s.images.iter_mut().filter(|i| i.id == "103") {
            image.status = "ACTIVE".into();
        }
    });
    wait_for("the save of image 103 to be seen", &mut all, || {
        let saves = instant_query(
            prom,
            "flexcloud_image_save_duration_seconds_count{image_type=\"SERVER\"} == 1",
        )?;
        if saves.is_empty() {
            Err("no completed save yet".into())
        } else {
            Ok(())
        }
    });

    // Every dashboard query returns data. Rates need two samples inside their window, so
    // a query may be empty for the first seconds; all of them must be answered in time.
    let queries: Vec<(String, String)> = dashboards::dashboard_files()
        .iter()
        .flat_map(|path| {
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            dashboards::dashboard_queries(path)
                .into_iter()
                .map(move |(place, q)| (format!("{file}: {place}"), q))
        })
        .collect();
    assert!(!queries.is_empty(), "no dashboard queries found");
    wait_for("every dashboard query to return data", &mut all, || {
        let mut empty = Vec::new();
        for (place, query) in &queries {
            if instant_query(prom, query)?.is_empty() {
                empty.push(format!("{place}: {query}"));
            }
        }
        if empty.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} queries return nothing:\n  {}",
                empty.len(),
                queries.len(),
                empty.join("\n  ")
            ))
        }
    });

    // The stuck image fires, named, once; the fresh SAVING image does not.
    let stuck = wait_for("FlexcloudImageStuckSaving for image 102", &mut all, || {
        firing_with(
            prom,
            "FlexcloudImageStuckSaving",
            &[
                ("job", JOB),
                ("severity", "warning"),
                ("account_id", "acme1234"),
                ("zone_id", "USOTE-2012-TAMPA"),
                ("image_id", "102"),
                ("image_name", "web-01-nightly"),
                ("image_type", "SERVER"),
            ],
        )
    });
    let summary = stuck["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("web-01-nightly")
            && summary.contains("acme1234")
            && summary.contains("USOTE-2012-TAMPA")
            && summary.contains("stuck in SAVING for 3h"),
        "summary should name image, account, zone and duration: {summary}"
    );
    let runbook_url = stuck["annotations"]["runbook_url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        runbook_url.starts_with("https://")
            && runbook_url.ends_with("/docs/runbook.md#flexcloudimagestucksaving"),
        "{runbook_url}"
    );
    let stuck_alerts = firing(prom, "FlexcloudImageStuckSaving").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stuck_alerts.len(),
        1,
        "only image 102 is stuck: {stuck_alerts:?}"
    );

    // Lookup failures: the unknown account, the forbidden one, the failing listings.
    wait_for("FlexcloudAccountNotFound for ghost0000", &mut all, || {
        firing_with(
            prom,
            "FlexcloudAccountNotFound",
            &[("account_id", "ghost0000"), ("severity", "warning")],
        )
    });
    wait_for("FlexcloudAccountForbidden for other3456", &mut all, || {
        firing_with(
            prom,
            "FlexcloudAccountForbidden",
            &[("account_id", "other3456"), ("severity", "warning")],
        )
    });
    let probe = wait_for("FlexcloudProbeFailing for flaky7890", &mut all, || {
        firing_with(
            prom,
            "FlexcloudProbeFailing",
            &[("account_id", "flaky7890"), ("zone_id", "AUS001")],
        )
    });
    assert_eq!(
        probe["value"].as_str().map(|v| v.trim_start_matches('+')),
        Some("5.03e+02"),
        "{probe}"
    );
    let summary = probe["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(summary.ends_with("failing: HTTP 503"), "{summary}");

    // The DELETED image 104 (lowered threshold, see above), named by account, zone and type.
    let deleting = wait_for("FlexcloudImageStuckDeleting for acme1234", &mut all, || {
        firing_with(
            prom,
            "FlexcloudImageStuckDeleting",
            &[
                ("job", JOB),
                ("severity", "warning"),
                ("account_id", "acme1234"),
                ("zone_id", "USOTE-2012-DALLAS"),
                ("image_type", "BASE"),
            ],
        )
    });
    let summary = deleting["annotations"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(
        summary.contains("acme1234")
            && summary.contains("USOTE-2012-DALLAS")
            && summary.contains("BASE image has been DELETED for"),
        "{summary}"
    );
    let deleting_alerts =
        firing(prom, "FlexcloudImageStuckDeleting").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        deleting_alerts.len(),
        1,
        "only 104 is DELETED: {deleting_alerts:?}"
    );

    // Healthy parts stay quiet.
    for quiet in [
        "FlexcloudImagesMassDisappeared",
        "FlexcloudImageSavesSlow",
        "FlexcloudExporterDown",
        "FlexcloudExporterAbsent",
        "FlexcloudApiCredentialsRejected",
        "FlexcloudNoAccountsWatched",
        "FlexcloudConfigReloadFailed",
    ] {
        let alerts = firing(prom, quiet).unwrap_or_else(|e| panic!("{e}"));
        assert!(alerts.is_empty(), "{quiet} should not fire: {alerts:?}");
    }
    let acme_probe = firing(prom, "FlexcloudProbeFailing").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        acme_probe
            .iter()
            .all(|a| a["labels"]["account_id"] != "acme1234"),
        "acme1234 probes succeed: {acme_probe:?}"
    );

    // Three of acme1234's four images vanish at once (all but the stuck 102).
    api.sim.update(|s| {
        s.images
            .retain(|i| !["101", "103", "104"].contains(&i.id.as_str()))
    });
    let vanished = wait_for(
        "FlexcloudImagesMassDisappeared for acme1234",
        &mut all,
        || {
            firing_with(
                prom,
                "FlexcloudImagesMassDisappeared",
                &[
                    ("job", JOB),
                    ("severity", "critical"),
                    ("account_id", "acme1234"),
                ],
            )
        },
    );
    let summary = vanished["annotations"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(
        summary.contains("of FlexCloud account acme1234 disappeared within 10 minutes"),
        "{summary}"
    );
    let description = vanished["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(description.contains("of the 4 it tracked"), "{description}");
    let mass = firing(prom, "FlexcloudImagesMassDisappeared").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        mass.len(),
        1,
        "flaky7890's failing zone loses nothing: {mass:?}"
    );

    // The password is rotated at the API: every request is now refused with 401.
    api.sim
        .update(|s| s.users[0].password = "rotated-elsewhere".into());
    // One alert per exporter: the back-off is the exporter's, not an account's.
    let instance = exporter_addr.to_string();
    let rejected = wait_for("FlexcloudApiCredentialsRejected", &mut all, || {
        firing_with(
            prom,
            "FlexcloudApiCredentialsRejected",
            &[
                ("job", JOB),
                ("instance", &instance),
                ("severity", "critical"),
            ],
        )
    });
    let summary = rejected["annotations"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.contains("401"), "{rejected}");

    // Stop everything before removing the directory Prometheus writes into.
    drop(prometheus);
    drop(exporter);
    drop(api);
    let _ = fs::remove_dir_all(&dir);
}
