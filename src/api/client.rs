//! The HTTP side of the API: authentication, paging, retries and limits; every request is
//! reported to the observer.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Response, Url};
use secrecy::{ExposeSecret, SecretString};

use super::error::{ApiError, InvalidReason};
use super::gate::{CredentialGate, CredentialState};
use super::model::{self, AccountPage, ImageEntry, ImagePage, ImageProblem, ZoneMap};
use super::pace::{self, Pace};
use super::{Code, Endpoint, ImageType, RequestObserver};
use crate::config::{self, Config, ConfigError};
use crate::reload::{ReloadStatus, Source};

/// The API's largest page, asked for from the first request of every paged list.
const PAGE_SIZE: &str = "400";
/// Items one list may hold before it is taken for a loop: far above any fleet (a million
/// images in one zone), far below what would exhaust memory or time.
const MAX_ITEMS: usize = 2_000_000;
/// Pages in a row that bring no item yet name a next one before the list is taken for a loop.
const MAX_EMPTY_PAGES: usize = 3;
/// 429s one request waits out before it fails: enough for the requests in flight to halve
/// from the largest FLEXCLOUD_CONCURRENCY (1,024) to one.
const THROTTLED_RETRIES: usize = 10;
/// How much of an error body is read to find the API's error kind.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// What the client needs from the configuration.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub base_url: Url,
    pub username: String,
    pub password: SecretString,
    /// The file `password` came from, read again at every cycle and after a 401.
    pub password_file: Option<PathBuf>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_body_bytes: usize,
    pub concurrency: usize,
    /// Requests a second at most (`FLEXCLOUD_MAX_REQUEST_RATE`); `None` for no limit.
    pub max_request_rate: Option<f64>,
    /// Retries of one request after its first attempt.
    pub max_retries: usize,
    /// Total waiting between retries of one request, `Retry-After` included; keeps a
    /// cycle inside its interval.
    pub retry_budget: Duration,
    /// Extra trusted CA certificates.
    pub ca_certificates: Vec<reqwest::Certificate>,
    /// Accept any TLS certificate (an explicit, loudly logged setting).
    pub insecure_skip_verify: bool,
    /// The collection interval, which the credential back-off counts in.
    pub interval: Duration,
}

impl ClientSettings {
    /// The client's part of the configuration, with the CA file read.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(ClientSettings {
            base_url: config.api_url.clone(),
            username: config.username.clone(),
            password: config.password.clone(),
            password_file: config.password_file.clone(),
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            max_body_bytes: config.max_body_bytes,
            concurrency: config.concurrency,
            max_request_rate: config.max_request_rate,
            max_retries: 2,
            // A quarter of the interval at most, so retries cannot push a cycle past it.
            retry_budget: (config.interval / 4).min(Duration::from_secs(30)),
            ca_certificates: config.ca_certificates()?,
            insecure_skip_verify: config.tls_insecure_skip_verify,
            interval: config.interval,
        })
    }
}

/// An answer the caller can use: a body, or a redirect to follow.
enum Reply {
    /// A 200 body and how long it took; counted once the body has been parsed, so a
    /// body that does not parse counts as `invalid_response`, not `200`.
    Body(Bytes, Duration),
    /// A 301, 302, 303, 307 or 308 and its `Location`.
    Redirect(u16, String),
}

/// The FlexCloud API client. One per process; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    settings: ClientSettings,
    pace: Pace,
    observer: Arc<dyn RequestObserver>,
    gate: CredentialGate,
    /// The password in force: the settings' until the password file changes.
    password: RwLock<SecretString>,
    reload: Arc<ReloadStatus>,
}

/// What reading the password file again found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordReload {
    /// No file, or the same password.
    Unchanged,
    /// A new password, in force from the next request; every credential back-off ended.
    Changed,
    /// The file cannot be read or holds no password; the previous one stays in force.
    Failed,
}

impl ApiClient {
    pub fn new(
        settings: ClientSettings,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Self, ApiError> {
        let mut builder = reqwest::Client::builder();
        for certificate in &settings.ca_certificates {
            builder = builder.add_root_certificate(certificate.clone());
        }
        let http = builder
            .danger_accept_invalid_certs(settings.insecure_skip_verify)
            .https_only(false)
            .user_agent(concat!("flexcloud-exporter/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            // Redirects are followed by hand so credentials never leave the API's origin.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ApiError::Build)?;
        Ok(ApiClient {
            http,
            pace: Pace::new(settings.concurrency, settings.max_request_rate),
            gate: CredentialGate::new(settings.interval),
            password: RwLock::new(settings.password.clone()),
            settings,
            observer,
            reload: Arc::new(ReloadStatus::default()),
        })
    }

    /// Where the client records how its password file loads; shared with whatever else
    /// reads files again (the web config).
    pub fn reload_status(&self) -> Arc<ReloadStatus> {
        self.reload.clone()
    }

    /// Reads the password file again (at the start of a cycle, after a 401, on SIGHUP). A
    /// new password ends every credential back-off at once: the wait was for the old one.
    pub fn reload_password(&self) -> PasswordReload {
        let Some(path) = &self.settings.password_file else {
            return PasswordReload::Unchanged;
        };
        let read = match config::read_password_file(path) {
            Ok(password) => password,
            Err(error) => {
                let first = self.reload.failed_now(Source::PasswordFile);
                if first {
                    tracing::error!(path = %path.display(), error = %error, "cannot read the password file again; the previous password stays in force");
                }
                return PasswordReload::Failed;
            }
        };
        let changed = {
            let mut current = self
                .password
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let changed = current.expose_secret() != read.expose_secret();
            if changed {
                *current = read;
            }
            changed
        };
        if changed {
            self.reload.loaded(Source::PasswordFile);
            self.gate.new_credentials();
            tracing::info!(path = %path.display(), "password file changed; the new password is in force and every credential back-off has ended");
            PasswordReload::Changed
        } else {
            if self.reload.unchanged(Source::PasswordFile) {
                tracing::info!(path = %path.display(), "password file can be read again; its password is unchanged");
            }
            PasswordReload::Unchanged
        }
    }

    /// Requests it has in flight at most (`FLEXCLOUD_CONCURRENCY`).
    pub fn concurrency(&self) -> usize {
        self.settings.concurrency.max(1)
    }

    /// Requests it may have in flight now: less than [`ApiClient::concurrency`] for a while
    /// after a 429.
    pub fn concurrency_limit(&self) -> usize {
        self.pace.limit()
    }

    /// 429 answers since start.
    pub fn throttled_total(&self) -> u64 {
        self.pace.throttled_total()
    }

    /// Whether the credentials are being sent or held back after a 401.
    pub fn credentials(&self) -> CredentialState {
        self.gate.state()
    }

    /// The accounts held back on their own after a 401 that concerned only them.
    pub fn held_accounts(&self) -> std::collections::BTreeMap<String, CredentialState> {
        self.gate.account_states()
    }

    /// A cycle begins: until the API accepts the credentials in it, one request at a time
    /// carries them.
    pub fn begin_cycle(&self) {
        self.reload_password();
        self.gate.begin_cycle();
    }

    /// The cycle is over: a 401 nothing could confirm or clear rejects the credentials.
    pub fn end_cycle(&self) {
        self.gate.end_cycle();
    }

    /// Calls `on_account` for every `open` account the credentials can read, page by
    /// page as the pages arrive.
    pub async fn list_open_accounts(
        &self,
        mut on_account: impl FnMut(String),
    ) -> Result<(), ApiError> {
        self.fetch_pages(
            Endpoint::Accounts,
            None,
            "accounts",
            &[("filterStatus", "open")],
            Paging::Paged,
            |body| {
                let page: AccountPage = parse(body)?;
                let items = page.list.len();
                page.list
                    .iter()
                    // The filter was sent; a server that ignores it must not add others.
                    .filter(|a| {
                        a.status
                            .as_deref()
                            .is_none_or(|s| s.eq_ignore_ascii_case("open"))
                    })
                    .for_each(|a| on_account(a.account_number.to_string()));
                Ok((model::next_link(&page.links).map(String::from), items))
            },
        )
        .await
    }

    /// The zone ids of one account.
    pub async fn list_zones(&self, account: &str) -> Result<Vec<String>, ApiError> {
        let path = format!("accounts/{}/flexcloud/zone", encode_segment(account)?);
        let mut zones = Vec::new();
        let unpaged = Paging::Unpaged;
        self.fetch_pages(
            Endpoint::Zones,
            Some(account),
            &path,
            &[],
            unpaged,
            |body| {
                let map: ZoneMap = parse(body)?;
                let entry = map.get(account).ok_or(ApiError::Invalid {
                    status: 200,
                    reason: InvalidReason::MissingAccount,
                })?;
                zones.extend(entry.iter().map(|z| z.zone.to_string()));
                Ok((None, entry.len()))
            },
        )
        .await?;
        Ok(zones)
    }

    /// Calls `on_image` for every entry of the image list of one account, zone and type,
    /// across pages: the image, or why the entry cannot be one.
    pub async fn list_images(
        &self,
        account: &str,
        zone: &str,
        image_type: ImageType,
        mut on_image: impl FnMut(Result<&ImageEntry<'_>, ImageProblem>),
    ) -> Result<(), ApiError> {
        let path = format!(
            "accounts/{}/flexcloud/images/detail",
            encode_segment(account)?
        );
        let query = [("zone", zone), ("type", image_type.as_str())];
        self.fetch_pages(
            Endpoint::ImagesDetail,
            Some(account),
            &path,
            &query,
            Paging::Paged,
            |body| {
                let page: ImagePage = parse(body)?;
                for entry in page.entries() {
                    on_image(entry.as_ref().map_err(|p| *p));
                }
                Ok((
                    model::next_link(&page.links).map(String::from),
                    page.images.len(),
                ))
            },
        )
        .await
    }

    /// Requests `path` and follows redirects and `next` links until the list ends. A paged
    /// list asks for page 1 of the largest page size at once, so a list of any length
    /// costs as few requests as the API allows and none is spent on a first 303.
    /// `on_page` reads a body and says where the list goes on and how many items it had.
    async fn fetch_pages(
        &self,
        endpoint: Endpoint,
        account: Option<&str>,
        path: &str,
        query: &[(&str, &str)],
        paging: Paging,
        mut on_page: impl FnMut(&[u8]) -> Result<(Option<String>, usize), ApiError>,
    ) -> Result<(), ApiError> {
        let mut url = self
            .settings
            .base_url
            .join(path)
            .map_err(|_| ApiError::Invalid {
                status: 0,
                reason: InvalidReason::BadRedirect,
            })?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.extend_pairs(query);
            if paging == Paging::Paged {
                pairs.extend_pairs([("page", "1"), ("pageSize", PAGE_SIZE)]);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        // The status of the answer that showed the loop: a redirect's, or 200.
        let endless = |why, status| ApiError::Invalid {
            status,
            reason: InvalidReason::EndlessPaging(why),
        };
        let mut last_status = 200;
        let mut seen = HashSet::new();
        let (mut items, mut empty_pages) = (0usize, 0usize);
        loop {
            if !seen.insert(url.to_string()) {
                return Err(endless("a page was asked for twice", last_status));
            }
            url = match self.get(endpoint, account, &url).await? {
                Reply::Redirect(status, location) => {
                    last_status = status;
                    redirect_url(&url, &location, status)?
                }
                Reply::Body(body, took) => {
                    last_status = 200;
                    let parsed = on_page(&body);
                    let code = match &parsed {
                        Ok(_) => Code::Status(200),
                        Err(e) => e.code().unwrap_or(Code::InvalidResponse),
                    };
                    self.observer.request_ended(account, endpoint, code, took);
                    let (next, count) = parsed?;
                    items = items.saturating_add(count);
                    if items > MAX_ITEMS {
                        return Err(endless("more than 2,000,000 items", 200));
                    }
                    empty_pages = if count == 0 { empty_pages + 1 } else { 0 };
                    match next {
                        Some(_) if empty_pages >= MAX_EMPTY_PAGES => {
                            return Err(endless("three empty pages in a row", 200));
                        }
                        Some(next) => next_url(&url, &next)?,
                        None => return Ok(()),
                    }
                }
            };
        }
    }

    /// One GET with retries on transient failures, within the retry budget. A 429 is not a
    /// failure of the request but a wait the API asks for: it is waited out (with every other
    /// request, see [`Pace`]) up to [`THROTTLED_RETRIES`] times while the budget lasts,
    /// without using up the retries of 5xx answers.
    async fn get(
        &self,
        endpoint: Endpoint,
        account: Option<&str>,
        url: &Url,
    ) -> Result<Reply, ApiError> {
        let started = Instant::now();
        let mut throttled = 0;
        loop {
            let result = self.get_retrying(endpoint, account, url).await;
            let wait = match &result {
                Err(ApiError::Status {
                    status: 429,
                    retry_after,
                    ..
                }) => retry_after.unwrap_or(pace::DEFAULT_PAUSE),
                _ => return result,
            };
            throttled += 1;
            let waited = started.elapsed() + wait;
            if throttled > THROTTLED_RETRIES || waited > self.settings.retry_budget {
                return result;
            }
            tracing::debug!(
                endpoint = endpoint.as_str(),
                account_id = account.unwrap_or_default(),
                ?wait,
                "API asked to wait (429); retrying after the pause"
            );
            // The pause in force holds this request back with the others; sleeping here as
            // well would wait twice.
        }
    }

    /// [`ApiClient::get`] without its handling of 429.
    async fn get_retrying(
        &self,
        endpoint: Endpoint,
        account: Option<&str>,
        url: &Url,
    ) -> Result<Reply, ApiError> {
        let backoff = ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(self.settings.retry_budget)
            .with_max_times(self.settings.max_retries)
            .with_total_delay(Some(self.settings.retry_budget));
        let budget = self.settings.retry_budget;
        (|| self.get_once(endpoint, account, url))
            .retry(backoff)
            .when(is_transient)
            .adjust(move |error, delay| {
                // `delay` is None once the backoff's attempts or budget are used up; the
                // server's Retry-After then must not start more attempts.
                let delay = delay?;
                match retry_after(error) {
                    // The server's wish wins over our backoff, unless it asks for longer
                    // than the budget: then give up now rather than overrun the cycle.
                    Some(wait) if wait <= budget => Some(wait),
                    Some(_) => None,
                    None => Some(delay),
                }
            })
            .notify(|error, delay| {
                tracing::debug!(endpoint = endpoint.as_str(), account_id = account.unwrap_or_default(), error = %error, ?delay, "retrying API request");
            })
            .await
    }

    async fn get_once(
        &self,
        endpoint: Endpoint,
        account: Option<&str>,
        url: &Url,
    ) -> Result<Reply, ApiError> {
        let slot = self.pace.admit().await;
        // Asked after the wait: a 401 may have arrived while this request queued.
        let pass = self
            .gate
            .admit(account)
            .await
            .map_err(|_| ApiError::CredentialsSuspended)?;
        let started = Instant::now();
        // Boxed: the exchange (reqwest's send and the body read) is most of a request
        // future's size, and thousands of requests wait at the semaphore above holding only
        // a pointer to it this way, not its whole state.
        let result = Box::pin(self.exchange(url)).await;
        match &result {
            // Sent with the previous password, if the file changed: not held against the new.
            Err(e) if e.http_status() == 401 => {
                if self.reload_password() != PasswordReload::Changed {
                    pass.rejected();
                }
            }
            // No answer: the credentials were not judged; the pass lets the next one go.
            Err(e) if e.http_status() == 0 => drop(pass),
            _ => pass.accepted(),
        }
        self.pace_by(&slot, &result);
        drop(slot);
        // A 200 is reported once its body has been parsed (see `Reply::Body`).
        let code = match &result {
            Ok(Reply::Body(..)) => None,
            Ok(Reply::Redirect(status, _)) => Some(Code::Status(*status)),
            Err(e) => e.code(),
        };
        if let Some(code) = code {
            self.observer
                .request_ended(account, endpoint, code, started.elapsed());
        }
        result
    }

    /// Paces the requests after this one by how it ended: a 429 pauses them all and halves
    /// how many go at once; an answer grows that back.
    fn pace_by(&self, slot: &super::pace::Slot<'_>, result: &Result<Reply, ApiError>) {
        match result {
            Err(ApiError::Status {
                status: 429,
                retry_after,
                ..
            }) => {
                let throttled = self.pace.throttled(slot, *retry_after);
                if let Some(limit) = throttled.halved_to {
                    tracing::warn!(limit, pause = ?throttled.pause, "the API throttles the exporter (429): every request waits, and fewer go at once until answers come back");
                }
            }
            Ok(_) => {
                if self.pace.succeeded(slot) {
                    tracing::info!(
                        limit = self.settings.concurrency,
                        "API requests in flight are back to FLEXCLOUD_CONCURRENCY"
                    );
                }
            }
            Err(_) => {}
        }
    }

    async fn exchange(&self, url: &Url) -> Result<Reply, ApiError> {
        let started = Instant::now();
        let password = self
            .password
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let response = self
            .http
            .get(url.clone())
            .basic_auth(&self.settings.username, Some(password.expose_secret()))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .send()
            .await
            .map_err(|e| classify(e, 0))?;
        let status = response.status().as_u16();
        match status {
            200 => {
                let body = read_capped(response, self.settings.max_body_bytes).await?;
                Ok(Reply::Body(body, started.elapsed()))
            }
            301 | 302 | 303 | 307 | 308 => response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(|l| Reply::Redirect(status, l.to_string()))
                .ok_or(ApiError::Invalid {
                    status,
                    reason: InvalidReason::BadRedirect,
                }),
            _ => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let body = read_capped(response, ERROR_BODY_LIMIT)
                    .await
                    .unwrap_or_default();
                Err(ApiError::Status {
                    status,
                    kind: model::error_kind(&body),
                    retry_after,
                })
            }
        }
    }
}

fn parse<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Invalid {
        status: 200,
        reason: InvalidReason::Json(e),
    })
}

/// Reads a body in chunks, stopping as soon as it passes `limit`, so a huge or endless
/// body costs at most `limit` bytes of memory.
async fn read_capped(mut response: Response, limit: usize) -> Result<Bytes, ApiError> {
    let status = response.status().as_u16();
    let too_large = || ApiError::Invalid {
        status,
        reason: InvalidReason::TooLarge { limit },
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(
        response.content_length().unwrap_or(8192).min(limit as u64) as usize,
    );
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(e, status))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn classify(error: reqwest::Error, status: u16) -> ApiError {
    let error = error.without_url();
    if error.is_timeout() {
        ApiError::Timeout(error)
    } else if status != 0 && (error.is_body() || error.is_decode() || error.is_request()) {
        ApiError::Invalid {
            status,
            reason: InvalidReason::Body(error),
        }
    } else {
        ApiError::Connect(error)
    }
}

/// Whether a list is read page by page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paging {
    Paged,
    Unpaged,
}

/// The paging parameters of `target`, resolved against `current`.
fn paging_of(current: &Url, target: &str, status: u16) -> Result<Vec<(String, String)>, ApiError> {
    let resolved = current.join(target).map_err(|_| ApiError::Invalid {
        status,
        reason: InvalidReason::BadRedirect,
    })?;
    Ok(resolved
        .query_pairs()
        .filter(|(k, _)| k == "page" || k == "pageSize")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// `current` with its paging parameters replaced by `paging`, the others kept: the
/// credentials only ever go to the configured API origin, whatever host a redirect or a
/// link names.
fn with_paging(current: &Url, paging: Vec<(String, String)>) -> Url {
    let kept: Vec<(String, String)> = current
        .query_pairs()
        .filter(|(k, _)| k != "page" && k != "pageSize")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut next = current.clone();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .extend_pairs(paging);
    next
}

/// Where a `next` link leads: the current request with the link's `page` and `pageSize`.
fn next_url(current: &Url, link: &str) -> Result<Url, ApiError> {
    let paging = paging_of(current, link, 200)?;
    if !paging.iter().any(|(k, _)| k == "page") {
        return Err(ApiError::Invalid {
            status: 200,
            reason: InvalidReason::BadRedirect,
        });
    }
    Ok(with_paging(current, paging))
}

/// Where a redirect leads: the current request, with the redirect's `pageSize` if it names
/// one. The page stays ours: the API redirects to fix a page size, and a redirect that
/// named another page would skip the items before it.
fn redirect_url(current: &Url, location: &str, status: u16) -> Result<Url, ApiError> {
    let size = paging_of(current, location, status)?
        .into_iter()
        .find(|(k, v)| k == "pageSize" && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    let page = current
        .query_pairs()
        .find(|(k, _)| k == "page")
        .map_or_else(|| "1".to_string(), |(_, v)| v.into_owned());
    let mut paging = vec![("page".to_string(), page)];
    paging.extend(size);
    Ok(with_paging(current, paging))
}

fn is_transient(error: &ApiError) -> bool {
    match error {
        ApiError::Timeout(_) | ApiError::Connect(_) => true,
        ApiError::Status { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

fn retry_after(error: &ApiError) -> Option<Duration> {
    match error {
        ApiError::Status { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// `Retry-After` is either delay seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Every byte but RFC 3986's unreserved ones is percent-encoded in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether an id can stand as one path segment. `.` and `..` cannot, however they are
/// encoded (URL parsers resolve `%2E` and `%2e%2E` as dot segments too), and an empty one
/// would name another resource.
pub fn is_path_segment(id: &str) -> bool {
    !matches!(id, "" | "." | "..")
}

/// An id as one path segment, whatever characters it holds.
fn encode_segment(segment: &str) -> Result<String, ApiError> {
    if !is_path_segment(segment) {
        return Err(ApiError::Invalid {
            status: 0,
            reason: InvalidReason::UnusableId,
        });
    }
    Ok(percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_give_only_their_paging_on_the_api_origin() {
        let current = Url::parse(
            "https://api.example.com/accounts/a/flexcloud/images/detail?zone=Z&type=BASE&page=1&pageSize=400",
        )
        .unwrap();
        let next = next_url(
            &current,
            "https://evil.example.net/steal?page=2&pageSize=100&zone=X",
        )
        .unwrap();
        assert_eq!(
            next.as_str(),
            "https://api.example.com/accounts/a/flexcloud/images/detail?zone=Z&type=BASE&page=2&pageSize=100"
        );
        let relative = next_url(&next, "?page=3&pageSize=100").unwrap();
        assert!(
            relative
                .as_str()
                .ends_with("?zone=Z&type=BASE&page=3&pageSize=100")
        );
        assert!(next_url(&current, "https://evil.example.net/steal").is_err());
    }

    #[test]
    fn a_redirect_may_change_the_page_size_but_never_the_page() {
        let current =
            Url::parse("https://api.example.com/accounts?filterStatus=open&page=1&pageSize=400")
                .unwrap();
        let smaller = redirect_url(&current, "/accounts?page=999999&pageSize=100", 303).unwrap();
        assert_eq!(
            smaller.as_str(),
            "https://api.example.com/accounts?filterStatus=open&page=1&pageSize=100"
        );
        // No page size, or a nonsense one: the same request again (and a loop is then cut).
        for location in ["https://elsewhere.example.net/accounts", "?pageSize=lots"] {
            let same = redirect_url(&current, location, 302).unwrap();
            assert_eq!(
                same.as_str(),
                "https://api.example.com/accounts?filterStatus=open&page=1"
            );
        }
        let unpaged = Url::parse("https://api.example.com/accounts/a/flexcloud/zone").unwrap();
        assert!(
            redirect_url(&unpaged, "?page=7&pageSize=50", 301)
                .unwrap()
                .as_str()
                .ends_with("zone?page=1&pageSize=50")
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn account_ids_are_one_path_segment() {
        let encoded = |id| encode_segment(id).unwrap();
        assert_eq!(encoded("smith1234"), "smith1234");
        assert_eq!(encoded("a/b c"), "a%2Fb%20c");
        assert_eq!(encoded("a?b#c%d"), "a%3Fb%23c%25d");
        assert_eq!(encoded("..."), "...");
        assert_eq!(encoded("é"), "%C3%A9");
        let base = Url::parse("https://api.example.com/").unwrap();
        for id in ["a/../b", "%2e%2e", "x/.."] {
            let url = base
                .join(&format!("accounts/{}/flexcloud/zone", encoded(id)))
                .unwrap();
            assert!(
                url.path().starts_with("/accounts/") && url.path().ends_with("/flexcloud/zone"),
                "{id}: {url}"
            );
            assert_eq!(url.path_segments().unwrap().count(), 4, "{id}: {url}");
        }
        for id in ["", ".", ".."] {
            assert!(encode_segment(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let status = |s| ApiError::Status {
            status: s,
            kind: None,
            retry_after: None,
        };
        for s in [502, 503, 504] {
            assert!(is_transient(&status(s)), "{s}");
        }
        // 429 is waited out by `get` itself, apart from the backoff's retries.
        for s in [400, 401, 403, 404, 429, 500] {
            assert!(!is_transient(&status(s)), "{s}");
        }
    }
}
