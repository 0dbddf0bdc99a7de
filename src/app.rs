//! Wiring for `main`: the exporter, demo mode, one-shot mode, simulator and health check.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::api::{ApiClient, ApiError, ClientSettings};
use crate::collector::{Collection, CollectorSettings, failing_steps};
use crate::config::{Config, ConfigError};
use crate::landing::PageInfo;
use crate::metrics::{self, ApiMetrics};
use crate::server::{self, AppState};
use crate::simulator::{Scenario, ScenarioError, Simulator};
use crate::webconfig::{WebConfig, WebConfigError};

/// The scenario `--demo` serves: a small realistic fleet with one image stuck in SAVING.
pub const DEMO_SCENARIO: &str = include_str!("../examples/scenarios/demo.json");

/// Why the program stops with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
}

impl AppError {
    /// 2 for a setting or input the user must fix, 1 for failures at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Scenario(_) | AppError::WebConfig(_) => 2,
            _ => 1,
        }
    }
}

/// A shutdown signal many tasks can wait on.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the trigger that fires it.
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

/// Fires the trigger on SIGTERM or SIGINT.
pub async fn signal_shutdown(trigger: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutting down");
    let _ = trigger.send(true);
}

fn client_settings(config: &Config) -> Result<ClientSettings, ConfigError> {
    if config.tls_insecure_skip_verify {
        tracing::warn!(api_url = %config.api_url, "FLEXCLOUD_TLS_INSECURE_SKIP_VERIFY is set: the API's TLS certificate is NOT verified; anyone on the path can read the credentials");
    }
    Ok(ClientSettings {
        base_url: config.api_url.clone(),
        username: config.username.clone(),
        password: config.password.clone(),
        timeout: config.timeout,
        connect_timeout: config.connect_timeout,
        read_timeout: config.read_timeout,
        max_body_bytes: config.max_body_bytes,
        concurrency: config.concurrency,
        max_retries: 2,
        retry_budget: (config.interval / 4).min(Duration::from_secs(30)),
        ca_certificates: config.ca_certificates()?,
        insecure_skip_verify: config.tls_insecure_skip_verify,
    })
}

/// The collector for a configuration, and the receiver of what it publishes.
pub fn build_collection(
    config: &Config,
) -> Result<
    (
        Collection,
        watch::Receiver<Arc<crate::collector::Published>>,
    ),
    AppError,
> {
    let api_metrics = ApiMetrics::default();
    let client = Arc::new(ApiClient::new(
        client_settings(config)?,
        api_metrics.clone(),
    )?);
    let settings = CollectorSettings {
        accounts: config.accounts.clone(),
        zones: config.zones.clone(),
        interval: config.interval,
        stale_after: config.stale_after,
        saving_series_limit: config.saving_series_limit,
        shard: config.shard,
    };
    Ok(Collection::new(client, api_metrics, settings))
}

/// Runs the exporter until `shutdown`: the collector in the background, the server on
/// `listener`. Tests pass a port-0 loopback listener.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let web = load_web_config(&config)?;
    run_with_web(config, web, listener, shutdown).await
}

/// The web config file of `FLEXCLOUD_WEB_CONFIG_FILE`, or the plain default.
fn load_web_config(config: &Config) -> Result<WebConfig, AppError> {
    Ok(WebConfig::load_optional(config.web_config_file.as_deref())?)
}

async fn run_with_web(
    config: Config,
    web: WebConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let (collection, published) = build_collection(&config)?;
    let collector = tokio::spawn(collection.run(shutdown.wait()));
    let state = AppState {
        published,
        info: Arc::new(PageInfo {
            version: env!("CARGO_PKG_VERSION"),
            api_url: config.api_url.to_string(),
            interval: config.interval,
        }),
    };
    if let Ok(address) = listener.local_addr() {
        info!(
            address = %address,
            api_url = %config.api_url,
            interval = %humantime::format_duration(config.interval),
            tls = web.tls.is_some(),
            basic_auth_users = web.basic_auth.as_ref().map_or(0, |a| a.user_count()),
            "listening"
        );
    }
    let router = server::secured_router(state, &web);
    let served = server::serve(listener, router, web.tls.clone(), shutdown.wait()).await;
    let _ = collector.await;
    served.map_err(AppError::Serve)
}

/// Reads the web config file, binds the configured address, then serves as [`run`] does. The
/// file is read first so a bad one stops startup before the port is taken.
pub async fn run_from_config(config: Config, shutdown: Shutdown) -> Result<(), AppError> {
    let web = load_web_config(&config)?;
    let listener = bind(config.listen_address).await?;
    run_with_web(config, web, listener, shutdown).await
}

async fn bind(address: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| AppError::Bind { address, source })
}

/// One cycle, its metrics on stdout; `Ok(true)` when every probe succeeded.
pub async fn run_once(config: Config) -> Result<bool, AppError> {
    let (mut collection, published) = build_collection(&config)?;
    let snapshot = collection.run_cycle().await;
    let exposition = published.borrow().exposition.clone();
    let (process, _) = metrics::encode_process();
    let mut out = String::from_utf8_lossy(&exposition.text).into_owned();
    out.push_str(&process);
    print!("{out}");
    for (step, status) in failing_steps(&snapshot) {
        eprintln!("failed: {step} (HTTP status {status})");
    }
    Ok(snapshot.all_succeeded())
}

/// Demo mode: the simulator with [`DEMO_SCENARIO`] on a loopback port and the exporter
/// against it. Settings other than the API's come from the environment as usual; the
/// listen address defaults to loopback.
pub async fn run_demo(shutdown: Shutdown) -> Result<(), AppError> {
    let scenario = Scenario::from_json(DEMO_SCENARIO)?;
    let user = scenario
        .users
        .first()
        .cloned()
        .ok_or_else(|| ScenarioError::Invalid("the demo scenario has no user".into()))?;
    let simulator = Simulator::start_local(scenario).await?;
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "FLEXCLOUD_API_URL"
                    | "FLEXCLOUD_USERNAME"
                    | "FLEXCLOUD_PASSWORD"
                    | "FLEXCLOUD_PASSWORD_FILE"
            )
        })
        .collect();
    vars.push(("FLEXCLOUD_API_URL".into(), simulator.url()));
    vars.push(("FLEXCLOUD_USERNAME".into(), user.username));
    vars.push(("FLEXCLOUD_PASSWORD".into(), user.password));
    if !vars.iter().any(|(k, _)| k == "FLEXCLOUD_LISTEN_ADDRESS") {
        vars.push((
            "FLEXCLOUD_LISTEN_ADDRESS".into(),
            format!("127.0.0.1:{}", crate::config::DEFAULT_PORT),
        ));
    }
    if !vars.iter().any(|(k, _)| k == "FLEXCLOUD_INTERVAL") {
        vars.push(("FLEXCLOUD_INTERVAL".into(), "15s".into()));
    }
    let config = Config::from_vars(vars)?;
    let web = load_web_config(&config)?;
    let listener = bind(config.listen_address).await?;
    let address = listener.local_addr().map_err(AppError::Serve)?;
    info!(simulator = %simulator.url(), "demo: simulated FlexCloud API started");
    let scheme = if web.tls.is_some() { "https" } else { "http" };
    println!(
        "flexcloud-exporter demo: metrics at {scheme}://{address}/metrics, status page at {scheme}://{address}/ (simulated API at {}). Ctrl-C stops.",
        simulator.url()
    );
    let result = run_with_web(config, web, listener, shutdown).await;
    simulator.stop().await;
    result
}

/// `simulate`: serves a scenario file until `shutdown`; prints the address first.
pub async fn run_simulator(
    scenario: &Path,
    listen: SocketAddr,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let scenario = Scenario::from_file(scenario)?;
    let listener = bind(listen).await?;
    let simulator = Simulator::start(scenario, listener).await?;
    println!("listening on {}", simulator.url());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    shutdown.wait().await;
    simulator.stop().await;
    Ok(())
}

/// `--health-check URL`: true when the URL answers 200 within five seconds.
pub async fn health_check(url: &str) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return false;
    };
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}
