//! Stamps the source revision into the binary for `flexcloud_exporter_build_info`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FLEXCLOUD_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    // An explicit value wins (container builds have no .git); otherwise ask git, and
    // fall back to "unknown" rather than failing a build from a source archive.
    let revision = std::env::var("FLEXCLOUD_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FLEXCLOUD_REVISION={revision}");
}
