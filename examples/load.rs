//! Load tool: the simulator with a generated fleet, the exporter binary against it; prints cycle, CPU, memory, scrape, fault and shutdown figures.
//!
//! ```text
//! cargo run --release --example load -- --accounts 500 --zones 4 --latency 50ms \
//!     --concurrency 64 --cycles 5 --scrapers 64 --seconds 10 [--soak 200] [--no-demo] \
//!     [--fault-cycles 120] [--no-faults]
//! cargo run --release --example load -- --tracker-memory --accounts 5000
//! ```
//!
//! `--tracker-memory` measures, in this process and without a server, what the lifecycle
//! tracker costs per image: the generated fleet's images fed to a tracker as the collector
//! feeds it (two cycles: the baseline and a steady one), with this process's RSS read
//! before and after.
//!
//! The figures of speed, load and memory live here rather than in the test suite, which
//! checks behaviour only: the fault phases measure what tests/faults.rs checks without a
//! clock (the body cap, scrapes during slow faulty cycles, many cycles with faults toggled,
//! SIGTERM during a stuck cycle).
//!
//! The simulator runs in this process, on a runtime of its own. The exporter (the binary of
//! the same profile, rebuilt first) and the static-buffer baseline (this tool again, with
//! `--static-server FILE`) run as child processes, so the exporter's CPU time and memory
//! are its own, read from `/proc/PID`, and neither server shares a runtime with the
//! scrapers. Everything listens on port 0 of 127.0.0.1 and says where in its log, every
//! phase is bounded in time, and
//! every child the tool started is killed before it exits (or when it panics). BENCHMARKS.md
//! describes the phases and the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/exposition.rs"]
mod exposition;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use flexcloud_sim::scenario::Latency;
use flexcloud_sim::{Fault, FaultAction, FleetSpec, Scenario, Simulator};

const USER: &str = "load";
const PASSWORD: &str = "load-password";

#[derive(Debug, Clone)]
struct Args {
    accounts: usize,
    zones: usize,
    images: usize,
    latency: Duration,
    concurrency: usize,
    cycles: u64,
    scrapers: usize,
    seconds: Duration,
    soak: u64,
    demo: bool,
    faults: bool,
    fault_cycles: u64,
    exporter: Option<PathBuf>,
    /// `--table`: fleet sizes for the scale table, instead of the phases.
    table: Vec<usize>,
    /// `--table-concurrency`: the concurrencies of each fleet size's rows.
    table_concurrency: Vec<usize>,
    /// Internal: serve this file as the static baseline (see [`serve_static`]).
    static_server: Option<PathBuf>,
    /// `--tracker-memory`: measure the lifecycle tracker's memory per image only.
    tracker_memory: bool,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        accounts: 500,
        zones: 4,
        images: 6,
        latency: Duration::from_millis(50),
        concurrency: 64,
        cycles: 5,
        scrapers: 64,
        seconds: Duration::from_secs(10),
        soak: 0,
        demo: true,
        faults: true,
        fault_cycles: 120,
        exporter: None,
        table: Vec::new(),
        table_concurrency: vec![64, 256],
        static_server: None,
        tracker_memory: false,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("accounts") => args.accounts = parser.value()?.parse()?,
            Long("zones") => args.zones = parser.value()?.parse()?,
            Long("images") => args.images = parser.value()?.parse()?,
            Long("latency") => {
                args.latency = humantime::parse_duration(&parser.value()?.string()?)
                    .map_err(|e| e.to_string())?
            }
            Long("concurrency") => args.concurrency = parser.value()?.parse()?,
            Long("cycles") => args.cycles = parser.value()?.parse::<u64>()?.max(1),
            Long("scrapers") => args.scrapers = parser.value()?.parse::<usize>()?.max(1),
            Long("seconds") => args.seconds = Duration::from_secs(parser.value()?.parse()?),
            Long("soak") => args.soak = parser.value()?.parse()?,
            Long("no-demo") => args.demo = false,
            Long("no-faults") => args.faults = false,
            Long("fault-cycles") => args.fault_cycles = parser.value()?.parse::<u64>()?.max(20),
            Long("exporter") => args.exporter = Some(parser.value()?.into()),
            Long("table") => args.table = list(&parser.value()?.string()?)?,
            Long("table-concurrency") => args.table_concurrency = list(&parser.value()?.string()?)?,
            Long("static-server") => args.static_server = Some(parser.value()?.into()),
            Long("tracker-memory") => args.tracker_memory = true,
            Long("help") => {
                println!(
                    "load [--accounts N] [--zones N] [--images N] [--latency 50ms] [--concurrency N] \
                     [--cycles N] [--scrapers N] [--seconds N] [--soak CYCLES] [--no-demo] \
                     [--fault-cycles N] [--no-faults] [--exporter PATH] \
                     [--table 100,500,2000,5000 [--table-concurrency 64,256]] [--tracker-memory]"
                );
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(args)
}

/// A comma-separated list of counts, none of them 0.
fn list(value: &str) -> Result<Vec<usize>, lexopt::Error> {
    let mut out = Vec::new();
    for item in value.split(',') {
        let n: usize = item.trim().parse().map_err(|e| format!("{item:?}: {e}"))?;
        if n == 0 {
            return Err(format!("{item:?}: must be at least 1").into());
        }
        out.push(n);
    }
    Ok(out)
}

/// The exporter binary next to this example (`target/<profile>/`), rebuilt by cargo
/// first so the figures are for the current source.
fn exporter_binary(args: &Args) -> PathBuf {
    if let Some(path) = &args.exporter {
        return path.clone();
    }
    let exe = std::env::current_exe().expect("own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("example runs from target/<profile>/examples");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    if !release {
        eprintln!("warning: not a release build; the figures mean little (use --release)");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "--bin",
        "flexcloud-exporter",
    ]);
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building the exporter failed");
    profile_dir.join("flexcloud-exporter")
}

/// A child process serving HTTP on a loopback port (the exporter, or the static baseline);
/// killed when dropped, so a panic cannot leave it behind.
struct ChildServer {
    child: Child,
    base: String,
    spawned: Instant,
    /// The `exposition encoded` lines of its log, when it logs them.
    encodes: Arc<Mutex<Vec<EncodeEvent>>>,
}

/// One `exposition encoded` line of the exporter's log (logged at debug under the target
/// `flexcloud_exporter::exposition`).
#[derive(Debug, Clone, Copy)]
struct EncodeEvent {
    cycle: u64,
    cycle_seconds: f64,
    series: u64,
    bytes: u64,
    gzip_bytes: u64,
    seconds: f64,
}

impl ChildServer {
    /// Starts `binary` on port 0 and waits for its JSON log line `listening`, which names
    /// the port it got (no port is picked in advance, so none can be taken meanwhile).
    fn spawn(binary: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FLEXCLOUD_LISTEN_ADDRESS", "127.0.0.1:0")
            .env("FLEXCLOUD_LOG", "info")
            .env("FLEXCLOUD_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Allocator settings (glibc's MALLOC_ARENA_MAX and the like) pass through, so their
        // effect on the footprint can be tried without a rebuild.
        for (key, value) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MALLOC_") {
                command.env(key, value);
            }
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let spawned = Instant::now();
        let mut child = command.spawn().expect("server starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (address, listening) = std::sync::mpsc::channel();
        let encodes = Arc::new(Mutex::new(Vec::new()));
        let log_encodes = encodes.clone();
        std::thread::spawn(move || forward_log(stderr, address, &log_encodes));
        // Owned before anything can panic, so the child is killed whatever happens.
        let mut server = ChildServer {
            child,
            base: String::new(),
            spawned,
            encodes,
        };
        let address = listening
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{} logged no listening address in 30 s", binary.display()));
        server.base = format!("http://{address}");
        server
    }

    fn process(&self) -> procfs::process::Process {
        procfs::process::Process::new(self.child.id() as i32).expect("exporter is running")
    }

    /// User plus system CPU time so far.
    fn cpu(&self) -> Duration {
        let stat = self.process().stat().expect("/proc/PID/stat");
        Duration::from_secs_f64(
            (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64,
        )
    }

    /// Resident and peak resident memory, in bytes.
    fn memory(&self) -> (u64, u64) {
        let status = self.process().status().expect("/proc/PID/status");
        (
            status.vmrss.unwrap_or(0) * 1024,
            status.vmhwm.unwrap_or(0) * 1024,
        )
    }

    /// Time from spawn until `/-/healthy` answered 200, polled every millisecond.
    async fn wait_healthy(&self, client: &reqwest::Client) -> Duration {
        let url = format!("{}/-/healthy", self.base);
        let deadline = self.spawned + Duration::from_secs(10);
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    return self.spawned.elapsed();
                }
            }
            assert!(Instant::now() < deadline, "exporter not healthy within 10s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn wait_ready(&self, client: &reqwest::Client, limit: Duration) {
        let url = format!("{}/-/ready", self.base);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no cycle finished within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metrics(&self, client: &reqwest::Client) -> (Exposition, Bytes) {
        let body = client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("scrape")
            .bytes()
            .await
            .expect("scrape body");
        (Exposition::parse(&body), body)
    }
}

/// Reads a child's JSON log: sends the address of its `listening` line, keeps its
/// `exposition encoded` lines, and passes on what is not routine (errors, and anything that
/// is not a JSON line, such as a panic).
fn forward_log(
    stderr: std::process::ChildStderr,
    address: std::sync::mpsc::Sender<String>,
    encodes: &Mutex<Vec<EncodeEvent>>,
) {
    use std::io::BufRead;
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
    {
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(event) if event["message"] == "listening" => {
                if let Some(at) = event["address"].as_str() {
                    let _ = address.send(at.to_string());
                }
            }
            Ok(event) if event["message"] == "exposition encoded" => {
                let number = |name: &str| event[name].as_f64().unwrap_or(0.0);
                encodes.lock().unwrap().push(EncodeEvent {
                    cycle: number("cycle") as u64,
                    cycle_seconds: number("cycle_seconds"),
                    series: number("series") as u64,
                    bytes: number("bytes") as u64,
                    gzip_bytes: number("gzip_bytes") as u64,
                    seconds: number("encode_seconds"),
                });
            }
            Ok(event) if event["level"] != "ERROR" => {}
            _ => eprintln!("  child: {line}"),
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The few samples the tool reads from an exposition.
#[derive(Debug, Default, Clone, Copy)]
struct Exposition {
    cycles: u64,
    duration: f64,
    requests: f64,
    account_requests: f64,
    /// Sum and count of the exporter's request-duration histogram (time on the wire,
    /// after a concurrency slot was free).
    latency_sum: f64,
    latency_count: f64,
    up: f64,
    /// Requests counted `invalid_response` (a body over the cap among them).
    invalid: f64,
}

impl Exposition {
    fn parse(body: &[u8]) -> Self {
        let text = std::str::from_utf8(body).expect("utf-8 exposition");
        let mut e = Exposition::default();
        let label = |s: &exposition::Sample, name: &str, value: &str| {
            s.labels.iter().any(|(l, v)| l == name && v == value)
        };
        for s in exposition::parse(text).samples {
            match s.name.as_str() {
                "flexcloud_collection_cycles_total" => e.cycles = s.value as u64,
                "flexcloud_collection_duration_seconds" => e.duration = s.value,
                "flexcloud_up" => e.up = s.value,
                "flexcloud_api_request_duration_seconds_sum" => e.latency_sum += s.value,
                "flexcloud_api_request_duration_seconds_count" => e.latency_count += s.value,
                "flexcloud_api_requests_total" => {
                    e.requests += s.value;
                    if label(&s, "code", "invalid_response") {
                        e.invalid += s.value;
                    }
                    if label(&s, "endpoint", "accounts") {
                        e.account_requests += s.value;
                    }
                }
                _ => {}
            }
        }
        e
    }
}

/// One observed end of a cycle.
#[derive(Debug, Clone, Copy)]
struct CycleEnd {
    exposition: Exposition,
    /// The exporter's CPU time, and this process's (the simulator's and the polling's).
    cpu: Duration,
    tool_cpu: Duration,
    rss: u64,
    /// `/metrics` reads made so far, each of which cost the exporter some CPU too.
    polls: u32,
}

fn own_cpu() -> Duration {
    let stat = procfs::process::Process::myself()
        .and_then(|me| me.stat())
        .expect("/proc/self/stat");
    Duration::from_secs_f64((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// Polls `/metrics` every `poll` until `until` cycles have finished (or `limit` passes);
/// returns each cycle end it saw.
async fn watch_cycles(
    exporter: &ChildServer,
    client: &reqwest::Client,
    poll: Duration,
    until: u64,
    limit: Duration,
) -> Vec<CycleEnd> {
    let deadline = Instant::now() + limit;
    let mut seen: Vec<CycleEnd> = Vec::new();
    let mut polls = 0;
    while Instant::now() < deadline {
        let (exposition, _) = exporter.metrics(client).await;
        polls += 1;
        if exposition.cycles > seen.last().map_or(0, |c| c.exposition.cycles) {
            seen.push(CycleEnd {
                exposition,
                cpu: exporter.cpu(),
                tool_cpu: own_cpu(),
                rss: exporter.memory().0,
                polls,
            });
            if exposition.cycles >= until {
                break;
            }
        }
        tokio::time::sleep(poll).await;
    }
    seen
}

#[derive(Debug, Clone, Copy)]
struct ScrapeStats {
    requests: usize,
    /// Answers that were not a 200 with a whole body.
    errors: usize,
    bytes: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    slowest: Duration,
}

impl ScrapeStats {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn line(&self) -> String {
        format!(
            "{:>8.1} req/s {:>8.1} MB/s   p50 {:>7.2} ms   p99 {:>7.2} ms   slowest {:.2} ms   ({} requests, {} errors)",
            self.per_second(),
            self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6,
            ms(self.p50),
            ms(self.p99),
            ms(self.slowest),
            self.requests,
            self.errors,
        )
    }
}

/// `scrapers` clients GET `url` back to back for `duration` (after a one-second warm-up
/// that opens the connections), reading each body as it streams in; an answer that is not
/// a 200 with a whole body counts as an error.
/// With `gzip`, each asks for a compressed body as Prometheus does and reads it as it
/// arrives, without decoding it: the figures are the server's and the wire's.
async fn scrape_load(url: &str, scrapers: usize, duration: Duration, gzip: bool) -> ScrapeStats {
    let mut headers = reqwest::header::HeaderMap::new();
    if gzip {
        headers.insert(
            reqwest::header::ACCEPT_ENCODING,
            reqwest::header::HeaderValue::from_static("gzip"),
        );
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .default_headers(headers)
        .pool_max_idle_per_host(scrapers)
        .build()
        .unwrap();
    let _ = run_scrapers(&client, url, scrapers, Duration::from_secs(1)).await;
    run_scrapers(&client, url, scrapers, duration).await
}

async fn run_scrapers(
    client: &reqwest::Client,
    url: &str,
    scrapers: usize,
    duration: Duration,
) -> ScrapeStats {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..scrapers {
        let client = client.clone();
        let url = url.to_string();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut bytes = 0u64;
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match scrape_once(&client, &url).await {
                    Some(n) => {
                        bytes += n;
                        latencies.push(t.elapsed());
                    }
                    None => errors += 1,
                }
            }
            (latencies, bytes, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut bytes = 0;
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (l, b, e) = joined.expect("scraper task");
        latencies.extend(l);
        bytes += b;
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    ScrapeStats {
        requests: latencies.len(),
        errors,
        bytes,
        elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        slowest: latencies.last().copied().unwrap_or_default(),
    }
}

/// One GET read to its end: the body's length, or `None` for anything but a whole 200.
async fn scrape_once(client: &reqwest::Client, url: &str) -> Option<u64> {
    let mut response = client.get(url).send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    let mut bytes = 0;
    while let Some(chunk) = response.chunk().await.ok()? {
        bytes += chunk.len() as u64;
    }
    Some(bytes)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// The baseline: a server that answers `/metrics` with the same bytes every time, the
/// upper bound for serving a pre-encoded body. It runs as a child process (this tool
/// again, with `--static-server FILE`) so that, like the exporter, it does not share a
/// process and a runtime with the scrapers.
async fn serve_static(file: &Path) {
    use axum::http::header::CONTENT_TYPE;
    let body = Bytes::from(std::fs::read(file).expect("baseline body"));
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
        .route("/-/healthy", axum::routing::get(|| async { "OK\n" }));
    let address = std::env::var("FLEXCLOUD_LISTEN_ADDRESS").expect("listen address");
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    // The line the exporter writes, so that one reader finds both servers' ports.
    let event = serde_json::json!({
        "message": "listening",
        "address": listener.local_addr().unwrap().to_string(),
    });
    eprintln!("{event}");
    axum::serve(listener, app).await.unwrap();
}

async fn static_baseline(
    body: &Bytes,
    client: &reqwest::Client,
    scrapers: usize,
    duration: Duration,
) -> ScrapeStats {
    let file = std::env::temp_dir().join(format!("flexcloud-load-body-{}", std::process::id()));
    std::fs::write(&file, body).unwrap();
    let own = std::env::current_exe().unwrap();
    let server = ChildServer::spawn(&own, &["--static-server", file.to_str().unwrap()], &[]);
    server.wait_healthy(client).await;
    let stats = scrape_load(
        &format!("{}/metrics", server.base),
        scrapers,
        duration,
        false,
    )
    .await;
    drop(server);
    let _ = std::fs::remove_file(&file);
    stats
}

/// An interval (and so a cycle deadline) that a cycle of `seconds` fits in with room to
/// spare, in FLEXCLOUD_INTERVAL's syntax.
fn interval_for(seconds: f64) -> String {
    format!("{}ms", (seconds * 1300.0) as u64 + 1000)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// What every phase found, printed at the end, ratios first.
#[derive(Debug, Default)]
struct Report {
    lines: Vec<(String, String)>,
    ratios: Vec<(String, String)>,
}

impl Report {
    fn ratio(&mut self, name: &str, value: f64, target: &str) {
        self.ratios
            .push((name.into(), format!("{value:>7.3}   {target}")));
    }

    fn line(&mut self, name: &str, value: String) {
        eprintln!("  {name}: {value}");
        self.lines.push((name.into(), value));
    }
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("load: {e} (see --help)");
            std::process::exit(2);
        }
    };
    if let Some(file) = &args.static_server {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(serve_static(file));
        return;
    }
    if args.tracker_memory {
        tracker_memory(&args);
        return;
    }
    let binary = exporter_binary(&args);
    let scenario = generated(&args, args.accounts);
    // The simulator gets a runtime of its own, so the tool's work (reading and parsing
    // expositions, the scrapers) never holds up its timers and answers.
    let api_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("simulator")
        .enable_all()
        .build()
        .unwrap();
    if !args.table.is_empty() {
        let tool_runtime = tokio::runtime::Runtime::new().unwrap();
        tool_runtime.block_on(scale_table(&args, &binary, api_runtime.handle()));
        return;
    }
    let sim = api_runtime
        .block_on(Simulator::start_local(scenario))
        .expect("simulator");
    // The fault phases' small fleet, changed between phases through its handle.
    let faulty = api_runtime
        .block_on(Simulator::start_local(fault_fleet()))
        .expect("simulator");
    let tool_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();
    tool_runtime.block_on(measure(&args, &binary, &sim, &faulty));
    api_runtime.block_on(sim.stop());
    api_runtime.block_on(faulty.stop());
}

/// The generated fleet of `accounts` accounts with the tool's zones, images and latency.
fn generated(args: &Args, accounts: usize) -> Scenario {
    Scenario {
        latency: Latency {
            fixed: args.latency,
            jitter: Duration::ZERO,
        },
        generate: Some(FleetSpec {
            seed: 20_261_129,
            accounts,
            zones_per_account: args.zones,
            images_per_zone: args.images,
            saving_share: 0.02,
            user: USER.into(),
            password: PASSWORD.into(),
        }),
        ..Default::default()
    }
}

async fn measure(args: &Args, binary: &Path, sim: &Simulator, faulty: &Simulator) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut report = Report::default();
    let env = |interval: &str| {
        vec![
            ("FLEXCLOUD_API_URL", sim.url()),
            ("FLEXCLOUD_USERNAME", USER.to_string()),
            ("FLEXCLOUD_PASSWORD", PASSWORD.to_string()),
            ("FLEXCLOUD_CONCURRENCY", args.concurrency.to_string()),
            ("FLEXCLOUD_INTERVAL", interval.to_string()),
        ]
    };
    let header = format!(
        "{} accounts x {} zones x {} images, API latency {:?}, concurrency {}, {} scrapers for {:?}, {} cores",
        args.accounts,
        args.zones,
        args.images,
        args.latency,
        args.concurrency,
        args.scrapers,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let header = format!(
        "{header}; load average before the run {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("load: {header}");
    let cycle_limit = Duration::from_secs(600);

    // Phase 1: an exporter that runs one cycle and then idles (interval 1h).
    eprintln!("phase 1: start, first cycle, idle scrapes, static baseline");
    let idle = ChildServer::spawn(binary, &[], &env("1h"));
    let healthy = idle.wait_healthy(&client).await;
    report.line("start to /-/healthy", format!("{:.1} ms", ms(healthy)));
    idle.wait_ready(&client, cycle_limit).await;
    let (first, body) = idle.metrics(&client).await;
    assert_eq!(first.up, 1.0, "the first cycle reached the API");
    report.line(
        "first (cold) cycle",
        format!(
            "{:.3} s, {} requests, /metrics body {:.2} MB",
            first.duration,
            first.requests,
            mb(body.len() as u64)
        ),
    );
    let (rss_after_first, _) = idle.memory();
    // What one read of /metrics costs the exporter, to take the polling out of the CPU
    // time per cycle below.
    let polls_for_cost = 40;
    let before = idle.cpu();
    for _ in 0..polls_for_cost {
        let _ = idle.metrics(&client).await;
    }
    let poll_cost = (idle.cpu() - before) / polls_for_cost;
    report.line(
        "exporter CPU per /metrics read",
        format!("{:.2} ms", ms(poll_cost)),
    );
    let idle_stats = scrape_load(
        &format!("{}/metrics", idle.base),
        args.scrapers,
        args.seconds,
        false,
    )
    .await;
    report.line("scrapes, exporter idle", idle_stats.line());
    let (rss_after_scrapes, peak_idle) = idle.memory();
    report.line(
        "RSS, exporter idle",
        format!(
            "{:.1} MB after the first cycle, {:.1} MB after the scrapes, peak {:.1} MB",
            mb(rss_after_first),
            mb(rss_after_scrapes),
            mb(peak_idle)
        ),
    );
    drop(idle);
    let baseline = static_baseline(&body, &client, args.scrapers, args.seconds).await;
    report.line("scrapes, static buffer (own process)", baseline.line());

    // Phase 2: cycles back to back (interval shorter than a cycle), then scrapes while
    // they keep running against the slow API.
    eprintln!(
        "phase 2: {} cycles back to back, then scrapes during cycles",
        args.cycles
    );
    // A cycle ends at FLEXCLOUD_CYCLE_TIMEOUT (the interval) whatever is left: the interval
    // leaves room for a whole cycle, so that one starts about as soon as the last ended.
    let busy = ChildServer::spawn(binary, &[], &env(&interval_for(first.duration)));
    busy.wait_healthy(&client).await;
    // Often enough to see every cycle end, rarely enough to cost the exporter little.
    let poll = Duration::from_secs_f64(first.duration / 5.0)
        .clamp(Duration::from_millis(20), Duration::from_millis(500));
    let ends = watch_cycles(&busy, &client, poll, args.cycles + 1, cycle_limit).await;
    let (rss_steady, peak_cycles) = busy.memory();
    let mut durations = Vec::new();
    let mut per_cycle_requests = Vec::new();
    let mut account_requests = Vec::new();
    let mut wire_latency = Vec::new();
    for pair in ends.windows(2) {
        let (a, b) = (pair[0].exposition, pair[1].exposition);
        if b.cycles == a.cycles + 1 {
            durations.push(b.duration);
            per_cycle_requests.push(b.requests - a.requests);
            account_requests.push(b.account_requests - a.account_requests);
            wire_latency.push(
                (b.latency_sum - a.latency_sum) / (b.latency_count - a.latency_count).max(1.0),
            );
        }
    }
    assert!(
        !durations.is_empty(),
        "no two consecutive cycle ends seen; cycles are too short to measure"
    );
    let wire = median(&mut wire_latency);
    let measured = median(&mut durations.clone());
    let requests = median(&mut per_cycle_requests);
    let discovery = median(&mut account_requests);
    let latency = args.latency.as_secs_f64();
    let ideal = requests / args.concurrency as f64 * latency;
    // Account pages come one after the other (each names the next), so they are a
    // sequential path no concurrency removes.
    // After the pages, a zone list and then an image list: at least two more rounds.
    let rounds_after = ((requests - discovery) / args.concurrency as f64).max(2.0);
    let floor = (discovery + rounds_after) * latency;
    // The same at the latency the exporter saw per request (the simulator's sleep plus
    // timer granularity, handling and loopback), not the nominal one.
    let ideal_wire = requests / args.concurrency as f64 * wire;
    let floor_wire = (discovery + rounds_after) * wire;
    let (first_end, last_end) = (ends.first().unwrap(), ends.last().unwrap());
    let counted = last_end.exposition.cycles - first_end.exposition.cycles;
    let counted = counted.max(1) as f64;
    let raw_cpu = (last_end.cpu - first_end.cpu).as_secs_f64() / counted;
    let polling = (last_end.polls - first_end.polls) as f64 * poll_cost.as_secs_f64() / counted;
    let cpu_per_cycle = raw_cpu - polling;
    let tool_cpu = (last_end.tool_cpu - first_end.tool_cpu).as_secs_f64() / counted;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    report.line(
        "warm cycles measured",
        format!(
            "{} (durations {:?} s)",
            durations.len(),
            durations
                .iter()
                .map(|d| (d * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        ),
    );
    report.line(
        "requests per cycle",
        format!("{requests} ({discovery} of them account-list pages and redirects)"),
    );
    report.line(
        "cycle time",
        format!(
            "measured {measured:.3} s (median), ideal {ideal:.3} s = {requests} / {} x {:?}, floor with sequential account pages {floor:.3} s",
            args.concurrency, args.latency
        ),
    );
    report.line(
        "API latency seen by the exporter",
        format!(
            "{:.2} ms per request (nominal {:?}); ideal at that latency {ideal_wire:.3} s, floor with sequential account pages {floor_wire:.3} s",
            wire * 1000.0,
            args.latency
        ),
    );
    report.line(
        "exporter CPU per cycle",
        format!(
            "{:.1} ms ({:.1} us per request; {:.1} ms measured less {:.1} ms for the tool's /metrics polls)",
            cpu_per_cycle * 1000.0,
            cpu_per_cycle * 1e6 / requests.max(1.0),
            raw_cpu * 1000.0,
            polling * 1000.0,
        ),
    );
    report.line(
        "simulator + tool CPU per cycle",
        format!(
            "{:.1} ms; both processes kept {:.0}% of {cores} cores busy",
            tool_cpu * 1000.0,
            100.0 * (raw_cpu + tool_cpu) / (cores * measured)
        ),
    );
    let rss_series: Vec<f64> = ends
        .iter()
        .map(|e| (mb(e.rss) * 10.0).round() / 10.0)
        .collect();
    report.line(
        "RSS, cycles running",
        format!(
            "steady {:.1} MB, peak (VmHWM) {:.1} MB; at each cycle end {:?} MB",
            mb(rss_steady),
            mb(peak_cycles),
            rss_series
        ),
    );
    let cycles_before = busy.metrics(&client).await.0.cycles;
    let busy_stats = scrape_load(
        &format!("{}/metrics", busy.base),
        args.scrapers,
        args.seconds,
        false,
    )
    .await;
    let (during, _) = busy.metrics(&client).await;
    report.line("scrapes, cycles running", busy_stats.line());
    report.line(
        "cycles during those scrapes",
        format!(
            "{} (latest took {:.3} s)",
            during.cycles - cycles_before,
            during.duration
        ),
    );
    let (_, peak_busy) = busy.memory();
    drop(busy);

    report.ratio("cycle time / ideal", measured / ideal, "target <= 1.10");
    report.ratio(
        "cycle time / ideal at the latency the exporter saw",
        measured / ideal_wire,
        "",
    );
    report.ratio(
        "cycle time / floor with sequential account pages",
        measured / floor,
        "",
    );
    report.ratio(
        "cycle time / that floor at the latency the exporter saw",
        measured / floor_wire,
        "(1.0 = every slot busy)",
    );
    report.ratio(
        "scrape throughput / static buffer (idle)",
        idle_stats.per_second() / baseline.per_second(),
        "target >= 0.80",
    );
    report.ratio(
        "scrape throughput / static buffer (cycles running)",
        busy_stats.per_second() / baseline.per_second(),
        "",
    );
    report.ratio(
        "scrape p99, cycles running / idle",
        busy_stats.p99.as_secs_f64() / idle_stats.p99.as_secs_f64(),
        "target ~1.0",
    );
    report.ratio(
        "peak RSS / 64 MB (large-fleet target)",
        mb(peak_cycles.max(peak_busy).max(peak_idle)) / 64.0,
        "target <= 1.0",
    );
    report.ratio(
        "start to /-/healthy / 50 ms",
        ms(healthy) / 50.0,
        "target < 1.0",
    );

    // Phase 3: demo mode's footprint.
    if args.demo {
        eprintln!("phase 3: demo mode");
        let demo = ChildServer::spawn(binary, &["--demo"], &[]);
        let healthy = demo.wait_healthy(&client).await;
        demo.wait_ready(&client, Duration::from_secs(60)).await;
        for _ in 0..200 {
            let _ = demo.metrics(&client).await;
        }
        let (rss, peak) = demo.memory();
        report.line(
            "demo mode",
            format!(
                "start to /-/healthy {:.1} ms; RSS after a cycle and 200 scrapes {:.1} MB, peak {:.1} MB",
                ms(healthy),
                mb(rss),
                mb(peak)
            ),
        );
        report.ratio("peak RSS demo / 20 MB", mb(peak) / 20.0, "target <= 1.0");
    }

    // Phase 4: memory over many cycles, with no latency so they come fast.
    if args.soak > 0 {
        eprintln!("phase 4: soak, {} cycles at no latency", args.soak);
        sim.update(|s| s.latency = Latency::default());
        let soak = ChildServer::spawn(binary, &[], &env("1s"));
        soak.wait_healthy(&client).await;
        let limit = Duration::from_secs(30 + 2 * args.soak.max(1));
        let started = Instant::now();
        let ends = watch_cycles(&soak, &client, Duration::from_millis(500), args.soak, limit).await;
        let elapsed = started.elapsed();
        let (_, peak) = soak.memory();
        drop(soak);
        let window = |from: u64, to: u64| {
            ends.iter()
                .filter(|e| (from..to).contains(&e.exposition.cycles))
                .map(|e| e.rss)
                .max()
                .unwrap_or(0)
        };
        let last = ends.last().map_or(0, |e| e.exposition.cycles);
        let early = window(10, 30);
        let late = window(last.saturating_sub(20), last + 1);
        let growth = late as f64 / early.max(1) as f64 - 1.0;
        let rss: Vec<f64> = ends
            .iter()
            .step_by((ends.len() / 10).max(1))
            .map(|e| (mb(e.rss) * 10.0).round() / 10.0)
            .collect();
        report.line(
            "soak",
            format!(
                "{last} cycles in {:.0} s; max RSS cycles 10-29 {:.2} MB, last 20 cycles {:.2} MB, peak {:.1} MB; samples {rss:?} MB",
                elapsed.as_secs_f64(),
                mb(early),
                mb(late),
                mb(peak)
            ),
        );
        report.ratio(
            "RSS growth over the soak (last 20 cycles / cycles 10-29 - 1)",
            growth,
            "target < 0.02",
        );
    }
    if args.faults {
        measure_faults(args, binary, faulty, &client, &mut report).await;
    }
    println!("flexcloud-exporter load: {header}");
    println!("\nratios");
    for (name, value) in &report.ratios {
        println!("  {name:<62} {value}");
    }
    println!("\nfigures");
    for (name, value) in &report.lines {
        println!("  {name:<34} {value}");
    }
}

/// The fault phases' fleet, as tests/faults.rs has it: two accounts of one zone each.
fn fault_fleet() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &["acme", "globex"])
        .account("acme", &["TAMPA"])
        .account("globex", &["TAMPA"])
        .image("acme", "1", "ACTIVE", "BASE", &["TAMPA"])
        .image("acme", "2", "SAVING", "SERVER", &["TAMPA"])
        .image("globex", "3", "ACTIVE", "SERVER", &["TAMPA"])
}

const ACME_IMAGES: &str = "/accounts/acme/flexcloud/images/detail";

fn status_fault(path: &str, status: u16, retry_after: Option<&str>) -> Fault {
    Fault::on(
        path,
        FaultAction::Status {
            status,
            body: None,
            retry_after: retry_after.map(String::from),
        },
    )
}

fn delay_fault(path: &str, delay: Duration) -> Fault {
    Fault::on(path, FaultAction::Delay { delay })
}

/// Phase 5: the figures the fault tests leave out.
async fn measure_faults(
    args: &Args,
    binary: &Path,
    faulty: &Simulator,
    client: &reqwest::Client,
    report: &mut Report,
) {
    let env = |extra: &[(&'static str, &str)]| {
        let mut env = vec![
            ("FLEXCLOUD_API_URL", faulty.url()),
            ("FLEXCLOUD_USERNAME", USER.to_string()),
            ("FLEXCLOUD_PASSWORD", PASSWORD.to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        env
    };
    let limit = Duration::from_secs(120);

    // 5a: bodies of 256 MiB against a 1 MiB cap, and the same exporter without them.
    eprintln!("phase 5a: oversized bodies against the body cap");
    let capped_env = env(&[
        ("FLEXCLOUD_INTERVAL", "1s"),
        ("FLEXCLOUD_MAX_BODY_BYTES", "1048576"),
    ]);
    faulty.set_scenario(fault_fleet()).expect("fault fleet");
    let plain = ChildServer::spawn(binary, &[], &capped_env);
    plain.wait_healthy(client).await;
    watch_cycles(&plain, client, Duration::from_millis(50), 10, limit).await;
    let (_, peak_plain) = plain.memory();
    drop(plain);
    let oversized = fault_fleet().fault(Fault::on(
        ACME_IMAGES,
        FaultAction::Oversized {
            bytes: 256 * 1024 * 1024,
        },
    ));
    faulty.set_scenario(oversized).expect("fault fleet");
    let capped = ChildServer::spawn(binary, &[], &capped_env);
    capped.wait_healthy(client).await;
    let ends = watch_cycles(&capped, client, Duration::from_millis(50), 10, limit).await;
    let (_, peak_capped) = capped.memory();
    drop(capped);
    let last = ends.last().map(|e| e.exposition).unwrap_or_default();
    assert!(last.invalid >= 2.0, "no oversized body was cut off");
    report.line(
        "peak RSS, 256 MiB bodies, 1 MiB cap",
        format!(
            "{:.1} MB after {} cycles and {} bodies cut at the cap; {:.1} MB with the same settings and no oversized body",
            mb(peak_capped),
            last.cycles,
            last.invalid,
            mb(peak_plain)
        ),
    );
    report.ratio(
        "peak RSS with 256 MiB bodies at a 1 MiB cap / 64 MB",
        mb(peak_capped) / 64.0,
        "target <= 1.0",
    );
    report.ratio(
        "peak RSS with those bodies / without them",
        peak_capped as f64 / peak_plain.max(1) as f64,
        "",
    );

    // 5b: scrapes while every cycle waits on a slow API that fails in three ways.
    eprintln!("phase 5b: scrapes while cycles hit a slow faulty API");
    let slow = fault_fleet()
        .latency(Duration::from_millis(100), Duration::from_millis(100))
        .fault(status_fault("/accounts/globex/*", 503, Some("0")))
        .fault(delay_fault(ACME_IMAGES, Duration::from_secs(2)).with_query("type=SERVER"));
    faulty.set_scenario(slow).expect("fault fleet");
    let exporter = ChildServer::spawn(
        binary,
        &[],
        &env(&[
            ("FLEXCLOUD_INTERVAL", "1100ms"),
            ("FLEXCLOUD_TIMEOUT", "1s"),
        ]),
    );
    exporter.wait_healthy(client).await;
    exporter.wait_ready(client, limit).await;
    let before = exporter.metrics(client).await.0;
    let stats = scrape_load(
        &format!("{}/metrics", exporter.base),
        args.scrapers,
        args.seconds,
        false,
    )
    .await;
    let after = exporter.metrics(client).await.0;
    drop(exporter);
    report.line("scrapes, slow faulty API", stats.line());
    report.line(
        "cycles during those scrapes",
        format!(
            "{} (API latency 100-200 ms, globex 503, one request per cycle past the 1 s timeout; latest cycle {:.3} s)",
            after.cycles - before.cycles,
            after.duration
        ),
    );
    report.ratio(
        "scrape errors while cycles hit a slow faulty API",
        stats.errors as f64,
        "target 0",
    );

    // 5c: many short cycles with a different fault every few of them.
    eprintln!("phase 5c: {} cycles with faults toggled", args.fault_cycles);
    faulty.set_scenario(fault_fleet()).expect("fault fleet");
    let soak = ChildServer::spawn(binary, &[], &env(&[("FLEXCLOUD_INTERVAL", "1s")]));
    soak.wait_healthy(client).await;
    let warm_at = (args.fault_cycles / 4).clamp(10, 100);
    let deadline = Instant::now() + Duration::from_secs(20 + 2 * args.fault_cycles);
    let started = Instant::now();
    let (mut toggles, mut warm, mut done) = (0u32, None, 0);
    while done < args.fault_cycles {
        assert!(
            Instant::now() < deadline,
            "only {done} cycles by the deadline"
        );
        faulty.clear_faults();
        faulty.clear_requests();
        match toggles % 4 {
            0 => faulty.add_fault(status_fault("/accounts/acme/*", 500, None)),
            1 => faulty.add_fault(Fault::on("/accounts/globex/*", FaultAction::MalformedJson)),
            2 => faulty.add_fault(status_fault("/accounts", 503, Some("0"))),
            _ => {}
        }
        toggles += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
        done = soak.metrics(client).await.0.cycles;
        if warm.is_none() && done >= warm_at {
            warm = Some((done, soak.memory().0));
        }
    }
    let elapsed = started.elapsed();
    let (end, peak) = soak.memory();
    drop(soak);
    let (warm_cycles, warm_rss) = warm.unwrap_or((done, end));
    report.line(
        "RSS, cycles with faults toggled",
        format!(
            "{:.2} MB after {warm_cycles} cycles, {:.2} MB after {done} ({toggles} fault changes in {:.0} s), peak {:.1} MB",
            mb(warm_rss),
            mb(end),
            elapsed.as_secs_f64(),
            mb(peak)
        ),
    );
    report.ratio(
        "RSS growth with faults toggled (end / warm - 1)",
        end as f64 / warm_rss.max(1) as f64 - 1.0,
        "target < 0.10",
    );

    // 5d: SIGTERM while a cycle waits on a request that would take an hour, and when idle.
    eprintln!("phase 5d: SIGTERM to exit");
    let hang = delay_fault(ACME_IMAGES, Duration::from_secs(3600));
    faulty
        .set_scenario(fault_fleet().fault(hang))
        .expect("fault fleet");
    let stuck_env = env(&[
        ("FLEXCLOUD_INTERVAL", "2h"),
        ("FLEXCLOUD_TIMEOUT", "1h"),
        ("FLEXCLOUD_READ_TIMEOUT", "1h"),
    ]);
    let mut stuck = Vec::new();
    let mut codes = Vec::new();
    for _ in 0..3 {
        faulty.clear_requests();
        let exporter = ChildServer::spawn(binary, &[], &stuck_env);
        exporter.wait_healthy(client).await;
        let deadline = Instant::now() + limit;
        while !faulty.requests().iter().any(|r| r.path == ACME_IMAGES) {
            assert!(
                Instant::now() < deadline,
                "no cycle reached the slow request"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (took, code) = terminate(exporter).await;
        stuck.push(took);
        codes.push(code);
    }
    faulty.set_scenario(fault_fleet()).expect("fault fleet");
    let idle = ChildServer::spawn(binary, &[], &env(&[("FLEXCLOUD_INTERVAL", "1h")]));
    idle.wait_ready(client, limit).await;
    let (idle_took, idle_code) = terminate(idle).await;
    codes.push(idle_code);
    stuck.sort_unstable();
    report.line(
        "SIGTERM to exit",
        format!(
            "{:.1} ms median of 3 (max {:.1} ms) with a cycle waiting on an hour-long request; {:.1} ms idle; exit codes {codes:?}",
            ms(stuck[1]),
            ms(stuck[2]),
            ms(idle_took)
        ),
    );
    report.ratio(
        "SIGTERM to exit during a stuck cycle (max of 3) / 2 s",
        stuck[2].as_secs_f64() / 2.0,
        "target < 1.0",
    );
}

/// Sends SIGTERM (through `kill`, whose start is included) and waits for the exit, polling
/// every millisecond for at most a minute; returns the time taken and the exit code.
async fn terminate(mut server: ChildServer) -> (Duration, Option<i32>) {
    let pid = server.child.id().to_string();
    let signalled = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let deadline = signalled + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().expect("exit status") {
            return (signalled.elapsed(), status.code());
        }
        assert!(
            Instant::now() < deadline,
            "still running 60 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One row of the scale table: a fleet size at one concurrency, from one exporter.
#[derive(Debug, Clone)]
struct Row {
    accounts: usize,
    concurrency: usize,
    series: u64,
    raw_bytes: u64,
    gzip_bytes: u64,
    /// Median over the warm cycles of the exporter's own figure.
    encode: f64,
    /// VmHWM after the cycles (scrapes as Prometheus makes them, gzip), and after the
    /// plain scrapes too (which make the exporter keep the plain body from then on).
    peak_cycles: u64,
    peak_plain: u64,
    cycle_over_ideal: f64,
    connections_per_cycle: f64,
    /// Connections the first (cold) cycle opened.
    first_connections: u64,
    requests_per_cycle: f64,
    gzip_scrapes: ScrapeStats,
    plain_scrapes: ScrapeStats,
}

/// `--table`: for each fleet size, a simulator with that generated fleet; for each
/// concurrency, an exporter that runs `--cycles` cycles (the first, cold, not counted) and
/// is then scraped with and without gzip while its cycles go on.
async fn scale_table(args: &Args, binary: &Path, api: &tokio::runtime::Handle) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for &accounts in &args.table {
        let scenario = generated(args, accounts);
        let sim = api
            .spawn(Simulator::start_local(scenario))
            .await
            .unwrap()
            .expect("simulator");
        for &concurrency in &args.table_concurrency {
            eprintln!("table: {accounts} accounts, concurrency {concurrency}");
            rows.push(scale_row(args, binary, &sim, &client, accounts, concurrency).await);
        }
        let stopping = sim.clone();
        api.spawn(async move { stopping.stop().await })
            .await
            .unwrap();
    }
    print_table(args, &rows);
}

async fn scale_row(
    args: &Args,
    binary: &Path,
    sim: &Simulator,
    client: &reqwest::Client,
    accounts: usize,
    concurrency: usize,
) -> Row {
    // Requests per cycle: an account-list page per 100 accounts, then a zone list and two
    // image lists (BASE and SERVER) per zone of each account.
    let requests = (accounts.div_ceil(100) + accounts * (1 + 2 * args.zones)) as f64;
    let ideal = requests / concurrency as f64 * args.latency.as_secs_f64();
    let interval = interval_for(ideal * 1.2 + 1.0);
    let exporter = ChildServer::spawn(
        binary,
        &[],
        &[
            ("FLEXCLOUD_API_URL", sim.url()),
            ("FLEXCLOUD_USERNAME", USER.to_string()),
            ("FLEXCLOUD_PASSWORD", PASSWORD.to_string()),
            ("FLEXCLOUD_CONCURRENCY", concurrency.to_string()),
            ("FLEXCLOUD_INTERVAL", interval),
            (
                "FLEXCLOUD_LOG",
                "info,flexcloud_exporter::exposition=debug".to_string(),
            ),
        ],
    );
    exporter.wait_healthy(client).await;
    // Cycle ends are read from the exporter's log, with the simulator's counters at each:
    // polling /metrics would have this process inflate and parse the whole exposition
    // several times a cycle, on the same two cores as the exporter and the simulator.
    let limit = Duration::from_secs_f64(30.0 + 3.0 * ideal * args.cycles as f64);
    let deadline = Instant::now() + limit;
    // (cycle end, requests and connections the simulator had seen by then).
    let mut ends: Vec<(EncodeEvent, u64, u64)> = Vec::new();
    while Instant::now() < deadline {
        let latest = exporter.encodes.lock().unwrap().last().copied();
        if let Some(end) = latest {
            if end.cycle > ends.last().map_or(0, |(e, _, _)| e.cycle) {
                ends.push((end, sim.request_count(), sim.connections()));
                if end.cycle >= args.cycles {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_connections = ends.first().map_or(0, |(_, _, c)| *c);
    let mut durations = Vec::new();
    let mut per_cycle = Vec::new();
    let mut connections = Vec::new();
    for pair in ends.windows(2) {
        let ((a, ra, ca), (b, rb, cb)) = (pair[0], pair[1]);
        if b.cycle == a.cycle + 1 {
            durations.push(b.cycle_seconds);
            per_cycle.push((rb - ra) as f64);
            connections.push((cb - ca) as f64);
        }
    }
    assert!(
        !durations.is_empty(),
        "{accounts} accounts at {concurrency}: no two consecutive cycle ends seen in {limit:?}"
    );
    let measured = median(&mut durations);
    let requests_per_cycle = median(&mut per_cycle);
    let ideal_seen = requests_per_cycle / concurrency as f64 * args.latency.as_secs_f64();
    let (_, peak_cycles) = exporter.memory();
    let url = format!("{}/metrics", exporter.base);
    let gzip_scrapes = scrape_load(&url, args.scrapers, args.seconds, true).await;
    let plain_scrapes = scrape_load(&url, args.scrapers, args.seconds, false).await;
    let (_, peak_plain) = exporter.memory();
    let encodes: Vec<EncodeEvent> = exporter.encodes.lock().unwrap().clone();
    drop(exporter);
    // The warm cycles' encodes: every one after the first cycle's.
    let warm: Vec<&EncodeEvent> = encodes.iter().filter(|e| e.cycle > 1).collect();
    let last = warm
        .last()
        .copied()
        .or(encodes.last())
        .copied()
        .expect("the exporter logged its encodes");
    let mut encode: Vec<f64> = warm.iter().map(|e| e.seconds).collect();
    Row {
        accounts,
        concurrency,
        series: last.series,
        raw_bytes: last.bytes,
        gzip_bytes: last.gzip_bytes,
        encode: median(&mut encode),
        peak_cycles,
        peak_plain,
        cycle_over_ideal: measured / ideal_seen,
        connections_per_cycle: median(&mut connections),
        first_connections,
        requests_per_cycle,
        gzip_scrapes,
        plain_scrapes,
    }
}

fn print_table(args: &Args, rows: &[Row]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "flexcloud-exporter load --table: {} zones x {} images per account, API latency {:?}, \
         {} cycles per row (first not counted), {} scrapers for {:?} each way, {} cores, load \
         average at the end {}",
        args.zones,
        args.images,
        args.latency,
        args.cycles,
        args.scrapers,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!(
        "| accounts | concurrency | series | series / account | body (text) | gzip | encode / cycle \
         | peak RSS (gzip scrapes) | peak RSS (after plain scrapes) | cycle / ideal \
         | connections: first cycle / later ones | requests / cycle | scrape p50 / p99 gzip | scrape p50 / p99 plain \
         | gzip p50 / plain p50 |"
    );
    println!("|{}", "---|".repeat(15));
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.2} MB | {:.3} MB | {:.0} ms | {:.1} MB | {:.1} MB | {:.3} \
             | {} / {:.0} | {:.0} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.3} |",
            r.accounts,
            r.concurrency,
            r.series,
            r.series as f64 / r.accounts as f64,
            mb(r.raw_bytes),
            mb(r.gzip_bytes),
            r.encode * 1000.0,
            mb(r.peak_cycles),
            mb(r.peak_plain),
            r.cycle_over_ideal,
            r.first_connections,
            r.connections_per_cycle,
            r.requests_per_cycle,
            ms(r.gzip_scrapes.p50),
            ms(r.gzip_scrapes.p99),
            ms(r.plain_scrapes.p50),
            ms(r.plain_scrapes.p99),
            r.gzip_scrapes.p50.as_secs_f64() / r.plain_scrapes.p50.as_secs_f64().max(1e-9),
        );
    }
    for r in rows {
        if r.gzip_scrapes.errors + r.plain_scrapes.errors > 0 {
            println!(
                "note: {} accounts at {}: {} gzip and {} plain scrapes failed",
                r.accounts, r.concurrency, r.gzip_scrapes.errors, r.plain_scrapes.errors
            );
        }
    }
}

/// This process's resident memory, in bytes.
fn own_rss() -> u64 {
    let status = procfs::process::Process::myself()
        .expect("/proc/self")
        .status()
        .expect("/proc/self/status");
    status.vmrss.unwrap_or(0) * 1024
}

/// `--tracker-memory`: the lifecycle tracker's resident memory per tracked image at
/// `--accounts` generated accounts.
fn tracker_memory(args: &Args) {
    use std::collections::BTreeMap;

    use flexcloud_exporter::api::ImageType;
    use flexcloud_exporter::lifecycle::{
        MAX_TRACKED_IMAGES, Sighting, Status, TRACKED_IMAGE_BYTES, Tracker, ZoneRead,
    };

    let scenario = generated(args, args.accounts)
        .expanded()
        .expect("the generated fleet loads");
    // What the probes hand over: each account's zones with their sightings.
    let mut reads: BTreeMap<&str, BTreeMap<&str, Vec<Sighting>>> = BTreeMap::new();
    for account in &scenario.accounts {
        let zones = reads.entry(account.id.as_str()).or_default();
        for zone in &account.zones {
            zones.entry(zone.zone.as_str()).or_default();
        }
    }
    for image in &scenario.images {
        for zone in &image.zones {
            reads
                .entry(image.account.as_str())
                .or_default()
                .entry(zone.as_str())
                .or_default()
                .push(Sighting {
                    id: Sighting::id_hash(&image.id),
                    image_type: if image.image_type == "BASE" {
                        ImageType::Base
                    } else {
                        ImageType::Server
                    },
                    status: Status::of(Some(&image.status)),
                    created: 1_790_000_000,
                });
        }
    }
    let before = own_rss();
    let mut tracker = Tracker::new(MAX_TRACKED_IMAGES, Duration::from_secs(3600));
    let now = std::time::SystemTime::now();
    for _ in 0..2 {
        for (account, zones) in &reads {
            let zones: Vec<ZoneRead<'_>> = zones
                .iter()
                .map(|(zone, sightings)| (*zone, Some(sightings.as_slice())))
                .collect();
            tracker.observe(account, &zones, now);
        }
        drop(tracker.finish_cycle(now));
    }
    let after = own_rss();
    let images = tracker.len();
    let grown = after.saturating_sub(before);
    println!(
        "lifecycle tracker: {} accounts, {images} images tracked; RSS {:.1} -> {:.1} MB, +{:.2} MB = {:.1} bytes per image \
         (state {TRACKED_IMAGE_BYTES} B + key 8 B + the hash table's control bytes and spare room, the account and its zones)",
        reads.len(),
        mb(before),
        mb(after),
        mb(grown),
        grown as f64 / images.max(1) as f64,
    );
    drop(tracker);
}
