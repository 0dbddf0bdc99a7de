//! The README stays in step with the code: every setting with its default, every metric.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use flexcloud_exporter::config::{DefaultValue, SETTINGS};
use flexcloud_sim::Scenario;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn readme_lists_every_setting_with_its_default() {
    let readme = readme();
    for setting in SETTINGS {
        let name = setting.name;
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("README has no row for {name}"));
        let shown = match setting.default {
            DefaultValue::Value(value) => format!("`{value}`"),
            DefaultValue::Described(text) => text.to_string(),
            DefaultValue::Unset => String::new(),
        };
        let cell = row.split('|').nth(2).unwrap_or("").trim();
        assert_eq!(cell, shown, "README row for {name}: {row}");
    }
}

#[tokio::test]
async fn readme_lists_every_exported_metric() {
    let scenario = Scenario::default()
        .user(common::USER, common::PASSWORD, &["*"])
        .account("a", &["Z"])
        .image("a", "1", "SAVING", "BASE", &["Z"]);
    let mut h = common::Harness::start(scenario, &[]).await;
    let m = h.cycle().await;
    let readme = readme();
    let families: Vec<&str> = m.families.iter().map(|f| f.name.as_str()).collect();
    assert!(families.len() > 15);
    for family in families {
        assert!(
            readme.contains(&format!("`{family}`")),
            "README's metrics table lacks {family}"
        );
    }
    h.stop().await;
}

#[test]
fn the_web_config_document_states_the_connection_limits_in_force() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/web-config.md"))
        .unwrap();
    let limits = flexcloud_exporter::server::Limits::default();
    // The settings' defaults are the same limits.
    use flexcloud_exporter::config::{WEB_IDLE_TIMEOUT, WEB_MAX_CONNECTIONS};
    assert_eq!(
        WEB_MAX_CONNECTIONS.default.shown(),
        limits.max_connections.to_string()
    );
    assert_eq!(
        WEB_IDLE_TIMEOUT.default.shown(),
        humantime::format_duration(limits.idle_timeout).to_string()
    );
    let row = |name: &str| {
        doc.lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("docs/web-config.md has no row for {name}"))
            .to_string()
    };
    let secs = |d: std::time::Duration| format!("{} s", d.as_secs());
    assert!(row("TLS handshake").contains(&secs(limits.tls_handshake_timeout)));
    assert!(row("request head").contains(&secs(limits.header_read_timeout)));
    assert!(row("a response the client does not read").contains(&secs(limits.write_timeout)));
    assert!(row("shutdown (SIGTERM, SIGINT)").contains(&secs(limits.shutdown_grace)));
    assert!(row("open connections").contains(&format!("default {}", limits.max_connections)));
    assert!(row("idle keep-alive connection").contains(&format!(
        "default {}",
        humantime::format_duration(limits.idle_timeout)
    )));
}
