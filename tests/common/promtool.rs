//! `promtool check metrics` on an exposition, shared by the tests that lint `/metrics`.

use std::io::Write;
use std::process::{Command, Stdio};

/// Asserts that promtool accepts `exposition` and reports nothing about it.
pub fn assert_clean_metrics(exposition: &[u8]) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(exposition)
        .expect("promtool reads its input");
    let out = child.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert_eq!(report.trim(), "", "promtool reports nothing");
}
