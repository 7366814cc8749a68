//! Why a request could not be routed to an answer.

use keel_providers::ProviderError;

/// A routing failure; the server maps each variant to one status.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RouteError {
    /// The request names a model that is not configured.
    #[error("the model '{model}' does not exist")]
    UnknownModel {
        /// The requested model.
        model: String,
    },
    /// The model serves another API (chat vs embeddings).
    #[error("the model '{model}' serves {serves}; send it to {path}")]
    WrongEndpoint {
        /// The requested model.
        model: String,
        /// What it serves: `chat` or `embeddings`.
        serves: &'static str,
        /// Where such requests go.
        path: &'static str,
    },
    /// Every target of the model and its fallbacks is disabled.
    #[error("the model '{model}' has no enabled provider (set the provider's api_key)")]
    NoTargets {
        /// The requested model.
        model: String,
    },
    /// An upstream refused the request itself (a 4xx other than 408, 409
    /// and 429); it is returned to the client as it is.
    #[error("{error}")]
    Rejected {
        /// The upstream's error.
        error: ProviderError,
        /// Attempts made.
        attempts: u32,
    },
    /// The request's time budget ran out before any answer.
    #[error("the model '{model}' did not answer within the request's time budget")]
    DeadlineExceeded {
        /// The requested model.
        model: String,
        /// Attempts made.
        attempts: u32,
    },
    /// No target could take the request: breakers open, bulkheads full or
    /// rate limits empty.
    #[error("no target of the model '{model}' can take the request now (circuit open, concurrency cap or rate limit reached)")]
    Unavailable {
        /// The requested model.
        model: String,
        /// When one of them may take it again.
        retry_after: std::time::Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// Every target failed.
    #[error("every target of the model '{model}' failed; last: {last}")]
    Exhausted {
        /// The requested model.
        model: String,
        /// The last target's failure.
        last: ProviderError,
        /// Attempts made.
        attempts: u32,
    },
}

// === impl RouteError ===

impl RouteError {
    /// Upstream attempts made before the failure.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::UnknownModel { .. } | Self::WrongEndpoint { .. } | Self::NoTargets { .. } => 0,
            Self::Rejected { attempts, .. }
            | Self::Exhausted { attempts, .. }
            | Self::DeadlineExceeded { attempts, .. }
            | Self::Unavailable { attempts, .. } => *attempts,
        }
    }
}
