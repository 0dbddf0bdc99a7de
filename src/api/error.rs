//! What can go wrong talking to the API, and the fixed set of kinds it is reported as.

use std::time::Duration;

use super::Code;

/// One failed API call. The `Display` text is for logs; metrics use [`ApiError::code`]
/// and [`ApiError::kind`].
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
    #[error("credentials are suspended after a 401; not sent until the back-off wait is over")]
    CredentialsSuspended,
    #[error("the cycle's deadline passed first (FLEXCLOUD_CYCLE_TIMEOUT)")]
    Deadline,
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
    #[error("paging does not end: {0}")]
    EndlessPaging(&'static str),
    #[error("zone list has no entry for the account asked about")]
    MissingAccount,
    #[error("an id that cannot be a path segment (empty, . or ..)")]
    UnusableId,
}

/// The kind of a failed step, for logs, the status page and alerts' reading of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    Timeout,
    ConnectError,
    HttpStatus,
    InvalidResponse,
    /// Nothing was sent: the credential gate holds the credentials back after a 401.
    CredentialsSuspended,
    /// The cycle ended before the step did.
    Deadline,
}

impl ErrorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::ConnectError => "connect_error",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::CredentialsSuspended => "credentials_suspended",
            ErrorKind::Deadline => "deadline",
        }
    }
}

impl ApiError {
    /// How the request ended, for the request counter; `None` when no request was sent.
    pub fn code(&self) -> Option<Code> {
        match self {
            ApiError::Timeout(_) => Some(Code::Timeout),
            ApiError::Connect(_) => Some(Code::ConnectError),
            ApiError::Status { status, .. } => Some(Code::Status(*status)),
            ApiError::Invalid { .. } => Some(Code::InvalidResponse),
            ApiError::CredentialsSuspended | ApiError::Deadline | ApiError::Build(_) => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Timeout(_) => ErrorKind::Timeout,
            ApiError::Connect(_) | ApiError::Build(_) => ErrorKind::ConnectError,
            ApiError::Status { .. } => ErrorKind::HttpStatus,
            ApiError::Invalid { .. } => ErrorKind::InvalidResponse,
            ApiError::CredentialsSuspended => ErrorKind::CredentialsSuspended,
            ApiError::Deadline => ErrorKind::Deadline,
        }
    }

    /// The HTTP status that arrived, 0 when none did (a suspended request sent nothing).
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::Status { status, .. } | ApiError::Invalid { status, .. } => *status,
            _ => 0,
        }
    }
}
