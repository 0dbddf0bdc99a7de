//! The `flexcloud-sim` command: serves a scenario file as the FlexCloud API until stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use flexcloud_sim::{Scenario, Simulator};
use tokio::net::TcpListener;

const USAGE: &str = "\
flexcloud-sim: a simulated Hostway FlexCloud image API

USAGE:
  flexcloud-sim --scenario FILE [--listen ADDR]   serve the scenario (default listen 127.0.0.1:0);
                                                  prints `listening on URL` once it accepts
  flexcloud-sim --scenario FILE --print-scenario  print the scenario with its generated fleet expanded
  flexcloud-sim --help

Run-time control: PUT/GET /-/sim/scenario, POST /-/sim/images/ID/changes,
POST/DELETE /-/sim/faults, GET/DELETE /-/sim/requests.
SIGTERM or SIGINT stops it. Exit codes: 0 ok, 1 failure at run time, 2 bad usage or scenario.
";

struct Args {
    scenario: PathBuf,
    listen: SocketAddr,
    print: bool,
}

enum Command {
    Serve(Args),
    Help,
}

fn parse_args() -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
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
    let scenario = scenario.ok_or("--scenario FILE is required")?;
    Ok(Command::Serve(Args {
        scenario,
        listen,
        print,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Command::Serve(args)) => args,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(2, &format!("{e} (see --help)")),
    };
    let scenario = match Scenario::from_file(&args.scenario) {
        Ok(s) => s,
        Err(e) => return fail(2, &e.to_string()),
    };
    if args.print {
        return match serde_json::to_string_pretty(&scenario) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, &e.to_string()),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, &format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(serve(scenario, args.listen))
}

async fn serve(scenario: Scenario, listen: SocketAddr) -> ExitCode {
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => return fail(1, &format!("cannot listen on {listen}: {e}")),
    };
    let simulator = match Simulator::start(scenario, listener).await {
        Ok(s) => s,
        Err(e) => return fail(2, &e.to_string()),
    };
    println!("listening on {}", simulator.url());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    stopped().await;
    simulator.stop().await;
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT.
async fn stopped() {
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

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("flexcloud-sim: {message}");
    ExitCode::from(code)
}
