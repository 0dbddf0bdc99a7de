//! Secrets that rotate without a restart: the password file is read again at every cycle,
//! after a 401 and on SIGHUP; a new password ends the credential back-off at once, and a
//! file that cannot be read keeps the previous password and says so in a metric.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Harness, Metrics, PASSWORD, Running, TempDir, USER};
use flexcloud_exporter::api::{
    ApiClient, ApiError, ClientSettings, CredentialState, PasswordReload,
};
use flexcloud_exporter::config::Config;
use flexcloud_sim::{Scenario, Simulator};

fn fleet() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &["acme"])
        .account("acme", &["TAMPA"])
        .image("acme", "1", "ACTIVE", "BASE", &["TAMPA"])
}

/// A config that reads the password from `file`.
fn config(url: &str, file: &std::path::Path) -> Config {
    Config::from_vars([
        ("FLEXCLOUD_API_URL", url),
        ("FLEXCLOUD_USERNAME", USER),
        ("FLEXCLOUD_PASSWORD_FILE", file.to_str().unwrap()),
        ("FLEXCLOUD_ACCOUNTS", "acme"),
    ])
    .expect("test config is valid")
}

async fn harness(file: &std::path::Path) -> Harness {
    let sim = Simulator::start_local(fleet()).await.expect("simulator");
    let config = config(&sim.url(), file);
    Harness::with_config(sim, config).await
}

/// The open accounts the client sees.
async fn accounts(client: &ApiClient) -> Result<Vec<String>, ApiError> {
    let mut found = Vec::new();
    client.list_open_accounts(|a| found.push(a)).await?;
    Ok(found)
}

fn up(m: &Metrics) -> f64 {
    m.value("flexcloud_up", &[])
}

#[tokio::test]
async fn a_rewritten_password_file_ends_the_back_off_at_the_next_cycle() {
    let dir = TempDir::new("rotation");
    let file = dir.write("password", "an-old-password\n");
    let mut h = harness(&file).await;
    let rejected = h.cycle().await;
    assert_eq!(up(&rejected), 0.0);
    assert_eq!(
        rejected.value("flexcloud_credential_backoff_seconds", &[]),
        120.0
    );
    let sent = h.sim.requests().len();
    // Held back: nothing is sent while the file is unchanged.
    assert_eq!(up(&h.cycle().await), 0.0);
    assert_eq!(h.sim.requests().len(), sent);

    // The Secret is updated (written in place, as a vault agent does).
    dir.write("password", format!("{PASSWORD}\n"));
    let rotated = h.cycle().await;
    assert_eq!(up(&rotated), 1.0, "{}", rotated.text);
    assert_eq!(
        rotated.value("flexcloud_credential_backoff_seconds", &[]),
        0.0
    );
    assert_eq!(
        rotated.value(
            "flexcloud_images",
            &[
                ("account_id", "acme"),
                ("zone_id", "TAMPA"),
                ("status", "ACTIVE"),
                ("image_type", "BASE")
            ]
        ),
        1.0
    );
    h.stop().await;
}

/// The client alone, so a test can change the file between a cycle's check and a request.
fn client(url: &str, file: &std::path::Path) -> ApiClient {
    let config = config(url, file);
    ApiClient::new(
        ClientSettings::from_config(&config).unwrap(),
        Arc::new(flexcloud_exporter::metrics::Metrics::new(100)),
    )
    .unwrap()
}

#[tokio::test]
async fn a_401_reads_the_file_again_and_is_not_held_against_a_new_password() {
    let sim = Simulator::start_local(fleet()).await.expect("simulator");
    let dir = TempDir::new("rotation-401");
    let file = dir.write("password", format!("{PASSWORD}\n"));

    // Without a change, a 401 of the account list suspends the credentials at once.
    let control = client(&sim.url(), &file);
    sim.update(|s| s.users[0].password = "rotated-Pa55".into());
    control.begin_cycle();
    let refused = accounts(&control).await.unwrap_err();
    assert_eq!(refused.http_status(), 401);
    assert!(matches!(
        control.credentials(),
        CredentialState::Suspended { .. }
    ));

    // The file follows the API after the cycle's own check: the 401 finds it changed.
    let rotating = client(&sim.url(), &file);
    rotating.begin_cycle();
    dir.write("password", "rotated-Pa55\n");
    let refused = accounts(&rotating).await.unwrap_err();
    assert_eq!(refused.http_status(), 401, "sent with the old password");
    assert_eq!(rotating.credentials(), CredentialState::Accepted);
    assert_eq!(accounts(&rotating).await.unwrap().len(), 1);
    // The control is still held back: only its own file check ends that.
    assert!(matches!(
        accounts(&control).await,
        Err(ApiError::CredentialsSuspended)
    ));
    control.begin_cycle();
    assert_eq!(control.credentials(), CredentialState::Accepted);
    assert_eq!(accounts(&control).await.unwrap().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn a_file_that_cannot_be_read_keeps_the_previous_password() {
    let sim = Simulator::start_local(fleet()).await.expect("simulator");
    let dir = TempDir::new("rotation-unreadable");
    let file = dir.write("password", format!("{PASSWORD}\n"));
    let client = client(&sim.url(), &file);
    let status = client.reload_status();
    for broken in ["missing", "empty", "a folder"] {
        match broken {
            "missing" => std::fs::remove_file(&file).unwrap(),
            "empty" => drop(dir.write("password", "")),
            _ => std::fs::create_dir(&file).unwrap(),
        }
        assert_eq!(client.reload_password(), PasswordReload::Failed, "{broken}");
        assert!(!status.successful(), "{broken}");
        client.begin_cycle();
        assert_eq!(
            accounts(&client).await.unwrap().len(),
            1,
            "{broken}: the previous password is still sent"
        );
        let _ = std::fs::remove_dir(&file);
        let _ = std::fs::remove_file(&file);
    }
    dir.write("password", format!("{PASSWORD}\n"));
    assert_eq!(client.reload_password(), PasswordReload::Unchanged);
    assert!(status.successful(), "the same password, readable again");
    sim.stop().await;
}

/// The binary with the password in a file, listening on loopback.
fn start_binary(api: &str, file: &std::path::Path) -> Running {
    let env = common::binary_env(
        api,
        &[
            ("FLEXCLOUD_PASSWORD", ""),
            ("FLEXCLOUD_PASSWORD_FILE", file.to_str().unwrap()),
            ("FLEXCLOUD_ACCOUNTS", "acme"),
            ("FLEXCLOUD_INTERVAL", "1h"),
        ],
    );
    let env: Vec<(&str, &str)> = env
        .into_iter()
        .filter(|(k, _)| *k != "FLEXCLOUD_PASSWORD")
        .collect();
    Running::start(&env, &[])
}

async fn scrape(address: std::net::SocketAddr) -> Metrics {
    let body = reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Metrics::parse(&body)
}

fn hangup(running: &Running) {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

// Several threads: the simulator answers while the test waits for log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_file_at_once_never_ends_the_process_and_the_metrics_tell() {
    let sim = Simulator::start_local(fleet()).await.expect("simulator");
    let dir = TempDir::new("rotation-sighup");
    let file = dir.write("password", "wrong-at-first\n");
    let mut running = start_binary(&sim.url(), &file);
    let address = running.address();
    running.wait_for_line("the 401", |l| l.contains("API rejected the credentials"));
    let m = scrape(address).await;
    assert_eq!(m.value("flexcloud_config_last_reload_successful", &[]), 1.0);
    let started = m.value(
        "flexcloud_config_last_reload_success_timestamp_seconds",
        &[],
    );

    // A SIGHUP with the file unchanged: nothing changes, the process lives on.
    hangup(&running);
    running.wait_for_line("the SIGHUP", |l| l.contains("SIGHUP"));
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "SIGHUP ended the process"
    );

    // A broken file: the reload metric says so, the process lives on.
    std::fs::remove_file(&file).unwrap();
    hangup(&running);
    running.wait_for_line("the failed read", |l| {
        l.contains("cannot read the password file again")
    });
    let m = scrape(address).await;
    assert_eq!(m.value("flexcloud_config_last_reload_successful", &[]), 0.0);
    assert!(!running.log().contains("wrong-at-first"));

    // The right password, then SIGHUP: read at once, with the next cycle an hour away.
    dir.write("password", format!("{PASSWORD}\n"));
    hangup(&running);
    running.wait_for_line("the change", |l| l.contains("password file changed"));
    let m = scrape(address).await;
    assert_eq!(m.value("flexcloud_config_last_reload_successful", &[]), 1.0);
    assert!(
        m.value(
            "flexcloud_config_last_reload_success_timestamp_seconds",
            &[]
        ) >= started
    );
    assert!(running.child.try_wait().unwrap().is_none());
    let log = running.log();
    assert!(!log.contains(PASSWORD), "the password is never logged");
    drop(running);
    sim.stop().await;
}
