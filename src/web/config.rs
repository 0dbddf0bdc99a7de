//! The web config file's schema (Prometheus exporter-toolkit format) and its checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use rustls::ServerConfig;
use serde::Deserialize;

use super::auth::{BasicAuth, User};

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

/// The highest bcrypt cost accepted: one check takes about 6 s at 16 on a usual core.
const MAX_BCRYPT_COST: u32 = 16;

/// What the endpoint enforces. The default (no file) is plain HTTP without authentication.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<ServerConfig>>,
    /// Require these users' credentials.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// Added to every response (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A digest of the file and of the certificate and key files it names, so a check can
    /// tell a rewrite (a renewed certificate included) from the same content read again.
    pub fingerprint: u64,
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
pub(super) struct RawTls {
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
    pub(super) client_auth_type: Option<String>,
    pub(super) client_ca_file: Option<String>,
    pub(super) client_ca: Option<String>,
    pub(super) client_allowed_sans: Option<Vec<String>>,
    pub(super) cipher_suites: Option<Vec<String>>,
    pub(super) curve_preferences: Option<Vec<String>>,
    pub(super) min_version: Option<String>,
    pub(super) max_version: Option<String>,
    pub(super) prefer_server_cipher_suites: Option<bool>,
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
        let file = Source::of(path);
        let raw = file.raw(text)?;
        let fingerprint = file.fingerprint(text, raw.tls_server_config.as_ref());
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
            fingerprint,
        })
    }

    /// The [`WebConfig::fingerprint`] the file at `path` would load with, found without
    /// building the TLS setup or timing a bcrypt check (which `load` does, at the highest
    /// cost in the file): what a check for a change costs.
    pub fn fingerprint_of(path: &Path) -> Result<u64, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let file = Source::of(path);
        let raw = file.raw(&text)?;
        Ok(file.fingerprint(&text, raw.tls_server_config.as_ref()))
    }
}

/// The file being checked: its name for messages and its directory for relative paths.
pub(super) struct Source {
    pub(super) path: String,
    pub(super) dir: PathBuf,
}

impl Source {
    fn of(path: &Path) -> Self {
        Source {
            path: path.display().to_string(),
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        }
    }

    /// The file's sections, unchecked. An empty file is a valid exporter-toolkit config
    /// that enables nothing.
    fn raw(&self, text: &str) -> Result<RawFile, WebConfigError> {
        if text.trim().is_empty() {
            return Ok(RawFile::default());
        }
        serde_norway::from_str(text).map_err(|source| WebConfigError::Syntax {
            path: self.path.clone(),
            source,
        })
    }

    /// A digest of `text` and of the certificate and key files it names, as they are now.
    fn fingerprint(&self, text: &str, tls: Option<&RawTls>) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut digest = std::hash::DefaultHasher::new();
        text.hash(&mut digest);
        for name in tls
            .into_iter()
            .flat_map(|t| [&t.cert_file, &t.key_file])
            .flatten()
        {
            std::fs::read(self.dir.join(name))
                .unwrap_or_default()
                .hash(&mut digest);
        }
        digest.finish()
    }

    pub(super) fn invalid(
        &self,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> WebConfigError {
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
            // bcrypt allows up to 31, but each step doubles the time, and the start and every
            // failed login run one check at the highest cost present: at 17 that is about
            // 13 s, at 31 days.
            if !(4..=MAX_BCRYPT_COST).contains(&parts.get_cost()) {
                return Err(self.invalid(
                    field,
                    format!(
                        "bcrypt cost {} is outside 4 to {MAX_BCRYPT_COST}: start-up and every failed login run one check at the highest cost, and each step doubles its time; make one with htpasswd -nBC 10",
                        parts.get_cost()
                    ),
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

#[cfg(test)]
mod tests {
    use super::*;

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
            "cost_too_high.yml",
            "basic_auth_users.admin: bcrypt cost 17 is outside 4 to 16: start-up and every failed login run one check at the highest cost, and each step doubles its time; make one with htpasswd -nBC 10",
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
    fn the_cheap_fingerprint_is_the_loaded_one_and_follows_the_named_files() {
        let dir =
            std::env::temp_dir().join(format!("flexcloud-fingerprint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.yml");
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&path, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
        let loaded = WebConfig::load(&path).unwrap().fingerprint;
        assert_eq!(WebConfig::fingerprint_of(&path).unwrap(), loaded);
        // A named certificate counts, even when only it changes (and even unreadable).
        std::fs::write(
            &path,
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n",
        )
        .unwrap();
        let before = WebConfig::fingerprint_of(&path).unwrap();
        std::fs::write(dir.join("a.crt"), "renewed").unwrap();
        assert_ne!(WebConfig::fingerprint_of(&path).unwrap(), before);
        std::fs::remove_dir_all(&dir).unwrap();
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
}
