//! Our typed view of one collection cycle, built from API answers by pure functions.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::api::model::{ImageEntry, ImageProblem};
use crate::api::{ApiError, CredentialState, Endpoint, ErrorKind, ImageType};
use crate::lifecycle::{Lifecycle, Sighting, Status};
use crate::timestamp;

/// The statuses the API documents; every one is exported for every type, 0 when none.
pub const KNOWN_STATUSES: [&str; 3] = ["ACTIVE", "SAVING", "DELETED"];
/// Longest label value taken from the API; longer ones are cut.
pub const MAX_LABEL_LEN: usize = 128;
/// Distinct undocumented statuses kept per zone (both types together); more are counted as
/// `OTHER`.
const MAX_UNKNOWN_STATUSES: usize = 8;

/// A value from the API as a label value of at most [`MAX_LABEL_LEN`] characters. A longer
/// one keeps its first 111 characters, then `~` and 16 hex digits of the FNV-1a hash of the
/// whole value, so two long ids that share a beginning never share a series, and the same id
/// gives the same label in every cycle, version and replica.
pub fn bounded(value: &str) -> String {
    bounded_label(value).into_owned()
}

/// As [`bounded`], borrowed when the value fits as it is (nearly always), so encoding a
/// cycle allocates nothing per account and zone.
pub fn bounded_label(value: &str) -> Cow<'_, str> {
    if value.chars().nth(MAX_LABEL_LEN).is_none() {
        return Cow::Borrowed(value);
    }
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(value.as_bytes());
    let kept: String = value.chars().take(MAX_LABEL_LEN - 17).collect();
    Cow::Owned(format!("{kept}~{:016x}", hasher.finish()))
}

/// A status as a label value: documented ones as they are, others upper-cased and
/// reduced to `[A-Z0-9_]` (at most 32 characters), missing ones `UNKNOWN`. Borrowed for
/// the documented statuses and `UNKNOWN`, which is nearly every image: this runs once per
/// image of every cycle.
fn status_label(status: Option<&str>) -> Cow<'static, str> {
    let Some(status) = status.map(str::trim).filter(|s| !s.is_empty()) else {
        return Cow::Borrowed("UNKNOWN");
    };
    if let Some(known) = KNOWN_STATUSES.iter().find(|k| **k == status) {
        return Cow::Borrowed(known);
    }
    Cow::Owned(
        status
            .chars()
            .take(32)
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect(),
    )
}

/// One image in SAVING, kept so an alert can name it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavingImage {
    pub image_type: ImageType,
    pub id: String,
    pub name: String,
    /// Unix seconds; `None` when the API's timestamp could not be read.
    pub created: Option<f64>,
}

/// The images of one account and zone, by type and status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// `(type, status, count)`, sorted by type and status; a handful at most. A sorted
    /// `Vec` rather than a map, with the documented statuses borrowed: at 5,000 accounts a
    /// map's nodes and the status strings were 13 MB of a cycle's peak.
    pub counts: Vec<(ImageType, Cow<'static, str>, u64)>,
    pub saving: Vec<SavingImage>,
    /// Entries that were skipped, counted once, or counted without a time, by why.
    pub problems: BTreeMap<ImageProblem, u64>,
}

impl Inventory {
    /// Notes an entry that could not be counted as it stood.
    pub fn note(&mut self, problem: ImageProblem) {
        *self.problems.entry(problem).or_default() += 1;
    }

    /// Whether `status` would need a new slot among the undocumented statuses, and none
    /// is left.
    fn over_status_cap(&self, status: &str) -> bool {
        if KNOWN_STATUSES.contains(&status) || self.counts.iter().any(|(_, s, _)| s == status) {
            return false;
        }
        let unknown_seen = self
            .counts
            .iter()
            .filter(|(_, s, _)| !KNOWN_STATUSES.contains(&s.as_ref()))
            .map(|(_, s, _)| s.as_ref())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        unknown_seen >= MAX_UNKNOWN_STATUSES
    }

    /// Counts one image found with the `type` filter `image_type`; returns its creation
    /// time when it could be read (Unix seconds).
    pub fn record(&mut self, image_type: ImageType, image: &ImageEntry<'_>) -> Option<f64> {
        let mut status = status_label(image.status.as_deref());
        // Only a status not counted yet can hit the cap, so the common case skips the scan.
        if self.over_status_cap(&status) {
            status = Cow::Borrowed("OTHER");
        }
        let created = image.created.as_deref().map(|c| {
            let parsed = timestamp::parse_unix_seconds(c);
            if parsed.is_none() {
                self.note(ImageProblem::BadCreated);
            }
            parsed
        });
        let created = created.flatten();
        if status == "SAVING" {
            self.saving.push(SavingImage {
                image_type,
                id: bounded(image.id.as_deref().unwrap_or("")),
                name: bounded(image.name.as_deref().unwrap_or("")),
                created,
            });
        }
        self.add(image_type, status, 1);
        created
    }

    /// Adds `n` to the count of `image_type` and `status`, keeping the order.
    fn add(&mut self, image_type: ImageType, status: Cow<'static, str>, n: u64) {
        match self
            .counts
            .binary_search_by(|(t, s, _)| (*t, s.as_ref()).cmp(&(image_type, status.as_ref())))
        {
            Ok(at) => self.counts[at].2 += n,
            Err(at) => self.counts.insert(at, (image_type, status, n)),
        }
    }

    /// The count of `image_type` and `status` (0 when none).
    pub fn count(&self, image_type: ImageType, status: &str) -> u64 {
        self.counts
            .iter()
            .find(|(t, s, _)| *t == image_type && s == status)
            .map_or(0, |(_, _, n)| *n)
    }

    /// Adds another part (the other image type of the zone) to this one. The cap on
    /// undocumented statuses holds for the whole zone: a status of `other` beyond it is
    /// counted as `OTHER`.
    pub fn merge(&mut self, other: Inventory) {
        for (image_type, status, n) in other.counts {
            let status = if self.over_status_cap(&status) {
                Cow::Borrowed("OTHER")
            } else {
                status
            };
            self.add(image_type, status, n);
        }
        self.saving.extend(other.saving);
        for (problem, n) in other.problems {
            *self.problems.entry(problem).or_default() += n;
        }
    }

    /// Image counts for every documented status and both types (0 when none), then any
    /// other status seen.
    pub fn count_rows(&self) -> Vec<(ImageType, &str, u64)> {
        let mut rows = Vec::with_capacity(ImageType::ALL.len() * KNOWN_STATUSES.len());
        for image_type in ImageType::ALL {
            for status in KNOWN_STATUSES {
                rows.push((image_type, status, self.count(image_type, status)));
            }
        }
        for (image_type, status, n) in &self.counts {
            if !KNOWN_STATUSES.contains(&status.as_ref()) {
                rows.push((*image_type, status.as_ref(), *n));
            }
        }
        rows
    }

    /// Creation time of the oldest SAVING image of a type with a readable timestamp.
    pub fn oldest_saving(&self, image_type: ImageType) -> Option<f64> {
        self.saving
            .iter()
            .filter(|s| s.image_type == image_type)
            .filter_map(|s| s.created)
            .min_by(f64::total_cmp)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, _, n)| n).sum()
    }
}

/// One list (an account, zone and type) counted into an inventory: each image id once, odd
/// entries noted by why; and each image with an id as a [`Sighting`] for the lifecycle
/// tracker (16 bytes an image, handed over when the account's probe ends).
#[derive(Debug)]
pub struct ListCount {
    image_type: ImageType,
    inventory: Inventory,
    /// 64-bit hashes of the ids seen, so the check allocates nothing per image.
    seen: std::collections::HashSet<u64>,
    sightings: Vec<Sighting>,
}

impl ListCount {
    pub fn new(image_type: ImageType) -> Self {
        ListCount {
            image_type,
            inventory: Inventory::default(),
            seen: std::collections::HashSet::new(),
            sightings: Vec::new(),
        }
    }

    /// Counts one entry of the list as the API listed it.
    pub fn add(&mut self, entry: Result<&ImageEntry<'_>, ImageProblem>) {
        let image = match entry {
            Ok(image) => image,
            Err(problem) => return self.inventory.note(problem),
        };
        let id = image.id.as_deref().map(Sighting::id_hash);
        if let Some(id) = id {
            if !self.seen.insert(id) {
                return self.inventory.note(ImageProblem::Duplicate);
            }
        }
        let created = self.inventory.record(self.image_type, image);
        if let Some(id) = id {
            self.sightings.push(Sighting {
                id,
                image_type: self.image_type,
                status: Status::of(image.status.as_deref()),
                created: created.map_or(0, |c| c.clamp(0.0, f64::from(u32::MAX)) as u32),
            });
        }
    }

    pub fn finish(self) -> Inventory {
        self.inventory
    }

    /// The inventory, and the images with an id as the tracker takes them.
    pub fn finish_with_sightings(self) -> (Inventory, Vec<Sighting>) {
        (self.inventory, self.sightings)
    }
}

/// The outcome of one step (a probe or a discovery call).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub success: bool,
    /// The status that decided it: the failing one, else 200; 0 when none arrived.
    pub http_status: u16,
    /// Why it failed; `None` when it succeeded.
    pub error_kind: Option<ErrorKind>,
    /// The error in words, for logs and the landing page.
    pub detail: Option<String>,
    pub duration: Duration,
}

impl Outcome {
    /// A step that succeeded in `duration`.
    pub fn succeeded(duration: Duration) -> Self {
        Outcome {
            success: true,
            http_status: 200,
            error_kind: None,
            detail: None,
            duration,
        }
    }

    /// A step that failed with `error` after `duration`.
    pub fn failed(error: &ApiError, duration: Duration) -> Self {
        Outcome {
            success: false,
            http_status: error.http_status(),
            error_kind: Some(error.kind()),
            detail: Some(error_chain(error)),
            duration,
        }
    }
}

/// The error and its sources in one line, for logs and the status page.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One account and zone as the latest cycle left it.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneState {
    /// The latest probe; `None` when the zone was not probed this cycle (discovery
    /// failed) and only its last good data is carried.
    pub probe: Option<Outcome>,
    /// The images, fresh or carried from the last success while within the stale bound.
    pub inventory: Option<Arc<Inventory>>,
    /// Past the stale bound, the SAVING images of the last good inventory, held while the
    /// zone still cannot be read: whether they are still SAVING is unknown, and their
    /// series going away would resolve their alerts as if they were fixed. `None` whenever
    /// `inventory` is set.
    pub held_saving: Option<Arc<[SavingImage]>>,
    pub last_success: Option<SystemTime>,
}

impl ZoneState {
    /// The SAVING images that get a series: the inventory's, else the held ones.
    pub fn saving_images(&self) -> &[SavingImage] {
        match (&self.inventory, &self.held_saving) {
            (Some(inventory), _) => &inventory.saving,
            (None, Some(held)) => held,
            (None, None) => &[],
        }
    }
}

/// Everything one cycle learned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub cycle: u64,
    pub completed_at: Option<SystemTime>,
    pub duration: Duration,
    /// Reached the API and the credentials were accepted.
    pub up: bool,
    /// The credential gate at the end of the cycle.
    pub credentials: CredentialState,
    /// Accounts whose credentials are held back on their own after a 401 for them only.
    pub held_accounts: BTreeMap<String, CredentialState>,
    /// Ids the API listed that were never asked for (empty, `.` or `..`), by the step that
    /// listed them.
    pub unusable_ids: BTreeMap<Endpoint, u64>,
    /// `GET /accounts`, when accounts are discovered rather than configured.
    pub accounts_discovery: Option<Outcome>,
    /// `GET .../zone` per account, when zones are discovered.
    pub zones_discovery: BTreeMap<String, Outcome>,
    pub zones: BTreeMap<(String, String), ZoneState>,
    /// What the lifecycle tracker learned in this cycle, and its state for the gauges.
    pub lifecycle: Lifecycle,
}

impl Snapshot {
    /// Accounts in this snapshot.
    pub fn account_count(&self) -> usize {
        let mut ids: Vec<&str> = self.zones.keys().map(|(a, _)| a.as_str()).collect();
        ids.extend(self.zones_discovery.keys().map(String::as_str));
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    fn outcomes(&self) -> impl Iterator<Item = &Outcome> {
        self.accounts_discovery
            .iter()
            .chain(self.zones_discovery.values())
            .chain(self.zones.values().filter_map(|z| z.probe.as_ref()))
    }

    /// Some step got an answer from the API other than a 401, and the credentials are not
    /// held back (a 401 for one account only leaves them valid for the others).
    pub fn reached_api_with_valid_credentials(&self) -> bool {
        self.credentials == CredentialState::Accepted
            && self
                .outcomes()
                .any(|o| o.success || (o.http_status != 0 && o.http_status != 401))
    }

    /// Every failed step, named for people (`accounts`, `ACCOUNT zones`, `ACCOUNT ZONE`),
    /// with its outcome.
    pub fn failing_steps(&self) -> Vec<(String, &Outcome)> {
        let mut failing = Vec::new();
        if let Some(o) = self.accounts_discovery.as_ref().filter(|o| !o.success) {
            failing.push(("accounts".to_string(), o));
        }
        for (account, o) in self.zones_discovery.iter().filter(|(_, o)| !o.success) {
            failing.push((format!("{account} zones"), o));
        }
        for ((account, zone), z) in &self.zones {
            if let Some(p) = z.probe.as_ref().filter(|p| !p.success) {
                failing.push((format!("{account} {zone}"), p));
            }
        }
        failing
    }

    /// Whether every probe and discovery step of the cycle succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.up
            && self.accounts_discovery.as_ref().is_none_or(|o| o.success)
            && self.zones_discovery.values().all(|o| o.success)
            && self
                .zones
                .values()
                .all(|z| z.probe.as_ref().is_none_or(|p| p.success))
    }
}

/// Applies the stale-data rule to a fresh snapshot using the previous one:
/// - a failed probe keeps the zone's last good inventory while it is younger than
///   `keep_for`, and always keeps its last success time;
/// - past `keep_for` the counts go, but the zone's SAVING images are held until the zone is
///   read again or a successful discovery no longer lists it (unknown is not resolved);
/// - a zone that was not probed because discovery failed (for its account, or for all
///   accounts) is carried likewise, without probe results.
pub fn carry_over(
    previous: &Snapshot,
    current: &mut Snapshot,
    now: SystemTime,
    keep_for: Duration,
) {
    let carried = |before: &ZoneState| -> (Option<Arc<Inventory>>, Option<Arc<[SavingImage]>>) {
        let fresh_enough = before
            .last_success
            .and_then(|at| now.duration_since(at).ok())
            .is_some_and(|age| age <= keep_for);
        if fresh_enough && before.inventory.is_some() {
            return (before.inventory.clone(), None);
        }
        let held = before.held_saving.clone().or_else(|| {
            before
                .inventory
                .as_ref()
                .filter(|inventory| !inventory.saving.is_empty())
                .map(|inventory| Arc::from(inventory.saving.as_slice()))
        });
        (None, held)
    };
    for (key, zone) in current.zones.iter_mut() {
        let Some(before) = previous.zones.get(key) else {
            continue;
        };
        if zone.probe.as_ref().is_some_and(|p| p.success) {
            continue;
        }
        if zone.last_success.is_none() {
            zone.last_success = before.last_success;
        }
        if zone.inventory.is_none() {
            (zone.inventory, zone.held_saving) = carried(before);
        }
    }
    let accounts_failed = current
        .accounts_discovery
        .as_ref()
        .is_some_and(|o| !o.success);
    for (key, before) in &previous.zones {
        if current.zones.contains_key(key) {
            continue;
        }
        let zones_failed = current
            .zones_discovery
            .get(&key.0)
            .is_some_and(|o| !o.success);
        if accounts_failed || zones_failed {
            let (inventory, held_saving) = carried(before);
            current.zones.insert(
                key.clone(),
                ZoneState {
                    probe: None,
                    inventory,
                    held_saving,
                    last_success: before.last_success,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image<'a>(id: &'a str, status: Option<&'a str>, created: Option<&'a str>) -> ImageEntry<'a> {
        ImageEntry {
            id: Some(Cow::Borrowed(id)),
            name: Some(Cow::Borrowed(id)),
            status: status.map(Cow::Borrowed),
            created: created.map(Cow::Borrowed),
        }
    }

    #[test]
    fn counts_every_documented_combination_with_zeros() {
        let mut inv = Inventory::default();
        inv.record(ImageType::Base, &image("1", Some("ACTIVE"), None));
        inv.record(
            ImageType::Server,
            &image("2", Some("SAVING"), Some("2011-09-30T02:38:57")),
        );
        let rows = inv.count_rows();
        assert_eq!(rows.len(), 6);
        assert!(rows.contains(&(ImageType::Base, "ACTIVE", 1)));
        assert!(rows.contains(&(ImageType::Server, "SAVING", 1)));
        assert!(rows.contains(&(ImageType::Server, "DELETED", 0)));
        assert_eq!(inv.oldest_saving(ImageType::Server), Some(1_317_350_337.0));
        assert_eq!(inv.oldest_saving(ImageType::Base), None);
    }

    #[test]
    fn unknown_statuses_are_sanitised_and_bounded() {
        assert_eq!(status_label(Some("in-progress\n<b>")), "IN_PROGRESS__B_");
        assert_eq!(status_label(None), "UNKNOWN");
        assert_eq!(status_label(Some("  ")), "UNKNOWN");
        let mut inv = Inventory::default();
        for i in 0..20 {
            let status = format!("WEIRD{i}");
            inv.record(ImageType::Base, &image("x", Some(&status), None));
        }
        let distinct: Vec<_> = inv.counts.iter().map(|(_, s, _)| s.clone()).collect();
        assert_eq!(distinct.len(), MAX_UNKNOWN_STATUSES + 1);
        assert_eq!(inv.count(ImageType::Base, "OTHER"), 12);
    }

    #[test]
    fn images_with_bad_timestamps_are_counted_but_have_no_age() {
        let mut inv = Inventory::default();
        inv.record(
            ImageType::Base,
            &image("1", Some("SAVING"), Some("last tuesday")),
        );
        assert_eq!(inv.problems[&ImageProblem::BadCreated], 1);
        assert_eq!(inv.saving[0].created, None);
        assert_eq!(inv.oldest_saving(ImageType::Base), None);
        assert_eq!(inv.total(), 1);
    }

    /// The counting rule written the plain way (an owned key per image, the cap checked on
    /// every image), which the allocation-free `record` must match.
    fn reference_counts(
        images: &[(ImageType, Option<String>)],
    ) -> BTreeMap<(ImageType, String), u64> {
        let mut counts: BTreeMap<(ImageType, String), u64> = BTreeMap::new();
        for (image_type, status) in images {
            let mut status = status_label(status.as_deref()).into_owned();
            let unknown_seen = counts
                .keys()
                .filter(|(_, s)| !KNOWN_STATUSES.contains(&s.as_str()))
                .map(|(_, s)| s.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            if !KNOWN_STATUSES.contains(&status.as_str())
                && !counts.keys().any(|(_, s)| *s == status)
                && unknown_seen >= MAX_UNKNOWN_STATUSES
            {
                status = "OTHER".into();
            }
            *counts.entry((*image_type, status)).or_default() += 1;
        }
        counts
    }

    proptest::proptest! {
        #[test]
        fn record_counts_like_the_plain_rule(
            images in proptest::collection::vec(
                (
                    proptest::bool::ANY,
                    proptest::option::of(proptest::sample::select(vec![
                        "ACTIVE", "SAVING", "DELETED", " ACTIVE ", "", "active", "queued",
                        "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "OTHER", "UNKNOWN",
                    ])),
                ),
                0..60,
            )
        ) {
            let images: Vec<(ImageType, Option<String>)> = images
                .into_iter()
                .map(|(base, s)| {
                    let t = if base { ImageType::Base } else { ImageType::Server };
                    (t, s.map(String::from))
                })
                .collect();
            let mut inv = Inventory::default();
            for (t, status) in &images {
                inv.record(*t, &ImageEntry {
                    status: status.as_deref().map(Cow::Borrowed),
                    ..Default::default()
                });
            }
            // The same counts in the same (sorted) order.
            let counted: Vec<((ImageType, String), u64)> = inv
                .counts
                .iter()
                .map(|(t, s, n)| ((*t, s.to_string()), *n))
                .collect();
            let reference: Vec<_> = reference_counts(&images).into_iter().collect();
            proptest::prop_assert_eq!(counted, reference);
        }
    }

    #[test]
    fn long_values_are_cut_with_a_hash_that_keeps_them_apart() {
        let long = "é".repeat(200);
        assert_eq!(bounded(&long).chars().count(), MAX_LABEL_LEN);
        assert_eq!(bounded("short"), "short");
        let exactly = "x".repeat(MAX_LABEL_LEN);
        assert_eq!(bounded(&exactly), exactly, "128 characters fit as they are");
        let (a, b) = (
            format!("{}a", "x".repeat(200)),
            format!("{}b", "x".repeat(200)),
        );
        assert_ne!(bounded(&a), bounded(&b));
        assert_eq!(bounded(&a), bounded(&a.clone()));
        assert_eq!(bounded(&a).chars().count(), MAX_LABEL_LEN);
        assert!(bounded(&a).starts_with(&"x".repeat(111)));
        // FNV-1a 64 is fixed by its definition, so every replica and version agrees on it.
        assert_eq!(
            bounded(&"y".repeat(129)),
            format!("{}~d65dbc52e360ccd4", "y".repeat(111))
        );
    }

    fn ok(at: SystemTime) -> ZoneState {
        ZoneState {
            probe: Some(Outcome {
                success: true,
                http_status: 200,
                error_kind: None,
                detail: None,
                duration: Duration::ZERO,
            }),
            inventory: Some(Arc::new(Inventory {
                problems: BTreeMap::from([(ImageProblem::BadCreated, 42)]),
                saving: vec![SavingImage {
                    image_type: ImageType::Server,
                    id: "123".into(),
                    name: "web-snapshot".into(),
                    created: Some(1_000.0),
                }],
                ..Default::default()
            })),
            held_saving: None,
            last_success: Some(at),
        }
    }

    fn failed() -> ZoneState {
        ZoneState {
            probe: Some(Outcome {
                success: false,
                http_status: 500,
                error_kind: Some(ErrorKind::HttpStatus),
                detail: None,
                duration: Duration::ZERO,
            }),
            inventory: None,
            held_saving: None,
            last_success: None,
        }
    }

    fn key() -> (String, String) {
        ("a".into(), "z".into())
    }

    #[test]
    fn a_failed_probe_keeps_last_good_images_within_the_bound_then_drops_them() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut previous = Snapshot::default();
        previous.zones.insert(key(), ok(t0));
        let mut current = Snapshot::default();
        current.zones.insert(key(), failed());
        carry_over(
            &previous,
            &mut current,
            t0 + Duration::from_secs(180),
            Duration::from_secs(180),
        );
        let zone = &current.zones[&key()];
        assert_eq!(
            zone.inventory.as_ref().unwrap().problems[&ImageProblem::BadCreated],
            42
        );
        assert_eq!(zone.last_success, Some(t0));
        assert!(!zone.probe.as_ref().unwrap().success);

        let previous = current.clone();
        let mut later = Snapshot::default();
        later.zones.insert(key(), failed());
        carry_over(
            &previous,
            &mut later,
            t0 + Duration::from_secs(181),
            Duration::from_secs(180),
        );
        assert!(later.zones[&key()].inventory.is_none());
        assert_eq!(later.zones[&key()].last_success, Some(t0));
    }

    fn saving_ids(zone: &ZoneState) -> Vec<&str> {
        zone.saving_images().iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn saving_images_of_a_failing_zone_are_held_past_the_bound_until_it_is_read_again() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let bound = Duration::from_secs(180);
        let mut previous = Snapshot::default();
        previous.zones.insert(key(), ok(t0));
        // Two hours of failed probes, a cycle a minute.
        for minute in 1..=120u64 {
            let mut current = Snapshot::default();
            current.zones.insert(key(), failed());
            carry_over(
                &previous,
                &mut current,
                t0 + Duration::from_secs(60 * minute),
                bound,
            );
            let zone = &current.zones[&key()];
            assert_eq!(saving_ids(zone), ["123"], "minute {minute}");
            assert_eq!(zone.inventory.is_some(), minute <= 3, "minute {minute}");
            assert_eq!(zone.held_saving.is_some(), minute > 3, "minute {minute}");
            previous = current;
        }
        // Read again: the image is no longer SAVING, so nothing is held.
        let mut read = Snapshot::default();
        let mut fresh = ok(t0 + Duration::from_secs(7_260));
        fresh.inventory = Some(Arc::new(Inventory::default()));
        read.zones.insert(key(), fresh);
        carry_over(&previous, &mut read, t0 + Duration::from_secs(7_260), bound);
        let zone = &read.zones[&key()];
        assert!(zone.held_saving.is_none() && saving_ids(zone).is_empty());
    }

    #[test]
    fn a_zone_without_saving_images_holds_nothing_past_the_bound() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut good = ok(t0);
        good.inventory = Some(Arc::new(Inventory::default()));
        let mut previous = Snapshot::default();
        previous.zones.insert(key(), good);
        let mut current = Snapshot::default();
        current.zones.insert(key(), failed());
        carry_over(
            &previous,
            &mut current,
            t0 + Duration::from_secs(600),
            Duration::from_secs(180),
        );
        let zone = &current.zones[&key()];
        assert!(zone.inventory.is_none() && zone.held_saving.is_none());
    }

    #[test]
    fn zones_missing_because_discovery_failed_are_carried_without_probe() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut previous = Snapshot::default();
        previous.zones.insert(key(), ok(t0));
        let mut current = Snapshot::default();
        current.zones_discovery.insert(
            "a".into(),
            Outcome {
                success: false,
                http_status: 503,
                error_kind: Some(ErrorKind::HttpStatus),
                detail: None,
                duration: Duration::ZERO,
            },
        );
        carry_over(
            &previous,
            &mut current,
            t0 + Duration::from_secs(60),
            Duration::from_secs(180),
        );
        let zone = &current.zones[&key()];
        assert!(zone.probe.is_none() && zone.inventory.is_some());

        // Past the bound the counts go and the SAVING images stay.
        let previous = current;
        let mut later = Snapshot {
            zones_discovery: previous.zones_discovery.clone(),
            ..Snapshot::default()
        };
        carry_over(
            &previous,
            &mut later,
            t0 + Duration::from_secs(3_600),
            Duration::from_secs(180),
        );
        let zone = &later.zones[&key()];
        assert!(zone.probe.is_none() && zone.inventory.is_none());
        assert_eq!(saving_ids(zone), ["123"]);
    }

    #[test]
    fn zones_gone_from_a_successful_discovery_are_dropped() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut previous = Snapshot::default();
        previous.zones.insert(key(), ok(t0));
        let mut current = Snapshot::default();
        carry_over(&previous, &mut current, t0, Duration::from_secs(180));
        assert!(current.zones.is_empty());
    }
}
