//! The fake FlexCloud API: scenario-driven, faithful to the reference's awkward parts.
//!
//! Tests start it with [`Simulator::start`] on a port-0 loopback listener and change it
//! while it runs through the [`Simulator`] handle; the `flexcloud-sim` binary serves a
//! scenario file and takes changes on its admin endpoints under `/-/sim/`.
//!
//! It shares no code with the exporter: it is written from the API reference alone, so a
//! misreading of the reference cannot hide by being made twice in the same function.
//!
//! # Layout
//! - [`scenario`]: the scenario format (scheduled image changes included), its builder and
//!   the seeded fleet generator.
//! - `handlers`: the API's endpoints; `paging`: `page`/`pageSize`, 303 and `links`.
//! - `faults`: fault injection by path and query; `admin`: the `/-/sim/` control endpoints.
//! - `timestamp`: the API's zone-less timestamps.

mod admin;
mod faults;
mod handlers;
mod paging;
pub mod scenario;
mod timestamp;

/// The fleet `flexcloud-exporter --demo` serves: three accounts, six account-zone pairs, one
/// image stuck in SAVING for over three hours, and in the first minute a save that completes,
/// a deletion that hangs and an image that vanishes.
pub const DEMO_SCENARIO: &str = include_str!("../scenarios/demo.json");

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use scenario::{Fault, FaultAction, FleetSpec, ImageChange, Scenario, ScenarioError};

/// How many requests the log keeps (the oldest go first).
const REQUEST_LOG_CAPACITY: usize = 100_000;

/// One request as the simulator saw it, for tests to check what the exporter sent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The user named in the `Authorization` header, if it carried Basic credentials.
    pub user: Option<String>,
    /// Whether any `Authorization` header was present.
    pub sent_credentials: bool,
    /// The `Accept-Encoding` header, if any.
    pub accept_encoding: Option<String>,
    /// When it arrived, for tests of how requests are spread over time.
    #[serde(skip)]
    pub at: std::time::Instant,
    /// Whether the rate limit answered it with a 429 instead of the endpoint.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub throttled: bool,
}

#[derive(Debug)]
struct Fleet {
    scenario: Scenario,
    /// Uses left per fault, in scenario order (`None` = unlimited).
    fault_budget: Vec<Option<u32>>,
    /// Positions in `scenario.images` per account, so a request does not scan a large
    /// generated fleet under the lock.
    images_by_account: HashMap<String, Vec<usize>>,
    /// Position in `scenario.accounts` of the first account with each id, for the same
    /// reason: a scan of 5,000 ids per request cost the simulator a fifth of its time.
    account_by_id: HashMap<String, usize>,
    /// When the scenario was loaded: every change's `after` counts from here, on the
    /// monotonic clock so that a wall-clock step cannot fire or hold back a change.
    loaded_at: Instant,
    /// The same moment on the wall clock, from which scheduled images' fixed created time
    /// is counted back.
    loaded_wall: SystemTime,
}

#[derive(Debug)]
struct Shared {
    fleet: Mutex<Fleet>,
    log: Mutex<VecDeque<RequestRecord>>,
    /// TCP connections accepted since start: a client that pools its connections opens
    /// about as many as it has requests in flight, not one per request.
    connections: std::sync::atomic::AtomicU64,
    /// Requests answered since start, beyond what the bounded log keeps.
    request_count: std::sync::atomic::AtomicU64,
    /// How many requests the log keeps; see [`Simulator::keep_requests`].
    log_capacity: std::sync::atomic::AtomicUsize,
    /// Arrivals the rate limit let through within the last second.
    admitted: Mutex<VecDeque<std::time::Instant>>,
}

/// A running simulator and the handle to change it.
#[derive(Debug, Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Arc<Notify>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind, still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Simulator {
    /// Serves `scenario` on `listener` until [`Simulator::stop`] or drop of every handle's
    /// task. The scenario is expanded (generated fleet) and validated first.
    pub async fn start(scenario: Scenario, listener: TcpListener) -> Result<Self, ScenarioError> {
        let scenario = scenario.expanded()?;
        let addr = listener
            .local_addr()
            .map_err(|source| ScenarioError::Read {
                path: "listener".into(),
                source,
            })?;
        let shared = Arc::new(Shared {
            fleet: Mutex::new(Fleet::new(scenario)),
            log: Mutex::new(VecDeque::new()),
            connections: std::sync::atomic::AtomicU64::new(0),
            request_count: std::sync::atomic::AtomicU64::new(0),
            log_capacity: std::sync::atomic::AtomicUsize::new(REQUEST_LOG_CAPACITY),
            admitted: Mutex::new(VecDeque::new()),
        });
        let stop = Arc::new(Notify::new());
        let router = router(shared.clone());
        let task = tokio::spawn(serve(listener, router, shared.clone(), stop.clone()));
        Ok(Simulator {
            shared,
            addr,
            stop,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// Starts on a fresh loopback port.
    pub async fn start_local(scenario: Scenario) -> Result<Self, ScenarioError> {
        let listener =
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| ScenarioError::Read {
                    path: "127.0.0.1:0".into(),
                    source,
                })?;
        Self::start(scenario, listener).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a client, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the whole scenario; fault budgets start afresh, and so does the clock of
    /// its image changes.
    pub fn set_scenario(&self, scenario: Scenario) -> Result<(), ScenarioError> {
        let scenario = scenario.expanded()?;
        *lock(&self.shared.fleet) = Fleet::new(scenario);
        Ok(())
    }

    /// Changes the scenario in place (faults keep their used-up budgets where they stay).
    /// It is the same scenario, so its load time stays: image changes added here count from
    /// it, like those in a file, and those already there keep their times. Changes are
    /// sorted again but not checked.
    pub fn update(&self, change: impl FnOnce(&mut Scenario)) {
        let mut fleet = lock(&self.shared.fleet);
        change(&mut fleet.scenario);
        fleet.scenario.sort_changes();
        fleet.reset_budgets();
        fleet.index();
    }

    /// Schedules a change of every image with id `image_id`, its `after` counted from now.
    /// An image whose created time followed the clock (`age` and no changes yet) keeps the
    /// created time it has now.
    pub fn schedule(&self, image_id: &str, change: ImageChange) -> Result<(), ScenarioError> {
        lock(&self.shared.fleet)
            .schedule(image_id, change)
            .map(|_| ())
    }

    /// Adds a fault at the end of the list.
    pub fn add_fault(&self, fault: Fault) {
        lock(&self.shared.fleet).push_fault(fault);
    }

    /// Removes every fault: the API is healthy again.
    pub fn clear_faults(&self) {
        lock(&self.shared.fleet).clear_faults();
    }

    /// The scenario as it is now.
    pub fn scenario(&self) -> Scenario {
        lock(&self.shared.fleet).scenario.clone()
    }

    /// Every request seen so far (up to the log's capacity), oldest first.
    /// Keeps at most `capacity` requests in the log (0: none), dropping the oldest. A
    /// long-running simulator that nobody inspects (the exporter's demo) keeps few: at
    /// the default of 100,000 the log would grow by about 200 bytes a request for days.
    pub fn keep_requests(&self, capacity: usize) {
        self.shared
            .log_capacity
            .store(capacity, std::sync::atomic::Ordering::Relaxed);
        let mut log = lock(&self.shared.log);
        while log.len() > capacity {
            log.pop_front();
        }
        log.shrink_to(capacity);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    /// TCP connections accepted since start.
    pub fn connections(&self) -> u64 {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests seen since start, however many the log has dropped.
    pub fn request_count(&self) -> u64 {
        self.shared
            .request_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Stops accepting connections and ends open ones.
    pub async fn stop(&self) {
        self.stop.notify_waiters();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Fleet {
    fn new(scenario: Scenario) -> Self {
        let fault_budget = scenario.faults.iter().map(|f| f.times).collect();
        let mut fleet = Fleet {
            scenario,
            fault_budget,
            images_by_account: HashMap::new(),
            account_by_id: HashMap::new(),
            loaded_at: Instant::now(),
            loaded_wall: SystemTime::now(),
        };
        fleet.index();
        fleet
    }

    /// How long ago the scenario was loaded: the time scale of every `after`.
    fn elapsed(&self) -> Duration {
        self.loaded_at.elapsed()
    }

    /// Adds `change`, its `after` counted from now, to every image with id `image_id`, or to
    /// none if it does not fit one of them. Returns the change as stored, counted from load.
    fn schedule(
        &mut self,
        image_id: &str,
        change: ImageChange,
    ) -> Result<ImageChange, ScenarioError> {
        let elapsed = self.elapsed();
        let after = elapsed.checked_add(change.after).ok_or_else(|| {
            ScenarioError::Invalid(format!(
                "the change of image {image_id} comes too late to count"
            ))
        })?;
        let change = ImageChange { after, ..change };
        let mut schedules = Vec::new();
        for (at, image) in self.scenario.images.iter().enumerate() {
            if image.id != image_id {
                continue;
            }
            let mut changes = image.changes.clone();
            // After any change already due at the same time, as a file's order would put it.
            changes.insert(
                changes.partition_point(|c| c.after <= after),
                change.clone(),
            );
            let zones = self
                .account(&image.account)
                .map(|a| a.zones.as_slice())
                .unwrap_or(&[]);
            scenario::check_changes(image, &changes, zones)?;
            schedules.push((at, changes));
        }
        if schedules.is_empty() {
            return Err(ScenarioError::UnknownImage(image_id.into()));
        }
        let now = SystemTime::now();
        for (at, changes) in schedules {
            let Some(image) = self.scenario.images.get_mut(at) else {
                continue;
            };
            // A scheduled image's created time counts from load; one that followed the
            // clock until now is pinned where it stands instead of jumping back.
            if image.changes.is_empty() {
                if let Some(created) = image.created_at(self.loaded_wall, now) {
                    image.created = timestamp::format_api(created);
                    image.age = None;
                }
            }
            image.changes = changes;
        }
        Ok(change)
    }

    fn index(&mut self) {
        self.account_by_id.clear();
        for (at, account) in self.scenario.accounts.iter().enumerate() {
            self.account_by_id.entry(account.id.clone()).or_insert(at);
        }
        self.images_by_account.clear();
        for (at, image) in self.scenario.images.iter().enumerate() {
            self.images_by_account
                .entry(image.account.clone())
                .or_default()
                .push(at);
        }
    }

    /// The first account with this id.
    fn account(&self, id: &str) -> Option<&scenario::Account> {
        self.scenario.accounts.get(*self.account_by_id.get(id)?)
    }

    /// The images of one account, in scenario order.
    fn account_images<'a>(
        &'a self,
        account: &str,
    ) -> impl Iterator<Item = &'a scenario::Image> + 'a {
        let positions = self
            .images_by_account
            .get(account)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        positions
            .iter()
            .filter_map(|&at| self.scenario.images.get(at))
    }

    fn push_fault(&mut self, fault: Fault) {
        self.fault_budget.push(fault.times);
        self.scenario.faults.push(fault);
    }

    fn clear_faults(&mut self) {
        self.scenario.faults.clear();
        self.fault_budget.clear();
    }

    fn reset_budgets(&mut self) {
        self.fault_budget = self.scenario.faults.iter().map(|f| f.times).collect();
    }

    /// The first fault that matches and still has uses left; uses one.
    fn take_fault(&mut self, path: &str, query: &str) -> Option<FaultAction> {
        let index = self.scenario.faults.iter().enumerate().position(|(i, f)| {
            f.matches(path, query) && self.fault_budget.get(i).copied().flatten() != Some(0)
        })?;
        if let Some(Some(left)) = self.fault_budget.get_mut(index) {
            *left -= 1;
        }
        Some(self.scenario.faults[index].action.clone())
    }
}

fn router(shared: Arc<Shared>) -> Router {
    handlers::routes()
        // Inside the faults, so a fault that mangles an answer mangles what was sent.
        // The fastest level: the exporter decodes every level alike, and the load tool runs
        // the simulator on the cores it measures the exporter on.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            faults::inject,
        ))
        .merge(admin::routes())
        .with_state(shared)
}

/// Per-connection signal a handler uses to close its connection without answering.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionControl {
    pub(crate) close: Arc<Notify>,
    pub(crate) reset: Arc<std::sync::atomic::AtomicBool>,
}

/// Accepts connections by hand (not `axum::serve`) so a fault can drop or reset the
/// connection of the request it hits, which a handler alone cannot do.
async fn serve(listener: TcpListener, router: Router, shared: Arc<Shared>, stop: Arc<Notify>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.notified() => break,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        shared
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let control = ConnectionControl {
            close: Arc::new(Notify::new()),
            reset: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let socket = socket2::SockRef::from(&stream).try_clone().ok();
        let service = {
            let control = control.clone();
            let router = router.clone();
            tower::ServiceExt::map_request(
                router,
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(control.clone());
                    req
                },
            )
        };
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::select! {
                _ = conn => {}
                () = control.close.notified() => {
                    if control.reset.load(std::sync::atomic::Ordering::SeqCst) {
                        if let Some(socket) = &socket {
                            let _ = socket.set_linger(Some(std::time::Duration::ZERO));
                        }
                    }
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

/// Whether the rate limit, if any, lets a request arriving `at` through; counts it if so.
fn within_rate_limit(shared: &Shared, at: std::time::Instant) -> Result<(), u64> {
    let Some(limit) = lock(&shared.fleet).scenario.rate_limit else {
        return Ok(());
    };
    let mut admitted = lock(&shared.admitted);
    while admitted
        .front()
        .is_some_and(|first| at.duration_since(*first) >= std::time::Duration::from_secs(1))
    {
        admitted.pop_front();
    }
    if admitted.len() >= limit.requests_per_second as usize {
        return Err(limit.retry_after);
    }
    admitted.push_back(at);
    Ok(())
}

/// Records a request in the bounded log.
fn record(shared: &Shared, record: RequestRecord) {
    shared
        .request_count
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let capacity = shared
        .log_capacity
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut log = lock(&shared.log);
    while !log.is_empty() && log.len() >= capacity {
        log.pop_front();
    }
    if capacity > 0 {
        log.push_back(record);
    }
}
