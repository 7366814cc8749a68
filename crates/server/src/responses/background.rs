//! Background responses (`background: true`): the request is stored as a
//! job on the durable queue (same leases, retries and webhooks, with Keel's
//! `webhook` extension) and answered at once with the `response` object,
//! `status: "queued"`. `GET /v1/responses/{id}` shows the job as a response
//! (queued, in_progress, completed or incomplete, failed, cancelled) and
//! `POST /v1/responses/{id}/cancel` cancels it. The response id is the job
//! id; only the tenant that created it sees it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_queue::{CancelOutcome, JobRecord, JobStatus, Submitted};
use keel_types::canonical::openai::read_completion_borrowed;
use keel_types::{ChatRequest, RawObject};

use super::response::{response_json, Echo, Status};
use crate::jobs::{idempotency_key, queue, submit_job, Draft, JobsError};
use crate::{ApiError, AppState, Tenant};

/// Stores a background response and answers with it, queued.
pub(crate) async fn create(
    state: &AppState,
    tenant: &Tenant,
    headers: &HeaderMap,
    chat: &ChatRequest,
    raw: &RawObject,
) -> Response {
    created(state, tenant, headers, chat, raw)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn created(
    state: &AppState,
    tenant: &Tenant,
    headers: &HeaderMap,
    chat: &ChatRequest,
    raw: &RawObject,
) -> Result<Response, ApiError> {
    let queue = queue(state)?;
    let body = raw.to_json_with(&[]);
    let key = idempotency_key(headers, "/v1/responses", &body)?;
    let webhook_url = raw
        .parse::<serde_json::Value>("webhook")
        .and_then(Result::ok)
        .and_then(|webhook| webhook.get("url")?.as_str().map(str::to_owned));
    let metadata = raw
        .get("metadata")
        .map(|value| value.get().to_owned())
        .filter(|metadata| metadata.starts_with('{'));
    let draft = Draft {
        request: String::from_utf8_lossy(&chat.raw().to_json_with(&[])).into_owned(),
        metadata,
        webhook_url,
        response_request: Some(String::from_utf8_lossy(&body).into_owned()),
    };
    // A new job is answered as it was stored, queued, even when a worker has
    // already claimed it; a replay shows the job as it is now.
    let record = match submit_job(state, queue, tenant, chat, draft, key).await? {
        Submitted::Created(record) => *record,
        Submitted::Replayed { id, .. } => queue
            .get(&tenant.name, &id)
            .await?
            .ok_or(JobsError::NotFound(id))?,
    };
    Ok(shown(&record))
}

/// `GET /v1/responses/{id}`: a background response, as it is now.
pub(crate) async fn get(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    let found = async {
        let job = queue(&state)?.get(&tenant.name, &id).await?;
        job.filter(|job| job.response_request.is_some())
            .ok_or(JobsError::NotFound(id))
    }
    .await;
    match found {
        Ok(job) => shown(&job),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `POST /v1/responses/{id}/cancel`: cancels a queued or running background
/// response (a running one's upstream call is aborted); a finished one is
/// left as it is (409).
pub(crate) async fn cancel(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    let outcome = async {
        let queue = queue(&state)?;
        let job = queue.get(&tenant.name, &id).await?;
        if job.is_none_or(|job| job.response_request.is_none()) {
            return Err(JobsError::NotFound(id));
        }
        match queue.cancel(&tenant.name, &id).await? {
            CancelOutcome::Cancelled(job) => Ok(job),
            CancelOutcome::AlreadyFinal(job) => Err(JobsError::NotCancellable {
                id: job.id.clone(),
                status: job.status.as_str(),
            }),
            CancelOutcome::NotFound => Err(JobsError::NotFound(id)),
        }
    }
    .await;
    match outcome {
        Ok(job) => shown(&job),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// The job as a `response` object.
fn shown(job: &JobRecord) -> Response {
    let raw = job
        .response_request
        .as_deref()
        .and_then(|body| keel_types::parse_object(body.as_bytes()).ok())
        .unwrap_or_default();
    let created_at = u64::try_from(job.created_at.div_euclid(1000)).unwrap_or(0);
    let echo = Echo::stored(&raw, job.id.clone(), created_at);
    let body = match job.status {
        JobStatus::Queued => echo.write(&job.model, Status::Queued, &[], None, None),
        JobStatus::Running => echo.write(&job.model, Status::InProgress, &[], None, None),
        JobStatus::Cancelled => echo.write(&job.model, Status::Cancelled, &[], None, None),
        JobStatus::Failed => {
            let message = failure_message(job.error.as_deref());
            echo.write(&job.model, Status::Failed, &[], None, Some(&message))
        }
        JobStatus::Succeeded => match job
            .result
            .as_deref()
            .map(|result| read_completion_borrowed(result.as_bytes()))
        {
            Some(Ok(answer)) => response_json(&echo, &answer),
            _ => {
                let message = "the stored answer could not be read";
                echo.write(&job.model, Status::Failed, &[], None, Some(message))
            }
        },
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The message of a stored OpenAI error object.
fn failure_message(error: Option<&str>) -> String {
    error
        .and_then(|error| serde_json::from_str::<serde_json::Value>(error).ok())
        .and_then(|error| error.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from("the response failed"))
}
