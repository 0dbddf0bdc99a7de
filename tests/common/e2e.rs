//! Real processes for the end-to-end tests: the simulator, the exporter binary, Prometheus.
//!
//! Every listener binds port 0 and is found where it says it listens: the simulator's
//! through its handle, the exporter's from its JSON log line `listening`, Prometheus's and
//! Alertmanager's from `msg="Listening on" address=...`, which both write with the port
//! they got. Every process is killed when its handle drops.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use flexcloud_sim::{Scenario, Simulator};
use serde_json::Value;

pub const BINARY: &str = env!("CARGO_BIN_EXE_flexcloud-exporter");
pub const RULES: &str = "alerts/flexcloud-exporter.rules.yml";
/// The job name the rules assume for the exporter's own scrape job.
pub const JOB: &str = "flexcloud-exporter";

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A child process that is killed when the test ends, however it ends.
pub struct Running {
    pub name: &'static str,
    child: Child,
    pub log: PathBuf,
}

impl Running {
    pub fn spawn(name: &'static str, command: &mut Command, dir: &Path) -> Running {
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
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- last lines of {} ({}):\n{tail}",
            self.name,
            self.log.display()
        )
    }

    pub fn assert_alive(&mut self) {
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
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// A minimal HTTP/1.0 GET (no keep-alive, no chunking): status and body.
pub fn http_get(addr: SocketAddr, target: &str) -> Result<(u16, String), String> {
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

pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` until it returns Ok or `wait` passes; the panic carries the last error.
pub fn wait_for<T>(
    what: &str,
    wait: Duration,
    processes: &mut [&mut Running],
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + wait;
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
                "timed out after {wait:?} waiting for {what}: {last}\n{}",
                logs.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The simulator on a runtime of its own (the tests are synchronous), serving a scenario
/// on a port-0 loopback listener; stopped with its runtime when dropped.
pub struct Api {
    pub sim: Simulator,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.runtime.block_on(self.sim.stop());
    }
}

pub fn start_simulator(scenario: Scenario) -> Api {
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

/// The exporter binary against `api`, on a port-0 listener, logging JSON, with `settings`
/// on top of the environment's (whose own FLEXCLOUD_* settings are left out).
pub fn start_exporter(dir: &Path, api: SocketAddr, settings: &[(&str, &str)]) -> Running {
    let mut command = Command::new(BINARY);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLEXCLOUD_") {
            command.env_remove(key);
        }
    }
    command
        .env("FLEXCLOUD_API_URL", format!("http://{api}"))
        .env("FLEXCLOUD_LISTEN_ADDRESS", "127.0.0.1:0")
        .env("FLEXCLOUD_LOG_FORMAT", "json")
        .env("FLEXCLOUD_LOG", "info");
    for (key, value) in settings {
        command.env(key, value);
    }
    Running::spawn("exporter", &mut command, dir)
}

/// The address in the exporter's JSON log line `listening`.
pub fn exporter_address(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["message"] == "listening")
        .and_then(|event| event["address"].as_str()?.parse().ok())
}

/// The address in the log line `msg="Listening on" address=...` of Prometheus (2.42) or
/// Alertmanager (0.25), which names the port it was given (an earlier line repeats the
/// configured `127.0.0.1:0`).
pub fn toolkit_address(log: &str) -> Option<SocketAddr> {
    log.lines()
        .find(|line| line.contains(r#"msg="Listening on""#))
        .and_then(|line| line.split_once(" address=")?.1.split_whitespace().next())
        .and_then(|address| address.parse().ok())
}

/// Waits for `process` to log where it listens.
pub fn listening_address(
    process: &mut Running,
    find: fn(&str) -> Option<SocketAddr>,
) -> SocketAddr {
    let log = process.log.clone();
    let name = process.name;
    wait_for(
        &format!("{name} to log where it listens"),
        Duration::from_secs(60),
        &mut [process],
        || find(&fs::read_to_string(&log).unwrap_or_default()).ok_or_else(|| "not yet".into()),
    )
}

/// Waits until `GET /-/ready` at `addr` answers 200.
pub fn wait_ready(name: &str, addr: SocketAddr, processes: &mut [&mut Running]) {
    wait_for(
        &format!("{name} to be ready"),
        Duration::from_secs(60),
        processes,
        || match http_get(addr, "/-/ready")? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("/-/ready answered {status}: {body}")),
        },
    );
}

/// The bundled rules with every `for` cut to `hold` (0s: alerts fire on their first
/// evaluation), and each `(from, to)` of `replacements` replaced first (each must occur):
/// for thresholds that only the passing of real time can reach.
pub fn write_fast_rules(dir: &Path, hold: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = fs::read_to_string(repo(RULES)).unwrap_or_else(|e| panic!("{RULES}: {e}"));
    for (from, to) in replacements {
        assert!(text.contains(from), "{RULES} has no {from:?}");
        text = text.replace(from, to);
    }
    let mut shortened = 0;
    let fast: Vec<String> = text
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("for:") {
                shortened += 1;
                format!("{}for: {hold}", &line[..line.len() - trimmed.len()])
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

/// Prometheus scraping the exporter every second and evaluating the fast rules every
/// second; `alerting` is appended to its configuration as it is (empty for none).
pub fn start_prometheus(dir: &Path, exporter: SocketAddr, alerting: &str) -> Running {
    start_prometheus_with(dir, exporter, alerting, &[])
}

/// As [`start_prometheus`], with the rules changed by `replacements` (see
/// [`write_fast_rules`]).
pub fn start_prometheus_with(
    dir: &Path,
    exporter: SocketAddr,
    alerting: &str,
    replacements: &[(&str, &str)],
) -> Running {
    start_prometheus_jobs(dir, &[(JOB, vec![exporter])], alerting, "0s", replacements)
}

/// [`start_prometheus_with`] with scrape jobs of any name and number of targets, and every
/// `for` of the rules cut to `hold`.
pub fn start_prometheus_jobs(
    dir: &Path,
    jobs: &[(&str, Vec<SocketAddr>)],
    alerting: &str,
    hold: &str,
    replacements: &[(&str, &str)],
) -> Running {
    let rules = write_fast_rules(dir, hold, replacements);
    let config = dir.join("prometheus.yml");
    let scrape_configs: String = jobs
        .iter()
        .map(|(job, targets)| {
            let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            )
        })
        .collect();
    let text = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n{scrape_configs}\
         {alerting}",
        rules = rules.display()
    );
    fs::write(&config, text).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let mut command = Command::new("prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ))
        // Port 0: Prometheus says in its log which port it got.
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--log.level=info");
    Running::spawn("prometheus", &mut command, dir)
}

/// GET a Prometheus API path and return its `data`.
pub fn prometheus_api(addr: SocketAddr, target: &str) -> Result<Value, String> {
    let (status, body) = http_get(addr, target)?;
    let json: Value = serde_json::from_str(&body).map_err(|e| format!("{target}: {e}: {body}"))?;
    if status != 200 || json["status"] != "success" {
        return Err(format!("{target}: HTTP {status}: {body}"));
    }
    Ok(json["data"].clone())
}

pub fn instant_query(addr: SocketAddr, query: &str) -> Result<Vec<Value>, String> {
    let data = prometheus_api(
        addr,
        &format!("/api/v1/query?query={}", percent_encode(query)),
    )?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// Firing alerts named `name`, as Prometheus's API shows them.
pub fn firing(addr: SocketAddr, name: &str) -> Result<Vec<Value>, String> {
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
pub fn firing_with(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Result<Value, String> {
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
