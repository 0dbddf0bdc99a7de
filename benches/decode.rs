//! Decoding and aggregating an images/detail body, against a plain `serde_json::Value` parse.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flexcloud_exporter::api::ImageType;
use flexcloud_exporter::api::model::{ImagePage, next_link};
use flexcloud_exporter::snapshot::{Inventory, ListCount};

/// A body shaped like the simulator's (and the reference's) `images/detail` answer:
/// links, zones and an `updated: null` the exporter does not read, 2% SAVING, 5% DELETED.
fn body(images: usize) -> Vec<u8> {
    const NAMES: [&str; 8] = [
        "debian", "ubuntu", "centos", "windows", "web", "db", "cache", "backup",
    ];
    let mut out = String::with_capacity(images * 420 + 64);
    out.push_str(r#"{"images": ["#);
    for i in 0..images {
        let id = 100_000 + i;
        let status = match i % 100 {
            0 | 50 => "SAVING",
            1..=5 => "DELETED",
            _ => "ACTIVE",
        };
        let href = format!("https://api.hostway.com/accounts/acct00042/flexcloud/images/{id}/");
        if i > 0 {
            out.push_str(", ");
        }
        write!(
            out,
            r#"{{"id": "{id}", "name": "{name}-{id}", "links": [{{"href": "{href}", "rel": "self"}}, {{"href": "{href}", "rel": "bookmark"}}], "zones": ["US-TAMPA-01"], "status": "{status}", "updated": null, "created": "2026-10-{day:02}T{hour:02}:00:00"}}"#,
            name = NAMES[i % NAMES.len()],
            day = i % 28 + 1,
            hour = i % 24,
        )
        .unwrap();
    }
    out.push_str("]}");
    out.into_bytes()
}

/// What the collector does with one page: typed, borrowed decode, then one record per image.
fn decode_and_aggregate(bytes: &[u8]) -> Inventory {
    let page: ImagePage = serde_json::from_slice(bytes).unwrap();
    let mut count = ListCount::new(ImageType::Server);
    for entry in page.entries() {
        count.add(entry.as_ref().map_err(|p| *p));
    }
    black_box(next_link(&page.links));
    count.finish()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("images_detail");
    for images in [100, 10_000] {
        let bytes = body(images);
        let check = decode_and_aggregate(&bytes);
        assert_eq!(check.total(), images as u64);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("typed_decode_and_aggregate", images),
            &bytes,
            |b, bytes| b.iter(|| decode_and_aggregate(black_box(bytes))),
        );
        group.bench_with_input(
            BenchmarkId::new("serde_json_value", images),
            &bytes,
            |b, bytes| {
                b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(bytes)).unwrap())
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
