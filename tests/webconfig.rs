//! The web config file end to end: TLS with a real client, Basic auth with real bcrypt hashes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flexcloud_exporter::config::Config;
use flexcloud_exporter::web::WebConfig;
use flexcloud_exporter::{Error, Shutdown};
use flexcloud_sim::{DEMO_SCENARIO, Scenario, Simulator};
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod common;

use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_flexcloud-exporter");
const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-Pa55word";

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost, made fresh so
/// nothing expires in the repository.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "flexcloud-exporter test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// `basic_auth_users` with a real bcrypt hash of [`PASSWORD`] (cost 4: fast, same algorithm).
fn users_section() -> String {
    format!(
        "basic_auth_users:\n  {USER}: {}\n",
        bcrypt::hash(PASSWORD, 4).unwrap()
    )
}

/// Writes the certificate, key and a web config (relative paths, as operators write them).
fn tls_files(dir: &TempDir, pki: &Pki, extra_tls: &str, rest: &str) -> PathBuf {
    dir.write("server.crt", &pki.cert_pem);
    dir.write("server.key", &pki.key_pem);
    dir.write(
        "web.yml",
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra_tls}{rest}"
        ),
    )
}

/// The exporter run as `main` runs it, against the simulator, on a loopback port.
struct Exporter {
    address: std::net::SocketAddr,
    trigger: watch::Sender<bool>,
    task: JoinHandle<Result<(), Error>>,
    sim: Simulator,
}

impl Exporter {
    async fn start(web_config: Option<&Path>) -> Self {
        let scenario = Scenario::from_json(DEMO_SCENARIO).unwrap();
        let user = scenario.users[0].clone();
        let sim = Simulator::start_local(scenario).await.unwrap();
        let mut vars = vec![
            ("FLEXCLOUD_API_URL".to_string(), sim.url()),
            ("FLEXCLOUD_USERNAME".to_string(), user.username),
            ("FLEXCLOUD_PASSWORD".to_string(), user.password),
        ];
        if let Some(path) = web_config {
            vars.push((
                "FLEXCLOUD_WEB_CONFIG_FILE".to_string(),
                path.display().to_string(),
            ));
        }
        let config = Config::from_vars(vars).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(flexcloud_exporter::run(config, listener, shutdown));
        Exporter {
            address,
            trigger,
            task,
            sim,
        }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.address)
    }

    /// Stops the exporter; fails the test if it hangs. The limit bounds no speed: shutdown
    /// drops whatever is left after its 5 s grace, so only a hang reaches 45 s.
    async fn stop(self) {
        self.trigger.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(45), self.task)
            .await
            .expect("the exporter stops")
            .unwrap()
            .unwrap();
        self.sim.stop().await;
    }
}

fn client_trusting(ca_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    credentials: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut request = client.get(url);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    request.send().await.expect("the request gets an answer")
}

fn assert_unauthorized(response: &reqwest::Response, case: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    assert_eq!(
        response.headers()[reqwest::header::WWW_AUTHENTICATE],
        "Basic",
        "{case}"
    );
}

#[tokio::test]
async fn over_tls_only_the_right_user_and_password_get_metrics() {
    let pki = pki();
    let dir = TempDir::new("auth");
    let web = tls_files(&dir, &pki, "", &users_section());
    let exporter = Exporter::start(Some(&web)).await;
    let client = client_trusting(&pki.ca_pem).build().unwrap();
    let metrics = exporter.url("https", "/metrics");

    let right = get(&client, &metrics, Some((USER, PASSWORD))).await;
    assert_eq!(right.status(), StatusCode::OK);
    assert!(right.text().await.unwrap().contains("# TYPE "));
    // Again: the remembered password must still be checked exactly.
    let again = get(&client, &metrics, Some((USER, PASSWORD))).await;
    assert_eq!(again.status(), StatusCode::OK);
    let landing = get(&client, &exporter.url("https", "/"), Some((USER, PASSWORD))).await;
    assert_eq!(landing.status(), StatusCode::OK);

    let wrong_password = get(&client, &metrics, Some((USER, "scrape-Pa55wore"))).await;
    assert_unauthorized(&wrong_password, "wrong password");
    let wrong_user = get(&client, &metrics, Some(("prometheu", PASSWORD))).await;
    assert_unauthorized(&wrong_user, "wrong user");
    let anonymous = get(&client, &metrics, None).await;
    assert_unauthorized(&anonymous, "no credentials");
    let landing = get(&client, &exporter.url("https", "/"), None).await;
    assert_unauthorized(&landing, "landing page without credentials");
    let unknown = get(&client, &exporter.url("https", "/no-such-page"), None).await;
    assert_unauthorized(&unknown, "unknown path without credentials");

    // The probes stay open (see server::UNAUTHENTICATED_PATHS), over TLS still.
    let healthy = get(&client, &exporter.url("https", "/-/healthy"), None).await;
    assert_eq!(healthy.status(), StatusCode::OK);
    let ready = get(&client, &exporter.url("https", "/-/ready"), None).await;
    assert_ne!(ready.status(), StatusCode::UNAUTHORIZED);

    exporter.stop().await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_refused() {
    let pki = pki();
    let dir = TempDir::new("plain");
    let web = tls_files(&dir, &pki, "", "");
    let exporter = Exporter::start(Some(&web)).await;

    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let error = plain
        .get(exporter.url("http", "/-/healthy"))
        .send()
        .await
        .expect_err("plain HTTP gets no answer");
    assert!(!error.is_status(), "{error}");

    // At the byte level: an HTTP request gets a TLS alert or a closed connection, never HTTP.
    let address = exporter.address;
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    // A client that does not trust the certificate is refused too.
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        untrusting
            .get(exporter.url("https", "/-/healthy"))
            .send()
            .await
            .is_err()
    );
    exporter.stop().await;
}

#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_client() {
    let pki = pki();
    let dir = TempDir::new("tls13");
    let web = tls_files(&dir, &pki, "  min_version: TLS13\n", "");
    let exporter = Exporter::start(Some(&web)).await;
    let url = exporter.url("https", "/-/healthy");

    let tls12 = client_trusting(&pki.ca_pem)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(tls12.get(&url).send().await.is_err());
    let tls13 = client_trusting(&pki.ca_pem).build().unwrap();
    assert_eq!(get(&tls13, &url, None).await.status(), StatusCode::OK);
    exporter.stop().await;
}

#[tokio::test]
async fn basic_auth_and_headers_work_without_tls() {
    let dir = TempDir::new("plain-auth");
    let web = dir.write(
        "web.yml",
        format!(
            "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n",
            users_section()
        ),
    );
    let exporter = Exporter::start(Some(&web)).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let metrics = exporter.url("http", "/metrics");

    let anonymous = get(&client, &metrics, None).await;
    assert_unauthorized(&anonymous, "no credentials");
    assert_eq!(anonymous.headers()["x-frame-options"], "deny");
    let right = get(&client, &metrics, Some((USER, PASSWORD))).await;
    assert_eq!(right.status(), StatusCode::OK);
    assert_eq!(right.headers()["x-content-type-options"], "nosniff");
    exporter.stop().await;
}

#[tokio::test]
async fn without_a_web_config_the_endpoint_is_plain_and_open() {
    let exporter = Exporter::start(None).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for path in ["/metrics", "/", "/-/healthy"] {
        let response = get(&client, &exporter.url("http", path), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    exporter.stop().await;
}

#[tokio::test]
async fn shutdown_ends_with_an_idle_tls_connection_open() {
    let pki = pki();
    let dir = TempDir::new("shutdown");
    let web = tls_files(&dir, &pki, "", "");
    let exporter = Exporter::start(Some(&web)).await;
    // The client keeps its connection alive in its pool, and outlives the exporter: the
    // exporter stops all the same, TLS and all. That an idle connection is closed at once
    // rather than after the grace period is unit-tested in src/server/conn.rs.
    let client = client_trusting(&pki.ca_pem).build().unwrap();
    let healthy = get(&client, &exporter.url("https", "/-/healthy"), None).await;
    assert_eq!(healthy.status(), StatusCode::OK);
    exporter.stop().await;
    drop(client);
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let pki = pki();
    let other = self::pki();
    let dir = TempDir::new("mismatch");
    dir.write("server.crt", &pki.cert_pem);
    dir.write("server.key", &other.key_pem);
    let path = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let message = WebConfig::load(&path).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "web config file {}: tls_server_config.key_file: the private key does not belong to the certificate of cert_file",
            path.display()
        )
    );
}

#[test]
fn a_bad_web_config_file_stops_the_binary_with_exit_2_and_one_line() {
    let dir = TempDir::new("binary");
    let cases = [
        ("malformed.yml", "basic_auth_users: [\n"),
        (
            "client-certs.yml",
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAndVerifyClientCert\n",
        ),
        (
            "missing-cert.yml",
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n",
        ),
    ];
    for (name, contents) in cases {
        let path = dir.write(name, contents);
        let mut child = Command::new(BIN)
            .env_clear()
            .env("FLEXCLOUD_USERNAME", "u")
            .env("FLEXCLOUD_PASSWORD", "p")
            .env("FLEXCLOUD_API_URL", "http://127.0.0.1:9")
            .env("FLEXCLOUD_LISTEN_ADDRESS", "127.0.0.1:0")
            .env("FLEXCLOUD_WEB_CONFIG_FILE", &path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{name}: the binary kept running with a bad web config file");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(2), "{name}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {stderr}");
        assert!(
            lines[0].starts_with(&format!(
                "flexcloud-exporter: web config file {}: ",
                path.display()
            )),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn the_documented_example_loads() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/web-config.md"))
        .unwrap();
    let example = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/web-config.md has a yaml example");
    let pki = pki();
    let dir = TempDir::new("doc");
    dir.write("exporter.crt", &pki.cert_pem);
    dir.write("exporter.key", &pki.key_pem);
    let path = dir.write("web.yml", example);
    let web = WebConfig::load(&path).unwrap();
    assert!(web.tls.is_some());
    assert_eq!(web.basic_auth.unwrap().user_count(), 1);
    assert_eq!(web.headers.len(), 3);
}

// Re-read while running ---------------------------------------------------------------------

/// A client that opens a new connection for every request: a reloaded config applies to new
/// connections only.
fn fresh_connections(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn users(user: &str, password: &str) -> String {
    format!(
        "basic_auth_users:\n  {user}: {}\n",
        bcrypt::hash(password, 4).unwrap()
    )
}

async fn reload_successful(client: &reqwest::Client, url: &str, who: (&str, &str)) -> f64 {
    let body = get(client, url, Some(who)).await.text().await.unwrap();
    common::Metrics::parse(&body).value("flexcloud_config_last_reload_successful", &[])
}

#[tokio::test]
async fn a_rewritten_web_config_applies_to_new_connections_and_a_broken_one_keeps_the_last() {
    let dir = TempDir::new("reload-users");
    let path = dir.write("web.yml", users("alice", "first-Pa55"));
    let exporter = Exporter::start(Some(&path)).await;
    let client = fresh_connections(reqwest::Client::builder().no_proxy());
    let metrics = exporter.url("http", "/metrics");
    assert_eq!(
        get(&client, &metrics, Some(("alice", "first-Pa55")))
            .await
            .status(),
        StatusCode::OK
    );

    // Rotated: bob replaces alice.
    dir.write("web.yml", users("bob", "second-Pa55"));
    common::eventually("bob admitted", || async {
        (get(&client, &metrics, Some(("bob", "second-Pa55")))
            .await
            .status()
            == StatusCode::OK)
            .then_some(())
    })
    .await;
    assert_unauthorized(
        &get(&client, &metrics, Some(("alice", "first-Pa55"))).await,
        "alice after the rotation",
    );
    assert_eq!(
        reload_successful(&client, &metrics, ("bob", "second-Pa55")).await,
        1.0
    );

    // Broken: the last good config stays, and the metric says so until it loads again.
    for broken in [
        "basic_auth_users: [\n",
        "basic_auth_users:\n  carol: not-a-hash\n",
    ] {
        dir.write("web.yml", broken);
        common::eventually("the failed reload reported", || async {
            (reload_successful(&client, &metrics, ("bob", "second-Pa55")).await == 0.0)
                .then_some(())
        })
        .await;
        assert_unauthorized(&get(&client, &metrics, None).await, "still protected");
        dir.write("web.yml", users("bob", "second-Pa55"));
        common::eventually("the reload recovered", || async {
            (reload_successful(&client, &metrics, ("bob", "second-Pa55")).await == 1.0)
                .then_some(())
        })
        .await;
    }
    exporter.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_without_a_restart() {
    let (old, new) = (pki(), pki());
    let dir = TempDir::new("reload-tls");
    let path = tls_files(&dir, &old, "", "");
    let exporter = Exporter::start(Some(&path)).await;
    let url = exporter.url("https", "/-/healthy");
    let trusts_old = fresh_connections(client_trusting(&old.ca_pem));
    let trusts_new = fresh_connections(client_trusting(&new.ca_pem));
    assert_eq!(get(&trusts_old, &url, None).await.status(), StatusCode::OK);
    assert!(trusts_new.get(&url).send().await.is_err());

    // cert-manager writes the new pair; the web config file itself does not change.
    dir.write("server.key", &new.key_pem);
    dir.write("server.crt", &new.cert_pem);
    common::eventually("the new certificate served", || async {
        trusts_new.get(&url).send().await.ok().map(|_| ())
    })
    .await;
    assert!(trusts_old.get(&url).send().await.is_err());
    exporter.stop().await;
}
