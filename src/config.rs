//! Settings from `FLEXCLOUD_*` environment variables: parsing, defaults and validation.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;

/// Every setting: variable, default, meaning. `--help` and the README table come from
/// this one list (a test keeps the README in step).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "FLEXCLOUD_API_URL",
        "https://api.hostway.com",
        "API base URL",
    ),
    ("FLEXCLOUD_USERNAME", "(required)", "Basic-auth user"),
    ("FLEXCLOUD_PASSWORD", "(this or _FILE required)", "password"),
    (
        "FLEXCLOUD_PASSWORD_FILE",
        "",
        "file holding the password (trailing newline trimmed)",
    ),
    (
        "FLEXCLOUD_ACCOUNTS",
        "(discover)",
        "comma-separated account ids; empty = every open account from GET /accounts",
    ),
    (
        "FLEXCLOUD_ZONES",
        "(discover)",
        "comma-separated zone ids for every account; empty = each account's zones",
    ),
    (
        "FLEXCLOUD_INTERVAL",
        "60s",
        "time between collection cycles",
    ),
    (
        "FLEXCLOUD_TIMEOUT",
        "10s",
        "limit for one API request, body included",
    ),
    (
        "FLEXCLOUD_CONNECT_TIMEOUT",
        "5s",
        "limit for opening a connection to the API",
    ),
    (
        "FLEXCLOUD_CONCURRENCY",
        "8",
        "API requests in flight at most",
    ),
    (
        "FLEXCLOUD_STALE_AFTER",
        "3 x interval",
        "how long image gauges of a failing zone keep their last good values",
    ),
    (
        "FLEXCLOUD_SAVING_SERIES_LIMIT",
        "500",
        "most per-image SAVING series exported (oldest kept)",
    ),
    (
        "FLEXCLOUD_MAX_BODY_BYTES",
        "33554432",
        "largest API response body accepted (32 MiB)",
    ),
    (
        "FLEXCLOUD_ALLOW_INSECURE_HTTP",
        "false",
        "allow sending credentials over plain HTTP to a non-loopback host",
    ),
    (
        "FLEXCLOUD_READ_TIMEOUT",
        "5s",
        "limit for one read from the API's connection (cuts stalled bodies early)",
    ),
    (
        "FLEXCLOUD_CA_FILE",
        "",
        "PEM file of extra CA certificates to trust for the API",
    ),
    (
        "FLEXCLOUD_TLS_INSECURE_SKIP_VERIFY",
        "false",
        "do not verify the API's TLS certificate (dangerous; logged loudly)",
    ),
    (
        "FLEXCLOUD_SHARD",
        "",
        "N/M: collect only shard N of M of the accounts (stable hash of the account id)",
    ),
    (
        "FLEXCLOUD_WEB_CONFIG_FILE",
        "",
        "exporter-toolkit web config (TLS, basic auth) for the endpoint",
    ),
    (
        "FLEXCLOUD_LISTEN_ADDRESS",
        "0.0.0.0:9819",
        "where /metrics is served",
    ),
    (
        "FLEXCLOUD_LOG",
        "info",
        "tracing filter, e.g. debug or flexcloud_exporter=debug",
    ),
    ("FLEXCLOUD_LOG_FORMAT", "text", "log format: text or json"),
];

pub const DEFAULT_PORT: u16 = 9819;

/// A setting that stops the program before it serves anything.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is required: {expected}")]
    Missing {
        var: &'static str,
        expected: &'static str,
    },
    #[error("{var} is invalid: expected {expected}, got {value:?}")]
    Invalid {
        var: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("{var}: cannot read {path}: {source}")]
    File {
        var: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the environment: {0}")]
    Environment(#[from] envy::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub api_url: Url,
    pub username: String,
    pub password: SecretString,
    pub accounts: Vec<String>,
    pub zones: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub concurrency: usize,
    pub stale_after: Duration,
    pub saving_series_limit: usize,
    pub max_body_bytes: usize,
    pub read_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub tls_insecure_skip_verify: bool,
    pub shard: Option<Shard>,
    pub web_config_file: Option<PathBuf>,
    pub listen_address: SocketAddr,
    pub log: String,
    pub log_format: LogFormat,
}

/// The environment as strings; each is parsed below so an error can name its variable.
#[derive(Debug, Default, Deserialize)]
struct RawEnv {
    api_url: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    password_file: Option<String>,
    accounts: Option<String>,
    zones: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    concurrency: Option<String>,
    stale_after: Option<String>,
    saving_series_limit: Option<String>,
    max_body_bytes: Option<String>,
    allow_insecure_http: Option<String>,
    read_timeout: Option<String>,
    ca_file: Option<String>,
    tls_insecure_skip_verify: Option<String>,
    shard: Option<String>,
    web_config_file: Option<String>,
    listen_address: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from `(name, value)` pairs; only `FLEXCLOUD_*` names count.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let raw: RawEnv = envy::prefixed("FLEXCLOUD_").from_iter(vars)?;
        let password = match (raw.password, raw.password_file) {
            (Some(p), _) => p,
            (None, Some(path)) if !path.is_empty() => read_password_file(&path)?,
            _ => {
                return Err(ConfigError::Missing {
                    var: "FLEXCLOUD_PASSWORD",
                    expected: "set FLEXCLOUD_PASSWORD or FLEXCLOUD_PASSWORD_FILE",
                });
            }
        };
        let username = raw
            .username
            .filter(|u| !u.is_empty())
            .ok_or(ConfigError::Missing {
                var: "FLEXCLOUD_USERNAME",
                expected: "the API user name",
            })?;
        let api_url = parse_api_url(raw.api_url.as_deref())?;
        let allow_insecure = parse_bool(
            "FLEXCLOUD_ALLOW_INSECURE_HTTP",
            raw.allow_insecure_http.as_deref(),
        )?;
        if api_url.scheme() == "http" && !allow_insecure && !is_loopback(&api_url) {
            return Err(ConfigError::Invalid {
                var: "FLEXCLOUD_API_URL",
                expected: "an https:// URL (plain http only to loopback, or with FLEXCLOUD_ALLOW_INSECURE_HTTP=true)",
                value: api_url.to_string(),
            });
        }
        let interval = parse_duration(
            "FLEXCLOUD_INTERVAL",
            raw.interval.as_deref(),
            Duration::from_secs(60),
        )?;
        let stale_after = parse_duration(
            "FLEXCLOUD_STALE_AFTER",
            raw.stale_after.as_deref(),
            interval * 3,
        )?;
        let log_format = match raw.log_format.as_deref().unwrap_or("text") {
            "text" | "" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    var: "FLEXCLOUD_LOG_FORMAT",
                    expected: "text or json",
                    value: other.into(),
                });
            }
        };
        let log = raw
            .log
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "info".into());
        if !crate::telemetry::filter_is_valid(&log) {
            return Err(ConfigError::Invalid {
                var: "FLEXCLOUD_LOG",
                expected: "a tracing filter such as info, debug or flexcloud_exporter=debug,warn",
                value: log,
            });
        }
        let listen = raw.listen_address.unwrap_or_default();
        let listen_address = if listen.is_empty() {
            SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))
        } else {
            listen.parse().map_err(|_| ConfigError::Invalid {
                var: "FLEXCLOUD_LISTEN_ADDRESS",
                expected: "host:port with an IP address, e.g. 0.0.0.0:9819",
                value: listen.clone(),
            })?
        };
        Ok(Config {
            api_url,
            username,
            password,
            accounts: parse_list(raw.accounts.as_deref()),
            zones: parse_list(raw.zones.as_deref()),
            interval,
            timeout: parse_duration(
                "FLEXCLOUD_TIMEOUT",
                raw.timeout.as_deref(),
                Duration::from_secs(10),
            )?,
            connect_timeout: parse_duration(
                "FLEXCLOUD_CONNECT_TIMEOUT",
                raw.connect_timeout.as_deref(),
                Duration::from_secs(5),
            )?,
            concurrency: parse_number(
                "FLEXCLOUD_CONCURRENCY",
                raw.concurrency.as_deref(),
                8,
                1..=1024,
            )?,
            stale_after,
            saving_series_limit: parse_number(
                "FLEXCLOUD_SAVING_SERIES_LIMIT",
                raw.saving_series_limit.as_deref(),
                500,
                0..=100_000,
            )?,
            max_body_bytes: parse_number(
                "FLEXCLOUD_MAX_BODY_BYTES",
                raw.max_body_bytes.as_deref(),
                32 * 1024 * 1024,
                1024..=1024 * 1024 * 1024,
            )?,
            read_timeout: parse_duration(
                "FLEXCLOUD_READ_TIMEOUT",
                raw.read_timeout.as_deref(),
                Duration::from_secs(5),
            )?,
            ca_file: existing_file("FLEXCLOUD_CA_FILE", raw.ca_file.as_deref())?,
            tls_insecure_skip_verify: parse_bool(
                "FLEXCLOUD_TLS_INSECURE_SKIP_VERIFY",
                raw.tls_insecure_skip_verify.as_deref(),
            )?,
            shard: raw
                .shard
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(Shard::parse)
                .transpose()?,
            web_config_file: existing_file(
                "FLEXCLOUD_WEB_CONFIG_FILE",
                raw.web_config_file.as_deref(),
            )?,
            listen_address,
            log,
            log_format,
        })
    }
}

/// One shard of the accounts: this instance collects the accounts whose stable hash
/// modulo `count` is `index - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based, as operators count replicas.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::Invalid {
            var: "FLEXCLOUD_SHARD",
            expected: "N/M with 1 <= N <= M, e.g. 2/5",
            value: text.into(),
        };
        let (index, count) = text.trim().split_once('/').ok_or_else(invalid)?;
        let index: u32 = index.trim().parse().map_err(|_| invalid())?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        if index == 0 || count == 0 || index > count {
            return Err(invalid());
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard collects `account`. FNV-1a is fixed by its definition, so every
    /// replica and every version agrees on the split.
    pub fn owns(&self, account: &str) -> bool {
        use std::hash::Hasher;
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(account.as_bytes());
        hasher.finish() % u64::from(self.count) == u64::from(self.index - 1)
    }
}

impl Config {
    /// The extra CA certificates of `FLEXCLOUD_CA_FILE`, parsed.
    pub fn ca_certificates(&self) -> Result<Vec<reqwest::Certificate>, ConfigError> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let pem = std::fs::read(path).map_err(|source| ConfigError::File {
            var: "FLEXCLOUD_CA_FILE",
            path: path.display().to_string(),
            source,
        })?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => Ok(certs),
            _ => Err(ConfigError::Invalid {
                var: "FLEXCLOUD_CA_FILE",
                expected: "a PEM file with at least one certificate",
                value: path.display().to_string(),
            }),
        }
    }
}

fn existing_file(var: &'static str, value: Option<&str>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    std::fs::metadata(&path).map_err(|source| ConfigError::File {
        var,
        path: path.display().to_string(),
        source,
    })?;
    Ok(Some(path))
}

fn read_password_file(path: &str) -> Result<SecretString, ConfigError> {
    let text =
        std::fs::read_to_string(PathBuf::from(path)).map_err(|source| ConfigError::File {
            var: "FLEXCLOUD_PASSWORD_FILE",
            path: path.into(),
            source,
        })?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(ConfigError::Invalid {
            var: "FLEXCLOUD_PASSWORD_FILE",
            expected: "a file holding the password",
            value: format!("{path} (empty)"),
        });
    }
    Ok(SecretString::from(trimmed.to_string()))
}

fn parse_api_url(value: Option<&str>) -> Result<Url, ConfigError> {
    let text = value
        .filter(|v| !v.is_empty())
        .unwrap_or("https://api.hostway.com");
    let invalid = || ConfigError::Invalid {
        var: "FLEXCLOUD_API_URL",
        expected: "an http(s) URL without credentials, query or fragment, e.g. https://api.hostway.com",
        value: redact_userinfo(text),
    };
    let mut url = Url::parse(text).map_err(|_| invalid())?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !plain {
        return Err(invalid());
    }
    // Paths are joined onto the base, so it must end in a slash to keep a prefix.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Never echo a password typed into a URL back in an error.
fn redact_userinfo(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &text[..scheme], &text[at + 1..])
        }
        _ => text.to_string(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn parse_list(value: Option<&str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && seen.insert(s.to_string()))
        .map(String::from)
        .collect()
}

fn parse_duration(
    var: &'static str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(ConfigError::Invalid {
            var,
            expected: "a positive duration such as 30s, 5m or 1h30m",
            value: text.into(),
        }),
    }
}

fn parse_number(
    var: &'static str,
    value: Option<&str>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            var,
            expected: number_expectation(var),
            value: text.into(),
        }),
    }
}

fn number_expectation(var: &str) -> &'static str {
    match var {
        "FLEXCLOUD_CONCURRENCY" => "a whole number from 1 to 1024",
        "FLEXCLOUD_SAVING_SERIES_LIMIT" => "a whole number from 0 to 100000",
        _ => "a whole number of bytes from 1024 to 1073741824",
    }
}

fn parse_bool(var: &'static str, value: Option<&str>) -> Result<bool, ConfigError> {
    match value.unwrap_or("").to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" => Ok(false),
        "true" | "1" | "yes" => Ok(true),
        other => Err(ConfigError::Invalid {
            var,
            expected: "true or false",
            value: other.into(),
        }),
    }
}

/// The `--help` text: usage and every variable with its default.
pub fn help_text() -> String {
    let mut text = String::from(concat!(
        "flexcloud-exporter ",
        env!("CARGO_PKG_VERSION"),
        ": Prometheus exporter for the Hostway FlexCloud image API\n\n",
        "USAGE:\n",
        "  flexcloud-exporter                 run the exporter, configured by the environment\n",
        "  flexcloud-exporter --demo          run against a built-in simulated API (no credentials)\n",
        "  flexcloud-exporter --once          run one cycle, print the metrics, exit 0 if every probe succeeded\n",
        "  flexcloud-exporter --health-check URL   exit 0 if URL answers 200 within 5s, else 1\n",
        "  flexcloud-exporter simulate --scenario FILE [--listen ADDR] [--print-scenario]\n",
        "                                     serve the API simulator (default listen 127.0.0.1:0)\n",
        "  flexcloud-exporter --help | --version\n\n",
        "ENVIRONMENT (default in brackets):\n",
    ));
    for (name, default, meaning) in VARIABLES {
        let default = if default.is_empty() {
            String::new()
        } else {
            format!(" [{default}]")
        };
        text.push_str(&format!("  {name:<35} {meaning}{default}\n"));
    }
    text.push_str("\nExit codes: 0 ok, 1 failure at run time (or a failed probe with --once), 2 bad setting or usage.\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base() -> Vec<(String, String)> {
        env(&[("FLEXCLOUD_USERNAME", "u"), ("FLEXCLOUD_PASSWORD", "p")])
    }

    fn with(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut vars = base();
        vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        vars.extend(env(extra));
        Config::from_vars(vars)
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_vars(base()).unwrap();
        assert_eq!(c.api_url.as_str(), "https://api.hostway.com/");
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.stale_after, Duration::from_secs(180));
        assert_eq!(c.listen_address, "0.0.0.0:9819".parse().unwrap());
        assert!(c.accounts.is_empty() && c.zones.is_empty());
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn lists_are_trimmed_and_deduplicated() {
        let c = with(&[
            ("FLEXCLOUD_ACCOUNTS", " a, b,,a "),
            ("FLEXCLOUD_ZONES", "Z1"),
        ])
        .unwrap();
        assert_eq!(c.accounts, ["a", "b"]);
        assert_eq!(c.zones, ["Z1"]);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("FLEXCLOUD_INTERVAL", "soon"),
            ("FLEXCLOUD_INTERVAL", "0s"),
            ("FLEXCLOUD_TIMEOUT", "-1"),
            ("FLEXCLOUD_CONCURRENCY", "0"),
            ("FLEXCLOUD_CONCURRENCY", "many"),
            ("FLEXCLOUD_LISTEN_ADDRESS", "localhost"),
            ("FLEXCLOUD_LOG_FORMAT", "xml"),
            ("FLEXCLOUD_API_URL", "ftp://x"),
            ("FLEXCLOUD_API_URL", "http://api.example.com"),
            ("FLEXCLOUD_MAX_BODY_BYTES", "10"),
            ("FLEXCLOUD_ALLOW_INSECURE_HTTP", "maybe"),
        ];
        for (var, value) in cases {
            let err = with(&[(var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn missing_credentials_are_named() {
        let err = Config::from_vars(env(&[("FLEXCLOUD_PASSWORD", "p")])).unwrap_err();
        assert!(err.to_string().starts_with("FLEXCLOUD_USERNAME"));
        let err = Config::from_vars(env(&[("FLEXCLOUD_USERNAME", "u")])).unwrap_err();
        assert!(err.to_string().starts_with("FLEXCLOUD_PASSWORD"));
    }

    #[test]
    fn password_file_has_its_trailing_newline_trimmed() {
        let dir =
            std::env::temp_dir().join(format!("flexcloud-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "hunter2\n").unwrap();
        let c = Config::from_vars(env(&[
            ("FLEXCLOUD_USERNAME", "u"),
            ("FLEXCLOUD_PASSWORD_FILE", file.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(c.password.expose_secret(), "hunter2");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = Config::from_vars(env(&[
            ("FLEXCLOUD_USERNAME", "u"),
            ("FLEXCLOUD_PASSWORD_FILE", "/nonexistent/pw"),
        ]));
        assert!(
            err.unwrap_err()
                .to_string()
                .starts_with("FLEXCLOUD_PASSWORD_FILE")
        );
    }

    #[test]
    fn a_password_in_the_url_is_rejected_without_echoing_it() {
        let err = with(&[(
            "FLEXCLOUD_API_URL",
            "https://user:topsecret@api.example.com",
        )])
        .unwrap_err();
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }

    #[test]
    fn plain_http_is_allowed_to_loopback_or_when_asked() {
        assert!(with(&[("FLEXCLOUD_API_URL", "http://127.0.0.1:8080")]).is_ok());
        assert!(with(&[("FLEXCLOUD_API_URL", "http://localhost:8080/api")]).is_ok());
        assert!(
            with(&[
                ("FLEXCLOUD_API_URL", "http://api.internal"),
                ("FLEXCLOUD_ALLOW_INSECURE_HTTP", "true")
            ])
            .is_ok()
        );
    }

    #[test]
    fn shards_parse_and_split_accounts_exactly_once() {
        for bad in ["0/3", "4/3", "1", "a/b", "1/0"] {
            let err = with(&[("FLEXCLOUD_SHARD", bad)]).unwrap_err().to_string();
            assert!(err.starts_with("FLEXCLOUD_SHARD"), "{bad}: {err}");
        }
        let shards: Vec<Shard> = (1..=5)
            .map(|i| Shard::parse(&format!("{i}/5")).unwrap())
            .collect();
        let mut sizes = [0usize; 5];
        for n in 0..10_000 {
            let account = format!("acct{n:05}");
            let owners: Vec<usize> = (0..5).filter(|&i| shards[i].owns(&account)).collect();
            assert_eq!(owners.len(), 1, "{account} has exactly one owner");
            sizes[owners[0]] += 1;
        }
        // A fair hash gives each of five shards about 2,000 of 10,000 accounts.
        assert!(
            sizes.iter().all(|&n| (1_700..=2_300).contains(&n)),
            "{sizes:?}"
        );
        assert_eq!(
            with(&[("FLEXCLOUD_SHARD", "2/5")]).unwrap().shard,
            Some(Shard { index: 2, count: 5 })
        );
    }

    #[test]
    fn a_bad_log_filter_is_named() {
        let err = with(&[("FLEXCLOUD_LOG", "info,[=")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("FLEXCLOUD_LOG"), "{err}");
    }

    #[test]
    fn help_lists_every_variable() {
        let help = help_text();
        for (name, default, _) in VARIABLES {
            assert!(help.contains(name) && help.contains(default), "{name}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let c = with(&[("FLEXCLOUD_PASSWORD", "hunter2-secret")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2-secret"));
    }
}
