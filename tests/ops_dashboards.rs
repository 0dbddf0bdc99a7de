//! The bundled Grafana dashboards follow the conventions of Grafana's dashboard-linter.
//!
//! The linter is a Go program that cannot be installed here, so its rules that matter for a
//! shipped dashboard are restated below (rule names in comments) and applied to every JSON
//! file in `dashboards/`, together with checks against this exporter's metrics contract:
//! queries are read by promql-parser and their names checked against the golden exposition.
//! The type check against `@grafana/schema` needs npm packages and is ignored unless asked
//! for (`cargo test --test ops_dashboards -- --include-ignored`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use promql_parser::label::{METRIC_NAME, MatchOp};
use promql_parser::parser::{self, Expr, VectorSelector};
use serde_json::Value;

// The test uses the file listing, Grafana's variable syntax and its built-in variables.
#[allow(dead_code)]
#[path = "common/dashboards.rs"]
mod dashboards;
#[path = "common/exposition.rs"]
mod exposition;
use dashboards::{GLOBAL_VARIABLES, dashboard_files, label_values, references, substitute};

/// The exposition of a fixed snapshot, kept in step with the exporter by tests/golden.rs: the
/// source of the metric and label names a query may use.
const GOLDEN: &str = "tests/fixtures/golden/metrics.txt";

/// What Prometheus adds for every scrape target: the `up` series and the target labels, with
/// `le`, which a histogram has even before its first observation.
const TARGET_METRICS: &[&str] = &["up"];
const TARGET_LABELS: &[&str] = &["job", "instance"];
const BUCKET_LABEL: &str = "le";

/// Variables that filter the exporter's own labels (multi-select with All).
const LABEL_VARIABLES: &[&str] = &["account_id", "zone_id", "image_type"];

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
    let found: BTreeMap<String, Value> = dashboard_files()
        .iter()
        .map(|path| {
            let name = path
                .file_name()
                .unwrap_or_else(|| panic!("{} has no file name", path.display()))
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            (name, json)
        })
        .collect();
    assert!(!found.is_empty(), "no dashboard JSON in dashboards/");
    found
}

/// What the exporter exposes: each series name a query may select with the label names its
/// samples carry, and every label name.
struct Exposed {
    metrics: BTreeMap<String, BTreeSet<String>>,
    labels: BTreeSet<String>,
}

/// The names of the golden exposition: each `# TYPE` family gives its series names (a
/// histogram its `_bucket`, `_sum` and `_count`; a counter the `_total` name its samples are
/// written with), with the scrape-time metrics and what Prometheus adds to every target.
fn exposed() -> Exposed {
    // The golden exposition of a cycle, and what a scrape adds to it (process metrics and the
    // endpoint's counter), as the exporter writes them.
    let mut text = fs::read_to_string(repo(GOLDEN)).unwrap_or_else(|e| panic!("{GOLDEN}: {e}"));
    let endpoint = flexcloud_exporter::metrics::EndpointMetrics::default();
    text.push_str(&flexcloud_exporter::metrics::encode_scrape_time(Some(&endpoint)).0);
    let golden = exposition::parse(&text);
    let labels_of = |name: &str| -> BTreeSet<String> {
        golden
            .samples
            .iter()
            .filter(|s| s.name == name)
            .flat_map(|s| s.labels.iter().map(|(label, _)| label.clone()))
            .collect()
    };
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for family in &golden.families {
        let name = family.name.as_str();
        let names: Vec<String> = match family.kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect(),
            "summary" => vec![
                name.to_string(),
                format!("{name}_sum"),
                format!("{name}_count"),
            ],
            "counter" => golden
                .samples
                .iter()
                .map(|s| s.name.clone())
                .filter(|sample| *sample == name || *sample == format!("{name}_total"))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            _ => vec![name.to_string()],
        };
        assert!(!names.is_empty(), "{GOLDEN}: family {name} has no series");
        for series in names {
            let labels = labels_of(&series);
            metrics.insert(series, labels);
        }
    }
    for name in TARGET_METRICS {
        metrics.insert(name.to_string(), BTreeSet::new());
    }
    let labels = golden
        .samples
        .iter()
        .flat_map(|s| s.labels.iter().map(|(label, _)| label.clone()))
        .chain(
            TARGET_LABELS
                .iter()
                .chain([&BUCKET_LABEL])
                .map(|l| l.to_string()),
        )
        .collect();
    Exposed { metrics, labels }
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
    let exposed = exposed();
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
            let Some((selector, label)) = label_values(query) else {
                findings.0.push(format!(
                    "{name}: variable `{var}` query {query:?} is not label_values(selector, label)"
                ));
                continue;
            };
            findings.check(label == var, || {
                format!("{name}: variable `{var}` lists label `{label}`, not its own name")
            });
            for other in variable_references(selector) {
                findings.check(
                    variable(&d, &other).is_some() || placeholder(&other).is_some(),
                    || format!("{name}: variable `{var}` uses undefined variable ${other}"),
                );
            }
            let vs = match parse_query(selector) {
                Ok(Expr::VectorSelector(vs)) => vs,
                other => {
                    findings.0.push(format!(
                        "{name}: variable `{var}` reads {selector:?}, not a series selector: {other:?}"
                    ));
                    continue;
                }
            };
            let metric = metric(&vs);
            match exposed.metrics.get(metric) {
                Some(carried) => findings.check(
                    carried.contains(label) || TARGET_LABELS.contains(&label),
                    || format!("{name}: variable `{var}` lists `{label}` of {metric}, which has no such label"),
                ),
                None => findings.0.push(format!(
                    "{name}: variable `{var}` reads unknown metric {metric:?}"
                )),
            }
            if var != "job" {
                findings.check(has(&vs, "job", "=~", "$job"), || {
                    format!("{name}: variable `{var}` should be limited to the selected jobs")
                });
            }
        }
    }
    findings.assert_none("query variables");
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
    let exposed = exposed();
    let mut findings = Findings::default();
    for (name, d) in dashboards() {
        for (place, expr) in expressions(&d) {
            for var in variable_references(&expr) {
                findings.check(
                    variable(&d, &var).is_some() || placeholder(&var).is_some(),
                    || format!("{name}: {place}: uses undefined variable ${var}"),
                );
            }
            let parsed = match parse_query(&expr) {
                Ok(parsed) => parsed,
                Err(e) => {
                    findings.0.push(format!("{name}: {place}: {e}: {expr}"));
                    continue;
                }
            };
            let query = Query::of(&parsed);
            findings.check(!query.selectors.is_empty(), || {
                format!("{name}: {place}: selects no series")
            });
            for s in &query.selectors {
                let metric = metric(s.vs);
                findings.check(exposed.metrics.contains_key(metric), || {
                    format!("{name}: {place}: unknown metric {metric:?}")
                });
                for (label, required) in [("job", "$job"), ("instance", "$instance")] {
                    findings.check(has(s.vs, label, "=~", required), || {
                        format!("{name}: {place}: {metric} lacks {label}=~\"{required}\"")
                    });
                }
                for m in
                    s.vs.matchers
                        .matchers
                        .iter()
                        .chain(s.vs.matchers.or_matchers.iter().flatten())
                {
                    findings.check(exposed.labels.contains(&m.name), || {
                        format!("{name}: {place}: unknown label {:?}", m.name)
                    });
                }
                if metric.ends_with("_total") || metric.ends_with("_bucket") {
                    findings.check(
                        s.range.is_some() && matches!(s.call.as_deref(), Some("rate" | "irate" | "increase")),
                        || format!("{name}: {place}: counter {metric} is not inside rate, irate or increase"),
                    );
                }
                if matches!(s.call.as_deref(), Some("rate" | "irate")) {
                    findings.check(s.range == placeholder(RATE_INTERVAL), || {
                        format!(
                            "{name}: {place}: {metric} in rate() should use [$__rate_interval], uses {}",
                            s.range.map_or("no range".into(), range_text)
                        )
                    });
                }
            }
            for label in &query.grouping {
                findings.check(exposed.labels.contains(*label), || {
                    format!("{name}: {place}: groups by unknown label {label:?}")
                });
            }
        }
    }
    findings.assert_none("queries");
}

/// Each label variable narrows every query of a series that carries the label: a panel that
/// ignores the account filter would show other accounts' images under the chosen one.
#[test]
fn label_variables_filter_every_series_that_has_the_label() {
    let exposed = exposed();
    let mut findings = Findings::default();
    for (name, d) in dashboards() {
        for (place, expr) in expressions(&d) {
            let Ok(parsed) = parse_query(&expr) else {
                continue;
            };
            for s in &Query::of(&parsed).selectors {
                let metric = metric(s.vs);
                let carried = exposed.metrics.get(metric).into_iter().flatten();
                for label in carried.filter(|l| LABEL_VARIABLES.contains(&l.as_str())) {
                    findings.check(has(s.vs, label, "=~", &format!("${label}")), || {
                        format!("{name}: {place}: {metric} lacks {label}=~\"${label}\"")
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
    references(text)
        .into_iter()
        .filter(|(_, name)| !name.is_empty())
        .map(|(_, name)| name.to_string())
        .collect()
}

/// The built-in interval variable that `rate` and `irate` ranges must use.
const RATE_INTERVAL: &str = "__rate_interval";

/// Where dashboard-linter starts its stand-in durations (130d12h46m4s): no one writes such
/// a range by hand, so a range in the syntax tree tells which built-in variable it was.
const PLACEHOLDER_SECONDS: u64 = 11_277_964;

/// The stand-in duration for one of Grafana's built-in interval variables.
fn placeholder(variable: &str) -> Option<Duration> {
    let index = GLOBAL_VARIABLES
        .iter()
        .position(|(name, _)| *name == variable)?;
    Some(Duration::from_secs(PLACEHOLDER_SECONDS + index as u64))
}

/// A range as the dashboard wrote it: `$variable` for a stand-in, else the duration.
fn range_text(range: Duration) -> String {
    GLOBAL_VARIABLES
        .iter()
        .find(|(name, _)| placeholder(name) == Some(range))
        .map_or_else(
            || humantime::format_duration(range).to_string(),
            |(name, _)| format!("${name}"),
        )
}

/// A dashboard query parsed as Prometheus would see it, but with each built-in interval
/// variable replaced by its stand-in. Dashboard variables are kept as written: they stand in
/// matcher strings (`job=~"$job"`), where the parser leaves them alone.
fn parse_query(expr: &str) -> Result<Expr, String> {
    let values: BTreeMap<String, String> = variable_references(expr)
        .into_iter()
        .map(|name| {
            let value = match placeholder(&name) {
                Some(range) => format!("{}s", range.as_secs()),
                None => format!("${name}"),
            };
            (name, value)
        })
        .collect();
    parser::parse(&substitute(expr, &values))
}

/// The metric a selector names, by name or by a `__name__` matcher.
fn metric(vs: &VectorSelector) -> &str {
    vs.name
        .as_deref()
        .or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
                .map(|m| m.value.as_str())
        })
        .unwrap_or("")
}

/// Whether a selector has the matcher `label op "value"` (outside any `or` alternative).
fn has(vs: &VectorSelector, label: &str, op: &str, value: &str) -> bool {
    vs.matchers
        .matchers
        .iter()
        .any(|m| m.name == label && m.op.to_string() == op && m.value == value)
}

/// A selector of a query with what encloses it.
struct Selector<'a> {
    vs: &'a VectorSelector,
    /// The range of a range-vector selector.
    range: Option<Duration>,
    /// The innermost function or aggregation whose argument holds the selector.
    call: Option<String>,
}

/// What the dashboard rules need from a query's syntax tree: its selectors, and the labels
/// of its `by`, `without`, `on`, `ignoring` and `group_*` clauses.
#[derive(Default)]
struct Query<'a> {
    selectors: Vec<Selector<'a>>,
    grouping: Vec<&'a str>,
}

impl<'a> Query<'a> {
    fn of(expr: &'a Expr) -> Self {
        let mut query = Query::default();
        query.walk(expr, None);
        query
    }

    fn walk(&mut self, expr: &'a Expr, call: Option<&str>) {
        match expr {
            Expr::Aggregate(aggregate) => {
                if let Some(modifier) = &aggregate.modifier {
                    self.group(&modifier.labels().labels);
                }
                let op = aggregate.op.to_string();
                if let Some(param) = &aggregate.param {
                    self.walk(param, Some(&op));
                }
                self.walk(&aggregate.expr, Some(&op));
            }
            Expr::Binary(binary) => {
                if let Some(modifier) = &binary.modifier {
                    if let Some(matching) = &modifier.matching {
                        self.group(&matching.labels().labels);
                    }
                    if let Some(extra) = modifier.card.labels() {
                        self.group(&extra.labels);
                    }
                }
                self.walk(&binary.lhs, call);
                self.walk(&binary.rhs, call);
            }
            Expr::Call(function) => {
                for arg in &function.args.args {
                    self.walk(arg, Some(function.func.name));
                }
            }
            Expr::Unary(unary) => self.walk(&unary.expr, call),
            Expr::Paren(paren) => self.walk(&paren.expr, call),
            Expr::Subquery(subquery) => self.walk(&subquery.expr, call),
            Expr::VectorSelector(vs) => self.selectors.push(Selector {
                vs,
                range: None,
                call: call.map(String::from),
            }),
            Expr::MatrixSelector(ms) => self.selectors.push(Selector {
                vs: &ms.vs,
                range: Some(ms.range),
                call: call.map(String::from),
            }),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn group(&mut self, labels: &'a [String]) {
        self.grouping.extend(labels.iter().map(String::as_str));
    }
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
