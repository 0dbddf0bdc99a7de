//! The API's timestamps as the simulator writes them: UTC, whole seconds, no zone designator.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::macros::format_description;

/// Formats a time the way the API does, e.g. `2011-11-09T03:19:48`.
pub fn format_api(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    t.format(fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds_without_a_zone() {
        let at = UNIX_EPOCH + Duration::from_millis(1_320_808_788_900);
        assert_eq!(format_api(at), "2011-11-09T03:19:48");
    }
}
