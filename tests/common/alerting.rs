//! Alert delivery for the end-to-end tests: Alertmanager with the example configuration
//! pointed at a webhook receiver on loopback, which keeps every delivery and writes them
//! under target/ when it stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;

use crate::e2e::{Running, repo};

pub const ALERTMANAGER_CONFIG: &str = "deploy/alertmanager/alertmanager.yml";

/// A webhook receiver: every POST body it gets, parsed as JSON, in arrival order. When
/// dropped it stops, writes what it got to target/<file> and prints each alert, so a
/// failing run leaves them too.
pub struct Receiver {
    pub addr: SocketAddr,
    file: &'static str,
    deliveries: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(file: &'static str) -> Receiver {
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
            file,
            deliveries,
            stop,
            thread: Some(thread),
        }
    }

    pub fn deliveries(&self) -> Vec<Value> {
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
        let path = deliveries_file(self.file);
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

fn deliveries_file(name: &str) -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join(name)
}

/// Every alert of every delivery, in arrival order.
pub fn delivered_alerts(deliveries: &[Value]) -> Vec<Value> {
    deliveries
        .iter()
        .flat_map(|d| d["alerts"].as_array().cloned().unwrap_or_default())
        .collect()
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

pub fn start_alertmanager(dir: &Path, receiver: SocketAddr) -> Running {
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

/// The `alerting` section that points Prometheus at Alertmanager at `am`.
pub fn alerting_to(am: SocketAddr) -> String {
    format!("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n")
}
