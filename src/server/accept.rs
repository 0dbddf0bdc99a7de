//! Content negotiation for `/metrics`, as RFC 9110 reads the `Accept` header.

use mediatype::names::{_STAR as STAR, APPLICATION, PLAIN, TEXT};
use mediatype::{MediaTypeList, Name, ReadParams};

pub use crate::metrics::Format;

/// The format for an `Accept` header, as client_golang chooses and RFC 9110 reads it:
/// OpenMetrics only when asked for by name (a wildcard means the classic text, as for curl's
/// `*/*`); per format the most specific matching range decides its `q`, `q=0` meaning not
/// acceptable; the higher `q` wins, the range listed first between equals. Media types and
/// parameter names are case-insensitive. A `version` other than the one served makes a
/// range miss; other parameters (`charset`, `escaping`, ...) do not. A header that accepts
/// neither format, or does not parse, gets the text format, as client_golang does, so odd
/// clients keep working rather than getting a 406.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    // Per format, the most specific matching range: (specificity, q, position).
    let mut openmetrics: Option<(u8, u16, usize)> = None;
    let mut text: Option<(u8, u16, usize)> = None;
    for (position, range) in MediaTypeList::new(accept).enumerate() {
        let Ok(range) = range else {
            // One malformed range costs that range, not the whole header.
            continue;
        };
        let q = quality(range.get_param(Q).as_ref().map(|v| v.as_str()));
        let version = range.get_param(VERSION);
        let named = |ty, subty, served_version: &str| {
            range.ty == ty
                && range.subty == subty
                && version
                    .as_ref()
                    .is_none_or(|v| v.as_str() == served_version)
        };
        if named(APPLICATION, OPENMETRICS_TEXT, "1.0.0") {
            keep_most_specific(&mut openmetrics, (2, q, position));
        }
        let text_specificity = if named(TEXT, PLAIN, "0.0.4") {
            Some(2)
        } else if range.ty == TEXT && range.subty == STAR {
            Some(1)
        } else if range.ty == STAR {
            Some(0)
        } else {
            None
        };
        if let Some(specificity) = text_specificity {
            keep_most_specific(&mut text, (specificity, q, position));
        }
    }
    match (openmetrics, text) {
        (Some((_, om_q, om_at)), text)
            if om_q > 0
                && text
                    .is_none_or(|(_, t_q, t_at)| om_q > t_q || (om_q == t_q && om_at < t_at)) =>
        {
            Format::OpenMetrics
        }
        _ => Format::Text,
    }
}

/// Whether an `Accept-Encoding` list (the header's lines joined) takes gzip, as RFC 9110
/// 12.5.3 reads it: `gzip` (or its alias `x-gzip`) by name, or `*` when gzip is not named,
/// with a `q` above 0. No header means the plain body: RFC 9110 allows any coding then, but
/// a client that sends none may not be able to decode one.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(list) = accept_encoding else {
        return false;
    };
    let mut named: Option<u16> = None;
    let mut star: Option<u16> = None;
    for element in list.split(',') {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1000, |(_, value)| quality(Some(value)));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            named = Some(named.map_or(q, |before| before.max(q)));
        } else if coding == "*" {
            star = Some(q);
        }
    }
    named.or(star).is_some_and(|q| q > 0)
}

/// RFC 9110: of the ranges that match a format, the most specific sets its `q`; between
/// equally specific ones, the first listed.
fn keep_most_specific(best: &mut Option<(u8, u16, usize)>, candidate: (u8, u16, usize)) {
    if best.is_none_or(|(specificity, _, _)| candidate.0 > specificity) {
        *best = Some(candidate);
    }
}

const Q: Name<'static> = Name::new_unchecked("q");
const VERSION: Name<'static> = Name::new_unchecked("version");
const OPENMETRICS_TEXT: Name<'static> = Name::new_unchecked("openmetrics-text");

/// A `q` value in thousandths; a missing or malformed one is 1.
fn quality(value: Option<&str>) -> u16 {
    let Some(value) = value else {
        return 1000;
    };
    let value = value.trim();
    match value.split_once('.') {
        None => match value {
            "0" => 0,
            _ => 1000,
        },
        Some((whole, fraction)) => {
            if whole == "1" {
                return 1000;
            }
            if whole != "0" || fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return 1000;
            }
            let padded = format!("{fraction:0<3}");
            padded.parse().unwrap_or(1000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_and_plain_clients_get_what_they_ask_for() {
        let cases = [
            // Prometheus 2.x
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                Format::OpenMetrics,
            ),
            // Prometheus 3.x adds parameters of its own
            (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1",
                Format::OpenMetrics,
            ),
            // Prometheus told to prefer the text format
            (
                "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5",
                Format::Text,
            ),
            ("text/plain", Format::Text),
            ("*/*", Format::Text),
            ("application/openmetrics-text", Format::OpenMetrics),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(Some(accept)), want, "{accept}");
        }
        assert_eq!(negotiate(None), Format::Text);
    }

    #[test]
    fn media_types_and_parameters_are_case_insensitive() {
        for accept in [
            "APPLICATION/OPENMETRICS-TEXT",
            "Application/OpenMetrics-Text; Version=1.0.0",
            "application/openmetrics-text; VERSION=1.0.0; Q=0.9, text/plain; q=0.5",
        ] {
            assert_eq!(negotiate(Some(accept)), Format::OpenMetrics, "{accept}");
        }
    }

    #[test]
    fn q_zero_is_not_acceptable_and_the_most_specific_range_decides() {
        let cases = [
            (
                "application/openmetrics-text;q=0, text/plain;q=0.1",
                Format::Text,
            ),
            ("application/openmetrics-text;q=0, */*", Format::Text),
            (
                "*/*;q=0.9, application/openmetrics-text;q=0.5, text/plain;q=0.8",
                Format::Text,
            ),
            // OpenMetrics only when named, as in client_golang
            ("application/*;q=0.9, text/*;q=0.8", Format::Text),
            (
                "application/openmetrics-text;q=0.5, text/plain;q=0.5",
                Format::OpenMetrics,
            ),
            (
                "text/plain;q=0.5, application/openmetrics-text;q=0.5",
                Format::Text,
            ),
            // a version we do not write is no match
            ("application/openmetrics-text;version=0.0.1", Format::Text),
            ("application/openmetrics-text;q=0.000", Format::Text),
            ("application/openmetrics-text;q=0.001", Format::OpenMetrics),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(Some(accept)), want, "{accept}");
        }
    }

    #[test]
    fn a_client_that_accepts_neither_or_sends_garbage_gets_text() {
        for accept in [
            "application/json",
            "image/png;q=1",
            "*/*;q=0",
            "text/plain;q=0, application/openmetrics-text;q=0",
            "",
            ";;;,,,",
            "\u{7f}garbage",
            "application/openmetrics-text;q=banana",
        ] {
            let want = if accept.ends_with("banana") {
                Format::OpenMetrics
            } else {
                Format::Text
            };
            assert_eq!(negotiate(Some(accept)), want, "{accept:?}");
        }
    }

    #[test]
    fn quality_values_follow_the_grammar() {
        assert_eq!(quality(None), 1000);
        assert_eq!(quality(Some("1")), 1000);
        assert_eq!(quality(Some("1.000")), 1000);
        assert_eq!(quality(Some("0")), 0);
        assert_eq!(quality(Some("0.5")), 500);
        assert_eq!(quality(Some("0.05")), 50);
        assert_eq!(quality(Some("0.123")), 123);
        assert_eq!(quality(Some("0.1234")), 1000);
    }

    #[test]
    fn gzip_is_taken_when_named_or_starred_with_a_positive_q() {
        for (header, expected) in [
            (None, false),
            (Some(""), false),
            (Some("gzip"), true),
            (Some("GZip"), true),
            (Some("x-gzip"), true),
            (Some("gzip, deflate, br"), true),
            (Some("identity"), false),
            (Some("deflate, br"), false),
            (Some("gzip;q=0"), false),
            (Some("gzip; Q=0.000"), false),
            (Some("gzip;q=0.001"), true),
            (Some("*"), true),
            (Some("*;q=0"), false),
            (Some("gzip;q=0, *"), false),
            (Some("*;q=0, gzip"), true),
            (Some("br;q=1.0, gzip;q=0.8, *;q=0.1"), true),
            (Some(";;,,=q"), false),
        ] {
            assert_eq!(accepts_gzip(header), expected, "{header:?}");
        }
    }
}
