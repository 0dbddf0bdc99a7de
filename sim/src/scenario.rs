//! The scenario: users, accounts, images and behaviour knobs that drive the simulator.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario is not valid JSON for the format: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("scenario is inconsistent: {0}")]
    Invalid(String),
    /// A run-time change named an image the scenario does not have.
    #[error("no image {0} in the scenario")]
    UnknownImage(String),
}

/// Everything the simulator serves. Files use this JSON shape; tests use the builder
/// methods. Unknown keys are rejected so that a typo in a scenario cannot go unnoticed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub accounts: Vec<Account>,
    #[serde(default)]
    pub images: Vec<Image>,
    #[serde(default)]
    pub latency: Latency,
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Requests a second the API answers; more get a 429. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// A generated fleet added to the listed accounts and images when loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<FleetSpec>,
}

/// A user of the API and the accounts it may read. The first readable account is the
/// one `GET /images/detail` (the account-less form) acts on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub password: String,
    /// Account ids this user may read; `["*"]` means every account.
    pub accounts: Vec<String>,
}

/// An account, as `GET /accounts` lists it, with its zones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub id: String,
    #[serde(default = "default_account_status")]
    pub status: String,
    #[serde(default = "default_created")]
    pub created: String,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default)]
    pub zones: Vec<Zone>,
}

fn default_account_status() -> String {
    "open".into()
}
fn default_created() -> String {
    "2012-01-01T00:00:00".into()
}
fn default_currency() -> String {
    "USD".into()
}

/// A zone of an account; a bare string in a file stands for the zone id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "ZoneSpec")]
pub struct Zone {
    pub zone: String,
    pub location: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ZoneSpec {
    Id(String),
    Full { zone: String, location: String },
}

impl From<ZoneSpec> for Zone {
    fn from(spec: ZoneSpec) -> Self {
        match spec {
            ZoneSpec::Id(zone) => Zone::new(&zone),
            ZoneSpec::Full { zone, location } => Zone { zone, location },
        }
    }
}

impl Zone {
    pub fn new(zone: &str) -> Self {
        Zone {
            zone: zone.to_string(),
            location: zone.to_ascii_lowercase().replace('-', "."),
        }
    }
}

/// An image. `image_type` is never sent (the API has no such field); it only decides
/// which `type` filter finds the image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub account: String,
    pub status: String,
    #[serde(rename = "type")]
    pub image_type: String,
    /// A fixed creation time in the API's format; ignored when `age` is set.
    #[serde(default = "default_created")]
    pub created: String,
    /// Without `changes`: age at the moment of each request, so "stuck in SAVING for 3
    /// hours" stays true however long the simulator runs. With `changes`: age when the
    /// scenario was loaded, so the created time is fixed at load time less `age`, as an image
    /// being saved keeps its creation time while it turns ACTIVE.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub age: Option<Duration>,
    #[serde(default)]
    pub zones: Vec<String>,
    /// The older shape: no `zones` key in answers (the image still matches zone filters).
    #[serde(default, skip_serializing_if = "is_false")]
    pub legacy: bool,
    /// Extra fields merged into every answer, to prove clients ignore unknown fields.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// What happens to the image over time; sorted by `after` (stably) when loaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ImageChange>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A scheduled change of an image: once `after` has passed since the scenario was loaded
/// (simulator start, `set_scenario` or the admin PUT), answers show the image with it
/// applied, on top of every earlier change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageChange {
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// The new status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The new zones, replacing the old ones; each must be a zone of the image's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
    /// The image is gone: no listing shows it and asking for it by id is a 404. Final: no
    /// change may follow it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub vanish: bool,
}

impl ImageChange {
    /// The status becomes `status` once `after` has passed.
    pub fn status(after: Duration, status: &str) -> Self {
        ImageChange {
            after,
            status: Some(status.into()),
            zones: None,
            vanish: false,
        }
    }

    /// The image moves to `zones` once `after` has passed.
    pub fn zones(after: Duration, zones: &[&str]) -> Self {
        ImageChange {
            after,
            status: None,
            zones: Some(zones.iter().map(|z| z.to_string()).collect()),
            vanish: false,
        }
    }

    /// The image is gone once `after` has passed.
    pub fn vanish(after: Duration) -> Self {
        ImageChange {
            after,
            status: None,
            zones: None,
            vanish: true,
        }
    }
}

/// An image as one answer shows it: its changes so far applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ImageState<'a> {
    pub(crate) status: &'a str,
    pub(crate) zones: &'a [String],
}

impl Image {
    /// The image `elapsed` after the scenario was loaded, or `None` once it has vanished.
    /// Relies on `changes` being sorted by `after`, as loading leaves them.
    pub(crate) fn state_at(&self, elapsed: Duration) -> Option<ImageState<'_>> {
        let mut state = ImageState {
            status: &self.status,
            zones: &self.zones,
        };
        for change in self.changes.iter().take_while(|c| c.after <= elapsed) {
            if change.vanish {
                return None;
            }
            if let Some(status) = &change.status {
                state.status = status;
            }
            if let Some(zones) = &change.zones {
                state.zones = zones;
            }
        }
        Some(state)
    }

    /// The creation time an answer at `now` shows when it follows `age`; `None` when it is
    /// the fixed `created`. A scheduled image counts from `loaded` so that it keeps one
    /// creation time across its changes.
    pub(crate) fn created_at(&self, loaded: SystemTime, now: SystemTime) -> Option<SystemTime> {
        let age = self.age?;
        let base = if self.changes.is_empty() { now } else { loaded };
        Some(base.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH))
    }

    /// Adds a scheduled change, for `image_with`'s refinement.
    pub fn change(mut self, change: ImageChange) -> Self {
        self.changes.push(change);
        self
    }
}

/// Checks one image's schedule, sorted by `after`, against the zones of its account: each
/// change changes something, moves the image only to zones its account has, and none
/// follows a vanish, which would never be seen.
pub(crate) fn check_changes(
    image: &Image,
    changes: &[ImageChange],
    account_zones: &[Zone],
) -> Result<(), ScenarioError> {
    let mut vanished = false;
    for change in changes {
        let problem = if vanished {
            Some("comes after the image vanished".to_string())
        } else if change.status.is_none() && change.zones.is_none() && !change.vanish {
            Some("sets none of status, zones or vanish".to_string())
        } else if change.status.as_deref() == Some("") {
            Some("sets an empty status".to_string())
        } else {
            change.zones.iter().flatten().find_map(|zone| {
                (!account_zones.iter().any(|z| &z.zone == zone)).then(|| {
                    format!(
                        "moves it to {zone}, not a zone of account {}",
                        image.account
                    )
                })
            })
        };
        if let Some(problem) = problem {
            return Err(ScenarioError::Invalid(format!(
                "the change of image {} after {:?} {problem}",
                image.id, change.after
            )));
        }
        vanished |= change.vanish;
    }
    Ok(())
}

/// The API's request quota, as a gateway in front of it enforces one: over any rolling
/// second it answers `requests_per_second` requests and sends 429 with `Retry-After` to
/// the rest, which do not count against the quota.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_second: u32,
    /// Whole seconds, as the `Retry-After` of each 429.
    #[serde(default = "one_second")]
    pub retry_after: u64,
}

fn one_second() -> u64 {
    1
}

/// Added to every request: `fixed` plus a uniform draw from `0..=jitter`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    #[serde(default, with = "humantime_serde")]
    pub fixed: Duration,
    #[serde(default, with = "humantime_serde")]
    pub jitter: Duration,
}

/// A fault injected on requests whose path matches `path` (`*` matches any run of
/// characters, `/` included) and whose query contains `query`, at most `times` times.
/// (Not `deny_unknown_fields`: serde cannot combine it with the flattened action.)
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    #[serde(flatten)]
    pub action: FaultAction,
}

/// What a fault does instead of (or on top of) the normal answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Any status with an optional body (default: the API's error object for it).
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<String>,
    },
    /// Waits, then answers normally (longer than the client's timeout to force one).
    Delay {
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// A 200 whose JSON stops in the middle.
    MalformedJson,
    /// A 200 that sends half its body, then closes although Content-Length promised more.
    Truncated,
    /// A 200 with an HTML page, as a proxy or login wall would send.
    Html,
    /// A 200 whose body is `bytes` long: valid-looking JSON that never ends in time.
    Oversized { bytes: u64 },
    /// A 200 with `Content-Encoding: gzip` whose body decodes to `decoded_bytes` of
    /// valid-looking JSON while sending about a thousandth of that: a zip bomb.
    GzipBomb { decoded_bytes: u64 },
    /// The normal answer, sent `chunk_bytes` at a time with `interval` between chunks.
    Drip {
        #[serde(with = "humantime_serde")]
        interval: Duration,
        #[serde(default = "default_chunk_bytes")]
        chunk_bytes: usize,
    },
    /// Closes the connection without answering.
    DropConnection,
    /// Resets the connection (TCP RST) without answering.
    ResetConnection,
    /// A redirect (303 unless `status` says 301, 302, 307 or 308) to `location`, e.g. another
    /// host that must never see the credentials.
    Redirect {
        location: String,
        #[serde(default = "default_redirect_status")]
        status: u16,
    },
}

fn default_chunk_bytes() -> usize {
    16
}

fn default_redirect_status() -> u16 {
    303
}

/// A deterministic generated fleet: the same spec gives the same accounts and images.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    pub seed: u64,
    pub accounts: usize,
    pub zones_per_account: usize,
    pub images_per_zone: usize,
    /// Share of images in SAVING (the rest ACTIVE, with a few DELETED).
    #[serde(default = "default_saving_share")]
    pub saving_share: f64,
    /// The user that may read every generated account.
    pub user: String,
    pub password: String,
}

fn default_saving_share() -> f64 {
    0.02
}

impl Scenario {
    /// Reads a scenario file and expands its generated fleet.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Parses a scenario and expands its generated fleet.
    pub fn from_json(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = serde_json::from_str(text)?;
        scenario.expanded()
    }

    /// The scenario with its `generate` section turned into accounts, images and a user,
    /// its image changes sorted by `after`, checked for consistency.
    pub fn expanded(mut self) -> Result<Self, ScenarioError> {
        if let Some(spec) = self.generate.take() {
            let fleet = generate_fleet(&spec);
            self.users.extend(fleet.users);
            self.accounts.extend(fleet.accounts);
            self.images.extend(fleet.images);
        }
        self.sort_changes();
        self.validate()?;
        Ok(self)
    }

    /// Puts every image's changes in the order they take effect; equal times keep the order
    /// they were given in.
    pub(crate) fn sort_changes(&mut self) {
        for image in &mut self.images {
            image.changes.sort_by_key(|c| c.after);
        }
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let mut accounts = BTreeMap::new();
        for account in &self.accounts {
            if accounts.insert(account.id.as_str(), account).is_some() {
                return Err(ScenarioError::Invalid(format!(
                    "account {} is listed twice",
                    account.id
                )));
            }
        }
        for image in &self.images {
            let Some(account) = accounts.get(image.account.as_str()) else {
                return Err(ScenarioError::Invalid(format!(
                    "image {} belongs to unknown account {}",
                    image.id, image.account
                )));
            };
            check_changes(image, &image.changes, &account.zones)?;
        }
        for fault in &self.faults {
            if let FaultAction::Status { status, .. } = fault.action {
                if !(100..=999).contains(&status) {
                    return Err(ScenarioError::Invalid(format!(
                        "fault on {} has status {status}, not an HTTP status",
                        fault.path
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds a user that may read the given accounts (`"*"` for all).
    pub fn user(mut self, username: &str, password: &str, accounts: &[&str]) -> Self {
        self.users.push(User {
            username: username.into(),
            password: password.into(),
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
        });
        self
    }

    /// Adds an open account with the given zone ids.
    pub fn account(self, id: &str, zones: &[&str]) -> Self {
        self.account_with_status(id, "open", zones)
    }

    /// Adds an account with a status (`pending`, `open`, `suspended`, `closed`).
    pub fn account_with_status(mut self, id: &str, status: &str, zones: &[&str]) -> Self {
        self.accounts.push(Account {
            id: id.into(),
            status: status.into(),
            created: default_created(),
            currency: default_currency(),
            zones: zones.iter().map(|z| Zone::new(z)).collect(),
        });
        self
    }

    /// Adds an image with the default name, creation time and shape.
    pub fn image(
        self,
        account: &str,
        id: &str,
        status: &str,
        image_type: &str,
        zones: &[&str],
    ) -> Self {
        self.image_with(account, id, status, image_type, zones, |i| i)
    }

    /// Adds an image and lets `refine` set its optional parts.
    pub fn image_with(
        mut self,
        account: &str,
        id: &str,
        status: &str,
        image_type: &str,
        zones: &[&str],
        refine: impl FnOnce(Image) -> Image,
    ) -> Self {
        let image = Image {
            id: id.into(),
            name: format!("image-{id}"),
            account: account.into(),
            status: status.into(),
            image_type: image_type.into(),
            created: default_created(),
            age: None,
            zones: zones.iter().map(|z| z.to_string()).collect(),
            legacy: false,
            extra: serde_json::Map::new(),
            changes: Vec::new(),
        };
        self.images.push(refine(image));
        self
    }

    /// Sets the latency knob.
    pub fn latency(mut self, fixed: Duration, jitter: Duration) -> Self {
        self.latency = Latency { fixed, jitter };
        self
    }

    /// Sets the rate-limit knob: 429 above `requests_per_second` in any rolling second.
    pub fn rate_limit(mut self, requests_per_second: u32, retry_after: u64) -> Self {
        self.rate_limit = Some(RateLimit {
            requests_per_second,
            retry_after,
        });
        self
    }

    /// Adds a fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// Schedules a change of every image with id `image_id`, counted from load like the
    /// changes in a file. Checked when the scenario is loaded.
    ///
    /// # Panics
    /// If no image with that id has been added yet: a test that names the wrong image
    /// should stop there, not run against an unchanged fleet.
    pub fn change(mut self, image_id: &str, change: ImageChange) -> Self {
        let mut images = self
            .images
            .iter_mut()
            .filter(|i| i.id == image_id)
            .peekable();
        assert!(
            images.peek().is_some(),
            "Scenario::change: no image {image_id} has been added"
        );
        for image in images {
            image.changes.push(change.clone());
        }
        self
    }
}

impl Fault {
    /// A fault on every request whose path matches `path`.
    pub fn on(path: &str, action: FaultAction) -> Self {
        Fault {
            path: path.into(),
            query: None,
            times: None,
            action,
        }
    }

    /// Limits the fault to requests whose query string contains `query`.
    pub fn with_query(mut self, query: &str) -> Self {
        self.query = Some(query.into());
        self
    }

    /// Limits the fault to its first `times` matching requests.
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    /// Whether a request path and query fall under this fault.
    pub fn matches(&self, path: &str, query: &str) -> bool {
        glob_match(&self.path, path) && self.query.as_deref().is_none_or(|q| query.contains(q))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

struct Fleet {
    users: Vec<User>,
    accounts: Vec<Account>,
    images: Vec<Image>,
}

const REGIONS: [&str; 8] = [
    "TAMPA",
    "AUSTIN",
    "CHICAGO",
    "DALLAS",
    "LONDON",
    "AMSTERDAM",
    "TORONTO",
    "SYDNEY",
];
const IMAGE_NAMES: [&str; 8] = [
    "debian", "ubuntu", "centos", "windows", "web", "db", "cache", "backup",
];

/// Generates a fleet from a seed with a portable generator (ChaCha8), so the same spec
/// gives the same bytes on every machine.
fn generate_fleet(spec: &FleetSpec) -> Fleet {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut accounts = Vec::with_capacity(spec.accounts);
    let mut images =
        Vec::with_capacity(spec.accounts * spec.zones_per_account * spec.images_per_zone);
    let mut next_image = 100_000u64;
    for a in 0..spec.accounts {
        let id = format!("acct{a:05}");
        let zones: Vec<Zone> = (0..spec.zones_per_account)
            .map(|z| {
                Zone::new(&format!(
                    "US-{}-{:02}",
                    REGIONS[z % REGIONS.len()],
                    z / REGIONS.len() + 1
                ))
            })
            .collect();
        for zone in &zones {
            for _ in 0..spec.images_per_zone {
                next_image += 1;
                let roll: f64 = rng.random();
                let status = if roll < spec.saving_share {
                    "SAVING"
                } else if roll < spec.saving_share + 0.05 {
                    "DELETED"
                } else {
                    "ACTIVE"
                };
                let image_type = if rng.random_bool(0.3) {
                    "BASE"
                } else {
                    "SERVER"
                };
                let name = IMAGE_NAMES[rng.random_range(0..IMAGE_NAMES.len())];
                let day = rng.random_range(1..=28);
                let hour = rng.random_range(0..24);
                images.push(Image {
                    id: next_image.to_string(),
                    name: format!("{name}-{next_image}"),
                    account: id.clone(),
                    status: status.into(),
                    image_type: image_type.into(),
                    created: format!("2026-10-{day:02}T{hour:02}:00:00"),
                    age: (status == "SAVING")
                        .then(|| Duration::from_secs(rng.random_range(60..4 * 3600))),
                    zones: vec![zone.zone.clone()],
                    legacy: false,
                    extra: serde_json::Map::new(),
                    changes: Vec::new(),
                });
            }
        }
        accounts.push(Account {
            id,
            status: "open".into(),
            created: default_created(),
            currency: default_currency(),
            zones,
        });
    }
    Fleet {
        users: vec![User {
            username: spec.user.clone(),
            password: spec.password.clone(),
            accounts: vec!["*".into()],
        }],
        accounts,
        images,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_a_shell_star() {
        assert!(glob_match("/accounts", "/accounts"));
        assert!(!glob_match("/accounts", "/accounts/x"));
        assert!(glob_match("/accounts/*", "/accounts/a/flexcloud/zone"));
        assert!(glob_match(
            "/accounts/*/flexcloud/zone",
            "/accounts/a/flexcloud/zone"
        ));
        assert!(!glob_match(
            "/accounts/*/flexcloud/zone",
            "/accounts/a/flexcloud/images"
        ));
        assert!(glob_match("*", ""));
        assert!(glob_match("*detail", "/images/detail"));
        assert!(!glob_match("a*a", "a"));
    }

    #[test]
    fn generated_fleet_is_deterministic_and_sized() {
        let spec = FleetSpec {
            seed: 7,
            accounts: 3,
            zones_per_account: 2,
            images_per_zone: 5,
            saving_share: 0.2,
            user: "u".into(),
            password: "p".into(),
        };
        let a = serde_json::to_string(
            &Scenario {
                generate: Some(spec.clone()),
                ..Default::default()
            }
            .expanded()
            .unwrap(),
        )
        .unwrap();
        let b = serde_json::to_string(
            &Scenario {
                generate: Some(spec),
                ..Default::default()
            }
            .expanded()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(a, b);
        let s: Scenario = serde_json::from_str(&a).unwrap();
        assert_eq!(s.accounts.len(), 3);
        assert_eq!(s.images.len(), 30);
    }

    #[test]
    fn unknown_keys_and_dangling_images_are_rejected() {
        assert!(matches!(
            Scenario::from_json(r#"{"acounts": []}"#),
            Err(ScenarioError::Parse(_))
        ));
        let dangling = r#"{"images": [{"id": "1", "name": "n", "account": "nobody", "status": "ACTIVE", "type": "BASE"}]}"#;
        assert!(matches!(
            Scenario::from_json(dangling),
            Err(ScenarioError::Invalid(_))
        ));
    }

    fn scheduled() -> Scenario {
        Scenario::default()
            .account("a", &["Z1", "Z2"])
            .image("a", "1", "SAVING", "SERVER", &["Z1"])
    }

    #[test]
    fn changes_apply_in_order_of_after_once_due() {
        let s = scheduled()
            .change("1", ImageChange::vanish(Duration::from_secs(30)))
            .change("1", ImageChange::zones(Duration::from_secs(20), &["Z2"]))
            .change("1", ImageChange::status(Duration::from_secs(10), "ACTIVE"))
            .change("1", ImageChange::status(Duration::from_secs(20), "DELETED"))
            .expanded()
            .unwrap();
        let image = &s.images[0];
        let afters: Vec<u64> = image.changes.iter().map(|c| c.after.as_secs()).collect();
        assert_eq!(afters, [10, 20, 20, 30]);
        let at = |secs| image.state_at(Duration::from_secs(secs));
        let state = |status, zones: &[&str]| {
            let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
            (status, zones)
        };
        let seen = |secs| at(secs).map(|st| (st.status, st.zones.to_vec()));
        assert_eq!(seen(9), Some(state("SAVING", &["Z1"])));
        assert_eq!(seen(10), Some(state("ACTIVE", &["Z1"])));
        assert_eq!(seen(29), Some(state("DELETED", &["Z2"])));
        assert_eq!(at(30), None);
        assert_eq!(at(3600), None);
    }

    #[test]
    fn a_scheduled_aged_image_keeps_one_created_time() {
        let loaded = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = loaded + Duration::from_secs(600);
        let age = Duration::from_secs(240);
        let plain = scheduled().images.remove(0);
        let aged = Image {
            age: Some(age),
            ..plain.clone()
        };
        assert_eq!(plain.created_at(loaded, later), None);
        assert_eq!(aged.created_at(loaded, later), Some(later - age));
        let saving = aged.change(ImageChange::status(Duration::from_secs(40), "ACTIVE"));
        assert_eq!(saving.created_at(loaded, later), Some(loaded - age));
        assert_eq!(saving.created_at(loaded, loaded), Some(loaded - age));
    }

    #[test]
    fn image_changes_round_trip_through_json() {
        let text = r#"{"accounts": [{"id": "a", "zones": ["Z1", "Z2"]}],
            "images": [{"id": "1", "name": "app-02-release", "account": "a", "status": "SAVING",
                        "type": "SERVER", "age": "4m", "zones": ["Z1"],
                        "changes": [{"after": "1m", "vanish": true},
                                    {"after": "200ms", "status": "ACTIVE", "zones": ["Z2"]}]}]}"#;
        let s = Scenario::from_json(text).unwrap();
        assert_eq!(
            s.images[0].changes,
            [
                ImageChange {
                    zones: Some(vec!["Z2".into()]),
                    ..ImageChange::status(Duration::from_millis(200), "ACTIVE")
                },
                ImageChange::vanish(Duration::from_secs(60)),
            ]
        );
        let again = Scenario::from_json(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        // Images without changes are written as before.
        let plain = serde_json::to_value(&scheduled().images[0]).unwrap();
        assert!(plain.get("changes").is_none());
    }

    #[test]
    fn invalid_changes_are_rejected() {
        let cases = [
            (r#"{"after": "1s"}"#, "sets none of status, zones or vanish"),
            (r#"{"after": "1s", "vanish": false}"#, "sets none"),
            (r#"{"after": "1s", "status": ""}"#, "sets an empty status"),
            (
                r#"{"after": "1s", "zones": ["Z1", "Z9"]}"#,
                "moves it to Z9, not a zone of account a",
            ),
            (
                r#"{"after": "1s", "vanish": true}, {"after": "2s", "status": "ACTIVE"}"#,
                "after 2s comes after the image vanished",
            ),
        ];
        for (changes, message) in cases {
            let text = format!(
                r#"{{"accounts": [{{"id": "a", "zones": ["Z1"]}}],
                    "images": [{{"id": "1", "name": "n", "account": "a", "status": "ACTIVE",
                                "type": "BASE", "changes": [{changes}]}}]}}"#
            );
            match Scenario::from_json(&text) {
                Err(ScenarioError::Invalid(e)) => assert!(e.contains(message), "{changes}: {e}"),
                other => panic!("{changes}: {other:?}"),
            }
        }
        for bad in [
            r#"{"after": "1s", "status": "ACTIVE", "colour": "red"}"#,
            r#"{"status": "ACTIVE"}"#,
            r#"{"after": "soon", "status": "ACTIVE"}"#,
        ] {
            assert!(serde_json::from_str::<ImageChange>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    #[should_panic(expected = "no image 9 has been added")]
    fn a_change_of_an_image_not_added_stops_the_test() {
        let _ = scheduled().change("9", ImageChange::vanish(Duration::ZERO));
    }

    #[test]
    fn zones_accept_bare_ids() {
        let s = Scenario::from_json(r#"{"accounts": [{"id": "a", "zones": ["US-TAMPA-1", {"zone": "Z", "location": "z.loc"}]}]}"#).unwrap();
        assert_eq!(
            s.accounts[0].zones[0],
            Zone {
                zone: "US-TAMPA-1".into(),
                location: "us.tampa.1".into()
            }
        );
        assert_eq!(s.accounts[0].zones[1].location, "z.loc");
    }
}
