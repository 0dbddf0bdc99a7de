//! The stuck-SAVING alert delivered for real, and held through an API outage.
//!
//! The simulator (in this process) serves one account with two zones and image 102 stuck
//! in SAVING for 3h in one of them; the exporter binary watches it every second with
//! FLEXCLOUD_STALE_AFTER at 5s; Prometheus scrapes it and evaluates the bundled rules (every
//! `for` cut to 0s) every second; Alertmanager runs the example configuration
//! (deploy/alertmanager/alertmanager.yml) with its webhook URLs pointed at a receiver in this
//! test and its group and repeat times cut short.
//!
//! The receiver gets FlexcloudImageStuckSaving with the account, zone and image labels and
//! an absolute runbook URL. Then the image's zone answers 503 for five times the stale
//! bound, and no `resolved` may arrive: the image is still SAVING as far as anyone knows.
//! The image becomes ACTIVE while the zone still fails, and still nothing may resolve; once
//! the zone answers again, the `resolved` must arrive.
//!
//! Every payload delivered is written to target/alertmanager-deliveries.json, and each
//! alert's status, summary and labels are printed (`-- --nocapture` to see them).
//!
//! Needs `prometheus` and `alertmanager` (Debian: `prometheus`, `prometheus-alertmanager`,
//! whose binary is `prometheus-alertmanager`) on PATH:
//! `cargo test --test e2e_alertmanager -- --include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use flexcloud_sim::{Fault, FaultAction, Scenario};
use serde_json::Value;

#[path = "common/e2e.rs"]
mod e2e;
use e2e::{
    JOB, Running, exporter_address, firing_with, instant_query, listening_address, repo,
    scratch_dir, start_exporter, start_prometheus, start_simulator, toolkit_address, wait_ready,
};

const USER: &str = "exporter";
const PASSWORD: &str = "e2e-secret";
const ACCOUNT: &str = "acme1234";
const ZONE: &str = "USOTE-2012-TAMPA";
const OTHER_ZONE: &str = "USOTE-2012-DALLAS";
const IMAGE_ID: &str = "102";
const IMAGE_NAME: &str = "web-01-nightly";
const ALERT: &str = "FlexcloudImageStuckSaving";
const ALERTMANAGER_CONFIG: &str = "deploy/alertmanager/alertmanager.yml";
/// FLEXCLOUD_STALE_AFTER for the exporter: the outage lasts five times as long.
const STALE_AFTER: Duration = Duration::from_secs(5);
const OUTAGE: Duration = Duration::from_secs(25);
/// How long any one condition may take to come true.
const WAIT: Duration = Duration::from_secs(90);

fn wait_for<T>(
    what: &str,
    processes: &mut [&mut Running],
    check: impl FnMut() -> Result<T, String>,
) -> T {
    e2e::wait_for(what, WAIT, processes, check)
}

/// A webhook receiver: every POST body it gets, parsed as JSON, in arrival order. When
/// dropped it stops, writes what it got to target/alertmanager-deliveries.json and prints
/// each alert, so a failing run leaves them too.
struct Receiver {
    addr: SocketAddr,
    deliveries: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the receiver's address");
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (deliveries, stop) = (deliveries.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let body = receive(stream);
                            deliveries
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(body);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => panic!("the webhook receiver cannot accept: {e}"),
                    }
                }
            })
        };
        Receiver {
            addr,
            deliveries,
            stop,
            thread: Some(thread),
        }
    }

    fn deliveries(&self) -> Vec<Value> {
        self.deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let deliveries = self.deliveries();
        let path = deliveries_file();
        let text = serde_json::to_string_pretty(&deliveries).unwrap_or_default();
        if let Err(e) = fs::write(&path, text) {
            eprintln!("cannot write {}: {e}", path.display());
        }
        println!(
            "{} deliveries, written to {}:",
            deliveries.len(),
            path.display()
        );
        for delivery in &deliveries {
            for alert in delivery["alerts"].as_array().into_iter().flatten() {
                println!(
                    "  {} ({}): {}\n    labels: {}\n    runbook_url: {}",
                    alert["status"].as_str().unwrap_or("?"),
                    delivery["receiver"].as_str().unwrap_or("?"),
                    alert["annotations"]["summary"].as_str().unwrap_or(""),
                    alert["labels"],
                    alert["annotations"]["runbook_url"].as_str().unwrap_or(""),
                );
            }
        }
    }
}

fn deliveries_file() -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .unwrap_or(tmp)
        .join("alertmanager-deliveries.json")
}

/// Reads one HTTP request and answers 200: the body as JSON, or a string saying what was
/// wrong with it (which no check below accepts as a delivery).
fn receive(mut stream: TcpStream) -> Value {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let body_at = loop {
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return Value::String("request ended before its body".into()),
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    };
    let head = String::from_utf8_lossy(&request[..body_at]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < body_at + length {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let body = &request[body_at..request.len().min(body_at + length)];
    serde_json::from_slice(body).unwrap_or_else(|e| {
        Value::String(format!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
    })
}

/// The stuck-SAVING alerts of image 102 in its zone with `status`, from every delivery.
fn stuck_alerts(deliveries: &[Value], status: &str) -> Vec<Value> {
    deliveries
        .iter()
        .flat_map(|d| d["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| {
            a["status"] == status
                && a["labels"]["alertname"] == ALERT
                && a["labels"]["image_id"] == IMAGE_ID
                && a["labels"]["zone_id"] == ZONE
        })
        .collect()
}

/// `alertmanager` as upstream names it, or `prometheus-alertmanager` as Debian does.
fn alertmanager_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["alertmanager", "prometheus-alertmanager"] {
        if let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
        {
            return found;
        }
    }
    panic!("no alertmanager on PATH (install the Debian package prometheus-alertmanager)");
}

/// The example configuration with every webhook pointed at `receiver` (path: the
/// receiver's name) and group and repeat times cut to test scale.
fn write_alertmanager_config(dir: &Path, receiver: SocketAddr) -> PathBuf {
    use serde_norway::Value as Yaml;
    let text = fs::read_to_string(repo(ALERTMANAGER_CONFIG))
        .unwrap_or_else(|e| panic!("{ALERTMANAGER_CONFIG}: {e}"));
    let mut config: Yaml =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{ALERTMANAGER_CONFIG}: {e}"));
    fn shorten(route: &mut Yaml) {
        let Some(route) = route.as_mapping_mut() else {
            return;
        };
        for (key, value) in [
            ("group_wait", "1s"),
            ("group_interval", "1s"),
            ("repeat_interval", "1h"),
        ] {
            let key = Yaml::from(key);
            if route.contains_key(&key) {
                route.insert(key, Yaml::from(value));
            }
        }
        if let Some(routes) = route
            .get_mut(Yaml::from("routes"))
            .and_then(Yaml::as_sequence_mut)
        {
            routes.iter_mut().for_each(shorten);
        }
    }
    shorten(config.get_mut("route").expect("the example has a route"));
    let receivers = config
        .get_mut("receivers")
        .and_then(Yaml::as_sequence_mut)
        .expect("the example has receivers");
    let mut webhooks = 0;
    for entry in receivers {
        let name = entry["name"].as_str().unwrap_or("unnamed").to_string();
        for webhook in entry
            .get_mut("webhook_configs")
            .and_then(Yaml::as_sequence_mut)
            .into_iter()
            .flatten()
        {
            webhook["url"] = Yaml::from(format!("http://{receiver}/{name}"));
            webhooks += 1;
        }
    }
    assert!(webhooks > 0, "no webhook receiver in {ALERTMANAGER_CONFIG}");
    let path = dir.join("alertmanager.yml");
    let text = serde_norway::to_string(&config).expect("the config as YAML");
    fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

fn start_alertmanager(dir: &Path, receiver: SocketAddr) -> Running {
    let config = write_alertmanager_config(dir, receiver);
    let mut command = Command::new(alertmanager_binary());
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.join("alertmanager-data").display()
        ))
        // Port 0: Alertmanager says in its log which port it got.
        .arg("--web.listen-address=127.0.0.1:0")
        // No cluster: nothing to gossip with, and no port to bind for it.
        .arg("--cluster.listen-address=")
        .arg("--log.level=info");
    Running::spawn("alertmanager", &mut command, dir)
}

fn scenario() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &[ACCOUNT])
        .account(ACCOUNT, &[ZONE, OTHER_ZONE])
        .image(ACCOUNT, "101", "ACTIVE", "BASE", &[ZONE, OTHER_ZONE])
        .image_with(
            ACCOUNT,
            IMAGE_ID,
            "SAVING",
            "SERVER",
            &[ZONE],
            |mut image| {
                image.name = IMAGE_NAME.into();
                image.age = Some(Duration::from_secs(3 * 3600));
                image
            },
        )
}

#[test]
#[ignore = "needs prometheus and alertmanager"]
fn stuck_saving_alert_is_delivered_held_through_an_outage_and_resolved_when_fixed() {
    let dir = scratch_dir("e2e_alertmanager");
    let api = start_simulator(scenario());
    let receiver = Receiver::start();
    let stale_after = format!("{}s", STALE_AFTER.as_secs());
    let mut exporter = start_exporter(
        &dir,
        api.sim.addr(),
        &[
            ("FLEXCLOUD_USERNAME", USER),
            ("FLEXCLOUD_PASSWORD", PASSWORD),
            ("FLEXCLOUD_ACCOUNTS", ACCOUNT),
            ("FLEXCLOUD_INTERVAL", "1s"),
            ("FLEXCLOUD_TIMEOUT", "900ms"),
            ("FLEXCLOUD_STALE_AFTER", &stale_after),
        ],
    );
    let exporter_addr = listening_address(&mut exporter, exporter_address);
    wait_ready("the exporter", exporter_addr, &mut [&mut exporter]);

    let mut alertmanager = start_alertmanager(&dir, receiver.addr);
    let am = listening_address(&mut alertmanager, toolkit_address);
    wait_ready("Alertmanager", am, &mut [&mut exporter, &mut alertmanager]);

    let alerting = format!(
        "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
    );
    let mut prometheus = start_prometheus(&dir, exporter_addr, &alerting);
    let prom = listening_address(&mut prometheus, toolkit_address);
    let mut all = [&mut exporter, &mut alertmanager, &mut prometheus];
    wait_ready("Prometheus", prom, &mut all);

    // Delivered firing, with everything a person needs at 3 a.m.
    let fired = wait_for("the stuck-SAVING alert to be delivered", &mut all, || {
        stuck_alerts(&receiver.deliveries(), "firing")
            .into_iter()
            .next()
            .ok_or_else(|| format!("deliveries so far: {:?}", receiver.deliveries()))
    });
    let labels = &fired["labels"];
    for (label, value) in [
        ("job", JOB),
        ("severity", "warning"),
        ("account_id", ACCOUNT),
        ("zone_id", ZONE),
        ("image_id", IMAGE_ID),
        ("image_name", IMAGE_NAME),
        ("image_type", "SERVER"),
    ] {
        assert_eq!(labels[label], value, "{label} of {fired}");
    }
    let summary = fired["annotations"]["summary"].as_str().unwrap_or_default();
    for part in [
        ACCOUNT,
        ZONE,
        IMAGE_NAME,
        IMAGE_ID,
        "stuck in SAVING for 3h",
    ] {
        assert!(
            summary.contains(part),
            "summary without {part:?}: {summary}"
        );
    }
    let runbook_url = fired["annotations"]["runbook_url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        runbook_url.starts_with("https://")
            && runbook_url.ends_with("/docs/runbook.md#flexcloudimagestucksaving"),
        "runbook_url is not an absolute link to the section: {runbook_url}"
    );

    // The outage: the image's zone answers 503, for five times the stale bound.
    api.sim.add_fault(
        Fault::on(
            &format!("/accounts/{ACCOUNT}/flexcloud/images/detail"),
            FaultAction::Status {
                status: 503,
                body: None,
                retry_after: None,
            },
        )
        .with_query(&format!("zone={ZONE}")),
    );
    let zone = format!("account_id=\"{ACCOUNT}\",zone_id=\"{ZONE}\"");
    wait_for("Prometheus to see the zone fail", &mut all, || {
        let failed = instant_query(prom, &format!("flexcloud_probe_success{{{zone}}} == 0"))?;
        if failed.is_empty() {
            Err("the zone's probe still succeeds".into())
        } else {
            Ok(())
        }
    });
    let no_resolve_for = |what: &str, how_long: Duration, all: &mut [&mut Running]| {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            for process in all.iter_mut() {
                process.assert_alive();
            }
            let resolved = stuck_alerts(&receiver.deliveries(), "resolved");
            assert!(resolved.is_empty(), "resolved {what}: {resolved:?}");
            thread::sleep(Duration::from_millis(500));
        }
    };
    no_resolve_for("during the outage", OUTAGE, &mut all);
    // Well past the stale bound: the zone's counts are gone, its SAVING image is held, and
    // the alert still fires.
    let counts = instant_query(prom, &format!("flexcloud_images{{{zone}}}")).unwrap();
    assert!(
        counts.is_empty(),
        "counts outlived FLEXCLOUD_STALE_AFTER: {counts:?}"
    );
    let held = instant_query(
        prom,
        &format!("flexcloud_image_saving_created_timestamp_seconds{{{zone}}}"),
    )
    .unwrap();
    assert_eq!(held.len(), 1, "the SAVING image is held: {held:?}");
    firing_with(prom, ALERT, &[("zone_id", ZONE), ("image_id", IMAGE_ID)])
        .unwrap_or_else(|e| panic!("{e}"));

    // Fixed at the API while the zone still fails: nobody can know yet.
    api.sim.update(|scenario| {
        for image in scenario.images.iter_mut().filter(|i| i.id == IMAGE_ID) {
            image.status = "ACTIVE".into();
        }
    });
    no_resolve_for(
        "while the zone could not be read",
        Duration::from_secs(5),
        &mut all,
    );

    // The zone answers again and shows the image ACTIVE: now it resolves.
    api.sim.clear_faults();
    let resolved = wait_for("the resolve to be delivered", &mut all, || {
        stuck_alerts(&receiver.deliveries(), "resolved")
            .into_iter()
            .next()
            .ok_or_else(|| "no resolved FlexcloudImageStuckSaving yet".to_string())
    });
    assert_eq!(
        resolved["labels"], fired["labels"],
        "the same alert resolves"
    );
    // The failure alert of the outage resolves with it.
    wait_for("the failing probe's resolve", &mut all, || {
        let deliveries = receiver.deliveries();
        deliveries
            .iter()
            .flat_map(|d| d["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| {
                a["status"] == "resolved"
                    && a["labels"]["alertname"] == "FlexcloudProbeFailing"
                    && a["labels"]["zone_id"] == ZONE
            })
            .ok_or_else(|| "no resolved FlexcloudProbeFailing yet".to_string())
    });
    // Never a second firing episode: one page for the incident.
    let starts: Vec<Value> = stuck_alerts(&receiver.deliveries(), "firing")
        .iter()
        .map(|a| a["startsAt"].clone())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] == w[1]),
        "the alert started more than once: {starts:?}"
    );

    // Stop everything before removing the directory Prometheus and Alertmanager write into.
    drop(prometheus);
    drop(alertmanager);
    drop(exporter);
    drop(api);
    drop(receiver);
    let _ = fs::remove_dir_all(&dir);
}
