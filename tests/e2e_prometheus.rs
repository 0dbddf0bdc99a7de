//! The bundled dashboard and alert rules against a real Prometheus scraping the real binary.
//!
//! The simulator (in this process, on a runtime of its own) serves
//! `tests/fixtures/e2e/scenario.json`; the exporter binary watches four accounts through it
//! (FLEXCLOUD_ACCOUNTS):
//! - `acme1234`: healthy, two zones, image 102 stuck in SAVING for 3h (in one zone, so one
//!   alert), image 103 SAVING for 5 minutes only, one ACTIVE and one DELETED image;
//! - `flaky7890`: zone discovery works, every image listing answers 503;
//! - `other3456`: exists, but the exporter's user may not read it (403);
//! - `ghost0000`: unknown to the API (404).
//!
//! Prometheus scrapes the exporter every second and evaluates a copy of the rules with every
//! `for` set to 0s. The test asserts that every dashboard query returns data and that the
//! alerts fire with the right labels; then it changes the user's password in the simulator
//! and asserts that the credentials alert fires.
//!
//! Every listener binds port 0 and is found where it says it listens: the simulator's
//! through its handle, the exporter's and Prometheus's from their log lines (`listening`,
//! and `Listening on`, which Prometheus 2.42 writes with the port it got).
//!
//! Needs `prometheus` on PATH (Debian package `prometheus`, 2.42 or later):
//! `cargo test --test e2e_prometheus -- --include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use flexcloud_sim::{Scenario, Simulator};
use serde_json::Value;

#[path = "common/dashboards.rs"]
mod dashboards;

const BINARY: &str = env!("CARGO_BIN_EXE_flexcloud-exporter");
const SCENARIO: &str = "tests/fixtures/e2e/scenario.json";
const RULES: &str = "alerts/flexcloud-exporter.rules.yml";
/// The job name the rules assume for the exporter's own scrape job.
const JOB: &str = "flexcloud-exporter";
const USER: &str = "exporter";
const PASSWORD: &str = "e2e-secret";
const ACCOUNTS: &str = "acme1234,flaky7890,other3456,ghost0000";
/// How long any one condition may take to come true.
const WAIT: Duration = Duration::from_secs(90);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A child process that is killed when the test ends, however it ends.
struct Running {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(name: &'static str, command: &mut Command, dir: &Path) -> Running {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let stderr = file
            .try_clone()
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Running { name, child, log }
    }

    /// The end of the process's output, for failure messages.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- last lines of {} ({}):\n{tail}",
            self.name,
            self.log.display()
        )
    }

    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early with {status}\n{}",
                self.name,
                self.log_tail()
            );
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh scratch directory, kept after a failure for inspection.
fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("e2e_prometheus-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// A minimal HTTP/1.0 GET (no keep-alive, no chunking): status and body.
fn http_get(addr: SocketAddr, target: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response from {addr}{target}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line from {addr}{target}: {head}"))?;
    Ok((status, body.to_string()))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` until it returns Ok or `WAIT` passes; the panic carries the last error.
fn wait_for<T>(
    what: &str,
    processes: &mut [&mut Running],
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        for p in processes.iter_mut() {
            p.assert_alive();
        }
        let last = match check() {
            Ok(value) => return value,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            let logs: Vec<String> = processes.iter().map(|p| p.log_tail()).collect();
            panic!(
                "timed out after {WAIT:?} waiting for {what}: {last}\n{}",
                logs.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The simulator on a runtime of its own (the test is synchronous), serving the scenario
/// file on a port-0 loopback listener; stopped with its runtime when dropped.
struct Api {
    sim: Simulator,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.runtime.block_on(self.sim.stop());
    }
}

fn start_simulator() -> Api {
    let text = fs::read_to_string(repo(SCENARIO)).unwrap_or_else(|e| panic!("{SCENARIO}: {e}"));
    let scenario = Scenario::from_json(&text).unwrap_or_else(|e| panic!("{SCENARIO}: {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("simulator")
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the simulator's runtime: {e}"));
    let sim = runtime
        .block_on(Simulator::start_local(scenario))
        .unwrap_or_else(|e| panic!("the simulator does not start: {e}"));
    Api { sim, runtime }
}

fn start_exporter(dir: &Path, api: SocketAddr) -> Running {
    let mut command = Command::new(BINARY);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLEXCLOUD_") {
            command.env_remove(key);
        }
    }
    command
        .env("FLEXCLOUD_API_URL", format!("http://{api}"))
        .env("FLEXCLOUD_USERNAME", USER)
        .env("FLEXCLOUD_PASSWORD", PASSWORD)
        .env("FLEXCLOUD_ACCOUNTS", ACCOUNTS)
        .env("FLEXCLOUD_INTERVAL", "1s")
        .env("FLEXCLOUD_TIMEOUT", "900ms")
        .env("FLEXCLOUD_LISTEN_ADDRESS", "127.0.0.1:0")
        .env("FLEXCLOUD_LOG_FORMAT", "json")
        .env("FLEXCLOUD_LOG", "info");
    Running::spawn("exporter", &mut command, dir)
}

/// The address in the exporter's JSON log line `listening`.
fn exporter_address(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["message"] == "listening")
        .and_then(|event| event["address"].as_str()?.parse().ok())
}

/// The address in Prometheus's log line `msg="Listening on" address=...`, which names the
/// port it was given (an earlier line repeats the configured `127.0.0.1:0`).
fn prometheus_address(log: &str) -> Option<SocketAddr> {
    log.lines()
        .find(|line| line.contains(r#"msg="Listening on""#))
        .and_then(|line| line.split_once(" address=")?.1.split_whitespace().next())
        .and_then(|address| address.parse().ok())
}

/// Waits for `process` to log where it listens.
fn listening_address(process: &mut Running, find: fn(&str) -> Option<SocketAddr>) -> SocketAddr {
    let log = process.log.clone();
    let name = process.name;
    wait_for(
        &format!("{name} to log where it listens"),
        &mut [process],
        || find(&fs::read_to_string(&log).unwrap_or_default()).ok_or_else(|| "not yet".into()),
    )
}

/// The bundled rules with every `for` cut to 0s, so alerts fire on their first evaluation.
fn write_fast_rules(dir: &Path) -> PathBuf {
    let text = fs::read_to_string(repo(RULES)).unwrap_or_else(|e| panic!("{RULES}: {e}"));
    let mut shortened = 0;
    let fast: Vec<String> = text
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("for:") {
                shortened += 1;
                format!("{}for: 0s", &line[..line.len() - trimmed.len()])
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(shortened > 0, "no `for:` found in {RULES}");
    let path = dir.join("rules.yml");
    fs::write(&path, fast.join("\n")).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

fn start_prometheus(dir: &Path, exporter: SocketAddr) -> Running {
    let rules = write_fast_rules(dir);
    let config = dir.join("prometheus.yml");
    let text = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{exporter}']\n",
        rules = rules.display()
    );
    fs::write(&config, text).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let mut command = Command::new("prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        // Port 0: Prometheus says in its log which port it got.
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--log.level=info");
    Running::spawn("prometheus", &mut command, dir)
}

/// GET a Prometheus API path and return its `data`.
fn prometheus_api(addr: SocketAddr, target: &str) -> Result<Value, String> {
    let (status, body) = http_get(addr, target)?;
    let json: Value = serde_json::from_str(&body).map_err(|e| format!("{target}: {e}: {body}"))?;
    if status != 200 || json["status"] != "success" {
        return Err(format!("{target}: HTTP {status}: {body}"));
    }
    Ok(json["data"].clone())
}

fn instant_query(addr: SocketAddr, query: &str) -> Result<Vec<Value>, String> {
    let data = prometheus_api(
        addr,
        &format!("/api/v1/query?query={}", percent_encode(query)),
    )?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// Firing alerts named `name`, as their label maps.
fn firing(addr: SocketAddr, name: &str) -> Result<Vec<Value>, String> {
    let data = prometheus_api(addr, "/api/v1/alerts")?;
    Ok(data["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["state"] == "firing" && a["labels"]["alertname"] == name)
        .collect())
}

/// The firing alert `name` whose labels include every pair in `labels`.
fn firing_with(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Result<Value, String> {
    let alerts = firing(addr, name)?;
    alerts
        .iter()
        .find(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
        .cloned()
        .ok_or_else(|| {
            let seen: Vec<String> = alerts.iter().map(|a| a["labels"].to_string()).collect();
            format!("no firing {name} with {labels:?}; firing ones: {seen:?}")
        })
}

#[test]
#[ignore = "needs prometheus"]
fn dashboards_and_alerts_work_against_a_real_prometheus() {
    let dir = scratch_dir();
    let api = start_simulator();
    let mut exporter = start_exporter(&dir, api.sim.addr());
    let exporter_addr = listening_address(&mut exporter, exporter_address);
    wait_for(
        "the exporter to be ready",
        &mut [&mut exporter],
        || match http_get(exporter_addr, "/-/ready")? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("/-/ready answered {status}: {body}")),
        },
    );

    let mut prometheus = start_prometheus(&dir, exporter_addr);
    let prom = listening_address(&mut prometheus, prometheus_address);
    let mut all = [&mut exporter, &mut prometheus];
    wait_for("Prometheus to be ready", &mut all, || {
        match http_get(prom, "/-/ready")? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("/-/ready answered {status}: {body}")),
        }
    });
    wait_for("the exporter's scrape target to be up", &mut all, || {
        let up = instant_query(prom, &format!("up{{job=\"{JOB}\"}} == 1"))?;
        if up.is_empty() {
            Err("up is not 1 yet".into())
        } else {
            Ok(())
        }
    });

    // Every dashboard query returns data. Rates need two samples inside their window, so
    // a query may be empty for the first seconds; all of them must be answered in time.
    let queries: Vec<(String, String)> = dashboards::dashboard_files()
        .iter()
        .flat_map(|path| {
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            dashboards::dashboard_queries(path)
                .into_iter()
                .map(move |(place, q)| (format!("{file}: {place}"), q))
        })
        .collect();
    assert!(!queries.is_empty(), "no dashboard queries found");
    wait_for("every dashboard query to return data", &mut all, || {
        let mut empty = Vec::new();
        for (place, query) in &queries {
            if instant_query(prom, query)?.is_empty() {
                empty.push(format!("{place}: {query}"));
            }
        }
        if empty.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} queries return nothing:\n  {}",
                empty.len(),
                queries.len(),
                empty.join("\n  ")
            ))
        }
    });

    // The stuck image fires, named, once; the fresh SAVING image does not.
    let stuck = wait_for("FlexcloudImageStuckSaving for image 102", &mut all, || {
        firing_with(
            prom,
            "FlexcloudImageStuckSaving",
            &[
                ("job", JOB),
                ("severity", "warning"),
                ("account_id", "acme1234"),
                ("zone_id", "USOTE-2012-TAMPA"),
                ("image_id", "102"),
                ("image_name", "web-01-nightly"),
                ("image_type", "SERVER"),
            ],
        )
    });
    let summary = stuck["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("web-01-nightly")
            && summary.contains("acme1234")
            && summary.contains("USOTE-2012-TAMPA")
            && summary.contains("stuck in SAVING for 3h"),
        "summary should name image, account, zone and duration: {summary}"
    );
    let runbook_url = stuck["annotations"]["runbook_url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        runbook_url.starts_with("https://")
            && runbook_url.ends_with("/docs/runbook.md#flexcloudimagestucksaving"),
        "{runbook_url}"
    );
    let stuck_alerts = firing(prom, "FlexcloudImageStuckSaving").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stuck_alerts.len(),
        1,
        "only image 102 is stuck: {stuck_alerts:?}"
    );

    // Lookup failures: the unknown account, the forbidden one, the failing listings.
    wait_for("FlexcloudAccountNotFound for ghost0000", &mut all, || {
        firing_with(
            prom,
            "FlexcloudAccountNotFound",
            &[("account_id", "ghost0000"), ("severity", "warning")],
        )
    });
    wait_for("FlexcloudAccountForbidden for other3456", &mut all, || {
        firing_with(
            prom,
            "FlexcloudAccountForbidden",
            &[("account_id", "other3456"), ("severity", "warning")],
        )
    });
    let probe = wait_for("FlexcloudProbeFailing for flaky7890", &mut all, || {
        firing_with(
            prom,
            "FlexcloudProbeFailing",
            &[("account_id", "flaky7890"), ("zone_id", "AUS001")],
        )
    });
    assert_eq!(
        probe["value"].as_str().map(|v| v.trim_start_matches('+')),
        Some("5.03e+02"),
        "{probe}"
    );
    let summary = probe["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(summary.ends_with("failing: HTTP 503"), "{summary}");

    // Healthy parts stay quiet.
    for quiet in [
        "FlexcloudExporterDown",
        "FlexcloudExporterAbsent",
        "FlexcloudApiCredentialsRejected",
        "FlexcloudNoAccountsWatched",
        "FlexcloudConfigReloadFailed",
    ] {
        let alerts = firing(prom, quiet).unwrap_or_else(|e| panic!("{e}"));
        assert!(alerts.is_empty(), "{quiet} should not fire: {alerts:?}");
    }
    let acme_probe = firing(prom, "FlexcloudProbeFailing").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        acme_probe
            .iter()
            .all(|a| a["labels"]["account_id"] != "acme1234"),
        "acme1234 probes succeed: {acme_probe:?}"
    );

    // The password is rotated at the API: every request is now refused with 401.
    api.sim
        .update(|s| s.users[0].password = "rotated-elsewhere".into());
    // One alert per exporter: the back-off is the exporter's, not an account's.
    let instance = exporter_addr.to_string();
    let rejected = wait_for("FlexcloudApiCredentialsRejected", &mut all, || {
        firing_with(
            prom,
            "FlexcloudApiCredentialsRejected",
            &[
                ("job", JOB),
                ("instance", &instance),
                ("severity", "critical"),
            ],
        )
    });
    let summary = rejected["annotations"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.contains("401"), "{rejected}");

    // Stop everything before removing the directory Prometheus writes into.
    drop(prometheus);
    drop(exporter);
    drop(api);
    let _ = fs::remove_dir_all(&dir);
}
