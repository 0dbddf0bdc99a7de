//! The status page in a real browser: the binary against the simulator, opened by Debian's
//! chromium through playwright-core (`tests/browser/check.mjs`), with a screenshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{HANG, PASSWORD, Running, USER, binary_env, eventually};
use flexcloud_sim::{Fault, FaultAction, Scenario, Simulator};

/// An image name that breaks out of text and of a quoted attribute if not escaped.
const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

const BROWSER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
const SCREENSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/status-page.png");

/// A stuck image with a hostile name, a young SAVING image, a zone whose listing fails with
/// 503, and an account whose every request is answered 401; ids as long as the widest
/// columns allow before they are cut, or longer.
fn scenario() -> Scenario {
    let status = |status| FaultAction::Status {
        status,
        body: None,
        retry_after: None,
    };
    Scenario::default()
        .user(
            USER,
            PASSWORD,
            &["acme1234-production-eu", "flaky7890", "locked0001"],
        )
        .account(
            "acme1234-production-eu",
            &["USOTE-2012-TAMPA", "USOTE-2012-DALLAS"],
        )
        .account("flaky7890", &["AUS001"])
        .account("locked0001", &["AUS001"])
        .image(
            "acme1234-production-eu",
            "101",
            "ACTIVE",
            "BASE",
            &["USOTE-2012-TAMPA"],
        )
        .image_with(
            "acme1234-production-eu",
            "102",
            "SAVING",
            "SERVER",
            &["USOTE-2012-TAMPA"],
            |mut i| {
                i.name = HOSTILE.into();
                i.age = Some(Duration::from_secs(3 * 3600 + 120));
                i
            },
        )
        .image_with(
            "acme1234-production-eu",
            "103",
            "SAVING",
            "SERVER",
            &["USOTE-2012-DALLAS"],
            |mut i| {
                i.name = "db-01-nightly".into();
                i.age = Some(Duration::from_secs(300));
                i
            },
        )
        .fault(Fault::on(
            "/accounts/flaky7890/flexcloud/images*",
            status(503),
        ))
        .fault(Fault::on("/accounts/locked0001/*", status(401)))
}

/// A child process killed when dropped, however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and node (tests/browser)"]
async fn the_status_page_in_chromium_shows_stuck_images_back_off_and_no_injected_markup() {
    assert!(
        Path::new(BROWSER_DIR)
            .join("node_modules/playwright-core")
            .is_dir(),
        "run `npm ci` in tests/browser first"
    );
    let sim = Simulator::start_local(scenario())
        .await
        .expect("simulator starts");
    let url = sim.url();
    let mut exporter = Running::start(
        &binary_env(
            &url,
            &[(
                "FLEXCLOUD_ACCOUNTS",
                "acme1234-production-eu,flaky7890,locked0001",
            )],
        ),
        &[],
    );
    let page = format!("http://{}/", exporter.address());
    let client = reqwest::Client::new();
    eventually("the first cycle", || async {
        let ready = client
            .get(format!("{page}-/ready"))
            .send()
            .await
            .ok()?
            .status();
        ready.is_success().then_some(())
    })
    .await;

    std::fs::create_dir_all(Path::new(SCREENSHOT).parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(SCREENSHOT);
    let mut node = Killed(
        Command::new("node")
            .arg("check.mjs")
            .args([page.as_str(), SCREENSHOT, HOSTILE])
            .current_dir(BROWSER_DIR)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node starts"),
    );
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = node.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "node check.mjs hangs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = |pipe: Option<&mut dyn std::io::Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    };
    let stdout = output(node.0.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
    let stderr = output(node.0.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
    let log = exporter.log();
    drop(node);
    drop(exporter);
    sim.stop().await;
    assert!(
        status.success(),
        "the browser check failed ({status}):\n{stdout}\n{stderr}\nexporter log:\n{log}"
    );
    assert!(stdout.contains("checked http://"), "{stdout}");
    println!("{}", stdout.trim());
    assert!(
        Path::new(SCREENSHOT).is_file(),
        "no screenshot at {SCREENSHOT}"
    );
}
