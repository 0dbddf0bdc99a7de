//! Checks of the packaging and deployment files against the contract they promise operators.
//!
//! What needs no tool runs always: the Dockerfile's contract, the compose stack, the systemd
//! unit, the Kubernetes manifests and the Prometheus configs, parsed and cross-checked against
//! each other and against the binary. Checks that run an external program are ignored unless
//! asked for (`cargo test --test deploy -- --include-ignored`), each naming what it needs.

use std::error::Error;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use parse_dockerfile::{Dockerfile, HealthcheckArguments, Instruction, Stage};
use serde_norway::Value;

type TestResult = Result<(), Box<dyn Error>>;

const BINARY: &str = env!("CARGO_BIN_EXE_flexcloud-exporter");
const DEFAULT_PORT: u16 = 9819;
/// The job name the alert rules select on.
const JOB: &str = "flexcloud-exporter";
const RULES_FILE: &str = "alerts/flexcloud-exporter.rules.yml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> Result<String, Box<dyn Error>> {
    fs::read_to_string(repo(path)).map_err(|e| format!("{path}: {e}").into())
}

fn yaml(path: &str) -> Result<Value, Box<dyn Error>> {
    serde_norway::from_str(&read(path)?).map_err(|e| format!("{path}: {e}").into())
}

/// The value at a dotted path (`spec.template.spec.containers.0`), or an error naming the path.
fn at<'a>(value: &'a Value, path: &str) -> Result<&'a Value, Box<dyn Error>> {
    let mut current = value;
    for segment in path.split('.') {
        let next = match segment.parse::<usize>() {
            Ok(index) => current.get(index),
            Err(_) => current.get(segment),
        };
        current = next.ok_or_else(|| format!("no `{path}` (missing `{segment}`)"))?;
    }
    Ok(current)
}

fn text<'a>(value: &'a Value, path: &str) -> Result<&'a str, Box<dyn Error>> {
    at(value, path)?
        .as_str()
        .ok_or_else(|| format!("`{path}` is not a string").into())
}

fn list<'a>(value: &'a Value, path: &str) -> Result<&'a Vec<Value>, Box<dyn Error>> {
    at(value, path)?
        .as_sequence()
        .ok_or_else(|| format!("`{path}` is not a list").into())
}

fn strings(value: &Value, path: &str) -> Result<Vec<String>, Box<dyn Error>> {
    list(value, path)?
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("`{path}` holds a non-string").into())
        })
        .collect()
}

/// A fresh, empty directory for one test.
fn scratch_dir(name: &str) -> Result<PathBuf, Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("flexcloud-deploy-{name}-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs a program to completion; an error when it cannot start or does not succeed.
fn run_ok(command: &mut Command) -> Result<Output, Box<dyn Error>> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(output)
}

// ---------------------------------------------------------------------------------------------
// Dockerfile, read by parse-dockerfile (maintained, follows BuildKit's syntax). The older
// dockerfile-parser crate has no here-documents and treats USER, EXPOSE and HEALTHCHECK as
// unparsed text.

/// The Dockerfile as BuildKit reads it: parser directives, line continuations, here-documents
/// and exec form.
fn dockerfile(source: &str) -> Result<Dockerfile<'_>, Box<dyn Error>> {
    Ok(parse_dockerfile::parse(source).map_err(|e| format!("Dockerfile: {e}"))?)
}

/// The line-continuation character: `\` unless an `escape` directive says otherwise.
fn escape(dockerfile: &Dockerfile<'_>) -> char {
    dockerfile
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |directive| directive.value.value)
}

fn runtime_stage<'a, 'b>(dockerfile: &'b Dockerfile<'a>) -> Result<Stage<'a, 'b>, Box<dyn Error>> {
    Ok(dockerfile
        .stages()
        .last()
        .ok_or("the Dockerfile has no stage")?)
}

/// The one instruction of a kind in a stage, picked by `pick`.
fn single<'a, 'b, T>(
    stage: &Stage<'a, 'b>,
    keyword: &str,
    pick: impl Fn(&'b Instruction<'a>) -> Option<&'b T>,
) -> Result<&'b T, Box<dyn Error>> {
    let found: Vec<&T> = stage.instructions.iter().filter_map(pick).collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(format!(
            "the runtime stage needs exactly one {keyword}, has {}",
            found.len()
        )
        .into()),
    }
}

/// An exec-form argument list; the runtime image has no shell for the shell form.
fn exec_form(command: &parse_dockerfile::Command<'_>) -> Result<Vec<String>, Box<dyn Error>> {
    match command {
        parse_dockerfile::Command::Exec(arguments) => Ok(arguments
            .value
            .iter()
            .map(|argument| argument.value.to_string())
            .collect()),
        other => Err(format!("not exec form: {other:?}").into()),
    }
}

/// What each RUN of a stage runs, by its index among the stage's instructions, as one line
/// of words: continuation lines joined, here-documents appended.
fn run_lines(stage: &Stage<'_, '_>, escape: char) -> Result<Vec<(usize, String)>, Box<dyn Error>> {
    let mut lines = Vec::new();
    for (at, instruction) in stage.instructions.iter().enumerate() {
        let Instruction::Run(run) = instruction else {
            continue;
        };
        let mut text = match &run.arguments {
            parse_dockerfile::Command::Shell(text) => {
                text.value.replace(&format!("{escape}\n"), " ")
            }
            exec => exec_form(exec)?.join(" "),
        };
        for here_doc in &run.here_docs {
            text.push(' ');
            text.push_str(&here_doc.value);
        }
        lines.push((at, text.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    Ok(lines)
}

fn is_pinned(image: &str) -> bool {
    let Some((name, digest)) = image.split_once("@sha256:") else {
        return false;
    };
    // A tag for people and update bots (distroless has no version tags, so any but `latest`),
    // the digest for the build.
    let tagged = name
        .rsplit_once(':')
        .is_some_and(|(_, tag)| !tag.is_empty() && tag != "latest" && !tag.contains('/'));
    tagged && digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn dockerfile_is_multi_stage_from_pinned_images() -> TestResult {
    let source = read("Dockerfile")?;
    let dockerfile = dockerfile(&source)?;
    assert!(
        dockerfile.stages().len() >= 2,
        "a build stage and a runtime stage are expected"
    );
    let mut stages: Vec<&str> = Vec::new();
    for stage in dockerfile.stages() {
        let image = stage.from.image.value.as_ref();
        if !stages.contains(&image) {
            assert!(
                is_pinned(image),
                "base image not pinned by tag and digest: {image}"
            );
        }
        if let Some((_, name)) = &stage.from.as_ {
            stages.push(name.value.as_ref());
        }
    }
    Ok(())
}

#[test]
fn dockerfile_builds_locked_and_caches_dependencies_before_sources() -> TestResult {
    let source = read("Dockerfile")?;
    let dockerfile = dockerfile(&source)?;
    let mut built = false;
    for stage in dockerfile.stages() {
        let runs = run_lines(&stage, escape(&dockerfile))?;
        for (_, run) in &runs {
            for needs_lock in ["cargo build", "cargo install", "cargo chef cook"] {
                if run.contains(needs_lock) {
                    assert!(
                        run.contains("--locked"),
                        "`{needs_lock}` without --locked: {run}"
                    );
                }
            }
        }
        let position = |what: &str| {
            runs.iter()
                .find(|(_, run)| run.contains(what))
                .map(|(at, _)| *at)
        };
        let Some(build) = position("cargo build --release --locked") else {
            continue;
        };
        built = true;
        let dependencies =
            position("cargo chef cook").ok_or("the build stage compiles no dependency layer")?;
        let sources = stage
            .instructions
            .iter()
            .position(|i| {
                matches!(i, Instruction::Copy(copy) if copy.options.iter().all(|flag| flag.name.value != "from"))
            })
            .ok_or("the build stage copies no sources")?;
        assert!(
            dependencies < sources && sources < build,
            "dependencies must be compiled before the sources are copied in"
        );
    }
    assert!(
        built,
        "no `cargo build --release --locked`, the command CI runs"
    );
    Ok(())
}

#[test]
fn dockerfile_runtime_stage_runs_the_binary_as_numeric_non_root_user() -> TestResult {
    let source = read("Dockerfile")?;
    let dockerfile = dockerfile(&source)?;
    let runtime = runtime_stage(&dockerfile)?;
    let user = &single(&runtime, "USER", |i| match i {
        Instruction::User(user) => Some(user),
        _ => None,
    })?
    .arguments
    .value;
    let ids: Vec<&str> = user.split(':').collect();
    assert!(
        ids.iter()
            .all(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit())),
        "USER must be numeric (uid[:gid]): {user}"
    );
    assert_ne!(ids[0], "0", "USER must not be root");

    let entrypoint = single(&runtime, "ENTRYPOINT", |i| match i {
        Instruction::Entrypoint(entrypoint) => Some(entrypoint),
        _ => None,
    })?;
    assert_eq!(
        exec_form(&entrypoint.arguments)?,
        ["/usr/local/bin/flexcloud-exporter"]
    );
    assert!(
        runtime.instructions.iter().any(|i| matches!(i, Instruction::Copy(copy) if copy.dest.value == "/usr/local/bin/flexcloud-exporter")),
        "the runtime stage must copy the binary to the entrypoint's path"
    );
    Ok(())
}

#[test]
fn dockerfile_exposes_and_health_checks_the_default_port() -> TestResult {
    let source = read("Dockerfile")?;
    let dockerfile = dockerfile(&source)?;
    let runtime = runtime_stage(&dockerfile)?;
    let expose = single(&runtime, "EXPOSE", |i| match i {
        Instruction::Expose(expose) => Some(expose),
        _ => None,
    })?;
    let ports: Vec<&str> = expose
        .arguments
        .iter()
        .map(|port| port.value.as_ref())
        .collect();
    assert_eq!(ports, [DEFAULT_PORT.to_string()]);

    let healthcheck = single(&runtime, "HEALTHCHECK", |i| match i {
        Instruction::Healthcheck(healthcheck) => Some(healthcheck),
        _ => None,
    })?;
    let HealthcheckArguments::Cmd { arguments, .. } = &healthcheck.arguments else {
        return Err(format!("HEALTHCHECK without CMD: {healthcheck:?}").into());
    };
    assert_eq!(
        exec_form(arguments)?,
        [
            "/usr/local/bin/flexcloud-exporter".to_owned(),
            "--health-check".to_owned(),
            format!("http://127.0.0.1:{DEFAULT_PORT}/-/healthy"),
        ]
    );

    // The health check asks loopback inside the container; what listens there must also
    // listen where a published port arrives, --demo included (it defaults to loopback).
    let listen: Vec<String> = runtime
        .instructions
        .iter()
        .filter_map(|i| match i {
            Instruction::Env(env) => Some(env.arguments.value.to_string()),
            _ => None,
        })
        .filter(|value| value.contains("FLEXCLOUD_LISTEN_ADDRESS"))
        .collect();
    assert_eq!(
        listen,
        [format!("FLEXCLOUD_LISTEN_ADDRESS=0.0.0.0:{DEFAULT_PORT}")]
    );
    Ok(())
}

#[test]
fn dockerfile_labels_the_image_and_bakes_in_no_credentials() -> TestResult {
    let source = read("Dockerfile")?;
    let dockerfile = dockerfile(&source)?;
    let labels: String = runtime_stage(&dockerfile)?
        .instructions
        .iter()
        .filter_map(|i| match i {
            Instruction::Label(label) => Some(label.arguments.value.as_ref()),
            _ => None,
        })
        .collect();
    for key in ["title", "description", "licenses", "version", "revision"] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{key}=")),
            "no OCI label {key}"
        );
    }
    for instruction in &dockerfile.instructions {
        let (keyword, arguments) = match instruction {
            Instruction::Env(env) => ("ENV", &env.arguments.value),
            Instruction::Arg(arg) => ("ARG", &arg.arguments.value),
            _ => continue,
        };
        let upper = arguments.to_ascii_uppercase();
        for secret in ["PASSWORD", "USERNAME", "TOKEN", "SECRET"] {
            assert!(
                !upper.contains(secret),
                "credential-like {keyword}: {arguments}"
            );
        }
    }
    Ok(())
}

#[test]
fn dockerignore_lets_only_cargo_inputs_into_the_build() -> TestResult {
    let source = read(".dockerignore")?;
    let patterns: Vec<&str> = source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        patterns.first(),
        Some(&"*"),
        "an allow-list starts by ignoring everything"
    );
    for needed in ["!Cargo.toml", "!Cargo.lock", "!src/"] {
        assert!(patterns.contains(&needed), "{needed} missing");
    }
    for pattern in &patterns[1..] {
        assert!(
            pattern.starts_with('!'),
            "after `*` only exceptions are expected: {pattern}"
        );
        assert!(
            !pattern.contains("env") && !pattern.contains("secret"),
            "must not let in {pattern}"
        );
    }
    Ok(())
}

/// Files the sources pull in at compile time (`include_str!`, `include_bytes!`), relative to
/// the repository root.
fn compile_time_includes(dir: &Path, found: &mut Vec<PathBuf>) -> TestResult {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            compile_time_includes(&path, found)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = fs::read_to_string(&path)?;
        for macro_call in ["include_str!(\"", "include_bytes!(\""] {
            for (start, _) in source.match_indices(macro_call) {
                let rest = &source[start + macro_call.len()..];
                let literal = rest.split('"').next().unwrap_or_default();
                let parent = path.parent().ok_or("a file without a folder")?;
                let mut resolved = PathBuf::new();
                for component in parent.join(literal).components() {
                    match component {
                        std::path::Component::ParentDir => {
                            resolved.pop();
                        }
                        other => resolved.push(other),
                    }
                }
                found.push(resolved.strip_prefix(repo(""))?.to_path_buf());
            }
        }
    }
    Ok(())
}

#[test]
fn dockerignore_lets_in_every_file_the_sources_include() -> TestResult {
    let source = read(".dockerignore")?;
    let allowed: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let mut includes = Vec::new();
    // The exporter's sources, and the simulator's, which `--demo` compiles in.
    compile_time_includes(&repo("src"), &mut includes)?;
    compile_time_includes(&repo("sim/src"), &mut includes)?;
    assert!(
        !includes.is_empty(),
        "the demo scenario is included at compile time"
    );
    for include in includes {
        assert!(
            allowed.iter().any(|a| include.starts_with(a)),
            "the sources include {}, which .dockerignore keeps out of the build",
            include.display()
        );
    }
    Ok(())
}

#[test]
#[ignore = "needs hadolint"]
fn hadolint_finds_nothing_in_the_dockerfile() -> TestResult {
    let output = run_ok(Command::new("hadolint").arg(repo("Dockerfile")))?;
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The binary's side of the packaging contract

/// What `--help` prints, run with an empty environment.
fn help() -> Result<String, Box<dyn Error>> {
    let output = run_ok(Command::new(BINARY).arg("--help").env_clear())?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[test]
fn help_documents_the_default_port_the_packaging_uses() -> TestResult {
    let help = help()?;
    assert!(
        help.contains(&format!(":{DEFAULT_PORT}")),
        "--help does not name port {DEFAULT_PORT}:\n{help}"
    );
    Ok(())
}

// tests/cli.rs covers --health-check against 200, other statuses and a refusing port; these
// cover what the packaging relies on: 503 from /-/ready before the first cycle, and giving up
// on a server that never answers. That it gives up within its 5s, inside the Dockerfile's
// HEALTHCHECK --timeout=6s, needs real time: an ignored test checks it.

/// Answers one connection on a loopback port with `response`; returns the port, which the
/// thread holds until it has answered.
fn serve_once(response: &'static str) -> Result<u16, Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 2048];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    Ok(port)
}

/// A loopback listener that never accepts: the kernel completes each connection into the
/// backlog, and the request sent on it is never read or answered. Keep it while the check
/// runs.
fn silent_listener() -> Result<(TcpListener, u16), Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// Runs `--health-check URL` with an empty environment (the check needs no settings) and
/// returns its exit code and how long it took. A check still running after a minute, far
/// past its own 5s, is killed as hung.
fn health_check(url: &str) -> Result<(Option<i32>, Duration), Box<dyn Error>> {
    let started = Instant::now();
    let mut child = Command::new(BINARY)
        .args(["--health-check", url])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status.code(), started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill()?;
            let _ = child.wait();
            return Err("--health-check hung: still running after 60s".into());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

const UNAVAILABLE_RESPONSE: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 10\r\nconnection: close\r\n\r\nnot ready\n";

#[test]
fn health_check_exits_1_on_http_503() -> TestResult {
    let port = serve_once(UNAVAILABLE_RESPONSE)?;
    let (code, _) = health_check(&format!("http://127.0.0.1:{port}/-/ready"))?;
    assert_eq!(code, Some(1));
    Ok(())
}

#[test]
fn health_check_exits_1_when_no_answer_comes() -> TestResult {
    let (_listener, port) = silent_listener()?;
    let (code, _) = health_check(&format!("http://127.0.0.1:{port}/-/healthy"))?;
    assert_eq!(code, Some(1));
    Ok(())
}

#[test]
#[ignore = "needs real time: the check's 5s give-up must fit the Dockerfile's HEALTHCHECK --timeout=6s"]
fn health_check_gives_up_within_its_timeout_when_no_answer_comes() -> TestResult {
    let (_listener, port) = silent_listener()?;
    let (code, elapsed) = health_check(&format!("http://127.0.0.1:{port}/-/healthy"))?;
    assert_eq!(code, Some(1));
    assert!(
        elapsed < Duration::from_secs(8),
        "gave up only after {elapsed:?}; 5s expected"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Compose stack

fn compose() -> Result<Value, Box<dyn Error>> {
    yaml("deploy/compose/compose.yaml")
}

/// Host paths of a service's bind mounts, resolved against deploy/compose/, with their targets.
fn bind_mounts(service: &Value) -> Result<Vec<(PathBuf, String)>, Box<dyn Error>> {
    let mut mounts = Vec::new();
    for volume in strings(service, "volumes")? {
        let mut parts = volume.split(':');
        let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
            return Err(format!("unexpected volume: {volume}").into());
        };
        if source.starts_with('.') {
            mounts.push((repo("deploy/compose").join(source), target.to_owned()));
        }
    }
    Ok(mounts)
}

#[test]
fn compose_runs_the_exporter_in_demo_mode_with_a_shell_free_health_check() -> TestResult {
    let compose = compose()?;
    let exporter = at(&compose, "services.exporter")?;
    assert_eq!(text(exporter, "build.context")?, "../..");
    assert_eq!(strings(exporter, "command")?, ["--demo"]);
    let test = strings(exporter, "healthcheck.test")?;
    assert_eq!(
        test[..3],
        ["CMD", "/usr/local/bin/flexcloud-exporter", "--health-check"]
    );
    assert_eq!(test[3], format!("http://127.0.0.1:{DEFAULT_PORT}/-/ready"));
    assert_eq!(
        strings(exporter, "ports")?,
        [format!("{DEFAULT_PORT}:{DEFAULT_PORT}")]
    );
    let environment = serde_norway::to_string(at(exporter, "environment")?)?;
    assert!(
        !environment.contains("PASSWORD"),
        "the demo needs no credentials"
    );
    // Published ports and the other containers reach the exporter from outside it.
    assert_eq!(
        text(exporter, "environment.FLEXCLOUD_LISTEN_ADDRESS")?,
        format!("0.0.0.0:{DEFAULT_PORT}")
    );
    assert_eq!(
        text(
            &compose,
            "services.prometheus.depends_on.exporter.condition"
        )?,
        "service_healthy"
    );
    for service in ["prometheus", "alertmanager", "grafana"] {
        let image = text(&compose, &format!("services.{service}.image"))?;
        assert!(
            is_pinned(image),
            "{service} image not pinned by tag and digest: {image}"
        );
    }
    Ok(())
}

#[test]
fn compose_mounts_existing_files_only() -> TestResult {
    let compose = compose()?;
    for service in ["prometheus", "alertmanager", "grafana"] {
        for (source, target) in bind_mounts(at(&compose, &format!("services.{service}"))?)? {
            assert!(
                source.exists(),
                "{service} mounts {} at {target}, which does not exist",
                source.display()
            );
        }
    }
    Ok(())
}

#[test]
fn compose_prometheus_loads_the_bundled_rules_and_scrapes_the_rules_job() -> TestResult {
    let compose = compose()?;
    let mounts = bind_mounts(at(&compose, "services.prometheus")?)?;
    let rules_dir = mounts
        .iter()
        .find(|(source, _)| source.ends_with("alerts"))
        .map(|(_, target)| target.clone())
        .ok_or("prometheus does not mount ../../alerts")?;
    let config = yaml("deploy/compose/prometheus.yml")?;
    let rule_files = strings(&config, "rule_files")?;
    assert_eq!(rule_files, [format!("{rules_dir}/*.rules.yml")]);
    assert_eq!(text(&config, "scrape_configs.0.job_name")?, JOB);
    assert_eq!(
        strings(&config, "scrape_configs.0.static_configs.0.targets")?,
        [format!("exporter:{DEFAULT_PORT}")]
    );
    Ok(())
}

const ALERTMANAGER_CONFIG: &str = "deploy/alertmanager/alertmanager.yml";

#[test]
fn compose_runs_alertmanager_with_the_example_config_and_prometheus_sends_to_it() -> TestResult {
    let compose = compose()?;
    let alertmanager = at(&compose, "services.alertmanager")?;
    let mounts = bind_mounts(alertmanager)?;
    let example = repo(ALERTMANAGER_CONFIG).canonicalize()?;
    let config_target = mounts
        .iter()
        .find(|(source, _)| source.canonicalize().is_ok_and(|s| s == example))
        .map(|(_, target)| target.clone())
        .ok_or("alertmanager does not mount the example config")?;
    let command = strings(alertmanager, "command")?;
    assert!(
        command.contains(&format!("--config.file={config_target}")),
        "alertmanager does not load {config_target}: {command:?}"
    );
    // One instance: it must not try to gossip with peers.
    assert!(
        command.contains(&"--cluster.listen-address=".to_string()),
        "{command:?}"
    );
    assert_eq!(strings(alertmanager, "ports")?, ["9093:9093"]);
    let config = yaml("deploy/compose/prometheus.yml")?;
    assert_eq!(
        strings(&config, "alerting.alertmanagers.0.static_configs.0.targets")?,
        ["alertmanager:9093"]
    );
    Ok(())
}

/// Severities the bundled rules use.
fn rule_severities() -> Result<Vec<String>, Box<dyn Error>> {
    let rules = yaml(RULES_FILE)?;
    let mut severities = Vec::new();
    for group in list(&rules, "groups")? {
        for rule in list(group, "rules")? {
            if let Ok(severity) = text(rule, "labels.severity") {
                if !severities.iter().any(|s| s == severity) {
                    severities.push(severity.to_owned());
                }
            }
        }
    }
    Ok(severities)
}

#[test]
fn example_alertmanager_config_routes_every_severity_and_sends_resolved() -> TestResult {
    let config = yaml(ALERTMANAGER_CONFIG)?;
    let routes = list(&config, "route.routes")?;
    for severity in rule_severities()? {
        let matcher = format!("severity=\"{severity}\"");
        assert!(
            routes
                .iter()
                .any(|r| strings(r, "matchers").is_ok_and(|m| m.contains(&matcher))),
            "no route for {matcher}"
        );
    }
    for receiver in list(&config, "receivers")? {
        let name = text(receiver, "name")?;
        for webhook in list(receiver, "webhook_configs")? {
            assert_eq!(
                at(webhook, "send_resolved")?.as_bool(),
                Some(true),
                "{name}: a resolve must be delivered too"
            );
        }
    }
    // The per-zone stuck-SAVING alerts of one account arrive together.
    let group_by = strings(&config, "route.group_by")?;
    assert!(group_by.contains(&"account_id".to_string()), "{group_by:?}");
    assert!(!list(&config, "inhibit_rules")?.is_empty());
    Ok(())
}

#[test]
#[ignore = "needs amtool"]
fn amtool_accepts_the_example_alertmanager_config() -> TestResult {
    let output = run_ok(
        Command::new("amtool")
            .arg("check-config")
            .arg(repo(ALERTMANAGER_CONFIG)),
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("SUCCESS"), "{stdout}");
    Ok(())
}

/// The bundled dashboards: every top-level JSON file of dashboards/.
fn dashboard_files() -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo("dashboards"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    Ok(files)
}

#[test]
fn compose_grafana_provisions_the_datasource_and_every_dashboard() -> TestResult {
    let datasources = yaml("deploy/compose/grafana/provisioning/datasources/prometheus.yaml")?;
    assert_eq!(text(&datasources, "datasources.0.type")?, "prometheus");
    assert_eq!(
        text(&datasources, "datasources.0.url")?,
        "http://prometheus:9090"
    );
    assert!(!text(&datasources, "datasources.0.uid")?.is_empty());

    let providers = yaml("deploy/compose/grafana/provisioning/dashboards/flexcloud-exporter.yaml")?;
    let provider_path = text(&providers, "providers.0.options.path")?;

    let compose = compose()?;
    let mounts = bind_mounts(at(&compose, "services.grafana")?)?;
    let home = text(
        &compose,
        "services.grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
    )?;
    assert!(
        mounts.iter().any(|(_, target)| target == home),
        "the home dashboard {home} is not mounted"
    );

    let dashboards = dashboard_files()?;
    assert!(!dashboards.is_empty(), "no dashboards/*.json to provision");
    for dashboard in dashboards {
        let name = dashboard
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("bad file name")?;
        let expected = format!("{provider_path}/{name}");
        assert!(
            mounts.iter().any(
                |(source, target)| source.ends_with(format!("dashboards/{name}"))
                    && *target == expected
            ),
            "grafana does not mount {name} at {expected}"
        );
        // Provisioning loads the file as is: an export "for sharing" (with __inputs) would
        // leave its datasource unresolved, so the dashboard must pick it from a variable.
        let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&dashboard)?)?;
        assert!(
            json.get("__inputs").is_none(),
            "{name} has __inputs; provisioning cannot fill them"
        );
        let variables = json["templating"]["list"]
            .as_array()
            .ok_or("no templating.list")?;
        assert!(
            variables.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{name} has no Prometheus `datasource` variable"
        );
    }
    Ok(())
}

#[test]
#[ignore = "needs check-jsonschema"]
fn compose_file_matches_the_compose_specification() -> TestResult {
    run_ok(
        Command::new("check-jsonschema")
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(repo("deploy/compose/compose.yaml")),
    )?;
    Ok(())
}

#[test]
#[ignore = "needs promtool"]
fn promtool_accepts_the_compose_prometheus_config_with_the_rules() -> TestResult {
    let dir = scratch_dir("compose-prometheus")?;
    let alerts = repo("alerts");
    let config = read("deploy/compose/prometheus.yml")?.replace(
        "/etc/prometheus/rules",
        alerts.to_str().ok_or("non-UTF-8 path")?,
    );
    fs::write(dir.join("prometheus.yml"), config)?;
    let output = run_ok(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(dir.join("prometheus.yml")),
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 rule files found"),
        "the rules were not loaded:\n{stdout}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Example Prometheus config

#[test]
fn example_prometheus_config_scrapes_the_job_the_rules_select() -> TestResult {
    let config = yaml("deploy/prometheus/prometheus.yml")?;
    assert_eq!(text(&config, "scrape_configs.0.job_name")?, JOB);
    assert_eq!(
        strings(&config, "scrape_configs.0.static_configs.0.targets")?,
        [format!("localhost:{DEFAULT_PORT}")]
    );
    assert_eq!(
        strings(&config, "rule_files")?,
        ["flexcloud-exporter.rules.yml"]
    );
    assert!(
        read(RULES_FILE)?.contains(&format!("job=\"{JOB}\"")),
        "the rules no longer select job=\"{JOB}\"; update the scrape configs"
    );
    Ok(())
}

#[test]
#[ignore = "needs promtool"]
fn promtool_accepts_the_example_prometheus_config() -> TestResult {
    let dir = scratch_dir("example-prometheus")?;
    fs::copy(
        repo("deploy/prometheus/prometheus.yml"),
        dir.join("prometheus.yml"),
    )?;
    fs::copy(repo(RULES_FILE), dir.join("flexcloud-exporter.rules.yml"))?;
    run_ok(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(dir.join("prometheus.yml")),
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// systemd

const UNIT: &str = "deploy/systemd/flexcloud-exporter.service";

/// The `[Service]` section's settings in order, as (key, value).
fn service_settings() -> Result<Vec<(String, String)>, Box<dyn Error>> {
    let mut in_service = false;
    let mut settings = Vec::new();
    for line in read(UNIT)?.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.is_empty() && !line.starts_with('#') {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("not a setting: {line}"))?;
            settings.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(settings)
}

#[test]
fn systemd_unit_is_hardened() -> TestResult {
    let settings = service_settings()?;
    let value = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    assert!(
        value("DynamicUser") == Some("yes") || value("User").is_some(),
        "no dedicated or dynamic user"
    );
    for (key, expected) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(value(key), Some(expected), "{key}");
    }
    // Room for the endpoint's connection limit and the API's connections.
    let files: u64 = value("LimitNOFILE").ok_or("no LimitNOFILE")?.parse()?;
    assert!(files >= 4096, "LimitNOFILE={files}");
    let families: Vec<&str> = value("RestrictAddressFamilies")
        .ok_or("no RestrictAddressFamilies")?
        .split_whitespace()
        .collect();
    assert!(families.contains(&"AF_INET") && families.contains(&"AF_INET6"));
    assert!(
        families
            .iter()
            .all(|f| ["AF_INET", "AF_INET6", "AF_UNIX"].contains(f)),
        "{families:?}"
    );
    Ok(())
}

#[test]
fn systemd_unit_reads_settings_from_a_file_and_the_password_as_a_credential() -> TestResult {
    let settings = service_settings()?;
    let value = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    assert!(
        value("EnvironmentFile").is_some_and(|v| !v.starts_with('-')),
        "a required EnvironmentFile"
    );
    let credential = value("LoadCredential").ok_or("no LoadCredential")?;
    let (name, _) = credential
        .split_once(':')
        .ok_or("LoadCredential=NAME:PATH expected")?;
    let environment: Vec<&str> = settings
        .iter()
        .filter(|(k, _)| k == "Environment")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        environment.contains(&format!("FLEXCLOUD_PASSWORD_FILE=%d/{name}").as_str()),
        "FLEXCLOUD_PASSWORD_FILE must point at the credential: {environment:?}"
    );
    assert!(
        environment
            .iter()
            .all(|e| !e.starts_with("FLEXCLOUD_PASSWORD="))
    );
    Ok(())
}

#[test]
fn systemd_environment_file_names_only_settings_the_binary_knows() -> TestResult {
    let help = help()?;
    for line in read("deploy/systemd/flexcloud-exporter.env")?
        .lines()
        .map(str::trim)
    {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, _) = line
            .split_once('=')
            .ok_or_else(|| format!("not VARIABLE=value: {line}"))?;
        assert_ne!(
            key, "FLEXCLOUD_PASSWORD",
            "the password belongs in the credential file"
        );
        assert!(help.contains(key), "--help does not know {key}");
    }
    Ok(())
}

#[test]
#[ignore = "needs systemd-analyze"]
fn systemd_analyze_accepts_the_unit() -> TestResult {
    // verify checks that ExecStart exists, so the copy points at the binary under test.
    let dir = scratch_dir("systemd")?;
    let unit = dir.join("flexcloud-exporter.service");
    let source = read(UNIT)?;
    let rewritten: Vec<String> = source
        .lines()
        .map(|line| match line.strip_prefix("ExecStart=") {
            Some(_) => format!("ExecStart={BINARY}"),
            None => line.to_owned(),
        })
        .collect();
    fs::write(&unit, rewritten.join("\n") + "\n")?;

    // verify reports unknown or invalid settings on stderr but still exits 0.
    let output = run_ok(Command::new("systemd-analyze").arg("verify").arg(&unit))?;
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // An overall exposure of 2.0 or less ("OK" on systemd's 0-10 scale).
    run_ok(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&unit),
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

fn manifest(name: &str) -> Result<Value, Box<dyn Error>> {
    yaml(&format!("deploy/kubernetes/{name}"))
}

#[test]
fn prometheus_rule_holds_exactly_the_rules_of_the_alerts_file() -> TestResult {
    let rule = manifest("prometheusrule.yaml")?;
    assert_eq!(text(&rule, "apiVersion")?, "monitoring.coreos.com/v1");
    assert_eq!(text(&rule, "kind")?, "PrometheusRule");
    let rules = yaml(RULES_FILE)?;
    assert!(
        at(&rule, "spec")? == &rules,
        "prometheusrule.yaml differs from {RULES_FILE}: run deploy/kubernetes/generate-prometheusrule.sh"
    );
    Ok(())
}

#[test]
fn prometheus_rule_is_what_the_generator_writes() -> TestResult {
    run_ok(
        Command::new("bash")
            .arg(repo("deploy/kubernetes/generate-prometheusrule.sh"))
            .arg("--check")
            .env_remove("RUNBOOK_BASE_URL"),
    )?;
    Ok(())
}

#[test]
fn prometheus_rule_generator_sets_the_runbook_base_from_runbook_base_url() -> TestResult {
    let base = "https://wiki.example.org/ops/flexcloud&co/runbook";
    let output = run_ok(
        Command::new("bash")
            .arg(repo("deploy/kubernetes/generate-prometheusrule.sh"))
            .arg("--print")
            .env("RUNBOOK_BASE_URL", format!("{base}/")),
    )?;
    let rule: Value = serde_norway::from_slice(&output.stdout)?;
    let rules = yaml(RULES_FILE)?;
    let mut links = 0;
    for (generated, original) in list(&rule, "spec.groups")?
        .iter()
        .zip(list(&rules, "groups")?)
    {
        for (generated, original) in list(generated, "rules")?
            .iter()
            .zip(list(original, "rules")?)
        {
            let Ok(url) = text(original, "annotations.runbook_url") else {
                continue;
            };
            let anchor = url.split_once('#').ok_or("runbook_url without #")?.1;
            assert_eq!(
                text(generated, "annotations.runbook_url")?,
                format!("{base}#{anchor}")
            );
            assert_eq!(at(generated, "expr")?, at(original, "expr")?);
            links += 1;
        }
    }
    assert!(links > 0, "no runbook_url found");
    let unchanged = run_ok(
        Command::new("bash")
            .arg(repo("deploy/kubernetes/generate-prometheusrule.sh"))
            .arg("--print")
            .env("RUNBOOK_BASE_URL", "not-a-url"),
    );
    assert!(unchanged.is_err(), "a relative runbook base is refused");
    Ok(())
}

#[test]
fn deployment_runs_non_root_read_only_with_probes_and_resources() -> TestResult {
    let deployment = manifest("deployment.yaml")?;
    let pod = at(&deployment, "spec.template.spec")?;
    assert_eq!(
        at(pod, "securityContext.runAsNonRoot")?.as_bool(),
        Some(true)
    );
    assert!(
        at(pod, "securityContext.runAsUser")?
            .as_u64()
            .is_some_and(|uid| uid > 0)
    );
    assert_eq!(
        at(pod, "automountServiceAccountToken")?.as_bool(),
        Some(false)
    );
    let containers = list(pod, "containers")?;
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(
        at(container, "securityContext.readOnlyRootFilesystem")?.as_bool(),
        Some(true)
    );
    assert_eq!(
        at(container, "securityContext.allowPrivilegeEscalation")?.as_bool(),
        Some(false)
    );
    assert_eq!(
        strings(container, "securityContext.capabilities.drop")?,
        ["ALL"]
    );
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            at(container, &format!("resources.{kind}.{resource}"))?;
        }
    }
    assert_eq!(text(container, "livenessProbe.httpGet.path")?, "/-/healthy");
    assert_eq!(text(container, "readinessProbe.httpGet.path")?, "/-/ready");
    assert_eq!(
        at(container, "ports.0.containerPort")?.as_u64(),
        Some(u64::from(DEFAULT_PORT))
    );
    let port_name = text(container, "ports.0.name")?;
    assert_eq!(text(container, "livenessProbe.httpGet.port")?, port_name);
    assert_eq!(text(container, "readinessProbe.httpGet.port")?, port_name);
    Ok(())
}

#[test]
fn deployment_reads_the_password_from_the_secret_as_a_file() -> TestResult {
    let deployment = manifest("deployment.yaml")?;
    let secret = manifest("secret.example.yaml")?;
    let secret_name = text(&secret, "metadata.name")?;
    assert!(
        at(&secret, "stringData.username").is_ok() && at(&secret, "stringData.password").is_ok()
    );

    let pod = at(&deployment, "spec.template.spec")?;
    let container = at(pod, "containers.0")?;
    let env = list(container, "env")?;
    let var = |name: &str| {
        env.iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
    };
    assert!(
        var("FLEXCLOUD_PASSWORD").is_none(),
        "the password must not be an environment variable"
    );
    let username = var("FLEXCLOUD_USERNAME").ok_or("no FLEXCLOUD_USERNAME")?;
    assert_eq!(text(username, "valueFrom.secretKeyRef.name")?, secret_name);
    assert_eq!(text(username, "valueFrom.secretKeyRef.key")?, "username");

    let password_file = text(
        var("FLEXCLOUD_PASSWORD_FILE").ok_or("no FLEXCLOUD_PASSWORD_FILE")?,
        "value",
    )?;
    let volume = list(pod, "volumes")?
        .iter()
        .find(|v| text(v, "secret.secretName").ok() == Some(secret_name))
        .ok_or("no volume from the secret")?;
    let volume_name = text(volume, "name")?;
    let mount = list(container, "volumeMounts")?
        .iter()
        .find(|m| text(m, "name").ok() == Some(volume_name))
        .ok_or("the secret volume is not mounted")?;
    let item = at(volume, "secret.items.0")?;
    assert_eq!(text(item, "key")?, "password");
    assert_eq!(
        password_file,
        format!("{}/{}", text(mount, "mountPath")?, text(item, "path")?)
    );
    Ok(())
}

#[test]
fn service_monitor_scrapes_the_service_under_the_job_name_the_rules_select() -> TestResult {
    let deployment = manifest("deployment.yaml")?;
    let service = manifest("service.yaml")?;
    let monitor = manifest("servicemonitor.yaml")?;

    // The operator names the job after the Service unless spec.jobLabel says otherwise.
    assert!(
        at(&monitor, "spec.jobLabel").is_err(),
        "jobLabel would rename the job the rules select"
    );
    assert_eq!(text(&service, "metadata.name")?, JOB);

    let pod_labels = at(&deployment, "spec.template.metadata.labels")?;
    let service_labels = at(&service, "metadata.labels")?;
    let subset = |wanted: &Value, labels: &Value| -> bool {
        wanted
            .as_mapping()
            .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
    };
    assert!(
        subset(at(&service, "spec.selector")?, pod_labels),
        "the Service selects no pod"
    );
    assert!(
        subset(at(&monitor, "spec.selector.matchLabels")?, service_labels),
        "the ServiceMonitor selects no Service"
    );

    let container_port = text(&deployment, "spec.template.spec.containers.0.ports.0.name")?;
    assert_eq!(text(&service, "spec.ports.0.targetPort")?, container_port);
    assert_eq!(
        at(&service, "spec.ports.0.port")?.as_u64(),
        Some(u64::from(DEFAULT_PORT))
    );
    assert_eq!(
        text(&monitor, "spec.endpoints.0.port")?,
        text(&service, "spec.ports.0.name")?
    );
    assert_eq!(text(&monitor, "spec.endpoints.0.path")?, "/metrics");
    Ok(())
}

#[test]
fn kustomization_applies_every_manifest_but_the_secret_example() -> TestResult {
    let kustomization = manifest("kustomization.yaml")?;
    let mut resources = strings(&kustomization, "resources")?;
    resources.sort();
    let mut files: Vec<String> = fs::read_dir(repo("deploy/kubernetes"))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            name.ends_with(".yaml") && name != "kustomization.yaml" && !name.contains(".example.")
        })
        .collect();
    files.sort();
    assert_eq!(resources, files);
    Ok(())
}

const SHARD_VARS: [&str; 3] = [
    "FLEXCLOUD_SHARD",
    "FLEXCLOUD_SHARD_COUNT",
    "FLEXCLOUD_POD_NAME",
];

/// The StatefulSet's pod template, and that template without the sharding variables.
fn statefulset_pod() -> Result<(Value, Value), Box<dyn Error>> {
    let statefulset = manifest("statefulset/statefulset.yaml")?;
    let template = at(&statefulset, "spec.template")?.clone();
    let mut unsharded = template.clone();
    let env = unsharded
        .get_mut("spec")
        .and_then(|s| s.get_mut("containers"))
        .and_then(|c| c.get_mut(0))
        .and_then(|c| c.get_mut("env"))
        .and_then(Value::as_sequence_mut)
        .ok_or("the StatefulSet's container has no env")?;
    env.retain(|var| !SHARD_VARS.contains(&var.get("name").and_then(Value::as_str).unwrap_or("")));
    Ok((template, unsharded))
}

#[test]
fn statefulset_runs_the_deployments_pod_with_the_shard_from_the_pod_name() -> TestResult {
    let deployment = manifest("deployment.yaml")?;
    let service = manifest("service.yaml")?;
    let statefulset = manifest("statefulset/statefulset.yaml")?;
    let (template, unsharded) = statefulset_pod()?;
    // One pod spec in two files: everything the Deployment's tests check holds here too,
    // and a later change to one that misses the other fails here.
    assert_eq!(
        &unsharded,
        at(&deployment, "spec.template")?,
        "the StatefulSet's pod differs from the Deployment's beyond the shard variables"
    );
    assert_eq!(
        at(&statefulset, "spec.selector")?,
        at(&deployment, "spec.selector")?
    );
    assert_eq!(
        text(&statefulset, "spec.serviceName")?,
        text(&service, "metadata.name")?
    );
    let env = list(&template, "spec.containers.0.env")?;
    let var = |name: &str| {
        env.iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            .ok_or(format!("no {name}"))
    };
    assert_eq!(text(var("FLEXCLOUD_SHARD")?, "value")?, "auto");
    assert_eq!(
        text(var("FLEXCLOUD_POD_NAME")?, "valueFrom.fieldRef.fieldPath")?,
        "metadata.name"
    );
    let count: u32 = text(var("FLEXCLOUD_SHARD_COUNT")?, "value")?.parse()?;
    let replicas = at(&statefulset, "spec.replicas")?
        .as_u64()
        .ok_or("no spec.replicas")?;
    assert_eq!(
        u64::from(count),
        replicas,
        "FLEXCLOUD_SHARD_COUNT must equal the replicas"
    );

    // The exporter, given each pod's name, collects each shard once; a pod beyond the
    // count (replicas raised alone) refuses to start rather than collect nothing.
    let name = text(&statefulset, "metadata.name")?;
    let literal: Vec<(String, String)> = env
        .iter()
        .filter_map(|e| {
            Some((
                e.get("name")?.as_str()?.into(),
                e.get("value")?.as_str()?.into(),
            ))
        })
        .chain([
            ("FLEXCLOUD_USERNAME".into(), "user".into()),
            ("FLEXCLOUD_PASSWORD".into(), "pw".into()),
        ])
        .filter(|(name, _)| name != "FLEXCLOUD_PASSWORD_FILE")
        .collect();
    let config = |ordinal: u64| {
        let mut vars = literal.clone();
        vars.push(("FLEXCLOUD_POD_NAME".into(), format!("{name}-{ordinal}")));
        flexcloud_exporter::config::Config::from_vars(vars)
    };
    let mut shards = Vec::new();
    for ordinal in 0..replicas {
        let shard = config(ordinal)?.shard.ok_or("no shard")?;
        shards.push((shard.index, shard.count));
    }
    let expected: Vec<(u32, u32)> = (1..=count).map(|index| (index, count)).collect();
    assert_eq!(shards, expected);
    let beyond = config(replicas)
        .err()
        .ok_or("a pod beyond the count starts")?;
    assert!(
        beyond.to_string().starts_with("FLEXCLOUD_SHARD_COUNT"),
        "{beyond}"
    );
    Ok(())
}

#[test]
fn statefulset_kustomization_is_the_base_with_the_deployment_replaced() -> TestResult {
    let kustomization = manifest("statefulset/kustomization.yaml")?;
    assert_eq!(
        strings(&kustomization, "resources")?,
        ["..", "statefulset.yaml"]
    );
    let patches = list(&kustomization, "patches")?;
    assert_eq!(patches.len(), 1);
    let patch: Value = serde_norway::from_str(text(&patches[0], "patch")?)?;
    assert_eq!(text(&patch, "$patch")?, "delete");
    let deployment = manifest("deployment.yaml")?;
    for field in ["apiVersion", "kind", "metadata.name"] {
        assert_eq!(text(&patch, field)?, text(&deployment, field)?, "{field}");
    }
    Ok(())
}

#[test]
#[ignore = "needs kubernetes-validate"]
fn kubernetes_core_manifests_match_their_schemas() -> TestResult {
    let dir = repo("deploy/kubernetes");
    run_ok(
        Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .args([
                "deployment.yaml",
                "service.yaml",
                "secret.example.yaml",
                "statefulset/statefulset.yaml",
            ])
            .current_dir(dir),
    )?;
    Ok(())
}

#[test]
#[ignore = "needs node and `npm ci` in deploy/kubernetes/schema-check"]
fn prometheus_operator_objects_match_their_schemas() -> TestResult {
    run_ok(
        Command::new("node")
            .args([
                "validate.mjs",
                "../servicemonitor.yaml",
                "../prometheusrule.yaml",
            ])
            .current_dir(repo("deploy/kubernetes/schema-check")),
    )?;
    Ok(())
}
