//! Every metric name, help text and unit in one place: snapshot -> exposition bytes.
//!
//! A cycle's metrics are encoded once, in both formats, when the cycle ends, straight from
//! the snapshot and the lasting counters in the order of their labels, so two scrapes can
//! be compared line by line; a scrape only hands out those bytes and appends the
//! scrape-time metrics ([`process`]).

mod exposition;
mod process;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
    LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tracing::warn;

pub use exposition::{Demand, Encoded, Exposition, Format, Writer};
pub use process::{EndpointMetrics, encode_scrape_time};

use crate::api::model::ImageProblem;
use crate::api::{Code, Endpoint, ImageType, RequestObserver};
use crate::config::Shard;
use crate::lifecycle::Status;
use crate::snapshot::{Snapshot, bounded, bounded_label};
use crate::timestamp::unix_seconds;

/// Appended to HELP texts: the values come from a poll, not from the scrape.
const POLLED: &str = "Collected by a periodic poll of the FlexCloud API (FLEXCLOUD_INTERVAL, default 60s), not at scrape time";

/// Latency buckets for API requests, in seconds: the API is slow, answers take from tens
/// of milliseconds to the request timeout.
const LATENCY_BUCKETS: [f64; 11] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];

const ENDPOINTS: [Endpoint; 3] = [Endpoint::Accounts, Endpoint::Zones, Endpoint::ImagesDetail];

/// Save-duration buckets, in seconds: one minute to a day. Saves are seen once per cycle,
/// so finer buckets than the interval would claim a precision the data does not have.
const SAVE_BUCKETS: [f64; 11] = [
    60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];

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

impl EncodeLabelValue for ImageProblem {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The counters that live across cycles, in label order.
#[derive(Debug, Clone, Default)]
struct Lasting {
    /// `(account_id, endpoint, code)`; no account for the account list.
    requests: BTreeMap<(Option<String>, Endpoint, Code), u64>,
    invalid_images: BTreeMap<(String, ImageProblem), u64>,
    unusable_ids: BTreeMap<Endpoint, u64>,
    saving_dropped: u64,
    /// `(account_id, image_type, from, to)`.
    transitions: BTreeMap<(String, ImageType, Status, Status), u64>,
    appeared: BTreeMap<String, u64>,
    disappeared: BTreeMap<String, u64>,
    lifecycle_dropped: u64,
    /// When a cycle last had each account, so the series of one gone from discovery can go.
    seen: HashMap<String, SystemTime>,
}

/// The exporter's metrics: what lives across cycles (every API request, the latency per
/// endpoint, the SAVING series cut by the cap, odd entries) and the encoding of each
/// cycle. Shared behind an `Arc`: the API client reports requests to it as they end.
#[derive(Debug)]
pub struct Metrics {
    lasting: Mutex<Lasting>,
    /// One histogram per endpoint, in [`ENDPOINTS`] order: latency per account would cost
    /// 14 series an account and endpoint that nobody reads.
    latency: [Histogram; 3],
    /// Completed saves by type, in [`ImageType::ALL`] order: per account would be 13
    /// series an account for a figure read fleet-wide.
    save_duration: [Histogram; 2],
    /// Most per-image SAVING series in one exposition (`FLEXCLOUD_SAVING_SERIES_LIMIT`).
    saving_limit: usize,
    /// Whether the previous encoding cut SAVING series, so the warning comes once per
    /// stretch of cutting rather than every cycle.
    cutting_saving_series: AtomicBool,
    /// How long an account may be gone before its series go (`FLEXCLOUD_STALE_AFTER`).
    forget_after: Duration,
    /// Series and bytes of the previous exposition, uncompressed, in its first format.
    previous_series: AtomicU64,
    previous_bytes: AtomicU64,
    demand: Arc<Demand>,
    /// Shard N of M this exporter collects; 1 of 1 when unsharded.
    shard: Shard,
}

impl RequestObserver for Metrics {
    fn request_ended(&self, account: Option<&str>, endpoint: Endpoint, code: Code, took: Duration) {
        let account_id = account.map(bounded);
        {
            let mut lasting = self.lock();
            if let Some(id) = &account_id {
                if !lasting.seen.contains_key(id) {
                    lasting.seen.insert(id.clone(), SystemTime::now());
                }
            }
            *lasting
                .requests
                .entry((account_id, endpoint, code))
                .or_default() += 1;
        }
        if let Some(position) = ENDPOINTS.iter().position(|e| *e == endpoint) {
            self.latency[position].observe(took.as_secs_f64());
        }
    }
}

impl Metrics {
    pub fn new(saving_limit: usize) -> Self {
        Metrics {
            lasting: Mutex::new(Lasting::default()),
            latency: std::array::from_fn(|_| Histogram::new(LATENCY_BUCKETS)),
            save_duration: std::array::from_fn(|_| Histogram::new(SAVE_BUCKETS)),
            saving_limit,
            cutting_saving_series: AtomicBool::new(false),
            forget_after: Duration::MAX,
            previous_series: AtomicU64::new(0),
            previous_bytes: AtomicU64::new(0),
            demand: Arc::new(Demand::default()),
            shard: Shard { index: 1, count: 1 },
        }
    }

    /// The shard exported as `flexcloud_shard_ordinal` and `flexcloud_shards`, so that
    /// replicas which disagree on the count, or a missing one, can be alerted on.
    pub fn in_shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard.unwrap_or(Shard { index: 1, count: 1 });
        self
    }

    /// Series of accounts that have been gone from every cycle for longer than `after` are
    /// removed, so churn cannot grow them without bound.
    pub fn forgetting_after(mut self, after: Duration) -> Self {
        self.forget_after = after;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Lasting> {
        // Counters only; consistent after any panic.
        self.lasting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Encodes a finished cycle (or, before the first, nothing but self-metrics) with the
    /// lasting counters. Call once per cycle: the counters add what the cycle found.
    pub fn encode(&self, snapshot: Option<Arc<Snapshot>>, now: SystemTime) -> Exposition {
        let lasting = {
            let mut lasting = self.lock();
            if let Some(snapshot) = &snapshot {
                // Counted before the copy is taken, so this exposition includes them.
                self.forget_gone_accounts(&mut lasting, snapshot, now);
                count_cycle(&mut lasting, snapshot);
                for (image_type, seconds) in &snapshot.lifecycle.saves {
                    let index = usize::from(*image_type == ImageType::Server);
                    self.save_duration[index].observe(*seconds);
                }
            }
            lasting.clone()
        };
        let saving = snapshot
            .as_ref()
            .map(|s| self.cap_saving_series(s))
            .unwrap_or_default();
        let lasting = {
            let mut lasting = lasting;
            lasting.saving_dropped += saving.dropped;
            if saving.dropped > 0 {
                self.lock().saving_dropped += saving.dropped;
            }
            lasting
        };
        let collector = CycleCollector {
            snapshot,
            saving: saving.kept,
            lasting,
            latency: self.latency.clone(),
            save_duration: self.save_duration.clone(),
            previous_series: self.previous_series.load(Ordering::Relaxed),
            previous_bytes: self.previous_bytes.load(Ordering::Relaxed),
            shard: self.shard,
            now,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        let exposition = Exposition::new(registry, self.demand.clone());
        let measured = exposition.measured();
        self.previous_series
            .store(measured.samples(), Ordering::Relaxed);
        self.previous_bytes.store(measured.len(), Ordering::Relaxed);
        exposition
    }

    /// Notes the accounts of `snapshot` as seen at `now` and removes the series of those gone
    /// for longer than the stale period.
    fn forget_gone_accounts(&self, lasting: &mut Lasting, snapshot: &Snapshot, now: SystemTime) {
        let present = snapshot
            .zones
            .keys()
            .map(|(account, _)| account)
            .chain(snapshot.zones_discovery.keys());
        for account in present {
            lasting.seen.insert(bounded(account), now);
        }
        let forget_after = self.forget_after;
        let gone: Vec<String> = lasting
            .seen
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen).unwrap_or(Duration::ZERO) > forget_after)
            .map(|(account, _)| account.clone())
            .collect();
        for account in gone {
            lasting.seen.remove(&account);
            lasting
                .requests
                .retain(|(id, _, _), _| id.as_deref() != Some(account.as_str()));
            lasting.invalid_images.retain(|(id, _), _| *id != account);
            lasting
                .transitions
                .retain(|(id, _, _, _), _| *id != account);
            lasting.appeared.remove(&account);
            lasting.disappeared.remove(&account);
        }
    }

    /// The SAVING images that get a series of their own: those with a readable creation
    /// time, oldest first (the ones an operator must hear about), at most the limit.
    fn cap_saving_series(&self, snapshot: &Snapshot) -> SavingCut {
        let mut rows: Vec<SavingKey> = Vec::new();
        for ((account, zone), state) in &snapshot.zones {
            for (index, image) in state.saving_images().iter().enumerate() {
                if let Some(created) = image.created {
                    rows.push(SavingKey {
                        created,
                        zone: (account.clone(), zone.clone()),
                        index,
                        id: image.id.clone(),
                    });
                }
            }
        }
        rows.sort_by(|a, b| {
            a.created
                .total_cmp(&b.created)
                .then_with(|| a.id.cmp(&b.id))
        });
        let dropped = rows.len().saturating_sub(self.saving_limit);
        rows.truncate(self.saving_limit);
        let was_cutting = self
            .cutting_saving_series
            .swap(dropped > 0, Ordering::Relaxed);
        if dropped > 0 && !was_cutting {
            warn!(
                dropped,
                limit = self.saving_limit,
                "too many SAVING images; exporting the oldest only"
            );
        }
        SavingCut {
            kept: rows,
            dropped: dropped as u64,
        }
    }
}

/// Adds what a cycle found to the lasting counters: the odd entries of the lists read in
/// it (not of inventories carried over from earlier cycles, which were counted then) and
/// the ids never asked for.
fn count_cycle(lasting: &mut Lasting, snapshot: &Snapshot) {
    for ((account, _), state) in &snapshot.zones {
        if !state.probe.as_ref().is_some_and(|p| p.success) {
            continue;
        }
        let Some(inventory) = &state.inventory else {
            continue;
        };
        for (problem, n) in &inventory.problems {
            *lasting
                .invalid_images
                .entry((bounded(account), *problem))
                .or_default() += n;
        }
    }
    for (endpoint, n) in &snapshot.unusable_ids {
        *lasting.unusable_ids.entry(*endpoint).or_default() += n;
    }
    let lifecycle = &snapshot.lifecycle;
    for ((account, image_type, from, to), n) in &lifecycle.transitions {
        *lasting
            .transitions
            .entry((bounded(account), *image_type, *from, *to))
            .or_default() += n;
    }
    for (account, n) in &lifecycle.appeared {
        *lasting.appeared.entry(bounded(account)).or_default() += n;
    }
    for (account, n) in &lifecycle.disappeared {
        *lasting.disappeared.entry(bounded(account)).or_default() += n;
    }
    lasting.lifecycle_dropped += lifecycle.dropped;
}

/// The SAVING images the cap keeps, and how many it cuts.
#[derive(Debug, Default)]
struct SavingCut {
    kept: Vec<SavingKey>,
    dropped: u64,
}

/// One SAVING image chosen for a series of its own, by where it stands in the snapshot.
#[derive(Debug, Clone)]
struct SavingKey {
    created: f64,
    zone: (String, String),
    index: usize,
    id: String,
}

/// The latest finished cycle as the server shows it.
#[derive(Debug, Clone)]
pub struct Published {
    /// `None` until the first cycle has finished.
    pub snapshot: Option<Arc<Snapshot>>,
    pub exposition: Exposition,
}

/// A label set that borrows its values, so a series costs no allocation while it is
/// written. (The derive of prometheus-client takes no lifetimes.)
macro_rules! label_set {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Clone, Copy, Debug)]
        struct $name<'a> {
            $($field: $ty),*
        }

        impl EncodeLabelSet for $name<'_> {
            fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
                $( EncodeLabel::encode(&(stringify!($field), self.$field), encoder.encode_label())?; )*
                Ok(())
            }
        }
    };
}

label_set!(ImageLabels {
    account_id: &'a str,
    zone_id: &'a str,
    status: &'a str,
    image_type: &'static str,
});
label_set!(TypeLabels {
    account_id: &'a str,
    zone_id: &'a str,
    image_type: &'static str,
});
label_set!(SavingLabels {
    account_id: &'a str,
    zone_id: &'a str,
    image_type: &'static str,
    image_id: &'a str,
    image_name: &'a str,
});
label_set!(ZoneLabels {
    account_id: &'a str,
    zone_id: &'a str,
});
label_set!(StepLabels {
    account_id: Option<&'a str>,
    step: Endpoint,
});
label_set!(RequestLabels {
    account_id: Option<&'a str>,
    endpoint: Endpoint,
    code: Code,
});
label_set!(ProblemLabels {
    account_id: &'a str,
    reason: ImageProblem,
});
label_set!(AccountLabels {
    account_id: &'a str,
});
label_set!(TransitionLabels {
    account_id: &'a str,
    image_type: &'static str,
    from: &'static str,
    to: &'static str,
});

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImageTypeLabels {
    image_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

fn help(text: &str) -> String {
    format!("{text}. {POLLED}")
}

/// Writes one family: its descriptor, then each row as it comes (in label order). A family
/// without rows is left out, as prometheus-client leaves out an empty family.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric_type: MetricType,
    rows: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut descriptor = encoder.encode_descriptor(name, help, unit, metric_type)?;
    for (labels, metric) in rows {
        metric.encode(descriptor.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One counter per account, from a map of account to count.
fn per_account(
    counts: &BTreeMap<String, u64>,
) -> impl Iterator<Item = (AccountLabels<'_>, ConstCounter)> {
    counts.iter().map(|(account, n)| {
        (
            AccountLabels {
                account_id: account,
            },
            ConstCounter::new(*n),
        )
    })
}

/// A metric without labels.
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: M,
) -> Result<(), std::fmt::Error> {
    let descriptor = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(descriptor)
}

/// One cycle's exposition, written straight from the snapshot and a copy of the lasting
/// counters; encoded once per format.
#[derive(Debug)]
struct CycleCollector {
    snapshot: Option<Arc<Snapshot>>,
    saving: Vec<SavingKey>,
    lasting: Lasting,
    latency: [Histogram; 3],
    save_duration: [Histogram; 2],
    previous_series: u64,
    previous_bytes: u64,
    shard: Shard,
    now: SystemTime,
}

impl Collector for CycleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(snapshot) = &self.snapshot {
            self.encode_snapshot(&mut encoder, snapshot)?;
        }
        self.encode_lasting(&mut encoder)
    }
}

impl CycleCollector {
    fn encode_snapshot(
        &self,
        encoder: &mut DescriptorEncoder,
        snapshot: &Snapshot,
    ) -> Result<(), std::fmt::Error> {
        let seconds = Some(&Unit::Seconds);
        let now_s = unix_seconds(self.now);
        // Label values as the series carry them, computed once for the families below.
        // Borrowed unless cut, so this costs one Vec, not two strings per zone.
        let zones: Vec<(Cow<'_, str>, Cow<'_, str>, &crate::snapshot::ZoneState)> = snapshot
            .zones
            .iter()
            .map(|((a, z), state)| (bounded_label(a), bounded_label(z), state))
            .collect();
        family(
            encoder,
            "flexcloud_images",
            &help(
                "Images by account, zone, status and type; an image in several zones counts in each",
            ),
            None,
            MetricType::Gauge,
            // Zone by zone as they are written: a list of every row would be the largest
            // allocation of the encode (9 MB at 5,000 accounts).
            zones.iter().flat_map(|(account, zone, state)| {
                let mut rows = state
                    .inventory
                    .as_ref()
                    .map(|inventory| inventory.count_rows())
                    .unwrap_or_default();
                rows.sort_by(|a, b| (a.1, a.0.as_str()).cmp(&(b.1, b.0.as_str())));
                rows.into_iter().map(move |(image_type, status, n)| {
                    (
                        ImageLabels {
                            account_id: account,
                            zone_id: zone,
                            status,
                            image_type: image_type.as_str(),
                        },
                        ConstGauge::new(n as i64),
                    )
                })
            }),
        )?;
        family(
            encoder,
            "flexcloud_images_saving_oldest_age",
            &help(
                "Age of the oldest SAVING image of the account, zone and type at the end of the latest cycle, 0 when none",
            ),
            seconds,
            MetricType::Gauge,
            zones.iter().flat_map(|(account, zone, state)| {
                let inventory = state.inventory.as_ref();
                inventory.into_iter().flat_map(move |inventory| {
                    ImageType::ALL.into_iter().map(move |image_type| {
                        let age = inventory
                            .oldest_saving(image_type)
                            .map_or(0.0, |c| (now_s - c).max(0.0));
                        (
                            TypeLabels {
                                account_id: account,
                                zone_id: zone,
                                image_type: image_type.as_str(),
                            },
                            ConstGauge::new(age),
                        )
                    })
                })
            }),
        )?;
        family(
            encoder,
            "flexcloud_images_deleted_oldest_seen_age",
            &help(
                "Time since the exporter first saw, in DELETED, the oldest image of the account, zone and type that is still DELETED, 0 when none; counted from this exporter's start at the earliest, held while the zone cannot be read",
            ),
            seconds,
            MetricType::Gauge,
            snapshot
                .zones
                .keys()
                .zip(&zones)
                .flat_map(|(key, (account, zone, _))| {
                    let since = snapshot.lifecycle.deleted_since.get(key);
                    ImageType::ALL
                        .into_iter()
                        .enumerate()
                        .map(move |(index, image_type)| {
                            let age = since
                                .and_then(|s| s[index])
                                .map_or(0.0, |s| (now_s - f64::from(s)).max(0.0));
                            (
                                TypeLabels {
                                    account_id: account,
                                    zone_id: zone,
                                    image_type: image_type.as_str(),
                                },
                                ConstGauge::new(age),
                            )
                        })
                }),
        )?;
        let tracked: Vec<(Cow<'_, str>, u64)> = snapshot
            .lifecycle
            .tracked
            .iter()
            .map(|(a, n)| (bounded_label(a), *n))
            .collect();
        family(
            encoder,
            "flexcloud_images_tracked",
            &help(
                "Images of the account the exporter follows across cycles, each once whatever its zones (the base of the appeared and disappeared counters)",
            ),
            None,
            MetricType::Gauge,
            tracked
                .iter()
                .map(|(a, n)| (AccountLabels { account_id: a }, ConstGauge::new(*n as i64))),
        )?;
        let mut saving: Vec<(String, String, &crate::snapshot::SavingImage)> = self
            .saving
            .iter()
            .filter_map(|key| {
                let state = snapshot.zones.get(&key.zone)?;
                let image = state.saving_images().get(key.index)?;
                Some((bounded(&key.zone.0), bounded(&key.zone.1), image))
            })
            .collect();
        saving.sort_by(|a, b| {
            (&a.0, &a.1, a.2.image_type, &a.2.id, &a.2.name).cmp(&(
                &b.0,
                &b.1,
                b.2.image_type,
                &b.2.id,
                &b.2.name,
            ))
        });
        family(
            encoder,
            "flexcloud_image_saving_created_timestamp",
            &help(
                "Creation time of each SAVING image, one series per image (capped by FLEXCLOUD_SAVING_SERIES_LIMIT, oldest kept)",
            ),
            seconds,
            MetricType::Gauge,
            saving.iter().map(|(account, zone, image)| {
                (
                    SavingLabels {
                        account_id: account,
                        zone_id: zone,
                        image_type: image.image_type.as_str(),
                        image_id: &image.id,
                        image_name: &image.name,
                    },
                    ConstGauge::new(image.created.unwrap_or(0.0)),
                )
            }),
        )?;
        let probed = || {
            zones.iter().filter_map(|(account, zone, state)| {
                let probe = state.probe.as_ref()?;
                Some((
                    ZoneLabels {
                        account_id: account,
                        zone_id: zone,
                    },
                    probe,
                ))
            })
        };
        family(
            encoder,
            "flexcloud_probe_success",
            &help(
                "1 when every request of the latest probe of the account and zone got a 200 with a valid body, else 0",
            ),
            None,
            MetricType::Gauge,
            probed().map(|(l, p)| (l, ConstGauge::new(i64::from(p.success)))),
        )?;
        family(
            encoder,
            "flexcloud_probe_duration",
            &help("Wall time of the latest probe"),
            seconds,
            MetricType::Gauge,
            probed().map(|(l, p)| (l, ConstGauge::new(p.duration.as_secs_f64()))),
        )?;
        family(
            encoder,
            "flexcloud_probe_http_status_code",
            &help(
                "HTTP status that decided the latest probe: the failing one, else 200; 0 when no response arrived",
            ),
            None,
            MetricType::Gauge,
            probed().map(|(l, p)| (l, ConstGauge::new(i64::from(p.http_status)))),
        )?;
        family(
            encoder,
            "flexcloud_last_success_timestamp",
            &help("Unix time of the latest successful probe of the account and zone"),
            seconds,
            MetricType::Gauge,
            zones.iter().filter_map(|(account, zone, state)| {
                let at = state.last_success?;
                Some((
                    ZoneLabels {
                        account_id: account,
                        zone_id: zone,
                    },
                    ConstGauge::new(unix_seconds(at)),
                ))
            }),
        )?;
        let steps: Vec<(Option<String>, Endpoint, &crate::snapshot::Outcome)> = snapshot
            .accounts_discovery
            .iter()
            .map(|o| (None, Endpoint::Accounts, o))
            .chain(
                snapshot
                    .zones_discovery
                    .iter()
                    .map(|(a, o)| (Some(bounded(a)), Endpoint::Zones, o)),
            )
            .collect();
        let step_rows = || {
            steps.iter().map(|(account, step, outcome)| {
                (
                    StepLabels {
                        account_id: account.as_deref(),
                        step: *step,
                    },
                    *outcome,
                )
            })
        };
        family(
            encoder,
            "flexcloud_discovery_success",
            &help(
                "1 when the latest discovery step (step=accounts: GET /accounts; step=zones: the account's zone list) succeeded",
            ),
            None,
            MetricType::Gauge,
            step_rows().map(|(l, o)| (l, ConstGauge::new(i64::from(o.success)))),
        )?;
        family(
            encoder,
            "flexcloud_discovery_http_status_code",
            &help("HTTP status that decided the latest discovery step; 0 when no response arrived"),
            None,
            MetricType::Gauge,
            step_rows().map(|(l, o)| (l, ConstGauge::new(i64::from(o.http_status)))),
        )?;
        single(
            encoder,
            "flexcloud_up",
            &help(
                "1 when the latest cycle reached the API and the credentials were accepted, else 0",
            ),
            None,
            ConstGauge::new(i64::from(snapshot.up)),
        )?;
        single(
            encoder,
            "flexcloud_collection_duration",
            "Duration of the latest collection cycle",
            seconds,
            ConstGauge::new(snapshot.duration.as_secs_f64()),
        )?;
        single(
            encoder,
            "flexcloud_last_collection_timestamp",
            "Unix time the latest collection cycle ended",
            seconds,
            ConstGauge::new(snapshot.completed_at.map_or(0.0, unix_seconds)),
        )?;
        single(
            encoder,
            "flexcloud_accounts_watched",
            &help("Accounts in the latest cycle"),
            None,
            ConstGauge::new(snapshot.account_count() as i64),
        )?;
        single(
            encoder,
            "flexcloud_zones_watched",
            &help("Account and zone pairs in the latest cycle"),
            None,
            ConstGauge::new(snapshot.zones.len() as i64),
        )?;
        single(
            encoder,
            "flexcloud_collection_cycles",
            "Collection cycles completed since the exporter started",
            None,
            ConstCounter::new(snapshot.cycle),
        )?;
        let held: Vec<(String, f64)> = snapshot
            .held_accounts
            .iter()
            .map(|(a, s)| (bounded(a), s.wait().as_secs_f64()))
            .collect();
        family(
            encoder,
            "flexcloud_account_credential_backoff",
            "Time the exporter waits before sending credentials for this account again after a 401 that concerned it only; the other accounts go on",
            seconds,
            MetricType::Gauge,
            held.iter()
                .map(|(a, w)| (AccountLabels { account_id: a }, ConstGauge::new(*w))),
        )
    }

    fn encode_lasting(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let lasting = &self.lasting;
        family(
            encoder,
            "flexcloud_api_requests",
            "API requests by account, endpoint and result code (HTTP status, or timeout, connect_error, invalid_response)",
            None,
            MetricType::Counter,
            lasting
                .requests
                .iter()
                .map(|((account, endpoint, code), n)| {
                    (
                        RequestLabels {
                            account_id: account.as_deref(),
                            endpoint: *endpoint,
                            code: *code,
                        },
                        ConstCounter::new(*n),
                    )
                }),
        )?;
        family(
            encoder,
            "flexcloud_api_request_duration",
            "Latency of API requests by endpoint",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            ENDPOINTS
                .iter()
                .zip(&self.latency)
                .map(|(endpoint, histogram)| {
                    (
                        EndpointLabels {
                            endpoint: *endpoint,
                        },
                        histogram.clone(),
                    )
                }),
        )?;
        family(
            encoder,
            "flexcloud_image_transitions",
            "Status changes of images between two successful reads of them, by account, type, from and to (statuses ACTIVE, SAVING, DELETED, OTHER); seen once per collection cycle, so a change and its reversal within one interval are not seen",
            None,
            MetricType::Counter,
            lasting
                .transitions
                .iter()
                .map(|((account, image_type, from, to), n)| {
                    (
                        TransitionLabels {
                            account_id: account,
                            image_type: image_type.as_str(),
                            from: from.as_str(),
                            to: to.as_str(),
                        },
                        ConstCounter::new(*n),
                    )
                }),
        )?;
        family(
            encoder,
            "flexcloud_image_save_duration",
            "Completed saves by image type: time from the image's created to the first cycle that saw it ACTIVE after SAVING. The end is known to within one collection interval (FLEXCLOUD_INTERVAL)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            ImageType::ALL
                .iter()
                .zip(&self.save_duration)
                .map(|(image_type, histogram)| {
                    (
                        ImageTypeLabels {
                            image_type: image_type.as_str(),
                        },
                        histogram.clone(),
                    )
                }),
        )?;
        family(
            encoder,
            "flexcloud_images_appeared",
            "Images first seen in a zone of the account whose baseline was set (the first successful read of each zone after the exporter starts is its baseline, not appearances)",
            None,
            MetricType::Counter,
            per_account(&lasting.appeared),
        )?;
        family(
            encoder,
            "flexcloud_images_disappeared",
            "Images no longer listed in any zone of the account, counted once every zone they were last seen in was read successfully (a failing zone's images are kept)",
            None,
            MetricType::Counter,
            per_account(&lasting.disappeared),
        )?;
        single(
            encoder,
            "flexcloud_lifecycle_images_dropped",
            &format!(
                "Image sightings not tracked across cycles because the tracker holds its maximum ({} images); counted each cycle such an image is listed",
                crate::lifecycle::MAX_TRACKED_IMAGES
            ),
            None,
            ConstCounter::new(lasting.lifecycle_dropped),
        )?;
        single(
            encoder,
            "flexcloud_image_saving_series_dropped",
            "SAVING-image series left out because of FLEXCLOUD_SAVING_SERIES_LIMIT",
            None,
            ConstCounter::new(lasting.saving_dropped),
        )?;
        family(
            encoder,
            "flexcloud_api_unusable_ids",
            "Ids the API listed that cannot be asked for (empty, . or ..), never requested, by the endpoint that listed them",
            None,
            MetricType::Counter,
            lasting.unusable_ids.iter().map(|(endpoint, n)| {
                (
                    EndpointLabels {
                        endpoint: *endpoint,
                    },
                    ConstCounter::new(*n),
                )
            }),
        )?;
        family(
            encoder,
            "flexcloud_api_invalid_images",
            "Image list entries the exporter could not count as they stood, by account and reason: malformed (skipped), duplicate (an id the list already had, counted once), bad_created (counted, without an age)",
            None,
            MetricType::Counter,
            lasting.invalid_images.iter().map(|((account, reason), n)| {
                (
                    ProblemLabels {
                        account_id: account,
                        reason: *reason,
                    },
                    ConstCounter::new(*n),
                )
            }),
        )?;
        let backoff = self
            .snapshot
            .as_ref()
            .map_or(Duration::ZERO, |s| s.credentials.wait());
        single(
            encoder,
            "flexcloud_credential_backoff",
            "Time the exporter waits before sending credentials again after the API rejected them (0 when not backing off)",
            Some(&Unit::Seconds),
            ConstGauge::new(backoff.as_secs_f64()),
        )?;
        single(
            encoder,
            "flexcloud_exposition_series",
            "Series in the previous cycle's exposition; watch it grow before a scrape limit refuses the target",
            None,
            ConstGauge::new(self.previous_series as i64),
        )?;
        single(
            encoder,
            "flexcloud_exposition",
            "Size of the previous cycle's exposition, uncompressed (text format, or OpenMetrics while no client asks for text)",
            Some(&Unit::Bytes),
            ConstGauge::new(self.previous_bytes as i64),
        )?;
        family(
            encoder,
            "flexcloud_exporter_build_info",
            "A metric with a constant 1 labelled by the exporter's version and source revision",
            None,
            MetricType::Gauge,
            [(
                BuildLabels {
                    version: env!("CARGO_PKG_VERSION"),
                    revision: env!("FLEXCLOUD_REVISION"),
                },
                ConstGauge::new(1),
            )],
        )?;
        single(
            encoder,
            "flexcloud_shard_ordinal",
            "The shard N this exporter collects, of FLEXCLOUD_SHARD=N/M (1 when unsharded); the replicas of one job should report each of 1 to M once",
            None,
            ConstGauge::new(i64::from(self.shard.index)),
        )?;
        single(
            encoder,
            "flexcloud_shards",
            "The shards M the accounts are split into, of FLEXCLOUD_SHARD=N/M (1 when unsharded); every replica of one job should report the same",
            None,
            ConstGauge::new(i64::from(self.shard.count)),
        )
    }
}
