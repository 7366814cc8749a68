//! The job endpoints: `POST /v1/jobs` (and `POST /v1/chat/completions` with
//! `Prefer: respond-async`), `GET /v1/jobs/{id}`, `GET /v1/jobs` and
//! `POST /v1/jobs/{id}/cancel`. A submission is validated here (a bad
//! request is a 400 now, not a failed job later) and answered 202 only
//! once the job row has committed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_queue::{
    new_job_id, now_ms, CancelOutcome, JobStatus, KeyClaim, ListQuery, NewJob, Queue,
    RedeliverOutcome, Submission, Submitted, WebhookStatus,
};
use keel_types::ChatRequest;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{ApiError, AppState, Tenant};

mod error;

pub use error::JobsError;

/// `POST /v1/jobs`.
pub async fn submit(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let queue = queue(&state)?;
    let headers = request.headers().clone();
    let body = read_body(request, state.body_limit()).await?;
    let parsed: SubmitBody = serde_json::from_slice(&body).map_err(|error| JobsError::InvalidBody {
        message: format!("the body must be {{\"request\": <chat completion request>, \"webhook\": {{\"url\": …}}, \"metadata\": {{…}}}}: {error}"),
        param: None,
    })?;
    // The inner request's errors name their field under `request.`.
    let chat = ChatRequest::parse(parsed.request.get().as_bytes()).map_err(JobsError::from)?;
    if let Some(metadata) = &parsed.metadata {
        if !metadata.get().starts_with('{') {
            return Err(JobsError::InvalidBody {
                message: String::from("metadata must be an object"),
                param: Some(String::from("metadata")),
            }
            .into());
        }
    }
    let job = Draft {
        request: parsed.request.get().to_owned(),
        metadata: parsed.metadata.map(|raw| raw.get().to_owned()),
        webhook_url: parsed.webhook.map(|hook| hook.url),
        response_request: None,
    };
    let key = idempotency_key(&headers, "/v1/jobs", &body)?;
    enqueue(&state, queue, &tenant, &chat, job, key).await
}

/// `POST /v1/chat/completions` with `Prefer: respond-async`: the request
/// becomes a job (RFC 7240; the answer says `Preference-Applied`).
pub(crate) async fn submit_chat(
    tenant: &Tenant,
    state: &Arc<AppState>,
    headers: &HeaderMap,
    chat: &ChatRequest,
) -> Response {
    let result = async {
        let queue = queue(state)?;
        let key = chat_key(headers, chat)?;
        let submission = chat_submission(state, queue, tenant, chat, key).await?;
        Ok::<_, JobsError>(accepted(Accepted::from(queue.submit(&submission).await?)))
    }
    .await;
    result.unwrap_or_else(|error| ApiError::from(error).into_response())
}

/// The `Idempotency-Key` of a chat request that becomes a job, fingerprinted
/// with the job's request.
pub(crate) fn chat_key(
    headers: &HeaderMap,
    chat: &ChatRequest,
) -> Result<Option<KeyClaim>, JobsError> {
    idempotency_key(
        headers,
        "/v1/chat/completions respond-async",
        &chat.raw().to_json_with(&[]),
    )
}

/// A chat request as a job, checked like any submission.
pub(crate) async fn chat_submission(
    state: &AppState,
    queue: &Queue,
    tenant: &Tenant,
    chat: &ChatRequest,
    key: Option<KeyClaim>,
) -> Result<Submission, JobsError> {
    let job = Draft {
        request: String::from_utf8_lossy(&chat.raw().to_json_with(&[])).into_owned(),
        metadata: None,
        webhook_url: None,
        response_request: None,
    };
    submission(state, queue, tenant, chat, job, key).await
}

/// The 202 of a chat request that became a job: `Location`, and
/// `Preference-Applied: respond-async` (RFC 7240).
pub(crate) fn accepted(accepted: Accepted) -> Response {
    let mut response = accepted_response(accepted);
    response.headers_mut().insert(
        "preference-applied",
        HeaderValue::from_static("respond-async"),
    );
    response
}

/// Whether the client prefers an asynchronous answer (`Prefer: respond-async`).
pub(crate) fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all(crate::headers::PREFER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| {
            value.split(',').any(|preference| {
                preference
                    .split(';')
                    .next()
                    .is_some_and(|name| name.trim().eq_ignore_ascii_case("respond-async"))
            })
        })
}

/// The longest `Prefer: wait` honoured: a longer one waits this long.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// How long a client that prefers `respond-async` waits for a synchronous
/// answer (`Prefer: respond-async, wait=N`, RFC 7240), at most
/// [`MAX_WAIT`]; `None` without `respond-async` (a lone `wait` changes
/// nothing) or without a `wait` in whole seconds.
pub(crate) fn async_wait(headers: &HeaderMap) -> Option<Duration> {
    if !wants_async(headers) {
        return None;
    }
    let seconds = headers
        .get_all(crate::headers::PREFER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .find_map(|preference| {
            let (name, value) = preference.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })?;
    Some(Duration::from_secs(seconds).min(MAX_WAIT))
}

/// `GET /v1/jobs/{id}`; `Retry-After` while the job is queued or running.
pub async fn get(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = queue(&state)?
        .get(&tenant.name, &id)
        .await?
        .ok_or(JobsError::NotFound(id))?;
    let mut response = json(StatusCode::OK, job.to_json());
    if !job.status.is_final() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// `GET /v1/jobs?status=&webhook_status=&limit=&after=`: newest first.
pub async fn list(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            JobStatus::parse(text).ok_or_else(|| JobsError::InvalidQuery {
                message: format!(
                    "status: '{text}' is not one of queued, running, succeeded, failed, cancelled"
                ),
                param: "status",
            })?,
        ),
    };
    let limit = match params.limit.as_deref() {
        None | Some("") => 20,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=100).contains(limit))
            .ok_or_else(|| JobsError::InvalidQuery {
                message: format!("limit: '{text}' is not a number from 1 to 100"),
                param: "limit",
            })?,
    };
    let webhook_status = match params.webhook_status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            WebhookStatus::parse(text).ok_or_else(|| JobsError::InvalidQuery {
                message: format!(
                    "webhook_status: '{text}' is not one of pending, delivered, failed"
                ),
                param: "webhook_status",
            })?,
        ),
    };
    let query = ListQuery {
        status,
        webhook_status,
        after: params.after.filter(|after| !after.is_empty()),
        limit,
    };
    let (jobs, has_more) = queue(&state)?.list(&tenant.name, &query).await?;
    let data: Vec<String> = jobs.iter().map(keel_queue::JobRecord::to_json).collect();
    Ok(json(
        StatusCode::OK,
        format!(
            r#"{{"object":"list","data":[{}],"has_more":{has_more}}}"#,
            data.join(",")
        ),
    ))
}

/// `POST /v1/jobs/{id}/cancel`.
pub async fn cancel(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match queue(&state)?.cancel(&tenant.name, &id).await? {
        CancelOutcome::Cancelled(job) => Ok(json(StatusCode::OK, job.to_json())),
        CancelOutcome::AlreadyFinal(job) => Err(JobsError::NotCancellable {
            id,
            status: job.status.as_str(),
        }
        .into()),
        CancelOutcome::NotFound => Err(JobsError::NotFound(id).into()),
    }
}

/// `POST /v1/jobs/{id}/webhook/redeliver`: sends a final job's webhook
/// again with the same `webhook-id` (the retry schedule starts over) and
/// enables its endpoint again if deliveries to it had been disabled.
pub async fn redeliver(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match queue(&state)?.redeliver(&tenant.name, &id).await? {
        RedeliverOutcome::Redelivering(job) => Ok(json(StatusCode::OK, job.to_json())),
        RedeliverOutcome::NotRedeliverable(job) => Err(JobsError::NotRedeliverable {
            id,
            why: if job.webhook_url.is_none() {
                "has no webhook"
            } else if !job.status.is_final() {
                "has not finished; its webhook is sent when it does"
            } else {
                "has a webhook delivery in progress"
            },
        }
        .into()),
        RedeliverOutcome::NotFound => Err(JobsError::NotFound(id).into()),
    }
}

/// The query of the job list.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    webhook_status: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    request: Box<RawValue>,
    #[serde(default)]
    webhook: Option<WebhookSpec>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSpec {
    url: String,
}

/// A job before it has an id and a tenant.
/// A job about to be submitted.
pub(crate) struct Draft {
    /// The chat request, as JSON text.
    pub request: String,
    /// The client's metadata object, as JSON text.
    pub metadata: Option<String>,
    /// Where to send the webhook.
    pub webhook_url: Option<String>,
    /// The Responses API body of a background response.
    pub response_request: Option<String>,
}

/// A submission the store has committed (or replayed for its key).
pub(crate) struct Accepted {
    /// The job id.
    pub id: String,
    /// The job object as JSON text (as first answered, for a replay).
    pub body: String,
    /// It was answered before, under the same `Idempotency-Key`.
    pub replayed: bool,
}

pub(crate) fn queue(state: &AppState) -> Result<&Arc<Queue>, JobsError> {
    state.jobs.as_ref().ok_or(JobsError::Disabled)
}

async fn enqueue(
    state: &AppState,
    queue: &Queue,
    tenant: &Tenant,
    chat: &ChatRequest,
    job: Draft,
    key: Option<KeyClaim>,
) -> Result<Response, ApiError> {
    let accepted = submit_job(state, queue, tenant, chat, job, key).await?;
    Ok(accepted_response(Accepted::from(accepted)))
}

/// 202 with the job object, `Location`, and `Idempotent-Replayed` for a replay.
fn accepted_response(accepted: Accepted) -> Response {
    let Accepted { id, body, replayed } = accepted;
    let mut response = json(StatusCode::ACCEPTED, body);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Checks a job and commits it (with its idempotency key, when sent).
pub(crate) async fn submit_job(
    state: &AppState,
    queue: &Queue,
    tenant: &Tenant,
    chat: &ChatRequest,
    job: Draft,
    key: Option<KeyClaim>,
) -> Result<Submitted, JobsError> {
    let submission = submission(state, queue, tenant, chat, job, key).await?;
    Ok(queue.submit(&submission).await?)
}

/// Checks a job (its model serves chat, its tenant is under its queued-job
/// cap) and gives it an id.
async fn submission(
    state: &AppState,
    queue: &Queue,
    tenant: &Tenant,
    chat: &ChatRequest,
    job: Draft,
    key: Option<KeyClaim>,
) -> Result<Submission, JobsError> {
    match state.router.check_endpoint(chat.model(), chat.endpoint()) {
        Ok(()) => {}
        Err(keel_router::RouteError::UnknownModel { model }) => {
            return Err(JobsError::UnknownModel(model))
        }
        Err(other) => return Err(JobsError::WrongEndpoint(other.to_string())),
    }
    if let Some(max) = state.limits.max_queued_jobs(&tenant.name) {
        // Checked before the insert, not in its transaction: concurrent
        // submissions of one tenant may pass the cap by their number.
        let queued = queue.queued(&tenant.name).await?;
        if u64::try_from(queued).unwrap_or(0) >= max {
            return Err(JobsError::TooManyQueued(max));
        }
    }
    let job = NewJob {
        id: new_job_id(now_ms()),
        tenant: tenant.name.to_string(),
        model: chat.model().to_owned(),
        request: job.request,
        metadata: job.metadata.filter(|metadata| metadata != "null"),
        webhook_url: job.webhook_url,
        response_request: job.response_request,
    };
    Ok(Submission { job, key })
}

// === impl Accepted ===

impl From<Submitted> for Accepted {
    fn from(submitted: Submitted) -> Self {
        match submitted {
            Submitted::Created(record) => Self {
                id: record.id.clone(),
                body: record.to_json(),
                replayed: false,
            },
            Submitted::Replayed { id, body } => Self {
                id,
                body,
                replayed: true,
            },
        }
    }
}

/// The `Idempotency-Key` of a request, scoped later by tenant, with the
/// fingerprint of what it was sent with.
pub(crate) fn idempotency_key(
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<Option<KeyClaim>, JobsError> {
    let Some(value) = headers.get(crate::headers::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| JobsError::BadKey)?.trim();
    if key.is_empty() || key.len() > keel_queue::MAX_KEY_LENGTH {
        return Err(JobsError::BadKey);
    }
    Ok(Some(KeyClaim {
        key: key.to_owned(),
        request_hash: keel_queue::request_hash("POST", path, body),
    }))
}

async fn read_body(request: Request, limit: crate::extract::BodyLimit) -> Result<Bytes, JobsError> {
    crate::extract::read_body(request, limit)
        .await
        .map_err(|error| match error {
            ApiError::BodyTooLarge { limit } => JobsError::TooLarge(limit),
            ApiError::BodyTimeout { seconds } => JobsError::BodyTimeout(seconds),
            other => JobsError::InvalidBody {
                message: other.to_string(),
                param: None,
            },
        })
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_respond_async_is_recognised_among_other_preferences() {
        let mut headers = HeaderMap::new();
        assert!(!wants_async(&headers));
        headers.insert(
            "prefer",
            HeaderValue::from_static("return=minimal, respond-async; wait=10"),
        );
        assert!(wants_async(&headers));
        headers.insert("prefer", HeaderValue::from_static("respond-asynchronously"));
        assert!(!wants_async(&headers));
    }

    #[test]
    fn prefer_wait_counts_only_with_respond_async_and_is_capped() {
        let wait = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("prefer", HeaderValue::from_static(value));
            async_wait(&headers)
        };
        assert_eq!(wait("respond-async, wait=2"), Some(Duration::from_secs(2)));
        assert_eq!(wait("wait=5, Respond-Async"), Some(Duration::from_secs(5)));
        assert_eq!(
            wait("respond-async; wait=10"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(wait("respond-async, wait=3600"), Some(MAX_WAIT));
        assert_eq!(wait("respond-async"), None);
        assert_eq!(wait("respond-async, wait=soon"), None);
        assert_eq!(wait("wait=2"), None);
    }
}
