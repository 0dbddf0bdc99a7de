//! Settings from `FLEXCLOUD_*` environment variables: one declaration per setting drives
//! parsing, defaults, `--help` and the README's settings table.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

use crate::telemetry::{self, LogFormat};

/// The port the exporter listens on unless told otherwise. Not registered in the
/// Prometheus default-port list (the list is full); configurable.
pub const DEFAULT_PORT: u16 = 9819;

/// The prefix every setting's variable starts with.
const PREFIX: &str = "FLEXCLOUD_";

/// How a setting's default is shown and applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// Used when the variable is unset or empty, parsed like a value that was set.
    Value(&'static str),
    /// Computed or required; the text says which, e.g. `3 x interval` or `(required)`.
    Described(&'static str),
    /// Off when unset.
    Unset,
}

impl DefaultValue {
    /// The default as `--help` and the README show it; empty for [`DefaultValue::Unset`].
    pub fn shown(self) -> &'static str {
        match self {
            DefaultValue::Value(text) | DefaultValue::Described(text) => text,
            DefaultValue::Unset => "",
        }
    }
}

/// One setting: its variable, default, meaning and parser. Every setting is declared once,
/// as a constant below, and listed in [`SETTINGS`].
#[derive(Debug)]
pub struct Setting<T> {
    pub name: &'static str,
    pub default: DefaultValue,
    pub help: &'static str,
    /// What a valid value looks like, for the error message.
    expected: &'static str,
    parse: fn(&str) -> Option<T>,
    /// Whether the value may be shown in an error message.
    secret: bool,
}

/// What `--help` and the README need of a setting, whatever its type.
#[derive(Debug, Clone, Copy)]
pub struct SettingDoc {
    pub name: &'static str,
    pub default: DefaultValue,
    pub help: &'static str,
}

impl<T> Setting<T> {
    pub const fn doc(&self) -> SettingDoc {
        SettingDoc {
            name: self.name,
            default: self.default,
            help: self.help,
        }
    }
}

pub const API_URL: Setting<Url> = Setting {
    name: "FLEXCLOUD_API_URL",
    default: DefaultValue::Value("https://api.hostway.com"),
    help: "API base URL",
    expected: "an http(s) URL without credentials, query or fragment, e.g. https://api.hostway.com",
    parse: parse_api_url,
    secret: false,
};
pub const USERNAME: Setting<String> = Setting {
    name: "FLEXCLOUD_USERNAME",
    default: DefaultValue::Described("(required)"),
    help: "Basic-auth user",
    expected: "the API user name",
    parse: parse_text,
    secret: false,
};
pub const PASSWORD: Setting<SecretString> = Setting {
    name: "FLEXCLOUD_PASSWORD",
    default: DefaultValue::Described("(this or _FILE required)"),
    help: "password",
    expected: "set FLEXCLOUD_PASSWORD or FLEXCLOUD_PASSWORD_FILE",
    parse: parse_secret,
    secret: true,
};
pub const PASSWORD_FILE: Setting<PathBuf> = Setting {
    name: "FLEXCLOUD_PASSWORD_FILE",
    default: DefaultValue::Unset,
    help: "file holding the password (trailing newline trimmed); read again at every cycle, after a 401 and on SIGHUP",
    expected: "a path",
    parse: parse_path,
    secret: false,
};
pub const ACCOUNTS: Setting<Vec<String>> = Setting {
    name: "FLEXCLOUD_ACCOUNTS",
    default: DefaultValue::Described("(discover)"),
    help: "comma-separated account ids; empty = every open account from GET /accounts",
    expected: "comma-separated account ids (none of them . or ..)",
    parse: |text| parse_list(text).filter(|ids| ids.iter().all(|id| id != "." && id != "..")),
    secret: false,
};
pub const ZONES: Setting<Vec<String>> = Setting {
    name: "FLEXCLOUD_ZONES",
    default: DefaultValue::Described("(discover)"),
    help: "comma-separated zone ids for every account; empty = each account's zones",
    expected: "comma-separated zone ids",
    parse: parse_list,
    secret: false,
};
pub const INTERVAL: Setting<Duration> = Setting {
    name: "FLEXCLOUD_INTERVAL",
    default: DefaultValue::Value("60s"),
    help: "time between collection cycles (1s to 24h)",
    expected: "a duration from 1s to 24h, such as 30s, 5m or 1h30m",
    parse: |text| duration_within(text, SECOND, DAY),
    secret: false,
};
pub const TIMEOUT: Setting<Duration> = Setting {
    name: "FLEXCLOUD_TIMEOUT",
    default: DefaultValue::Described("10s, or half the interval if that is less"),
    help: "limit for one API request, body included (100ms to 1h, below the interval)",
    expected: "a duration from 100ms to 1h, such as 10s",
    parse: |text| duration_within(text, TENTH, HOUR),
    secret: false,
};
pub const CYCLE_TIMEOUT: Setting<Duration> = Setting {
    name: "FLEXCLOUD_CYCLE_TIMEOUT",
    default: DefaultValue::Described("the interval"),
    help: "every cycle ends this long after it began; steps still running fail as deadline (1s to the interval)",
    expected: "a duration from 1s to 24h, at most FLEXCLOUD_INTERVAL, such as 50s",
    parse: |text| duration_within(text, SECOND, DAY),
    secret: false,
};
pub const CONNECT_TIMEOUT: Setting<Duration> = Setting {
    name: "FLEXCLOUD_CONNECT_TIMEOUT",
    default: DefaultValue::Value("5s"),
    help: "limit for opening a connection to the API (100ms to 1h)",
    expected: "a duration from 100ms to 1h, such as 5s",
    parse: |text| duration_within(text, TENTH, HOUR),
    secret: false,
};
pub const CONCURRENCY: Setting<usize> = Setting {
    name: "FLEXCLOUD_CONCURRENCY",
    default: DefaultValue::Value("8"),
    help: "API requests in flight at most",
    expected: "a whole number from 1 to 1024",
    parse: |text| parse_number(text, 1, 1024),
    secret: false,
};
pub const MAX_REQUEST_RATE: Setting<f64> = Setting {
    name: "FLEXCLOUD_MAX_REQUEST_RATE",
    default: DefaultValue::Unset,
    help: "API requests per second at most, spread evenly (no bursts); unset = no limit. A 429 pauses every request for its Retry-After (60s at most) and halves the requests in flight",
    expected: "a number of requests per second from 0.01 to 10000, such as 20 or 0.5",
    parse: |text| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.01..=10_000.0).contains(r))
    },
    secret: false,
};
pub const STALE_AFTER: Setting<Duration> = Setting {
    name: "FLEXCLOUD_STALE_AFTER",
    default: DefaultValue::Described("3 x interval"),
    help: "how long the image counts and ages of a failing zone keep their last good values (up to 30 days); its SAVING images stay until the zone is read again",
    expected: "a positive duration of at most 30 days, such as 3m or 1h",
    parse: |text| duration_within(text, Duration::from_nanos(1), DAY.saturating_mul(30)),
    secret: false,
};
pub const SAVING_SERIES_LIMIT: Setting<usize> = Setting {
    name: "FLEXCLOUD_SAVING_SERIES_LIMIT",
    default: DefaultValue::Value("500"),
    help: "most per-image SAVING series exported (oldest kept)",
    expected: "a whole number from 0 to 100000",
    parse: |text| parse_number(text, 0, 100_000),
    secret: false,
};
pub const MAX_BODY_BYTES: Setting<usize> = Setting {
    name: "FLEXCLOUD_MAX_BODY_BYTES",
    default: DefaultValue::Value("33554432"),
    help: "largest API response body accepted (32 MiB)",
    expected: "a whole number of bytes from 1024 to 1073741824",
    parse: |text| parse_number(text, 1024, 1024 * 1024 * 1024),
    secret: false,
};
pub const ALLOW_INSECURE_HTTP: Setting<bool> = Setting {
    name: "FLEXCLOUD_ALLOW_INSECURE_HTTP",
    default: DefaultValue::Value("false"),
    help: "allow sending credentials over plain HTTP to a non-loopback host",
    expected: BOOL,
    parse: parse_bool,
    secret: false,
};
pub const READ_TIMEOUT: Setting<Duration> = Setting {
    name: "FLEXCLOUD_READ_TIMEOUT",
    default: DefaultValue::Value("5s"),
    help: "limit for one read from the API's connection, cutting stalled bodies early (100ms to 1h)",
    expected: "a duration from 100ms to 1h, such as 5s",
    parse: |text| duration_within(text, TENTH, HOUR),
    secret: false,
};
pub const CA_FILE: Setting<PathBuf> = Setting {
    name: "FLEXCLOUD_CA_FILE",
    default: DefaultValue::Unset,
    help: "PEM file of extra CA certificates to trust for the API",
    expected: "a path",
    parse: parse_path,
    secret: false,
};
pub const TLS_INSECURE_SKIP_VERIFY: Setting<bool> = Setting {
    name: "FLEXCLOUD_TLS_INSECURE_SKIP_VERIFY",
    default: DefaultValue::Value("false"),
    help: "do not verify the API's TLS certificate (dangerous; logged loudly)",
    expected: BOOL,
    parse: parse_bool,
    secret: false,
};
pub const SHARD: Setting<ShardSpec> = Setting {
    name: "FLEXCLOUD_SHARD",
    default: DefaultValue::Unset,
    help: "N/M: collect only shard N of M of the accounts (stable hash of the account id); auto: N from the StatefulSet pod name (`name-0` is 1), M from FLEXCLOUD_SHARD_COUNT",
    expected: "N/M with 1 <= N <= M, e.g. 2/5, or auto",
    parse: ShardSpec::parse,
    secret: false,
};
pub const SHARD_COUNT: Setting<u32> = Setting {
    name: "FLEXCLOUD_SHARD_COUNT",
    default: DefaultValue::Unset,
    help: "with FLEXCLOUD_SHARD=auto: the number of shards M (the StatefulSet's replicas)",
    expected: "a whole number from 1 to 1000",
    parse: |text| parse_number(text, 1, MAX_SHARDS as usize).and_then(|n| u32::try_from(n).ok()),
    secret: false,
};
pub const POD_NAME: Setting<String> = Setting {
    name: "FLEXCLOUD_POD_NAME",
    default: DefaultValue::Described("$HOSTNAME"),
    help: "with FLEXCLOUD_SHARD=auto: the pod name whose trailing `-<ordinal>` picks the shard",
    expected: "a StatefulSet pod name ending in -<ordinal>, e.g. flexcloud-exporter-0",
    parse: parse_text,
    secret: false,
};
pub const WEB_CONFIG_FILE: Setting<PathBuf> = Setting {
    name: "FLEXCLOUD_WEB_CONFIG_FILE",
    default: DefaultValue::Unset,
    help: "exporter-toolkit web config (TLS, basic auth) for the endpoint",
    expected: "a path",
    parse: parse_path,
    secret: false,
};
pub const WEB_MAX_CONNECTIONS: Setting<usize> = Setting {
    name: "FLEXCLOUD_WEB_MAX_CONNECTIONS",
    default: DefaultValue::Value("512"),
    help: "open connections to the endpoint at most; more are closed at once and counted",
    expected: "a whole number from 1 to 65536",
    parse: |text| parse_number(text, 1, 65_536),
    secret: false,
};
pub const WEB_IDLE_TIMEOUT: Setting<Duration> = Setting {
    name: "FLEXCLOUD_WEB_IDLE_TIMEOUT",
    default: DefaultValue::Value("2m"),
    help: "how long a keep-alive connection to the endpoint may stay silent between requests (1s to 24h)",
    expected: "a duration from 1s to 24h, such as 2m",
    parse: |text| duration_within(text, SECOND, DAY),
    secret: false,
};
pub const LISTEN_ADDRESS: Setting<SocketAddr> = Setting {
    name: "FLEXCLOUD_LISTEN_ADDRESS",
    default: DefaultValue::Value("0.0.0.0:9819"),
    help: "where /metrics is served",
    expected: "host:port with an IP address, e.g. 0.0.0.0:9819",
    parse: |text| text.parse().ok(),
    secret: false,
};
pub const LOG: Setting<String> = Setting {
    name: "FLEXCLOUD_LOG",
    default: DefaultValue::Value("info"),
    help: "log filter: a level (trace, debug, info, warn, error, off) and target=level directives",
    expected: "a level (trace, debug, info, warn, error or off) or target=level directives, such as info or warn,flexcloud_exporter=debug",
    parse: |text| telemetry::filter_is_valid(text).then(|| text.to_string()),
    secret: false,
};
pub const LOG_FORMAT: Setting<LogFormat> = Setting {
    name: "FLEXCLOUD_LOG_FORMAT",
    default: DefaultValue::Value("text"),
    help: "log format: text or json",
    expected: "text or json",
    parse: LogFormat::parse,
    secret: false,
};

/// Every setting, in the order `--help` and the README list them.
pub const SETTINGS: &[SettingDoc] = &[
    API_URL.doc(),
    USERNAME.doc(),
    PASSWORD.doc(),
    PASSWORD_FILE.doc(),
    ACCOUNTS.doc(),
    ZONES.doc(),
    INTERVAL.doc(),
    CYCLE_TIMEOUT.doc(),
    TIMEOUT.doc(),
    CONNECT_TIMEOUT.doc(),
    CONCURRENCY.doc(),
    MAX_REQUEST_RATE.doc(),
    STALE_AFTER.doc(),
    SAVING_SERIES_LIMIT.doc(),
    MAX_BODY_BYTES.doc(),
    ALLOW_INSECURE_HTTP.doc(),
    READ_TIMEOUT.doc(),
    CA_FILE.doc(),
    TLS_INSECURE_SKIP_VERIFY.doc(),
    SHARD.doc(),
    SHARD_COUNT.doc(),
    POD_NAME.doc(),
    WEB_CONFIG_FILE.doc(),
    WEB_MAX_CONNECTIONS.doc(),
    WEB_IDLE_TIMEOUT.doc(),
    LISTEN_ADDRESS.doc(),
    LOG.doc(),
    LOG_FORMAT.doc(),
];

const TENTH: Duration = Duration::from_millis(100);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const BOOL: &str = "true or false";

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
    #[error("{var} is not valid UTF-8")]
    NotUnicode { var: String },
    #[error("{var} is invalid: {problem}")]
    Conflict { var: &'static str, problem: String },
    #[error("{var} is not a setting of flexcloud-exporter{}", suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_else(|| " (see --help)".into()))]
    Unknown {
        var: String,
        suggestion: Option<&'static str>,
    },
    #[error("{var}: cannot read {path}: {source}")]
    File {
        var: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub api_url: Url,
    pub username: String,
    pub password: SecretString,
    /// Where the password came from, when from a file: read again on change.
    pub password_file: Option<PathBuf>,
    pub accounts: Vec<String>,
    pub zones: Vec<String>,
    pub interval: Duration,
    pub cycle_timeout: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub concurrency: usize,
    pub max_request_rate: Option<f64>,
    pub stale_after: Duration,
    pub saving_series_limit: usize,
    pub max_body_bytes: usize,
    pub read_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub tls_insecure_skip_verify: bool,
    pub shard: Option<Shard>,
    pub web_config_file: Option<PathBuf>,
    pub web_max_connections: usize,
    pub web_idle_timeout: Duration,
    pub listen_address: SocketAddr,
    pub log: String,
    pub log_format: LogFormat,
}

/// Where the API is and who the exporter is to it.
#[derive(Debug, Clone)]
pub struct ApiAccess {
    pub url: Url,
    pub username: String,
    pub password: SecretString,
    pub password_file: Option<PathBuf>,
}

/// Defaults that a mode other than the plain exporter puts in place of the declared ones,
/// for settings the user left unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModeDefaults {
    pub listen_address: Option<SocketAddr>,
    pub interval: Option<Duration>,
}

/// The `FLEXCLOUD_*` variables of an environment, and `HOSTNAME`, which is the pod name
/// in Kubernetes and so the fallback of `FLEXCLOUD_POD_NAME`.
struct Env {
    vars: BTreeMap<String, String>,
    hostname: Option<String>,
}

impl Env {
    fn read<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut found = BTreeMap::new();
        let mut hostname = None;
        for (name, value) in vars {
            // A name that is not UTF-8 cannot be one of ours.
            let Some(name) = name.as_ref().to_str() else {
                continue;
            };
            if name == "HOSTNAME" {
                hostname = value.as_ref().to_str().map(str::to_string);
                continue;
            }
            if !name.starts_with(PREFIX) {
                continue;
            }
            let value = value
                .as_ref()
                .to_str()
                .ok_or_else(|| ConfigError::NotUnicode { var: name.into() })?;
            found.insert(name.to_string(), value.to_string());
        }
        Ok(Env {
            vars: found,
            hostname,
        })
    }

    /// The variable's value, `None` when unset or empty.
    fn text(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The setting's value, its default when unset, `None` when it has no value default.
    fn get<T>(&self, setting: &Setting<T>) -> Result<Option<T>, ConfigError> {
        let text = match (self.text(setting.name), setting.default) {
            (Some(text), _) | (None, DefaultValue::Value(text)) => text,
            (None, _) => return Ok(None),
        };
        (setting.parse)(text)
            .map(Some)
            .ok_or_else(|| ConfigError::Invalid {
                var: setting.name,
                expected: setting.expected,
                value: if setting.secret {
                    "***".into()
                } else {
                    without_userinfo(text)
                },
            })
    }

    /// The value of a setting that has a value default or must be set.
    fn required<T>(&self, setting: &Setting<T>) -> Result<T, ConfigError> {
        self.get(setting)?.ok_or(ConfigError::Missing {
            var: setting.name,
            expected: setting.expected,
        })
    }

    /// A misspelt setting must stop the program, not be silently ignored; Kubernetes'
    /// service links, which share the prefix, are not settings and are passed over.
    fn reject_unknown(&self) -> Result<(), ConfigError> {
        let unknown = self.vars.keys().find(|name| {
            !SETTINGS.iter().any(|s| s.name == name.as_str()) && !is_service_link(name)
        });
        match unknown {
            None => Ok(()),
            Some(name) => Err(ConfigError::Unknown {
                var: name.clone(),
                suggestion: closest_setting(name),
            }),
        }
    }
}

/// The names of the variables Kubernetes puts into every container of a namespace that has
/// a Service named `flexcloud` or `flexcloud-exporter` (unless the pod sets
/// `enableServiceLinks: false`): `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT[_<PORT NAME>]`,
/// `<SVC>_PORT` and `<SVC>_PORT_<N>_<PROTO>[_PROTO|_PORT|_ADDR]`.
fn is_service_link(name: &str) -> bool {
    ["FLEXCLOUD_EXPORTER_", "FLEXCLOUD_"].iter().any(|service| {
        let Some(rest) = name.strip_prefix(service) else {
            return false;
        };
        if rest == "SERVICE_HOST" || rest == "SERVICE_PORT" || rest == "PORT" {
            return true;
        }
        if let Some(port_name) = rest.strip_prefix("SERVICE_PORT_") {
            return !port_name.is_empty();
        }
        let Some(port) = rest.strip_prefix("PORT_") else {
            return false;
        };
        let mut parts = port.splitn(3, '_');
        let number = parts.next().unwrap_or_default();
        let protocol = parts.next().unwrap_or_default();
        let field = parts.next();
        !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && matches!(protocol, "TCP" | "UDP" | "SCTP")
            && field.is_none_or(|f| matches!(f, "PROTO" | "PORT" | "ADDR"))
    })
}

/// The setting whose name is nearest to `name`, when one is near enough to be meant.
fn closest_setting(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|s| (strsim::levenshtein(name, s.name), s.name))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, name)| name)
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars_os())
    }

    /// Reads settings from `(name, value)` pairs; only `FLEXCLOUD_*` names count.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let env = Env::read(vars)?;
        let access = api_access(&env)?;
        build(&env, access, ModeDefaults::default())
    }

    /// Settings for an API the caller provides (demo mode): the API URL and credentials
    /// are `access`, whatever the environment says; `defaults` replace declared defaults
    /// of settings the environment leaves unset.
    pub fn with_api<I, K, V>(
        vars: I,
        access: ApiAccess,
        defaults: ModeDefaults,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let env = Env::read(vars)?;
        build(&env, access, defaults)
    }

    /// The extra CA certificates of `FLEXCLOUD_CA_FILE`, parsed.
    pub fn ca_certificates(&self) -> Result<Vec<reqwest::Certificate>, ConfigError> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let pem = std::fs::read(path).map_err(|source| ConfigError::File {
            var: CA_FILE.name,
            path: path.display().to_string(),
            source,
        })?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => Ok(certs),
            _ => Err(ConfigError::Invalid {
                var: CA_FILE.name,
                expected: "a PEM file with at least one certificate",
                value: path.display().to_string(),
            }),
        }
    }
}

fn api_access(env: &Env) -> Result<ApiAccess, ConfigError> {
    let password_file: Option<PathBuf> = env.get(&PASSWORD_FILE)?;
    let password = match (env.get(&PASSWORD)?, password_file.clone()) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Conflict {
                var: PASSWORD_FILE.name,
                problem: "set either FLEXCLOUD_PASSWORD or FLEXCLOUD_PASSWORD_FILE, not both"
                    .into(),
            });
        }
        (Some(p), None) => p,
        (None, Some(path)) => read_password_file(&path)?,
        (None, None) => env.required(&PASSWORD)?,
    };
    let username = env.required(&USERNAME)?;
    if let Some(url) = env.text(API_URL.name).filter(|u| u.contains('@')) {
        return Err(ConfigError::Conflict {
            var: API_URL.name,
            problem: format!(
                "must not carry credentials; set FLEXCLOUD_USERNAME and FLEXCLOUD_PASSWORD_FILE instead (got {})",
                without_userinfo(url)
            ),
        });
    }
    Ok(ApiAccess {
        url: env.required(&API_URL)?,
        username,
        password,
        password_file,
    })
}

fn build(env: &Env, access: ApiAccess, defaults: ModeDefaults) -> Result<Config, ConfigError> {
    let allow_insecure = env.required(&ALLOW_INSECURE_HTTP)?;
    if access.url.scheme() == "http" && !allow_insecure && !is_loopback(&access.url) {
        return Err(ConfigError::Invalid {
            var: API_URL.name,
            expected: "an https:// URL (plain http only to loopback, or with FLEXCLOUD_ALLOW_INSECURE_HTTP=true)",
            value: access.url.to_string(),
        });
    }
    env.reject_unknown()?;
    let interval = match (env.text(INTERVAL.name), defaults.interval) {
        (None, Some(interval)) => interval,
        _ => env.required(&INTERVAL)?,
    };
    let cycle_timeout = env.get(&CYCLE_TIMEOUT)?.unwrap_or(interval);
    if cycle_timeout > interval {
        return Err(ConfigError::Conflict {
            var: CYCLE_TIMEOUT.name,
            problem: format!(
                "must be at most FLEXCLOUD_INTERVAL ({}), so a cycle ends before the next is due; got {}",
                humantime::format_duration(interval),
                humantime::format_duration(cycle_timeout)
            ),
        });
    }
    let timeout = env
        .get(&TIMEOUT)?
        .unwrap_or_else(|| DEFAULT_TIMEOUT.min(interval / 2));
    if timeout >= interval {
        return Err(ConfigError::Conflict {
            var: TIMEOUT.name,
            problem: format!(
                "must be shorter than FLEXCLOUD_INTERVAL ({}), so a request ends within its cycle; got {}",
                humantime::format_duration(interval),
                humantime::format_duration(timeout)
            ),
        });
    }
    let listen_address = match (env.text(LISTEN_ADDRESS.name), defaults.listen_address) {
        (None, Some(address)) => address,
        _ => env.required(&LISTEN_ADDRESS)?,
    };
    Ok(Config {
        api_url: access.url,
        username: access.username,
        password: access.password,
        password_file: access.password_file,
        accounts: env.get(&ACCOUNTS)?.unwrap_or_default(),
        zones: env.get(&ZONES)?.unwrap_or_default(),
        interval,
        cycle_timeout,
        timeout,
        connect_timeout: env.required(&CONNECT_TIMEOUT)?,
        concurrency: env.required(&CONCURRENCY)?,
        max_request_rate: env.get(&MAX_REQUEST_RATE)?,
        stale_after: env
            .get(&STALE_AFTER)?
            .unwrap_or_else(|| interval.saturating_mul(3)),
        saving_series_limit: env.required(&SAVING_SERIES_LIMIT)?,
        max_body_bytes: env.required(&MAX_BODY_BYTES)?,
        read_timeout: env.required(&READ_TIMEOUT)?,
        ca_file: existing_file(CA_FILE.name, env.get(&CA_FILE)?)?,
        tls_insecure_skip_verify: env.required(&TLS_INSECURE_SKIP_VERIFY)?,
        shard: shard(env)?,
        web_config_file: existing_file(WEB_CONFIG_FILE.name, env.get(&WEB_CONFIG_FILE)?)?,
        web_max_connections: env.required(&WEB_MAX_CONNECTIONS)?,
        web_idle_timeout: env.required(&WEB_IDLE_TIMEOUT)?,
        listen_address,
        log: env.required(&LOG)?,
        log_format: env.required(&LOG_FORMAT)?,
    })
}

/// Shards a fleet may be split into; far more than an API could want polled at once.
const MAX_SHARDS: u32 = 1000;

/// What `FLEXCLOUD_SHARD` says: a shard, or that the pod name tells which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    Auto,
}

impl ShardSpec {
    fn parse(text: &str) -> Option<Self> {
        if text.trim().eq_ignore_ascii_case("auto") {
            return Some(ShardSpec::Auto);
        }
        Shard::parse(text).map(ShardSpec::Fixed)
    }
}

/// The shard this instance collects, from `FLEXCLOUD_SHARD` and, for `auto`, the pod name
/// and `FLEXCLOUD_SHARD_COUNT`. A count without `auto` is refused rather than ignored: an
/// operator who sets it expects it to decide something.
fn shard(env: &Env) -> Result<Option<Shard>, ConfigError> {
    let count = env.get(&SHARD_COUNT)?;
    match (env.get(&SHARD)?, count) {
        (None, None) => Ok(None),
        (Some(ShardSpec::Fixed(shard)), None) => Ok(Some(shard)),
        (None | Some(ShardSpec::Fixed(_)), Some(_)) => Err(ConfigError::Conflict {
            var: SHARD_COUNT.name,
            problem: "is used only with FLEXCLOUD_SHARD=auto (FLEXCLOUD_SHARD=N/M gives the count itself)".into(),
        }),
        (Some(ShardSpec::Auto), None) => Err(ConfigError::Missing {
            var: SHARD_COUNT.name,
            expected: "with FLEXCLOUD_SHARD=auto, the number of shards (the StatefulSet's replicas)",
        }),
        (Some(ShardSpec::Auto), Some(count)) => {
            let (var, pod) = match (env.get(&POD_NAME)?, env.hostname.as_deref()) {
                (Some(pod), _) => (POD_NAME.name, pod),
                (None, Some(host)) if !host.is_empty() => ("HOSTNAME", host.to_string()),
                (None, _) => {
                    return Err(ConfigError::Missing {
                        var: POD_NAME.name,
                        expected: "with FLEXCLOUD_SHARD=auto, the pod name (or HOSTNAME set to it)",
                    });
                }
            };
            let ordinal = pod_ordinal(&pod).ok_or_else(|| ConfigError::Invalid {
                var,
                expected: POD_NAME.expected,
                value: pod.clone(),
            })?;
            match ordinal.checked_add(1).filter(|&index| index <= count) {
                Some(index) => Ok(Some(Shard { index, count })),
                None => Err(ConfigError::Conflict {
                    var: SHARD_COUNT.name,
                    problem: format!(
                        "pod {pod} has ordinal {ordinal}, so it would be shard {} of {count}: raise FLEXCLOUD_SHARD_COUNT to the StatefulSet's replicas",
                        u64::from(ordinal) + 1
                    ),
                }),
            }
        }
    }
}

/// The ordinal a StatefulSet gives a pod: the number after the name's last `-`.
fn pod_ordinal(pod: &str) -> Option<u32> {
    let (name, ordinal) = pod.trim().rsplit_once('-')?;
    let digits = !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit());
    // "01" is no StatefulSet ordinal; accepting it would let two names map to one shard.
    let canonical = ordinal == "0" || !ordinal.starts_with('0');
    if name.is_empty() || !digits || !canonical {
        return None;
    }
    ordinal.parse().ok()
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
    fn parse(text: &str) -> Option<Self> {
        let (index, count) = text.trim().split_once('/')?;
        let index: u32 = index.trim().parse().ok()?;
        let count: u32 = count.trim().parse().ok()?;
        (index >= 1 && index <= count && count <= MAX_SHARDS).then_some(Shard { index, count })
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

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn existing_file(var: &'static str, path: Option<PathBuf>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = path else {
        return Ok(None);
    };
    std::fs::metadata(&path).map_err(|source| ConfigError::File {
        var,
        path: path.display().to_string(),
        source,
    })?;
    Ok(Some(path))
}

/// The largest password file read; a password is tens of bytes, and the limit keeps a wrong
/// path (a log, a device) from filling memory or every request header.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// The password in `path`: a regular file (symlinks followed, as Kubernetes mounts Secrets)
/// of at most [`MAX_PASSWORD_FILE_BYTES`], one trailing newline trimmed.
pub fn read_password_file(path: &std::path::Path) -> Result<SecretString, ConfigError> {
    use std::io::Read;
    let file_error = |source| ConfigError::File {
        var: PASSWORD_FILE.name,
        path: path.display().to_string(),
        source,
    };
    let invalid = |expected| ConfigError::Invalid {
        var: PASSWORD_FILE.name,
        expected,
        value: path.display().to_string(),
    };
    // Opened without blocking, so a FIFO (even one swapped in after a check) cannot wait
    // for a writer; the type is checked on what was opened, not on the path.
    let file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(file_error)?
    };
    let metadata = file.metadata().map_err(file_error)?;
    if !metadata.is_file() {
        return Err(invalid("a regular file holding the password"));
    }
    if metadata.len() > MAX_PASSWORD_FILE_BYTES {
        return Err(invalid("a file of at most 4 KiB holding the password"));
    }
    let mut text = String::new();
    // Bounded again while reading: the file may grow between the check and the read.
    file.take(MAX_PASSWORD_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(file_error)?;
    if text.len() as u64 > MAX_PASSWORD_FILE_BYTES {
        return Err(invalid("a file of at most 4 KiB holding the password"));
    }
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(ConfigError::Invalid {
            var: PASSWORD_FILE.name,
            expected: "a file holding the password",
            value: format!("{} (empty)", path.display()),
        });
    }
    Ok(SecretString::from(trimmed.to_string()))
}

fn parse_text(text: &str) -> Option<String> {
    Some(text.to_string())
}

fn parse_secret(text: &str) -> Option<SecretString> {
    Some(SecretString::from(text.to_string()))
}

fn parse_path(text: &str) -> Option<PathBuf> {
    Some(PathBuf::from(text))
}

fn parse_api_url(text: &str) -> Option<Url> {
    let mut url = Url::parse(text).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !plain {
        return None;
    }
    // Paths are joined onto the base, so it must end in a slash to keep a prefix.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Some(url)
}

/// The text with everything between its scheme and its last `@` left out, however the
/// scheme is mistyped (`ops:pw@host`, `https:/ops:pw@host`, `//ops:pw@host`,
/// `https:\\ops:pw@host`), so a password typed into a URL is never echoed back.
fn without_userinfo(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_string();
    };
    let scheme_end = text
        .find(':')
        .filter(|&colon| {
            let scheme = &text[..colon];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
        .map_or(0, |colon| colon + 1);
    let start = scheme_end
        + text[scheme_end..]
            .chars()
            .take_while(|c| matches!(c, '/' | '\\'))
            .count();
    if start > at {
        return text[at + 1..].to_string();
    }
    format!("{}{}", &text[..start], &text[at + 1..])
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Trimmed, without empty items or repeats, in the order given.
fn parse_list(text: &str) -> Option<Vec<String>> {
    let mut items: Vec<String> = Vec::new();
    for item in text.split(',').map(str::trim) {
        if !item.is_empty() && !items.iter().any(|i| i == item) {
            items.push(item.to_string());
        }
    }
    Some(items)
}

/// A duration from `min` to `max`. humantime checks for overflow while it adds up the
/// parts, so a huge value is an error here, never a panic later.
fn duration_within(text: &str, min: Duration, max: Duration) -> Option<Duration> {
    humantime::parse_duration(text.trim())
        .ok()
        .filter(|d| (min..=max).contains(d))
}

fn parse_number(text: &str, min: usize, max: usize) -> Option<usize> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "false" | "0" | "no" => Some(false),
        "true" | "1" | "yes" => Some(true),
        _ => None,
    }
}

/// The `--help` text: usage and every setting with its default.
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
        "  flexcloud-exporter --help | --version\n\n",
        "The simulated API on its own is the flexcloud-sim binary of this repository.\n\n",
        "ENVIRONMENT (default in brackets):\n",
    ));
    for setting in SETTINGS {
        let default = match setting.default.shown() {
            "" => String::new(),
            shown => format!(" [{shown}]"),
        };
        text.push_str(&format!(
            "  {:<35} {}{default}\n",
            setting.name, setting.help
        ));
    }
    text.push_str("\nExit codes: 0 ok, 1 failure at run time (or a failed probe with --once), 2 bad setting or usage.\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::path::Path;

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
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.read_timeout, Duration::from_secs(5));
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.saving_series_limit, 500);
        assert_eq!(c.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.stale_after, Duration::from_secs(180));
        assert_eq!(c.listen_address, "0.0.0.0:9819".parse().unwrap());
        assert_eq!(c.listen_address.port(), DEFAULT_PORT);
        assert!(c.accounts.is_empty() && c.zones.is_empty());
        assert!(c.shard.is_none() && c.ca_file.is_none() && c.web_config_file.is_none());
        assert!(!c.tls_insecure_skip_verify);
        assert_eq!(c.log, "info");
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn the_stale_bound_follows_the_interval_unless_set() {
        let c = with(&[("FLEXCLOUD_INTERVAL", "10s")]).unwrap();
        assert_eq!(c.stale_after, Duration::from_secs(30));
        let c = with(&[
            ("FLEXCLOUD_INTERVAL", "10s"),
            ("FLEXCLOUD_STALE_AFTER", "2m"),
        ])
        .unwrap();
        assert_eq!(c.stale_after, Duration::from_secs(120));
    }

    #[test]
    fn lists_are_trimmed_and_deduplicated_in_order() {
        let c = with(&[
            ("FLEXCLOUD_ACCOUNTS", " b, a,,b "),
            ("FLEXCLOUD_ZONES", "Z1"),
        ])
        .unwrap();
        assert_eq!(c.accounts, ["b", "a"]);
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
            ("FLEXCLOUD_SAVING_SERIES_LIMIT", "100001"),
        ];
        for (var, value) in cases {
            let err = with(&[(var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn every_value_default_parses() {
        for setting in SETTINGS {
            let DefaultValue::Value(text) = setting.default else {
                continue;
            };
            // Set the default explicitly: it must be accepted like any other value.
            let c = with(&[(setting.name, text)]);
            assert!(c.is_ok(), "{}={text}: {:?}", setting.name, c.err());
        }
    }

    #[test]
    fn a_non_utf8_value_names_the_variable_and_not_the_value() {
        use std::os::unix::ffi::OsStringExt;
        let mut vars: Vec<(std::ffi::OsString, std::ffi::OsString)> = base()
            .into_iter()
            .filter(|(k, _)| k != "FLEXCLOUD_PASSWORD")
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        vars.push((
            "FLEXCLOUD_PASSWORD".into(),
            std::ffi::OsString::from_vec(b"hunter2\xff".to_vec()),
        ));
        // Variables of other programs may hold anything.
        vars.push((
            "OTHER".into(),
            std::ffi::OsString::from_vec(b"\xfe".to_vec()),
        ));
        let err = Config::from_vars(vars).unwrap_err().to_string();
        assert_eq!(err, "FLEXCLOUD_PASSWORD is not valid UTF-8");
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
    fn an_api_of_the_callers_takes_the_mode_defaults_unless_set() {
        let access = ApiAccess {
            url: Url::parse("http://127.0.0.1:1/").unwrap(),
            username: "demo".into(),
            password: SecretString::from("pw"),
            password_file: None,
        };
        let defaults = ModeDefaults {
            listen_address: Some("127.0.0.1:9819".parse().unwrap()),
            interval: Some(Duration::from_secs(15)),
        };
        let c = Config::with_api(
            env(&[("FLEXCLOUD_API_URL", "https://ignored.example.com")]),
            access.clone(),
            defaults,
        )
        .unwrap();
        assert_eq!(c.api_url.as_str(), "http://127.0.0.1:1/");
        assert_eq!(c.username, "demo");
        assert_eq!(c.listen_address, "127.0.0.1:9819".parse().unwrap());
        assert_eq!(c.interval, Duration::from_secs(15));
        assert_eq!(c.stale_after, Duration::from_secs(45));
        let c = Config::with_api(
            env(&[
                ("FLEXCLOUD_INTERVAL", "20s"),
                ("FLEXCLOUD_LISTEN_ADDRESS", "0.0.0.0:1234"),
            ]),
            access,
            defaults,
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(20));
        assert_eq!(c.listen_address, "0.0.0.0:1234".parse().unwrap());
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
    fn auto_shards_take_the_ordinal_from_the_pod_name() {
        let auto = |pairs: &[(&str, &str)]| {
            let mut all = vec![("FLEXCLOUD_SHARD", "auto"), ("FLEXCLOUD_SHARD_COUNT", "3")];
            all.extend_from_slice(pairs);
            with(&all)
        };
        let shard = |index, count| Some(Shard { index, count });
        let pod = |name| auto(&[("FLEXCLOUD_POD_NAME", name)]);
        assert_eq!(pod("flexcloud-exporter-0").unwrap().shard, shard(1, 3));
        assert_eq!(pod("flexcloud-exporter-2").unwrap().shard, shard(3, 3));
        assert_eq!(pod("a-b-1").unwrap().shard, shard(2, 3));
        assert_eq!(
            auto(&[("HOSTNAME", "fx-1")]).unwrap().shard,
            shard(2, 3),
            "HOSTNAME is the pod name in Kubernetes"
        );
        assert_eq!(
            auto(&[("HOSTNAME", "fx-0"), ("FLEXCLOUD_POD_NAME", "fx-2")])
                .unwrap()
                .shard,
            shard(3, 3),
            "the explicit pod name wins"
        );
        assert_eq!(
            with(&[
                ("FLEXCLOUD_SHARD", " AUTO "),
                ("FLEXCLOUD_SHARD_COUNT", "1"),
                ("HOSTNAME", "x-0")
            ])
            .unwrap()
            .shard,
            shard(1, 1)
        );
        let err = |r: Result<Config, ConfigError>| r.unwrap_err().to_string();
        let beyond = err(pod("flexcloud-exporter-3"));
        assert!(
            beyond.starts_with("FLEXCLOUD_SHARD_COUNT") && beyond.contains("ordinal 3"),
            "{beyond}"
        );
        for bad in [
            "flexcloud-exporter",
            "exporter-x",
            "-1",
            "fx-01",
            "fx-",
            "fx-1a",
        ] {
            let e = err(pod(bad));
            assert!(e.starts_with("FLEXCLOUD_POD_NAME"), "{bad}: {e}");
        }
        assert!(err(auto(&[("HOSTNAME", "fx")])).starts_with("HOSTNAME"));
        assert!(err(auto(&[])).starts_with("FLEXCLOUD_POD_NAME is required"));
        assert!(
            err(with(&[("FLEXCLOUD_SHARD", "auto"), ("HOSTNAME", "fx-0")]))
                .starts_with("FLEXCLOUD_SHARD_COUNT is required")
        );
        for shard_count_alone in [vec![], vec![("FLEXCLOUD_SHARD", "1/3")]] {
            let mut pairs = shard_count_alone;
            pairs.push(("FLEXCLOUD_SHARD_COUNT", "3"));
            let e = err(with(&pairs));
            assert!(e.contains("only with FLEXCLOUD_SHARD=auto"), "{e}");
        }
        for bad in ["0", "1001", "-1", "x"] {
            let e = err(auto(&[
                ("FLEXCLOUD_SHARD_COUNT", bad),
                ("HOSTNAME", "fx-0"),
            ]));
            assert!(e.starts_with("FLEXCLOUD_SHARD_COUNT"), "{bad}: {e}");
        }
        assert!(err(with(&[("FLEXCLOUD_SHARD", "1/1001")])).starts_with("FLEXCLOUD_SHARD"));
    }

    #[test]
    fn a_bad_log_filter_is_named() {
        let err = with(&[("FLEXCLOUD_LOG", "info,[=")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("FLEXCLOUD_LOG"), "{err}");
    }

    #[test]
    fn durations_are_bounded_and_the_bounds_are_named() {
        for (var, value) in [
            ("FLEXCLOUD_INTERVAL", "500ms"),
            ("FLEXCLOUD_INTERVAL", "1ns"),
            ("FLEXCLOUD_INTERVAL", "25h"),
            ("FLEXCLOUD_INTERVAL", "200000000000years"),
            ("FLEXCLOUD_INTERVAL", "99999999999999999999999h"),
            ("FLEXCLOUD_TIMEOUT", "10ms"),
            ("FLEXCLOUD_CONNECT_TIMEOUT", "2h"),
            ("FLEXCLOUD_READ_TIMEOUT", "0s"),
            ("FLEXCLOUD_STALE_AFTER", "31d"),
            ("FLEXCLOUD_WEB_IDLE_TIMEOUT", "500ms"),
        ] {
            let err = with(&[(var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}={value}: {err}");
            assert!(
                err.contains(" to ") || err.contains("at most"),
                "{var}={value}: {err}"
            );
        }
        let c = with(&[("FLEXCLOUD_INTERVAL", "24h"), ("FLEXCLOUD_TIMEOUT", "1h")]).unwrap();
        assert_eq!(c.interval, Duration::from_secs(86_400));
        assert_eq!(c.stale_after, Duration::from_secs(3 * 86_400));
        assert_eq!(
            with(&[("FLEXCLOUD_INTERVAL", "1s"), ("FLEXCLOUD_TIMEOUT", "500ms")])
                .unwrap()
                .interval,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_request_timeout_must_be_shorter_than_the_interval() {
        let err = with(&[("FLEXCLOUD_TIMEOUT", "60s")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "FLEXCLOUD_TIMEOUT is invalid: must be shorter than FLEXCLOUD_INTERVAL (1m), so a request ends within its cycle; got 1m"
        );
        assert!(with(&[("FLEXCLOUD_INTERVAL", "5s"), ("FLEXCLOUD_TIMEOUT", "5s")]).is_err());
        assert!(with(&[("FLEXCLOUD_INTERVAL", "5s"), ("FLEXCLOUD_TIMEOUT", "4s")]).is_ok());
        // Left unset, the timeout follows a short interval down.
        let c = with(&[("FLEXCLOUD_INTERVAL", "5s")]).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(with(&[]).unwrap().timeout, Duration::from_secs(10));
    }

    #[test]
    fn the_cycle_timeout_is_the_interval_unless_shorter() {
        assert_eq!(with(&[]).unwrap().cycle_timeout, Duration::from_secs(60));
        let c = with(&[("FLEXCLOUD_CYCLE_TIMEOUT", "50s")]).unwrap();
        assert_eq!(c.cycle_timeout, Duration::from_secs(50));
        let err = with(&[("FLEXCLOUD_CYCLE_TIMEOUT", "61s")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "FLEXCLOUD_CYCLE_TIMEOUT is invalid: must be at most FLEXCLOUD_INTERVAL (1m)"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_misspelt_setting_stops_with_the_nearest_name() {
        let err = with(&[("FLEXCLOUD_INTERVALL", "30s")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "FLEXCLOUD_INTERVALL is not a setting of flexcloud-exporter (did you mean FLEXCLOUD_INTERVAL?)"
        );
        let err = with(&[("FLEXCLOUD_PASWORD_FILE", "/x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("(did you mean FLEXCLOUD_PASSWORD_FILE?)"),
            "{err}"
        );
        let err = with(&[("FLEXCLOUD_SOMETHING_ELSE", "1")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "FLEXCLOUD_SOMETHING_ELSE is not a setting of flexcloud-exporter (see --help)"
        );
    }

    #[test]
    fn kubernetes_service_links_are_not_taken_for_settings() {
        let links = [
            ("FLEXCLOUD_EXPORTER_SERVICE_HOST", "10.0.0.1"),
            ("FLEXCLOUD_EXPORTER_SERVICE_PORT", "9819"),
            ("FLEXCLOUD_EXPORTER_SERVICE_PORT_METRICS", "9819"),
            ("FLEXCLOUD_EXPORTER_PORT", "tcp://10.0.0.1:9819"),
            ("FLEXCLOUD_EXPORTER_PORT_9819_TCP", "tcp://10.0.0.1:9819"),
            ("FLEXCLOUD_EXPORTER_PORT_9819_TCP_PROTO", "tcp"),
            ("FLEXCLOUD_EXPORTER_PORT_9819_TCP_PORT", "9819"),
            ("FLEXCLOUD_EXPORTER_PORT_9819_TCP_ADDR", "10.0.0.1"),
            ("FLEXCLOUD_SERVICE_HOST", "10.0.0.2"),
            ("FLEXCLOUD_SERVICE_PORT", "443"),
            ("FLEXCLOUD_PORT", "tcp://10.0.0.2:443"),
            ("FLEXCLOUD_PORT_443_TCP_ADDR", "10.0.0.2"),
            ("FLEXCLOUD_PORT_53_UDP", "udp://10.0.0.2:53"),
        ];
        assert!(with(&links).is_ok());
        for not_a_link in [
            "FLEXCLOUD_PORT_X_TCP",
            "FLEXCLOUD_PORT_443_HTTP",
            "FLEXCLOUD_PORT_443_TCP_HOST",
            "FLEXCLOUD_SERVICE_HOSTS",
        ] {
            assert!(with(&[(not_a_link, "1")]).is_err(), "{not_a_link}");
        }
    }

    #[test]
    fn a_log_filter_is_levels_and_target_directives() {
        for good in [
            "trace",
            "DEBUG",
            "warn,flexcloud_exporter=debug",
            "off",
            "hyper=warn",
        ] {
            assert!(with(&[("FLEXCLOUD_LOG", good)]).is_ok(), "{good}");
        }
        for bad in [
            "warning",
            "verbose",
            "info,loud",
            "flexcloud_exporter=verbose",
        ] {
            let err = with(&[("FLEXCLOUD_LOG", bad)]).unwrap_err().to_string();
            assert!(err.starts_with("FLEXCLOUD_LOG is invalid"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_echoing_them_however_mistyped() {
        for url in [
            "https://ops:pw-secret@api.example.com",
            "ops:pw-secret@api.example.com",
            "https:/ops:pw-secret@api.example.com",
            "//ops:pw-secret@api.example.com",
            "http:ops:pw-secret@127.0.0.1",
            "https:\\\\ops:pw-secret@api.example.com",
            "https://ops:pw@secret@api.example.com/path",
        ] {
            let err = with(&[("FLEXCLOUD_API_URL", url)]).unwrap_err().to_string();
            assert!(
                !err.contains("pw-secret") && !err.contains("secret@"),
                "{url}: {err}"
            );
            assert!(
                err.starts_with("FLEXCLOUD_API_URL is invalid: must not carry credentials; set FLEXCLOUD_USERNAME and FLEXCLOUD_PASSWORD_FILE instead"),
                "{url}: {err}"
            );
        }
        let err = with(&[("FLEXCLOUD_API_URL", "https://ops:pw@api.example.com/v1")])
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("(got https://api.example.com/v1)"), "{err}");
    }

    #[test]
    fn the_password_file_is_a_small_regular_file_and_the_only_password() {
        let dir = std::env::temp_dir().join(format!("flexcloud-pwfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; 10 * 1024 * 1024]).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "hunter2\n").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let only_file = |path: &std::path::Path| {
            Config::from_vars(env(&[
                ("FLEXCLOUD_USERNAME", "u"),
                ("FLEXCLOUD_PASSWORD_FILE", path.to_str().unwrap()),
            ]))
        };
        for bad in [big.as_path(), Path::new("/dev/zero"), dir.as_path()] {
            let err = only_file(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("FLEXCLOUD_PASSWORD_FILE is invalid"),
                "{}: {err}",
                bad.display()
            );
        }
        assert_eq!(
            only_file(&link).unwrap().password.expose_secret(),
            "hunter2"
        );
        let both = Config::from_vars(env(&[
            ("FLEXCLOUD_USERNAME", "u"),
            ("FLEXCLOUD_PASSWORD", "p"),
            ("FLEXCLOUD_PASSWORD_FILE", good.to_str().unwrap()),
        ]))
        .unwrap_err()
        .to_string();
        assert_eq!(
            both,
            "FLEXCLOUD_PASSWORD_FILE is invalid: set either FLEXCLOUD_PASSWORD or FLEXCLOUD_PASSWORD_FILE, not both"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let c = with(&[("FLEXCLOUD_PASSWORD", "hunter2-secret")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2-secret"));
    }
}
