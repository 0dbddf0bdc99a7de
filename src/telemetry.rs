//! The tracing subscriber: filter from `FLEXCLOUD_LOG`, text or JSON lines on stderr.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The format named by `FLEXCLOUD_LOG_FORMAT`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// The level names a filter directive may be.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Whether `filter` is level names and `target=level` directives. A bare word that is no
/// level (`warning`, `verbose`) is refused: tracing would take it for a target and silence
/// every other line, the 401 warning included.
pub fn filter_is_valid(filter: &str) -> bool {
    let directives_ok = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .all(|d| d.contains(['=', '[']) || LEVELS.contains(&d.to_ascii_lowercase().as_str()));
    directives_ok && EnvFilter::try_new(filter).is_ok()
}

/// Installs the global subscriber. A filter that does not parse falls back to `info`
/// (config validation has already named the variable if it was wrong).
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
