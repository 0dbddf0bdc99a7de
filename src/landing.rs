//! The HTML landing page: version, links, and every account and zone's latest result.

use std::fmt::Write;
use std::time::Duration;

use html_escape::encode_text as esc;

use crate::snapshot::{Outcome, Snapshot};
use crate::timestamp::format_api;

/// Static facts shown on the page.
#[derive(Debug, Clone)]
pub struct PageInfo {
    pub version: &'static str,
    /// The API base URL (never carries credentials: config rejects userinfo).
    pub api_url: String,
    pub interval: Duration,
}

/// Renders the page. Every value that came from the API is HTML-escaped.
pub fn render(info: &PageInfo, snapshot: Option<&Snapshot>) -> String {
    let mut page = String::with_capacity(4096);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>FlexCloud exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}.fail{{color:#b00}}</style></head><body>\
         <h1>FlexCloud exporter</h1><p>Version {version}. API <code>{api}</code>, polled every {interval}.</p>\
         <p><a href=\"/metrics\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>",
        version = esc(info.version),
        api = esc(&info.api_url),
        interval = humantime::format_duration(info.interval),
    );
    let Some(snapshot) = snapshot else {
        page.push_str("<p>The first collection cycle has not finished yet.</p></body></html>\n");
        return page;
    };
    let _ = write!(
        page,
        "<p>Cycle {cycle} finished at {at} UTC in {took:.2}s; API reachable with valid credentials: {up}.</p>",
        cycle = snapshot.cycle,
        at = snapshot.completed_at.map(format_api).unwrap_or_default(),
        took = snapshot.duration.as_secs_f64(),
        up = if snapshot.up { "yes" } else { "no" },
    );
    if let Some(o) = &snapshot.accounts_discovery {
        let _ = write!(page, "<p>Account discovery: {}</p>", outcome_text(o));
    }
    page.push_str(
        "<table><tr><th>Account</th><th>Zone</th><th>Probe</th><th>HTTP status</th><th>Duration</th>\
         <th>Images</th><th>SAVING</th><th>Last success</th></tr>",
    );
    for (account, outcome) in snapshot.zones_discovery.iter().filter(|(_, o)| !o.success) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>(zone list)</td><td class=\"fail\">{}</td><td>{}</td><td>{:.3}s</td><td></td><td></td><td></td></tr>",
            esc(account),
            outcome_text(outcome),
            outcome.http_status,
            outcome.duration.as_secs_f64()
        );
    }
    for ((account, zone), state) in &snapshot.zones {
        let (result, status, duration) = match &state.probe {
            Some(p) => (
                outcome_text(p),
                p.http_status.to_string(),
                format!("{:.3}s", p.duration.as_secs_f64()),
            ),
            None => (
                "not probed (discovery failed)".to_string(),
                String::new(),
                String::new(),
            ),
        };
        let class = if state.probe.as_ref().is_some_and(|p| p.success) {
            ""
        } else {
            " class=\"fail\""
        };
        let (images, saving) =
            state
                .inventory
                .as_ref()
                .map_or((String::new(), String::new()), |inv| {
                    let saving: u64 = inv
                        .count_rows()
                        .iter()
                        .filter(|(_, s, _)| *s == "SAVING")
                        .map(|(_, _, n)| n)
                        .sum();
                    (inv.total().to_string(), saving.to_string())
                });
        let last = state
            .last_success
            .map(|t| format!("{} UTC", format_api(t)))
            .unwrap_or_else(|| "never".into());
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td{class}>{}</td><td>{status}</td><td>{duration}</td><td>{images}</td><td>{saving}</td><td>{last}</td></tr>",
            esc(account),
            esc(zone),
            result,
        );
    }
    page.push_str("</table></body></html>\n");
    page
}

fn outcome_text(outcome: &Outcome) -> String {
    if outcome.success {
        return "ok".into();
    }
    let detail = outcome
        .detail
        .as_deref()
        .unwrap_or(outcome.error_kind.map_or("failed", |k| k.as_str()));
    format!("failed: {}", esc(detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ZoneState;

    #[test]
    fn values_from_the_api_are_escaped() {
        let mut snapshot = Snapshot::default();
        snapshot.zones.insert(
            ("<script>alert(1)</script>".into(), "z\"one".into()),
            ZoneState {
                probe: Some(Outcome {
                    success: false,
                    http_status: 500,
                    error_kind: Some(crate::api::ErrorKind::HttpStatus),
                    detail: Some("<img src=x onerror=alert(2)>".into()),
                    duration: Duration::from_millis(5),
                }),
                inventory: None,
                held_saving: None,
                last_success: None,
            },
        );
        let info = PageInfo {
            version: "1",
            api_url: "https://api.example.com/".into(),
            interval: Duration::from_secs(60),
        };
        let page = render(&info, Some(&snapshot));
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("<img src=x"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
