//! Every metric name, help text and unit in one place: snapshot -> exposition bytes.
//!
//! A cycle's metrics are encoded once, in both formats, when the cycle ends; a scrape
//! only copies out those bytes and appends the process metrics.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tracing::warn;

use crate::api::model::ImageProblem;
use crate::api::{Code, Endpoint, ImageType, RequestObserver};
use crate::snapshot::{Outcome, SavingImage, Snapshot, bounded};
use crate::timestamp::unix_seconds;

/// Appended to HELP texts: the values come from a poll, not from the scrape.
const POLLED: &str = "Collected by a periodic poll of the FlexCloud API (FLEXCLOUD_INTERVAL, default 60s), not at scrape time";

/// Latency buckets for API requests, in seconds: the API is slow, answers take from tens
/// of milliseconds to the request timeout.
const LATENCY_BUCKETS: [f64; 11] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Code {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.label())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    account_id: Option<String>,
    endpoint: Endpoint,
    code: Code,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    account_id: Option<String>,
    endpoint: Endpoint,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

impl EncodeLabelValue for ImageProblem {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepOnlyLabels {
    endpoint: Endpoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProblemLabels {
    account_id: String,
    reason: ImageProblem,
}

/// The exporter's metrics: the handles that live across cycles (every API request and its
/// latency, the SAVING series cut by the cap) and the encoding of each cycle's snapshot.
/// Shared behind an `Arc`: the API client reports requests to it as they end.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    saving_dropped: Counter,
    invalid_images: Family<ProblemLabels, Counter>,
    unusable_ids: Family<StepOnlyLabels, Counter>,
    /// Per account: when a cycle last had it, and the request series it has, so the series
    /// of an account gone from discovery can go too.
    accounts: std::sync::Mutex<HashMap<String, AccountSeries>>,
    /// How long an account may be gone before its series go (`FLEXCLOUD_STALE_AFTER`).
    forget_after: Duration,
    /// Most per-image SAVING series in one exposition (`FLEXCLOUD_SAVING_SERIES_LIMIT`).
    saving_limit: usize,
    /// Whether the previous encoding cut SAVING series, so the warning comes once per
    /// stretch of cutting rather than every cycle.
    cutting_saving_series: AtomicBool,
}

impl RequestObserver for Metrics {
    fn request_ended(&self, account: Option<&str>, endpoint: Endpoint, code: Code, took: Duration) {
        let account_id = account.map(bounded);
        if let Some(id) = &account_id {
            let mut accounts = self.lock_accounts();
            let series = accounts.entry(id.clone()).or_insert_with(|| AccountSeries {
                seen: SystemTime::now(),
                requests: HashSet::new(),
            });
            series.requests.insert((endpoint, code));
        }
        self.requests
            .get_or_create(&RequestLabels {
                account_id: account_id.clone(),
                endpoint,
                code,
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels {
                account_id,
                endpoint,
            })
            .observe(took.as_secs_f64());
    }
}

impl Metrics {
    pub fn new(saving_limit: usize) -> Self {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            saving_dropped: Counter::default(),
            invalid_images: Family::default(),
            unusable_ids: Family::default(),
            accounts: std::sync::Mutex::new(HashMap::new()),
            forget_after: Duration::MAX,
            saving_limit,
            cutting_saving_series: AtomicBool::new(false),
        }
    }

    /// Series of accounts that have been gone from every cycle for longer than `after` are
    /// removed, so churn cannot grow them without bound.
    pub fn forgetting_after(mut self, after: Duration) -> Self {
        self.forget_after = after;
        self
    }

    fn lock_accounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, AccountSeries>> {
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes the accounts of `snapshot` as seen at `now` and removes the series of those gone
    /// for longer than the stale period.
    fn forget_gone_accounts(&self, snapshot: &Snapshot, now: SystemTime) {
        let mut accounts = self.lock_accounts();
        let present = snapshot
            .zones
            .keys()
            .map(|(account, _)| account)
            .chain(snapshot.zones_discovery.keys());
        for account in present {
            accounts
                .entry(bounded(account))
                .or_insert_with(|| AccountSeries {
                    seen: now,
                    requests: HashSet::new(),
                })
                .seen = now;
        }
        accounts.retain(|account_id, series| {
            let gone_for = now.duration_since(series.seen).unwrap_or(Duration::ZERO);
            if gone_for <= self.forget_after {
                return true;
            }
            let account_id = Some(account_id.clone());
            for (endpoint, code) in &series.requests {
                self.requests.remove(&RequestLabels {
                    account_id: account_id.clone(),
                    endpoint: *endpoint,
                    code: *code,
                });
                self.latency.remove(&EndpointLabels {
                    account_id: account_id.clone(),
                    endpoint: *endpoint,
                });
            }
            for reason in [
                ImageProblem::Malformed,
                ImageProblem::Duplicate,
                ImageProblem::BadCreated,
            ] {
                self.invalid_images.remove(&ProblemLabels {
                    account_id: account_id.clone().unwrap_or_default(),
                    reason,
                });
            }
            false
        });
    }

    /// Encodes a finished cycle (or, before the first, nothing but self-metrics) with the
    /// long-lived counters. Call once per cycle: the SAVING cap counts what it cuts.
    pub fn encode(&self, snapshot: Option<&Snapshot>, now: SystemTime) -> Exposition {
        let mut registry = Registry::default();
        if let Some(snapshot) = snapshot {
            // Counted before the counters are registered, so this exposition includes them.
            self.forget_gone_accounts(snapshot, now);
            self.count_image_problems(snapshot);
            for (endpoint, n) in &snapshot.unusable_ids {
                self.unusable_ids
                    .get_or_create(&StepOnlyLabels {
                        endpoint: *endpoint,
                    })
                    .inc_by(*n);
            }
            let saving = self.cap_saving_series(snapshot);
            register_snapshot(&mut registry, snapshot, &saving, now);
        }
        self.register_lasting(&mut registry);
        let backoff = snapshot.map_or(Duration::ZERO, |s| s.credentials.wait());
        registry.register_with_unit(
            "flexcloud_credential_backoff",
            "Time the exporter waits before sending credentials again after the API rejected them (0 when not backing off)",
            Unit::Seconds,
            ConstGauge::new(backoff.as_secs_f64()),
        );
        let held = Family::<AccountLabels, FloatGauge>::default();
        for (account, state) in snapshot.iter().flat_map(|s| &s.held_accounts) {
            held.get_or_create(&AccountLabels {
                account_id: bounded(account),
            })
            .set(state.wait().as_secs_f64());
        }
        registry.register_with_unit(
            "flexcloud_account_credential_backoff",
            "Time the exporter waits before sending credentials for this account again after a 401 that concerned it only; the other accounts go on",
            Unit::Seconds,
            held,
        );
        register_build_info(&mut registry);
        let mut text = String::new();
        let mut openmetrics = String::new();
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut openmetrics, &registry);
        Exposition {
            text: Bytes::from(text),
            openmetrics: Bytes::from(openmetrics),
        }
    }

    /// The SAVING images that get a series of their own: those with a readable creation
    /// time, oldest first (the ones an operator must hear about), at most the limit.
    fn cap_saving_series<'a>(&self, snapshot: &'a Snapshot) -> Vec<SavingRow<'a>> {
        let mut rows: Vec<SavingRow<'a>> = snapshot
            .zones
            .iter()
            .filter_map(|(key, state)| Some((key, state.inventory.as_ref()?)))
            .flat_map(|((account, zone), inventory)| {
                inventory.saving.iter().filter_map(move |image| {
                    Some(SavingRow {
                        created: image.created?,
                        account,
                        zone,
                        image,
                    })
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            a.created
                .total_cmp(&b.created)
                .then_with(|| a.image.id.cmp(&b.image.id))
        });
        let dropped = rows.len().saturating_sub(self.saving_limit);
        rows.truncate(self.saving_limit);
        let was_cutting = self
            .cutting_saving_series
            .swap(dropped > 0, Ordering::Relaxed);
        if dropped > 0 {
            self.saving_dropped.inc_by(dropped as u64);
            if !was_cutting {
                warn!(
                    dropped,
                    limit = self.saving_limit,
                    "too many SAVING images; exporting the oldest only"
                );
            }
        }
        rows
    }

    /// Adds the odd entries of the lists read in this cycle (not those of inventories carried
    /// over from earlier cycles, which were counted then).
    fn count_image_problems(&self, snapshot: &Snapshot) {
        for ((account, _), state) in &snapshot.zones {
            if !state.probe.as_ref().is_some_and(|p| p.success) {
                continue;
            }
            let Some(inventory) = &state.inventory else {
                continue;
            };
            for (problem, n) in &inventory.problems {
                self.invalid_images
                    .get_or_create(&ProblemLabels {
                        account_id: bounded(account),
                        reason: *problem,
                    })
                    .inc_by(*n);
            }
        }
    }

    fn register_lasting(&self, registry: &mut Registry) {
        registry.register(
            "flexcloud_api_requests",
            "API requests by account, endpoint and result code (HTTP status, or timeout, connect_error, invalid_response)",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "flexcloud_api_request_duration",
            "Latency of API requests",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "flexcloud_image_saving_series_dropped",
            "SAVING-image series left out because of FLEXCLOUD_SAVING_SERIES_LIMIT",
            self.saving_dropped.clone(),
        );
        registry.register(
            "flexcloud_api_unusable_ids",
            "Ids the API listed that cannot be asked for (empty, . or ..), never requested, by the endpoint that listed them",
            self.unusable_ids.clone(),
        );
        registry.register(
            "flexcloud_api_invalid_images",
            "Image list entries the exporter could not count as they stood, by account and reason: malformed (skipped), duplicate (an id the list already had, counted once), bad_created (counted, without an age)",
            self.invalid_images.clone(),
        );
    }
}

/// What the metrics know of one account's lasting series.
#[derive(Debug)]
struct AccountSeries {
    /// The end of the latest cycle that had the account.
    seen: SystemTime,
    /// The endpoint and code of every request series it has.
    requests: HashSet<(Endpoint, Code)>,
}

/// One SAVING image chosen for a series of its own.
struct SavingRow<'a> {
    created: f64,
    account: &'a str,
    zone: &'a str,
    image: &'a SavingImage,
}

fn register_build_info(registry: &mut Registry) {
    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            revision: env!("FLEXCLOUD_REVISION"),
        })
        .set(1);
    registry.register(
        "flexcloud_exporter_build_info",
        "A metric with a constant 1 labelled by the exporter's version and source revision",
        build,
    );
}

/// The latest finished cycle as the server shows it.
#[derive(Debug, Clone)]
pub struct Published {
    /// `None` until the first cycle has finished.
    pub snapshot: Option<Arc<Snapshot>>,
    pub exposition: Exposition,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImageLabels {
    account_id: String,
    zone_id: String,
    status: String,
    image_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    account_id: String,
    zone_id: String,
    image_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SavingLabels {
    account_id: String,
    zone_id: String,
    image_type: &'static str,
    image_id: String,
    image_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    account_id: String,
    zone_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    account_id: Option<String>,
    step: Endpoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The exposition of one cycle in both formats, without the OpenMetrics `# EOF`.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: Bytes,
    pub openmetrics: Bytes,
}

fn help(text: &str) -> String {
    format!("{text}. {POLLED}")
}

fn register_snapshot(
    registry: &mut Registry,
    snapshot: &Snapshot,
    saving_rows: &[SavingRow<'_>],
    now: SystemTime,
) {
    let images = Family::<ImageLabels, Gauge>::default();
    let oldest = Family::<TypeLabels, FloatGauge>::default();
    let saving = Family::<SavingLabels, FloatGauge>::default();
    let probe_success = Family::<ZoneLabels, Gauge>::default();
    let probe_duration = Family::<ZoneLabels, FloatGauge>::default();
    let probe_status = Family::<ZoneLabels, Gauge>::default();
    let last_success = Family::<ZoneLabels, FloatGauge>::default();
    let discovery_success = Family::<StepLabels, Gauge>::default();
    let discovery_status = Family::<StepLabels, Gauge>::default();
    let now_s = unix_seconds(now);

    for ((account, zone), state) in &snapshot.zones {
        let zone_labels = ZoneLabels {
            account_id: bounded(account),
            zone_id: bounded(zone),
        };
        if let Some(probe) = &state.probe {
            probe_success
                .get_or_create(&zone_labels)
                .set(i64::from(probe.success));
            probe_duration
                .get_or_create(&zone_labels)
                .set(probe.duration.as_secs_f64());
            probe_status
                .get_or_create(&zone_labels)
                .set(i64::from(probe.http_status));
        }
        if let Some(at) = state.last_success {
            last_success
                .get_or_create(&zone_labels)
                .set(unix_seconds(at));
        }
        let Some(inventory) = &state.inventory else {
            continue;
        };
        for (image_type, status, n) in inventory.count_rows() {
            images
                .get_or_create(&ImageLabels {
                    account_id: zone_labels.account_id.clone(),
                    zone_id: zone_labels.zone_id.clone(),
                    status,
                    image_type: image_type.as_str(),
                })
                .set(n as i64);
        }
        for image_type in ImageType::ALL {
            let age = inventory
                .oldest_saving(image_type)
                .map_or(0.0, |c| (now_s - c).max(0.0));
            oldest
                .get_or_create(&TypeLabels {
                    account_id: zone_labels.account_id.clone(),
                    zone_id: zone_labels.zone_id.clone(),
                    image_type: image_type.as_str(),
                })
                .set(age);
        }
    }
    for row in saving_rows {
        saving
            .get_or_create(&SavingLabels {
                account_id: bounded(row.account),
                zone_id: bounded(row.zone),
                image_type: row.image.image_type.as_str(),
                image_id: row.image.id.clone(),
                image_name: row.image.name.clone(),
            })
            .set(row.created);
    }

    let set_step = |account: Option<&str>, step: Endpoint, outcome: &Outcome| {
        let labels = StepLabels {
            account_id: account.map(bounded),
            step,
        };
        discovery_success
            .get_or_create(&labels)
            .set(i64::from(outcome.success));
        discovery_status
            .get_or_create(&labels)
            .set(i64::from(outcome.http_status));
    };
    if let Some(outcome) = &snapshot.accounts_discovery {
        set_step(None, Endpoint::Accounts, outcome);
    }
    for (account, outcome) in &snapshot.zones_discovery {
        set_step(Some(account), Endpoint::Zones, outcome);
    }

    registry.register(
        "flexcloud_images",
        help("Images by account, zone, status and type; an image in several zones counts in each"),
        images,
    );
    registry.register_with_unit(
        "flexcloud_images_saving_oldest_age",
        help("Age of the oldest SAVING image of the account, zone and type at the end of the latest cycle, 0 when none"),
        Unit::Seconds,
        oldest,
    );
    registry.register_with_unit(
        "flexcloud_image_saving_created_timestamp",
        help("Creation time of each SAVING image, one series per image (capped by FLEXCLOUD_SAVING_SERIES_LIMIT, oldest kept)"),
        Unit::Seconds,
        saving,
    );
    registry.register(
        "flexcloud_probe_success",
        help("1 when every request of the latest probe of the account and zone got a 200 with a valid body, else 0"),
        probe_success,
    );
    registry.register_with_unit(
        "flexcloud_probe_duration",
        help("Wall time of the latest probe"),
        Unit::Seconds,
        probe_duration,
    );
    registry.register(
        "flexcloud_probe_http_status_code",
        help("HTTP status that decided the latest probe: the failing one, else 200; 0 when no response arrived"),
        probe_status,
    );
    registry.register_with_unit(
        "flexcloud_last_success_timestamp",
        help("Unix time of the latest successful probe of the account and zone"),
        Unit::Seconds,
        last_success,
    );
    registry.register(
        "flexcloud_discovery_success",
        help("1 when the latest discovery step (step=accounts: GET /accounts; step=zones: the account's zone list) succeeded"),
        discovery_success,
    );
    registry.register(
        "flexcloud_discovery_http_status_code",
        help("HTTP status that decided the latest discovery step; 0 when no response arrived"),
        discovery_status,
    );
    registry.register(
        "flexcloud_up",
        help("1 when the latest cycle reached the API and the credentials were accepted, else 0"),
        ConstGauge::new(i64::from(snapshot.up)),
    );
    registry.register_with_unit(
        "flexcloud_collection_duration",
        "Duration of the latest collection cycle",
        Unit::Seconds,
        ConstGauge::new(snapshot.duration.as_secs_f64()),
    );
    registry.register_with_unit(
        "flexcloud_last_collection_timestamp",
        "Unix time the latest collection cycle ended",
        Unit::Seconds,
        ConstGauge::new(snapshot.completed_at.map_or(0.0, unix_seconds)),
    );
    registry.register(
        "flexcloud_accounts_watched",
        help("Accounts in the latest cycle"),
        ConstGauge::new(snapshot.account_count() as i64),
    );
    registry.register(
        "flexcloud_zones_watched",
        help("Account and zone pairs in the latest cycle"),
        ConstGauge::new(snapshot.zones.len() as i64),
    );
    registry.register(
        "flexcloud_collection_cycles",
        "Collection cycles completed since the exporter started",
        ConstCounter::new(snapshot.cycle),
    );
}

/// One reading of `/proc/self`. A scrape encodes it in both formats, so `/proc` is read
/// once per scrape, not once per format: it is most of a scrape's fixed cost.
#[derive(Debug, Default, Clone, Copy)]
struct ProcessSample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    start_time: Option<f64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl ProcessSample {
    fn read() -> Self {
        let mut sample = ProcessSample::default();
        let Ok(me) = procfs::process::Process::myself() else {
            return sample;
        };
        let ticks = procfs::ticks_per_second() as f64;
        if let Ok(stat) = me.stat() {
            sample.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
            sample.resident_bytes = Some((stat.rss * procfs::page_size()) as f64);
            sample.virtual_bytes = Some(stat.vsize as f64);
            sample.start_time = procfs::boot_time_secs()
                .ok()
                .map(|boot| boot as f64 + stat.starttime as f64 / ticks);
        }
        sample.open_fds = me.fd_count().ok().map(|n| n as i64);
        sample.max_fds =
            me.limits()
                .ok()
                .and_then(|limits| match limits.max_open_files.soft_limit {
                    procfs::process::LimitValue::Value(max) => Some(max as i64),
                    procfs::process::LimitValue::Unlimited => None,
                });
        sample
    }
}

impl prometheus_client::collector::Collector for ProcessSample {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = self.cpu_seconds {
            let cpu = ConstCounter::new(cpu);
            let e = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?;
            cpu.encode(e)?;
        }
        let gauges = [
            (
                self.resident_bytes,
                "process_resident_memory",
                "Resident memory size in bytes",
                Unit::Bytes,
            ),
            (
                self.virtual_bytes,
                "process_virtual_memory",
                "Virtual memory size in bytes",
                Unit::Bytes,
            ),
            (
                self.start_time,
                "process_start_time",
                "Start time of the process since unix epoch in seconds",
                Unit::Seconds,
            ),
        ];
        for (value, name, help, unit) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let e = encoder.encode_descriptor(name, help, Some(&unit), gauge.metric_type())?;
                gauge.encode(e)?;
            }
        }
        let counts = [
            (
                self.open_fds,
                "process_open_fds",
                "Number of open file descriptors",
            ),
            (
                self.max_fds,
                "process_max_fds",
                "Maximum number of open file descriptors",
            ),
        ];
        for (value, name, help) in counts {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let e = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(e)?;
            }
        }
        Ok(())
    }
}

/// Counters of the endpoint itself. Unlike the cycle's metrics they change between cycles,
/// so they are encoded at scrape time with the process metrics.
#[derive(Debug, Default)]
pub struct EndpointMetrics {
    connections_refused: Counter,
}

impl EndpointMetrics {
    /// A connection was closed at once because the connection limit was reached.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }
}

/// The metrics read at scrape time (the process's, and the endpoint's when there is one) in
/// the classic text format and in OpenMetrics (with `# EOF`).
pub fn encode_scrape_time(endpoint: Option<&EndpointMetrics>) -> (String, String) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessSample::read()));
    if let Some(endpoint) = endpoint {
        registry.register(
            "flexcloud_web_connections_rejected",
            "Connections to the endpoint closed at once because FLEXCLOUD_WEB_MAX_CONNECTIONS were open",
            endpoint.connections_refused.clone(),
        );
    }
    let mut text = String::new();
    let mut openmetrics = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    let _ = prometheus_client::encoding::text::encode(&mut openmetrics, &registry);
    (text, openmetrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(exposition: &str) -> Vec<&str> {
        exposition
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' ').map(|(name, _)| name))
            .collect()
    }

    #[test]
    fn scrape_time_metrics_are_the_standard_process_series_and_the_endpoints_in_both_formats() {
        let endpoint = EndpointMetrics::default();
        endpoint.connection_refused();
        let (text, openmetrics) = encode_scrape_time(Some(&endpoint));
        // A registry writes its own metrics before those of its collectors.
        let expected = [
            "flexcloud_web_connections_rejected_total",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
        ];
        assert_eq!(names(&text), expected);
        assert_eq!(names(&openmetrics), expected);
        assert!(openmetrics.ends_with("# EOF\n"));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
        assert!(text.contains("flexcloud_web_connections_rejected_total 1\n"));
    }
}
