//! The web config file (exporter-toolkit format): YAML, headers, TLS, Basic-auth users.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use flexcloud_exporter::web::WebConfig;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// The file's name. Its directory does not exist, so relative `cert_file` and `key_file`
/// paths (`..` included) point nowhere.
const FILE: &str = "/nonexistent/web.yml";

/// Highest bcrypt cost let through. Loading a file runs one bcrypt verification at the
/// highest cost among its users (the time later checks are padded to); cost 31 takes hours.
/// That is a known cost of a valid file, not a bug. Cost 6 takes milliseconds.
const MAX_COST: u32 = 6;

/// The parts of the file that make loading slow or touch the machine, read as the exporter
/// reads them but ignoring every other key: any file the exporter accepts this reads too,
/// with the same strings after YAML's quoting, escapes and anchors (a look at the raw text
/// would miss `"\x242b\x2410..."`).
#[derive(Deserialize)]
struct Costly {
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    tls_server_config: Option<Files>,
}

#[derive(Deserialize)]
struct Files {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
}

/// Whether the exporter would run bcrypt above [`MAX_COST`] on this file, or read an
/// absolute path (`/dev/zero` never ends).
fn is_costly(text: &str) -> bool {
    let Ok(costly) = serde_norway::from_str::<Costly>(text) else {
        // Nothing this can read: the exporter cannot read those sections either.
        return false;
    };
    let slow_hash = costly.basic_auth_users.iter().flatten().any(|(_, hash)| {
        hash.parse::<bcrypt::HashParts>()
            .is_ok_and(|parts| parts.get_cost() > MAX_COST)
    });
    let absolute_file = costly.tls_server_config.is_some_and(|tls| {
        [tls.cert_file, tls.key_file]
            .iter()
            .flatten()
            .any(|f| Path::new(f).is_absolute())
    });
    slow_hash || absolute_file
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if is_costly(text) {
        return;
    }
    let _ = WebConfig::parse(text, Path::new(FILE));
});
