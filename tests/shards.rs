//! Sharding through the real collector: several `FLEXCLOUD_SHARD` replicas cover a fleet exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use flexcloud_sim::{FleetSpec, Scenario, Simulator};

const ACCOUNTS: usize = 60;
const ZONES: usize = 3;

fn fleet() -> Scenario {
    Scenario {
        generate: Some(FleetSpec {
            seed: 11,
            accounts: ACCOUNTS,
            zones_per_account: ZONES,
            images_per_zone: 2,
            saving_share: 0.1,
            user: common::USER.into(),
            password: common::PASSWORD.into(),
        }),
        ..Default::default()
    }
}

/// What one replica collected in one cycle: its zones per account, and the accounts whose
/// zone lists and images it asked the API for.
struct Replica {
    zones: BTreeMap<String, BTreeSet<String>>,
    requested: BTreeSet<String>,
    images: f64,
}

async fn run_replica(sim: &Simulator, shard: &str) -> Replica {
    sim.clear_requests();
    let config = common::config(&sim.url(), &[("FLEXCLOUD_SHARD", shard)]);
    let mut pipeline = flexcloud_exporter::Exporter::new(config)
        .expect("exporter builds")
        .pipeline();
    let snapshot = pipeline.run_cycle().await;
    assert!(snapshot.all_succeeded(), "shard {shard} cycle failed");
    let mut zones: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (account, zone) in snapshot.zones.keys() {
        zones
            .entry(account.clone())
            .or_default()
            .insert(zone.clone());
    }
    let requested = sim
        .requests()
        .iter()
        .filter_map(|r| r.path.strip_prefix("/accounts/"))
        .filter_map(|rest| rest.split('/').next())
        .map(String::from)
        .collect();
    let text = pipeline.subscribe().borrow().exposition.plain_text();
    let metrics = common::Metrics::parse(std::str::from_utf8(&text).unwrap());
    let images = metrics
        .series("flexcloud_images", &[])
        .iter()
        .map(|(_, v)| v)
        .sum();
    Replica {
        zones,
        requested,
        images,
    }
}

#[tokio::test]
async fn shards_cover_every_account_exactly_once() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    let whole = run_replica(&sim, "1/1").await;
    assert_eq!(whole.zones.len(), ACCOUNTS);
    assert!(whole.zones.values().all(|z| z.len() == ZONES));
    assert_eq!(whole.images, (ACCOUNTS * ZONES * 2) as f64);

    for count in [2u32, 3, 5] {
        let mut owner: BTreeMap<String, u32> = BTreeMap::new();
        let mut images = 0.0;
        for index in 1..=count {
            let replica = run_replica(&sim, &format!("{index}/{count}")).await;
            assert!(
                !replica.zones.is_empty(),
                "shard {index}/{count} got no account of {ACCOUNTS}"
            );
            // A replica asks the API only about its own accounts, not the others'.
            let own: BTreeSet<String> = replica.zones.keys().cloned().collect();
            assert_eq!(replica.requested, own, "shard {index}/{count}");
            for (account, zones) in replica.zones {
                assert_eq!(zones, whole.zones[&account], "{account}: every zone");
                if let Some(other) = owner.insert(account.clone(), index) {
                    panic!("{account} collected by shards {other} and {index} of {count}");
                }
            }
            images += replica.images;
        }
        let covered: BTreeSet<&String> = owner.keys().collect();
        let all: BTreeSet<&String> = whole.zones.keys().collect();
        assert_eq!(covered, all, "the {count} shards together cover the fleet");
        assert_eq!(images, whole.images, "no image counted twice or lost");
    }
    sim.stop().await;
}
