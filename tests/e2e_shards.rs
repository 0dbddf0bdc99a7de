//! Shards under a real Prometheus: three replicas of one job add up to one unsharded
//! exporter, and the bundled shard alerts fire for jobs whose replicas are mis-set.
//!
//! The simulator (in this process) serves a generated fleet. Ten exporter binaries watch
//! it, each in its own scrape job's set of targets:
//! - `flexcloud-exporter`: `FLEXCLOUD_SHARD=1/3`, `2/3`, `3/3`, the way it should be;
//! - `flexcloud-single`: one unsharded exporter;
//! - `shards-duplicated`: `1/2` twice (shard 2 left out by a copied setting);
//! - `shards-short`: `1/3` and `3/3` (shard 2 never started);
//! - `shards-mixed`: `1/2` and `2/3` (a rollout that changed M on one replica only).
//!
//! Prometheus scrapes all of them every second, evaluates the bundled rules (every `for`
//! cut to 10s) and sends to Alertmanager with the example configuration, which delivers to
//! a webhook receiver in this test (deliveries in target/alertmanager-deliveries-shards.json). `sum by (account_id, zone_id, status, image_type) (flexcloud_images)` of
//! the sharded job must equal the unsharded one's, with every account on exactly one
//! shard and every shard holding some; each mis-set job must fire exactly its own alert,
//! and the good jobs none.
//!
//! Needs `prometheus` and `alertmanager` (Debian: `prometheus-alertmanager`) on PATH:
//! `cargo test --test e2e_shards -- --include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use flexcloud_sim::{FleetSpec, Scenario};
use serde_json::Value;

#[path = "common/alerting.rs"]
mod alerting;
#[path = "common/e2e.rs"]
mod e2e;
use alerting::{Receiver, alerting_to, delivered_alerts, start_alertmanager};
use e2e::{
    JOB, Running, exporter_address, instant_query, listening_address, prometheus_api, scratch_dir,
    start_exporter, start_prometheus_jobs, start_simulator, toolkit_address, wait_ready,
};

const USER: &str = "exporter";
const PASSWORD: &str = "e2e-shards-secret";
const SINGLE: &str = "flexcloud-single";
/// The scrape jobs and the `FLEXCLOUD_SHARD` of each of their replicas ("" unsharded).
const JOBS: [(&str, &[&str]); 5] = [
    (JOB, &["1/3", "2/3", "3/3"]),
    (SINGLE, &[""]),
    ("shards-duplicated", &["1/2", "1/2"]),
    ("shards-short", &["1/3", "3/3"]),
    ("shards-mixed", &["1/2", "2/3"]),
];
const SHARD_ALERTS: [&str; 3] = [
    "FlexcloudShardsDisagree",
    "FlexcloudShardDuplicated",
    "FlexcloudShardMissing",
];
/// How long any one condition may take to come true.
const WAIT: Duration = Duration::from_secs(90);

fn fleet() -> Scenario {
    Scenario {
        generate: Some(FleetSpec {
            seed: 23,
            accounts: 18,
            zones_per_account: 2,
            images_per_zone: 3,
            saving_share: 0.2,
            user: USER.into(),
            password: PASSWORD.into(),
        }),
        ..Default::default()
    }
}

/// `(labels, value)` of each series a query returns, labels as one sorted string.
fn series(prom: SocketAddr, query: &str) -> Result<BTreeMap<String, String>, String> {
    Ok(instant_query(prom, query)?
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .map(|m| {
                    let mut pairs: Vec<String> =
                        m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    pairs.sort();
                    pairs.join(",")
                })
                .unwrap_or_default();
            (labels, s["value"][1].as_str().unwrap_or("").to_string())
        })
        .collect())
}

/// Shard alerts by job, as Prometheus's API shows them firing: `(alertname, ordinal)`.
fn shard_alerts(prom: SocketAddr) -> Result<BTreeMap<String, Vec<(String, String)>>, String> {
    let data = prometheus_api(prom, "/api/v1/alerts")?;
    let mut by_job: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for alert in data["alerts"].as_array().into_iter().flatten() {
        let labels = &alert["labels"];
        let name = labels["alertname"].as_str().unwrap_or("");
        if alert["state"] != "firing" || !SHARD_ALERTS.contains(&name) {
            continue;
        }
        let field = |key: &str| labels[key].as_str().unwrap_or("").to_string();
        by_job
            .entry(field("job"))
            .or_default()
            .push((name.to_string(), field("ordinal")));
    }
    for alerts in by_job.values_mut() {
        alerts.sort();
    }
    Ok(by_job)
}

#[test]
#[ignore = "needs prometheus and alertmanager"]
fn three_shards_add_up_to_one_exporter_and_mis_set_shards_alert() {
    let dir = scratch_dir("e2e_shards");
    let api = start_simulator(fleet());
    let mut exporters: Vec<Running> = Vec::new();
    let mut jobs: Vec<(&str, Vec<SocketAddr>)> = Vec::new();
    for (job, shards) in JOBS {
        let mut targets = Vec::new();
        for (n, shard) in shards.iter().enumerate() {
            let own = dir.join(format!("{job}-{n}"));
            std::fs::create_dir_all(&own).unwrap();
            let mut settings = vec![
                ("FLEXCLOUD_USERNAME", USER),
                ("FLEXCLOUD_PASSWORD", PASSWORD),
                ("FLEXCLOUD_INTERVAL", "2s"),
                ("FLEXCLOUD_TIMEOUT", "1s"),
            ];
            if !shard.is_empty() {
                settings.push(("FLEXCLOUD_SHARD", shard));
            }
            let mut exporter = start_exporter(&own, api.sim.addr(), &settings);
            targets.push(listening_address(&mut exporter, exporter_address));
            exporters.push(exporter);
        }
        jobs.push((job, targets));
    }
    for (_, targets) in &jobs {
        for target in targets {
            let mut all: Vec<&mut Running> = exporters.iter_mut().collect();
            wait_ready("an exporter", *target, &mut all);
        }
    }

    let receiver = Receiver::start("alertmanager-deliveries-shards.json");
    let mut alertmanager = start_alertmanager(&dir, receiver.addr);
    let am = listening_address(&mut alertmanager, toolkit_address);
    wait_ready("Alertmanager", am, &mut [&mut alertmanager]);
    // `for` cut to 10s, not 0s: until Prometheus has scraped every target once, a job
    // looks short of shards, and that must not page.
    let mut prometheus = start_prometheus_jobs(&dir, &jobs, &alerting_to(am), "10s", &[]);
    let prom = listening_address(&mut prometheus, toolkit_address);
    let mut all: Vec<&mut Running> = exporters.iter_mut().collect();
    all.push(&mut alertmanager);
    all.push(&mut prometheus);
    wait_ready("Prometheus", prom, &mut all);
    let targets: usize = JOBS.iter().map(|(_, shards)| shards.len()).sum();
    e2e::wait_for("every target to be up", WAIT, &mut all, || {
        let up = instant_query(prom, "up == 1")?.len();
        if up == targets {
            Ok(())
        } else {
            Err(format!("{up} of {targets} targets up"))
        }
    });

    // The sharded job's sums are the unsharded exporter's, series for series.
    let by_image = |job: &str| {
        format!(
            "sum by (account_id, zone_id, status, image_type) (flexcloud_images{{job=\"{job}\"}})"
        )
    };
    let (sharded, single) = e2e::wait_for(
        "the shards' sums to equal the unsharded exporter's",
        WAIT,
        &mut all,
        || {
            let sharded = series(prom, &by_image(JOB))?;
            let single = series(prom, &by_image(SINGLE))?;
            if single.is_empty() {
                return Err("no flexcloud_images from the unsharded exporter yet".into());
            }
            if sharded != single {
                return Err(format!("sharded {sharded:?}\nunsharded {single:?}"));
            }
            Ok((sharded, single))
        },
    );
    assert_eq!(sharded, single);
    let accounts = series(
        prom,
        &format!("count by (account_id) (flexcloud_images{{job=\"{SINGLE}\"}})"),
    )
    .unwrap();
    assert_eq!(accounts.len(), 18, "every generated account has images");
    let twice = series(
        prom,
        &format!(
            "count by (account_id) (count by (account_id, instance) (flexcloud_images{{job=\"{JOB}\"}})) > 1"
        ),
    )
    .unwrap();
    assert!(twice.is_empty(), "accounts on two shards: {twice:?}");
    let watched = series(
        prom,
        &format!("flexcloud_accounts_watched{{job=\"{JOB}\"}} > 0"),
    )
    .unwrap();
    assert_eq!(
        watched.len(),
        3,
        "a shard without accounts proves nothing: {watched:?}"
    );
    let ordinals = series(
        prom,
        &format!("count_values(\"ordinal\", flexcloud_shard_ordinal{{job=\"{JOB}\"}})"),
    )
    .unwrap();
    assert_eq!(
        ordinals.keys().collect::<Vec<_>>(),
        ["ordinal=\"1\"", "ordinal=\"2\"", "ordinal=\"3\""]
    );

    // Each mis-set job fires its own alert, and only that one; the good jobs fire none.
    let pair = |name: &str, ordinal: &str| (name.to_string(), ordinal.to_string());
    let expected: BTreeMap<String, Vec<(String, String)>> = [
        (
            "shards-duplicated",
            vec![pair("FlexcloudShardDuplicated", "1")],
        ),
        ("shards-mixed", vec![pair("FlexcloudShardsDisagree", "")]),
        ("shards-short", vec![pair("FlexcloudShardMissing", "")]),
    ]
    .into_iter()
    .map(|(job, alerts)| (job.to_string(), alerts))
    .collect();
    let firing = e2e::wait_for(
        "the shard alerts of the mis-set jobs",
        WAIT,
        &mut all,
        || {
            let firing = shard_alerts(prom)?;
            if firing == expected {
                Ok(firing)
            } else {
                Err(format!("firing {firing:?}, expected {expected:?}"))
            }
        },
    );
    // A few more evaluations: nothing else joins them.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(shard_alerts(prom).unwrap(), firing);
    let alerts = prometheus_api(prom, "/api/v1/alerts").unwrap();
    let missing: Vec<&Value> = alerts["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "FlexcloudShardMissing")
        .collect();
    assert_eq!(
        missing[0]["annotations"]["summary"], "Job shards-short runs 2 of its 3 shards",
        "{missing:?}"
    );

    // Delivered as a person reads them: one notification each, with the job named.
    let expected_deliveries = [
        (
            "FlexcloudShardDuplicated",
            "shards-duplicated",
            "warning",
            "Shard 1 of job shards-duplicated runs in 2 replicas",
        ),
        (
            "FlexcloudShardsDisagree",
            "shards-mixed",
            "critical",
            "The replicas of job shards-mixed disagree on the shard count: 2 to 3",
        ),
        (
            "FlexcloudShardMissing",
            "shards-short",
            "critical",
            "Job shards-short runs 2 of its 3 shards",
        ),
    ];
    let delivered = e2e::wait_for("the shard alerts to be delivered", WAIT, &mut all, || {
        let alerts = delivered_alerts(&receiver.deliveries());
        let mut found = Vec::new();
        for (name, job, _, _) in expected_deliveries {
            let alert = alerts
                .iter()
                .find(|a| {
                    a["status"] == "firing"
                        && a["labels"]["alertname"] == name
                        && a["labels"]["job"] == job
                })
                .ok_or_else(|| format!("no {name} for {job} delivered yet"))?;
            found.push(alert.clone());
        }
        Ok(found)
    });
    for (alert, (name, _, severity, summary)) in delivered.iter().zip(expected_deliveries) {
        assert_eq!(alert["labels"]["severity"], severity, "{name}: {alert}");
        assert_eq!(alert["annotations"]["summary"], summary, "{name}: {alert}");
        assert!(
            alert["labels"]["instance"].is_null(),
            "{name} is about the job, not one replica: {alert}"
        );
        let runbook = alert["annotations"]["runbook_url"].as_str().unwrap_or("");
        assert!(
            runbook.starts_with("https://")
                && runbook.ends_with(&format!("#{}", name.to_ascii_lowercase())),
            "{name}: {runbook}"
        );
    }
    let good: Vec<Value> = delivered_alerts(&receiver.deliveries())
        .into_iter()
        .filter(|a| {
            SHARD_ALERTS.contains(&a["labels"]["alertname"].as_str().unwrap_or(""))
                && (a["labels"]["job"] == JOB || a["labels"]["job"] == SINGLE)
        })
        .collect();
    assert!(good.is_empty(), "shard alerts for the good jobs: {good:?}");
}
