//! The README stays in step with the code (settings, metrics, Rust version) and navigable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use flexcloud_exporter::config::{DefaultValue, SETTINGS};
use flexcloud_sim::Scenario;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn readme() -> String {
    read(&Path::new(ROOT).join("README.md"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of a Markdown file outside fenced code blocks, with their line numbers: a `#`
/// in a shell or YAML example is no heading, and a snippet's text is no link.
fn prose(markdown: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (number, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push((number, line));
        }
    }
    lines
}

/// The headings as (level, text), in order.
fn headings(markdown: &str) -> Vec<(usize, String)> {
    prose(markdown)
        .into_iter()
        .filter_map(|(_, line)| {
            let level = line.bytes().take_while(|&b| b == b'#').count();
            let text = line[level..].strip_prefix(' ')?;
            (level > 0).then(|| (level, text.trim().to_string()))
        })
        .collect()
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
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

#[test]
fn the_quick_start_commands_open_the_readme_before_its_contents() {
    let readme = readme();
    let line_of = |wanted: &str| {
        readme
            .lines()
            .position(|l| l == wanted)
            .unwrap_or_else(|| panic!("README has no line {wanted:?}"))
    };
    // The first screen of a terminal or of GitHub's page, about 40 lines.
    let demo = line_of(
        "cargo run --release -- --demo     # the exporter against the built-in simulated API",
    );
    let test = line_of("cargo test                        # the test suite");
    assert!(
        demo < 40 && test < 40,
        "quick start at lines {demo} and {test}"
    );
    assert!(line_of("## Contents") > test);
}

#[test]
fn the_contents_list_every_heading_in_order_with_its_anchor() {
    let readme = readme();
    let all = headings(&readme);
    let contents = all
        .iter()
        .position(|(_, text)| text == "Contents")
        .expect("README has a Contents section");
    let expected: Vec<(usize, String, String)> = all[contents + 1..]
        .iter()
        .map(|(level, text)| (*level, text.clone(), anchor(text)))
        .collect();
    let mut anchors: Vec<&str> = expected.iter().map(|(_, _, a)| a.as_str()).collect();
    anchors.sort_unstable();
    anchors.dedup();
    // GitHub numbers repeated anchors, which the contents would then have to guess.
    assert_eq!(
        anchors.len(),
        expected.len(),
        "two headings share an anchor"
    );

    let listed: Vec<(usize, String, String)> = readme
        .lines()
        .skip_while(|l| *l != "## Contents")
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let indent = l.len() - l.trim_start().len();
            let entry = l
                .trim_start()
                .strip_prefix("- [")
                .unwrap_or_else(|| panic!("not an entry: {l}"));
            let (text, rest) = entry
                .split_once("](#")
                .unwrap_or_else(|| panic!("not a link: {l}"));
            let target = rest
                .strip_suffix(')')
                .unwrap_or_else(|| panic!("text after the link: {l}"));
            (2 + indent / 2, text.to_string(), target.to_string())
        })
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn every_relative_link_of_the_readmes_has_a_target() {
    let root = Path::new(ROOT);
    for file in [root.join("README.md"), root.join("sim/README.md")] {
        let text = read(&file);
        for (number, line) in prose(&text) {
            for (at, _) in line.match_indices("](") {
                let rest = &line[at + 2..];
                let target = &rest[..rest.find(')').unwrap_or(rest.len())];
                if target.starts_with("http://") || target.starts_with("https://") {
                    continue;
                }
                let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
                let linked: PathBuf = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                let place = format!("{}:{}: {target}", file.display(), number + 1);
                assert!(linked.exists(), "{place}: no such file");
                if !fragment.is_empty() {
                    let anchors: Vec<String> = headings(&read(&linked))
                        .iter()
                        .map(|(_, h)| anchor(h))
                        .collect();
                    assert!(
                        anchors.iter().any(|a| a == fragment),
                        "{place}: no such heading"
                    );
                }
            }
        }
    }
}

#[test]
fn the_readme_shows_one_scrape_configuration_with_the_job_the_rules_select() {
    let readme = readme();
    // Copies drift apart; the other sections link to this one.
    assert_eq!(readme.matches("scrape_configs:").count(), 1);
    assert!(readme.contains("  - job_name: flexcloud-exporter "));
    let rules = read(&Path::new(ROOT).join("alerts/flexcloud-exporter.rules.yml"));
    assert!(rules.contains(r#"up{job="flexcloud-exporter"}"#));
}

#[test]
fn the_rust_version_the_readme_states_is_the_manifests() {
    let declared = env!("CARGO_PKG_RUST_VERSION");
    assert!(!declared.is_empty(), "Cargo.toml declares no rust-version");
    let readme = readme();
    let stated: Vec<&str> = readme
        .match_indices("Rust ")
        .map(|(at, _)| {
            let rest = &readme[at + 5..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches('.')
        })
        .filter(|version| !version.is_empty())
        .collect();
    assert!(!stated.is_empty(), "README states no Rust version");
    assert!(
        stated.iter().all(|v| *v == declared),
        "README: {stated:?}, Cargo.toml: {declared}"
    );
    // The README's `cargo test` builds the simulator too, so its minimum must be the same.
    let sim = read(&Path::new(ROOT).join("sim/Cargo.toml"));
    assert!(
        sim.lines().any(|l| l == "rust-version.workspace = true"
            || l == format!("rust-version = \"{declared}\"")),
        "sim/Cargo.toml does not take the workspace's rust-version"
    );
}
