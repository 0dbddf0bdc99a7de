//! A scraper's `Accept` header, as /metrics negotiates its format.
#![no_main]

use flexcloud_exporter::server::negotiate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = negotiate(Some(text));
});
