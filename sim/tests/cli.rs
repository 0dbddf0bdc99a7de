//! The `flexcloud-sim` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use flexcloud_sim::Scenario;

const BIN: &str = env!("CARGO_BIN_EXE_flexcloud-sim");

fn scenario_file(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The child is killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn generated_fleet_is_the_same_bytes_for_the_same_seed() {
    let print = || {
        Command::new(BIN)
            .args(["--print-scenario", "--scenario"])
            .arg(scenario_file("large-fleet.json"))
            .output()
            .unwrap()
    };
    let (a, b) = (print(), print());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let scenario: Scenario = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(scenario.accounts.len(), 500);
    assert_eq!(scenario.images.len(), 500 * 4 * 6);
}

#[tokio::test]
async fn serves_a_scenario_file_and_prints_its_address() {
    let mut child = Running(
        Command::new(BIN)
            .arg("--scenario")
            .arg(scenario_file("demo.json"))
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .to_string();
    let response = reqwest::Client::new()
        .get(format!("{url}/images/detail"))
        .basic_auth("demo", Some("demo-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn the_readme_scenario_example_loads() {
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let example = readme
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a json block in sim/README.md");
    let dir = std::env::temp_dir().join(format!("flexcloud-sim-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("example.json");
    std::fs::write(&file, example).unwrap();
    let out = Command::new(BIN)
        .args(["--print-scenario", "--scenario"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scenario: Scenario = serde_json::from_slice(&out.stdout).unwrap();
    let scheduled = scenario.images.iter().find(|i| i.id == "240").unwrap();
    assert_eq!(scheduled.changes.len(), 4);
}

#[test]
fn a_bad_scenario_or_usage_exits_2_with_one_line() {
    let dir = std::env::temp_dir().join(format!("flexcloud-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"users": [], "acounts": []}"#).unwrap();
    for args in [
        vec!["--scenario".to_string(), bad.display().to_string()],
        vec!["--scenario".into(), "/nonexistent/scenario.json".into()],
        vec!["--listen".into(), "127.0.0.1:0".into()],
        vec!["--no-such-flag".into()],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("flexcloud-sim: "), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
