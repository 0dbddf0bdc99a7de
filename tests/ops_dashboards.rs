//! The bundled Grafana dashboards follow the conventions of Grafana's dashboard-linter.
//!
//! The linter is a Go program that cannot be installed here, so its rules that matter for a
//! shipped dashboard are restated below (rule names in comments) and applied to every JSON
//! file in `dashboards/`, together with checks against this exporter's metrics contract.
//! The type check against `@grafana/schema` needs npm packages and is ignored unless asked
//! for (`cargo test --test ops_dashboards -- --include-ignored`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Every metric the exporter promises (histogram and process series included).
const METRICS: &[&str] = &[
    "flexcloud_images",
    "flexcloud_images_saving_oldest_age_seconds",
    "flexcloud_image_saving_created_timestamp_seconds",
    "flexcloud_probe_success",
    "flexcloud_probe_duration_seconds",
    "flexcloud_probe_http_status_code",
    "flexcloud_last_success_timestamp_seconds",
    "flexcloud_discovery_success",
    "flexcloud_discovery_http_status_code",
    "flexcloud_api_requests_total",
    "flexcloud_api_request_duration_seconds_bucket",
    "flexcloud_api_request_duration_seconds_sum",
    "flexcloud_api_request_duration_seconds_count",
    "flexcloud_up",
    "flexcloud_collection_duration_seconds",
    "flexcloud_last_collection_timestamp_seconds",
    "flexcloud_accounts_watched",
    "flexcloud_zones_watched",
    "flexcloud_image_saving_series_dropped_total",
    "flexcloud_exporter_build_info",
    // Prometheus's own series for the scrape target.
    "up",
];

/// Labels the exporter's series carry, plus the target labels Prometheus adds.
const LABELS: &[&str] = &[
    "job",
    "instance",
    "account_id",
    "zone_id",
    "image_type",
    "image_id",
    "image_name",
    "status",
    "endpoint",
    "code",
    "step",
    "le",
    "version",
    "revision",
];

/// Variables that filter the exporter's own labels (multi-select with All).
const LABEL_VARIABLES: &[&str] = &["account_id", "zone_id", "image_type"];

/// Grafana's built-in variables that queries may use.
const GLOBAL_VARIABLES: &[&str] = &["__rate_interval", "__interval", "__range"];

/// Unit ids Grafana knows (a subset of its value formats: the families an exporter dashboard
/// plausibly needs). Anything else is a typo Grafana would render as a plain number.
const UNITS: &[&str] = &[
    "none",
    "string",
    "short",
    "percent",
    "percentunit",
    "locale",
    "sci",
    "bytes",
    "decbytes",
    "bits",
    "kbytes",
    "mbytes",
    "gbytes",
    "Bps",
    "bps",
    "dateTimeAsIso",
    "dateTimeAsLocal",
    "dateTimeFromNow",
    "ns",
    "µs",
    "ms",
    "s",
    "m",
    "h",
    "d",
    "dtdurationms",
    "dtdurations",
    "dthms",
    "dtdhms",
    "clockms",
    "clocks",
    "hertz",
    "cps",
    "ops",
    "reqps",
    "rps",
    "wps",
    "iops",
    "cpm",
    "opm",
    "rpm",
    "wpm",
    "bool",
    "bool_yes_no",
    "bool_on_off",
];

/// The schema version of Grafana 10.4; older ones are migrated on every load.
const MIN_SCHEMA_VERSION: u64 = 39;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every dashboard file, parsed, by file name.
fn dashboards() -> BTreeMap<String, Value> {
    let dir = repo("dashboards");
    let mut found = BTreeMap::new();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let name = path
                .file_name()
                .unwrap_or_else(|| panic!("{} has no file name", path.display()))
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            found.insert(name, json);
        }
    }
    assert!(!found.is_empty(), "no dashboard JSON in {}", dir.display());
    found
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn variables(dashboard: &Value) -> &[Value] {
    dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> Option<&'a Value> {
    variables(dashboard)
        .iter()
        .find(|v| str_at(v, "name") == name)
}

/// Panels in rows are listed inside the row when it is collapsed.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        all.push(panel);
        for inner in panel["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            all.push(inner);
        }
    }
    all
}

fn is_row(panel: &Value) -> bool {
    str_at(panel, "type") == "row"
}

/// Every PromQL expression with where it comes from: panel targets and query variables.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let place = format!(
                "panel '{}' target {}",
                str_at(panel, "title"),
                str_at(target, "refId")
            );
            found.push((place, str_at(target, "expr").to_string()));
        }
    }
    found
}

fn is_templated_datasource(value: &Value) -> bool {
    matches!(str_at(value, "uid"), "${datasource}" | "$datasource")
}

/// Collects every violation instead of stopping at the first, so one run shows them all.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }

    fn assert_none(self, what: &str) {
        assert!(self.0.is_empty(), "{what}:\n  {}", self.0.join("\n  "));
    }
}

#[test]
fn dashboards_have_stable_uid_tags_title_and_recent_schema() {
    let mut findings = Findings::default();
    let mut uids = BTreeSet::new();
    for (name, d) in dashboards() {
        let uid = str_at(&d, "uid");
        findings.check(
            !uid.is_empty()
                && uid.len() <= 40
                && uid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            || format!("{name}: uid {uid:?} must be set, at most 40 of [A-Za-z0-9_-]"),
        );
        findings.check(uids.insert(uid.to_string()), || {
            format!("{name}: uid {uid:?} used twice")
        });
        findings.check(d.get("id").is_none_or(Value::is_null), || {
            format!("{name}: id must be null or absent (it is the id in one Grafana's database)")
        });
        findings.check(!str_at(&d, "title").is_empty(), || {
            format!("{name}: no title")
        });
        findings.check(!str_at(&d, "description").is_empty(), || {
            format!("{name}: no description")
        });
        let tags = d["tags"].as_array().map(Vec::len).unwrap_or(0);
        findings.check(tags > 0, || format!("{name}: no tags"));
        let version = d["schemaVersion"].as_u64().unwrap_or(0);
        findings.check(version >= MIN_SCHEMA_VERSION, || {
            format!("{name}: schemaVersion {version} is older than {MIN_SCHEMA_VERSION}")
        });
        findings.check(d.get("__inputs").is_none(), || {
            format!("{name}: __inputs ties the file to an exported data source; use the datasource variable")
        });
    }
    findings.assert_none("dashboard metadata");
}

// template-datasource-rule
#[test]
fn one_prometheus_datasource_variable_named_datasource() {
    let mut findings = Findings::default();
    for (name, d) in dashboards() {
        let sources: Vec<&Value> = variables(&d)
            .iter()
            .filter(|v| str_at(v, "type") == "datasource")
            .collect();
        findings.check(sources.len() == 1, || {
            format!("{name}: {} datasource variables, want 1", sources.len())
        });
        for source in sources {
            findings.check(str_at(source, "name") == "datasource", || {
                format!(
                    "{name}: datasource variable is named {:?}, want \"datasource\"",
                    str_at(source, "name")
                )
            });
            findings.check(str_at(source, "query") == "prometheus", || {
                format!(
                    "{name}: datasource variable is of type {:?}, want \"prometheus\"",
                    str_at(source, "query")
                )
            });
            findings.check(str_at(source, "label") == "Data source", || {
                format!(
                    "{name}: datasource variable is labelled {:?}, want \"Data source\"",
                    str_at(source, "label")
                )
            });
        }
    }
    findings.assert_none("datasource variable");
}

// template-job-rule, template-instance-rule, template-label-promql-rule,
// template-on-time-change-reload, and the same shape for the exporter's own labels.
#[test]
fn job_instance_and_label_variables_are_templated_multi_select_queries() {
    let mut findings = Findings::default();
    for (name, d) in dashboards() {
        for (var, label, all) in [("job", "Job", ".+"), ("instance", "Instance", ".+")] {
            let Some(v) = variable(&d, var) else {
                findings.0.push(format!("{name}: no `{var}` variable"));
                continue;
            };
            findings.check(str_at(v, "label") == label, || {
                format!("{name}: `{var}` should be labelled {label:?}")
            });
            findings.check(str_at(v, "allValue") == all, || {
                format!("{name}: `{var}` allValue should be {all:?}")
            });
        }
        for var in LABEL_VARIABLES {
            findings.check(variable(&d, var).is_some(), || {
                format!("{name}: no `{var}` variable")
            });
        }
        for v in variables(&d)
            .iter()
            .filter(|v| str_at(v, "type") == "query")
        {
            let var = str_at(v, "name");
            let datasource = v.get("datasource").unwrap_or(&Value::Null);
            findings.check(is_templated_datasource(datasource), || {
                format!("{name}: variable `{var}` should use data source ${{datasource}}, uses {datasource}")
            });
            findings.check(v["multi"] == true && v["includeAll"] == true, || {
                format!("{name}: variable `{var}` should be multi-select with All")
            });
            findings.check(v["refresh"] == 2, || {
                format!("{name}: variable `{var}` should refresh on time range change (2)")
            });
            let query = str_at(v, "query");
            match label_values(query) {
                Some((selector, label)) => {
                    findings.check(label == var, || {
                        format!("{name}: variable `{var}` lists label `{label}`, not its own name")
                    });
                    let metric = selector.split('{').next().unwrap_or("").trim();
                    findings.check(METRICS.contains(&metric), || {
                        format!("{name}: variable `{var}` reads unknown metric {metric:?}")
                    });
                    if var != "job" {
                        findings.check(selector.contains("job=~\"$job\""), || {
                            format!(
                                "{name}: variable `{var}` should be limited to the selected jobs"
                            )
                        });
                    }
                }
                None => findings.0.push(format!(
                    "{name}: variable `{var}` query {query:?} is not label_values(selector, label)"
                )),
            }
        }
    }
    findings.assert_none("query variables");
}

/// `label_values(selector, label)` split into its two arguments.
fn label_values(query: &str) -> Option<(&str, &str)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

// panel-datasource-rule, panel-title-description-rule, panel-units-rule, panel-no-targets-rule
#[test]
fn every_panel_has_title_description_unit_templated_datasource_and_targets() {
    let mut findings = Findings::default();
    for (name, d) in dashboards() {
        let mut ids = BTreeSet::new();
        for panel in panels(&d) {
            let title = str_at(panel, "title");
            findings.check(!title.is_empty(), || {
                format!("{name}: a {} panel has no title", str_at(panel, "type"))
            });
            let id = panel["id"].as_u64();
            findings.check(id.is_some_and(|id| ids.insert(id)), || {
                format!("{name}: panel '{title}' has a missing or duplicate id")
            });
            let pos = &panel["gridPos"];
            let (x, w) = (
                pos["x"].as_u64().unwrap_or(99),
                pos["w"].as_u64().unwrap_or(99),
            );
            findings.check(x + w <= 24 && pos["h"].as_u64().is_some(), || {
                format!("{name}: panel '{title}' lies outside the 24-column grid")
            });
            if is_row(panel) {
                continue;
            }
            findings.check(!str_at(panel, "description").is_empty(), || {
                format!("{name}: panel '{title}' has no description")
            });
            let datasource = panel.get("datasource").unwrap_or(&Value::Null);
            findings.check(is_templated_datasource(datasource), || {
                format!("{name}: panel '{title}' should use data source ${{datasource}}, uses {datasource}")
            });
            let unit = str_at(&panel["fieldConfig"]["defaults"], "unit");
            findings.check(UNITS.contains(&unit), || {
                format!("{name}: panel '{title}' has no or an unknown unit {unit:?}")
            });
            for o in panel["fieldConfig"]["overrides"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                for property in o["properties"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    if str_at(property, "id") == "unit" {
                        let unit = str_at(property, "value");
                        findings.check(UNITS.contains(&unit), || {
                            format!("{name}: panel '{title}' overrides with unknown unit {unit:?}")
                        });
                    }
                }
            }
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            findings.check(!targets.is_empty(), || {
                format!("{name}: panel '{title}' has no targets")
            });
            let mut refs = BTreeSet::new();
            for target in targets {
                let r = str_at(target, "refId");
                findings.check(!r.is_empty() && refs.insert(r.to_string()), || {
                    format!("{name}: panel '{title}' has a missing or duplicate refId")
                });
                findings.check(!str_at(target, "expr").trim().is_empty(), || {
                    format!("{name}: panel '{title}' target {r} has no expr")
                });
                if let Some(datasource) = target.get("datasource") {
                    findings.check(is_templated_datasource(datasource), || {
                        format!("{name}: panel '{title}' target {r} should use data source ${{datasource}}, uses {datasource}")
                    });
                }
            }
        }
    }
    findings.assert_none("panels");
}

// target-job-rule, target-instance-rule, target-rate-interval-rule, target-counter-agg-rule,
// plus the metrics contract: known metrics and labels, label variables applied.
#[test]
fn every_query_selects_job_and_instance_and_uses_rate_interval() {
    let mut findings = Findings::default();
    for (name, d) in dashboards() {
        for (place, expr) in expressions(&d) {
            let parsed = match Query::parse(&expr) {
                Ok(parsed) => parsed,
                Err(e) => {
                    findings.0.push(format!("{name}: {place}: {e}: {expr}"));
                    continue;
                }
            };
            findings.check(!parsed.selectors.is_empty(), || {
                format!("{name}: {place}: selects no series")
            });
            for s in &parsed.selectors {
                let metric = s.metric.as_str();
                findings.check(METRICS.contains(&metric), || {
                    format!("{name}: {place}: unknown metric {metric:?}")
                });
                for (label, required) in [("job", "$job"), ("instance", "$instance")] {
                    findings.check(s.has(label, "=~", required), || {
                        format!("{name}: {place}: {metric} lacks {label}=~\"{required}\"")
                    });
                }
                for m in &s.matchers {
                    findings.check(LABELS.contains(&m.label.as_str()), || {
                        format!("{name}: {place}: unknown label {:?}", m.label)
                    });
                }
                if metric.ends_with("_total") || metric.ends_with("_bucket") {
                    findings.check(
                        s.range.is_some() && matches!(s.call.as_deref(), Some("rate" | "irate" | "increase")),
                        || format!("{name}: {place}: counter {metric} is not inside rate, irate or increase"),
                    );
                }
                if matches!(s.call.as_deref(), Some("rate" | "irate")) {
                    findings.check(s.range.as_deref() == Some("$__rate_interval"), || {
                        format!("{name}: {place}: {metric} in rate() should use [$__rate_interval], uses {:?}", s.range)
                    });
                }
            }
            for label in &parsed.grouping {
                findings.check(LABELS.contains(&label.as_str()), || {
                    format!("{name}: {place}: groups by unknown label {label:?}")
                });
            }
            for var in variable_references(&expr) {
                findings.check(
                    variable(&d, &var).is_some() || GLOBAL_VARIABLES.contains(&var.as_str()),
                    || format!("{name}: {place}: uses undefined variable ${var}"),
                );
            }
        }
    }
    findings.assert_none("queries");
}

/// Each label variable narrows every query of a series that carries the label: a panel that
/// ignores the account filter would show other accounts' images under the chosen one.
#[test]
fn label_variables_filter_every_series_that_has_the_label() {
    /// Which of the filtered labels each metric carries.
    const CARRIES: &[(&str, &[&str])] = &[
        ("flexcloud_images", &["account_id", "zone_id", "image_type"]),
        (
            "flexcloud_images_saving_oldest_age_seconds",
            &["account_id", "zone_id", "image_type"],
        ),
        (
            "flexcloud_image_saving_created_timestamp_seconds",
            &["account_id", "zone_id", "image_type"],
        ),
        ("flexcloud_probe_success", &["account_id", "zone_id"]),
        (
            "flexcloud_probe_duration_seconds",
            &["account_id", "zone_id"],
        ),
        (
            "flexcloud_probe_http_status_code",
            &["account_id", "zone_id"],
        ),
        (
            "flexcloud_last_success_timestamp_seconds",
            &["account_id", "zone_id"],
        ),
        ("flexcloud_discovery_success", &["account_id"]),
        ("flexcloud_discovery_http_status_code", &["account_id"]),
        ("flexcloud_api_requests_total", &["account_id"]),
        (
            "flexcloud_api_request_duration_seconds_bucket",
            &["account_id"],
        ),
    ];
    let mut findings = Findings::default();
    for (name, d) in dashboards() {
        for (place, expr) in expressions(&d) {
            let Ok(parsed) = Query::parse(&expr) else {
                continue;
            };
            for s in &parsed.selectors {
                let carried = CARRIES
                    .iter()
                    .find(|(m, _)| *m == s.metric)
                    .map(|(_, l)| *l)
                    .unwrap_or(&[]);
                for label in carried {
                    findings.check(s.has(label, "=~", &format!("${label}")), || {
                        format!("{name}: {place}: {} lacks {label}=~\"${label}\"", s.metric)
                    });
                }
            }
        }
    }
    findings.assert_none("label variables");
}

#[test]
fn every_variable_is_used_by_a_query() {
    let mut findings = Findings::default();
    for (name, d) in dashboards() {
        let mut used: BTreeSet<String> = BTreeSet::new();
        for (_, expr) in expressions(&d) {
            used.extend(variable_references(&expr));
        }
        for panel in panels(&d) {
            if let Some(datasource) = panel
                .get("datasource")
                .filter(|ds| is_templated_datasource(ds))
            {
                used.extend(variable_references(str_at(datasource, "uid")));
            }
        }
        for v in variables(&d) {
            let var = str_at(v, "name");
            findings.check(used.contains(var), || {
                format!("{name}: variable `{var}` is not used by any panel")
            });
        }
    }
    findings.assert_none("unused variables");
}

/// The names in `$name` and `${name}` references.
fn variable_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        if len > 0 {
            found.insert(body[..len].to_string());
        }
    }
    found
}

/// One label matcher of a selector.
#[derive(Debug, PartialEq)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// A vector selector with what encloses it.
#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<Matcher>,
    /// The text of `[...]` right after the selector.
    range: Option<String>,
    /// The innermost function or aggregation whose argument list holds the selector.
    call: Option<String>,
}

impl Selector {
    fn has(&self, label: &str, op: &str, value: &str) -> bool {
        self.matchers
            .iter()
            .any(|m| m.label == label && m.op == op && m.value == value)
    }
}

/// What the dashboard rules need from a PromQL expression: its selectors and the labels of
/// its `by`/`without`/`on`/`ignoring`/`group_*` clauses. A small scanner, not a parser:
/// promtool parses every expression in the `ops_rules` test.
#[derive(Debug, Default)]
struct Query {
    selectors: Vec<Selector>,
    grouping: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str,
    Number,
    Braces(String),
    Brackets(String),
    Open,
    Close,
    Other,
}

const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const WORD_OPERATORS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "Inf", "NaN",
];
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

impl Query {
    fn parse(expr: &str) -> Result<Query, String> {
        let tokens = tokenize(expr)?;
        let mut query = Query::default();
        // One entry per open parenthesis: the call it belongs to, or None for a plain one.
        let mut calls: Vec<Option<String>> = Vec::new();
        // An aggregation written `sum by (x) (...)` owns the parenthesis after its label list.
        let mut aggregation: Option<String> = None;
        let mut i = 0;
        while i < tokens.len() {
            let next = tokens.get(i + 1);
            match &tokens[i] {
                Token::Ident(word) if WORD_OPERATORS.contains(&word.as_str()) => {}
                Token::Ident(word) if LABEL_LIST_KEYWORDS.contains(&word.as_str()) => {
                    if next != Some(&Token::Open) {
                        return Err(format!("`{word}` without a label list"));
                    }
                    let mut j = i + 2;
                    loop {
                        match tokens.get(j) {
                            Some(Token::Ident(label)) => query.grouping.push(label.clone()),
                            Some(Token::Close) => break,
                            Some(Token::Other) => {}
                            other => {
                                return Err(format!("unexpected {other:?} in `{word}` label list"));
                            }
                        }
                        j += 1;
                    }
                    i = j + 1;
                    continue;
                }
                Token::Ident(word) if next == Some(&Token::Open) => {
                    calls.push(Some(word.clone()));
                    i += 2;
                    continue;
                }
                Token::Ident(word) if AGGREGATIONS.contains(&word.as_str()) => {
                    aggregation = Some(word.clone())
                }
                Token::Ident(metric) => {
                    let Some(Token::Braces(body)) = next else {
                        return Err(format!("selector {metric} has no label matchers"));
                    };
                    query
                        .selectors
                        .push(selector(metric, body, tokens.get(i + 2), &calls)?);
                    i += 2;
                    continue;
                }
                Token::Braces(body) => {
                    let s = selector("", body, next, &calls)?;
                    let name = s
                        .matchers
                        .iter()
                        .find(|m| m.label == "__name__" && m.op == "=");
                    let metric = name.map(|m| m.value.clone()).unwrap_or_default();
                    query.selectors.push(Selector { metric, ..s });
                }
                Token::Open => calls.push(aggregation.take()),
                Token::Close => {
                    calls.pop().ok_or("unbalanced parentheses")?;
                }
                Token::Brackets(_) | Token::Str | Token::Number | Token::Other => {}
            }
            i += 1;
        }
        if !calls.is_empty() {
            return Err("unbalanced parentheses".into());
        }
        Ok(query)
    }
}

fn selector(
    metric: &str,
    body: &str,
    next: Option<&Token>,
    calls: &[Option<String>],
) -> Result<Selector, String> {
    let range = match next {
        Some(Token::Brackets(range)) => Some(range.trim().to_string()),
        _ => None,
    };
    Ok(Selector {
        metric: metric.to_string(),
        matchers: matchers(body)?,
        range,
        call: calls.last().cloned().flatten(),
    })
}

/// `a="x", b=~"y"` split into matchers.
fn matchers(body: &str) -> Result<Vec<Matcher>, String> {
    let mut found = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let label = rest[..name_len].to_string();
        rest = rest[name_len..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("no operator after label {label:?} in {{{body}}}"))?;
        rest = rest[op.len()..].trim_start();
        let quote = rest
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'))
            .ok_or_else(|| format!("unquoted value for {label}"))?;
        let end =
            string_end(rest, quote).ok_or_else(|| format!("unterminated value for {label}"))?;
        found.push(Matcher {
            label,
            op: op.to_string(),
            value: rest[1..end].to_string(),
        });
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(found)
}

/// Byte index of the quote closing the string that starts at `text[0]`.
fn string_end(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in text.char_indices().skip(1) {
        match c {
            '\\' if quote != '`' && !escaped => escaped = true,
            c if c == quote && !escaped => return Some(at),
            _ => escaped = false,
        }
    }
    None
}

fn tokenize(expr: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = expr;
    while let Some(c) = rest.chars().next() {
        let len = match c {
            c if c.is_whitespace() => {
                rest = &rest[c.len_utf8()..];
                continue;
            }
            '#' => rest.find('\n').unwrap_or(rest.len()),
            '"' | '\'' | '`' => {
                tokens.push(Token::Str);
                string_end(rest, c).ok_or("unterminated string")? + 1
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let mut at = 1;
                loop {
                    let next = rest[at..].chars().next().ok_or(format!("unclosed {c}"))?;
                    if next == close {
                        break;
                    }
                    at += if matches!(next, '"' | '\'' | '`') {
                        string_end(&rest[at..], next).ok_or("unterminated string")? + 1
                    } else {
                        next.len_utf8()
                    };
                }
                let body = rest[1..at].to_string();
                tokens.push(if c == '{' {
                    Token::Braces(body)
                } else {
                    Token::Brackets(body)
                });
                at + 1
            }
            // A variable outside a string stands for a value (`topk($n, ...)`), not a name.
            '$' => {
                tokens.push(Token::Other);
                let body = &rest[1..];
                if body.starts_with('{') {
                    body.find('}').ok_or("unclosed ${")? + 2
                } else {
                    1 + body
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(body.len())
                }
            }
            '(' => {
                tokens.push(Token::Open);
                1
            }
            ')' => {
                tokens.push(Token::Close);
                1
            }
            c if c.is_ascii_digit() || c == '.' => {
                tokens.push(Token::Number);
                rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
                    .unwrap_or(rest.len())
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                tokens.push(Token::Ident(rest[..len].to_string()));
                len
            }
            c => {
                tokens.push(Token::Other);
                c.len_utf8()
            }
        };
        rest = &rest[len..];
    }
    Ok(tokens)
}

#[test]
fn scanner_finds_selectors_ranges_calls_and_grouping() {
    let q = Query::parse(
        r#"histogram_quantile(0.9, sum by (le, endpoint) (rate(flexcloud_api_request_duration_seconds_bucket{job=~"$job", instance=~"$instance"}[$__rate_interval]))) or vector(0)"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(q.grouping, ["le", "endpoint"]);
    assert_eq!(q.selectors.len(), 1);
    let s = &q.selectors[0];
    assert_eq!(s.metric, "flexcloud_api_request_duration_seconds_bucket");
    assert_eq!(s.call.as_deref(), Some("rate"));
    assert_eq!(s.range.as_deref(), Some("$__rate_interval"));
    assert!(s.has("job", "=~", "$job") && s.has("instance", "=~", "$instance"));

    let q = Query::parse(r#"time() - max by (instance) (up{job=~"$job", le="a,}b"} > 0) unless on (job) up{job="x"}"#).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(q.selectors.len(), 2);
    assert_eq!(q.selectors[0].call.as_deref(), Some("max"));
    assert_eq!(
        q.selectors[0].matchers[1],
        Matcher {
            label: "le".into(),
            op: "=".into(),
            value: "a,}b".into()
        }
    );
    assert_eq!(q.selectors[1].call, None);
    assert_eq!(q.grouping, ["instance", "job"]);

    let q = Query::parse(r#"topk($n, flexcloud_up{job=~"$job"}) * ${factor}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(q.selectors.len(), 1, "variables outside strings are values");
    assert!(
        Query::parse("sum(flexcloud_up)").is_err(),
        "a bare metric name has no matchers"
    );
    assert!(Query::parse("sum(up{job=~\"$job\"}").is_err(), "unbalanced");
    assert_eq!(
        variable_references("a{x=~\"$job\"}[${__rate_interval}] $zone_id"),
        BTreeSet::from(["job".into(), "__rate_interval".into(), "zone_id".into()])
    );
}

/// Grafana's own schema, through TypeScript: see dashboards/schema-check/check.ts.
#[test]
#[ignore = "needs npm packages (npm ci in dashboards/schema-check)"]
fn dashboards_satisfy_the_grafana_schema() {
    let dir = repo("dashboards/schema-check");
    assert!(
        dir.join("node_modules/@grafana/schema").is_dir(),
        "run `npm ci` in {} first",
        dir.display()
    );
    for (program, args) in [
        ("node", &["generate.mjs"][..]),
        ("npx", &["--no-install", "tsc", "--noEmit"][..]),
    ] {
        let output = Command::new(program)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
