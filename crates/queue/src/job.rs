//! The job: its states, its stored record and the job object clients see.

use serde::Serialize;
use serde_json::value::RawValue;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a worker (first run or a retry whose backoff has passed).
    Queued,
    /// Claimed by a worker under a lease.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error, for good.
    Failed,
    /// Cancelled by the client.
    Cancelled,
}

/// Where a job's webhook delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookStatus {
    /// Not yet delivered; a delivery is due or scheduled.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed, or the address was refused.
    Failed,
}

/// A job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The job id (see [`new_job_id`]).
    pub id: String,
    /// The tenant that owns it.
    pub tenant: String,
    /// The public model it asks for.
    pub model: String,
    /// The chat completion request, as JSON text.
    pub request: String,
    /// The client's metadata object, as JSON text.
    pub metadata: Option<String>,
    /// Where to send the completion webhook.
    pub webhook_url: Option<String>,
    /// The Responses API body a background response was created from (its
    /// answer is shown as a `response` object); `None` for chat jobs.
    pub response_request: Option<String>,
}

/// A stored job, as read back from the store. Times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// The job id.
    pub id: String,
    /// The owning tenant.
    pub tenant: String,
    /// The state.
    pub status: JobStatus,
    /// The public model.
    pub model: String,
    /// The client's metadata object, as JSON text.
    pub metadata: Option<String>,
    /// When it was accepted.
    pub created_at: i64,
    /// When its first run started.
    pub started_at: Option<i64>,
    /// When it reached a final state.
    pub finished_at: Option<i64>,
    /// Runs started so far.
    pub attempts: i64,
    /// The chat completion, as JSON text, once succeeded.
    pub result: Option<String>,
    /// The last error, an OpenAI error object as JSON text.
    pub error: Option<String>,
    /// The webhook URL.
    pub webhook_url: Option<String>,
    /// The webhook delivery state, once the job is final.
    pub webhook_status: Option<WebhookStatus>,
    /// Delivery attempts made.
    pub webhook_attempts: i64,
    /// Why the last delivery attempt failed.
    pub webhook_last_error: Option<String>,
    /// What its answer cost in USD, when its target has a price.
    pub cost_usd: Option<f64>,
    /// The Responses API body of a background response.
    pub response_request: Option<String>,
}

#[derive(Serialize)]
struct JobObject<'a> {
    id: &'a str,
    object: &'static str,
    status: &'static str,
    model: &'a str,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    attempts: i64,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
    webhook: Option<WebhookObject<'a>>,
    metadata: Option<&'a RawValue>,
    cost_usd: Option<f64>,
}

#[derive(Serialize)]
struct WebhookObject<'a> {
    url: &'a str,
    status: &'static str,
    attempts: i64,
    last_error: Option<&'a str>,
}

/// A new job id: `job_`, the creation time in milliseconds as 12 hex digits,
/// then 16 random hex digits. Ids sort by creation time, which is what the
/// newest-first list and its `after` cursor rely on.
pub fn new_job_id(now_ms: i64) -> String {
    format!("job_{:012x}{:016x}", now_ms.max(0), fastrand::u64(..))
}

// === impl JobStatus ===

impl JobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

// === impl WebhookStatus ===

impl WebhookStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

// === impl JobRecord ===

impl JobRecord {
    /// The job object (README, "A five-minute tour") as JSON text. Times are Unix seconds, as in
    /// OpenAI's objects. Stored JSON (result, error, metadata) is embedded as
    /// it is; text that is somehow not JSON is shown as `null`.
    pub fn to_json(&self) -> String {
        fn raw(text: &Option<String>) -> Option<&RawValue> {
            text.as_deref()
                .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
        }
        let webhook = self.webhook_url.as_deref().map(|url| WebhookObject {
            url,
            status: self
                .webhook_status
                .unwrap_or(WebhookStatus::Pending)
                .as_str(),
            attempts: self.webhook_attempts,
            last_error: self.webhook_last_error.as_deref(),
        });
        let object = JobObject {
            id: &self.id,
            object: "job",
            status: self.status.as_str(),
            model: &self.model,
            created_at: self.created_at.div_euclid(1000),
            started_at: self.started_at.map(|at| at.div_euclid(1000)),
            finished_at: self.finished_at.map(|at| at.div_euclid(1000)),
            attempts: self.attempts,
            result: raw(&self.result),
            error: raw(&self.error),
            webhook,
            metadata: raw(&self.metadata),
            cost_usd: self.cost_usd,
        };
        serde_json::to_string(&object).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> JobRecord {
        JobRecord {
            id: String::from("job_1"),
            tenant: String::from("acme"),
            status: JobStatus::Succeeded,
            model: String::from("chat"),
            metadata: Some(String::from(r#"{"k":"v"}"#)),
            created_at: 1_700_000_000_123,
            started_at: Some(1_700_000_001_000),
            finished_at: Some(1_700_000_002_999),
            attempts: 1,
            result: Some(String::from(r#"{"object":"chat.completion"}"#)),
            error: None,
            webhook_url: Some(String::from("https://example.com/hook")),
            webhook_status: Some(WebhookStatus::Delivered),
            webhook_attempts: 2,
            webhook_last_error: None,
            cost_usd: Some(0.0125),
            response_request: None,
        }
    }

    #[test]
    fn the_job_object_has_every_field_of_the_spec_in_order() -> Result<(), serde_json::Error> {
        let json: serde_json::Value = serde_json::from_str(&record().to_json())?;
        let expected = serde_json::json!({
            "id": "job_1", "object": "job", "status": "succeeded", "model": "chat",
            "created_at": 1_700_000_000, "started_at": 1_700_000_001, "finished_at": 1_700_000_002,
            "attempts": 1, "result": {"object": "chat.completion"}, "error": null,
            "webhook": {"url": "https://example.com/hook", "status": "delivered", "attempts": 2, "last_error": null},
            "metadata": {"k": "v"}, "cost_usd": 0.0125
        });
        assert_eq!(json, expected);
        Ok(())
    }

    #[test]
    fn job_ids_sort_by_creation_time() {
        let older = new_job_id(1_700_000_000_000);
        let newer = new_job_id(1_700_000_000_001);
        assert!(older < newer);
        assert_eq!(older.len(), 4 + 12 + 16);
    }

    #[test]
    fn a_job_without_webhook_shows_null() -> Result<(), serde_json::Error> {
        let mut job = record();
        job.webhook_url = None;
        let json: serde_json::Value = serde_json::from_str(&job.to_json())?;
        assert!(json["webhook"].is_null());
        Ok(())
    }
}
