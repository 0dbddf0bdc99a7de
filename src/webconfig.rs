//! The web config file (Prometheus exporter-toolkit format): TLS and Basic auth for the endpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderName, HeaderValue};
use base64::Engine as _;
use rustls::crypto::ring as ring_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use secrecy::{ExposeSecret, SecretSlice};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// A web config file that cannot be used; every message names the file, and the field when
/// one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("web config file {path}: cannot read it: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("web config file {path}: {source}")]
    Syntax {
        path: String,
        #[source]
        source: serde_norway::Error,
    },
    #[error("web config file {path}: {field}: {problem}")]
    Invalid {
        path: String,
        field: String,
        problem: String,
    },
    #[error("web config file {path}: tls_server_config.{field}: cannot read {file}: {source}")]
    File {
        path: String,
        field: &'static str,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("web config file {path}: {field}: {source}")]
    Tls {
        path: String,
        field: &'static str,
        #[source]
        source: rustls::Error,
    },
}

/// What the endpoint enforces. The default (no file) is plain HTTP without authentication.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<ServerConfig>>,
    /// Require these users' credentials.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// Added to every response (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

// The file's shape. Unknown keys are errors at every level, as exporter-toolkit's strict
// YAML decoding makes them: a misspelt `basic_auth_user` must not leave the endpoint open.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of web config sections")]
struct RawFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of TLS settings")]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
}

impl RawTls {
    fn is_empty(&self) -> bool {
        self.cert_file.is_none()
            && self.key_file.is_none()
            && self.cert.is_none()
            && self.key.is_none()
            && self.client_auth_type.is_none()
            && self.client_ca_file.is_none()
            && self.client_ca.is_none()
            && self.client_allowed_sans.is_none()
            && self.cipher_suites.is_none()
            && self.curve_preferences.is_none()
            && self.min_version.is_none()
            && self.max_version.is_none()
            && self.prefer_server_cipher_suites.is_none()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of HTTP settings")]
struct RawHttp {
    // The server speaks HTTP/1.1 only; `http2` is accepted so existing files load, and
    // changes nothing about security either way.
    #[serde(rename = "http2")]
    _http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The headers exporter-toolkit lets a file set, with their allowed values (empty: any).
const SETTABLE_HEADERS: &[(&str, &[&str])] = &[
    ("Content-Security-Policy", &[]),
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];

impl WebConfig {
    /// Reads and checks the file, and the certificate and key it names. Relative paths in it
    /// are relative to the file's directory, as in exporter-toolkit.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Loads the file when one is configured; no file means the plain default.
    pub fn load_optional(path: Option<&Path>) -> Result<Self, WebConfigError> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }

    /// Checks `text` as the contents of the file at `path` (used in messages and to resolve
    /// relative paths).
    ///
    /// Operators reuse the file they have for node_exporter, so its format is followed. An
    /// option this exporter cannot honour (client certificates, `rate_limit`, TLS 1.0/1.1, a
    /// cipher rustls does not implement) is an error naming the field, never ignored: a
    /// security setting silently dropped is worse than one refused.
    pub fn parse(text: &str, path: &Path) -> Result<Self, WebConfigError> {
        let file = Source {
            path: path.display().to_string(),
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        // An empty file is a valid exporter-toolkit config that enables nothing.
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::default()
        } else {
            serde_norway::from_str(text).map_err(|source| WebConfigError::Syntax {
                path: file.path.clone(),
                source,
            })?
        };
        if raw.rate_limit.is_some() {
            return Err(file.invalid(
                "rate_limit",
                "is not supported by this exporter; remove it (the server already limits concurrent requests)",
            ));
        }
        let headers = match raw.http_server_config.and_then(|h| h.headers) {
            Some(headers) => file.headers(&headers)?,
            None => Vec::new(),
        };
        let tls = match raw.tls_server_config {
            Some(tls) if !tls.is_empty() => Some(Arc::new(file.tls(tls)?)),
            _ => None,
        };
        let basic_auth = match raw.basic_auth_users {
            Some(users) if !users.is_empty() => Some(Arc::new(file.users(users)?)),
            _ => None,
        };
        Ok(WebConfig {
            tls,
            basic_auth,
            headers,
        })
    }
}

/// The file being checked: its name for messages and its directory for relative paths.
struct Source {
    path: String,
    dir: PathBuf,
}

impl Source {
    fn invalid(&self, field: impl Into<String>, problem: impl Into<String>) -> WebConfigError {
        WebConfigError::Invalid {
            path: self.path.clone(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn headers(
        &self,
        headers: &BTreeMap<String, String>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
        headers
            .iter()
            .map(|(name, value)| {
                let field = format!("http_server_config.headers.{name}");
                let Some((_, allowed)) = SETTABLE_HEADERS.iter().find(|(n, _)| n == name) else {
                    let names: Vec<&str> = SETTABLE_HEADERS.iter().map(|(n, _)| *n).collect();
                    return Err(self.invalid(
                        field,
                        format!("cannot be configured; one of {}", names.join(", ")),
                    ));
                };
                if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                    return Err(self.invalid(
                        field,
                        format!("expected one of {}, got {value:?}", allowed.join(", ")),
                    ));
                }
                let value = HeaderValue::from_str(value)
                    .map_err(|_| self.invalid(field.clone(), "is not a valid HTTP header value"))?;
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| self.invalid(field, "is not a valid HTTP header name"))?;
                Ok((name, value))
            })
            .collect()
    }

    fn tls(&self, raw: RawTls) -> Result<ServerConfig, WebConfigError> {
        match raw.client_auth_type.as_deref() {
            None | Some("" | "NoClientCert") => {}
            Some(other) => {
                return Err(self.invalid(
                    "tls_server_config.client_auth_type",
                    format!(
                        "{other} is not supported: client certificates are not implemented; only NoClientCert"
                    ),
                ));
            }
        }
        for (field, set) in [
            ("client_ca_file", raw.client_ca_file.is_some()),
            ("client_ca", raw.client_ca.is_some()),
            ("client_allowed_sans", raw.client_allowed_sans.is_some()),
        ] {
            if set {
                return Err(self.invalid(
                    format!("tls_server_config.{field}"),
                    "is not supported: client certificates are not implemented",
                ));
            }
        }
        // Settings first, files last: a mistake in the file itself is reported before any
        // certificate is read.
        let versions = self.versions(raw.min_version.as_deref(), raw.max_version.as_deref())?;
        let mut provider = ring_provider::default_provider();
        if let Some(names) = &raw.cipher_suites {
            provider.cipher_suites = self.cipher_suites(names)?;
        }
        if let Some(names) = &raw.curve_preferences {
            provider.kx_groups = self.curves(names)?;
        }
        let cert = self.pem_source(
            "cert_file",
            raw.cert_file.as_deref(),
            "cert",
            raw.cert.as_deref(),
        )?;
        let key = self.pem_source(
            "key_file",
            raw.key_file.as_deref(),
            "key",
            raw.key.as_deref(),
        )?;
        let certs = self.certificates(cert)?;
        let key = self.private_key(key)?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
            .map_err(|source| self.tls_error("tls_server_config", source))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|source| match source {
                // rustls says only "KeyMismatch"; say which files disagree.
                rustls::Error::InconsistentKeys(_) => self.invalid(
                    "tls_server_config.key_file",
                    "the private key does not belong to the certificate of cert_file",
                ),
                other => self.tls_error("tls_server_config.key_file", other),
            })?;
        // exporter-toolkit's default, and the meaning of a `cipher_suites` order.
        config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    fn tls_error(&self, field: &'static str, source: rustls::Error) -> WebConfigError {
        WebConfigError::Tls {
            path: self.path.clone(),
            field,
            source,
        }
    }

    /// Where the PEM of `cert_file`/`cert` (or `key_file`/`key`) comes from: exactly one of
    /// the two must be set.
    fn pem_source<'a>(
        &self,
        file_field: &'static str,
        file: Option<&str>,
        inline_field: &'static str,
        inline: Option<&'a str>,
    ) -> Result<PemSource<'a>, WebConfigError> {
        match (
            file.filter(|f| !f.is_empty()),
            inline.filter(|i| !i.is_empty()),
        ) {
            (Some(_), Some(_)) => Err(self.invalid(
                format!("tls_server_config.{file_field}"),
                format!("set either {file_field} or {inline_field}, not both"),
            )),
            (Some(name), None) => Ok(PemSource::File {
                field: file_field,
                path: self.dir.join(name),
            }),
            (None, Some(text)) => Ok(PemSource::Inline {
                field: inline_field,
                text,
            }),
            (None, None) => Err(self.invalid(
                format!("tls_server_config.{file_field}"),
                format!("is required when TLS is configured (or the inline {inline_field})"),
            )),
        }
    }

    /// The PEM bytes, the field they come from and a description for messages.
    fn read_pem(&self, source: PemSource<'_>) -> Result<(Vec<u8>, String, String), WebConfigError> {
        match source {
            PemSource::File { field, path } => {
                let bytes = std::fs::read(&path).map_err(|source| WebConfigError::File {
                    path: self.path.clone(),
                    field,
                    file: path.display().to_string(),
                    source,
                })?;
                Ok((
                    bytes,
                    format!("tls_server_config.{field}"),
                    path.display().to_string(),
                ))
            }
            PemSource::Inline { field, text } => Ok((
                text.as_bytes().to_vec(),
                format!("tls_server_config.{field}"),
                "the text".to_string(),
            )),
        }
    }

    fn certificates(
        &self,
        source: PemSource<'_>,
    ) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
        let (pem, field, origin) = self.read_pem(source)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.invalid(field.clone(), format!("{origin}: {e}")))?;
        if certs.is_empty() {
            return Err(self.invalid(field, format!("{origin} holds no PEM CERTIFICATE block")));
        }
        Ok(certs)
    }

    fn private_key(&self, source: PemSource<'_>) -> Result<PrivateKeyDer<'static>, WebConfigError> {
        let (pem, field, origin) = self.read_pem(source)?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            let problem = match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    format!("{origin} holds no PEM private key")
                }
                other => format!("{origin}: {other}"),
            };
            self.invalid(field, problem)
        })
    }

    fn versions(
        &self,
        min: Option<&str>,
        max: Option<&str>,
    ) -> Result<Vec<&'static SupportedProtocolVersion>, WebConfigError> {
        let min = self.version("min_version", min.unwrap_or("TLS12"))?;
        let max = self.version("max_version", max.unwrap_or("TLS13"))?;
        if min > max {
            return Err(self.invalid("tls_server_config.min_version", "is above max_version"));
        }
        Ok(
            [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, version)| version)
                .collect(),
        )
    }

    /// The minor version number of a TLS version name.
    fn version(&self, field: &str, name: &str) -> Result<u8, WebConfigError> {
        match name {
            "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            "TLS10" | "TLS11" => Err(self.invalid(
                format!("tls_server_config.{field}"),
                format!("{name} is not supported: TLS12 and TLS13 only"),
            )),
            other => Err(self.invalid(
                format!("tls_server_config.{field}"),
                format!("unknown TLS version {other:?}; one of TLS12, TLS13"),
            )),
        }
    }

    /// Go's cipher suite names mapped onto rustls'. As in Go, the list restricts TLS 1.2 only:
    /// TLS 1.3 suites are always on, and naming one is accepted.
    fn cipher_suites(&self, names: &[String]) -> Result<Vec<SupportedCipherSuite>, WebConfigError> {
        use ring_provider::cipher_suite as cs;
        let tls12 = [
            (
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
            (
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
        ];
        let tls13_names = [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
        ];
        let mut suites = vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        for name in names {
            if tls13_names.contains(&name.as_str()) {
                continue;
            }
            let Some((_, suite)) = tls12.iter().find(|(n, _)| n == name) else {
                let known: Vec<&str> = tls12.iter().map(|(n, _)| *n).collect();
                return Err(self.invalid(
                    "tls_server_config.cipher_suites",
                    format!(
                        "{name} is not supported; supported TLS 1.2 suites: {}",
                        known.join(", ")
                    ),
                ));
            };
            if !suites.contains(suite) {
                suites.push(*suite);
            }
        }
        Ok(suites)
    }

    fn curves(
        &self,
        names: &[String],
    ) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, WebConfigError> {
        use ring_provider::kx_group;
        let known: [(&str, &'static dyn rustls::crypto::SupportedKxGroup); 3] = [
            ("X25519", kx_group::X25519),
            ("CurveP256", kx_group::SECP256R1),
            ("CurveP384", kx_group::SECP384R1),
        ];
        let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
        for name in names {
            let Some((_, group)) = known.iter().find(|(n, _)| n == name) else {
                return Err(self.invalid(
                    "tls_server_config.curve_preferences",
                    format!("{name} is not supported; one of X25519, CurveP256, CurveP384"),
                ));
            };
            if !groups.iter().any(|g| g.name() == group.name()) {
                groups.push(*group);
            }
        }
        if groups.is_empty() {
            return Err(self.invalid(
                "tls_server_config.curve_preferences",
                "is empty; leave it out for the defaults",
            ));
        }
        Ok(groups)
    }

    fn users(&self, users: BTreeMap<String, String>) -> Result<BasicAuth, WebConfigError> {
        let mut checked = Vec::with_capacity(users.len());
        for (name, hash) in users {
            let field = format!("basic_auth_users.{name}");
            let parts: bcrypt::HashParts = hash.parse().map_err(|e: bcrypt::BcryptError| {
                self.invalid(
                    field.clone(),
                    format!("not a bcrypt hash ({e}); make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'"),
                )
            })?;
            if !(4..=31).contains(&parts.get_cost()) {
                return Err(self.invalid(
                    field,
                    format!("bcrypt cost {} is outside 4 to 31", parts.get_cost()),
                ));
            }
            if name.contains(':') {
                return Err(self.invalid(field, "a user name cannot contain ':' in Basic auth"));
            }
            checked.push(User {
                name,
                hash,
                cost: parts.get_cost(),
            });
        }
        Ok(BasicAuth::new(checked))
    }
}

/// Where a certificate or key comes from.
enum PemSource<'a> {
    File { field: &'static str, path: PathBuf },
    Inline { field: &'static str, text: &'a str },
}

/// One `basic_auth_users` entry, its hash checked at load.
struct User {
    name: String,
    hash: String,
    cost: u32,
}

/// Checks `Authorization: Basic` credentials against the bcrypt hashes of the file.
pub struct BasicAuth {
    users: Vec<User>,
    /// The entry whose hash an unknown user name is checked against: the costliest, so a
    /// wrong name takes as long as a wrong password and does not reveal which names exist.
    decoy: usize,
    /// The last password that verified, per user. Prometheus sends the same credentials
    /// every scrape, and bcrypt at cost 10 costs tens of milliseconds of CPU each time
    /// (exporter-toolkit caches for the same reason). Zeroed when dropped.
    verified: Mutex<Vec<Option<SecretSlice<u8>>>>,
    /// One bcrypt at a time, as in exporter-toolkit, so a flood of wrong passwords costs at
    /// most one core and never blocks the async workers.
    bcrypt_slot: Arc<Semaphore>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field(
                "users",
                &self.users.iter().map(|u| &u.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    fn new(users: Vec<User>) -> Self {
        let decoy = users
            .iter()
            .enumerate()
            .max_by_key(|(_, u)| u.cost)
            .map_or(0, |(i, _)| i);
        let verified = Mutex::new(users.iter().map(|_| None).collect());
        BasicAuth {
            users,
            decoy,
            verified,
            bcrypt_slot: Arc::new(Semaphore::new(1)),
        }
    }

    /// How many users the file lists.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether the `Authorization` header carries a listed user and that user's password.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((name, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let found = self.find(&name);
        if let Some(index) = found {
            if self.remembered(index, password.expose_secret()) {
                return true;
            }
        }
        let hash = self.users[found.unwrap_or(self.decoy)].hash.clone();
        let Ok(permit) = self.bcrypt_slot.clone().acquire_owned().await else {
            return false;
        };
        // The permit moves into the blocking task, so the one-at-a-time rule holds even when
        // the request is cancelled (timeout, client gone) while bcrypt runs.
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let ok = bcrypt::verify(password.expose_secret(), &hash).unwrap_or(false);
            (ok, password)
        })
        .await;
        match (found, verified) {
            (Some(index), Ok((true, password))) => {
                self.remember(index, password);
                true
            }
            _ => false,
        }
    }

    /// The entry named `name`. Every name is compared, each in constant time, so the time
    /// taken tells neither how much of a name matched nor where it is in the list.
    fn find(&self, name: &[u8]) -> Option<usize> {
        let mut found = None;
        for (index, user) in self.users.iter().enumerate() {
            if bool::from(user.name.as_bytes().ct_eq(name)) {
                found = Some(index);
            }
        }
        found
    }

    fn remembered(&self, index: usize, password: &[u8]) -> bool {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|known| bool::from(known.expose_secret().ct_eq(password)))
    }

    fn remember(&self, index: usize, password: SecretSlice<u8>) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = verified.get_mut(index) {
            *slot = Some(password);
        }
    }
}

/// The user name and password of an `Authorization: Basic` header (scheme case-insensitive,
/// split at the first colon as RFC 7617 says).
fn parse_basic(header: &HeaderValue) -> Option<(Vec<u8>, SecretSlice<u8>)> {
    let value = header.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, encoded) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"Basic") {
        return None;
    }
    let decoded: SecretSlice<u8> = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?
        .into();
    let decoded = decoded.expose_secret();
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((
        decoded[..colon].to_vec(),
        decoded[colon + 1..].to_vec().into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn bad_fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webconfig/bad")
    }

    /// Each bad file under tests/fixtures/webconfig/bad and the exact line it stops startup
    /// with; `{dir}` stands for that folder.
    const BAD_FILES: &[(&str, &str)] = &[
        (
            "misspelt_top_level_key.yml",
            "unknown field `basic_auth_user`, expected one of `tls_server_config`, `http_server_config`, `basic_auth_users`, `rate_limit`",
        ),
        (
            "misspelt_tls_key.yml",
            "tls_server_config: unknown field `cert_fil`, expected one of `cert_file`, `key_file`, `cert`, `key`, `client_auth_type`, `client_ca_file`, `client_ca`, `client_allowed_sans`, `cipher_suites`, `curve_preferences`, `min_version`, `max_version`, `prefer_server_cipher_suites` at line 2 column 3",
        ),
        (
            "misspelt_http_key.yml",
            "http_server_config: unknown field `http3`, expected `http2` or `headers` at line 2 column 3",
        ),
        (
            "not_yaml.yml",
            "found unexpected end of stream at line 3 column 1, while scanning a quoted scalar at line 2 column 10",
        ),
        (
            "tls_not_a_map.yml",
            "tls_server_config: invalid type: sequence, expected a mapping of TLS settings at line 1 column 20",
        ),
        (
            "users_not_a_map.yml",
            "basic_auth_users: invalid type: sequence, expected a map at line 2 column 3",
        ),
        (
            "client_auth_type.yml",
            "tls_server_config.client_auth_type: RequireAndVerifyClientCert is not supported: client certificates are not implemented; only NoClientCert",
        ),
        (
            "client_ca_without_auth.yml",
            "tls_server_config.client_ca_file: is not supported: client certificates are not implemented",
        ),
        (
            "rate_limit.yml",
            "rate_limit: is not supported by this exporter; remove it (the server already limits concurrent requests)",
        ),
        (
            "tls10.yml",
            "tls_server_config.min_version: TLS10 is not supported: TLS12 and TLS13 only",
        ),
        (
            "unknown_tls_version.yml",
            "tls_server_config.max_version: unknown TLS version \"TLS14\"; one of TLS12, TLS13",
        ),
        (
            "min_above_max.yml",
            "tls_server_config.min_version: is above max_version",
        ),
        (
            "weak_cipher.yml",
            "tls_server_config.cipher_suites: TLS_RSA_WITH_AES_128_CBC_SHA is not supported; supported TLS 1.2 suites: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
        (
            "curve_p521.yml",
            "tls_server_config.curve_preferences: CurveP521 is not supported; one of X25519, CurveP256, CurveP384",
        ),
        (
            "missing_key_file.yml",
            "tls_server_config.key_file: is required when TLS is configured (or the inline key)",
        ),
        (
            "cert_twice.yml",
            "tls_server_config.cert_file: set either cert_file or cert, not both",
        ),
        (
            "missing_cert_file.yml",
            "tls_server_config.cert_file: cannot read {dir}/no-such.crt: No such file or directory (os error 2)",
        ),
        (
            "not_pem.yml",
            "tls_server_config.cert_file: {dir}/not_pem.yml holds no PEM CERTIFICATE block",
        ),
        (
            "plaintext_password.yml",
            "basic_auth_users.admin: not a bcrypt hash (Invalid hash: the hash format is malformed; expected 60 ASCII bytes); make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'",
        ),
        (
            "colon_in_user.yml",
            "basic_auth_users.ad:min: a user name cannot contain ':' in Basic auth",
        ),
        (
            "header_bad_value.yml",
            "http_server_config.headers.X-Frame-Options: expected one of deny, sameorigin, got \"allow-from\"",
        ),
        (
            "header_not_settable.yml",
            "http_server_config.headers.Server: cannot be configured; one of Content-Security-Policy, Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection",
        ),
    ];

    #[test]
    fn each_bad_file_stops_with_its_exact_message() {
        let dir = bad_fixtures();
        let dir_text = dir.display().to_string();
        for (file, expected) in BAD_FILES {
            let path = dir.join(file);
            let message = WebConfig::load(&path).unwrap_err().to_string();
            let expected = format!(
                "web config file {}: {}",
                path.display(),
                expected.replace("{dir}", &dir_text)
            );
            assert_eq!(message, expected, "{file}");
        }
    }

    #[test]
    fn every_bad_fixture_is_in_the_table() {
        let mut on_disk: Vec<String> = std::fs::read_dir(bad_fixtures())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = BAD_FILES.iter().map(|(f, _)| f.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn a_missing_file_is_named() {
        let message = WebConfig::load(Path::new("/nonexistent/web.yml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "web config file /nonexistent/web.yml: cannot read it: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_plaintext_password_is_never_echoed() {
        let message = WebConfig::parse(
            "basic_auth_users:\n  admin: hunter2-secret\n",
            Path::new("w.yml"),
        )
        .unwrap_err()
        .to_string();
        assert!(!message.contains("hunter2-secret"), "{message}");
    }

    #[test]
    fn empty_files_and_sections_enable_nothing() {
        for text in [
            "",
            "\n# only a comment\n",
            "tls_server_config:\nbasic_auth_users:\nhttp_server_config:\n",
            "tls_server_config: {}\nbasic_auth_users: {}\nhttp_server_config:\n  http2: true\n",
        ] {
            let web = WebConfig::parse(text, Path::new("web.yml")).unwrap();
            assert!(
                web.tls.is_none() && web.basic_auth.is_none() && web.headers.is_empty(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn users_and_headers_load() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text = format!(
            "basic_auth_users:\n  alice: {hash}\n  bob: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n"
        );
        let web = WebConfig::parse(&text, Path::new("web.yml")).unwrap();
        assert_eq!(web.basic_auth.unwrap().user_count(), 2);
        let headers: Vec<(String, String)> = web
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            headers,
            [
                (
                    "strict-transport-security".to_string(),
                    "max-age=31536000".to_string()
                ),
                ("x-frame-options".to_string(), "deny".to_string()),
            ]
        );
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn basic_headers_parse_like_rfc_7617() {
        let (user, password) = parse_basic(&basic("alice", "pa:ss word")).unwrap();
        assert_eq!(user, b"alice");
        assert_eq!(password.expose_secret(), b"pa:ss word");
        let lower = HeaderValue::from_str("basic YWxpY2U6cHc=").unwrap();
        assert_eq!(parse_basic(&lower).unwrap().0, b"alice");
        for bad in [
            "Bearer YWxpY2U6cHc=",
            "Basic",
            "Basic !!!",
            "Basic YWxpY2U=",
            "",
        ] {
            assert!(
                parse_basic(&HeaderValue::from_str(bad).unwrap()).is_none(),
                "{bad:?}"
            );
        }
    }

    fn auth(users: &[(&str, &str, u32)]) -> BasicAuth {
        let text: String = users
            .iter()
            .map(|(name, password, cost)| {
                format!("  {name}: {}\n", bcrypt::hash(password, *cost).unwrap())
            })
            .collect();
        let web =
            WebConfig::parse(&format!("basic_auth_users:\n{text}"), Path::new("w.yml")).unwrap();
        Arc::try_unwrap(web.basic_auth.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn only_a_listed_user_with_its_password_passes() {
        let auth = auth(&[("alice", "alice-pw", 4), ("bob", "bob-pw", 4)]);
        assert!(auth.check(Some(&basic("alice", "alice-pw"))).await);
        assert!(auth.check(Some(&basic("bob", "bob-pw"))).await);
        // Remembered after the first success, and still exact.
        assert!(auth.check(Some(&basic("alice", "alice-pw"))).await);
        assert!(!auth.check(Some(&basic("alice", "bob-pw"))).await);
        assert!(!auth.check(Some(&basic("alice", "alice-pw "))).await);
        assert!(!auth.check(Some(&basic("carol", "alice-pw"))).await);
        assert!(!auth.check(Some(&basic("Alice", "alice-pw"))).await);
        assert!(!auth.check(Some(&basic("", ""))).await);
        assert!(!auth.check(None).await);
    }

    #[test]
    fn unknown_users_are_checked_against_the_costliest_hash() {
        let auth = auth(&[("a", "x", 4), ("b", "x", 6), ("c", "x", 5)]);
        assert_eq!(auth.users[auth.decoy].name, "b");
    }

    #[tokio::test]
    async fn a_wrong_user_costs_the_bcrypt_work_of_a_wrong_password() {
        let cost = 8;
        let hash = bcrypt::hash("right", cost).unwrap();
        let fastest_verify = (0..3)
            .map(|_| {
                let start = Instant::now();
                let _ = bcrypt::verify("wrong", &hash);
                start.elapsed()
            })
            .min()
            .unwrap();
        let auth = auth(&[("alice", "right", cost)]);
        let start = Instant::now();
        assert!(!auth.check(Some(&basic("mallory", "right"))).await);
        let wrong_user = start.elapsed();
        // Load on the machine can only make the check slower, never faster than bcrypt itself;
        // an early return for an unknown name would take microseconds.
        assert!(
            wrong_user >= fastest_verify / 2 && fastest_verify > Duration::from_millis(1),
            "wrong user {wrong_user:?}, bcrypt {fastest_verify:?}"
        );
    }

    #[test]
    fn tls_options_map_onto_rustls() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let text = format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n{}  min_version: TLS12\n  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256]\n  curve_preferences: [CurveP384, X25519]\n  prefer_server_cipher_suites: false\n",
            indent(&cert.pem()),
            indent(&key.serialize_pem()),
        );
        let web = WebConfig::parse(&text, Path::new("web.yml")).unwrap();
        let tls = web.tls.unwrap();
        assert!(!tls.ignore_client_order);
        assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
        let provider = tls.crypto_provider();
        let suites: Vec<String> = provider
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            suites,
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            ]
        );
        let groups: Vec<String> = provider
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert_eq!(groups, ["secp384r1", "X25519"]);
    }

    fn indent(pem: &str) -> String {
        pem.lines().map(|line| format!("    {line}\n")).collect()
    }

    #[test]
    fn debug_output_names_users_but_not_hashes() {
        let auth = auth(&[("alice", "pw", 4)]);
        let text = format!("{auth:?}");
        assert!(text.contains("alice") && !text.contains("$2"), "{text}");
    }
}
