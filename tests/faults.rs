//! The fault matrix: one case per API fault, the exact metrics afterwards, and a server
//! that keeps answering; plus credential backoff, load, soak and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Harness, Metrics, PASSWORD, USER, scrape};
use flexcloud_sim::{Fault, FaultAction, Scenario, Simulator};

fn fleet() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &["acme", "globex"])
        .account("acme", &["TAMPA"])
        .account("globex", &["TAMPA"])
        .image("acme", "1", "ACTIVE", "BASE", &["TAMPA"])
        .image("acme", "2", "SAVING", "SERVER", &["TAMPA"])
        .image("globex", "3", "ACTIVE", "SERVER", &["TAMPA"])
}

const ACME: [(&str, &str); 2] = [("account_id", "acme"), ("zone_id", "TAMPA")];
const GLOBEX: [(&str, &str); 2] = [("account_id", "globex"), ("zone_id", "TAMPA")];

/// What one faulty probe of acme/TAMPA must leave in the metrics.
struct Case {
    name: &'static str,
    action: FaultAction,
    /// `flexcloud_probe_http_status_code`.
    status: f64,
    /// `code` label of `flexcloud_api_requests_total` and its count for acme's images.
    code: &'static str,
    requests: f64,
}

fn status(status: u16, retry_after: Option<&str>) -> FaultAction {
    FaultAction::Status {
        status,
        body: None,
        retry_after: retry_after.map(String::from),
    }
}

fn codes(m: &Metrics) -> Vec<(String, f64)> {
    m.series(
        "flexcloud_api_requests_total",
        &[("account_id", "acme"), ("endpoint", "images_detail")],
    )
}

#[tokio::test]
async fn every_fault_is_reported_exactly_and_the_exporter_keeps_serving() {
    // Each image type is one request; transient failures are tried three times.
    let cases = [
        Case {
            name: "timeout",
            action: FaultAction::Delay {
                delay: Duration::from_secs(10),
            },
            status: 0.0,
            code: "timeout",
            requests: 6.0,
        },
        Case {
            name: "slow drip body",
            action: FaultAction::Drip {
                interval: Duration::from_millis(300),
                chunk_bytes: 1,
            },
            status: 0.0,
            code: "timeout",
            requests: 6.0,
        },
        Case {
            name: "connection reset",
            action: FaultAction::ResetConnection,
            status: 0.0,
            code: "connect_error",
            requests: 6.0,
        },
        Case {
            name: "connection dropped",
            action: FaultAction::DropConnection,
            status: 0.0,
            code: "connect_error",
            requests: 6.0,
        },
        Case {
            name: "500",
            action: status(500, None),
            status: 500.0,
            code: "500",
            requests: 2.0,
        },
        Case {
            name: "502",
            action: status(502, None),
            status: 502.0,
            code: "502",
            requests: 6.0,
        },
        Case {
            name: "503",
            action: status(503, Some("0")),
            status: 503.0,
            code: "503",
            requests: 6.0,
        },
        Case {
            name: "403",
            action: status(403, None),
            status: 403.0,
            code: "403",
            requests: 2.0,
        },
        Case {
            name: "404",
            action: status(404, None),
            status: 404.0,
            code: "404",
            requests: 2.0,
        },
        Case {
            name: "malformed JSON",
            action: FaultAction::MalformedJson,
            status: 200.0,
            code: "invalid_response",
            requests: 2.0,
        },
        Case {
            name: "truncated body",
            action: FaultAction::Truncated,
            status: 200.0,
            code: "invalid_response",
            requests: 2.0,
        },
        Case {
            name: "HTML body",
            action: FaultAction::Html,
            status: 200.0,
            code: "invalid_response",
            requests: 2.0,
        },
        Case {
            name: "oversized body",
            action: FaultAction::Oversized { bytes: 50_000_000 },
            status: 200.0,
            code: "invalid_response",
            requests: 2.0,
        },
        Case {
            name: "redirect to another host without paging",
            action: FaultAction::Redirect {
                location: "http://127.0.0.1:9/steal".into(),
            },
            status: 303.0,
            code: "303",
            requests: 2.0,
        },
    ];
    for case in cases {
        let mut h = Harness::start(
            fleet(),
            &[
                ("FLEXCLOUD_ACCOUNTS", "acme,globex"),
                ("FLEXCLOUD_TIMEOUT", "700ms"),
                ("FLEXCLOUD_READ_TIMEOUT", "500ms"),
                ("FLEXCLOUD_MAX_BODY_BYTES", "1048576"),
            ],
        )
        .await;
        let base = h.serve().await;
        h.cycle().await;
        h.sim.add_fault(Fault::on(
            "/accounts/acme/flexcloud/images/detail",
            case.action.clone(),
        ));
        let m = h.cycle().await;
        let name = case.name;
        assert_eq!(m.value("flexcloud_probe_success", &ACME), 0.0, "{name}");
        assert_eq!(
            m.value("flexcloud_probe_http_status_code", &ACME),
            case.status,
            "{name}"
        );
        let got = codes(&m);
        let failed: f64 = got
            .iter()
            .filter(|(k, _)| k.contains(&format!("code=\"{}\"", case.code)))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(failed, case.requests, "{name}: {got:?}");
        // The other account is untouched; the last good images of acme are kept (stale rule).
        assert_eq!(m.value("flexcloud_probe_success", &GLOBEX), 1.0, "{name}");
        assert_eq!(
            m.value(
                "flexcloud_images",
                &[
                    ("account_id", "acme"),
                    ("zone_id", "TAMPA"),
                    ("status", "ACTIVE"),
                    ("image_type", "BASE")
                ]
            ),
            1.0,
            "{name}"
        );
        // The server answers from the published cycle whatever the API does.
        let served = scrape(&base).await;
        assert_eq!(
            served.value("flexcloud_probe_success", &ACME),
            0.0,
            "{name}"
        );
        h.stop().await;
    }
}

#[tokio::test]
async fn connection_refused_is_connect_error_and_up_is_0() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = common::config(
        &format!("http://{closed}"),
        &[("FLEXCLOUD_ACCOUNTS", "acme")],
    );
    let m = common::one_cycle(config).await;
    let step = [("account_id", "acme"), ("step", "zones")];
    assert_eq!(m.value("flexcloud_discovery_success", &step), 0.0);
    assert_eq!(m.value("flexcloud_discovery_http_status_code", &step), 0.0);
    assert_eq!(
        m.value(
            "flexcloud_api_requests_total",
            &[
                ("account_id", "acme"),
                ("endpoint", "zones"),
                ("code", "connect_error")
            ]
        ),
        3.0
    );
    assert_eq!(m.value("flexcloud_up", &[]), 0.0);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_then_succeeds() {
    let mut h = Harness::start(fleet(), &[("FLEXCLOUD_ACCOUNTS", "acme")]).await;
    h.sim.add_fault(
        Fault::on(
            "/accounts/acme/flexcloud/images/detail",
            status(429, Some("1")),
        )
        .times(2),
    );
    let started = Instant::now();
    let m = h.cycle().await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(m.value("flexcloud_probe_success", &ACME), 1.0);
    assert_eq!(
        m.value(
            "flexcloud_api_requests_total",
            &[
                ("account_id", "acme"),
                ("endpoint", "images_detail"),
                ("code", "429")
            ]
        ),
        2.0
    );
    assert_eq!(
        m.value(
            "flexcloud_api_requests_total",
            &[
                ("account_id", "acme"),
                ("endpoint", "images_detail"),
                ("code", "200")
            ]
        ),
        2.0
    );
    h.stop().await;
}

#[tokio::test]
async fn a_401_is_never_retried_and_the_backoff_grows_then_resets() {
    let mut h = Harness::start(
        fleet(),
        &[
            ("FLEXCLOUD_ACCOUNTS", "acme"),
            ("FLEXCLOUD_INTERVAL", "100ms"),
            ("FLEXCLOUD_CONCURRENCY", "1"),
        ],
    )
    .await;
    h.sim.update(|s| s.users[0].password = "rotated".into());
    let rejected = |m: &Metrics| {
        m.get(
            "flexcloud_api_requests_total",
            &[
                ("account_id", "acme"),
                ("endpoint", "zones"),
                ("code", "401"),
            ],
        )
        .unwrap_or(0.0)
    };

    let first = h.cycle().await;
    assert_eq!(rejected(&first), 1.0, "one request, no retry");
    assert_eq!(
        first.value("flexcloud_credential_backoff_seconds", &[]),
        0.2
    );
    assert_eq!(h.sim.requests().len(), 1);

    // Inside the wait: nothing is sent.
    let waiting = h.cycle().await;
    assert_eq!(h.sim.requests().len(), 1, "no request while backing off");
    assert_eq!(waiting.value("flexcloud_up", &[]), 0.0);

    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = h.cycle().await;
    assert_eq!(rejected(&second), 2.0);
    assert_eq!(
        second.value("flexcloud_credential_backoff_seconds", &[]),
        0.4,
        "the wait doubles"
    );

    h.sim.update(|s| s.users[0].password = PASSWORD.into());
    tokio::time::sleep(Duration::from_millis(450)).await;
    let healed = h.cycle().await;
    assert_eq!(healed.value("flexcloud_up", &[]), 1.0);
    assert_eq!(
        healed.value("flexcloud_credential_backoff_seconds", &[]),
        0.0,
        "reset on success"
    );
    assert_eq!(healed.value("flexcloud_probe_success", &ACME), 1.0);
    h.stop().await;
}

#[tokio::test]
async fn odd_ids_and_names_are_escaped_in_the_exposition_and_on_the_page() {
    let nasty = "q\"uote\\slash\nnew <script>alert(1)</script> ünïcødé 画像";
    let scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("a", &["Z"])
        .image_with("a", "id\"<b>\n", "SAVING", "BASE", &["Z"], |mut i| {
            i.name = nasty.into();
            i.age = Some(Duration::from_secs(60));
            i
        });
    let mut h = Harness::start(scenario, &[]).await;
    let base = h.serve().await;
    let m = h.cycle().await;
    let series = m.series("flexcloud_image_saving_created_timestamp_seconds", &[]);
    assert_eq!(series.len(), 1);
    assert!(
        series[0].0.contains(&format!("image_name=\"{nasty}\"")),
        "round-trips through escaping: {series:?}"
    );
    assert!(series[0].0.contains("image_id=\"id\"<b>\n\""));
    // Raw exposition: one line per sample, quotes and newlines escaped.
    let raw = get_text(&format!("{base}/metrics")).await;
    let line = raw
        .lines()
        .find(|l| l.starts_with("flexcloud_image_saving_created_timestamp_seconds{"))
        .unwrap();
    assert!(
        line.contains(r#"image_name="q\"uote\\slash\nnew <script>"#),
        "{line}"
    );
    let page = get_text(&format!("{base}/")).await;
    assert!(!page.contains("<script>alert(1)"));
    h.stop().await;
}

#[tokio::test]
async fn a_redirect_with_paging_to_another_host_goes_to_the_api_origin_instead() {
    let elsewhere = Simulator::start_local(Scenario::default()).await.unwrap();
    let mut scenario = Scenario::default()
        .user(USER, PASSWORD, &["*"])
        .account("a", &["Z"]);
    for i in 0..3 {
        scenario = scenario.image("a", &i.to_string(), "ACTIVE", "BASE", &["Z"]);
    }
    let mut h = Harness::start(scenario, &[]).await;
    h.sim.add_fault(
        Fault::on(
            "/accounts/a/flexcloud/images/detail",
            FaultAction::Redirect {
                location: format!("{}/steal?page=1&pageSize=100", elsewhere.url()),
            },
        )
        .with_query("type=BASE")
        .times(1),
    );
    let m = h.cycle().await;
    assert_eq!(
        m.value(
            "flexcloud_probe_success",
            &[("account_id", "a"), ("zone_id", "Z")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "flexcloud_images",
            &[
                ("account_id", "a"),
                ("zone_id", "Z"),
                ("status", "ACTIVE"),
                ("image_type", "BASE")
            ]
        ),
        3.0
    );
    assert!(
        elsewhere.requests().is_empty(),
        "credentials never left the API's origin"
    );
    h.stop().await;
    elsewhere.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_flexcloud-exporter");

/// The exporter binary against `api`, killed on drop.
struct Child(std::process::Child, String);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_exporter(api: &str, extra: &[(&str, &str)]) -> Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .env_clear()
        .envs([
            ("FLEXCLOUD_API_URL", api),
            ("FLEXCLOUD_USERNAME", USER),
            ("FLEXCLOUD_PASSWORD", PASSWORD),
            ("FLEXCLOUD_LISTEN_ADDRESS", listen.as_str()),
            ("FLEXCLOUD_LOG", "warn"),
        ])
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Child(child, format!("http://{listen}"))
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{base}/-/ready")).await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("exporter never became ready");
}

/// A `kB` field of `/proc/PID/status`, e.g. `VmRSS` (resident now) or `VmHWM` (peak).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_oversized_body_costs_at_most_the_body_cap_in_memory() {
    let sim = Simulator::start_local(fleet().fault(Fault::on(
        "/accounts/acme/flexcloud/images/detail",
        FaultAction::Oversized {
            bytes: 256 * 1024 * 1024,
        },
    )))
    .await
    .unwrap();
    let exporter = spawn_exporter(
        &sim.url(),
        &[
            ("FLEXCLOUD_ACCOUNTS", "acme,globex"),
            ("FLEXCLOUD_MAX_BODY_BYTES", "1048576"),
            ("FLEXCLOUD_INTERVAL", "200ms"),
        ],
    );
    wait_ready(&exporter.1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let m = Metrics::parse(&get_text(&format!("{}/metrics", exporter.1)).await);
    let invalid = m.value(
        "flexcloud_api_requests_total",
        &[
            ("account_id", "acme"),
            ("endpoint", "images_detail"),
            ("code", "invalid_response"),
        ],
    );
    assert!(invalid >= 2.0);
    let peak_mib = proc_status_kib(exporter.0.id(), "VmHWM:") / 1024;
    println!("peak RSS with 256 MiB bodies capped at 1 MiB: {peak_mib} MiB");
    assert!(
        peak_mib < 64,
        "peak RSS {peak_mib} MiB: the body cap did not bound memory"
    );
    sim.stop().await;
}

#[tokio::test]
async fn scrapes_keep_answering_under_load_while_cycles_hit_a_slow_faulty_api() {
    let scenario = fleet()
        .latency(Duration::from_millis(100), Duration::from_millis(100))
        .fault(Fault::on("/accounts/globex/*", status(503, Some("0"))))
        .fault(
            Fault::on(
                "/accounts/acme/flexcloud/images/detail",
                FaultAction::Delay {
                    delay: Duration::from_secs(2),
                },
            )
            .with_query("type=SERVER"),
        );
    let sim = Simulator::start_local(scenario).await.unwrap();
    let exporter = spawn_exporter(
        &sim.url(),
        &[("FLEXCLOUD_INTERVAL", "300ms"), ("FLEXCLOUD_TIMEOUT", "1s")],
    );
    wait_ready(&exporter.1).await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut scrapers = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let client = client.clone();
        let url = format!("{}/metrics", exporter.1);
        scrapers.spawn(async move {
            let (mut ok, mut errors, mut slowest) = (0u32, 0u32, Duration::ZERO);
            while Instant::now() < deadline {
                let started = Instant::now();
                let good = match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        r.text().await.is_ok_and(|t| t.contains("flexcloud_up"))
                    }
                    _ => false,
                };
                if good {
                    ok += 1;
                } else {
                    errors += 1;
                }
                slowest = slowest.max(started.elapsed());
            }
            (ok, errors, slowest)
        });
    }
    let (mut ok, mut errors, mut slowest) = (0, 0, Duration::ZERO);
    while let Some(result) = scrapers.join_next().await {
        let (o, e, s) = result.unwrap();
        ok += o;
        errors += e;
        slowest = slowest.max(s);
    }
    println!(
        "{ok} scrapes, {errors} errors, slowest {slowest:?} (API latency 100-200 ms, one request 2 s)"
    );
    assert_eq!(errors, 0);
    assert!(ok > 100);
    sim.stop().await;
}

#[tokio::test]
async fn hundreds_of_cycles_with_faults_toggled_do_not_grow_memory() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    let exporter = spawn_exporter(&sim.url(), &[("FLEXCLOUD_INTERVAL", "10ms")]);
    wait_ready(&exporter.1).await;
    let cycles = |m: &Metrics| m.value("flexcloud_collection_cycles_total", &[]);
    let scrape_binary =
        || async { Metrics::parse(&get_text(&format!("{}/metrics", exporter.1)).await) };
    let toggle = |n: u32| {
        sim.clear_faults();
        match n % 4 {
            0 => sim.add_fault(Fault::on("/accounts/acme/*", status(500, None))),
            1 => sim.add_fault(Fault::on("/accounts/globex/*", FaultAction::MalformedJson)),
            2 => sim.add_fault(Fault::on("/accounts", status(503, Some("0")))),
            _ => {}
        }
    };
    let mut n = 0;
    let mut warm = None;
    loop {
        toggle(n);
        n += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let m = scrape_binary().await;
        let done = cycles(&m);
        if warm.is_none() && done >= 100.0 {
            warm = Some(proc_status_kib(exporter.0.id(), "VmRSS:"));
        }
        if done >= 400.0 {
            break;
        }
        assert!(n < 2000, "cycles did not advance");
    }
    let end = proc_status_kib(exporter.0.id(), "VmRSS:");
    let warm = warm.unwrap();
    println!("RSS after 100 cycles {warm} KiB, after 400 cycles {end} KiB");
    // Allocator noise is a few pages; a leak per cycle would add far more over 300 cycles.
    assert!(
        end <= warm + warm / 10,
        "RSS grew from {warm} KiB to {end} KiB"
    );
    sim.stop().await;
}

#[tokio::test]
async fn sigterm_during_a_cycle_waiting_on_a_slow_api_exits_0_promptly() {
    let sim = Simulator::start_local(fleet().fault(Fault::on(
        "/accounts/acme/flexcloud/images/detail",
        FaultAction::Delay {
            delay: Duration::from_secs(60),
        },
    )))
    .await
    .unwrap();
    let mut exporter = spawn_exporter(&sim.url(), &[("FLEXCLOUD_TIMEOUT", "60s")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sim
        .requests()
        .iter()
        .any(|r| r.path == "/accounts/acme/flexcloud/images/detail")
    {
        assert!(
            Instant::now() < deadline,
            "the cycle never reached the slow request"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = exporter.0.id().to_string();
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = exporter.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("exited {:?} after SIGTERM", signalled.elapsed());
    assert_eq!(status.code(), Some(0));
    let _ = &mut exporter;
    sim.stop().await;
}

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}
