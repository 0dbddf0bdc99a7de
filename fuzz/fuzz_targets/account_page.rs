//! An account list body, as the discovery reads it.
#![no_main]

use flexcloud_exporter::api::model::{self, AccountPage};
use flexcloud_exporter::snapshot::bounded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = serde_json::from_slice::<AccountPage>(data) else {
        return;
    };
    for account in &page.list {
        // Account numbers become label values.
        let _ = bounded(&account.account_number);
        let _ = account
            .status
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("open"));
    }
    let _ = model::next_link(&page.links);
});
