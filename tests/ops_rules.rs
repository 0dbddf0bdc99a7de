//! The bundled alert rules and the dashboards' PromQL, checked as Prometheus would take them.
//!
//! Conventions (names, labels, annotations, a runbook section per alert, a firing and a quiet
//! unit test per alert) are checked always. The checks that run promtool are ignored unless
//! asked for (`cargo test --test ops_rules -- --include-ignored`): `promtool check rules`,
//! `promtool test rules alerts/tests/*.yml`, and every dashboard expression, with its
//! template variables filled in, parsed as a recording rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};

#[path = "common/dashboards.rs"]
mod dashboards;
use dashboards::dashboard_queries;

const RULES: &str = "alerts/flexcloud-exporter.rules.yml";
const RULE_TESTS: &str = "alerts/tests";
const RUNBOOK: &str = "docs/runbook.md";
const ALERTS_DOC: &str = "docs/dashboards-and-alerts.md";
/// The line of the rules file that names the runbook base, the one place it is set.
const RUNBOOK_BASE_LINE: &str = "#   Runbook base: ";
const SEVERITIES: &[&str] = &["critical", "warning", "info"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_in(dir: &str, extension: &str) -> Vec<PathBuf> {
    let dir = repo(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no .{extension} files in {}",
        dir.display()
    );
    files
}

/// A Prometheus rules file, as far as the conventions below read it; promtool checks the rest.
#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

/// An alerting or recording rule; only alerting rules have `alert`.
#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A promtool unit-test file: the alert cases of each test.
#[derive(Deserialize)]
struct RuleTestFile {
    tests: Vec<RuleTest>,
}

#[derive(Deserialize)]
struct RuleTest {
    #[serde(default)]
    alert_rule_test: Vec<AlertCase>,
}

/// One evaluation of one alert: it fires when alerts are expected.
#[derive(Deserialize)]
struct AlertCase {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<IgnoredAny>,
}

fn yaml<T: DeserializeOwned>(path: &Path) -> T {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Alert {
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Alert {
    fn annotation(&self, key: &str) -> &str {
        self.annotations.get(key).map_or("", String::as_str)
    }
}

fn alerts() -> Vec<Alert> {
    let file: RuleFile = yaml(&repo(RULES));
    let alerts: Vec<Alert> = file
        .groups
        .into_iter()
        .flat_map(|group| group.rules)
        .filter_map(|rule| {
            Some(Alert {
                name: rule.alert?,
                labels: rule.labels,
                annotations: rule.annotations,
            })
        })
        .collect();
    assert!(!alerts.is_empty(), "no alerts found in {RULES}");
    alerts
}

fn is_camel_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && name.chars().any(|c| c.is_ascii_lowercase())
}

#[test]
fn alerts_are_camel_case_with_severity_summary_description_and_runbook() {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for alert in alerts() {
        let name = &alert.name;
        if !is_camel_case(name) || !name.starts_with("Flexcloud") {
            problems.push(format!("{name:?} is not CamelCase starting with Flexcloud"));
        }
        if !names.insert(name.clone()) {
            problems.push(format!("{name} is defined twice"));
        }
        let severity = alert.labels.get("severity").map_or("", String::as_str);
        if !SEVERITIES.contains(&severity) {
            problems.push(format!(
                "{name}: severity {severity:?} is not one of {SEVERITIES:?}"
            ));
        }
        for annotation in ["summary", "description", "runbook_url"] {
            if alert.annotation(annotation).trim().is_empty() {
                problems.push(format!("{name}: no {annotation} annotation"));
            }
        }
    }
    assert!(problems.is_empty(), "{RULES}:\n  {}", problems.join("\n  "));
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to dashes, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The runbook base the rules file declares (the canonical one; the Kubernetes generator
/// rewrites it).
fn runbook_base() -> String {
    let rules = read(&repo(RULES));
    let bases: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.strip_prefix(RUNBOOK_BASE_LINE))
        .collect();
    assert_eq!(bases.len(), 1, "{RULES} must name its runbook base once");
    bases[0].trim().to_string()
}

#[test]
fn every_alert_links_its_own_runbook_section_under_one_absolute_base() {
    let base = runbook_base();
    assert!(
        base.starts_with("https://") && base.ends_with("/docs/runbook.md"),
        "runbook base {base:?} is not an absolute link to docs/runbook.md"
    );
    let runbook = read(&repo(RUNBOOK));
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(anchor)
        .collect();
    let mut problems = Vec::new();
    for alert in alerts() {
        let expected = format!("{base}#{}", anchor(&alert.name));
        let runbook_url = alert.annotation("runbook_url");
        if runbook_url != expected {
            problems.push(format!(
                "{}: runbook_url {runbook_url:?}, want {expected:?}",
                alert.name
            ));
        }
        if !anchors.contains(&anchor(&alert.name)) {
            problems.push(format!(
                "{}: no `## {}` section in {RUNBOOK}",
                alert.name, alert.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Repository paths of Markdown documents named in `text` (`docs/x.md`, `README.md`).
fn named_documents(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices(".md") {
        let start = text[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "/-_.".contains(c)))
            .map_or(0, |i| i + 1);
        let path = text[start..at + 3].trim_start_matches("./");
        let after = text[at + 3..].chars().next();
        // `//host/...` is the tail of a URL, not a repository path.
        let url = path.starts_with("//");
        if !path.is_empty() && !url && !after.is_some_and(|c| c.is_ascii_alphanumeric()) {
            found.insert(path.to_string());
        }
    }
    found
}

#[test]
fn every_document_the_alerting_files_name_exists() {
    // The scan finds what the rules file names, and takes a URL for no path.
    let named = named_documents(&read(&repo(RULES)));
    assert!(
        named.contains(ALERTS_DOC) && named.contains(RUNBOOK) && named.len() == 2,
        "{named:?}"
    );
    let mut problems = Vec::new();
    for file in [
        RULES,
        RUNBOOK,
        ALERTS_DOC,
        "deploy/kubernetes/prometheusrule.yaml",
        "deploy/kubernetes/generate-prometheusrule.sh",
        "deploy/alertmanager/alertmanager.yml",
    ] {
        for document in named_documents(&read(&repo(file))) {
            // Links inside the docs folder may be relative to it.
            let beside = Path::new(file)
                .parent()
                .unwrap_or(Path::new(""))
                .join(&document);
            if !repo(&document).exists() && !repo(&beside.to_string_lossy()).exists() {
                problems.push(format!("{file} names {document}, which does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_alerts_document_lists_every_alert_and_the_runbook_base() {
    let doc = read(&repo(ALERTS_DOC));
    let mut problems = Vec::new();
    for alert in alerts() {
        if !doc.contains(&format!("| {} |", alert.name)) {
            problems.push(format!("{ALERTS_DOC} has no table row for {}", alert.name));
        }
    }
    for needle in [runbook_base(), "RUNBOOK_BASE_URL".to_string()] {
        if !doc.contains(&needle) {
            problems.push(format!("{ALERTS_DOC} does not mention {needle}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_alert_is_unit_tested_firing_and_quiet() {
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for path in files_in(RULE_TESTS, "yml") {
        let file: RuleTestFile = yaml(&path);
        for case in file.tests.into_iter().flat_map(|test| test.alert_rule_test) {
            if case.exp_alerts.is_empty() {
                &mut quiet
            } else {
                &mut firing
            }
            .insert(case.alertname);
        }
    }
    let mut problems = Vec::new();
    for alert in alerts() {
        if !firing.contains(&alert.name) {
            problems.push(format!("{} has no test where it fires", alert.name));
        }
        if !quiet.contains(&alert.name) {
            problems.push(format!("{} has no test where it stays quiet", alert.name));
        }
    }
    assert!(
        problems.is_empty(),
        "{RULE_TESTS}:\n  {}",
        problems.join("\n  ")
    );
}

/// Runs promtool in the repository root: whether it succeeded, and everything it printed.
fn run_promtool(args: &[&str]) -> (bool, String) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(repo("."))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool (install the Debian package `prometheus`): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn promtool(args: &[&str]) -> String {
    let (ok, text) = run_promtool(args);
    assert!(ok, "promtool {} failed:\n{text}", args.join(" "));
    text
}

#[test]
#[ignore = "needs promtool"]
fn promtool_accepts_the_rules() {
    let out = promtool(&["check", "rules", RULES]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
#[ignore = "needs promtool"]
fn promtool_unit_tests_pass() {
    let tests: Vec<String> = files_in(RULE_TESTS, "yml")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = promtool(&args);
    assert_eq!(out.matches("SUCCESS").count(), tests.len(), "{out}");
}

#[test]
#[ignore = "needs promtool"]
fn dashboard_queries_parse_as_promql() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops_rules");
    fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{}: {e}", scratch.display()));
    for path in dashboards::dashboard_files() {
        let file_name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let queries = dashboard_queries(&path);
        let rules: Vec<Value> = queries
            .iter()
            .enumerate()
            .map(|(i, (_, expr))| json!({ "record": format!("dashboard:query_{i}:expr"), "expr": expr }))
            .collect();
        // YAML is a superset of JSON, so promtool reads this as a rules file.
        let file = scratch.join(format!("{file_name}.rules.yml"));
        let groups = json!({ "groups": [{ "name": file_name, "rules": rules }] });
        fs::write(&file, groups.to_string()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (ok, out) = run_promtool(&["check", "rules", &file.to_string_lossy()]);
        let places: Vec<String> = queries
            .iter()
            .enumerate()
            .map(|(i, (place, expr))| format!("query_{i}: {place}: {expr}"))
            .collect();
        assert!(
            ok && out.contains(&format!("SUCCESS: {} rules found", queries.len())),
            "{file_name}:\n{out}\nwhere\n  {}",
            places.join("\n  ")
        );
    }
}
