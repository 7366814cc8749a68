//! One try on one target, up to its commit point.

use std::sync::Arc;

use futures_util::StreamExt;
use keel_providers::{ProviderError, Reply, StreamEvent};
use keel_types::ChatRequest;
use tracing::Instrument;

use crate::{Answer, Target};

/// Sends the request to `target` and reads until the commit point: the whole
/// body for a non-stream request, the first token (or the end of an empty
/// answer) for a stream. Any failure before it is returned, not forwarded.
pub(crate) async fn attempt(target: &Target, request: Arc<ChatRequest>, number: u32) -> Result<Answer, ProviderError> {
    let span = tracing::debug_span!("keel.attempt", provider = %target.provider_name, attempt = number, hedge = false);
    async move {
        match target.provider.chat(request, target.model.clone()).await? {
            Reply::Complete(completion) => Ok(Answer::Complete(completion)),
            Reply::Stream(mut stream) => {
                let mut head = Vec::new();
                loop {
                    let Some(event) = stream.next().await else {
                        return Err(ProviderError::Truncated { provider: target.provider_name.to_string() });
                    };
                    let event = event?;
                    let committed = matches!(event, StreamEvent::Chunk { token: true, .. } | StreamEvent::Done);
                    head.push(event);
                    if committed {
                        return Ok(Answer::Stream { head, rest: stream });
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}
