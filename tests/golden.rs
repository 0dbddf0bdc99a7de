//! The exposition of a fixed snapshot against a recorded file, node_exporter style:
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the file after a deliberate change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use flexcloud_exporter::api::model::{ImageEntry, ImageProblem};
use flexcloud_exporter::api::{Code, Endpoint, ErrorKind, ImageType, RequestObserver};
use flexcloud_exporter::lifecycle::{Lifecycle, Status};
use flexcloud_exporter::metrics::Metrics;
use flexcloud_exporter::snapshot::{Inventory, Outcome, Snapshot, ZoneState};

#[path = "common/promtool.rs"]
mod promtool;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden/metrics.txt"
);

fn image<'a>(id: &'a str, name: &'a str, status: &'a str, created: &'a str) -> ImageEntry<'a> {
    ImageEntry {
        id: Some(Cow::Borrowed(id)),
        name: Some(Cow::Borrowed(name)),
        status: Some(Cow::Borrowed(status)),
        created: Some(Cow::Borrowed(created)),
    }
}

fn snapshot() -> Snapshot {
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut inventory = Inventory::default();
    inventory.record(
        ImageType::Base,
        &image("1", "debian", "ACTIVE", "2026-01-01T00:00:00"),
    );
    inventory.record(
        ImageType::Server,
        &image("2", "db \"primary\"\nsnap", "SAVING", "2027-01-15T05:00:00"),
    );
    inventory.record(
        ImageType::Server,
        &image("3", "web", "DELETED", "2026-02-01T00:00:00"),
    );
    inventory.record(
        ImageType::Server,
        &image("4", "odd", "in-progress", "2026-02-01T00:00:00"),
    );
    inventory.record(
        ImageType::Base,
        &image("5", "clock", "ACTIVE", "the day before yesterday"),
    );
    inventory.note(ImageProblem::Malformed);
    let mut snapshot = Snapshot {
        cycle: 7,
        completed_at: Some(at),
        duration: Duration::from_millis(1250),
        up: true,
        accounts_discovery: Some(Outcome::succeeded(Duration::from_millis(80))),
        ..Snapshot::default()
    };
    snapshot
        .zones_discovery
        .insert("acme".into(), Outcome::succeeded(Duration::from_millis(40)));
    snapshot.zones_discovery.insert(
        "ghost".into(),
        Outcome {
            success: false,
            http_status: 404,
            error_kind: Some(ErrorKind::HttpStatus),
            detail: Some("API answered HTTP 404 (itemNotFound)".into()),
            duration: Duration::from_millis(30),
        },
    );
    snapshot.zones.insert(
        ("acme".into(), "TAMPA".into()),
        ZoneState {
            probe: Some(Outcome::succeeded(Duration::from_millis(300))),
            inventory: Some(Arc::new(inventory)),
            held_saving: None,
            last_success: Some(at),
        },
    );
    snapshot.zones.insert(
        ("acme".into(), "AUSTIN".into()),
        ZoneState {
            probe: Some(Outcome {
                success: false,
                http_status: 0,
                error_kind: Some(ErrorKind::Timeout),
                detail: Some("request timed out".into()),
                duration: Duration::from_secs(10),
            }),
            inventory: None,
            held_saving: None,
            last_success: Some(at - Duration::from_secs(600)),
        },
    );
    snapshot.lifecycle = Lifecycle {
        transitions: [(
            (
                "acme".into(),
                ImageType::Server,
                Status::Saving,
                Status::Active,
            ),
            1,
        )]
        .into(),
        appeared: [("acme".into(), 2)].into(),
        disappeared: [("acme".into(), 1)].into(),
        saves: vec![(ImageType::Server, 420.0)],
        dropped: 0,
        tracked: [("acme".into(), 5)].into(),
        deleted_since: [(
            ("acme".into(), "TAMPA".into()),
            [None, Some(1_800_000_000 - 7_200)],
        )]
        .into(),
    };
    snapshot
}

#[test]
fn exposition_matches_the_recorded_file() {
    let metrics = Metrics::new(500);
    let requests = [
        (None, Endpoint::Accounts, Code::Status(200), 80),
        (Some("acme"), Endpoint::ImagesDetail, Code::Status(200), 300),
        (Some("acme"), Endpoint::ImagesDetail, Code::Timeout, 10_000),
        (Some("ghost"), Endpoint::Zones, Code::Status(404), 30),
    ];
    for (account, endpoint, code, millis) in requests {
        metrics.request_ended(account, endpoint, code, Duration::from_millis(millis));
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let exposition = metrics.encode(Some(std::sync::Arc::new(snapshot())), now);
    // Compared as written: the encoder's order is deterministic (sorted maps, fixed
    // endpoint order), and a diff in order is a diff operators see.
    let got = std::str::from_utf8(&exposition.plain_text())
        .unwrap()
        .replace(
            &format!("revision=\"{}\"", env!("FLEXCLOUD_REVISION")),
            "revision=\"REVISION\"",
        );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let want = std::fs::read_to_string(GOLDEN).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        got, want,
        "exposition changed; if on purpose, run with UPDATE_GOLDEN=1 and review the diff"
    );
}

#[test]
#[ignore = "needs promtool"]
fn recorded_exposition_passes_promtool_check_metrics() {
    promtool::assert_clean_metrics(&std::fs::read(GOLDEN).unwrap());
}
