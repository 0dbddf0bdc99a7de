//! An image list body as the API sends it, through the model and the per-list count.
#![no_main]

use flexcloud_exporter::api::ImageType;
use flexcloud_exporter::api::model::{self, ImagePage};
use flexcloud_exporter::snapshot::ListCount;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = serde_json::from_slice::<ImagePage>(data) else {
        return;
    };
    let mut count = ListCount::new(ImageType::Server);
    for entry in page.entries() {
        count.add(entry.as_ref().map_err(|p| *p));
    }
    let inventory = count.finish();
    let _ = inventory.count_rows();
    for image_type in ImageType::ALL {
        let _ = inventory.oldest_saving(image_type);
    }
    let _ = inventory.total();
    let _ = model::next_link(&page.links);
});
