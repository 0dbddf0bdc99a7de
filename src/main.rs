//! The `flexcloud-exporter` command: parses the command line, then hands over to `app`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use flexcloud_exporter::app::{self, AppError, Shutdown};
use flexcloud_exporter::config::{self, Config};
use flexcloud_exporter::simulator::Scenario;
use flexcloud_exporter::telemetry;

enum Command {
    Run,
    Demo,
    Once,
    Help,
    Version,
    HealthCheck(String),
    Simulate {
        scenario: PathBuf,
        listen: SocketAddr,
        print: bool,
    },
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
            Value(v) if v == "simulate" => return parse_simulate(&mut parser),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(command)
}

fn parse_simulate(parser: &mut lexopt::Parser) -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut scenario = None;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut print = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("scenario") => scenario = Some(PathBuf::from(parser.value()?)),
            Long("listen") => listen = parser.value()?.parse()?,
            Long("print-scenario") => print = true,
            Long("help") | Short('h') => return Ok(Command::Help),
            _ => return Err(arg.unexpected()),
        }
    }
    let scenario = scenario.ok_or("simulate needs --scenario FILE")?;
    Ok(Command::Simulate {
        scenario,
        listen,
        print,
    })
}

fn main() -> ExitCode {
    let command = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flexcloud-exporter: {e} (see --help)");
            return ExitCode::from(2);
        }
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
        Command::Simulate {
            scenario,
            print: true,
            ..
        } => match Scenario::from_file(&scenario) {
            Ok(s) => match serde_json::to_string_pretty(&s) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&AppError::Scenario(e.into())),
            },
            Err(e) => fail(&AppError::Scenario(e)),
        },
        other => run_async(other),
    }
}

fn run_async(command: Command) -> ExitCode {
    // Settings are checked before anything starts, so a bad one never half-starts.
    let config = match &command {
        Command::Run | Command::Once => match Config::from_env() {
            Ok(c) => Some(c),
            Err(e) => return fail(&AppError::Config(e)),
        },
        _ => None,
    };
    let (log, format) = config
        .as_ref()
        .map(|c| (c.log.clone(), c.log_format))
        .unwrap_or_else(log_settings_from_env);
    telemetry::init(&log, format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flexcloud-exporter: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(app::signal_shutdown(trigger));
        let result = match (command, config) {
            (Command::Run, Some(config)) => {
                app::run_from_config(config, shutdown).await.map(|()| true)
            }
            (Command::Once, Some(config)) => app::run_once(config).await,
            (Command::Demo, _) => app::run_demo(shutdown).await.map(|()| true),
            (Command::HealthCheck(url), _) => Ok(app::health_check(&url).await),
            (
                Command::Simulate {
                    scenario, listen, ..
                },
                _,
            ) => app::run_simulator(&scenario, listen, shutdown)
                .await
                .map(|()| true),
            _ => Ok(true),
        };
        match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => fail(&e),
        }
    })
}

/// Log settings for modes that do not need the full configuration.
fn log_settings_from_env() -> (String, config::LogFormat) {
    let log = std::env::var("FLEXCLOUD_LOG").unwrap_or_else(|_| "info".into());
    let format = match std::env::var("FLEXCLOUD_LOG_FORMAT").as_deref() {
        Ok("json") => config::LogFormat::Json,
        _ => config::LogFormat::Text,
    };
    (log, format)
}

fn fail(error: &AppError) -> ExitCode {
    eprintln!("flexcloud-exporter: {error}");
    ExitCode::from(error.exit_code())
}
