//! `Prefer: respond-async, wait=N` on a non-stream chat completion (RFC
//! 7240): answered synchronously when routing commits an answer within N
//! seconds; otherwise the request becomes a job and the client gets 202
//! with `Location`. When the wait runs out, the routing in flight is not
//! dropped: the job is inserted already running under this instance's
//! lease, and the answer, when it arrives, is the job's result — one
//! upstream call in all. When routing fails in time with a failure a
//! later run may not meet (breakers open, every target failed, the time
//! budget spent), the request is queued at once; a failure of the request
//! itself (a 4xx) is answered as it is. A request whose `Idempotency-Key`
//! was used before is not routed: the key's job is replayed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use keel_queue::{Held, JobOutput, KeyClaim, Queue};
use keel_router::RouteError;
use keel_types::ChatRequest;
use tracing::Instrument as _;

use crate::cache::KeyedBody;
use crate::chat::{respond, settle, CHAT_ENDPOINT};
use crate::jobs::{self, Accepted, JobsError};
use crate::ledger::Ledger;
use crate::route::{admit, Admission, Served, Unserved};
use crate::{ApiError, AppState, Tenant};

/// What turning the request into a job needs, taken before routing (a bad
/// `Idempotency-Key` is a 400 now, not after the wait).
struct Switch<'a> {
    state: &'a Arc<AppState>,
    tenant: &'a Tenant,
    queue: Arc<Queue>,
    /// The request as the job runs it (routing consumes the original).
    chat: ChatRequest,
    key: Option<KeyClaim>,
}

/// Answers `request` within `wait`, or makes it a job.
pub(crate) async fn answer_or_queue(
    state: &Arc<AppState>,
    tenant: &Tenant,
    headers: &HeaderMap,
    request: ChatRequest,
    wait: Duration,
) -> Response {
    let switch = match Switch::prepare(state, tenant, headers, &request) {
        Ok(switch) => switch,
        Err(error) => return ApiError::from(error).into_response(),
    };
    if switch.key_used().await {
        return switch.queue().await;
    }
    let plan = crate::cache::plan(
        state,
        &tenant.name,
        CHAT_ENDPOINT,
        &request,
        KeyedBody::Chat,
        headers,
    );
    let ledger = Ledger::open(&state.slos, &state.metrics, &tenant.name, request.model());
    let request = crate::affinity::tag_session(&state.router, &tenant.name, Some(headers), request);
    let upstream = match admit(&state.router, &state.limits, &tenant.name, request, plan).await {
        Ok(Admission::Hit(served)) => {
            return settle(state, &tenant.name, ledger, Ok(served), None, respond)
        }
        Ok(Admission::Upstream(upstream)) => upstream,
        Err(unserved) => return settle(state, &tenant.name, ledger, Err(unserved), None, respond),
    };
    let mut routing = Box::pin(upstream.route(state.router.clone()).in_current_span());
    // No last resort here: the failures it would hide are queued instead.
    match tokio::time::timeout(wait, &mut routing).await {
        Ok(Err(Unserved::Failed { error, .. })) if worth_queueing(&error) => {
            tracing::info!(%error, "routing failed before the wait ran out; the request is queued as a job");
            ledger.refused_or_failed(crate::ApiError::from(error).status().as_u16());
            switch.queue().await
        }
        Ok(served) => settle(state, &tenant.name, ledger, served, None, respond),
        Err(_still_routing) => switch.hand_over(routing).await,
    }
}

/// Whether a later run may succeed where this routing failed: every target
/// unavailable (breakers open, caps or rate limits reached), the time
/// budget spent, or every target failed with a transient error.
fn worth_queueing(error: &RouteError) -> bool {
    match error {
        RouteError::Unavailable { .. } | RouteError::DeadlineExceeded { .. } => true,
        RouteError::Exhausted { last, .. } => last.is_retryable(),
        RouteError::UnknownModel { .. }
        | RouteError::WrongEndpoint { .. }
        | RouteError::NoTargets { .. }
        | RouteError::Rejected { .. } => false,
    }
}

// === impl Switch ===

impl<'a> Switch<'a> {
    fn prepare(
        state: &'a Arc<AppState>,
        tenant: &'a Tenant,
        headers: &HeaderMap,
        request: &ChatRequest,
    ) -> Result<Self, JobsError> {
        let queue = jobs::queue(state)?.clone();
        let chat = ChatRequest::parse(&request.raw().to_json_with(&[]))?;
        let key = jobs::chat_key(headers, &chat)?;
        Ok(Self {
            state,
            tenant,
            queue,
            chat,
            key,
        })
    }

    /// Whether the request's `Idempotency-Key` was used before: its job is
    /// then replayed (or the key's conflict answered) by [`Switch::queue`]
    /// without routing the request again. A store failure goes there too,
    /// to be answered.
    async fn key_used(&self) -> bool {
        let Some(key) = &self.key else { return false };
        let stored = self.queue.store().key(&self.tenant.name, &key.key).await;
        !matches!(stored, Ok(None))
    }

    /// Queues the request as a job for the workers.
    async fn queue(self) -> Response {
        let submitted = async {
            let submission = self.submission().await?;
            Ok::<_, JobsError>(Accepted::from(self.queue.submit(&submission).await?))
        };
        submitted.await.map_or_else(
            |error| ApiError::from(error).into_response(),
            jobs::accepted,
        )
    }

    /// Makes the request a job held by this instance and lets `routing`
    /// finish in the background: its answer becomes the job's result; its
    /// failure gives the job to the workers. A replayed key leaves the
    /// earlier job as it is and drops `routing`.
    async fn hand_over<F>(self, routing: std::pin::Pin<Box<F>>) -> Response
    where
        F: Future<Output = Result<Served, Unserved>> + Send + 'static,
    {
        let held = async {
            let submission = self.submission().await?;
            Ok::<_, JobsError>(self.queue.submit_running(&submission).await?)
        };
        let accepted = match held.await {
            Ok(Held::Running { record, job }) => {
                tracing::info!(job = %job.id(), "the wait ran out; the request continues as a job");
                let state = self.state.clone();
                let tenant = self.tenant.name.clone();
                let work = async move { held_output(&state, &tenant, routing.await) };
                tokio::spawn(job.run(work).in_current_span());
                Accepted {
                    id: record.id.clone(),
                    body: record.to_json(),
                    replayed: false,
                }
            }
            Ok(Held::Replayed { id, body }) => Accepted {
                id,
                body,
                replayed: true,
            },
            Err(error) => return ApiError::from(error).into_response(),
        };
        jobs::accepted(accepted)
    }

    async fn submission(&self) -> Result<keel_queue::Submission, JobsError> {
        jobs::chat_submission(
            self.state,
            &self.queue,
            self.tenant,
            &self.chat,
            self.key.clone(),
        )
        .await
    }
}

/// The job's result from the routing that outlived the wait, as for a job
/// run; `None` (the workers run the job) when routing failed.
fn held_output(
    state: &AppState,
    tenant: &str,
    served: Result<Served, Unserved>,
) -> Option<JobOutput> {
    match served {
        Ok(served) => crate::ledger::job_output(&state.metrics, tenant, served).ok(),
        Err(Unserved::Failed { error, .. }) => {
            tracing::info!(%error, "the synchronous attempt of a job failed; a worker runs it");
            None
        }
        Err(Unserved::Limited(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use keel_router::ProviderError;
    use keel_types::ErrorBody;

    use super::*;

    fn upstream(status: u16) -> ProviderError {
        ProviderError::Status {
            provider: String::from("first"),
            status,
            body: ErrorBody::new("upstream says no", "server_error", None, None),
            retry_after: None,
        }
    }

    fn exhausted(last: ProviderError) -> RouteError {
        RouteError::Exhausted {
            model: String::from("chat"),
            last,
            attempts: 1,
        }
    }

    #[test]
    fn failures_a_later_run_may_not_meet_are_queued_and_the_requests_own_are_not() {
        let model = String::from("chat");
        let queued = [
            RouteError::Unavailable {
                model: model.clone(),
                retry_after: Duration::from_secs(1),
                attempts: 0,
            },
            RouteError::DeadlineExceeded {
                model: model.clone(),
                attempts: 2,
            },
            exhausted(upstream(503)),
            exhausted(upstream(429)),
        ];
        for error in &queued {
            assert!(worth_queueing(error), "{error}");
        }
        let answered = [
            exhausted(upstream(400)),
            RouteError::Rejected {
                error: upstream(422),
                attempts: 1,
            },
            RouteError::UnknownModel {
                model: model.clone(),
            },
            RouteError::NoTargets { model },
        ];
        for error in &answered {
            assert!(!worth_queueing(error), "{error}");
        }
    }
}
