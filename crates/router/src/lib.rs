//! From a public model to an answer: the ordered targets of the model and its
//! fallbacks, tried one after another until one reaches its commit point.
//!
//! The commit point is the first token (or, for a non-stream request, the
//! whole answer). Before it, a retryable failure of one target moves on to
//! the next and the client never sees it; after it, the answer belongs to
//! that target. Resilience controls wrap [`attempt::attempt`], one target's
//! try, and leave this loop as it is.

mod attempt;
mod error;
mod from_config;
mod plan;

use std::sync::Arc;

use keel_providers::{Completion, EventStream, StreamEvent};
use keel_types::ChatRequest;
use tracing::Instrument;

pub use error::RouteError;
pub use plan::{ModelRoute, RouteTable, Target};

/// The gateway's router: the route table and the dispatch loop.
pub struct Router {
    table: RouteTable,
}

/// A committed answer and who gave it.
pub struct Routed {
    /// The provider that answered.
    pub provider: Arc<str>,
    /// The upstream model that answered.
    pub model: Arc<str>,
    /// Upstream attempts made for this request, failed ones included.
    pub attempts: u32,
    /// The answer.
    pub answer: Answer,
}

/// A committed answer.
pub enum Answer {
    /// A whole non-stream answer.
    Complete(Completion),
    /// A stream past its commit point: the events read so far (the first
    /// token last) and the rest of the upstream stream.
    Stream {
        /// Events up to and including the first token, to send first.
        head: Vec<StreamEvent>,
        /// The rest of the stream.
        rest: EventStream,
    },
}

// === impl Router ===

impl Router {
    /// A router over a route table.
    pub fn new(table: RouteTable) -> Self {
        Self { table }
    }

    /// The public model names, in configuration order.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.table.model_names()
    }

    /// Whether `model` is a public model name.
    pub fn knows(&self, model: &str) -> bool {
        self.table.route(model).is_some()
    }

    /// Routes one request to its first target that reaches the commit point.
    pub async fn dispatch(&self, request: Arc<ChatRequest>) -> Result<Routed, RouteError> {
        let span = tracing::info_span!("keel.route", gen_ai.request.model = request.model());
        self.dispatch_inner(request).instrument(span).await
    }

    async fn dispatch_inner(&self, request: Arc<ChatRequest>) -> Result<Routed, RouteError> {
        let targets = self.table.plan(request.model())?;
        let mut attempts = 0;
        let mut last_failure = None;
        for target in targets {
            attempts += 1;
            match attempt::attempt(target, request.clone(), attempts).await {
                Ok(answer) => {
                    let (provider, model) = (target.provider_name.clone(), target.model.clone());
                    return Ok(Routed { provider, model, attempts, answer });
                }
                Err(error) if !error.is_retryable() => return Err(RouteError::Rejected { error, attempts }),
                Err(error) => {
                    tracing::warn!(provider = %target.provider_name, model = %target.model, %error, "attempt failed; trying the next target");
                    last_failure = Some(error);
                }
            }
        }
        match last_failure {
            Some(last) => Err(RouteError::Exhausted { model: request.model().to_owned(), last, attempts }),
            None => Err(RouteError::NoTargets { model: request.model().to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests;
