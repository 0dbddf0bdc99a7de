//! Property tests: arbitrary bodies to the response parsers and arbitrary environments to
//! the config parser never panic, and what parses is counted consistently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use flexcloud_exporter::api::ImageType;
use flexcloud_exporter::api::model::{AccountPage, ImagePage, ImageProblem, ZoneMap, error_kind};
use flexcloud_exporter::config::Config;
use flexcloud_exporter::snapshot::ListCount;
use flexcloud_exporter::timestamp::parse_unix_seconds;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("images".to_string()),
                    Just("id".to_string()),
                    Just("status".to_string()),
                    Just("created".to_string()),
                    Just("links".to_string()),
                    ".{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Image lists close to the real shape, with random field types and values.
fn image_list() -> impl Strategy<Value = Value> {
    let image = (
        prop_oneof![".{0,12}".prop_map(Value::String), any::<u32>().prop_map(|n| json!(n)), Just(Value::Null), any_json()],
        prop_oneof![Just(json!("ACTIVE")), Just(json!("SAVING")), Just(json!("DELETED")), ".{0,12}".prop_map(Value::String), any_json()],
        prop_oneof![Just(json!("2011-11-09T03:19:48")), ".{0,25}".prop_map(Value::String), any_json()],
        any_json(),
    )
        .prop_map(|(id, status, created, extra)| json!({"id": id, "name": "n", "status": status, "created": created, "extra": extra}));
    prop::collection::vec(image, 0..20).prop_map(|images| json!({"images": images}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<ImagePage>(&bytes);
        let _ = serde_json::from_slice::<AccountPage>(&bytes);
        let _ = serde_json::from_slice::<ZoneMap>(&bytes);
        let _ = error_kind(&bytes);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_json(value in any_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = serde_json::from_slice::<ImagePage>(&bytes);
        let _ = serde_json::from_slice::<AccountPage>(&bytes);
        let _ = serde_json::from_slice::<ZoneMap>(&bytes);
        let _ = error_kind(&bytes);
    }

    #[test]
    fn every_entry_is_counted_or_noted_exactly_once(list in image_list()) {
        let bytes = serde_json::to_vec(&list).unwrap();
        if let Ok(page) = serde_json::from_slice::<ImagePage>(&bytes) {
            let mut count = ListCount::new(ImageType::Server);
            for entry in page.entries() {
                count.add(entry.as_ref().map_err(|p| *p));
            }
            let inventory = count.finish();
            let skipped: u64 = [ImageProblem::Malformed, ImageProblem::Duplicate]
                .iter()
                .filter_map(|p| inventory.problems.get(p))
                .sum();
            prop_assert_eq!(inventory.total() + skipped, page.images.len() as u64);
            let rows: u64 = inventory.count_rows().iter().map(|(_, _, n)| n).sum();
            prop_assert_eq!(rows, inventory.total());
        }
    }

    #[test]
    fn timestamps_never_panic(text in ".{0,40}") {
        let _ = parse_unix_seconds(&text);
    }

    #[test]
    fn config_parser_never_panics(vars in prop::collection::vec(
        (prop_oneof![
            Just("FLEXCLOUD_API_URL"), Just("FLEXCLOUD_USERNAME"), Just("FLEXCLOUD_PASSWORD"),
            Just("FLEXCLOUD_ACCOUNTS"), Just("FLEXCLOUD_ZONES"), Just("FLEXCLOUD_INTERVAL"),
            Just("FLEXCLOUD_TIMEOUT"), Just("FLEXCLOUD_CONCURRENCY"), Just("FLEXCLOUD_LISTEN_ADDRESS"),
            Just("FLEXCLOUD_LOG"), Just("FLEXCLOUD_LOG_FORMAT"), Just("FLEXCLOUD_SHARD"),
            Just("FLEXCLOUD_STALE_AFTER"), Just("FLEXCLOUD_MAX_BODY_BYTES"), Just("FLEXCLOUD_ALLOW_INSECURE_HTTP"),
            Just("FLEXCLOUD_SAVING_SERIES_LIMIT"), Just("FLEXCLOUD_READ_TIMEOUT"), Just("OTHER"),
        ], ".{0,30}"),
        0..10,
    )) {
        let mut seen = std::collections::BTreeSet::new();
        let unique: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| seen.insert(*k))
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        match Config::from_vars(unique) {
            Ok(config) => prop_assert!(config.concurrency >= 1 && !config.interval.is_zero()),
            Err(error) => prop_assert!(error.to_string().starts_with("FLEXCLOUD_") || error.to_string().starts_with("cannot read")),
        }
    }
}
