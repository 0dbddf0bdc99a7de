//! The binary and the simulator on the two ends of a veth pair, with real faults on the
//! network path between them: random packet loss and a blackhole (nftables), a slow link
//! (tc's token bucket filter).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use common::{BIN, HANG, Metrics, PASSWORD, Running, TempDir, USER, binary_env};
use flexcloud_sim::Scenario;
use flexcloud_sim::scenario::Image;

const ACCOUNTS: [&str; 3] = ["acme1001", "globex2002", "initech3003"];
/// Every account has both zones, so the exporter with fixed zones asks only for real ones.
const ZONES: [&str; 2] = ["US-TAMPA-1", "US-AUSTIN-1"];

/// What both exporters share: plain HTTP to the simulator's veth address, a short interval,
/// and request and connect timeouts that leave room for a request's two retries in a cycle.
const SHARED: [(&str, &str); 4] = [
    ("FLEXCLOUD_ALLOW_INSECURE_HTTP", "true"),
    ("FLEXCLOUD_INTERVAL", "4s"),
    ("FLEXCLOUD_TIMEOUT", "1s"),
    ("FLEXCLOUD_CONNECT_TIMEOUT", "1s"),
];

/// How long the blackhole lasts: longer than FLEXCLOUD_STALE_AFTER (3 x the interval), so
/// the image gauges run out during it and have to come back with the recovery.
const BLACKHOLE: Duration = Duration::from_secs(20);

/// The kinds a step may fail with when packets go missing or arrive late, and nothing answers
/// wrongly.
const NETWORK_KINDS: [&str; 3] = ["timeout", "connect_error", "deadline"];

fn fleet() -> Scenario {
    let mut scenario = Scenario::default().user(USER, PASSWORD, &["*"]);
    for account in ACCOUNTS {
        scenario = scenario
            .account(account, &ZONES)
            .image(
                account,
                &format!("{account}-base"),
                "ACTIVE",
                "BASE",
                &ZONES,
            )
            .image(
                account,
                &format!("{account}-web"),
                "ACTIVE",
                "SERVER",
                &ZONES,
            )
            .image_with(
                account,
                &format!("{account}-db"),
                "SAVING",
                "SERVER",
                &ZONES[..1],
                |image| Image {
                    age: Some(Duration::from_secs(2 * 3600)),
                    ..image
                },
            );
    }
    scenario
}

fn zone_pairs() -> impl Iterator<Item = (String, String)> {
    ACCOUNTS
        .iter()
        .flat_map(|a| ZONES.iter().map(|z| (a.to_string(), z.to_string())))
}

// Tools and the topology -----------------------------------------------------------------

/// `name` found on the PATH (iproute2's `ip` and `tc`, nftables' `nft`).
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("`{name}` on the PATH (packages iproute2 and nftables)"))
}

/// Runs `command` with `input` on its stdin, failing the test if it fails; its stdout.
fn run(mut command: Command, input: &str) -> String {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `command`, ignoring how it ends: for clean-up, which must go on whatever happened.
fn run_quietly(mut command: Command) {
    let _ = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A network namespace for the API joined to this one (the exporters') by a veth pair:
/// `host` on this side, `api` in the namespace, a /30 of 10.232.0.0/16 picked by the process
/// id, names carrying the process id. Deleted when dropped, which removes the veth pair.
struct ApiNamespace {
    ip: PathBuf,
    name: String,
    host_link: String,
    api_link: String,
    host: Ipv4Addr,
    api: Ipv4Addr,
}

impl ApiNamespace {
    fn create() -> Self {
        let pid = std::process::id();
        let [_, _, high, low] = ((pid % 16_384) * 4).to_be_bytes();
        let namespace = ApiNamespace {
            ip: tool("ip"),
            name: format!("flexcloud-netfaults-{pid}"),
            host_link: format!("fcfh{}", pid % 1_000_000),
            api_link: format!("fcfa{}", pid % 1_000_000),
            host: Ipv4Addr::new(10, 232, high, low + 1),
            api: Ipv4Addr::new(10, 232, high, low + 2),
        };
        let taken = namespace.ip(&[
            "-o",
            "-4",
            "addr",
            "show",
            "to",
            &format!("10.232.{high}.{low}/30"),
        ]);
        assert!(
            taken.trim().is_empty(),
            "10.232.{high}.{low}/30 is in use: {taken}"
        );
        let (name, host_link, api_link) = (
            namespace.name.clone(),
            namespace.host_link.clone(),
            namespace.api_link.clone(),
        );
        let (host, api) = (
            format!("{}/30", namespace.host),
            format!("{}/30", namespace.api),
        );
        namespace.ip(&["netns", "add", &name]);
        namespace.ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &api_link,
        ]);
        namespace.ip(&["link", "set", &api_link, "netns", &name]);
        namespace.ip(&["addr", "add", &host, "dev", &host_link]);
        namespace.ip(&["link", "set", &host_link, "up"]);
        namespace.ip(&["-n", &name, "link", "set", "lo", "up"]);
        namespace.ip(&["-n", &name, "addr", "add", &api, "dev", &api_link]);
        namespace.ip(&["-n", &name, "link", "set", &api_link, "up"]);
        namespace
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut command = Command::new(&self.ip);
        command.args(args);
        run(command, "")
    }

    /// `program` run inside the namespace (`ip netns exec` becomes it).
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(&self.ip);
        command
            .args(["netns", "exec", &self.name])
            .arg(program)
            .env_clear();
        command
    }
}

impl Drop for ApiNamespace {
    fn drop(&mut self) {
        for args in [
            &["netns", "del", self.name.as_str()][..],
            &["link", "del", self.host_link.as_str()],
        ] {
            let mut command = Command::new(&self.ip);
            command.args(args);
            run_quietly(command);
        }
    }
}

/// An nftables table in the API namespace applying `rule` to every packet in and out of its
/// veth end. Deleted by [`Firewall::remove`], or when dropped.
struct Firewall<'a> {
    namespace: &'a ApiNamespace,
    nft: PathBuf,
    table: String,
    installed: bool,
}

impl<'a> Firewall<'a> {
    fn install(namespace: &'a ApiNamespace, tag: &str, rule: &str) -> Self {
        let firewall = Firewall {
            namespace,
            nft: tool("nft"),
            table: format!("flexcloud_netfaults_{}_{tag}", std::process::id()),
            installed: true,
        };
        let link = &namespace.api_link;
        let ruleset = format!(
            "table inet {table} {{\n\
             \tchain input {{ type filter hook input priority filter; policy accept; iifname \"{link}\" {rule}; }}\n\
             \tchain output {{ type filter hook output priority filter; policy accept; oifname \"{link}\" {rule}; }}\n\
             }}\n",
            table = firewall.table,
        );
        let mut command = namespace.command(&firewall.nft);
        command.args(["-f", "-"]);
        run(command, &ruleset);
        firewall
    }

    fn delete(&self) -> Command {
        let mut command = self.namespace.command(&self.nft);
        command.args(["delete", "table", "inet", &self.table]);
        command
    }

    fn remove(mut self) {
        run(self.delete(), "");
        self.installed = false;
    }
}

impl Drop for Firewall<'_> {
    fn drop(&mut self) {
        if self.installed {
            run_quietly(self.delete());
        }
    }
}

/// A token bucket filter as the root qdisc of both veth ends: requests and answers crawl.
/// Removed by [`SlowLink::remove`], or when dropped.
struct SlowLink<'a> {
    namespace: &'a ApiNamespace,
    tc: PathBuf,
    installed: bool,
}

impl<'a> SlowLink<'a> {
    /// 64 kbit/s. The bucket holds 4 KiB: tbf drops every packet larger than its bucket, and
    /// the brief's 8 kbit (1,000 bytes) is less than a full-sized Ethernet frame.
    const TBF: [&'static str; 7] = [
        "tbf", "rate", "64kbit", "burst", "32kbit", "latency", "400ms",
    ];

    fn install(namespace: &'a ApiNamespace) -> Self {
        let link = SlowLink {
            namespace,
            tc: tool("tc"),
            installed: true,
        };
        for mut command in link.qdisc("add") {
            command.args(Self::TBF);
            run(command, "");
        }
        link
    }

    /// `tc qdisc VERB dev X root` for the host's end and the API's end.
    fn qdisc(&self, verb: &str) -> [Command; 2] {
        let mut host = Command::new(&self.tc);
        host.args(["qdisc", verb, "dev", &self.namespace.host_link, "root"]);
        let mut api = self.namespace.command(&self.tc);
        api.args(["qdisc", verb, "dev", &self.namespace.api_link, "root"]);
        [host, api]
    }

    fn remove(mut self) {
        for command in self.qdisc("del") {
            run(command, "");
        }
        self.installed = false;
    }
}

impl Drop for SlowLink<'_> {
    fn drop(&mut self) {
        if self.installed {
            self.qdisc("del").into_iter().for_each(run_quietly);
        }
    }
}

/// The workspace's `flexcloud-sim` binary. Cargo gives an integration test the binaries of
/// its own package only (CARGO_BIN_EXE_*), and the simulator is another package of the
/// workspace; so the cargo that built this test builds it, for the test's profile (the
/// folder the exporter's binary lies in names it; cargo calls the dev profile's `debug`),
/// into the test's target directory (the parent of CARGO_TARGET_TMPDIR, which cargo sets
/// for integration tests), and the path is read from cargo's JSON artifact message rather
/// than guessed from the target layout. When it is up to date this takes a moment.
fn simulator_binary() -> PathBuf {
    let folder = Path::new(BIN)
        .parent()
        .and_then(Path::file_name)
        .and_then(OsStr::to_str)
        .expect("the exporter's binary lies in a profile folder");
    let profile = if folder == "debug" { "dev" } else { folder };
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR lies in the target directory");
    let output = Command::new(env!("CARGO"))
        .args(["build", "--locked", "--package", "flexcloud-sim"])
        .args(["--bin", "flexcloud-sim", "--profile", profile])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build -p flexcloud-sim failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "flexcloud-sim")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the flexcloud-sim executable")
}

/// `flexcloud-sim` serving `scenario` on the API's veth address, inside its namespace;
/// killed when dropped.
struct SimProcess {
    child: Child,
    url: String,
}

impl SimProcess {
    fn start(namespace: &ApiNamespace, scenario: &Path) -> Self {
        let mut command = namespace.command(&simulator_binary());
        let mut child = command
            .arg("--scenario")
            .arg(scenario)
            .args(["--listen", &format!("{}:0", namespace.api)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ip netns exec flexcloud-sim starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut sim = SimProcess {
            child,
            url: String::new(),
        };
        let line = lines
            .recv_timeout(HANG)
            .expect("flexcloud-sim prints `listening on URL`");
        sim.url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("not the listening line: {line}"))
            .to_string();
        sim
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// What the exporters publish -------------------------------------------------------------

/// The phases of the run, in order; between two fault phases the link is healthy again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Healthy,
    Loss,
    AfterLoss,
    Slow,
    AfterSlow,
    Blackhole,
    Recovery,
}

/// When each phase held, by the system clock that the exporters' timestamps also use.
#[derive(Default)]
struct Timeline(Vec<(Phase, SystemTime, Option<SystemTime>)>);

impl Timeline {
    /// Called once the phase's fault is in place (or removed).
    fn begin(&mut self, phase: Phase) {
        self.0.push((phase, SystemTime::now(), None));
    }

    /// Called before the phase's fault is removed.
    fn end(&mut self) {
        self.0.last_mut().unwrap().2 = Some(SystemTime::now());
    }

    /// The phase a whole cycle ran in; `None` when a change fell within it. A cycle's start
    /// is read as its end minus its duration, a few microseconds later than it began.
    fn phase_of(&self, cycle: &CycleSeen) -> Option<Phase> {
        let margin = Duration::from_millis(10);
        self.0
            .iter()
            .find(|(_, from, to)| {
                cycle.started >= *from + margin && to.is_none_or(|to| cycle.completed <= to)
            })
            .map(|(phase, ..)| *phase)
    }
}

#[derive(Debug, Clone, Copy)]
struct ProbeSeen {
    success: bool,
    seconds: f64,
}

/// One cycle of an exporter as the first scrape that showed it read it.
#[derive(Debug, Clone)]
struct CycleSeen {
    number: u64,
    started: SystemTime,
    completed: SystemTime,
    up: bool,
    /// `flexcloud_discovery_success{step="accounts"}`; none with fixed accounts.
    accounts_listed: Option<bool>,
    /// The zones with a `flexcloud_probe_success` series.
    probes: BTreeMap<(String, String), ProbeSeen>,
    /// The zones with `flexcloud_images` series.
    with_images: BTreeSet<(String, String)>,
    last_success: BTreeMap<(String, String), f64>,
    /// `flexcloud_api_requests_total` summed by `code`, since the start.
    requests: BTreeMap<String, f64>,
}

impl CycleSeen {
    /// Every probe succeeded with its images counted, discovery included.
    fn all_good(&self) -> bool {
        self.up
            && self.accounts_listed != Some(false)
            && zone_pairs().all(|z| {
                self.probes.get(&z).is_some_and(|p| p.success) && self.with_images.contains(&z)
            })
    }
}

fn unix(seconds: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds)
}

/// A `probe failed` warning of an exporter's JSON log.
#[derive(Debug)]
struct FailureLine {
    at: SystemTime,
    step: String,
    kind: String,
    http_status: u64,
    line: String,
}

fn failure_lines(log: &str) -> Vec<FailureLine> {
    log.lines()
        .filter_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            if event["message"] != "probe failed" {
                return None;
            }
            let at = time::OffsetDateTime::parse(
                event["timestamp"].as_str()?,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap_or_else(|e| panic!("timestamp of {line}: {e}"));
            Some(FailureLine {
                at: at.into(),
                step: event["step"].as_str().unwrap_or_default().to_string(),
                kind: event["error_kind"].as_str().unwrap_or_default().to_string(),
                http_status: event["http_status"].as_u64().unwrap_or(u64::MAX),
                line: line.to_string(),
            })
        })
        .collect()
}

/// An exporter on this side of the veth pair, scraped over loopback, and every cycle it
/// published.
struct Watched {
    name: &'static str,
    process: Running,
    metrics_url: String,
    cycles: Vec<CycleSeen>,
    scrapes: Vec<(SystemTime, u64)>,
}

impl Watched {
    fn start(name: &'static str, api_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut settings = SHARED.to_vec();
        settings.extend_from_slice(extra);
        let mut process = Running::start(&binary_env(api_url, &settings), &[]);
        let metrics_url = format!("http://{}/metrics", process.address());
        Watched {
            name,
            process,
            metrics_url,
            cycles: Vec::new(),
            scrapes: Vec::new(),
        }
    }

    /// Scrapes `/metrics`, which must answer whatever the API's link does, checks that no
    /// probe claims a success its cycle did not have, and notes a new cycle.
    async fn scrape(&mut self, client: &reqwest::Client) {
        let response = client
            .get(&self.metrics_url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: /metrics did not answer: {e}", self.name));
        assert_eq!(response.status(), 200, "{}", self.name);
        let metrics = Metrics::parse(&response.text().await.unwrap());
        // Absent until the first cycle ends: the exposition has no cycle to describe yet.
        let cycle = metrics
            .get("flexcloud_collection_cycles_total", &[])
            .unwrap_or(0.0) as u64;
        self.scrapes.push((SystemTime::now(), cycle));
        if cycle == 0 || self.cycles.last().is_some_and(|c| c.number == cycle) {
            return;
        }
        let seen = self.read_cycle(cycle, &metrics);
        self.cycles.push(seen);
    }

    fn read_cycle(&self, number: u64, metrics: &Metrics) -> CycleSeen {
        let name = self.name;
        let completed = metrics.value("flexcloud_last_collection_timestamp_seconds", &[]);
        let took = metrics.value("flexcloud_collection_duration_seconds", &[]);
        let started = completed - took;
        let mut seen = CycleSeen {
            number,
            started: unix(started),
            completed: unix(completed),
            up: metrics.value("flexcloud_up", &[]) == 1.0,
            accounts_listed: metrics
                .get(
                    "flexcloud_discovery_success",
                    &[("account_id", ""), ("step", "accounts")],
                )
                .map(|v| v == 1.0),
            probes: BTreeMap::new(),
            with_images: BTreeSet::new(),
            last_success: BTreeMap::new(),
            requests: BTreeMap::new(),
        };
        for (account, zone) in zone_pairs() {
            let labels = [("account_id", account.as_str()), ("zone_id", zone.as_str())];
            let key = (account.clone(), zone.clone());
            let images = !metrics.series("flexcloud_images", &labels).is_empty();
            let last = metrics.get("flexcloud_last_success_timestamp_seconds", &labels);
            if images {
                seen.with_images.insert(key.clone());
            }
            if let Some(last) = last {
                seen.last_success.insert(key.clone(), last);
            }
            let Some(success) = metrics.get("flexcloud_probe_success", &labels) else {
                continue;
            };
            let status = metrics.value("flexcloud_probe_http_status_code", &labels);
            let probe = ProbeSeen {
                success: success == 1.0,
                seconds: metrics.value("flexcloud_probe_duration_seconds", &labels),
            };
            // Timestamps are f64 seconds: a millisecond covers their rounding.
            if probe.success {
                assert_eq!(status, 200.0, "{name} cycle {number}: {account} {zone}");
                assert!(
                    last.is_some_and(|l| l >= started - 0.001),
                    "{name} cycle {number}: {account} {zone} succeeded, but its last success \
                     {last:?} is older than the cycle (started {started})"
                );
                assert!(
                    images,
                    "{name} cycle {number}: {account} {zone} without images"
                );
            } else {
                assert_eq!(
                    status, 0.0,
                    "{name} cycle {number}: {account} {zone} failed with an HTTP status, \
                     though nothing but the network was wrong"
                );
                assert!(
                    last.is_none_or(|l| l <= started + 0.001),
                    "{name} cycle {number}: {account} {zone} failed, but its last success \
                     {last:?} is within the cycle (started {started})"
                );
            }
            seen.probes.insert(key, probe);
        }
        for sample in common::exposition::parse(&metrics.text).samples {
            if sample.name != "flexcloud_api_requests_total" {
                continue;
            }
            let code = sample
                .labels
                .iter()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.clone())
                .expect("a code label");
            *seen.requests.entry(code).or_default() += sample.value;
        }
        seen
    }

    fn latest(&self) -> Option<&CycleSeen> {
        self.cycles.last()
    }

    fn first_good_after(&self, number: u64) -> Option<u64> {
        self.cycles
            .iter()
            .find(|c| c.number > number && c.all_good())
            .map(|c| c.number)
    }

    fn cycles_in<'a>(
        &'a self,
        timeline: &'a Timeline,
        phase: Phase,
    ) -> impl Iterator<Item = &'a CycleSeen> + 'a {
        self.cycles
            .iter()
            .filter(move |c| timeline.phase_of(c) == Some(phase))
    }

    /// The exporter's `probe failed` warnings by the phase of the cycle that logged them
    /// (`None`: a cycle a change fell within, or one no scrape showed). A cycle logs what
    /// changed right after it ends.
    fn failures(&mut self, timeline: &Timeline) -> BTreeMap<Option<Phase>, Vec<FailureLine>> {
        let mut by_phase: BTreeMap<Option<Phase>, Vec<FailureLine>> = BTreeMap::new();
        for failure in failure_lines(&self.process.log()) {
            let phase = self
                .cycles
                .iter()
                .rev()
                .find(|c| c.completed <= failure.at + Duration::from_millis(1))
                .filter(|c| failure.at <= c.completed + Duration::from_secs(1))
                .and_then(|c| timeline.phase_of(c));
            by_phase.entry(phase).or_default().push(failure);
        }
        by_phase
    }

    /// Requests by code during the cycles of `phase`.
    fn requests_in(&self, timeline: &Timeline, phase: Phase) -> BTreeMap<String, f64> {
        let mut tally = BTreeMap::new();
        for pair in self.cycles.windows(2) {
            let [before, cycle] = pair else { continue };
            if cycle.number != before.number + 1 || timeline.phase_of(cycle) != Some(phase) {
                continue;
            }
            for (code, n) in &cycle.requests {
                let delta = n - before.requests.get(code).copied().unwrap_or(0.0);
                if delta > 0.0 {
                    *tally.entry(code.clone()).or_default() += delta;
                }
            }
        }
        tally
    }
}

/// Scrapes every exporter every 200 ms until `done` holds.
async fn watch_until(
    exporters: &mut [Watched],
    client: &reqwest::Client,
    what: &str,
    done: impl Fn(&[Watched]) -> bool,
) {
    let deadline = Instant::now() + HANG;
    loop {
        for exporter in exporters.iter_mut() {
            exporter.scrape(client).await;
        }
        if done(exporters) {
            return;
        }
        assert!(Instant::now() < deadline, "still waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Scrapes every exporter every 200 ms for `how_long`.
async fn watch_for(exporters: &mut [Watched], client: &reqwest::Client, how_long: Duration) {
    let end = Instant::now() + how_long;
    watch_until(exporters, client, "the end of a fixed time", |_| {
        Instant::now() >= end
    })
    .await;
}

/// Until each exporter has published `n` cycles that ran wholly in `phase`.
fn cycles_in_phase(timeline: &Timeline, phase: Phase, n: usize) -> impl Fn(&[Watched]) -> bool {
    move |exporters| {
        exporters
            .iter()
            .all(|e| e.cycles_in(timeline, phase).count() >= n)
    }
}

/// Until each exporter has had a cycle that began in `phase` with every probe back.
fn all_good_in(timeline: &Timeline, phase: Phase) -> impl Fn(&[Watched]) -> bool {
    move |exporters| {
        exporters
            .iter()
            .all(|e| e.cycles_in(timeline, phase).any(CycleSeen::all_good))
    }
}

/// Until each exporter has had a cycle after the `i`th number of `after` with every probe
/// back.
fn all_good_after(after: &[u64]) -> impl Fn(&[Watched]) -> bool + '_ {
    move |exporters| {
        exporters
            .iter()
            .zip(after)
            .all(|(e, after)| e.first_good_after(*after).is_some())
    }
}

/// Minimum, median and maximum in milliseconds.
fn spread(mut seconds: Vec<f64>) -> String {
    if seconds.is_empty() {
        return "none".into();
    }
    seconds.sort_by(f64::total_cmp);
    let ms = |s: f64| (s * 1000.0).round();
    format!(
        "{} probes, {}/{}/{} ms min/median/max",
        seconds.len(),
        ms(seconds[0]),
        ms(seconds[seconds.len() / 2]),
        ms(seconds[seconds.len() - 1])
    )
}

fn probe_seconds<'a>(cycles: impl Iterator<Item = &'a CycleSeen>) -> Vec<f64> {
    cycles
        .flat_map(|c| c.probes.values().map(|p| p.seconds))
        .collect()
}

fn kinds(lines: &[FailureLine]) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for line in lines {
        *kinds
            .entry(format!("{}:{}", line.step, line.kind))
            .or_default() += 1;
    }
    kinds
}

#[tokio::test]
#[ignore = "needs root, iproute2 and nftables"]
async fn probes_over_a_lossy_slow_and_cut_link_fail_as_timeouts_and_recover_within_two_cycles() {
    let dir = TempDir::new("netfaults");
    let scenario = dir.path("scenario.json");
    std::fs::write(&scenario, serde_json::to_string_pretty(&fleet()).unwrap()).unwrap();
    let namespace = ApiNamespace::create();
    let sim = SimProcess::start(&namespace, &scenario);
    let accounts = ACCOUNTS.join(",");
    let zones = ZONES.join(",");
    let mut timeline = Timeline::default();
    timeline.begin(Phase::Healthy);
    // One exporter discovers accounts and zones; the other has them fixed, so that it
    // probes every zone in every cycle, however discovery would fare.
    let mut exporters = [
        Watched::start("discovering", &sim.url, &[]),
        Watched::start(
            "fixed",
            &sim.url,
            &[
                ("FLEXCLOUD_ACCOUNTS", &accounts),
                ("FLEXCLOUD_ZONES", &zones),
            ],
        ),
    ];
    // A client of its own for the scrapes over loopback, which no fault touches: its
    // timeout only bounds a hang.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    eprintln!(
        "namespace {} ({} on {}), simulator {} ",
        namespace.name, namespace.api, namespace.api_link, sim.url
    );

    // 1. Healthy.
    watch_until(
        &mut exporters,
        &client,
        "two healthy cycles",
        cycles_in_phase(&timeline, Phase::Healthy, 2),
    )
    .await;
    timeline.end();
    for e in &exporters {
        for c in e.cycles_in(&timeline, Phase::Healthy) {
            assert!(c.all_good(), "{} healthy: {c:?}", e.name);
        }
    }

    // 2. 30 % of the packets each way are dropped.
    let loss = Firewall::install(&namespace, "loss", "numgen random mod 100 < 30 drop");
    timeline.begin(Phase::Loss);
    watch_until(
        &mut exporters,
        &client,
        "four cycles under packet loss",
        cycles_in_phase(&timeline, Phase::Loss, 4),
    )
    .await;
    timeline.end();
    loss.remove();
    timeline.begin(Phase::AfterLoss);
    watch_until(
        &mut exporters,
        &client,
        "every probe back after the packet loss",
        all_good_in(&timeline, Phase::AfterLoss),
    )
    .await;
    timeline.end();

    // 3. A slow link.
    let slow = SlowLink::install(&namespace);
    timeline.begin(Phase::Slow);
    watch_until(
        &mut exporters,
        &client,
        "three cycles over the slow link",
        cycles_in_phase(&timeline, Phase::Slow, 3),
    )
    .await;
    timeline.end();
    slow.remove();
    timeline.begin(Phase::AfterSlow);
    watch_until(
        &mut exporters,
        &client,
        "every probe back after the slow link",
        all_good_in(&timeline, Phase::AfterSlow),
    )
    .await;
    timeline.end();

    // 4. Nothing gets through.
    let blackhole = Firewall::install(&namespace, "blackhole", "drop");
    timeline.begin(Phase::Blackhole);
    let scrapes_before: Vec<usize> = exporters.iter().map(|e| e.scrapes.len()).collect();
    watch_for(&mut exporters, &client, BLACKHOLE).await;
    timeline.end();
    let blackhole_began = timeline.0.last().unwrap().1;
    blackhole.remove();

    // 5. Recovery, counted in cycles from the first scrape after the rules went.
    timeline.begin(Phase::Recovery);
    let mut at_removal = Vec::new();
    for e in exporters.iter_mut() {
        e.scrape(&client).await;
        at_removal.push(e.latest().unwrap().number);
    }
    watch_until(
        &mut exporters,
        &client,
        "every probe and image back after the blackhole",
        all_good_after(&at_removal),
    )
    .await;

    // What each exporter saw.
    let mut report = Vec::new();
    for (i, e) in exporters.iter_mut().enumerate() {
        let name = e.name;
        let failures = e.failures(&timeline);
        let kinds_in = |phase: Option<Phase>| kinds(failures.get(&phase).map_or(&[], |v| v));
        for (phase, lines) in &failures {
            for line in lines {
                assert!(
                    NETWORK_KINDS.contains(&line.kind.as_str()) && line.http_status == 0,
                    "{name} {phase:?}: {}",
                    line.line
                );
            }
        }
        for phase in [
            Phase::Healthy,
            Phase::Loss,
            Phase::AfterLoss,
            Phase::Slow,
            Phase::AfterSlow,
            Phase::Blackhole,
            Phase::Recovery,
        ] {
            let cycles: Vec<&CycleSeen> = e.cycles_in(&timeline, phase).collect();
            let failed = cycles
                .iter()
                .flat_map(|c| c.probes.values())
                .filter(|p| !p.success)
                .count();
            report.push(format!(
                "{name} {phase:?}: {} cycles, {failed} failed probes, {}; failures logged {:?}; requests {:?}",
                cycles.len(),
                spread(probe_seconds(cycles.iter().copied())),
                kinds_in(Some(phase)),
                e.requests_in(&timeline, phase),
            ));
        }
        report.push(format!(
            "{name} changing cycles: failures logged {:?}",
            kinds_in(None)
        ));
        let requests = &e.latest().unwrap().requests;
        report.push(format!("{name} requests in all: {requests:?}"));
        for code in requests.keys() {
            assert!(
                ["200", "timeout", "connect_error"].contains(&code.as_str()),
                "{name}: requests ended with {code}: {requests:?}"
            );
        }

        // Packet loss: TCP retransmits or a timeout, never an answer read wrongly.
        for line in failures.get(&Some(Phase::Loss)).into_iter().flatten() {
            assert!(
                ["timeout", "connect_error"].contains(&line.kind.as_str()),
                "{name} under packet loss: {}",
                line.line
            );
        }

        // The slow link: slower probes, failing only by running out of time.
        for line in failures.get(&Some(Phase::Slow)).into_iter().flatten() {
            assert!(
                ["timeout", "deadline"].contains(&line.kind.as_str()),
                "{name} over the slow link: {}",
                line.line
            );
        }
        let healthy = probe_seconds(e.cycles_in(&timeline, Phase::Healthy));
        let slow = probe_seconds(e.cycles_in(&timeline, Phase::Slow));
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        assert!(
            max(&slow) > max(&healthy),
            "{name}: probes over the slow link ({slow:?}) are no slower than healthy ones ({healthy:?})"
        );

        // The blackhole: /metrics answered all along (every scrape asserted it), and every
        // cycle within it reports failure, from no stale data.
        let scrapes = e.scrapes.len() - scrapes_before[i];
        report.push(format!(
            "{name} scrapes answered during the blackhole: {scrapes}"
        ));
        let inside: Vec<&CycleSeen> = e.cycles_in(&timeline, Phase::Blackhole).collect();
        assert!(!inside.is_empty(), "{name}: no cycle within the blackhole");
        for c in &inside {
            assert!(!c.up, "{name} blackhole: up in {c:?}");
            assert!(
                c.probes.values().all(|p| !p.success),
                "{name} blackhole: a probe succeeded in {c:?}"
            );
            assert!(
                c.last_success.values().all(|l| unix(*l) <= blackhole_began),
                "{name} blackhole: a last success within it in {c:?}"
            );
            if name == "fixed" {
                assert_eq!(c.probes.len(), zone_pairs().count(), "{name}: {c:?}");
            } else {
                assert_eq!(c.accounts_listed, Some(false), "{name}: {c:?}");
            }
        }
        report.push(format!(
            "{name} blackhole cycles: probe series {:?}, zones with images {:?}",
            inside.iter().map(|c| c.probes.len()).collect::<Vec<_>>(),
            inside
                .iter()
                .map(|c| c.with_images.len())
                .collect::<Vec<_>>(),
        ));

        // Recovery within two cycles of the removal.
        let recovered = e.first_good_after(at_removal[i]).unwrap();
        report.push(format!(
            "{name} recovery: cycle {} at the removal, every probe and image back in cycle {recovered}",
            at_removal[i]
        ));
        assert!(
            recovered - at_removal[i] <= 2,
            "{name}: back only in cycle {recovered}, the blackhole went after cycle {}",
            at_removal[i]
        );
    }
    eprintln!("{}", report.join("\n"));
}
