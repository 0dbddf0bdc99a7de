//! The API's zone-less ISO 8601 timestamps: lenient parsing, and the same form for display.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Beyond this a Unix number is read as milliseconds: as seconds it would be after the year
/// 5000, as milliseconds it is after 1973.
const MILLISECONDS_FROM: f64 = 1e11;

/// Parses a timestamp as the API writes it (`2011-11-09T03:19:48`, taken as UTC), and
/// also with a trailing `Z`, an offset, fractional seconds or a space for the `T`,
/// because older revisions and proxies are not consistent, or a Unix number (seconds, or
/// milliseconds when that large). Returns Unix seconds.
pub fn parse_unix_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(number) = text.parse::<f64>() {
        return (number.is_finite() && number >= 0.0).then(|| {
            if number >= MILLISECONDS_FROM {
                number / 1000.0
            } else {
                number
            }
        });
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(to_unix_seconds(t));
    }
    let normalised = text.replacen(' ', "T", 1);
    let zone_less = format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(t) = PrimitiveDateTime::parse(&normalised, zone_less) {
        return Some(to_unix_seconds(t.assume_utc()));
    }
    // An offset without a `T`/seconds variant that RFC 3339 rejects, e.g. `+0000`.
    let with_offset = format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]][offset_hour][optional [:]][offset_minute]"
    );
    OffsetDateTime::parse(&normalised, with_offset)
        .ok()
        .map(to_unix_seconds)
}

fn to_unix_seconds(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// Formats a time the way the API does (UTC, whole seconds, no zone designator), for the
/// status page.
pub fn format_api(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let t = OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    t.format(fmt).unwrap_or_default()
}

/// Seconds since the Unix epoch of `at`, as Prometheus wants timestamps.
pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_zone_less_form_as_utc() {
        assert_eq!(
            parse_unix_seconds("2011-11-09T03:19:48"),
            Some(1_320_808_788.0)
        );
    }

    #[test]
    fn accepts_z_offsets_fractions_and_space() {
        let base = 1_320_808_788.0;
        assert_eq!(parse_unix_seconds("2011-11-09T03:19:48Z"), Some(base));
        assert_eq!(parse_unix_seconds("2011-11-09T05:19:48+02:00"), Some(base));
        assert_eq!(parse_unix_seconds("2011-11-09T05:19:48+0200"), Some(base));
        assert_eq!(parse_unix_seconds("2011-11-09 03:19:48"), Some(base));
        assert_eq!(
            parse_unix_seconds("2011-11-09T03:19:48.5"),
            Some(base + 0.5)
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2011-13-09T03:19:48",
            "2011-11-09",
            "-5",
            "NaN",
            "inf",
        ] {
            assert_eq!(parse_unix_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn accepts_unix_seconds_and_milliseconds() {
        assert_eq!(parse_unix_seconds("1320808788"), Some(1_320_808_788.0));
        assert_eq!(parse_unix_seconds("1320808788.5"), Some(1_320_808_788.5));
        assert_eq!(parse_unix_seconds("1320808788000"), Some(1_320_808_788.0));
        assert_eq!(parse_unix_seconds("0"), Some(0.0));
    }

    #[test]
    fn format_round_trips() {
        let at = UNIX_EPOCH + Duration::from_secs(1_320_808_788);
        assert_eq!(format_api(at), "2011-11-09T03:19:48");
        assert_eq!(parse_unix_seconds(&format_api(at)), Some(1_320_808_788.0));
    }
}
