//! Typed views of the API's JSON, borrowed from the body where possible, lenient about
//! missing optional fields and blind to unknown ones. Images are decoded one by one, so one
//! odd entry costs that entry, never its page.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

/// A `{rel, href}` hypermedia link.
#[derive(Debug, Deserialize)]
pub struct Link<'a> {
    #[serde(borrow, default)]
    pub rel: Cow<'a, str>,
    #[serde(borrow, default)]
    pub href: Cow<'a, str>,
}

/// The `next` link of a page, if any.
pub fn next_link<'a>(links: &'a [Link<'a>]) -> Option<&'a str> {
    links
        .iter()
        .find(|l| l.rel == "next")
        .map(|l| l.href.as_ref())
}

/// `GET /accounts`: `{"list": [...], "links": [...]}`.
#[derive(Debug, Deserialize)]
pub struct AccountPage<'a> {
    #[serde(borrow)]
    pub list: Vec<AccountEntry<'a>>,
    #[serde(borrow, default)]
    pub links: Vec<Link<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct AccountEntry<'a> {
    #[serde(
        rename = "accountNumber",
        borrow,
        deserialize_with = "string_or_number"
    )]
    pub account_number: Cow<'a, str>,
    #[serde(borrow, default)]
    pub status: Option<Cow<'a, str>>,
}

/// `GET /accounts/{id}/flexcloud/zone`: zone lists keyed by account number.
pub type ZoneMap<'a> = HashMap<Cow<'a, str>, Vec<ZoneEntry<'a>>>;

#[derive(Debug, Deserialize)]
pub struct ZoneEntry<'a> {
    #[serde(borrow)]
    pub zone: Cow<'a, str>,
}

/// `GET .../images/detail`: `{"images": [...]}`, with `links` when paged. `list` is
/// accepted too, since the reference's generic paged shape uses that key. The entries are
/// kept raw here and decoded one by one by [`ImagePage::entries`].
#[derive(Debug, Deserialize)]
pub struct ImagePage<'a> {
    #[serde(borrow, alias = "list")]
    pub images: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    pub links: Vec<Link<'a>>,
}

impl<'a> ImagePage<'a> {
    /// Each entry decoded on its own: an image, or why it cannot be used.
    pub fn entries(&self) -> impl Iterator<Item = Result<ImageEntry<'a>, ImageProblem>> + '_ {
        self.images
            .iter()
            .map(|raw| serde_json::from_str(raw.get()).map_err(|_| ImageProblem::Malformed))
    }
}

/// One image. Every field is optional: older API revisions sent fewer. `id` may be a string
/// or a number; `created` a string or a Unix number (anything else reads as unreadable, not
/// as a broken image); `updated` and unknown fields are ignored, whatever they hold.
#[derive(Debug, Default, Deserialize)]
pub struct ImageEntry<'a> {
    #[serde(borrow, default, deserialize_with = "opt_string_or_number")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_created")]
    pub created: Option<Cow<'a, str>>,
}

/// Why an image entry of a list was not counted as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageProblem {
    /// Not an object, or `id`, `name` or `status` of a type they cannot have: skipped.
    Malformed,
    /// An id the same list already had: counted once.
    Duplicate,
    /// A `created` that is no time: the image counts, without an age.
    BadCreated,
}

impl ImageProblem {
    pub const fn as_str(self) -> &'static str {
        match self {
            ImageProblem::Malformed => "malformed",
            ImageProblem::Duplicate => "duplicate",
            ImageProblem::BadCreated => "bad_created",
        }
    }
}

/// The first key of an error object such as `{"itemNotFound": {...}}`.
pub fn error_kind(body: &[u8]) -> Option<String> {
    let map: HashMap<String, de::IgnoredAny> = serde_json::from_slice(body).ok()?;
    let mut keys: Vec<String> = map.into_keys().collect();
    keys.sort();
    keys.into_iter().next()
}

struct StrOrNum;

impl<'de> Visitor<'de> for StrOrNum {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// Ids are strings in the reference (`"123"`, `"debian_lenny_template"`), but a bare
/// number is accepted rather than losing the image.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, str>, D::Error> {
    d.deserialize_any(StrOrNum)
}

/// `created` as the API writes it (a string), a Unix number, or, for any other shape, an
/// empty string that no timestamp parser accepts, so the image is kept and its time counted
/// as unreadable.
fn lenient_created<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Lenient;
    impl<'de> Visitor<'de> for Lenient {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Lenient)
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed("")))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<de::IgnoredAny>()?.is_some() {}
            Ok(Some(Cow::Borrowed("")))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                .is_some()
            {}
            Ok(Some(Cow::Borrowed("")))
        }
    }
    d.deserialize_option(Lenient)
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string, a number or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            string_or_number(d).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_seed_example_borrowing_plain_strings() {
        let body = br#"{"images": [{"status": "SAVING", "updated": null, "name": "test_debian_image",
            "links": [{"href": "https://api.hostway.com/accounts/a/flexcloud/images/233/", "rel": "self"}],
            "created": "2011-09-30T02:38:57", "id": "233", "zones": ["AUS001"]}]}"#;
        let page: ImagePage = serde_json::from_slice(body).unwrap();
        let image = page.entries().next().unwrap().unwrap();
        assert!(matches!(image.id, Some(Cow::Borrowed("233"))));
        assert_eq!(image.status.as_deref(), Some("SAVING"));
        assert_eq!(image.created.as_deref(), Some("2011-09-30T02:38:57"));
        assert!(next_link(&page.links).is_none());
    }

    #[test]
    fn tolerates_legacy_missing_and_extra_fields_and_numeric_ids() {
        let body = br#"{"images": [{"id": "debian_lenny_template", "name": "lenny", "status": "ACTIVE"},
            {"id": 7, "flavor": {"ram": 1}}, {"id": null}], "links": [{"rel": "next", "href": "/x?page=2"}]}"#;
        let page: ImagePage = serde_json::from_slice(body).unwrap();
        let images: Vec<ImageEntry> = page.entries().map(Result::unwrap).collect();
        assert_eq!(images.len(), 3);
        assert_eq!(images[1].id.as_deref(), Some("7"));
        assert!(images[2].id.is_none() && images[1].status.is_none());
        assert_eq!(next_link(&page.links), Some("/x?page=2"));
    }

    #[test]
    fn escaped_names_are_decoded() {
        let page: ImagePage =
            serde_json::from_slice(br#"{"images": [{"name": "a\"b\n<c>"}]}"#).unwrap();
        let image = page.entries().next().unwrap().unwrap();
        assert_eq!(image.name.as_deref(), Some("a\"b\n<c>"));
    }

    #[test]
    fn each_odd_entry_costs_itself_only() {
        let body = br#"{"images": [
            {"id": "1", "status": "ACTIVE", "created": "2011-11-09T03:19:48"},
            {"id": true, "status": "ACTIVE"},
            {"id": {"a": 1}},
            {"id": "2", "status": 3},
            {"id": "3", "name": 4},
            null,
            "an image",
            [1, 2],
            {"id": 4, "status": "SAVING", "created": 1320808788, "updated": {"by": ["x"]}},
            {"id": "5", "status": "SAVING", "created": {"when": "today"}},
            {"id": "6", "status": "ACTIVE", "created": false, "extra": [null]}
        ]}"#;
        let page: ImagePage = serde_json::from_slice(body).unwrap();
        let entries: Vec<_> = page.entries().collect();
        assert_eq!(entries.len(), 11);
        let problems = entries.iter().filter(|e| e.is_err()).count();
        assert_eq!(problems, 7, "{entries:?}");
        assert!(
            entries
                .iter()
                .filter_map(|e| e.as_ref().err())
                .all(|p| *p == ImageProblem::Malformed)
        );
        let ok: Vec<&ImageEntry> = entries.iter().filter_map(|e| e.as_ref().ok()).collect();
        assert_eq!(ok[1].id.as_deref(), Some("4"));
        assert_eq!(ok[1].created.as_deref(), Some("1320808788"));
        assert_eq!(ok[2].created.as_deref(), Some(""));
        assert_eq!(ok[3].created.as_deref(), Some(""));
    }

    #[test]
    fn a_list_without_its_key_is_an_error() {
        assert!(serde_json::from_slice::<ImagePage>(b"{}").is_err());
        assert!(serde_json::from_slice::<AccountPage>(br#"{"links": []}"#).is_err());
    }

    #[test]
    fn error_kind_is_the_first_key() {
        assert_eq!(
            error_kind(br#"{"itemNotFound": {"code": 404}}"#).as_deref(),
            Some("itemNotFound")
        );
        assert_eq!(error_kind(b"<html>"), None);
    }
}
