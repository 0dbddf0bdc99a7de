//! flexcloud-exporter: a Prometheus exporter for the Hostway FlexCloud image API.
//!
//! [`Exporter::new`] checks a [`config::Config`] and builds everything that can fail at
//! start-up; [`Exporter::serve`] then runs the collector in the background and serves the
//! endpoints on a listener the caller bound, until a [`Shutdown`] fires. [`run`] does both,
//! for tests with a port-0 listener. Nothing here prints; the binary does.
//!
//! # Layout
//! Layers, lowest first. A module imports only from its own layer and from lower layers;
//! a lower layer reaches a higher one only through a trait it defines and the higher one
//! implements (the client reports requests through [`api::RequestObserver`], which
//! [`metrics::Metrics`] implements). `tests/layers.rs` checks the rule on every build.
//! 0. [`timestamp`], [`telemetry`]: the API's timestamps; the tracing subscriber and
//!    [`telemetry::LogFormat`]. They import nothing of the crate.
//! 1. [`config`]: `FLEXCLOUD_*` settings, one declaration each; [`reload`]: whether the
//!    files read again while running loaded.
//! 2. [`api`]: the FlexCloud client (HTTP, paging, retries, typed models, errors), the
//!    credential gate, and the request observer trait.
//! 3. [`snapshot`]: our typed view of one cycle, built by pure functions from API answers;
//!    the stale-data rule. [`lifecycle`]: images followed across cycles (transitions,
//!    saves, deletions, disappearances), the tracker's state and its rules, without I/O.
//! 4. [`collector`]: the cycle: discovery, probes, concurrency, schedule, shutdown. The
//!    house style lists it before the snapshot, in the order data flows; in the imports it
//!    builds snapshots, so it sits above them, and the snapshot stays free of I/O.
//! 5. [`metrics`]: every metric name and help text, the SAVING cap; snapshot -> exposition
//!    bytes, and [`metrics::Published`], what the server reads.
//! 6. [`web`], [`landing`], [`server`]: the web config (schema, TLS, Basic auth), the status
//!    page, and the endpoints with their one accept loop.
//! 7. this file: wiring.

pub mod api;
pub mod collector;
pub mod config;
pub mod landing;
pub mod lifecycle;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod timestamp;
pub mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::{ApiClient, ApiError, ClientSettings};
use crate::collector::{Collection, CollectorSettings};
use crate::config::{Config, ConfigError};
use crate::landing::PageInfo;
use crate::metrics::{EndpointMetrics, Exposition, Metrics, Published};
use crate::server::ServerState;
use crate::snapshot::Snapshot;
use crate::web::{WebConfig, WebConfigError};

/// Why the exporter cannot start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl Error {
    /// 2 for a setting or file the user must fix, 1 for failures at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::WebConfig(_) => 2,
            Error::Api(_) => 1,
        }
    }
}

/// A shutdown signal many tasks can wait on.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the trigger that fires it (dropping the trigger fires it too).
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Resolves once the trigger fired (or was dropped).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// The exporter, checked and built, not yet running.
#[derive(Debug)]
pub struct Exporter {
    config: Config,
    web: WebConfig,
    client: Arc<ApiClient>,
    metrics: Arc<Metrics>,
}

impl Exporter {
    /// Reads the web config file and the CA file and builds the API client, so that every
    /// mistake in them stops start-up before a port is taken.
    pub fn new(config: Config) -> Result<Self, Error> {
        let web = WebConfig::load_optional(config.web_config_file.as_deref())?;
        if config.tls_insecure_skip_verify {
            warn!(api_url = %config.api_url, "FLEXCLOUD_TLS_INSECURE_SKIP_VERIFY is set: the API's TLS certificate is NOT verified; anyone on the path can read the credentials");
        }
        let metrics = Arc::new(
            Metrics::new(config.saving_series_limit)
                .forgetting_after(config.stale_after)
                .in_shard(config.shard),
        );
        let client = Arc::new(ApiClient::new(
            ClientSettings::from_config(&config)?,
            metrics.clone(),
        )?);
        Ok(Exporter {
            config,
            web,
            client,
            metrics,
        })
    }

    fn limits(&self) -> server::Limits {
        server::Limits {
            max_connections: self.config.web_max_connections,
            idle_timeout: self.config.web_idle_timeout,
            ..server::Limits::default()
        }
    }

    /// Whether the endpoint is served over TLS.
    pub fn uses_tls(&self) -> bool {
        self.web.tls.is_some()
    }

    /// The collector joined to the metrics, publishing each cycle.
    pub fn pipeline(&self) -> Pipeline {
        let collection = Collection::new(
            self.client.clone(),
            CollectorSettings::from_config(&self.config),
        );
        let initial = Published {
            snapshot: None,
            exposition: self.metrics.encode(None, SystemTime::now()),
        };
        Pipeline {
            collection,
            metrics: self.metrics.clone(),
            published: watch::channel(Arc::new(initial)).0,
        }
    }

    /// Collects in the background and serves the endpoints on `listener` until `shutdown`.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) {
        let pipeline = self.pipeline();
        let reload = self.client.reload_status();
        let endpoint = Arc::new(
            EndpointMetrics::with_reload_status(reload.clone()).with_client(self.client.clone()),
        );
        let state = ServerState {
            published: pipeline.subscribe(),
            info: Arc::new(PageInfo {
                version: env!("CARGO_PKG_VERSION"),
                api_url: self.config.api_url.to_string(),
                interval: self.config.interval,
                shard: self.config.shard,
            }),
            endpoint: endpoint.clone(),
        };
        let collector = tokio::spawn(pipeline.run(shutdown.clone()));
        if let Ok(address) = listener.local_addr() {
            info!(
                version = env!("CARGO_PKG_VERSION"),
                revision = env!("FLEXCLOUD_REVISION"),
                address = %address,
                api_url = %self.config.api_url,
                interval = %humantime::format_duration(self.config.interval),
                shard = %self.config.shard.map_or_else(|| "none".into(), |s| s.to_string()),
                tls = self.web.tls.is_some(),
                basic_auth_users = self.web.basic_auth.as_ref().map_or(0, |a| a.user_count()),
                "listening"
            );
        }
        let (served, serving) = watch::channel(server::Served {
            router: server::secured_router(state.clone(), &self.web),
            tls: self.web.tls.clone(),
        });
        let reloader = Reloader {
            client: self.client.clone(),
            web_file: self.config.web_config_file.clone(),
            web_fingerprint: self.web.fingerprint,
            failed_fingerprint: None,
            state,
            served,
        };
        let reloads = tokio::spawn(reloader.run(shutdown.clone()));
        server::serve_reloading(listener, serving, self.limits(), endpoint, shutdown.wait()).await;
        let _ = collector.await;
        reloads.abort();
    }

    /// Runs one cycle and returns it with its exposition.
    pub async fn collect_once(self) -> (Arc<Snapshot>, Exposition) {
        let mut pipeline = self.pipeline();
        let snapshot = pipeline.run_cycle().await;
        let exposition = pipeline.subscribe().borrow().exposition.clone();
        (snapshot, exposition)
    }
}

/// The collector joined to the metrics: every finished cycle is encoded once and published
/// to the readers of [`Pipeline::subscribe`].
#[derive(Debug)]
pub struct Pipeline {
    collection: Collection,
    metrics: Arc<Metrics>,
    published: watch::Sender<Arc<Published>>,
}

impl Pipeline {
    /// The latest published cycle, as the server reads it.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.published.subscribe()
    }

    /// Runs one cycle now and publishes it.
    pub async fn run_cycle(&mut self) -> Arc<Snapshot> {
        let snapshot = self.collection.run_cycle().await;
        publish(&self.metrics, &self.published, snapshot.clone());
        snapshot
    }

    /// Runs cycles on the collector's schedule until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let Pipeline {
            collection,
            metrics,
            published,
        } = self;
        collection
            .run(shutdown.wait(), |snapshot| {
                publish(&metrics, &published, snapshot)
            })
            .await;
    }
}

fn publish(metrics: &Metrics, published: &watch::Sender<Arc<Published>>, snapshot: Arc<Snapshot>) {
    let started = std::time::Instant::now();
    let exposition = metrics.encode(Some(snapshot.clone()), SystemTime::now());
    // Its own target, so the per-cycle figures can be turned on alone
    // (FLEXCLOUD_LOG=info,flexcloud_exporter::exposition=debug).
    tracing::debug!(
        target: "flexcloud_exporter::exposition",
        cycle = snapshot.cycle,
        cycle_seconds = snapshot.duration.as_secs_f64(),
        series = exposition.measured().samples(),
        bytes = exposition.measured().len(),
        gzip_bytes = exposition.measured().gzip_len(),
        encode_seconds = started.elapsed().as_secs_f64(),
        "exposition encoded"
    );
    published.send_replace(Arc::new(Published {
        snapshot: Some(snapshot),
        exposition,
    }));
}

/// How often the web config file is read again; exporter-toolkit reads it for every request,
/// which a check every few seconds matches closely enough at a fraction of the work.
const WEB_CONFIG_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the files that may change while the exporter runs: the web config file every few
/// seconds, both it and the password file on SIGHUP (the collector reads the password file
/// at every cycle too). SIGHUP never ends the process: its default action would, and
/// systemd counts that as a clean exit.
struct Reloader {
    client: Arc<ApiClient>,
    web_file: Option<std::path::PathBuf>,
    web_fingerprint: u64,
    /// The content that failed to load last, so it is not loaded again until it changes.
    failed_fingerprint: Option<u64>,
    state: ServerState,
    served: watch::Sender<server::Served>,
}

impl Reloader {
    async fn run(mut self, shutdown: Shutdown) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(error) => {
                warn!(error = %error, "cannot listen for SIGHUP; the files are still read again on their own schedule");
                None
            }
        };
        let mut checks = tokio::time::interval(WEB_CONFIG_CHECK_EVERY);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = checks.tick() => self.check_web_config().await,
                received = hangup => {
                    if received.is_none() {
                        hangups = None;
                        continue;
                    }
                    info!("SIGHUP: reading the password file and the web config file again");
                    self.client.reload_password();
                    self.check_web_config().await;
                }
            }
        }
    }

    /// Checks the web config file for a change, cheaply; loads a changed one (the load
    /// times a bcrypt check, so it runs on a blocking thread, and only once per content).
    /// A new content serves new connections; one that does not load leaves the previous
    /// config in force.
    async fn check_web_config(&mut self) {
        use crate::reload::Source;
        let Some(path) = self.web_file.clone() else {
            return;
        };
        let status = self.client.reload_status();
        let fingerprint = match WebConfig::fingerprint_of(&path) {
            Ok(f) if f == self.web_fingerprint => {
                if status.unchanged(Source::WebConfigFile) {
                    info!(path = %path.display(), "web config file loads again; it is unchanged");
                }
                return;
            }
            // The content that failed to load last time: it fails again.
            Ok(f) if Some(f) == self.failed_fingerprint => return,
            Ok(f) => Some(f),
            Err(_) => None,
        };
        let loading = path.clone();
        let loaded = tokio::task::spawn_blocking(move || WebConfig::load(&loading)).await;
        match loaded {
            Ok(Ok(web)) => {
                self.web_fingerprint = web.fingerprint;
                self.failed_fingerprint = None;
                self.served.send_replace(server::Served {
                    router: server::secured_router(self.state.clone(), &web),
                    tls: web.tls.clone(),
                });
                status.loaded(Source::WebConfigFile);
                info!(
                    path = %path.display(),
                    tls = web.tls.is_some(),
                    basic_auth_users = web.basic_auth.as_ref().map_or(0, |a| a.user_count()),
                    "web config file changed; new connections use it"
                );
            }
            Ok(Err(error)) => {
                self.failed_fingerprint = fingerprint;
                if status.failed_now(Source::WebConfigFile) {
                    tracing::error!(error = %error, "web config file no longer loads; the previous config stays in force");
                }
            }
            // The load panicked or was cancelled at shutdown: the file is tried again later.
            Err(_) => {}
        }
    }
}

/// Builds the exporter for `config` and serves it on `listener` until `shutdown`.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    Exporter::new(config)?.serve(listener, shutdown).await;
    Ok(())
}
