//! The collection cycle: discovery, probes, concurrency, schedule, credential backoff,
//! and publishing each finished cycle's snapshot and exposition.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::api::{ApiClient, ApiError, ImageType};
use crate::config::Shard;
use crate::metrics::{self, ApiMetrics, EncodeLimits, Exposition};
use crate::snapshot::{self, Inventory, Outcome, Snapshot, ZoneState};

/// Longest wait between attempts with credentials the API rejected.
const MAX_CREDENTIAL_BACKOFF: Duration = Duration::from_secs(3600);

/// What the collector needs from the configuration.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// Fixed accounts; empty means discover every open account each cycle.
    pub accounts: Vec<String>,
    /// Fixed zones for every account; empty means discover each account's zones.
    pub zones: Vec<String>,
    pub interval: Duration,
    pub stale_after: Duration,
    pub saving_series_limit: usize,
    /// Collect only this shard of the accounts.
    pub shard: Option<Shard>,
}

/// The latest finished cycle as the server shows it.
#[derive(Debug, Clone)]
pub struct Published {
    /// `None` until the first cycle has finished.
    pub snapshot: Option<Arc<Snapshot>>,
    pub exposition: Exposition,
}

/// Runs cycles and publishes their results. Owned by one task; readers hold the
/// [`watch::Receiver`] returned by [`Collection::new`].
#[derive(Debug)]
pub struct Collection {
    client: Arc<ApiClient>,
    api_metrics: ApiMetrics,
    settings: CollectorSettings,
    published: watch::Sender<Arc<Published>>,
    previous: Arc<Snapshot>,
    cycles: u64,
    backoff: CredentialBackoff,
    cutting_saving_series: bool,
}

/// Waits that grow while the API keeps rejecting the credentials, so the exporter does
/// not lock the customer's account by retrying a bad password every interval.
#[derive(Debug, Default)]
struct CredentialBackoff {
    rejected_cycles: u32,
    resume_at: Option<Instant>,
}

impl Collection {
    pub fn new(
        client: Arc<ApiClient>,
        api_metrics: ApiMetrics,
        settings: CollectorSettings,
    ) -> (Self, watch::Receiver<Arc<Published>>) {
        let limits = EncodeLimits {
            saving_series: settings.saving_series_limit,
        };
        let exposition = metrics::encode(None, &api_metrics, limits, SystemTime::now());
        let (tx, rx) = watch::channel(Arc::new(Published {
            snapshot: None,
            exposition,
        }));
        let collection = Collection {
            client,
            api_metrics,
            settings,
            published: tx,
            previous: Arc::new(Snapshot::default()),
            cycles: 0,
            backoff: CredentialBackoff::default(),
            cutting_saving_series: false,
        };
        (collection, rx)
    }

    /// Runs a cycle at once, then one every interval, never two at a time, until
    /// `shutdown` resolves (which also abandons a running cycle).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.settings.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                () = &mut shutdown => break,
                _ = self.run_cycle() => {}
            }
        }
        debug!("collector stopped");
    }

    /// One full cycle: collect, apply the stale rule, log changes, encode, publish.
    pub async fn run_cycle(&mut self) -> Arc<Snapshot> {
        let started = Instant::now();
        let backing_off = self.backoff.resume_at.is_some_and(|at| Instant::now() < at);
        if backing_off {
            self.client.suspend_credentials();
        } else {
            self.client.resume_credentials();
        }
        self.cycles += 1;
        let mut current = self.collect().await;
        current.cycle = self.cycles;
        current.duration = started.elapsed();
        let now = SystemTime::now();
        current.completed_at = Some(now);
        snapshot::carry_over(&self.previous, &mut current, now, self.settings.stale_after);
        self.update_backoff(&current, backing_off);
        log_changes(&self.previous, &current);

        let limits = EncodeLimits {
            saving_series: self.settings.saving_series_limit,
        };
        // Count the cut before encoding, so the counter in this exposition includes it.
        let dropped = metrics::saving_series_overflow(&current, limits);
        if dropped > 0 {
            self.api_metrics.count_saving_dropped(dropped);
            if !self.cutting_saving_series {
                warn!(
                    dropped,
                    limit = limits.saving_series,
                    "too many SAVING images; exporting the oldest only"
                );
            }
        }
        self.cutting_saving_series = dropped > 0;
        let exposition = metrics::encode(Some(&current), &self.api_metrics, limits, now);
        let current = Arc::new(current);
        self.published.send_replace(Arc::new(Published {
            snapshot: Some(current.clone()),
            exposition,
        }));
        debug!(cycle = current.cycle, duration = ?current.duration, zones = current.zones.len(), "cycle finished");
        self.previous = current.clone();
        current
    }

    fn update_backoff(&mut self, current: &Snapshot, backing_off: bool) {
        let rejected = current.rejected_credentials();
        if rejected && !backing_off {
            self.backoff.rejected_cycles = self.backoff.rejected_cycles.saturating_add(1);
            let wait = self
                .settings
                .interval
                .saturating_mul(2u32.saturating_pow(self.backoff.rejected_cycles))
                .min(MAX_CREDENTIAL_BACKOFF.max(self.settings.interval));
            self.backoff.resume_at = Some(Instant::now() + wait);
            self.api_metrics.set_credential_backoff(wait);
            warn!(wait = %humantime::format_duration(wait), rejected_cycles = self.backoff.rejected_cycles,
                "API rejected the credentials (401); not sending them again until the wait is over");
        } else if !rejected && current.up {
            if self.backoff.rejected_cycles > 0 {
                info!("API accepts the credentials again; credential backoff reset");
            }
            self.backoff = CredentialBackoff::default();
            self.api_metrics.set_credential_backoff(Duration::ZERO);
        }
    }

    async fn collect(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut tasks = JoinSet::new();
        let mut seen = HashSet::new();
        let mut start = |account: String| {
            let owned = self.settings.shard.is_none_or(|s| s.owns(&account));
            if owned && seen.insert(account.clone()) {
                let client = self.client.clone();
                let zones = self.settings.zones.clone();
                tasks.spawn(probe_account(client, account, zones));
            }
        };
        if self.settings.accounts.is_empty() {
            // Accounts are probed as their page arrives, so the pipeline fills while the
            // later pages (which only the previous page's `next` link names) still load.
            let (found, mut arrivals) = mpsc::unbounded_channel();
            let discovery = async move {
                let started = Instant::now();
                let result = self
                    .client
                    .list_open_accounts(|account| {
                        let _ = found.send(account);
                    })
                    .await;
                outcome_of(result, started).0
            };
            let spawning = async {
                while let Some(account) = arrivals.recv().await {
                    start(account);
                }
            };
            let (outcome, ()) = tokio::join!(discovery, spawning);
            snapshot.accounts_discovery = Some(outcome);
        } else {
            self.settings.accounts.iter().cloned().for_each(&mut start);
        }
        while let Some(joined) = tasks.join_next().await {
            // A probe task only ends early by panicking, which would be a bug; the
            // account is then missing from this cycle rather than taking the cycle down.
            let Ok(report) = joined else { continue };
            if let Some(outcome) = report.zones_discovery {
                snapshot
                    .zones_discovery
                    .insert(report.account.clone(), outcome);
            }
            for (zone, state) in report.zones {
                snapshot.zones.insert((report.account.clone(), zone), state);
            }
        }
        snapshot.up = snapshot.reached_api_with_valid_credentials();
        snapshot
    }
}

struct AccountReport {
    account: String,
    zones_discovery: Option<Outcome>,
    zones: Vec<(String, ZoneState)>,
}

async fn probe_account(
    client: Arc<ApiClient>,
    account: String,
    fixed_zones: Vec<String>,
) -> AccountReport {
    let (zones_discovery, zones) = if fixed_zones.is_empty() {
        let started = Instant::now();
        let (outcome, zones) = outcome_of(client.list_zones(&account).await, started);
        (Some(outcome), zones.unwrap_or_default())
    } else {
        (None, fixed_zones)
    };
    let probes = zones.iter().map(|zone| probe_zone(&client, &account, zone));
    let states = futures_util::future::join_all(probes).await;
    AccountReport {
        zones: zones.into_iter().zip(states).collect(),
        account,
        zones_discovery,
    }
}

/// Both image types of one account and zone; the probe succeeds only if both do.
async fn probe_zone(client: &ApiClient, account: &str, zone: &str) -> ZoneState {
    let started = Instant::now();
    let fetch = |image_type: ImageType| async move {
        let mut inventory = Inventory::default();
        client
            .list_images(account, zone, image_type, |image| {
                inventory.record(image_type, image)
            })
            .await
            .map(|()| inventory)
    };
    let (base, server) = tokio::join!(fetch(ImageType::Base), fetch(ImageType::Server));
    let result = match (base, server) {
        (Ok(mut base), Ok(server)) => {
            base.merge(server);
            Ok(base)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let (outcome, inventory) = outcome_of(result, started);
    let success = outcome.success;
    ZoneState {
        probe: Some(outcome),
        inventory: inventory.map(Arc::new),
        last_success: success.then(SystemTime::now),
    }
}

fn outcome_of<T>(result: Result<T, ApiError>, started: Instant) -> (Outcome, Option<T>) {
    let duration = started.elapsed();
    match result {
        Ok(value) => (Outcome::succeeded(duration), Some(value)),
        Err(error) => (
            Outcome {
                success: false,
                http_status: error.http_status(),
                error_kind: Some(error.kind()),
                detail: Some(error_chain(&error)),
                duration,
            },
            None,
        ),
    }
}

/// The error and its sources in one line, for logs and the landing page.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Logs what changed since the previous cycle: a step that starts failing once as a
/// warning, its recovery once as info; nothing for steps that stay as they were.
fn log_changes(previous: &Snapshot, current: &Snapshot) {
    let was_ok = |o: Option<&Outcome>| o.is_none_or(|o| o.success);
    if let Some(now) = &current.accounts_discovery {
        report_change(
            "",
            "",
            "accounts",
            was_ok(previous.accounts_discovery.as_ref()),
            now,
        );
    }
    for (account, now) in &current.zones_discovery {
        report_change(
            account,
            "",
            "zones",
            was_ok(previous.zones_discovery.get(account)),
            now,
        );
    }
    for ((account, zone), state) in &current.zones {
        if let Some(now) = &state.probe {
            let before = previous
                .zones
                .get(&(account.clone(), zone.clone()))
                .and_then(|z| z.probe.as_ref());
            report_change(account, zone, "images_detail", was_ok(before), now);
        }
    }
}

fn report_change(account_id: &str, zone_id: &str, step: &str, was_ok: bool, now: &Outcome) {
    let error = now.detail.as_deref().unwrap_or("");
    match (was_ok, now.success) {
        (true, false) => warn!(
            account_id,
            zone_id,
            step,
            http_status = now.http_status,
            error_kind = now.error_kind.unwrap_or(""),
            error,
            "probe failed"
        ),
        (false, true) => info!(account_id, zone_id, step, "probe recovered"),
        _ => {}
    }
}

/// Every failed step of a cycle with its HTTP status, for the `--once` summary.
pub fn failing_steps(snapshot: &Snapshot) -> BTreeMap<String, u16> {
    let mut failing = BTreeMap::new();
    if let Some(o) = snapshot.accounts_discovery.as_ref().filter(|o| !o.success) {
        failing.insert("accounts".to_string(), o.http_status);
    }
    for (account, o) in snapshot.zones_discovery.iter().filter(|(_, o)| !o.success) {
        failing.insert(format!("{account} zones"), o.http_status);
    }
    for ((account, zone), z) in &snapshot.zones {
        if let Some(p) = z.probe.as_ref().filter(|p| !p.success) {
            failing.insert(format!("{account} {zone}"), p.http_status);
        }
    }
    failing
}
