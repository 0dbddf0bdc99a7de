//! The collection cycle: discovery, probes, concurrency, the schedule and shutdown. Each
//! finished cycle is a [`Snapshot`], handed to whoever runs the collector.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::api::{ApiClient, ApiError, Endpoint, ImageType, is_path_segment};
use crate::config::{Config, Shard};
use crate::lifecycle::{MAX_TRACKED_IMAGES, Sighting, Tracker, ZoneRead};
use crate::snapshot::{self, ListCount, Outcome, Snapshot, ZoneState};

/// What the collector needs from the configuration.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// Fixed accounts; empty means discover every open account each cycle.
    pub accounts: Vec<String>,
    /// Fixed zones for every account; empty means discover each account's zones.
    pub zones: Vec<String>,
    pub interval: Duration,
    /// Every cycle ends this long after it began, whatever the API does: steps still
    /// running then fail with the error kind `deadline`.
    pub cycle_timeout: Duration,
    pub stale_after: Duration,
    /// Collect only this shard of the accounts.
    pub shard: Option<Shard>,
}

impl CollectorSettings {
    pub fn from_config(config: &Config) -> Self {
        CollectorSettings {
            accounts: config.accounts.clone(),
            zones: config.zones.clone(),
            interval: config.interval,
            cycle_timeout: config.cycle_timeout,
            stale_after: config.stale_after,
            shard: config.shard,
        }
    }
}

/// Something that runs one collection cycle: the schedule's unit of work.
pub trait Cycle {
    fn run_cycle(&mut self) -> impl Future<Output = Arc<Snapshot>> + Send;
}

/// When cycles start: the first at once, then one every interval. A cycle that overruns
/// its interval delays the next rather than causing a burst of catch-up cycles.
#[derive(Debug)]
pub struct Schedule {
    ticker: Interval,
}

impl Schedule {
    pub fn new(interval: Duration) -> Self {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Schedule { ticker }
    }

    /// Waits until the next cycle is due.
    pub async fn wait(&mut self) {
        self.ticker.tick().await;
    }
}

/// Runs `cycles` on `schedule`, never two at a time, handing each snapshot to `finished`,
/// until `shutdown` resolves (which also abandons a running cycle).
pub async fn run_scheduled<C: Cycle>(
    cycles: &mut C,
    mut schedule: Schedule,
    shutdown: impl Future<Output = ()>,
    mut finished: impl FnMut(Arc<Snapshot>),
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = schedule.wait() => {}
        }
        tokio::select! {
            () = &mut shutdown => break,
            snapshot = cycles.run_cycle() => finished(snapshot),
        }
    }
    debug!("collector stopped");
}

/// Runs cycles against the API and keeps what the stale rule and change logging need of
/// the previous one.
#[derive(Debug)]
pub struct Collection {
    client: Arc<ApiClient>,
    settings: CollectorSettings,
    previous: Arc<Snapshot>,
    cycles: u64,
    /// Ids already warned about as unusable, so each is logged once, not every cycle.
    warned_ids: std::sync::Mutex<HashSet<String>>,
    /// Every image across cycles; fed each account's listings as its probe ends, so a
    /// cycle never holds every image's sightings at once.
    tracker: std::sync::Mutex<Tracker>,
}

/// Unusable ids remembered for the once-only warning; beyond, they are still counted.
const WARNED_IDS: usize = 1024;

impl Cycle for Collection {
    fn run_cycle(&mut self) -> impl Future<Output = Arc<Snapshot>> + Send {
        Collection::run_cycle(self)
    }
}

impl Collection {
    pub fn new(client: Arc<ApiClient>, settings: CollectorSettings) -> Self {
        Collection {
            client,
            previous: Arc::new(Snapshot::default()),
            cycles: 0,
            warned_ids: std::sync::Mutex::new(HashSet::new()),
            tracker: std::sync::Mutex::new(Tracker::new(MAX_TRACKED_IMAGES, settings.stale_after)),
            settings,
        }
    }

    /// Runs a cycle at once, then one every interval, until `shutdown` resolves.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        finished: impl FnMut(Arc<Snapshot>),
    ) {
        let schedule = Schedule::new(self.settings.interval);
        run_scheduled(&mut self, schedule, shutdown, finished).await;
    }

    /// One full cycle: collect, apply the stale rule, log what changed.
    pub async fn run_cycle(&mut self) -> Arc<Snapshot> {
        let started = Instant::now();
        self.cycles += 1;
        let deadline = started + self.settings.cycle_timeout;
        self.client.begin_cycle();
        let mut current = self.collect(deadline).await;
        self.client.end_cycle();
        current.cycle = self.cycles;
        current.duration = started.elapsed();
        current.credentials = self.client.credentials();
        current.held_accounts = self.client.held_accounts();
        current.up = current.reached_api_with_valid_credentials();
        let now = SystemTime::now();
        current.completed_at = Some(now);
        snapshot::carry_over(&self.previous, &mut current, now, self.settings.stale_after);
        {
            let mut tracker = self.tracker();
            // Accounts carried through a failed discovery are kept, not forgotten.
            tracker.keep(
                current.zones.keys().map(|(account, _)| account.as_str()),
                now,
            );
            current.lifecycle = tracker.finish_cycle(now);
        }
        log_changes(&self.previous, &current);
        debug!(cycle = current.cycle, duration = ?current.duration, zones = current.zones.len(), "cycle finished");
        let current = Arc::new(current);
        self.previous = current.clone();
        current
    }

    async fn collect(&self, deadline: Instant) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut probes = Probes {
            tasks: JoinSet::new(),
            // As many accounts at a time as requests may be in flight: each has at least
            // one request to make at any moment, so the slots stay full, while the
            // accounts not yet started cost a name each rather than a waiting task
            // (about 25 kB an account, 120 MB for 5,000).
            limit: self.client.concurrency(),
            deadline,
            client: &self.client,
            zones: &self.settings.zones,
        };
        let mut seen = HashSet::new();
        let mut unusable_accounts = 0u64;
        let mut admit = |account: String| -> Option<String> {
            if !is_path_segment(&account) {
                // `.` or `..` would address another resource of the API: never requested.
                unusable_accounts += 1;
                self.warn_once(Endpoint::Accounts, &account);
                return None;
            }
            let owned = self.settings.shard.is_none_or(|s| s.owns(&account));
            (owned && seen.insert(account.clone())).then_some(account)
        };
        if self.settings.accounts.is_empty() {
            // Accounts are probed as their page arrives, so the pipeline fills while the
            // later pages (which only the previous page's `next` link names) still load.
            let (found, mut arrivals) = mpsc::unbounded_channel();
            let discovery = async move {
                let started = Instant::now();
                let listing = self.client.list_open_accounts(|account| {
                    let _ = found.send(account);
                });
                outcome_of(by_deadline(deadline, listing).await, started).0
            };
            let spawning = async {
                while let Some(account) = arrivals.recv().await {
                    if let Some(account) = admit(account) {
                        probes
                            .start(account, |r| self.absorb(&mut snapshot, r))
                            .await;
                    }
                }
            };
            let (outcome, ()) = tokio::join!(discovery, spawning);
            snapshot.accounts_discovery = Some(outcome);
        } else {
            for account in self.settings.accounts.iter().cloned() {
                if let Some(account) = admit(account) {
                    probes
                        .start(account, |r| self.absorb(&mut snapshot, r))
                        .await;
                }
            }
        }
        while let Some(joined) = probes.tasks.join_next().await {
            self.absorb(&mut snapshot, joined);
        }
        if unusable_accounts > 0 {
            snapshot
                .unusable_ids
                .insert(Endpoint::Accounts, unusable_accounts);
        }
        snapshot.unusable_ids.retain(|_, n| *n > 0);
        snapshot
    }

    /// Adds what one account's probe found to `snapshot`.
    fn absorb(
        &self,
        snapshot: &mut Snapshot,
        joined: Result<AccountReport, tokio::task::JoinError>,
    ) {
        // A probe task only ends early by panicking, which would be a bug; the account is
        // then missing from this cycle rather than taking the cycle down.
        let Ok(report) = joined else { return };
        let now = SystemTime::now();
        let zones_known = report.zones_discovery.as_ref().is_none_or(|o| o.success);
        if zones_known {
            let reads: Vec<ZoneRead<'_>> = report
                .zones
                .iter()
                .map(|(zone, _, sightings)| (zone.as_str(), sightings.as_deref()))
                .collect();
            self.tracker().observe(&report.account, &reads, now);
        } else {
            self.tracker().keep([report.account.as_str()], now);
        }
        if let Some(outcome) = report.zones_discovery {
            snapshot
                .zones_discovery
                .insert(report.account.clone(), outcome);
        }
        for (zone, state, _) in report.zones {
            snapshot.zones.insert((report.account.clone(), zone), state);
        }
        for zone in &report.unusable_zones {
            self.warn_once(Endpoint::Zones, &format!("{} {zone:?}", report.account));
        }
        *snapshot.unusable_ids.entry(Endpoint::Zones).or_default() +=
            report.unusable_zones.len() as u64;
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        // Plain state, consistent after any panic.
        self.tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Warns about an id that is never requested, once per id.
    fn warn_once(&self, endpoint: Endpoint, id: &str) {
        let mut warned = self
            .warned_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned.len() < WARNED_IDS && warned.insert(id.to_string()) {
            warn!(
                step = endpoint.as_str(),
                id,
                "the API listed an id that cannot be requested (empty, . or ..); left out and counted"
            );
        }
    }
}

/// The accounts being probed, at most `limit` at a time.
struct Probes<'a> {
    tasks: JoinSet<AccountReport>,
    limit: usize,
    deadline: Instant,
    client: &'a Arc<ApiClient>,
    zones: &'a Vec<String>,
}

impl Probes<'_> {
    /// Starts probing `account` once fewer than `limit` are running, handing each that
    /// ends meanwhile to `done`.
    async fn start(
        &mut self,
        account: String,
        mut done: impl FnMut(Result<AccountReport, tokio::task::JoinError>),
    ) {
        while self.tasks.len() >= self.limit {
            match self.tasks.join_next().await {
                Some(joined) => done(joined),
                None => break,
            }
        }
        self.tasks.spawn(probe_account(
            self.client.clone(),
            account,
            self.zones.clone(),
            self.deadline,
        ));
    }
}

struct AccountReport {
    account: String,
    zones_discovery: Option<Outcome>,
    /// Each zone's state, with its images for the tracker when the probe succeeded.
    zones: Vec<(String, ZoneState, Option<Vec<Sighting>>)>,
    /// Zone ids of the list that cannot be asked for (empty): left out.
    unusable_zones: Vec<String>,
}

async fn probe_account(
    client: Arc<ApiClient>,
    account: String,
    fixed_zones: Vec<String>,
    deadline: Instant,
) -> AccountReport {
    let (zones_discovery, zones) = if fixed_zones.is_empty() {
        let started = Instant::now();
        let listing = by_deadline(deadline, client.list_zones(&account)).await;
        let (outcome, zones) = outcome_of(listing, started);
        let mut zones = zones.unwrap_or_default();
        // A zone the list names twice is still one zone, probed once.
        let mut seen = HashSet::new();
        zones.retain(|zone| seen.insert(zone.clone()));
        (Some(outcome), zones)
    } else {
        (None, fixed_zones)
    };
    // An empty zone id would send `zone=`, which asks for no zone in particular.
    let (zones, unusable_zones): (Vec<String>, Vec<String>) =
        zones.into_iter().partition(|zone| !zone.trim().is_empty());
    let probes = zones
        .iter()
        .map(|zone| probe_zone(&client, &account, zone, deadline));
    let states = futures_util::future::join_all(probes).await;
    AccountReport {
        zones: zones
            .into_iter()
            .zip(states)
            .map(|(zone, (state, sightings))| (zone, state, sightings))
            .collect(),
        account,
        zones_discovery,
        unusable_zones,
    }
}

/// Both image types of one account and zone; the probe succeeds only if both do. The
/// images come along for the tracker when it does.
async fn probe_zone(
    client: &ApiClient,
    account: &str,
    zone: &str,
    deadline: Instant,
) -> (ZoneState, Option<Vec<Sighting>>) {
    let started = Instant::now();
    let fetch = |image_type: ImageType| async move {
        let mut list = ListCount::new(image_type);
        client
            .list_images(account, zone, image_type, |entry| list.add(entry))
            .await
            .map(|()| list.finish_with_sightings())
    };
    let both = async {
        let (base, server) = tokio::join!(fetch(ImageType::Base), fetch(ImageType::Server));
        match (base, server) {
            (Ok((mut base, mut seen)), Ok((server, server_seen))) => {
                base.merge(server);
                seen.extend(server_seen);
                Ok((base, seen))
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    };
    let result = by_deadline(deadline, both).await;
    let (outcome, read) = outcome_of(result, started);
    let success = outcome.success;
    let (inventory, sightings) = read.unzip();
    let state = ZoneState {
        probe: Some(outcome),
        inventory: inventory.map(Arc::new),
        held_saving: None,
        last_success: success.then(SystemTime::now),
    };
    (state, sightings)
}

/// `step`'s result, or [`ApiError::Deadline`] once the cycle's deadline has passed: the
/// step's requests, their retries and their waits for a slot are dropped with it.
async fn by_deadline<T>(
    deadline: Instant,
    step: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout_at(deadline, step)
        .await
        .unwrap_or(Err(ApiError::Deadline))
}

fn outcome_of<T>(result: Result<T, ApiError>, started: Instant) -> (Outcome, Option<T>) {
    let duration = started.elapsed();
    match result {
        Ok(value) => (Outcome::succeeded(duration), Some(value)),
        Err(error) => (Outcome::failed(&error, duration), None),
    }
}

/// Logs what changed since the previous cycle: a step that starts failing once as a
/// warning, its recovery once as info; nothing for steps that stay as they were.
fn log_changes(previous: &Snapshot, current: &Snapshot) {
    let was_ok = |o: Option<&Outcome>| o.is_none_or(|o| o.success);
    if let Some(now) = &current.accounts_discovery {
        let before = was_ok(previous.accounts_discovery.as_ref());
        report_change(None, None, Endpoint::Accounts, before, now);
    }
    for (account, now) in &current.zones_discovery {
        let before = was_ok(previous.zones_discovery.get(account));
        report_change(Some(account), None, Endpoint::Zones, before, now);
    }
    for ((account, zone), state) in &current.zones {
        let before = previous.zones.get(&(account.clone(), zone.clone()));
        if let Some(now) = &state.probe {
            report_change(
                Some(account),
                Some(zone),
                Endpoint::ImagesDetail,
                was_ok(before.and_then(|z| z.probe.as_ref())),
                now,
            );
        }
        report_odd_entries(account, zone, before, state);
    }
}

/// Odd entries of a zone's lists, logged when they start, change or end rather than every
/// cycle; only a list read in this cycle says anything new.
fn report_odd_entries(
    account_id: &str,
    zone_id: &str,
    before: Option<&ZoneState>,
    now: &ZoneState,
) {
    use crate::api::model::ImageProblem;
    if !now.probe.as_ref().is_some_and(|p| p.success) {
        return;
    }
    let problems = |z: Option<&ZoneState>| {
        z.and_then(|z| z.inventory.as_ref())
            .map(|i| i.problems.clone())
            .unwrap_or_default()
    };
    let (was, is) = (problems(before), problems(Some(now)));
    if was == is {
        return;
    }
    let n = |p: ImageProblem| is.get(&p).copied().unwrap_or(0);
    if is.is_empty() {
        info!(account_id, zone_id, "image list entries readable again");
    } else {
        warn!(
            account_id,
            zone_id,
            malformed = n(ImageProblem::Malformed),
            duplicate = n(ImageProblem::Duplicate),
            bad_created = n(ImageProblem::BadCreated),
            "odd entries in the image list; the rest is counted"
        );
    }
}

fn report_change(
    account_id: Option<&str>,
    zone_id: Option<&str>,
    step: Endpoint,
    was_ok: bool,
    now: &Outcome,
) {
    let step = step.as_str();
    match (was_ok, now.success) {
        (true, false) => warn!(
            account_id,
            zone_id,
            step,
            http_status = now.http_status,
            error_kind = now.error_kind.map(|k| k.as_str()),
            error = now.detail.as_deref(),
            "probe failed"
        ),
        (false, true) => info!(account_id, zone_id, step, "probe recovered"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::sleep;

    /// A cycle that takes the next of `took` and notes when it started.
    struct FakeCycles {
        origin: Instant,
        took: Vec<Duration>,
        started: Vec<Duration>,
    }

    impl FakeCycles {
        fn new(took: &[u64]) -> Self {
            FakeCycles {
                origin: Instant::now(),
                took: took.iter().map(|s| Duration::from_secs(*s)).collect(),
                started: Vec::new(),
            }
        }

        fn started_secs(&self) -> Vec<u64> {
            self.started.iter().map(Duration::as_secs).collect()
        }
    }

    impl Cycle for FakeCycles {
        async fn run_cycle(&mut self) -> Arc<Snapshot> {
            let n = self.started.len();
            self.started.push(self.origin.elapsed());
            sleep(self.took.get(n).copied().unwrap_or(Duration::from_secs(1))).await;
            Arc::new(Snapshot {
                cycle: n as u64 + 1,
                ..Snapshot::default()
            })
        }
    }

    async fn run_for(cycles: &mut FakeCycles, interval: u64, seconds: u64) -> Vec<u64> {
        let mut finished = Vec::new();
        run_scheduled(
            cycles,
            Schedule::new(Duration::from_secs(interval)),
            sleep(Duration::from_secs(seconds)),
            |snapshot| finished.push(snapshot.cycle),
        )
        .await;
        finished
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_cycle_runs_at_once_then_one_per_interval() {
        let mut cycles = FakeCycles::new(&[5, 5, 5, 5, 5]);
        let finished = run_for(&mut cycles, 60, 250).await;
        assert_eq!(cycles.started_secs(), [0, 60, 120, 180, 240]);
        assert_eq!(finished, [1, 2, 3, 4, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overrunning_cycle_delays_the_next_and_cycles_never_overlap() {
        let mut cycles = FakeCycles::new(&[150, 5, 5, 5]);
        run_for(&mut cycles, 60, 300).await;
        // No catch-up burst at 150: the next starts when the long one ends, then the
        // interval counts from there.
        assert_eq!(cycles.started_secs(), [0, 150, 210, 270]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_abandons_a_running_cycle() {
        let started = Instant::now();
        let mut cycles = FakeCycles::new(&[3600]);
        let finished = run_for(&mut cycles, 60, 30).await;
        assert!(finished.is_empty());
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
