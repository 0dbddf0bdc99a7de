//! What can go wrong talking to the API, with the label each kind gets in metrics.

use std::borrow::Cow;
use std::time::Duration;

/// One failed API call. The `Display` text is for logs; metrics use [`ApiError::code`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request timed out")]
    Timeout(#[source] reqwest::Error),
    #[error("could not reach the API")]
    Connect(#[source] reqwest::Error),
    #[error("API answered HTTP {status}{}", kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default())]
    Status {
        status: u16,
        /// The error kind from the API's error object, e.g. `itemNotFound`.
        kind: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("invalid response (HTTP {status}): {reason}")]
    Invalid { status: u16, reason: InvalidReason },
    #[error("credentials were rejected earlier in this cycle; not sent again")]
    CredentialsSuspended,
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
}

/// Why a response could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InvalidReason {
    #[error("body is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body could not be read: {0}")]
    Body(#[source] reqwest::Error),
    #[error("redirect without a usable Location")]
    BadRedirect,
    #[error("paging does not end (more than {0} pages or a page seen twice)")]
    EndlessPaging(usize),
    #[error("zone list has no entry for the account asked about")]
    MissingAccount,
}

impl ApiError {
    /// The `code` label: the HTTP status, or `timeout`, `connect_error`, `invalid_response`.
    pub fn code(&self) -> Cow<'static, str> {
        match self {
            ApiError::Timeout(_) => "timeout".into(),
            ApiError::Connect(_) | ApiError::Build(_) => "connect_error".into(),
            ApiError::Status { status, .. } => status.to_string().into(),
            ApiError::Invalid { .. } => "invalid_response".into(),
            ApiError::CredentialsSuspended => "401".into(),
        }
    }

    /// The error kind for logs and the landing page, from a fixed set.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Timeout(_) => "timeout",
            ApiError::Connect(_) | ApiError::Build(_) => "connect_error",
            ApiError::Status { .. } => "http_status",
            ApiError::Invalid { .. } => "invalid_response",
            ApiError::CredentialsSuspended => "credentials_suspended",
        }
    }

    /// The HTTP status that arrived, 0 when none did.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::Status { status, .. } | ApiError::Invalid { status, .. } => *status,
            ApiError::CredentialsSuspended => 401,
            _ => 0,
        }
    }

    /// Whether the API rejected the credentials.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            ApiError::Status { status: 401, .. } | ApiError::CredentialsSuspended
        )
    }

    /// Whether the failure came from the API itself (a response arrived).
    pub fn reached_api(&self) -> bool {
        matches!(
            self,
            ApiError::Status { .. } | ApiError::Invalid { .. } | ApiError::CredentialsSuspended
        )
    }
}
