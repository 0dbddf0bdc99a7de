//! The binary against hostile or mistaken input: values that are not UTF-8, credentials in the
//! API URL, settings out of bounds or misspelt, odd password files, modes that do not
//! combine. Each is judged by its exit code and the one line on stderr, which never holds a
//! password or a panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{BIN, HANG, PASSWORD, TempDir, USER};
use flexcloud_sim::{Scenario, Simulator};

/// A password typed into a URL: it must show nowhere.
const URL_SECRET: &str = "Zq7-url-Secret-9x";

/// An API address that is never called: the runs that use it stop at their settings.
const UNUSED_API: &str = "http://127.0.0.1:9";

/// `hunter2` and a byte that is no UTF-8.
fn not_utf8() -> OsString {
    OsString::from_vec(b"hunter2\xff".to_vec())
}

type Env = Vec<(String, OsString)>;

/// The environment of a run against `api_url`: the test credentials, loopback port 0 and JSON
/// logs, then `extra`, which wins.
fn base_env(api_url: &str, extra: &[(&str, &str)]) -> Env {
    common::binary_env(api_url, extra)
        .into_iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect()
}

/// Sets `name` to `value`, replacing any value it had.
fn set(env: &mut Env, name: &str, value: impl Into<OsString>) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_string(), value.into()));
}

fn unset(env: &mut Env, name: &str) {
    env.retain(|(k, _)| k != name);
}

/// A child process that is killed when the test ends before it does.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(env: &Env, args: &[&str]) -> Reaped {
    Reaped(
        Command::new(BIN)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts"),
    )
}

/// What a run that ended left behind.
#[derive(Debug)]
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// From start to exit; only the tests that need real time look at it.
    took: Duration,
}

fn read_all(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs the binary with `args` and exactly `env` until it exits; a run still going after
/// [`HANG`] fails the test (that bounds no speed, it catches a hang).
fn run(env: &Env, args: &[&str]) -> Finished {
    let started = Instant::now();
    let mut child = spawn(env, args);
    let stdout = read_all(child.0.stdout.take().expect("piped"));
    let stderr = read_all(child.0.stderr.take().expect("piped"));
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < HANG,
            "the binary still runs after {HANG:?} ({args:?}, {:?})",
            env.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    Finished {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        took,
    }
}

/// [`run`] off the async runtime, for tests that serve a simulator meanwhile.
async fn run_async(env: Env, args: &[&str]) -> Finished {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&env, &args)
    })
    .await
    .expect("the run finishes")
}

impl Finished {
    /// No panic message and no secret, on either stream.
    fn assert_clean(&self, case: &str) {
        for (stream, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            assert!(
                !text.contains("panicked"),
                "{case}: a panic on {stream}: {text}"
            );
            assert!(
                !text.contains("internal error"),
                "{case}: a panic on {stream}: {text}"
            );
            for secret in [PASSWORD, URL_SECRET, "hunter2"] {
                assert!(
                    !text.contains(secret),
                    "{case}: {secret} on {stream}: {text}"
                );
            }
        }
    }

    /// The run stopped at a setting: exit 2, nothing on stdout, one line on stderr, which is
    /// returned.
    fn refused(&self, case: &str) -> &str {
        assert_eq!(self.code, Some(2), "{case}: {self:#?}");
        assert!(self.stdout.is_empty(), "{case}: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{case}: one line: {self:#?}");
        self.assert_clean(case);
        assert!(
            lines[0].starts_with("flexcloud-exporter: "),
            "{case}: {self:#?}"
        );
        lines[0]
    }

    /// The settings were accepted: the run went on to the API (exit 0, or 1 for a cycle that
    /// failed), and no line complains of a setting.
    fn accepted(&self, case: &str) {
        assert!(
            matches!(self.code, Some(0 | 1)),
            "{case}: settings refused: {self:#?}"
        );
        assert!(
            !self
                .stderr
                .lines()
                .any(|l| l.starts_with("flexcloud-exporter: ")),
            "{case}: {self:#?}"
        );
        self.assert_clean(case);
    }

    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// The binary running until its JSON `listening` line, killed when dropped.
struct Listening {
    _child: Reaped,
    line: serde_json::Value,
}

fn start_listening(env: &Env, args: &[&str]) -> Listening {
    let mut child = spawn(env, args);
    let stderr = child.0.stderr.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + HANG;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    if event["message"] == "listening" {
                        return Listening {
                            _child: child,
                            line: event,
                        };
                    }
                }
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!(
        "no `listening` line ({args:?}); exit {:?}; stderr:\n{}",
        child.0.try_wait(),
        seen.join("\n")
    );
}

fn fleet() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &["acme", "globex"])
        .account("acme", &["TAMPA", "AUSTIN"])
        .account("globex", &["TAMPA"])
        .image("acme", "1", "ACTIVE", "BASE", &["TAMPA"])
        .image("globex", "2", "SAVING", "SERVER", &["TAMPA"])
}

// 1. Values that are not UTF-8 ----------------------------------------------------------------

#[test]
fn a_value_that_is_not_utf8_exits_2_naming_the_variable_never_the_value_in_every_mode() {
    let variables = [
        "FLEXCLOUD_PASSWORD",
        "FLEXCLOUD_USERNAME",
        "FLEXCLOUD_API_URL",
        "FLEXCLOUD_PASSWORD_FILE",
        "FLEXCLOUD_INTERVAL",
        "FLEXCLOUD_LOG",
        // Not a setting, and not valid either: the bytes are refused before the name is.
        "FLEXCLOUD_INTERVALL",
        "FLEXCLOUD_EXPORTER_SERVICE_HOST",
    ];
    for var in variables {
        for args in [&[][..], &["--once"], &["--demo"]] {
            let mut env = base_env(UNUSED_API, &[]);
            set(&mut env, var, not_utf8());
            let case = format!("{var} {args:?}");
            let finished = run(&env, args);
            assert_eq!(
                finished.refused(&case),
                format!("flexcloud-exporter: {var} is not valid UTF-8"),
                "{case}"
            );
        }
    }
}

#[tokio::test]
async fn values_that_are_not_utf8_in_other_variables_are_ignored_in_every_mode() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    let mut env = base_env(&sim.url(), &[]);
    for other in [
        "LANG",
        "HOME",
        "NOT_FLEXCLOUD_INTERVAL",
        "flexcloud_interval",
    ] {
        set(&mut env, other, not_utf8());
    }
    let once = run_async(env.clone(), &["--once"]).await;
    assert_eq!(once.code, Some(0), "{once:#?}");
    once.assert_clean("--once");
    for args in [&[][..], &["--demo"]] {
        let env = env.clone();
        tokio::task::spawn_blocking(move || drop(start_listening(&env, args)))
            .await
            .unwrap();
    }
    sim.stop().await;
}

// 2. Credentials in the API URL -------------------------------------------------------------

#[test]
fn a_url_with_credentials_exits_2_without_the_password_however_the_scheme_is_mistyped() {
    let prefix = "flexcloud-exporter: FLEXCLOUD_API_URL is invalid: must not carry credentials; \
                  set FLEXCLOUD_USERNAME and FLEXCLOUD_PASSWORD_FILE instead (got ";
    let s = URL_SECRET;
    // (the URL, a part of it that stays: the host)
    let urls = [
        (format!("ops:{s}@host"), "host"),
        (format!("https:/ops:{s}@host"), "host"),
        (format!("//ops:{s}@host"), "host"),
        (format!("http:ops:{s}@127.0.0.1"), "127.0.0.1"),
        (format!("https:\\\\ops:{s}@host"), "host"),
        (format!("https://ops:{s}@host"), "host"),
        (format!("HTTPS://ops:{s}@host"), "host"),
        (format!(" https://ops:{s}@host"), "host"),
        (
            format!("https://ops:{s}@api.example.com:8443/v1/"),
            "api.example.com:8443/v1/",
        ),
        (format!("http://ops:{s}@127.0.0.1:1/"), "127.0.0.1:1/"),
        (format!("https://:{s}@host"), "host"),
        // A password with an @ in it: everything up to the last @ is left out.
        (format!("https://ops:{s}@{s}@host"), "host"),
        (format!("https://ops:{s}%40x@host"), "host"),
        // A user name alone is credentials too.
        ("https://ops@host".to_string(), "host"),
    ];
    for (url, host) in &urls {
        for args in [&[][..], &["--once"]] {
            let mut env = base_env(UNUSED_API, &[]);
            set(&mut env, "FLEXCLOUD_API_URL", url.as_str());
            let case = format!("{url:?} {args:?}");
            let finished = run(&env, args);
            let line = finished.refused(&case);
            let shown = line
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{case}: {line}"));
            assert!(shown.contains(host), "{case}: {line}");
        }
    }
}

// 6. Bounded settings -------------------------------------------------------------------------

/// (variable, value, the bounds its message names)
const OUT_OF_BOUNDS: &[(&str, &str, &str)] = &[
    ("FLEXCLOUD_INTERVAL", "200000000000years", "from 1s to 24h"),
    (
        "FLEXCLOUD_INTERVAL",
        "99999999999999999999999years",
        "from 1s to 24h",
    ),
    ("FLEXCLOUD_INTERVAL", "1ns", "from 1s to 24h"),
    ("FLEXCLOUD_INTERVAL", "0s", "from 1s to 24h"),
    ("FLEXCLOUD_INTERVAL", "999ms", "from 1s to 24h"),
    ("FLEXCLOUD_INTERVAL", "24h1s", "from 1s to 24h"),
    ("FLEXCLOUD_INTERVAL", "-1s", "from 1s to 24h"),
    ("FLEXCLOUD_INTERVAL", "often", "from 1s to 24h"),
    ("FLEXCLOUD_TIMEOUT", "99ms", "from 100ms to 1h"),
    ("FLEXCLOUD_TIMEOUT", "1h1ms", "from 100ms to 1h"),
    ("FLEXCLOUD_TIMEOUT", "200000000000years", "from 100ms to 1h"),
    ("FLEXCLOUD_CYCLE_TIMEOUT", "999ms", "from 1s to 24h"),
    (
        "FLEXCLOUD_CYCLE_TIMEOUT",
        "200000000000years",
        "from 1s to 24h",
    ),
    ("FLEXCLOUD_CONNECT_TIMEOUT", "99ms", "from 100ms to 1h"),
    ("FLEXCLOUD_CONNECT_TIMEOUT", "1h1s", "from 100ms to 1h"),
    ("FLEXCLOUD_CONNECT_TIMEOUT", "0s", "from 100ms to 1h"),
    ("FLEXCLOUD_READ_TIMEOUT", "99ms", "from 100ms to 1h"),
    ("FLEXCLOUD_READ_TIMEOUT", "1h1s", "from 100ms to 1h"),
    ("FLEXCLOUD_STALE_AFTER", "0s", "at most 30 days"),
    ("FLEXCLOUD_STALE_AFTER", "30days 1s", "at most 30 days"),
    (
        "FLEXCLOUD_STALE_AFTER",
        "200000000000years",
        "at most 30 days",
    ),
    ("FLEXCLOUD_WEB_IDLE_TIMEOUT", "999ms", "from 1s to 24h"),
    ("FLEXCLOUD_WEB_IDLE_TIMEOUT", "0s", "from 1s to 24h"),
    ("FLEXCLOUD_WEB_IDLE_TIMEOUT", "24h1s", "from 1s to 24h"),
    ("FLEXCLOUD_CONCURRENCY", "0", "from 1 to 1024"),
    ("FLEXCLOUD_CONCURRENCY", "1025", "from 1 to 1024"),
    ("FLEXCLOUD_CONCURRENCY", "-1", "from 1 to 1024"),
    (
        "FLEXCLOUD_CONCURRENCY",
        "99999999999999999999999",
        "from 1 to 1024",
    ),
    ("FLEXCLOUD_WEB_MAX_CONNECTIONS", "0", "from 1 to 65536"),
    ("FLEXCLOUD_WEB_MAX_CONNECTIONS", "65537", "from 1 to 65536"),
    (
        "FLEXCLOUD_SAVING_SERIES_LIMIT",
        "100001",
        "from 0 to 100000",
    ),
    ("FLEXCLOUD_SAVING_SERIES_LIMIT", "-1", "from 0 to 100000"),
    (
        "FLEXCLOUD_MAX_BODY_BYTES",
        "1023",
        "from 1024 to 1073741824",
    ),
    (
        "FLEXCLOUD_MAX_BODY_BYTES",
        "1073741825",
        "from 1024 to 1073741824",
    ),
    ("FLEXCLOUD_SHARD", "0/2", "1 <= N <= M"),
    ("FLEXCLOUD_SHARD", "3/2", "1 <= N <= M"),
];

#[test]
fn each_bounded_setting_outside_its_bounds_exits_2_naming_it_and_its_bounds() {
    for (var, value, bounds) in OUT_OF_BOUNDS {
        let env = base_env(UNUSED_API, &[(var, value)]);
        let case = format!("{var}={value}");
        let finished = run(&env, &[]);
        let line = finished.refused(&case);
        assert!(
            line.starts_with(&format!("flexcloud-exporter: {var} is invalid: expected ")),
            "{case}: {line}"
        );
        assert!(line.contains(bounds), "{case}: names {bounds}: {line}");
        assert!(line.ends_with(&format!("got {value:?}")), "{case}: {line}");
    }
}

#[test]
fn a_setting_outside_its_bounds_stops_once_and_demo_too() {
    for (var, value, bounds) in [
        ("FLEXCLOUD_INTERVAL", "200000000000years", "from 1s to 24h"),
        ("FLEXCLOUD_INTERVAL", "1ns", "from 1s to 24h"),
        ("FLEXCLOUD_CONCURRENCY", "0", "from 1 to 1024"),
        ("FLEXCLOUD_WEB_IDLE_TIMEOUT", "0s", "from 1s to 24h"),
    ] {
        for args in [&["--once"][..], &["--demo"]] {
            let env = base_env(UNUSED_API, &[(var, value)]);
            let case = format!("{var}={value} {args:?}");
            let finished = run(&env, args);
            let line = finished.refused(&case);
            assert!(
                line.starts_with(&format!("flexcloud-exporter: {var} is invalid")),
                "{case}: {line}"
            );
            assert!(line.contains(bounds), "{case}: {line}");
        }
    }
}

#[test]
fn a_request_timeout_not_shorter_than_the_interval_exits_2_naming_both() {
    let cases = [
        (
            &[("FLEXCLOUD_INTERVAL", "5s"), ("FLEXCLOUD_TIMEOUT", "5s")][..],
            "FLEXCLOUD_TIMEOUT is invalid: must be shorter than FLEXCLOUD_INTERVAL (5s)",
        ),
        (
            &[("FLEXCLOUD_INTERVAL", "30s"), ("FLEXCLOUD_TIMEOUT", "1h")],
            "FLEXCLOUD_TIMEOUT is invalid: must be shorter than FLEXCLOUD_INTERVAL (30s)",
        ),
        (
            &[("FLEXCLOUD_TIMEOUT", "1m")],
            "FLEXCLOUD_TIMEOUT is invalid: must be shorter than FLEXCLOUD_INTERVAL (1m)",
        ),
        (
            &[
                ("FLEXCLOUD_INTERVAL", "10s"),
                ("FLEXCLOUD_CYCLE_TIMEOUT", "11s"),
            ],
            "FLEXCLOUD_CYCLE_TIMEOUT is invalid: must be at most FLEXCLOUD_INTERVAL (10s)",
        ),
    ];
    for (extra, start) in cases {
        let env = base_env(UNUSED_API, extra);
        let case = format!("{extra:?}");
        let finished = run(&env, &[]);
        let line = finished.refused(&case);
        assert!(
            line.starts_with(&format!("flexcloud-exporter: {start}")),
            "{case}: {line}"
        );
    }
}

#[tokio::test]
async fn each_bounded_setting_at_its_bounds_is_accepted() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    let url = sim.url();
    let cases: &[&[(&str, &str)]] = &[
        // The default request timeout is half of a short interval: 500ms here.
        &[("FLEXCLOUD_INTERVAL", "1s")],
        &[("FLEXCLOUD_INTERVAL", "10s")],
        &[("FLEXCLOUD_INTERVAL", "24h")],
        &[("FLEXCLOUD_INTERVAL", "5s"), ("FLEXCLOUD_TIMEOUT", "4s")],
        &[("FLEXCLOUD_TIMEOUT", "100ms")],
        &[("FLEXCLOUD_INTERVAL", "2h"), ("FLEXCLOUD_TIMEOUT", "1h")],
        &[
            ("FLEXCLOUD_INTERVAL", "24h"),
            ("FLEXCLOUD_CYCLE_TIMEOUT", "24h"),
        ],
        &[("FLEXCLOUD_CYCLE_TIMEOUT", "1s")],
        &[("FLEXCLOUD_CONNECT_TIMEOUT", "100ms")],
        &[("FLEXCLOUD_CONNECT_TIMEOUT", "1h")],
        &[("FLEXCLOUD_READ_TIMEOUT", "100ms")],
        &[("FLEXCLOUD_READ_TIMEOUT", "1h")],
        &[("FLEXCLOUD_STALE_AFTER", "1ns")],
        &[("FLEXCLOUD_STALE_AFTER", "30days")],
        &[("FLEXCLOUD_WEB_IDLE_TIMEOUT", "1s")],
        &[("FLEXCLOUD_WEB_IDLE_TIMEOUT", "24h")],
        &[("FLEXCLOUD_CONCURRENCY", "1")],
        &[("FLEXCLOUD_CONCURRENCY", "1024")],
        &[("FLEXCLOUD_WEB_MAX_CONNECTIONS", "1")],
        &[("FLEXCLOUD_WEB_MAX_CONNECTIONS", "65536")],
        &[("FLEXCLOUD_SAVING_SERIES_LIMIT", "0")],
        &[("FLEXCLOUD_SAVING_SERIES_LIMIT", "100000")],
        &[("FLEXCLOUD_MAX_BODY_BYTES", "1024")],
        &[("FLEXCLOUD_MAX_BODY_BYTES", "1073741824")],
        &[("FLEXCLOUD_SHARD", "2/2")],
    ];
    for extra in cases {
        let finished = run_async(base_env(&url, extra), &["--once"]).await;
        finished.accepted(&format!("{extra:?}"));
    }
    sim.stop().await;
}

// 7. Unknown variables, service links, log filters --------------------------------------------

#[test]
fn a_misspelt_setting_exits_2_naming_the_nearest_setting_in_every_mode() {
    let cases = [
        (
            "FLEXCLOUD_INTERVALL",
            "30s",
            "FLEXCLOUD_INTERVALL is not a setting of flexcloud-exporter (did you mean FLEXCLOUD_INTERVAL?)",
        ),
        // An empty misspelt variable is still a mistake.
        (
            "FLEXCLOUD_INTERVALL",
            "",
            "FLEXCLOUD_INTERVALL is not a setting of flexcloud-exporter (did you mean FLEXCLOUD_INTERVAL?)",
        ),
        (
            "FLEXCLOUD_PASWORD_FILE",
            "/run/secrets/pw",
            "FLEXCLOUD_PASWORD_FILE is not a setting of flexcloud-exporter (did you mean FLEXCLOUD_PASSWORD_FILE?)",
        ),
        (
            "FLEXCLOUD_NOTHING_LIKE_ANY_SETTING",
            "1",
            "FLEXCLOUD_NOTHING_LIKE_ANY_SETTING is not a setting of flexcloud-exporter (see --help)",
        ),
    ];
    for (var, value, message) in cases {
        for args in [&[][..], &["--once"], &["--demo"]] {
            let env = base_env(UNUSED_API, &[(var, value)]);
            let case = format!("{var}={value} {args:?}");
            let finished = run(&env, args);
            assert_eq!(
                finished.refused(&case),
                format!("flexcloud-exporter: {message}"),
                "{case}"
            );
        }
    }
}

/// What Kubernetes puts into a pod's environment for Services named `flexcloud-exporter`
/// and `flexcloud` in its namespace.
const SERVICE_LINKS: &[(&str, &str)] = &[
    ("FLEXCLOUD_EXPORTER_SERVICE_HOST", "10.96.0.17"),
    ("FLEXCLOUD_EXPORTER_SERVICE_PORT", "9819"),
    ("FLEXCLOUD_EXPORTER_SERVICE_PORT_METRICS", "9819"),
    ("FLEXCLOUD_EXPORTER_PORT", "tcp://10.96.0.17:9819"),
    ("FLEXCLOUD_EXPORTER_PORT_9819_TCP", "tcp://10.96.0.17:9819"),
    ("FLEXCLOUD_EXPORTER_PORT_9819_TCP_PROTO", "tcp"),
    ("FLEXCLOUD_EXPORTER_PORT_9819_TCP_PORT", "9819"),
    ("FLEXCLOUD_EXPORTER_PORT_9819_TCP_ADDR", "10.96.0.17"),
    ("FLEXCLOUD_SERVICE_HOST", "10.96.0.18"),
    ("FLEXCLOUD_SERVICE_PORT", "443"),
    ("FLEXCLOUD_PORT", "tcp://10.96.0.18:443"),
    ("FLEXCLOUD_PORT_443_TCP", "tcp://10.96.0.18:443"),
    ("FLEXCLOUD_PORT_443_TCP_ADDR", "10.96.0.18"),
    ("FLEXCLOUD_PORT_53_UDP_PORT", "53"),
];

#[tokio::test]
async fn kubernetes_service_links_are_ignored_and_the_binary_starts_in_every_mode() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    let env = base_env(&sim.url(), SERVICE_LINKS);
    let once = run_async(env.clone(), &["--once"]).await;
    assert_eq!(once.code, Some(0), "{once:#?}");
    for args in [&[][..], &["--demo"]] {
        let env = env.clone();
        tokio::task::spawn_blocking(move || drop(start_listening(&env, args)))
            .await
            .unwrap();
    }
    sim.stop().await;
}

#[test]
fn a_log_filter_word_that_is_no_level_exits_2_naming_flexcloud_log() {
    for filter in [
        "warning",
        "verbose",
        "WARNING",
        "info,verbose",
        "flexcloud_exporter=verbose",
    ] {
        let env = base_env(UNUSED_API, &[("FLEXCLOUD_LOG", filter)]);
        let finished = run(&env, &[]);
        let line = finished.refused(filter);
        assert!(
            line.starts_with("flexcloud-exporter: FLEXCLOUD_LOG is invalid: expected "),
            "{filter}: {line}"
        );
        assert!(
            line.ends_with(&format!("got {filter:?}")),
            "{filter}: {line}"
        );
    }
}

#[tokio::test]
async fn log_filters_of_levels_and_directives_are_accepted() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    for filter in [
        "warn",
        "WARN",
        "off",
        "trace",
        "info,flexcloud_exporter=debug",
        "warn,flexcloud_exporter::api=trace",
    ] {
        let finished = run_async(
            base_env(&sim.url(), &[("FLEXCLOUD_LOG", filter)]),
            &["--once"],
        )
        .await;
        assert_eq!(finished.code, Some(0), "{filter}: {finished:#?}");
        finished.assert_clean(filter);
    }
    sim.stop().await;
}

// 8. The password file ------------------------------------------------------------------------

#[test]
fn a_password_file_too_large_or_not_a_regular_file_exits_2_naming_it() {
    let dir = TempDir::new("password-file");
    // Large files of a password-like text, which must not be echoed either.
    let big = dir.write("big", "hunter2-".repeat(10 * 1024 * 1024 / 8).into_bytes());
    let just_over = dir.write("4097", [b'h'; 4097]);
    let empty = dir.write("empty", b"");
    let only_newline = dir.write("newline", b"\n");
    let not_utf8 = dir.write("not-utf8", b"hunter2\xff\n");
    let folder = dir.path("folder");
    std::fs::create_dir(&folder).unwrap();
    let to_zero = dir.symlink("to-zero", Path::new("/dev/zero"));
    let to_folder = dir.symlink("to-folder", &folder);
    let to_big = dir.symlink("to-big", &big);
    let dangling = dir.symlink("dangling", &dir.path("nothing-here"));
    let looping = dir.symlink("loop-a", &dir.path("loop-b"));
    dir.symlink("loop-b", &looping);
    let paths = [
        big,
        just_over,
        empty,
        only_newline,
        not_utf8,
        folder,
        PathBuf::from("/dev/zero"),
        PathBuf::from("/dev/null"),
        to_zero,
        to_folder,
        to_big,
        dangling,
        looping,
        dir.path("missing"),
    ];
    for path in &paths {
        let mut env = base_env(UNUSED_API, &[]);
        unset(&mut env, "FLEXCLOUD_PASSWORD");
        set(&mut env, "FLEXCLOUD_PASSWORD_FILE", path.as_os_str());
        for args in [&[][..], &["--once"]] {
            let case = format!("{} {args:?}", path.display());
            let finished = run(&env, args);
            let line = finished.refused(&case);
            assert!(
                line.starts_with("flexcloud-exporter: FLEXCLOUD_PASSWORD_FILE"),
                "{case}: {line}"
            );
        }
    }
}

#[test]
fn a_fifo_as_password_file_exits_2_without_waiting_for_a_writer() {
    let dir = TempDir::new("fifo");
    let fifo = dir.path("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut env = base_env(UNUSED_API, &[]);
    unset(&mut env, "FLEXCLOUD_PASSWORD");
    set(&mut env, "FLEXCLOUD_PASSWORD_FILE", fifo.as_os_str());
    let finished = run(&env, &["--once"]);
    let line = finished.refused("a FIFO");
    assert!(
        line.starts_with("flexcloud-exporter: FLEXCLOUD_PASSWORD_FILE"),
        "{line}"
    );
}

#[test]
#[ignore = "needs real time: a refused password file is refused at once, not after reading it"]
fn a_huge_or_endless_password_file_is_refused_within_a_second() {
    let dir = TempDir::new("prompt");
    let big = dir.write("big", vec![b'x'; 10 * 1024 * 1024]);
    for path in [
        big,
        PathBuf::from("/dev/zero"),
        PathBuf::from("/dev/urandom"),
    ] {
        let mut env = base_env(UNUSED_API, &[]);
        unset(&mut env, "FLEXCLOUD_PASSWORD");
        set(&mut env, "FLEXCLOUD_PASSWORD_FILE", path.as_os_str());
        let finished = run(&env, &[]);
        finished.refused(&path.display().to_string());
        eprintln!("{}: refused after {:?}", path.display(), finished.took);
        assert!(finished.took < Duration::from_secs(1), "{finished:#?}");
    }
}

#[tokio::test]
async fn a_small_password_file_is_read_through_symlinks_with_one_line_end_trimmed() {
    let dir = TempDir::new("symlink");
    let long = "p".repeat(4096);
    // (the file's contents, the password the API knows)
    let files = [
        (format!("{PASSWORD}\n"), PASSWORD.to_string()),
        (format!("{PASSWORD}\r\n"), PASSWORD.to_string()),
        (PASSWORD.to_string(), PASSWORD.to_string()),
        // The largest file accepted: 4 KiB.
        (long.clone(), long.clone()),
    ];
    for (n, (contents, password)) in files.iter().enumerate() {
        let file = dir.write(&format!("secret-{n}"), contents.as_bytes());
        // As Kubernetes mounts a Secret: a link to a link to the file.
        let data = dir.symlink(&format!("..data-{n}"), &file);
        let link = dir.symlink(&format!("password-{n}"), &data);
        let sim = Simulator::start_local(
            Scenario::default()
                .user(USER, password, &["acme"])
                .account("acme", &["TAMPA"]),
        )
        .await
        .unwrap();
        let mut env = base_env(&sim.url(), &[]);
        unset(&mut env, "FLEXCLOUD_PASSWORD");
        set(&mut env, "FLEXCLOUD_PASSWORD_FILE", link.as_os_str());
        let finished = run_async(env, &["--once"]).await;
        assert_eq!(finished.code, Some(0), "file {n}: {finished:#?}");
        assert!(!finished.stderr.contains(password.as_str()), "file {n}");
        assert!(!finished.stdout.contains(password.as_str()), "file {n}");
        sim.stop().await;
    }
}

#[test]
fn a_password_and_a_password_file_together_exit_2() {
    let dir = TempDir::new("both");
    let file = dir.write("password", b"from-the-file\n");
    let mut env = base_env(UNUSED_API, &[]);
    set(&mut env, "FLEXCLOUD_PASSWORD_FILE", file.as_os_str());
    for args in [&[][..], &["--once"]] {
        let finished = run(&env, args);
        let line = finished.refused("both");
        assert_eq!(
            line,
            "flexcloud-exporter: FLEXCLOUD_PASSWORD_FILE is invalid: set either FLEXCLOUD_PASSWORD or FLEXCLOUD_PASSWORD_FILE, not both"
        );
        assert!(!finished.stderr.contains("from-the-file"));
    }
}

// 11. --once, modes, version ------------------------------------------------------------------

#[tokio::test]
async fn once_prints_the_exposition_and_ends_with_an_ok_line() {
    let sim = Simulator::start_local(fleet()).await.unwrap();
    let finished = run_async(base_env(&sim.url(), &[]), &["--once"]).await;
    assert_eq!(finished.code, Some(0), "{finished:#?}");
    finished.assert_clean("--once");
    let metrics = common::Metrics::parse(&finished.stdout);
    assert_eq!(metrics.value("flexcloud_up", &[]), 1.0);
    assert!(metrics.get("process_cpu_seconds_total", &[]).is_some());
    assert_eq!(
        finished.stderr_lines().last().copied(),
        Some("ok: 2 accounts, 3 zones, credentials accepted"),
        "{finished:#?}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn once_with_rejected_credentials_names_each_failing_step_and_the_credential_settings() {
    let sim = Simulator::start_local(
        Scenario::default()
            .user(USER, "another-password", &["acme"])
            .account("acme", &["TAMPA"]),
    )
    .await
    .unwrap();
    for accounts in ["", "acme"] {
        let env = base_env(&sim.url(), &[("FLEXCLOUD_ACCOUNTS", accounts)]);
        let finished = run_async(env, &["--once"]).await;
        let case = format!("FLEXCLOUD_ACCOUNTS={accounts:?}");
        assert_eq!(finished.code, Some(1), "{case}: {finished:#?}");
        finished.assert_clean(&case);
        let lines = finished.stderr_lines();
        let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("failed: ")).collect();
        assert!(
            failed.iter().any(|l| l.contains(" (HTTP status 401): ")),
            "{case}: {finished:#?}"
        );
        for line in &failed {
            assert!(is_failed_step_line(line), "{case}: {line}");
        }
        let hints: Vec<&&str> = lines.iter().filter(|l| l.starts_with("hint: ")).collect();
        assert_eq!(
            hints,
            [
                &"hint: the API rejected the credentials: check FLEXCLOUD_USERNAME and FLEXCLOUD_PASSWORD_FILE (or FLEXCLOUD_PASSWORD)"
            ],
            "{case}: {finished:#?}"
        );
        assert!(!finished.stderr.contains("ok: "), "{case}");
    }
    sim.stop().await;
}

/// `failed: <step> (HTTP status <S>): <why>`
fn is_failed_step_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("failed: ") else {
        return false;
    };
    let Some((step, rest)) = rest.split_once(" (HTTP status ") else {
        return false;
    };
    let Some((status, why)) = rest.split_once("): ") else {
        return false;
    };
    !step.is_empty() && status.parse::<u16>().is_ok() && !why.trim().is_empty()
}

#[tokio::test]
async fn once_without_an_answer_from_the_api_hints_at_the_api_url() {
    let (_held, refusing) = common::refusing_address();
    let env = base_env(
        &format!("http://{refusing}"),
        // A short interval keeps the retries short.
        &[("FLEXCLOUD_INTERVAL", "2s")],
    );
    let finished = run_async(env, &["--once"]).await;
    assert_eq!(finished.code, Some(1), "{finished:#?}");
    finished.assert_clean("no answer");
    let lines = finished.stderr_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("failed: accounts (HTTP status 0): ") && is_failed_step_line(l)),
        "{finished:#?}"
    );
    let hints: Vec<&&str> = lines.iter().filter(|l| l.starts_with("hint: ")).collect();
    assert_eq!(hints.len(), 1, "{finished:#?}");
    assert!(
        hints[0].starts_with("hint: no response from the API: check FLEXCLOUD_API_URL"),
        "{finished:#?}"
    );
}

#[test]
fn two_modes_at_once_exit_2_with_one_line() {
    let url = "http://127.0.0.1:9/-/healthy";
    let cases: [&[&str]; 6] = [
        &["--once", "--demo"],
        &["--demo", "--once"],
        &["--once", "--health-check", url],
        &["--health-check", url, "--once"],
        &["--demo", "--health-check", url],
        &["--health-check", url, "--demo"],
    ];
    for args in cases {
        let env = base_env(UNUSED_API, &[]);
        let finished = run(&env, args);
        let line = finished.refused(&format!("{args:?}"));
        assert!(line.contains(" cannot be combined"), "{args:?}: {line}");
        let flags: Vec<&&str> = args.iter().filter(|a| a.starts_with("--")).collect();
        for flag in flags {
            assert!(line.contains(*flag), "{args:?}: {line}");
        }
    }
}

/// The revision in `flexcloud-exporter <version> (revision <rev>)`.
fn revision_of_version_line(line: &str) -> &str {
    let rest = line
        .strip_prefix(&format!(
            "flexcloud-exporter {} (revision ",
            env!("CARGO_PKG_VERSION")
        ))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a version line: {line:?}"));
    assert!(
        !rest.is_empty() && !rest.contains(char::is_whitespace),
        "{line:?}"
    );
    rest
}

#[tokio::test]
async fn version_and_the_listening_line_name_the_version_and_the_same_revision() {
    let mut revisions = Vec::new();
    for flag in ["--version", "-V"] {
        let finished = run(&Vec::new(), &[flag]);
        assert_eq!(finished.code, Some(0), "{finished:#?}");
        let lines: Vec<&str> = finished.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{finished:#?}");
        revisions.push(revision_of_version_line(lines[0]).to_string());
    }
    assert_eq!(revisions[0], revisions[1]);
    let revision = revisions[0].clone();

    let sim = Simulator::start_local(fleet()).await.unwrap();
    let env = base_env(&sim.url(), &[]);
    let listening = tokio::task::spawn_blocking(move || start_listening(&env, &[]))
        .await
        .unwrap();
    assert_eq!(listening.line["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(listening.line["revision"], revision.as_str());
    let address = listening.line["address"].as_str().unwrap();
    let metrics = common::scrape(&format!("http://{address}")).await;
    assert_eq!(
        metrics.value(
            "flexcloud_exporter_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", &revision)
            ]
        ),
        1.0
    );
    drop(listening);
    sim.stop().await;
}
