//! Shared test helpers: exporter configs against a simulator, and an exposition parser.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

pub mod promtool;

use std::collections::BTreeMap;
use std::sync::Arc;

use flexcloud_exporter::config::Config;
use flexcloud_exporter::metrics::Published;
use flexcloud_exporter::{Exporter, Pipeline, Shutdown};
use flexcloud_sim::{Scenario, Simulator};
use tokio::sync::watch;

pub const USER: &str = "exporter";
pub const PASSWORD: &str = "pa55-W0rd-never-shown";

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
    Metrics::parse(std::str::from_utf8(&exposition.text).expect("utf-8 exposition"))
}

/// A simulator and a collector against it, cycled by hand.
pub struct Harness {
    pub sim: Simulator,
    pub pipeline: Pipeline,
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
        let pipeline = Exporter::new(config).expect("exporter builds").pipeline();
        Harness {
            sim,
            published: pipeline.subscribe(),
            pipeline,
            stop_server: None,
        }
    }

    /// Runs one cycle and returns the metrics it published.
    pub async fn cycle(&mut self) -> Metrics {
        self.pipeline.run_cycle().await;
        self.metrics()
    }

    pub fn metrics(&self) -> Metrics {
        let text = self.published.borrow().exposition.text.clone();
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
            }),
        };
        let router = flexcloud_exporter::server::router(state);
        let (trigger, shutdown) = Shutdown::new();
        self.stop_server = Some(trigger);
        tokio::spawn(flexcloud_exporter::server::serve(
            listener,
            router,
            None,
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
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (
                    name,
                    parse_labels(rest.strip_suffix('}').expect("closing brace")),
                ),
                None => (series, Vec::new()),
            };
            samples.insert(
                key(name, &labels),
                value.parse::<f64>().expect("numeric value"),
            );
        }
        Metrics {
            samples,
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

/// Parses `a="x",b="y\"z"` into pairs, unescaping values.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        pairs.push((name.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    pairs
}
