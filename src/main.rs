//! The `flexcloud-exporter` command: parses the command line into a [`Command`], loads the
//! configuration, starts logging, binds, and hands over to the library.

#[cfg(feature = "demo")]
mod demo;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use flexcloud_exporter::config::{self, Config, ConfigError};
use flexcloud_exporter::{Error, Exporter, Shutdown, telemetry};
use tokio::net::TcpListener;
use tracing::info;

/// What the command line asks for.
enum Command {
    Run,
    Demo,
    Once,
    Help,
    Version,
    HealthCheck(String),
}

fn parse_args() -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut command = Command::Run;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help),
            Long("version") | Short('V') => return Ok(Command::Version),
            Long("demo") => command = Command::Demo,
            Long("once") => command = Command::Once,
            Long("health-check") => command = Command::HealthCheck(parser.value()?.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(command)
}

fn main() -> ExitCode {
    let command = match parse_args() {
        Ok(c) => c,
        Err(e) => return usage_error(&e.to_string()),
    };
    match command {
        Command::Help => {
            print!("{}", config::help_text());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("flexcloud-exporter {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::HealthCheck(url) => match runtime() {
            Ok(rt) if rt.block_on(health_check(&url)) => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        },
        Command::Run => with_config(Config::from_env(), run),
        Command::Once => with_config(Config::from_env(), once),
        Command::Demo => demo(),
    }
}

/// Checks the configuration, starts logging and the runtime, then runs `job`.
fn with_config<F, Fut>(config: Result<Config, ConfigError>, job: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode, Error>>,
{
    // Settings are checked before anything starts, so a bad one never half-starts.
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(&Error::Config(e)),
    };
    telemetry::init(&config.log, config.log_format);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flexcloud-exporter: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(job(config)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

async fn run(config: Config) -> Result<ExitCode, Error> {
    // Build first: a bad web config or CA file stops start-up before the port is taken.
    let address = config.listen_address;
    let exporter = Exporter::new(config)?;
    let Some(listener) = bind(address).await else {
        return Ok(ExitCode::FAILURE);
    };
    exporter.serve(listener, signal_shutdown()).await;
    Ok(ExitCode::SUCCESS)
}

/// One cycle, its metrics on stdout and the failing steps on stderr; exit 0 only when
/// every probe succeeded.
async fn once(config: Config) -> Result<ExitCode, Error> {
    let (snapshot, exposition) = Exporter::new(config)?.collect_once().await;
    let (process, _) = flexcloud_exporter::metrics::encode_scrape_time(None);
    print!("{}{process}", String::from_utf8_lossy(&exposition.text));
    for (step, status) in snapshot.failing_steps() {
        eprintln!("failed: {step} (HTTP status {status})");
    }
    Ok(if snapshot.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(feature = "demo")]
fn demo() -> ExitCode {
    demo::run()
}

#[cfg(not(feature = "demo"))]
fn demo() -> ExitCode {
    usage_error("--demo is not in this build (built without the `demo` feature)")
}

async fn bind(address: SocketAddr) -> Option<TcpListener> {
    match TcpListener::bind(address).await {
        Ok(listener) => Some(listener),
        Err(e) => {
            eprintln!("flexcloud-exporter: cannot listen on {address}: {e}");
            None
        }
    }
}

/// A shutdown signal fired by SIGTERM or SIGINT.
fn signal_shutdown() -> Shutdown {
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = trigger.send(true);
    });
    shutdown
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `--health-check URL`: true when the URL answers 200 within five seconds.
async fn health_check(url: &str) -> bool {
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

fn usage_error(message: &str) -> ExitCode {
    eprintln!("flexcloud-exporter: {message} (see --help)");
    ExitCode::from(2)
}

fn fail(error: &Error) -> ExitCode {
    eprintln!("flexcloud-exporter: {error}");
    ExitCode::from(error.exit_code())
}
