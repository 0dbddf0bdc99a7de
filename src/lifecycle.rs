//! Images followed across cycles by account and id: status changes, saves, deletions, disappearances.
//!
//! [`Tracker`] keeps a few bytes per image ([`TRACKED_IMAGE_BYTES`] of state plus the hash
//! table's share) and turns each cycle's listings into a [`Lifecycle`]: what changed since
//! the previous successful read of each image, and how long the images still DELETED have
//! been seen so. The rules:
//! - The first successful read of an account's zone is its baseline: its images are
//!   tracked but counted as neither appeared nor changed. An account discovered later sets
//!   its own baseline the same way (the exporter cannot tell its old images from new ones).
//! - A zone whose probe failed changes nothing: its images keep their state, none is
//!   counted as changed or gone. An image listed in another zone meanwhile is the same
//!   image (it moved, or is offered in both).
//! - An image disappears when a cycle lists it in none of its account's zones and every
//!   zone it was last seen in was read successfully (or is no longer listed by a
//!   successful zone discovery). An account whose zones could not be listed is left as is.
//! - At most [`MAX_TRACKED_IMAGES`] images are tracked; the sightings of others are
//!   counted in [`Lifecycle::dropped`].
//! - An account not seen for longer than the forget period is forgotten, as its series
//!   are; if it comes back it sets a new baseline. Nothing is persisted: a restart is a new
//!   baseline for every account.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::api::ImageType;
use crate::timestamp::unix_seconds;

/// Most images tracked at once, every account together: about 40 MB of state at the
/// measured cost per image (BENCHMARKS.md); a fleet larger than that is sharded anyway.
pub const MAX_TRACKED_IMAGES: usize = 1_000_000;

/// Zones told apart per account; the zones beyond share the last slot, so an image there
/// is only ever treated as if all of them had failed together (kept, never counted gone).
const ZONE_SLOTS: usize = 32;

/// Size of one image's state in the tracker, without its key (an 8-byte hash of the id)
/// and the hash table's overhead.
pub const TRACKED_IMAGE_BYTES: usize = std::mem::size_of::<ImageState>();

/// An image status as the lifecycle metrics label it: the documented ones, and `OTHER`
/// for anything else (undocumented or missing), so the labels stay a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Active,
    Saving,
    Deleted,
    Other,
}

impl Status {
    /// The status of an image as the API wrote it.
    pub fn of(status: Option<&str>) -> Status {
        match status.map(str::trim) {
            Some("ACTIVE") => Status::Active,
            Some("SAVING") => Status::Saving,
            Some("DELETED") => Status::Deleted,
            _ => Status::Other,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Saving => "SAVING",
            Status::Deleted => "DELETED",
            Status::Other => "OTHER",
        }
    }
}

/// One image as one list showed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sighting {
    /// FNV-1a 64 of the image id: two ids of one account share a hash with a chance of
    /// about n²/2⁶⁵ for n images, and the state needs no copy of the id.
    pub id: u64,
    pub image_type: ImageType,
    pub status: Status,
    /// Unix seconds; 0 when unknown.
    pub created: u32,
}

impl Sighting {
    /// The hash an image id is tracked by.
    pub fn id_hash(id: &str) -> u64 {
        use std::hash::Hasher;
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(id.as_bytes());
        hasher.finish()
    }
}

/// What a cycle read of one zone of an account: its sightings, or `None` when the probe failed.
pub type ZoneRead<'a> = (&'a str, Option<&'a [Sighting]>);

/// What the tracker learned in one cycle, and the state the gauges show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifecycle {
    /// Status changes between two successful reads of an image, by account, type, from and to.
    pub transitions: BTreeMap<(String, ImageType, Status, Status), u64>,
    /// Images first seen, by account; every account read in the cycle has an entry, 0 when none.
    pub appeared: BTreeMap<String, u64>,
    /// Images no longer listed, by account; every account read in the cycle has an entry.
    pub disappeared: BTreeMap<String, u64>,
    /// Completed saves (SAVING, then ACTIVE) seen in the cycle: type and seconds from created.
    pub saves: Vec<(ImageType, f64)>,
    /// Sightings of images not tracked because the tracker was full.
    pub dropped: u64,
    /// Images tracked per account at the end of the cycle (each image once).
    pub tracked: BTreeMap<String, u64>,
    /// Per account and zone, by type in [`ImageType::ALL`] order, when the oldest image still
    /// DELETED was first seen so (Unix seconds); only zones that have one.
    pub deleted_since: BTreeMap<(String, String), [Option<u32>; 2]>,
}

/// One image between cycles: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct ImageState {
    /// Unix seconds; 0 when unknown.
    created: u32,
    /// When first seen DELETED in its current stretch of DELETED, Unix seconds; 0 when not.
    deleted_since: u32,
    /// Zone slots it was last listed in (or, for zones that failed since, may still be).
    zones: u32,
    status: Status,
    image_type: ImageType,
    /// [`SEEN`] and [`NEW`], cleared at the end of each observation.
    flags: u8,
}

const SEEN: u8 = 1;
const NEW: u8 = 2;

type IdMap = HashMap<u64, ImageState, BuildHasherDefault<fnv::FnvHasher>>;

/// The images of one account.
#[derive(Debug, Default)]
struct AccountImages {
    /// Zone names by slot, shared with every account that has the zone.
    zones: Vec<Arc<str>>,
    /// Slots read successfully at least once: their baseline is set.
    baselined: u32,
    last_seen: u32,
    images: IdMap,
}

impl AccountImages {
    fn slot(&mut self, zone: &str, names: &mut HashSet<Arc<str>>) -> u32 {
        if let Some(at) = self.zones.iter().position(|z| &**z == zone) {
            return 1 << at;
        }
        if self.zones.len() >= ZONE_SLOTS {
            return 1 << (ZONE_SLOTS - 1);
        }
        let name = match names.get(zone) {
            Some(name) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(zone);
                names.insert(name.clone());
                name
            }
        };
        self.zones.push(name);
        1 << (self.zones.len() - 1)
    }
}

/// Every tracked image, by account and id hash; the one owner of the lifecycle rules.
#[derive(Debug)]
pub struct Tracker {
    accounts: HashMap<Arc<str>, AccountImages>,
    /// Zone names, interned: accounts mostly share them.
    zone_names: HashSet<Arc<str>>,
    tracked: usize,
    cap: usize,
    forget_after: Duration,
    cycle: Lifecycle,
}

fn seconds(at: SystemTime) -> u32 {
    unix_seconds(at).clamp(0.0, f64::from(u32::MAX)) as u32
}

impl Tracker {
    /// A tracker of at most `cap` images that forgets accounts unseen for `forget_after`.
    pub fn new(cap: usize, forget_after: Duration) -> Self {
        Tracker {
            accounts: HashMap::new(),
            zone_names: HashSet::new(),
            tracked: 0,
            cap,
            forget_after,
            cycle: Lifecycle::default(),
        }
    }

    /// Images tracked now.
    pub fn len(&self) -> usize {
        self.tracked
    }

    pub fn is_empty(&self) -> bool {
        self.tracked == 0
    }

    /// Takes in one account's zones as a cycle read them at `now`. Call once per account
    /// and cycle, and only when its zones are known (configured, or listed by a
    /// successful discovery); an account whose zone list failed is left alone.
    pub fn observe(&mut self, account: &str, zones: &[ZoneRead<'_>], now: SystemTime) {
        let now = seconds(now);
        if !self.accounts.contains_key(account) {
            self.accounts
                .insert(Arc::from(account), AccountImages::default());
        }
        let Some(account_images) = self.accounts.get_mut(account) else {
            return;
        };
        account_images.last_seen = now;
        let mut failed = 0u32;
        let mut read = 0u32;
        let slots: Vec<u32> = zones
            .iter()
            .map(|(zone, sightings)| {
                let bit = account_images.slot(zone, &mut self.zone_names);
                if sightings.is_some() {
                    read |= bit;
                } else {
                    failed |= bit;
                }
                bit
            })
            .collect();
        // Zones beyond the slots share the last one: if any of them failed, it counts as failed.
        read &= !failed;
        let baselined = account_images.baselined;
        account_images.baselined |= read;
        let mut appeared = 0;
        let mut disappeared = 0;
        for ((_, sightings), bit) in zones.iter().zip(slots) {
            let Some(sightings) = sightings.filter(|_| bit & read != 0) else {
                continue;
            };
            for sighting in sightings {
                if let Some(state) = account_images.images.get_mut(&sighting.id) {
                    if state.flags & SEEN != 0 {
                        // The same image in another zone (or the other type's list) of this cycle.
                        state.zones |= bit;
                        continue;
                    }
                    state.flags |= SEEN;
                    state.zones = bit | (state.zones & failed);
                    let was = state.status;
                    if sighting.created != 0 {
                        state.created = sighting.created;
                    }
                    if was != sighting.status {
                        *self
                            .cycle
                            .transitions
                            .entry((
                                account.to_string(),
                                sighting.image_type,
                                was,
                                sighting.status,
                            ))
                            .or_default() += 1;
                        if was == Status::Saving
                            && sighting.status == Status::Active
                            && state.created != 0
                        {
                            self.cycle.saves.push((
                                sighting.image_type,
                                f64::from(now.saturating_sub(state.created)),
                            ));
                        }
                        state.deleted_since = if sighting.status == Status::Deleted {
                            now
                        } else {
                            0
                        };
                    }
                    state.status = sighting.status;
                    state.image_type = sighting.image_type;
                } else if self.tracked >= self.cap {
                    self.cycle.dropped += 1;
                } else {
                    self.tracked += 1;
                    account_images.images.insert(
                        sighting.id,
                        ImageState {
                            created: sighting.created,
                            deleted_since: if sighting.status == Status::Deleted {
                                now
                            } else {
                                0
                            },
                            zones: bit,
                            status: sighting.status,
                            image_type: sighting.image_type,
                            flags: SEEN | NEW,
                        },
                    );
                }
            }
        }
        account_images.images.retain(|_, state| {
            let flags = std::mem::take(&mut state.flags);
            if flags & SEEN == 0 {
                // Kept while a zone it may still be in could not be read.
                let gone = state.zones & failed == 0;
                disappeared += u64::from(gone);
                return !gone;
            }
            // New in a zone whose baseline was set before: it appeared. New only in zones
            // read for the first time: part of their baseline.
            if flags & NEW != 0 && state.zones & baselined != 0 {
                appeared += 1;
            }
            true
        });
        self.tracked -= disappeared as usize;
        *self.cycle.appeared.entry(account.to_string()).or_default() += appeared;
        *self
            .cycle
            .disappeared
            .entry(account.to_string())
            .or_default() += disappeared;
    }

    /// Marks accounts as still present at `now` without reading them (a failed zone list,
    /// or zones carried from an earlier cycle), so they are not forgotten meanwhile.
    pub fn keep<'a>(&mut self, accounts: impl IntoIterator<Item = &'a str>, now: SystemTime) {
        let now = seconds(now);
        for account in accounts {
            if let Some(a) = self.accounts.get_mut(account) {
                a.last_seen = now;
            }
        }
    }

    /// Ends the cycle at `now`: forgets accounts unseen for longer than the forget period
    /// and hands over what the cycle learned with the state the gauges show.
    pub fn finish_cycle(&mut self, now: SystemTime) -> Lifecycle {
        let now = seconds(now);
        let forget_after = self.forget_after.as_secs().min(u64::from(u32::MAX)) as u32;
        let mut forgotten = 0;
        self.accounts.retain(|_, a| {
            let keep = now.saturating_sub(a.last_seen) <= forget_after;
            if !keep {
                forgotten += a.images.len();
            }
            keep
        });
        self.tracked -= forgotten;
        // A zone name no account has any more.
        self.zone_names.retain(|name| Arc::strong_count(name) > 1);
        let mut cycle = std::mem::take(&mut self.cycle);
        for (account, images) in &self.accounts {
            cycle
                .tracked
                .insert(account.to_string(), images.images.len() as u64);
            for state in images.images.values() {
                if state.status != Status::Deleted {
                    continue;
                }
                let type_index = usize::from(state.image_type == ImageType::Server);
                for (slot, zone) in images.zones.iter().enumerate() {
                    if state.zones & (1 << slot) == 0 {
                        continue;
                    }
                    let oldest = &mut cycle
                        .deleted_since
                        .entry((account.to_string(), zone.to_string()))
                        .or_default()[type_index];
                    *oldest =
                        Some(oldest.map_or(state.deleted_since, |o| o.min(state.deleted_since)));
                }
            }
        }
        cycle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + seconds)
    }

    fn seen(id: &str, status: &str) -> Sighting {
        Sighting {
            id: Sighting::id_hash(id),
            image_type: ImageType::Server,
            status: Status::of(Some(status)),
            created: (T0 - 60) as u32,
        }
    }

    fn tracker() -> Tracker {
        Tracker::new(100, Duration::from_secs(600))
    }

    fn transitions(l: &Lifecycle) -> Vec<(&str, &str, &str, u64)> {
        l.transitions
            .iter()
            .map(|((a, _, from, to), n)| (a.as_str(), from.as_str(), to.as_str(), *n))
            .collect()
    }

    #[test]
    fn the_state_per_image_is_sixteen_bytes() {
        assert_eq!(TRACKED_IMAGE_BYTES, 16);
    }

    #[test]
    fn the_first_cycle_is_a_baseline() {
        let mut t = tracker();
        let a = [seen("1", "SAVING"), seen("2", "DELETED")];
        t.observe("acme", &[("Z1", Some(&a))], at(0));
        let l = t.finish_cycle(at(0));
        assert!(l.transitions.is_empty());
        assert_eq!(l.appeared["acme"], 0);
        assert_eq!(l.disappeared["acme"], 0);
        assert_eq!(l.tracked["acme"], 2);
        assert_eq!(
            l.deleted_since[&("acme".into(), "Z1".into())],
            [None, Some((T0) as u32)]
        );
    }

    #[test]
    fn changes_between_reads_are_counted_and_a_save_timed() {
        let mut t = tracker();
        t.observe(
            "acme",
            &[("Z1", Some(&[seen("1", "SAVING"), seen("2", "ACTIVE")]))],
            at(0),
        );
        t.finish_cycle(at(0));
        t.observe(
            "acme",
            &[("Z1", Some(&[seen("1", "ACTIVE"), seen("3", "SAVING")]))],
            at(60),
        );
        let l = t.finish_cycle(at(60));
        assert_eq!(transitions(&l), [("acme", "SAVING", "ACTIVE", 1)]);
        assert_eq!(l.saves, [(ImageType::Server, 120.0)]);
        assert_eq!((l.appeared["acme"], l.disappeared["acme"]), (1, 1));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_failed_zone_changes_nothing_and_a_move_is_one_image() {
        let mut t = tracker();
        t.observe(
            "acme",
            &[
                ("Z1", Some(&[seen("1", "SAVING"), seen("2", "ACTIVE")])),
                ("Z2", Some(&[])),
            ],
            at(0),
        );
        t.finish_cycle(at(0));
        // Z1 fails; image 1 shows up in Z2, ACTIVE; image 2 is not listed anywhere.
        t.observe(
            "acme",
            &[("Z1", None), ("Z2", Some(&[seen("1", "ACTIVE")]))],
            at(60),
        );
        let l = t.finish_cycle(at(60));
        assert_eq!(transitions(&l), [("acme", "SAVING", "ACTIVE", 1)]);
        assert_eq!((l.appeared["acme"], l.disappeared["acme"]), (0, 0));
        assert_eq!(t.len(), 2);
        // Z1 back: image 2 is gone from it, image 1 is in Z2 only.
        t.observe(
            "acme",
            &[("Z1", Some(&[])), ("Z2", Some(&[seen("1", "ACTIVE")]))],
            at(120),
        );
        let l = t.finish_cycle(at(120));
        assert!(l.transitions.is_empty());
        assert_eq!((l.appeared["acme"], l.disappeared["acme"]), (0, 1));
    }

    #[test]
    fn a_zone_read_for_the_first_time_is_its_own_baseline() {
        let mut t = tracker();
        t.observe(
            "acme",
            &[("Z1", Some(&[seen("1", "ACTIVE")])), ("Z2", None)],
            at(0),
        );
        t.finish_cycle(at(0));
        t.observe(
            "acme",
            &[
                ("Z1", Some(&[seen("1", "ACTIVE"), seen("3", "ACTIVE")])),
                ("Z2", Some(&[seen("2", "ACTIVE")])),
            ],
            at(60),
        );
        let l = t.finish_cycle(at(60));
        assert_eq!(l.appeared["acme"], 1, "3 appeared; 2 is Z2's baseline");
    }

    #[test]
    fn deletion_age_counts_from_the_first_sight_of_deleted() {
        let mut t = tracker();
        t.observe("acme", &[("Z1", Some(&[seen("1", "ACTIVE")]))], at(0));
        t.finish_cycle(at(0));
        t.observe("acme", &[("Z1", Some(&[seen("1", "DELETED")]))], at(60));
        t.finish_cycle(at(60));
        t.observe("acme", &[("Z1", Some(&[seen("1", "DELETED")]))], at(120));
        let l = t.finish_cycle(at(120));
        assert_eq!(
            l.deleted_since[&("acme".into(), "Z1".into())],
            [None, Some((T0 + 60) as u32)]
        );
        t.observe("acme", &[("Z1", Some(&[]))], at(180));
        let l = t.finish_cycle(at(180));
        assert!(l.deleted_since.is_empty());
        assert_eq!(l.disappeared["acme"], 1);
    }

    #[test]
    fn the_cap_drops_and_counts_new_images_and_forgotten_accounts_free_room() {
        let mut t = Tracker::new(2, Duration::from_secs(600));
        let images = [
            seen("1", "ACTIVE"),
            seen("2", "ACTIVE"),
            seen("3", "ACTIVE"),
        ];
        t.observe("acme", &[("Z1", Some(&images))], at(0));
        let l = t.finish_cycle(at(0));
        assert_eq!((l.dropped, t.len()), (1, 2));
        t.keep(["acme"], at(300));
        t.finish_cycle(at(300));
        assert_eq!(t.len(), 2);
        let l = t.finish_cycle(at(901));
        assert!(t.is_empty() && l.tracked.is_empty());
    }

    #[test]
    fn undocumented_and_missing_statuses_are_other() {
        assert_eq!(Status::of(Some(" queued ")), Status::Other);
        assert_eq!(Status::of(None), Status::Other);
        assert_eq!(Status::of(Some(" SAVING")), Status::Saving);
    }
}
