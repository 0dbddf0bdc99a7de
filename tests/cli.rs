//! The compiled binary as a user runs it: environment only, exit codes, and secrecy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, PASSWORD, Running, USER, binary_env as exporter_env};
use flexcloud_sim::{Fault, FaultAction, Scenario, Simulator};

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("request")
}

async fn wait_ready(base: &str) {
    common::eventually("/-/ready to answer 200", || async {
        let r = reqwest::get(format!("{base}/-/ready")).await.ok()?;
        if r.status() != 200 {
            assert_eq!(r.status(), 503, "/-/ready is 503 until the first cycle");
            return None;
        }
        Some(())
    })
    .await;
}

fn fleet() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &["acme"])
        .account("acme", &["TAMPA"])
        .image("acme", "1", "ACTIVE", "BASE", &["TAMPA"])
        .image("acme", "2", "SAVING", "SERVER", &["TAMPA"])
}

#[tokio::test]
async fn binary_configured_by_environment_only_becomes_ready_and_serves_metrics() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    let url = sim.url();
    let mut exporter = Running::start(&exporter_env(&url, &[]), &[]);
    let base = format!("http://{}", exporter.address());
    assert_eq!(get(&format!("{base}/-/healthy")).await.status(), 200);
    wait_ready(&base).await;

    let text = get(&format!("{base}/metrics")).await;
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let m = common::Metrics::parse(&text.text().await.unwrap());
    assert_eq!(m.value("flexcloud_up", &[]), 1.0);
    assert_eq!(
        m.value(
            "flexcloud_images",
            &[
                ("account_id", "acme"),
                ("zone_id", "TAMPA"),
                ("status", "SAVING"),
                ("image_type", "SERVER")
            ]
        ),
        1.0
    );
    assert!(m.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(m.get("process_cpu_seconds_total", &[]).is_some());
    assert!(m.get("process_open_fds", &[]).is_some());
    assert!(m.get("process_max_fds", &[]).is_some());
    assert!(m.get("process_start_time_seconds", &[]).is_some());

    let om = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        om.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let body = om.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(body.matches("# EOF").count(), 1);

    let page = get(&format!("{base}/")).await.text().await.unwrap();
    assert!(page.contains("acme") && page.contains("TAMPA") && page.contains("/metrics"));
    sim.stop().await;
}

#[test]
fn bad_settings_exit_2_with_one_line_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[
                ("FLEXCLOUD_USERNAME", "u"),
                ("FLEXCLOUD_PASSWORD", "p"),
                ("FLEXCLOUD_INTERVAL", "often"),
            ],
            "FLEXCLOUD_INTERVAL",
        ),
        (&[("FLEXCLOUD_PASSWORD", "p")], "FLEXCLOUD_USERNAME"),
        (&[("FLEXCLOUD_USERNAME", "u")], "FLEXCLOUD_PASSWORD"),
        (
            &[
                ("FLEXCLOUD_USERNAME", "u"),
                ("FLEXCLOUD_PASSWORD", "p"),
                ("FLEXCLOUD_LISTEN_ADDRESS", "nowhere"),
            ],
            "FLEXCLOUD_LISTEN_ADDRESS",
        ),
        (
            &[
                ("FLEXCLOUD_USERNAME", "u"),
                ("FLEXCLOUD_PASSWORD_FILE", "/nonexistent/secret"),
            ],
            "FLEXCLOUD_PASSWORD_FILE",
        ),
    ];
    for (env, var) in cases {
        let out = Command::new(BIN)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{var}: one line: {stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    let usage = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for setting in flexcloud_exporter::config::SETTINGS {
        let name = setting.name;
        assert!(help.contains(name), "{name}");
        let default = setting.default.shown();
        assert!(
            default.is_empty() || help.contains(&format!("[{default}]")),
            "{name}"
        );
    }
}

#[tokio::test]
async fn once_prints_metrics_and_exits_0_only_when_every_probe_succeeded() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    let url = sim.url();
    let run = |extra: Vec<(&'static str, &'static str)>| {
        let env = exporter_env(&url, &extra)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>();
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .arg("--once")
                .env_clear()
                .envs(env)
                .output()
                .unwrap()
        })
    };
    let ok = run(vec![]).await.unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let m = common::Metrics::parse(&String::from_utf8(ok.stdout).unwrap());
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "acme"), ("zone_id", "TAMPA")]
        ),
        1.0
    );

    let failing = run(vec![("FLEXCLOUD_ACCOUNTS", "acme,ghost")])
        .await
        .unwrap();
    assert_eq!(failing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failing.stderr).contains("ghost zones (HTTP status 404)"));
    sim.stop().await;
}

#[tokio::test]
async fn health_check_mode_exits_0_for_200_and_1_otherwise() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    let check = |url: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(["--health-check", &url])
                .status()
                .unwrap()
        })
    };
    // The simulator answers 401 to an unauthenticated /accounts and 404 to /-/healthy.
    assert_eq!(
        check(format!("{}/accounts", sim.url()))
            .await
            .unwrap()
            .code(),
        Some(1)
    );
    let (_held, refusing) = common::refusing_address();
    assert_eq!(
        check(format!("http://{refusing}/-/healthy"))
            .await
            .unwrap()
            .code(),
        Some(1)
    );
    sim.stop().await;

    // /-/healthy answers whatever the API does: here it refuses every connection.
    let api = format!("http://{refusing}");
    let mut exporter = Running::start(&exporter_env(&api, &[]), &[]);
    let address = exporter.address();
    assert_eq!(
        check(format!("http://{address}/-/healthy"))
            .await
            .unwrap()
            .code(),
        Some(0)
    );
}

#[tokio::test]
async fn password_never_appears_in_logs_metrics_page_or_errors() {
    let elsewhere = Simulator::start_local(Scenario::default()).await.unwrap();
    let scenario = fleet()
        .user("other", "x", &["acme"])
        .account("broken", &["TAMPA"])
        .account("slow", &["TAMPA"])
        .fault(
            Fault::on(
                "/accounts/broken/flexcloud/images/detail",
                FaultAction::MalformedJson,
            )
            .with_query("type=BASE"),
        )
        .fault(Fault::on(
            "/accounts/broken/flexcloud/images/detail",
            FaultAction::Status {
                status: 503,
                body: None,
                retry_after: Some("0".into()),
            },
        ))
        .fault(Fault::on(
            "/accounts/slow/flexcloud/zone",
            FaultAction::Redirect {
                location: format!("{}/steal?page=1", elsewhere.url()),
                status: 303,
            },
        ))
        .fault(Fault::on(
            "/accounts/acme/flexcloud/zone",
            FaultAction::Redirect {
                location: format!("{}/steal", elsewhere.url()),
                status: 303,
            },
        ));
    let sim = Simulator::start_local(scenario.user(USER, PASSWORD, &["broken", "slow"]))
        .await
        .unwrap();
    let url = sim.url();
    let mut exporter = Running::start(
        &exporter_env(
            &url,
            &[
                ("FLEXCLOUD_LOG", "trace"),
                ("FLEXCLOUD_ACCOUNTS", "acme,broken,slow,ghost"),
                ("FLEXCLOUD_INTERVAL", "1s"),
            ],
        ),
        &[],
    );
    let base = format!("http://{}", exporter.address());
    wait_ready(&base).await;
    let metrics = get(&format!("{base}/metrics")).await.text().await.unwrap();
    let page = get(&format!("{base}/")).await.text().await.unwrap();
    // Now the credentials go bad: 401s and the backoff path, until a cycle with them has
    // been published and the gate has logged the rejection.
    sim.update(|s| s.users.retain(|u| u.username != USER));
    let metrics_after = common::eventually("a published cycle with a 401", || async {
        let text = get(&format!("{base}/metrics")).await.text().await.ok()?;
        let rejected: f64 = common::Metrics::parse(&text)
            .series("flexcloud_api_requests_total", &[("code", "401")])
            .iter()
            .map(|(_, n)| n)
            .sum();
        (rejected > 0.0).then_some(text)
    })
    .await;
    // The faults were exercised, and the 401 path.
    exporter.wait_for_line("`probe failed`", |l| l.contains("probe failed"));
    exporter.wait_for_line("about the 401", |l| {
        l.contains("API rejected the credentials (401)")
    });
    let log = exporter.log();
    for (what, text) in [
        ("log", &log),
        ("metrics", &metrics),
        ("metrics after 401", &metrics_after),
        ("page", &page),
    ] {
        assert!(!text.contains(PASSWORD), "password in {what}");
        let encoded = base64_of(&format!("{USER}:{PASSWORD}"));
        assert!(!text.contains(&encoded), "Authorization header in {what}");
    }
    assert!(
        elsewhere.requests().is_empty(),
        "nothing was sent to another origin"
    );
    sim.stop().await;
    elsewhere.stop().await;

    // A bad setting's error message does not echo the password either.
    let out = Command::new(BIN)
        .env_clear()
        .envs([
            ("FLEXCLOUD_USERNAME", USER),
            ("FLEXCLOUD_PASSWORD", PASSWORD),
            (
                "FLEXCLOUD_API_URL",
                "https://u:pa55-W0rd-never-shown@api.example.com",
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(PASSWORD));
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
#[ignore = "needs promtool"]
async fn metrics_pass_promtool_check_metrics() {
    let scenario = Scenario::from_json(flexcloud_sim::DEMO_SCENARIO)
        .unwrap()
        .image_with(
            "acme1234",
            "odd\"id",
            "SAVING",
            "BASE",
            &["US-AUSTIN-1"],
            |mut i| {
                i.name = "q\"uote\\ new\nline <b> ünï".into();
                i.age = Some(Duration::from_secs(90));
                i
            },
        );
    let user = scenario.users[0].clone();
    let sim = Simulator::start_local(scenario).await.unwrap();
    let url = sim.url();
    let env = [
        ("FLEXCLOUD_API_URL", url.as_str()),
        ("FLEXCLOUD_USERNAME", user.username.as_str()),
        ("FLEXCLOUD_PASSWORD", user.password.as_str()),
        ("FLEXCLOUD_LISTEN_ADDRESS", "127.0.0.1:0"),
        ("FLEXCLOUD_LOG_FORMAT", "json"),
        ("FLEXCLOUD_ACCOUNTS", "acme1234,globex5678,ghost"),
    ];
    let mut exporter = Running::start(&env, &[]);
    let base = format!("http://{}", exporter.address());
    wait_ready(&base).await;
    // As curl asks: no Accept header, so the classic text format.
    let body = get(&format!("{base}/metrics")).await.text().await.unwrap();
    common::promtool::assert_clean_metrics(body.as_bytes());
    sim.stop().await;
}
