//! Shared test helpers: exporter configs against a simulator, the binary as a child
//! process, addresses that stay ours, and an exposition parser.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

pub mod exposition;
pub mod promtool;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use flexcloud_exporter::config::Config;
use flexcloud_exporter::metrics::Published;
use flexcloud_exporter::{Exporter, Pipeline, Shutdown};
use flexcloud_sim::{Scenario, Simulator};
use tokio::sync::watch;

pub const USER: &str = "exporter";
pub const PASSWORD: &str = "pa55-W0rd-never-shown";

/// The exporter binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_flexcloud-exporter");

/// How long a condition that comes true in a moment may take before the test calls itself
/// hung. Only a hang reaches it: it bounds no speed.
pub const HANG: Duration = Duration::from_secs(60);

/// Polls `check` (every 20 ms) until it gives a value; panics naming `what` once [`HANG`]
/// has passed.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "still waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback address that refuses connections and stays ours: the socket is bound but
/// never listens, so no other process can take the port while a test points at it. Keep
/// the socket for as long as the address is in use.
pub fn refusing_address() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind a loopback port");
    let address = socket.local_addr().expect("bound address");
    (socket, address)
}

/// The environment of the binary against `api_url`: the test credentials, port 0 on
/// loopback and JSON logs (so [`Running::address`] can read the `listening` line), then
/// `extra`, which wins.
pub fn binary_env<'a>(api_url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("FLEXCLOUD_API_URL", api_url),
        ("FLEXCLOUD_USERNAME", USER),
        ("FLEXCLOUD_PASSWORD", PASSWORD),
        ("FLEXCLOUD_LISTEN_ADDRESS", "127.0.0.1:0"),
        ("FLEXCLOUD_LOG_FORMAT", "json"),
    ];
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend_from_slice(extra);
    env
}

/// The binary as a child process with `env` only, its stderr read line by line; killed
/// when dropped, however the test ends.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    pub fn start(env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for the first log line that `matches` and returns it; the lines before it
    /// stay in [`Running::log`].
    pub fn wait_for_line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.log.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + HANG;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no log line {what}; log so far:\n{}", self.log.join("\n"));
    }

    /// The address from the JSON log line `listening` (the binary binds port 0).
    pub fn address(&mut self) -> SocketAddr {
        let line = self.wait_for_line("`listening`", |line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|event| event["message"] == "listening")
        });
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        event["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line}"))
    }

    /// Every log line received so far.
    pub fn log(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log.join("\n")
    }
}

/// A folder of its own for one test's files, removed when the test ends.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flexcloud-test-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn symlink(&self, name: &str, target: &Path) -> PathBuf {
        let path = self.path(name);
        std::os::unix::fs::symlink(target, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config pointing at `url` with the test credentials and `extra` settings.
pub fn config(url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(String, String)> = vec![
        ("FLEXCLOUD_API_URL".into(), url.into()),
        ("FLEXCLOUD_USERNAME".into(), USER.into()),
        ("FLEXCLOUD_PASSWORD".into(), PASSWORD.into()),
    ];
    vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars).expect("test config is valid")
}

/// One cycle of an exporter built from `config`, and the metrics it published.
pub async fn one_cycle(config: Config) -> Metrics {
    let (_, exposition) = Exporter::new(config)
        .expect("exporter builds")
        .collect_once()
        .await;
    Metrics::parse(std::str::from_utf8(&exposition.plain_text()).expect("utf-8 exposition"))
}

/// A simulator and a collector against it, cycled by hand.
pub struct Harness {
    pub sim: Simulator,
    pipeline: Option<Pipeline>,
    pub published: watch::Receiver<Arc<Published>>,
    /// Stops what [`Harness::serve`] started.
    stop_server: Option<watch::Sender<bool>>,
}

impl Harness {
    pub async fn start(scenario: Scenario, extra: &[(&str, &str)]) -> Self {
        let sim = Simulator::start_local(scenario)
            .await
            .expect("simulator starts");
        let config = config(&sim.url(), extra);
        Self::with_config(sim, config).await
    }

    /// A harness for `config`, which should point at `sim`.
    pub async fn with_config(sim: Simulator, config: Config) -> Self {
        let pipeline = Exporter::new(config).expect("exporter builds").pipeline();
        Harness {
            sim,
            published: pipeline.subscribe(),
            pipeline: Some(pipeline),
            stop_server: None,
        }
    }

    /// The pipeline, for a test that runs cycles on a task of its own; [`Harness::cycle`]
    /// cannot be used after.
    pub fn take_pipeline(&mut self) -> Pipeline {
        self.pipeline.take().expect("the pipeline is still here")
    }

    /// Runs one cycle and returns what it found.
    pub async fn snapshot_cycle(&mut self) -> Arc<flexcloud_exporter::snapshot::Snapshot> {
        self.pipeline
            .as_mut()
            .expect("the pipeline was not taken")
            .run_cycle()
            .await
    }

    /// Runs one cycle and returns the metrics it published.
    pub async fn cycle(&mut self) -> Metrics {
        self.pipeline
            .as_mut()
            .expect("the pipeline was not taken")
            .run_cycle()
            .await;
        self.metrics()
    }

    pub fn metrics(&self) -> Metrics {
        let text = self.published.borrow().exposition.plain_text();
        Metrics::parse(std::str::from_utf8(&text).expect("utf-8 exposition"))
    }

    /// Serves what the collector publishes on a loopback port, as the exporter does;
    /// returns the base URL. [`Harness::stop`] stops it.
    pub async fn serve(&mut self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let state = flexcloud_exporter::server::ServerState {
            published: self.published.clone(),
            info: Arc::new(flexcloud_exporter::landing::PageInfo {
                version: "test",
                api_url: self.sim.url(),
                interval: std::time::Duration::from_secs(60),
                shard: None,
            }),
            endpoint: Arc::default(),
        };
        let router = flexcloud_exporter::server::router(state);
        let (trigger, shutdown) = Shutdown::new();
        self.stop_server = Some(trigger);
        tokio::spawn(flexcloud_exporter::server::serve(
            listener,
            router,
            None,
            flexcloud_exporter::server::Limits::default(),
            Arc::default(),
            shutdown.wait(),
        ));
        format!("http://{address}")
    }

    pub async fn stop(self) {
        if let Some(trigger) = &self.stop_server {
            let _ = trigger.send(true);
        }
        self.sim.stop().await;
    }
}

/// Scrapes `/metrics` from a served harness and parses it.
pub async fn scrape(base: &str) -> Metrics {
    let response = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    Metrics::parse(&response.text().await.expect("body"))
}

/// Samples of an exposition keyed by name and sorted labels, e.g.
/// `flexcloud_up` or `flexcloud_images{account_id="a",image_type="BASE",...}`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub samples: BTreeMap<String, f64>,
    /// The `# TYPE` families, in the order written.
    pub families: Vec<exposition::Family>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let parsed = exposition::parse(text);
        let samples = parsed
            .samples
            .iter()
            .map(|s| (key(&s.name, &s.labels), s.value))
            .collect();
        Metrics {
            samples,
            families: parsed.families,
            text: text.to_string(),
        }
    }

    /// The value of one series, labels in any order.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&key(name, &labels)).copied()
    }

    /// Like [`Metrics::get`] but panics with the exposition when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    /// Every series of a metric whose labels include `labels`.
    pub fn series(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
        let prefix = format!("{name}{{");
        self.samples
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) || k.as_str() == name)
            .filter(|(k, _)| {
                labels
                    .iter()
                    .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

fn key(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let mut sorted = labels.to_vec();
    sorted.sort();
    let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}
