//! Dashboard queries as Grafana runs them, shared by the promtool and end-to-end tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// What Grafana puts in for its built-in interval variables, as PromQL needs a duration.
pub const GLOBAL_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "1m"),
    ("__range", "1h"),
];

/// Every dashboard JSON file under `dashboards/`, sorted.
pub fn dashboard_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// The `$name` and `${name}` references of `text`: where each stands and the name.
pub fn references(text: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find('$').map(|i| from + i) {
        let braced = text[at + 1..].starts_with('{');
        let start = at + 1 + usize::from(braced);
        let len = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len() - start);
        let end = start + len + usize::from(braced && len > 0);
        found.push((at..end, &text[start..start + len]));
        from = end.max(at + 1);
    }
    found
}

/// `text` with every `$name` and `${name}` replaced from `values`; panics on an unknown name.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut copied = 0;
    for (span, name) in references(text) {
        let value = values
            .get(name)
            .unwrap_or_else(|| panic!("unknown variable ${name} in {text}"));
        out.push_str(&text[copied..span.start]);
        out.push_str(value);
        copied = span.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// A query variable's `label_values(selector, label)` split into its two arguments.
pub fn label_values(query: &str) -> Option<(&str, &str)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

/// Every query of one dashboard (variable selectors and panel targets) with its variables
/// set as Grafana sets them for "All", each with a description of where it stands.
pub fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut values: BTreeMap<String, String> = GLOBAL_VARIABLES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for v in &variables {
        let all = v["allValue"].as_str().unwrap_or(".*");
        values.insert(
            v["name"].as_str().unwrap_or_default().to_string(),
            all.to_string(),
        );
    }
    let mut queries = Vec::new();
    for v in &variables {
        if let Some((selector, label)) = v["query"].as_str().and_then(label_values) {
            let place = format!("variable {} (label {label})", v["name"]);
            queries.push((place, substitute(selector, &values)));
        }
    }
    let mut panels: Vec<&Value> = Vec::new();
    for panel in dashboard["panels"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    }
    for panel in panels {
        for target in panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(expr) = target["expr"].as_str() {
                let place = format!("panel {} target {}", panel["title"], target["refId"]);
                queries.push((place, substitute(expr, &values)));
            }
        }
    }
    queries
}
