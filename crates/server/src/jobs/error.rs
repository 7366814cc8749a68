//! Job endpoint failures and their responses (status, OpenAI error body),
//! kept beside the endpoints; like `ApiError`, `IntoResponse` only records
//! the message for the logging middleware.

use axum::http::StatusCode;
use keel_queue::{Refused, StoreError, SubmitError};
use keel_types::{ErrorBody, RequestError};

/// Why a job request failed.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// This gateway has no job store.
    #[error("async jobs are not enabled on this gateway")]
    Disabled,
    /// The submission body is not `{"request": …, "webhook"?: …, "metadata"?: …}`.
    #[error("{message}")]
    InvalidBody {
        /// What is wrong.
        message: String,
        /// The parameter at fault.
        param: Option<String>,
    },
    /// The chat request inside the submission is invalid.
    #[error("request: {0}")]
    InvalidRequest(#[from] RequestError),
    /// The model is not configured.
    #[error("the model '{0}' does not exist")]
    UnknownModel(String),
    /// The model serves another API (embeddings).
    #[error("request.model: {0}")]
    WrongEndpoint(String),
    /// The webhook URL may not be used.
    #[error("webhook.url: {0}")]
    Webhook(#[from] Refused),
    /// The gateway cannot sign webhooks.
    #[error("webhook.url: this gateway has no webhooks.secret, so it cannot sign webhooks")]
    WebhooksDisabled,
    /// The body is larger than the limit.
    #[error("the request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The tenant has `limits.max_queued_jobs` jobs queued already.
    #[error("the tenant already has {0} jobs queued (its limits.max_queued_jobs); retry once some have started")]
    TooManyQueued(u64),
    /// The body did not arrive in time.
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// The `Idempotency-Key` header is empty, too long or not text.
    #[error("the Idempotency-Key header must be 1 to 255 visible ASCII characters")]
    BadKey,
    /// The key was used with another request.
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    /// The key's first request is still in progress.
    #[error("a request with this Idempotency-Key is still in progress; retry later")]
    KeyInProgress,
    /// No such job for this tenant.
    #[error("no job with id '{0}'")]
    NotFound(String),
    /// The job already succeeded or failed.
    #[error("the job '{id}' has already {status} and cannot be cancelled")]
    NotCancellable {
        /// The job id.
        id: String,
        /// Its final status.
        status: &'static str,
    },
    /// The job's webhook cannot be redelivered now.
    #[error("the job '{id}' {why}")]
    NotRedeliverable {
        /// The job id.
        id: String,
        /// Why not.
        why: &'static str,
    },
    /// A list parameter is invalid.
    #[error("{message}")]
    InvalidQuery {
        /// What is wrong.
        message: String,
        /// The parameter.
        param: &'static str,
    },
    /// The store failed.
    #[error("the job store is unavailable")]
    Store(#[from] StoreError),
}

// === impl JobsError ===

impl JobsError {
    /// What the request log records: the store error's detail (SQL,
    /// hosts) goes there, not to the client.
    pub(crate) fn logged(&self) -> String {
        match self {
            Self::Store(error) => format!("{self}: {error}"),
            _ => self.to_string(),
        }
    }

    /// Whether the client may retry in a second (`Retry-After: 1`).
    pub(crate) fn retry_soon(&self) -> bool {
        matches!(
            self,
            Self::KeyInProgress | Self::Store(_) | Self::TooManyQueued(_)
        )
    }

    /// The status it is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Disabled | Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidBody { .. }
            | Self::InvalidRequest(_)
            | Self::UnknownModel(_)
            | Self::WrongEndpoint(_)
            | Self::Webhook(_)
            | Self::WebhooksDisabled
            | Self::BadKey
            | Self::InvalidQuery { .. } => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyQueued(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::KeyInProgress | Self::NotCancellable { .. } | Self::NotRedeliverable { .. } => {
                StatusCode::CONFLICT
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// Its error body.
    pub(crate) fn body(&self) -> ErrorBody {
        let message = self.to_string();
        let invalid = |param: Option<&str>, code: Option<&str>| {
            ErrorBody::new(message.clone(), "invalid_request_error", param, code)
        };
        match self {
            Self::Disabled => ErrorBody::new(message, "server_error", None, Some("jobs_disabled")),
            Self::Store(_) => {
                ErrorBody::new(message, "server_error", None, Some("store_unavailable"))
            }
            Self::InvalidBody { param, .. } => invalid(param.as_deref(), None),
            Self::InvalidRequest(error) => invalid(
                error
                    .param()
                    .map(|param| format!("request.{param}"))
                    .as_deref(),
                None,
            ),
            Self::UnknownModel(_) => invalid(Some("request.model"), Some("model_not_found")),
            Self::WrongEndpoint(_) => invalid(Some("request.model"), None),
            Self::Webhook(_) | Self::WebhooksDisabled => {
                invalid(Some("webhook.url"), Some("invalid_webhook_url"))
            }
            Self::TooLarge(_) => invalid(None, Some("body_too_large")),
            Self::BodyTimeout(_) => invalid(None, Some("body_timeout")),
            Self::TooManyQueued(_) => ErrorBody::new(
                message,
                "rate_limit_error",
                None,
                Some("too_many_queued_jobs"),
            ),
            Self::BadKey => invalid(None, Some("invalid_idempotency_key")),
            Self::KeyReused => invalid(None, Some("idempotency_key_reused")),
            Self::KeyInProgress => invalid(None, Some("idempotency_key_in_progress")),
            Self::NotFound(_) => invalid(Some("id"), Some("job_not_found")),
            Self::NotCancellable { .. } => invalid(None, Some("job_not_cancellable")),
            Self::NotRedeliverable { .. } => invalid(None, Some("webhook_not_redeliverable")),
            Self::InvalidQuery { param, .. } => invalid(Some(param), None),
        }
    }
}

impl From<SubmitError> for JobsError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::KeyReused => Self::KeyReused,
            SubmitError::KeyInProgress => Self::KeyInProgress,
            SubmitError::Webhook(refused) => Self::Webhook(refused),
            SubmitError::WebhooksDisabled => Self::WebhooksDisabled,
            SubmitError::Store(error) => Self::Store(error),
        }
    }
}
