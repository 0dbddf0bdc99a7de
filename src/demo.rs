//! `--demo`, part of the binary only: the simulator with its demo fleet on a loopback
//! port, and the exporter against it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use flexcloud_exporter::config::{self, ApiAccess, Config, ModeDefaults};
use flexcloud_exporter::{Error, Exporter, telemetry};
use flexcloud_sim::{DEMO_SCENARIO, Scenario, Simulator};
use secrecy::SecretString;
use tracing::info;

/// The demo answers on loopback unless `FLEXCLOUD_LISTEN_ADDRESS` says otherwise, and
/// cycles every 15 s so that a first look shows movement.
const DEMO_DEFAULTS: ModeDefaults = ModeDefaults {
    listen_address: Some(SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        config::DEFAULT_PORT,
    )),
    interval: Some(Duration::from_secs(15)),
};

pub fn run() -> ExitCode {
    let scenario = match Scenario::from_json(DEMO_SCENARIO) {
        Ok(s) => s,
        Err(e) => return fail(&format!("the demo scenario does not load: {e}")),
    };
    let Some(user) = scenario.users.first().cloned() else {
        return fail("the demo scenario has no user");
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        let simulator = match Simulator::start_local(scenario).await {
            Ok(s) => s,
            Err(e) => return fail(&format!("cannot start the simulated API: {e}")),
        };
        // The last thousand requests (about an hour of the demo) for `/-/sim/requests`; at
        // the simulator's default the log would grow by 20 MB over a day.
        simulator.keep_requests(1_000);
        let access = match reqwest::Url::parse(&simulator.url()) {
            Ok(url) => ApiAccess {
                url,
                username: user.username,
                password: SecretString::from(user.password),
                password_file: None,
            },
            Err(e) => return fail(&format!("the simulator's URL does not parse: {e}")),
        };
        let code = match Config::with_api(std::env::vars_os(), access, DEMO_DEFAULTS) {
            Ok(config) => serve(config, &simulator.url()).await,
            Err(e) => super::fail(&Error::Config(e)),
        };
        simulator.stop().await;
        code
    })
}

async fn serve(config: Config, simulator_url: &str) -> ExitCode {
    telemetry::init(&config.log, config.log_format);
    super::raise_open_file_limit();
    let address = config.listen_address;
    let exporter = match Exporter::new(config) {
        Ok(e) => e,
        Err(e) => return super::fail(&e),
    };
    let Some(listener) = super::bind(address).await else {
        return ExitCode::FAILURE;
    };
    let address = listener.local_addr().unwrap_or(address);
    let scheme = if exporter.uses_tls() { "https" } else { "http" };
    info!(simulator = %simulator_url, "demo: simulated FlexCloud API started");
    println!(
        "flexcloud-exporter demo: metrics at {scheme}://{address}/metrics, status page at {scheme}://{address}/ (simulated API at {simulator_url}). Ctrl-C stops."
    );
    exporter.serve(listener, super::signal_shutdown()).await;
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("flexcloud-exporter: {message}");
    ExitCode::FAILURE
}
