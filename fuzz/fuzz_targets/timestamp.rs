//! An image's `created` text, in any of the forms the parser accepts or none.
#![no_main]

use flexcloud_exporter::timestamp::parse_unix_seconds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_unix_seconds(text);
});
