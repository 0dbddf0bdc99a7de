//! A zone list body: zone entries keyed by account number.
#![no_main]

use flexcloud_exporter::api::model::ZoneMap;
use flexcloud_exporter::snapshot::bounded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(map) = serde_json::from_slice::<ZoneMap>(data) else {
        return;
    };
    for (account, zones) in &map {
        let _ = bounded(account);
        for zone in zones {
            let _ = bounded(&zone.zone);
        }
    }
});
