//! The process environment, as `Config::from_vars` reads the `FLEXCLOUD_*` settings.
//!
//! The input is a list of `NAME=VALUE` entries separated by NUL bytes (the one byte an
//! environment cannot hold). A name of one byte picks a real setting by index, so mutations
//! move between settings easily; a longer name is taken as it is when it starts with
//! `FLEXCLOUD_`, and is prefixed with it otherwise. Names and values are raw bytes, so
//! non-UTF-8 ones are covered.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use flexcloud_exporter::config::{Config, SETTINGS};
use libfuzzer_sys::fuzz_target;

const PREFIX: &[u8] = b"FLEXCLOUD_";

/// Settings whose value is a path the exporter opens or inspects. An arbitrary path could
/// block (a FIFO, `/dev/stdin`) or never end (`/dev/zero`), so their values pick one of a
/// few paths instead.
const PATH_SETTINGS: &[&str] = &[
    "FLEXCLOUD_PASSWORD_FILE",
    "FLEXCLOUD_CA_FILE",
    "FLEXCLOUD_WEB_CONFIG_FILE",
];

/// A regular file holding a password, written once per process. Renamed into place, so
/// targets running side by side never read it half-written, and only one is left behind.
fn password_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir();
        let path = dir.join("flexcloud-fuzz-password");
        let partial = dir.join(format!("flexcloud-fuzz-password.{}", std::process::id()));
        std::fs::write(&partial, "fuzzed password\n")
            .and_then(|()| std::fs::rename(&partial, &path))
            .expect("the temporary directory is writable");
        path
    })
}

/// Paths a path setting may name, besides the password file: missing, a device, a directory.
const SAFE_PATHS: &[&str] = &["/nonexistent/fuzz/file", "/dev/null", "/"];

/// The path a fuzzed value of a path setting stands for: itself when it is one of
/// [`SAFE_PATHS`] or empty (unset), else one of them or the password file, by its first byte.
fn safe_path(value: &[u8]) -> OsString {
    if value.is_empty() || SAFE_PATHS.iter().any(|p| p.as_bytes() == value) {
        return OsString::from_vec(value.to_vec());
    }
    match SAFE_PATHS.get(usize::from(value[0]) % (SAFE_PATHS.len() + 1)) {
        Some(path) => OsString::from(path),
        None => password_file().clone().into_os_string(),
    }
}

fn variable(entry: &[u8]) -> (OsString, OsString) {
    let (name, value) = match entry.iter().position(|&b| b == b'=') {
        Some(at) => (&entry[..at], &entry[at + 1..]),
        None => (entry, &[][..]),
    };
    let name = match name {
        [index] => SETTINGS[usize::from(*index) % SETTINGS.len()]
            .name
            .as_bytes()
            .to_vec(),
        _ if name.starts_with(PREFIX) => name.to_vec(),
        _ => [PREFIX, name].concat(),
    };
    let value = if PATH_SETTINGS.iter().any(|s| s.as_bytes() == name) {
        safe_path(value)
    } else {
        OsString::from_vec(value.to_vec())
    };
    (OsString::from_vec(name), value)
}

fuzz_target!(|data: &[u8]| {
    let vars: Vec<(OsString, OsString)> = data
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(variable)
        .collect();
    let _ = Config::from_vars(vars);
});
