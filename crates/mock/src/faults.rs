//! The fault plan a test or benchmark sets per upstream model.
//!
//! A plan is plain data (`Faults`), set through `MockState::set_faults` or
//! `PUT /_mock/faults/{model}`. `validate` checks what serde cannot, so the
//! control API can reject a bad plan with a clear message instead of failing
//! later on the request path.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The largest number of content chunks a reply may have; larger plans are clamped.
pub const MAX_CHUNKS: u32 = 100_000;

/// The number of content chunks in a reply when the plan does not set `chunks`.
pub const DEFAULT_CHUNKS: u32 = 20;

/// The base first-token delay heavy-tail requests multiply when `first_token_delay_ms` is 0.
pub const HEAVY_TAIL_BASE_MS: u64 = 10;

/// What the mock does wrong, or slowly, for one upstream model.
///
/// Every field is optional in JSON; an empty object means "behave normally".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fail the next `count` requests with an injected status.
    pub fail: Option<FailNext>,
    /// Delay before the response head (non-stream) or before the first
    /// content chunk (stream; the head and role chunk go out at once).
    pub first_token_delay_ms: u64,
    /// Delay before the response head, streaming or not.
    pub headers_delay_ms: u64,
    /// Delay between two content chunks of a stream.
    pub chunk_delay_ms: u64,
    /// After K content chunks, send nothing more and keep the connection open.
    pub stall_after_chunk: Option<u32>,
    /// After K content chunks, close the connection without a terminal event.
    pub drop_after_chunk: Option<u32>,
    /// After K content chunks, send an in-band error event and end the stream.
    pub error_event_after_chunk: Option<u32>,
    /// One request in `one_in` has its first-token delay multiplied by `factor`.
    pub heavy_tail: Option<HeavyTail>,
    /// Number of content chunks in the reply (default 20).
    pub chunks: Option<u32>,
    /// Hand each event of a stream to the socket in its own write, as an
    /// upstream whose chunks arrive in separate reads would. By default
    /// events ready at the same time (a burst) may share one write.
    pub write_each_chunk: bool,
}

/// Fail the next `count` requests with `status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailNext {
    /// The HTTP status to answer with (100..=999).
    pub status: u16,
    /// How many requests fail before the model answers normally again.
    #[serde(default = "one")]
    pub count: u32,
    /// The `Retry-After` header value, sent verbatim when set.
    #[serde(default)]
    pub retry_after: Option<String>,
    /// A body to send instead of the provider's error shape.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

/// Slow down every `one_in`-th request's first token by `factor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeavyTail {
    /// Every `one_in`-th request under the plan is slow (1 = all of them, 0 = none).
    pub one_in: u32,
    /// The multiplier applied to the base first-token delay.
    pub factor: f64,
}

/// Why a fault plan was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InvalidFaults {
    /// `fail.status` is not a three-digit HTTP status.
    #[error("fail.status: {0} is not an HTTP status (100..=999)")]
    Status(u16),
    /// `fail.retry_after` cannot be sent as a header value.
    #[error("fail.retry_after: {0:?} is not a valid header value")]
    RetryAfter(String),
    /// `heavy_tail.factor` is negative, infinite or NaN.
    #[error("heavy_tail.factor: {0} must be a finite number >= 0")]
    HeavyTailFactor(f64),
}

/// How a reply ends early, if the plan says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interruption {
    /// Send nothing more, keep the connection open.
    Stall,
    /// Close the connection without a terminal event.
    Drop,
    /// Send an in-band error event, then end.
    ErrorEvent,
}

// === impl Faults ===

impl Faults {
    /// Checks the parts of a plan that serde cannot: status range, header
    /// value, heavy-tail factor.
    pub fn validate(&self) -> Result<(), InvalidFaults> {
        if let Some(fail) = &self.fail {
            if !(100..=999).contains(&fail.status) {
                return Err(InvalidFaults::Status(fail.status));
            }
            if let Some(value) = &fail.retry_after {
                if axum::http::HeaderValue::from_str(value).is_err() {
                    return Err(InvalidFaults::RetryAfter(value.clone()));
                }
            }
        }
        if let Some(tail) = &self.heavy_tail {
            if !tail.factor.is_finite() || tail.factor < 0.0 {
                return Err(InvalidFaults::HeavyTailFactor(tail.factor));
            }
        }
        Ok(())
    }

    /// The number of content chunks a reply has under this plan.
    pub(crate) fn chunk_count(&self) -> u32 {
        self.chunks.unwrap_or(DEFAULT_CHUNKS).min(MAX_CHUNKS)
    }

    /// The first early ending the plan asks for, as `(after K chunks, how)`.
    ///
    /// When several are set, the one with the smallest K wins; on a tie an
    /// error event beats a drop, which beats a stall.
    pub(crate) fn interruption(&self) -> Option<(u32, Interruption)> {
        [
            (self.error_event_after_chunk, Interruption::ErrorEvent),
            (self.drop_after_chunk, Interruption::Drop),
            (self.stall_after_chunk, Interruption::Stall),
        ]
        .into_iter()
        .filter_map(|(after, how)| after.map(|after| (after, how)))
        .min_by_key(|(after, _)| *after)
    }
}

// === impl HeavyTail ===

impl HeavyTail {
    /// The slowed first-token delay for a base delay in milliseconds.
    pub(crate) fn slowed_ms(&self, base_ms: u64) -> u64 {
        let base = if base_ms == 0 {
            HEAVY_TAIL_BASE_MS
        } else {
            base_ms
        };
        // The float product is clamped into u64 range by the `as` cast.
        (base as f64 * self.factor).round() as u64
    }
}

fn one() -> u32 {
    1
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn empty_object_is_the_default_plan() {
        let faults: Faults = serde_json::from_str("{}").unwrap();
        assert_eq!(faults, Faults::default());
        assert_eq!(faults.chunk_count(), DEFAULT_CHUNKS);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<Faults>(r#"{"stall_after":3}"#).is_err());
    }

    #[test]
    fn validate_rejects_impossible_status_and_factor() {
        let mut faults = Faults {
            fail: Some(FailNext {
                status: 42,
                ..FailNext::default()
            }),
            ..Faults::default()
        };
        assert_eq!(faults.validate(), Err(InvalidFaults::Status(42)));
        faults.fail = None;
        faults.heavy_tail = Some(HeavyTail {
            one_in: 2,
            factor: f64::NAN,
        });
        assert!(matches!(
            faults.validate(),
            Err(InvalidFaults::HeavyTailFactor(_))
        ));
    }

    #[test]
    fn earliest_interruption_wins() {
        let faults = Faults {
            stall_after_chunk: Some(2),
            drop_after_chunk: Some(5),
            error_event_after_chunk: Some(2),
            ..Faults::default()
        };
        assert_eq!(faults.interruption(), Some((2, Interruption::ErrorEvent)));
    }

    #[test]
    fn heavy_tail_uses_ten_ms_base_when_no_delay_is_set() {
        let tail = HeavyTail {
            one_in: 3,
            factor: 5.0,
        };
        assert_eq!(tail.slowed_ms(0), 50);
        assert_eq!(tail.slowed_ms(40), 200);
    }
}
