//! The HTML status page: how fresh the latest cycle is, what fails and where its runbook is.

use std::borrow::Cow;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::{CredentialState, ErrorKind};
use crate::snapshot::{Outcome, SavingImage, Snapshot, ZoneState};
use crate::timestamp::format_api;

/// Where `docs/runbook.md` is read; each failing state links to its alert's section here.
/// A placeholder (the README's example host) until the runbook's address becomes a
/// documented setting: this is the one place to switch it.
pub const RUNBOOK_BASE: &str =
    "https://git.example.com/ops/flexcloud-exporter/blob/main/docs/runbook.md";
/// The bundled dashboard's documentation. The exporter does not know where Grafana runs, so
/// the page links to how to import `dashboards/flexcloud-exporter.json`; same host as
/// [`RUNBOOK_BASE`], switch both together.
pub const DASHBOARD_DOC: &str =
    "https://git.example.com/ops/flexcloud-exporter/blob/main/README.md#import-the-dashboard";

/// An image SAVING for longer than this is stuck: the threshold of FlexcloudImageStuckSaving.
pub const STUCK_SAVING_AFTER: Duration = Duration::from_secs(3600);
/// A zone without a successful probe for longer than this is stale: FlexcloudDataStale.
pub const DATA_STALE_AFTER: Duration = Duration::from_secs(600);
/// SAVING images listed at most, oldest first; the others are counted in one line, so a
/// fleet with thousands of them still gets a small page.
pub const MAX_SAVING_ROWS: usize = 25;
/// Zone rows listed at most, failing ones first; `/metrics` has every zone.
pub const MAX_ZONE_ROWS: usize = 200;
/// Accounts held back on their own listed at most (the gate remembers up to 10,000).
pub const MAX_HELD_ROWS: usize = 25;

/// Static facts shown on the page.
#[derive(Debug, Clone)]
pub struct PageInfo {
    pub version: &'static str,
    /// The API base URL (never carries credentials: config rejects userinfo).
    pub api_url: String,
    pub interval: Duration,
    /// The shard collected, when the accounts are split.
    pub shard: Option<crate::config::Shard>,
}

/// The alerts whose runbook sections the page links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alert {
    ImageStuckSaving,
    ApiCredentialsRejected,
    AccountNotFound,
    AccountForbidden,
    ProbeFailing,
    DiscoveryFailing,
    DataStale,
    NoAccountsWatched,
}

impl Alert {
    #[cfg(test)]
    const ALL: [Alert; 8] = [
        Alert::ImageStuckSaving,
        Alert::ApiCredentialsRejected,
        Alert::AccountNotFound,
        Alert::AccountForbidden,
        Alert::ProbeFailing,
        Alert::DiscoveryFailing,
        Alert::DataStale,
        Alert::NoAccountsWatched,
    ];

    const fn name(self) -> &'static str {
        match self {
            Alert::ImageStuckSaving => "FlexcloudImageStuckSaving",
            Alert::ApiCredentialsRejected => "FlexcloudApiCredentialsRejected",
            Alert::AccountNotFound => "FlexcloudAccountNotFound",
            Alert::AccountForbidden => "FlexcloudAccountForbidden",
            Alert::ProbeFailing => "FlexcloudProbeFailing",
            Alert::DiscoveryFailing => "FlexcloudDiscoveryFailing",
            Alert::DataStale => "FlexcloudDataStale",
            Alert::NoAccountsWatched => "FlexcloudNoAccountsWatched",
        }
    }

    /// The link to the alert's runbook section (anchors are the lower-cased alert name).
    fn link(self) -> String {
        format!(
            "<a class=\"rb\" href=\"{}#{}\">{}</a>",
            esc(RUNBOOK_BASE),
            self.name().to_ascii_lowercase(),
            self.name()
        )
    }
}

/// Which kind of step an outcome belongs to, since the alerts split on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Accounts,
    Zones,
    Probe,
}

/// The alert that pages for a failed step, by the same rules as the alert expressions: a
/// 401 (or a step held back after one), 403 and a lookup's 404 have alerts of their own.
fn alert_for(step: Step, outcome: &Outcome) -> Alert {
    if outcome.error_kind == Some(ErrorKind::CredentialsSuspended) || outcome.http_status == 401 {
        Alert::ApiCredentialsRejected
    } else if outcome.http_status == 403 {
        Alert::AccountForbidden
    } else if outcome.http_status == 404 && step != Step::Accounts {
        Alert::AccountNotFound
    } else if step == Step::Probe {
        Alert::ProbeFailing
    } else {
        Alert::DiscoveryFailing
    }
}

/// Escapes for text and for quoted attributes alike (`&`, `<`, `>`, `"`, `'`).
fn esc(value: &str) -> Cow<'_, str> {
    html_escape::encode_quoted_attribute(value)
}

/// A cell cut with an ellipsis by the style sheet, the whole value in its tooltip.
fn cut_cell(class: &str, value: &str) -> String {
    let value = esc(value);
    format!("<td class=\"cut {class}\" title=\"{value}\">{value}</td>")
}

/// A span of time in its largest whole unit: `12 s`, `3 min`, `2 h`, `4 d`.
pub fn format_span(span: Duration) -> String {
    let secs = span.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// How long ago `span` was: `12 s ago`, `3 min ago`, `2 h ago`.
pub fn format_age(span: Duration) -> String {
    format!("{} ago", format_span(span))
}

/// A time as the page shows it: UTC, whole seconds.
fn clock(at: SystemTime) -> String {
    format!("{} UTC", cell_clock(at))
}

/// A time in a table cell, whose column heading says UTC.
fn cell_clock(at: SystemTime) -> String {
    format_api(at).replacen('T', " ", 1)
}

/// `now - then`, zero when `then` is later (a clock step backwards).
fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// One SAVING image with where it is and how long it has been SAVING.
#[derive(Debug, Clone, PartialEq)]
struct SavingRow<'a> {
    account: &'a str,
    zone: &'a str,
    image: &'a SavingImage,
    since: Option<SystemTime>,
    /// `None` when the API's creation time could not be read.
    age: Option<Duration>,
}

impl SavingRow<'_> {
    fn stuck(&self) -> bool {
        self.age.is_some_and(|age| age > STUCK_SAVING_AFTER)
    }
}

/// The SAVING images of a snapshot, oldest first, at most [`MAX_SAVING_ROWS`] of them.
#[derive(Debug, Clone, PartialEq)]
struct SavingList<'a> {
    rows: Vec<SavingRow<'a>>,
    total: usize,
    stuck: usize,
}

impl SavingList<'_> {
    /// Images not listed.
    fn more(&self) -> usize {
        self.total - self.rows.len()
    }

    /// Stuck images not listed (none unless every listed one is stuck: oldest come first).
    fn more_stuck(&self) -> usize {
        self.stuck - self.rows.iter().filter(|r| r.stuck()).count()
    }
}

/// Every SAVING image of `snapshot`, oldest first (those without a readable time last).
fn saving_list(snapshot: &Snapshot, now: SystemTime) -> SavingList<'_> {
    let mut rows: Vec<SavingRow<'_>> = snapshot
        .zones
        .iter()
        .filter_map(|((account, zone), state)| Some((account, zone, state.inventory.as_ref()?)))
        .flat_map(|(account, zone, inventory)| {
            inventory.saving.iter().map(move |image| {
                let created = image
                    .created
                    .and_then(|c| Duration::try_from_secs_f64(c).ok())
                    .and_then(|c| UNIX_EPOCH.checked_add(c));
                SavingRow {
                    account,
                    zone,
                    image,
                    since: created,
                    age: created.map(|at| since(now, at)),
                }
            })
        })
        .collect();
    let total = rows.len();
    let stuck = rows.iter().filter(|r| r.stuck()).count();
    rows.sort_by(|a, b| {
        // Unknown ages last; otherwise oldest (longest age) first.
        a.age
            .is_none()
            .cmp(&b.age.is_none())
            .then_with(|| b.age.cmp(&a.age))
            .then_with(|| a.account.cmp(b.account))
            .then_with(|| a.zone.cmp(b.zone))
            .then_with(|| a.image.id.cmp(&b.image.id))
    });
    rows.truncate(MAX_SAVING_ROWS);
    SavingList { rows, total, stuck }
}

/// One line of the zone table: a zone's probe, or an account whose zone list failed.
struct ZoneRow<'a> {
    account: &'a str,
    zone: Option<&'a str>,
    outcome: Option<&'a Outcome>,
    state: Option<&'a ZoneState>,
    alert: Option<Alert>,
}

fn zone_rows<'a>(snapshot: &'a Snapshot, now: SystemTime) -> Vec<ZoneRow<'a>> {
    let discovery = snapshot
        .zones_discovery
        .iter()
        .filter(|(_, o)| !o.success)
        .map(|(account, outcome)| ZoneRow {
            account,
            zone: None,
            outcome: Some(outcome),
            state: None,
            alert: Some(alert_for(Step::Zones, outcome)),
        });
    let zones = snapshot.zones.iter().map(|((account, zone), state)| {
        let failed = state.probe.as_ref().filter(|p| !p.success);
        let stale = state
            .last_success
            .is_none_or(|at| since(now, at) > DATA_STALE_AFTER);
        ZoneRow {
            account,
            zone: Some(zone),
            outcome: state.probe.as_ref(),
            state: Some(state),
            alert: failed
                .map(|p| alert_for(Step::Probe, p))
                .or(stale.then_some(Alert::DataStale)),
        }
    });
    let mut rows: Vec<ZoneRow<'a>> = discovery.chain(zones).collect();
    // Failing first; otherwise account and zone order, as the maps keep them.
    rows.sort_by_key(|r| r.alert.is_none());
    rows
}

/// Renders the page for the latest `snapshot` as of `now`. Every value that came from the
/// API is HTML-escaped; nothing here waits on the network.
pub fn render(info: &PageInfo, snapshot: Option<&Snapshot>, now: SystemTime) -> String {
    let mut page = String::with_capacity(16 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\">\
         <title>FlexCloud exporter</title><style>{STYLE}</style></head><body>\
         <header><h1>FlexCloud exporter</h1><span>version {version} · API <code>{api}</code> · every {interval}{shard}</span>\
         <span class=\"now\">rendered <time>{now}</time></span></header>\
         <nav><a href=\"/metrics\">Metrics</a> <a href=\"/-/healthy\">Health</a> <a href=\"/-/ready\">Readiness</a> \
         <a href=\"{runbook}\">Runbook</a> <a href=\"{dashboard}\">Dashboard (import)</a></nav>",
        version = esc(info.version),
        api = esc(&info.api_url),
        interval = humantime::format_duration(info.interval),
        shard = info.shard.map_or_else(String::new, |s| format!(
            " · shard {} of {}",
            s.index, s.count
        )),
        now = clock(now),
        runbook = esc(RUNBOOK_BASE),
        dashboard = esc(DASHBOARD_DOC),
    );
    let Some(snapshot) = snapshot else {
        page.push_str(
            "<p class=\"warn\">The first collection cycle has not finished yet.</p></body></html>\n",
        );
        return page;
    };
    facts(&mut page, info, snapshot, now);
    held_accounts(&mut page, snapshot, now);
    saving_section(&mut page, snapshot, now);
    zone_section(&mut page, snapshot, now);
    page.push_str("</body></html>\n");
    page
}

/// The summary: data age, API state, credential back-off.
fn facts(page: &mut String, info: &PageInfo, snapshot: &Snapshot, now: SystemTime) {
    page.push_str("<table class=\"facts\">");
    let ended = snapshot.completed_at.unwrap_or(now);
    let age = since(now, ended);
    // Two intervals without a new cycle: the collector is behind or stuck.
    let late = age > info.interval.saturating_mul(2);
    let _ = write!(
        page,
        "<tr><th>Data</th><td{class}>cycle {cycle} ended <time>{at}</time>, <b>{age}</b>, took {took:.2} s{late}</td></tr>",
        class = if late { " class=\"bad\"" } else { "" },
        cycle = snapshot.cycle,
        at = clock(ended),
        age = format_age(age),
        took = snapshot.duration.as_secs_f64(),
        late = if late {
            " — no newer cycle for over two intervals"
        } else {
            ""
        },
    );
    let failing = snapshot.failing_steps().len();
    let (api_class, api_text) = if snapshot.up {
        ("ok", "reachable, credentials accepted")
    } else {
        ("bad", "not reached with valid credentials")
    };
    let _ = write!(
        page,
        "<tr><th>API</th><td><span class=\"{api_class}\">{api_text}</span>; {accounts}, {zones}, \
         <span class=\"{fail_class}\">{failing_text}</span></td></tr>",
        accounts = plural(snapshot.account_count() as u64, "account", "accounts"),
        zones = plural(snapshot.zones.len() as u64, "zone", "zones"),
        fail_class = if failing > 0 { "bad" } else { "ok" },
        failing_text = plural(failing as u64, "step failing", "steps failing"),
    );
    if let Some(o) = snapshot.accounts_discovery.as_ref().filter(|o| !o.success) {
        let _ = write!(
            page,
            "<tr><th>Account list</th><td><span class=\"bad\">{}</span> {}</td></tr>",
            esc(&outcome_text(o)),
            alert_for(Step::Accounts, o).link()
        );
    }
    if snapshot.up && snapshot.account_count() == 0 {
        let _ = write!(
            page,
            "<tr><th>Accounts</th><td><span class=\"bad\">none watched</span> {}</td></tr>",
            Alert::NoAccountsWatched.link()
        );
    }
    let _ = write!(
        page,
        "<tr><th>Credential back-off</th><td>{}{}</td></tr>",
        backoff_cell(snapshot.credentials, ended, now),
        match snapshot.held_accounts.len() {
            0 => String::new(),
            held => format!(
                "; <a href=\"#held\" class=\"bad\">{} held back on {} own</a>",
                plural(held as u64, "account", "accounts"),
                if held == 1 { "its" } else { "their" }
            ),
        }
    );
    page.push_str("</table>");
}

/// The back-off state in words; `ended` is when the snapshot read it.
fn backoff_cell(state: CredentialState, ended: SystemTime, now: SystemTime) -> String {
    match state {
        CredentialState::Accepted => "<span class=\"ok\">none</span>".into(),
        CredentialState::Suspended {
            rejections,
            wait,
            remaining,
        } => {
            let until = ended + remaining;
            let left = since(until, now);
            let rejected = plural(rejections, "rejection", "rejections");
            let state = if left > Duration::ZERO {
                format!(
                    "holding back until <time>{}</time>, {} more",
                    clock(until),
                    format_span(left)
                )
            } else {
                format!(
                    "held back until <time>{}</time>; the next cycle tries them again",
                    clock(until)
                )
            };
            format!(
                "<span class=\"bad\">{state}</span> (a {wait} wait after {rejected} in a row) {link}",
                wait = format_span(wait),
                link = Alert::ApiCredentialsRejected.link()
            )
        }
        CredentialState::Retrying { rejections, wait } => format!(
            "<span class=\"warn\">the {wait} wait after {rejected} is over; the next request tries them again</span> {link}",
            wait = format_span(wait),
            rejected = plural(rejections, "rejection", "rejections"),
            link = Alert::ApiCredentialsRejected.link()
        ),
    }
}

/// Accounts held back on their own after a 401 that concerned them only.
fn held_accounts(page: &mut String, snapshot: &Snapshot, now: SystemTime) {
    if snapshot.held_accounts.is_empty() {
        return;
    }
    let ended = snapshot.completed_at.unwrap_or(now);
    let held = snapshot.held_accounts.len();
    let _ = write!(
        page,
        "<h2>Credential back-off by account <small>{} held back after a 401 that concerned only {}</small></h2>\
         <table id=\"held\"><tr><th>Account</th><th>Back-off</th></tr>",
        plural(held as u64, "account", "accounts"),
        if held == 1 { "it" } else { "each" },
    );
    for (account, state) in snapshot.held_accounts.iter().take(MAX_HELD_ROWS) {
        let _ = write!(
            page,
            "<tr>{}<td>{}</td></tr>",
            cut_cell("id", account),
            backoff_cell(*state, ended, now)
        );
    }
    if held > MAX_HELD_ROWS {
        let _ = write!(
            page,
            "<tr class=\"more\"><td colspan=\"2\">and {} more; <a href=\"/metrics\">/metrics</a> has every \
             one as flexcloud_account_credential_backoff_seconds</td></tr>",
            held - MAX_HELD_ROWS
        );
    }
    page.push_str("</table>");
}

fn saving_section(page: &mut String, snapshot: &Snapshot, now: SystemTime) {
    let list = saving_list(snapshot, now);
    let _ = write!(
        page,
        "<h2>SAVING images <small>{total} SAVING, <span class=\"{class}\">{stuck} stuck</span> \
         (SAVING over {threshold}) {link}</small></h2>",
        total = list.total,
        stuck = list.stuck,
        class = if list.stuck > 0 { "bad" } else { "ok" },
        threshold = format_span(STUCK_SAVING_AFTER),
        link = Alert::ImageStuckSaving.link(),
    );
    if list.total == 0 {
        page.push_str("<p>No image is SAVING.</p>");
        return;
    }
    page.push_str(
        "<table id=\"saving\"><tr><th></th><th>Account</th><th>Zone</th><th>Type</th><th>Name</th>\
         <th>Image id</th><th>SAVING since (UTC)</th><th class=\"num\">Age</th></tr>",
    );
    for row in &list.rows {
        let stuck = row.stuck();
        let _ = write!(
            page,
            "<tr{tr}><td>{mark}</td>{account}{zone}<td>{kind}</td>{name}{id}<td>{since}</td><td class=\"num\">{age}</td></tr>",
            tr = if stuck { " class=\"stuck\"" } else { "" },
            mark = if stuck {
                "<span class=\"tag\">stuck</span>"
            } else {
                ""
            },
            account = cut_cell("id", row.account),
            zone = cut_cell("zone", row.zone),
            kind = row.image.image_type.as_str(),
            name = cut_cell("name", &row.image.name),
            id = cut_cell("id", &row.image.id),
            since = row
                .since
                .map(cell_clock)
                .unwrap_or_else(|| "unreadable".into()),
            age = row.age.map(format_span).unwrap_or_default(),
        );
    }
    if list.more() > 0 {
        let _ = write!(
            page,
            "<tr class=\"more\"><td></td><td colspan=\"7\">and {} more ({} of them stuck); <a href=\"/metrics\">/metrics</a> \
             has the oldest per zone</td></tr>",
            list.more(),
            list.more_stuck()
        );
    }
    page.push_str("</table>");
}

fn zone_section(page: &mut String, snapshot: &Snapshot, now: SystemTime) {
    let rows = zone_rows(snapshot, now);
    let failing = rows.iter().filter(|r| r.alert.is_some()).count();
    let _ = write!(
        page,
        "<h2>Accounts and zones <small>{} rows, <span class=\"{}\">{failing} needing attention</span>, listed first</small></h2>\
         <table id=\"zones\"><tr><th>Account</th><th>Zone</th><th>Probe</th><th class=\"num\">HTTP</th>\
         <th class=\"num\">Took</th><th class=\"num\">Images</th><th class=\"num\">SAVING</th>\
         <th>Last success (UTC)</th><th class=\"num\">Data age</th><th>Runbook</th></tr>",
        rows.len(),
        if failing > 0 { "bad" } else { "ok" },
    );
    for row in rows.iter().take(MAX_ZONE_ROWS) {
        let (result, status, took) = match row.outcome {
            Some(o) => (
                outcome_text(o),
                o.http_status.to_string(),
                format!("{:.3} s", o.duration.as_secs_f64()),
            ),
            None => (
                "not probed (discovery failed)".into(),
                String::new(),
                String::new(),
            ),
        };
        let ok = row.outcome.is_some_and(|o| o.success);
        let inventory = row.state.and_then(|s| s.inventory.as_ref());
        let images = inventory.map(|i| i.total().to_string()).unwrap_or_default();
        let saving = inventory
            .map(|i| i.saving.len().to_string())
            .unwrap_or_default();
        let last = row.state.and_then(|s| s.last_success);
        let stale = row.alert == Some(Alert::DataStale);
        let _ = write!(
            page,
            "<tr>{account}{zone}{result}<td class=\"num\">{status}</td><td class=\"num\">{took}</td>\
             <td class=\"num\">{images}</td><td class=\"num\">{saving}</td><td>{last_at}</td>\
             <td class=\"num{age_class}\">{age}</td><td>{link}</td></tr>",
            account = cut_cell("id", row.account),
            zone = match row.zone {
                Some(zone) => cut_cell("zone", zone),
                None => "<td class=\"zone\"><i>zone list</i></td>".into(),
            },
            result = cut_cell(if ok { "probe ok" } else { "probe bad" }, &result),
            last_at = last.map(cell_clock).unwrap_or_else(|| "never".into()),
            age_class = if stale { " bad" } else { "" },
            age = last
                .map(|at| format_span(since(now, at)))
                .unwrap_or_default(),
            link = row.alert.map(Alert::link).unwrap_or_default(),
        );
    }
    if rows.len() > MAX_ZONE_ROWS {
        let hidden = &rows[MAX_ZONE_ROWS..];
        let _ = write!(
            page,
            "<tr class=\"more\"><td colspan=\"10\">and {} more ({} of them needing attention); \
             <a href=\"/metrics\">/metrics</a> has every zone</td></tr>",
            hidden.len(),
            hidden.iter().filter(|r| r.alert.is_some()).count()
        );
    }
    page.push_str("</table>");
}

/// An outcome in words, not yet escaped: `ok`, or why it failed (the cell's colour, the
/// HTTP column and the runbook link already say that it did).
fn outcome_text(outcome: &Outcome) -> String {
    if outcome.success {
        return "ok".into();
    }
    outcome
        .detail
        .as_deref()
        .unwrap_or(outcome.error_kind.map_or("failed", |k| k.as_str()))
        .to_string()
}

/// Fixed widths for cut cells keep every table within 1280 px; `line-height` is set so a
/// test can tell a wrapped cell from its height.
const STYLE: &str = "\
:root{color-scheme:light}\
body{font:13px/18px system-ui,-apple-system,'Segoe UI',sans-serif;margin:12px 20px;color:#1c2230;background:#fff}\
header{display:flex;gap:16px;align-items:baseline;border-bottom:2px solid #2c3e66;padding-bottom:4px}\
h1{font-size:17px;margin:0;color:#2c3e66}header .now{margin-left:auto;font-weight:600}\
nav{margin:4px 0 10px}nav a{margin-right:14px}\
h2{font-size:14px;margin:16px 0 4px}h2 small{font-weight:400;color:#555;margin-left:8px}\
table{border-collapse:collapse}\
th,td{white-space:nowrap;padding:2px 7px;text-align:left;vertical-align:top;border-bottom:1px solid #e2e5ea}\
th{background:#eef1f5;font-weight:600}\
.facts th{background:none;color:#555;font-weight:400;padding-left:0}.facts td,.facts th{border:0}\
.num{text-align:right;font-variant-numeric:tabular-nums}\
.cut{overflow:hidden;text-overflow:ellipsis}\
.cut.id{max-width:16ch}.cut.zone{max-width:18ch}.cut.name{max-width:30ch}.cut.probe{max-width:30ch}\
code,.id,.zone{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:12px}\
.ok{color:#17703a}.warn{color:#8a5300}.bad,.probe.bad{color:#b00020}\
tr.stuck td{background:#fdecee}.tag{background:#b00020;color:#fff;border-radius:3px;padding:0 5px;font-size:11px}\
tr.more td{color:#555;font-style:italic}\
a{color:#1f4fa8}a.rb{font-size:12px}\
";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::api::ImageType;
    use crate::snapshot::Inventory;

    const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

    fn info() -> PageInfo {
        PageInfo {
            version: "1",
            api_url: "https://api.example.com/".into(),
            interval: Duration::from_secs(60),
            shard: None,
        }
    }

    #[test]
    fn a_shard_says_which_it_is() {
        let page = render(&info(), None, at(NOW));
        assert!(!page.contains("shard"), "unsharded: no shard shown");
        let sharded = PageInfo {
            shard: Some(crate::config::Shard { index: 2, count: 3 }),
            ..info()
        };
        assert!(render(&sharded, None, at(NOW)).contains(" · shard 2 of 3</span>"));
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const NOW: u64 = 1_800_000_000;

    fn failed(status: u16, kind: ErrorKind) -> Outcome {
        Outcome {
            success: false,
            http_status: status,
            error_kind: Some(kind),
            detail: None,
            duration: Duration::from_millis(5),
        }
    }

    fn saving(id: &str, name: &str, age: Option<u64>) -> SavingImage {
        SavingImage {
            image_type: ImageType::Server,
            id: id.into(),
            name: name.into(),
            created: age.map(|a| (NOW - a) as f64),
        }
    }

    fn zone_with(images: Vec<SavingImage>) -> ZoneState {
        ZoneState {
            probe: Some(Outcome::succeeded(Duration::from_millis(3))),
            inventory: Some(Arc::new(Inventory {
                saving: images,
                ..Inventory::default()
            })),
            held_saving: None,
            last_success: Some(at(NOW - 12)),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            cycle: 7,
            completed_at: Some(at(NOW - 12)),
            up: true,
            ..Snapshot::default()
        }
    }

    #[test]
    fn ages_are_in_their_largest_whole_unit() {
        assert_eq!(format_age(Duration::ZERO), "0 s ago");
        assert_eq!(format_age(Duration::from_secs(12)), "12 s ago");
        assert_eq!(format_age(Duration::from_secs(59)), "59 s ago");
        assert_eq!(format_age(Duration::from_secs(60)), "1 min ago");
        assert_eq!(format_age(Duration::from_secs(3 * 60 + 59)), "3 min ago");
        assert_eq!(format_age(Duration::from_secs(3599)), "59 min ago");
        assert_eq!(format_age(Duration::from_secs(2 * 3600 + 1)), "2 h ago");
        assert_eq!(format_age(Duration::from_secs(47 * 3600)), "47 h ago");
        assert_eq!(format_age(Duration::from_secs(3 * 86_400)), "3 d ago");
    }

    #[test]
    fn every_value_from_the_api_is_shown_as_text() {
        let mut s = snapshot();
        let mut zone = zone_with(vec![saving(HOSTILE, HOSTILE, Some(7200))]);
        zone.probe = Some(Outcome {
            detail: Some(HOSTILE.into()),
            ..failed(500, ErrorKind::HttpStatus)
        });
        s.zones.insert((HOSTILE.into(), "z\"o'ne".into()), zone);
        s.zones_discovery
            .insert(HOSTILE.into(), failed(503, ErrorKind::HttpStatus));
        s.held_accounts.insert(
            HOSTILE.into(),
            CredentialState::Retrying {
                rejections: 1,
                wait: Duration::from_secs(120),
            },
        );
        let page = render(&info(), Some(&s), at(NOW));
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("z\"o'ne"));
        let escaped =
            "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;";
        assert!(
            !page.replace(escaped, "").contains("onerror"),
            "every copy is the escaped one: {page}"
        );
        // Account and name in the SAVING list, the zone table and the held accounts, each
        // as text and in a tooltip.
        assert!(page.matches(escaped).count() >= 10, "{page}");
        assert!(page.contains(&format!("title=\"{escaped}\">{escaped}</td>")));
        assert!(page.contains("z&quot;o&#x27;ne"));
    }

    #[test]
    fn the_page_says_how_old_the_data_is_and_when_it_was_rendered() {
        let page = render(&info(), Some(&snapshot()), at(NOW));
        assert!(
            page.contains("rendered <time>2027-01-15 08:00:00 UTC</time>"),
            "{page}"
        );
        assert!(page.contains("ended <time>2027-01-15 07:59:48 UTC</time>, <b>12 s ago</b>"));
        assert!(!page.contains("over two intervals"));
        let late = render(&info(), Some(&snapshot()), at(NOW + 200));
        assert!(late.contains("<b>3 min ago</b>"), "{late}");
        assert!(late.contains("no newer cycle for over two intervals"));
    }

    #[test]
    fn the_saving_list_is_oldest_first_marks_stuck_and_is_bounded() {
        let mut s = snapshot();
        // Ages 60 s .. 60 * 40 s in one zone, in no particular order, and two images in
        // another zone: one of three hours, one without a readable time.
        let mut images: Vec<SavingImage> = (1..=40u64)
            .map(|i| saving(&format!("i{i}"), "n", Some(((i * 17) % 40 + 1) * 60)))
            .collect();
        images.push(saving("over", "n", Some(3601)));
        images.push(saving("at", "n", Some(3600)));
        s.zones.insert(("a".into(), "Z1".into()), zone_with(images));
        s.zones.insert(
            ("b".into(), "Z2".into()),
            zone_with(vec![
                saving("unknown", "n", None),
                saving("old", "n", Some(3 * 3600)),
            ]),
        );
        let list = saving_list(&s, at(NOW));
        assert_eq!(list.total, 44);
        assert_eq!(list.stuck, 2, "over the hour: `old` and `over`, not `at`");
        assert_eq!(list.rows.len(), MAX_SAVING_ROWS);
        assert_eq!(list.more(), 44 - MAX_SAVING_ROWS);
        assert_eq!(list.more_stuck(), 0);
        let ids: Vec<&str> = list.rows.iter().map(|r| r.image.id.as_str()).collect();
        assert_eq!(&ids[..3], ["old", "over", "at"]);
        assert!(list.rows.windows(2).all(|w| w[0].age >= w[1].age));
        assert!(list.rows[0].stuck() && list.rows[1].stuck() && !list.rows[2].stuck());
        assert!(!ids.contains(&"unknown"), "an unreadable time sorts last");
        let page = render(&info(), Some(&s), at(NOW));
        assert_eq!(page.matches("<tr class=\"stuck\">").count(), 2, "{page}");
        assert!(page.contains(&format!(
            "and {} more (0 of them stuck)",
            44 - MAX_SAVING_ROWS
        )));
        assert!(page.contains("44 SAVING, <span class=\"bad\">2 stuck</span>"));
    }

    #[test]
    fn images_without_a_readable_time_come_last_and_are_never_stuck() {
        let mut s = snapshot();
        s.zones.insert(
            ("a".into(), "Z".into()),
            zone_with(vec![
                saving("unknown", "n", None),
                saving("young", "n", Some(5)),
            ]),
        );
        let list = saving_list(&s, at(NOW));
        let ids: Vec<&str> = list.rows.iter().map(|r| r.image.id.as_str()).collect();
        assert_eq!(ids, ["young", "unknown"]);
        assert_eq!(list.stuck, 0);
        let page = render(&info(), Some(&s), at(NOW));
        assert!(page.contains("<td>unreadable</td>"));
    }

    #[test]
    fn the_credential_back_off_says_until_when_and_for_how_long() {
        let mut s = snapshot();
        assert!(render(&info(), Some(&s), at(NOW)).contains("<span class=\"ok\">none</span>"));
        s.credentials = CredentialState::Suspended {
            rejections: 2,
            wait: Duration::from_secs(240),
            remaining: Duration::from_secs(200),
        };
        s.held_accounts.insert(
            "locked".into(),
            CredentialState::Suspended {
                rejections: 1,
                wait: Duration::from_secs(120),
                remaining: Duration::from_secs(100),
            },
        );
        let page = render(&info(), Some(&s), at(NOW));
        // Read 12 s ago with 200 s left: 188 s from now.
        assert!(
            page.contains("holding back until <time>2027-01-15 08:03:08 UTC</time>, 3 min more</span> (a 4 min wait after 2 rejections in a row)"),
            "{page}"
        );
        assert!(page.contains("<table id=\"held\">"));
        assert!(
            page.contains("<a href=\"#held\" class=\"bad\">1 account held back on its own</a>")
        );
        assert!(page.contains("holding back until <time>2027-01-15 08:01:28 UTC</time>, 1 min more</span> (a 2 min wait after 1 rejection in a row)"));
        assert!(page.contains("#flexcloudapicredentialsrejected\">"));
        let later = render(&info(), Some(&s), at(NOW + 300));
        assert!(later.contains(
            "held back until <time>2027-01-15 08:03:08 UTC</time>; the next cycle tries them again"
        ));
    }

    #[test]
    fn each_failing_state_links_to_its_alerts_runbook_section() {
        let mut s = snapshot();
        let ok = |s: &mut Snapshot, account: &str, probe: Outcome| {
            let mut zone = zone_with(vec![]);
            zone.probe = Some(probe);
            s.zones.insert((account.into(), "Z".into()), zone);
        };
        ok(&mut s, "a503", failed(503, ErrorKind::HttpStatus));
        ok(&mut s, "a403", failed(403, ErrorKind::HttpStatus));
        ok(&mut s, "a404", failed(404, ErrorKind::HttpStatus));
        ok(&mut s, "held", failed(0, ErrorKind::CredentialsSuspended));
        let mut stale = zone_with(vec![]);
        stale.last_success = Some(at(NOW - 601));
        s.zones.insert(("stale".into(), "Z".into()), stale);
        s.zones
            .insert(("fine".into(), "Z".into()), zone_with(vec![]));
        s.zones_discovery
            .insert("zl".into(), failed(0, ErrorKind::Timeout));
        s.accounts_discovery = Some(failed(404, ErrorKind::HttpStatus));
        let rows = zone_rows(&s, at(NOW));
        let alert = |account: &str| {
            rows.iter()
                .find(|r| r.account == account)
                .and_then(|r| r.alert)
        };
        assert_eq!(alert("a503"), Some(Alert::ProbeFailing));
        assert_eq!(alert("a403"), Some(Alert::AccountForbidden));
        assert_eq!(alert("a404"), Some(Alert::AccountNotFound));
        assert_eq!(alert("held"), Some(Alert::ApiCredentialsRejected));
        assert_eq!(alert("stale"), Some(Alert::DataStale));
        assert_eq!(alert("zl"), Some(Alert::DiscoveryFailing));
        assert_eq!(alert("fine"), None);
        assert_eq!(
            rows.last().map(|r| r.account),
            Some("fine"),
            "failing first"
        );
        let page = render(&info(), Some(&s), at(NOW));
        assert!(page.contains(&format!(
            "<a class=\"rb\" href=\"{RUNBOOK_BASE}#flexclouddiscoveryfailing\">FlexcloudDiscoveryFailing</a>"
        )));
        assert!(page.contains(&format!("href=\"{DASHBOARD_DOC}\"")));
    }

    #[test]
    fn the_zone_table_is_bounded_with_the_rest_counted() {
        let mut s = snapshot();
        for i in 0..MAX_ZONE_ROWS + 7 {
            s.zones
                .insert((format!("acct{i:04}"), "Z".into()), zone_with(vec![]));
        }
        let page = render(&info(), Some(&s), at(NOW));
        assert!(
            page.contains("and 7 more (0 of them needing attention)"),
            "{page}"
        );
        assert!(page.contains("acct0199") && !page.contains("acct0200"));
    }

    #[test]
    fn the_held_accounts_are_bounded_with_the_rest_counted() {
        let mut s = snapshot();
        for i in 0..MAX_HELD_ROWS + 3 {
            s.held_accounts.insert(
                format!("held{i:03}"),
                CredentialState::Retrying {
                    rejections: 1,
                    wait: Duration::from_secs(120),
                },
            );
        }
        let page = render(&info(), Some(&s), at(NOW));
        assert!(page.contains(&format!(
            "{} accounts held back after a 401 that concerned only each",
            MAX_HELD_ROWS + 3
        )));
        assert!(page.contains("and 3 more; <a href=\"/metrics\">"), "{page}");
        assert!(page.contains(">held024<") && !page.contains(">held025<"));
    }

    /// The anchors and thresholds the page uses are those of the shipped rules and runbook.
    #[test]
    fn alerts_and_thresholds_match_the_rules_and_the_runbook() {
        // Read, not included: the image's build context holds only what the binary needs.
        let read = |path: &str| {
            std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        let rules: serde_norway::Value =
            serde_norway::from_str(&read("alerts/flexcloud-exporter.rules.yml")).unwrap();
        let runbook = read("docs/runbook.md");
        let mut exprs = BTreeMap::new();
        for group in rules["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                exprs.insert(
                    rule["alert"].as_str().unwrap().to_string(),
                    (
                        rule["expr"].as_str().unwrap().to_string(),
                        rule["annotations"]["runbook_url"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                    ),
                );
            }
        }
        for alert in Alert::ALL {
            let (_, url) = &exprs[alert.name()];
            let anchor = alert.name().to_ascii_lowercase();
            assert_eq!(
                url,
                &format!("{RUNBOOK_BASE}#{anchor}"),
                "the page and the rules share one runbook base"
            );
            assert!(runbook.contains(&format!("\n## {}\n", alert.name())));
            assert!(alert.link().contains(&format!("{RUNBOOK_BASE}#{anchor}\"")));
        }
        let stuck = &exprs[Alert::ImageStuckSaving.name()].0;
        assert!(
            stuck.contains(&format!("> {}", STUCK_SAVING_AFTER.as_secs())),
            "{stuck}"
        );
        let stale = &exprs[Alert::DataStale.name()].0;
        assert!(
            stale.contains(&format!("> {}", DATA_STALE_AFTER.as_secs())),
            "{stale}"
        );
    }

    #[test]
    fn before_the_first_cycle_the_page_says_so() {
        let page = render(&info(), None, at(NOW));
        assert!(page.contains("has not finished yet"));
        assert!(page.contains("rendered <time>"));
    }
}
