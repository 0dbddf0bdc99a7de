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

impl Command {
    fn flag(&self) -> &'static str {
        match self {
            Command::Run => "",
            Command::Demo => "--demo",
            Command::Once => "--once",
            Command::Help => "--help",
            Command::Version => "--version",
            Command::HealthCheck(_) => "--health-check",
        }
    }
}

/// The command line as one command; `--help` and `--version` win over anything else, and two
/// modes at once are a usage error rather than one silently winning.
fn parse_args() -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut command = Command::Run;
    while let Some(arg) = parser.next()? {
        let next = match arg {
            Long("help") | Short('h') => return Ok(Command::Help),
            Long("version") | Short('V') => return Ok(Command::Version),
            Long("demo") => Command::Demo,
            Long("once") => Command::Once,
            Long("health-check") => Command::HealthCheck(parser.value()?.string()?),
            _ => return Err(arg.unexpected()),
        };
        if !matches!(command, Command::Run) && command.flag() != next.flag() {
            return Err(
                format!("{} and {} cannot be combined", command.flag(), next.flag()).into(),
            );
        }
        command = next;
    }
    Ok(command)
}

/// The version and the source revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("FLEXCLOUD_REVISION"),
    ")"
);

fn main() -> ExitCode {
    install_panic_hook();
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
            println!("flexcloud-exporter {VERSION}");
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
    raise_open_file_limit();
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

/// One cycle, its metrics on stdout; on stderr a summary line when every step succeeded, or
/// one line per failing step and a hint naming the setting to check. Exit 0 only on success.
async fn once(config: Config) -> Result<ExitCode, Error> {
    let (snapshot, exposition) = Exporter::new(config)?.collect_once().await;
    let (process, _) = flexcloud_exporter::metrics::encode_scrape_time(None);
    print!(
        "{}{process}",
        String::from_utf8_lossy(&exposition.plain_text())
    );
    if snapshot.all_succeeded() {
        eprintln!(
            "ok: {} accounts, {} zones, credentials accepted",
            snapshot.account_count(),
            snapshot.zones.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let failing = snapshot.failing_steps();
    let mut hints = std::collections::BTreeSet::new();
    for (step, outcome) in &failing {
        let why = outcome
            .detail
            .as_deref()
            .unwrap_or_else(|| outcome.error_kind.map_or("failed", |k| k.as_str()));
        eprintln!(
            "failed: {step} (HTTP status {}): {why}",
            outcome.http_status
        );
        hints.insert(hint(outcome));
    }
    if failing.is_empty() {
        hints.insert("the API answered, but no account and zone were found to probe: check FLEXCLOUD_ACCOUNTS and FLEXCLOUD_ZONES");
    }
    for hint in hints {
        eprintln!("hint: {hint}");
    }
    Ok(ExitCode::FAILURE)
}

/// Which setting to look at for a failed step.
fn hint(outcome: &flexcloud_exporter::snapshot::Outcome) -> &'static str {
    use flexcloud_exporter::api::ErrorKind;
    match (outcome.http_status, outcome.error_kind) {
        (401, _) | (_, Some(ErrorKind::CredentialsSuspended)) => {
            "the API rejected the credentials: check FLEXCLOUD_USERNAME and FLEXCLOUD_PASSWORD_FILE (or FLEXCLOUD_PASSWORD)"
        }
        (403, _) => {
            "the user may not read this account: check FLEXCLOUD_ACCOUNTS, or the user's rights"
        }
        (404, _) => {
            "the API does not know this account or path: check FLEXCLOUD_ACCOUNTS and FLEXCLOUD_API_URL"
        }
        (_, Some(ErrorKind::Timeout | ErrorKind::ConnectError)) => {
            "no response from the API: check FLEXCLOUD_API_URL (and FLEXCLOUD_CA_FILE for a private CA)"
        }
        (_, Some(ErrorKind::InvalidResponse)) => {
            "the answer was not the API's JSON: check that FLEXCLOUD_API_URL points at the FlexCloud API"
        }
        _ => "the API failed; try again later, or raise FLEXCLOUD_TIMEOUT if it is slow",
    }
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

/// Panics print where they happened, never their message: a message may be built from
/// values (a setting, an answer of the API), and the password must never reach the output.
/// A message that is a literal in the source carries no value and is kept.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&'static str>()
            .copied()
            .unwrap_or("details withheld");
        eprintln!("flexcloud-exporter: internal error{location}: {message}; please report it");
    }));
}

/// Raises the soft limit of open files to the hard one, as the Go runtime does for every Go
/// exporter: each connection to the endpoint and to the API is a file, and the usual soft
/// limit of 1,024 is below what FLEXCLOUD_WEB_MAX_CONNECTIONS allows.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("flexcloud-exporter: {message} (see --help)");
    ExitCode::from(2)
}

fn fail(error: &Error) -> ExitCode {
    eprintln!("flexcloud-exporter: {error}");
    ExitCode::from(error.exit_code())
}
