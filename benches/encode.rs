//! Encoding a large snapshot once per cycle, the per-scrape cost of `/metrics`, and
//! rendering the status page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::Request;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flexcloud_exporter::api::model::ImageEntry;
use flexcloud_exporter::api::{Code, Endpoint, ImageType, RequestObserver};
use flexcloud_exporter::landing::{self, PageInfo};
use flexcloud_exporter::metrics::{self, Metrics, Published};
use flexcloud_exporter::server::{self, ServerState};
use flexcloud_exporter::snapshot::{Inventory, Outcome, Snapshot, ZoneState};
use http_body_util::BodyExt;
use tower::ServiceExt;

const SAVING_SERIES_LIMIT: usize = 1000;
const OK: Code = Code::Status(200);

fn ok(duration: Duration) -> Outcome {
    Outcome::succeeded(duration)
}

/// A finished cycle over `accounts` x `zones` with six images per zone (one SAVING in
/// every tenth zone), and the request counters such a cycle leaves behind.
fn fleet(accounts: usize, zones: usize) -> (Snapshot, Metrics) {
    let now = SystemTime::now();
    let api = Metrics::new(SAVING_SERIES_LIMIT);
    let latency = Duration::from_millis(50);
    let mut snapshot = Snapshot {
        cycle: 7,
        completed_at: Some(now),
        duration: Duration::from_secs(4),
        up: true,
        accounts_discovery: Some(ok(latency)),
        ..Default::default()
    };
    for _ in 0..6 {
        api.request_ended(None, Endpoint::Accounts, OK, latency);
    }
    for a in 0..accounts {
        let account = format!("acct{a:05}");
        snapshot
            .zones_discovery
            .insert(account.clone(), ok(latency));
        api.request_ended(Some(&account), Endpoint::Zones, OK, latency);
        for z in 0..zones {
            let zone = format!("US-ZONE-{z:02}");
            let mut inventory = Inventory::default();
            for i in 0..6 {
                let id = format!("{}", 100_000 + (a * zones + z) * 6 + i);
                let status = match i {
                    0 if (a * zones + z) % 10 == 0 => "SAVING",
                    1 => "DELETED",
                    _ => "ACTIVE",
                };
                let image_type = if i % 3 == 0 {
                    ImageType::Base
                } else {
                    ImageType::Server
                };
                inventory.record(
                    image_type,
                    &ImageEntry {
                        id: Some(Cow::Borrowed(&id)),
                        name: Some(Cow::Owned(format!("web-{id}"))),
                        status: Some(Cow::Borrowed(status)),
                        created: Some(Cow::Borrowed("2026-10-01T12:00:00")),
                    },
                );
            }
            for _ in 0..2 {
                api.request_ended(Some(&account), Endpoint::ImagesDetail, OK, latency);
            }
            snapshot.zones.insert(
                (account.clone(), zone),
                ZoneState {
                    probe: Some(ok(latency * 2)),
                    inventory: Some(Arc::new(inventory)),
                    held_saving: None,
                    last_success: Some(now),
                },
            );
        }
    }
    (snapshot, api)
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_cycle");
    group.sample_size(20);
    for (accounts, zones) in [(5, 3), (500, 4)] {
        let (snapshot, api) = fleet(accounts, zones);
        let snapshot = Arc::new(snapshot);
        let size = api
            .encode(Some(snapshot.clone()), SystemTime::now())
            .measured()
            .len();
        group.throughput(Throughput::Bytes(size));
        group.bench_function(
            BenchmarkId::from_parameter(format!("{accounts}x{zones}")),
            |b| b.iter(|| api.encode(Some(black_box(snapshot.clone())), SystemTime::now())),
        );
    }
    group.finish();
}

/// GET /metrics through the real router, the body read frame by frame (not copied); with
/// `gzip`, as Prometheus asks.
async fn scrape(router: &axum::Router, gzip: bool) -> u64 {
    let mut request = Request::get("/metrics");
    if gzip {
        request = request.header("Accept-Encoding", "gzip");
    }
    let request = request.body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let mut body = response.into_body();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            len += data.len() as u64;
        }
    }
    len
}

fn serve(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("scrape");
    group.bench_function("scrape_time_metrics_only", |b| {
        let endpoint = metrics::EndpointMetrics::default();
        b.iter(|| metrics::encode_scrape_time(Some(&endpoint)))
    });
    for (accounts, zones) in [(5, 3), (500, 4)] {
        let (snapshot, api) = fleet(accounts, zones);
        let snapshot = Arc::new(snapshot);
        let exposition = api.encode(Some(snapshot.clone()), SystemTime::now());
        let (_tx, published) = tokio::sync::watch::channel(Arc::new(Published {
            snapshot: Some(snapshot),
            exposition,
        }));
        let router = server::router(ServerState {
            published,
            info: Arc::new(PageInfo {
                version: "bench",
                api_url: "https://api.example.com/".into(),
                interval: Duration::from_secs(60),
                shard: None,
            }),
            endpoint: Arc::default(),
        });
        for (name, gzip) in [("metrics", false), ("metrics_gzip", true)] {
            let size = runtime.block_on(scrape(&router, gzip));
            group.throughput(Throughput::Bytes(size));
            group.bench_function(BenchmarkId::new(name, format!("{accounts}x{zones}")), |b| {
                b.iter(|| runtime.block_on(scrape(&router, gzip)))
            });
        }
    }
    group.finish();
}

/// The status page of a large fleet: every SAVING image sorted, the zone rows bounded.
fn status_page(c: &mut Criterion) {
    let mut group = c.benchmark_group("status_page");
    group.sample_size(20);
    let info = PageInfo {
        version: "bench",
        api_url: "https://api.example.com/".into(),
        interval: Duration::from_secs(60),
        shard: None,
    };
    for (accounts, zones) in [(5, 3), (500, 4), (5000, 4)] {
        let (snapshot, _) = fleet(accounts, zones);
        let size = landing::render(&info, Some(&snapshot), SystemTime::now()).len();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(
            BenchmarkId::from_parameter(format!("{accounts}x{zones}")),
            |b| b.iter(|| landing::render(&info, Some(black_box(&snapshot)), SystemTime::now())),
        );
    }
    group.finish();
}

criterion_group!(benches, encode, serve, status_page);
criterion_main!(benches);
