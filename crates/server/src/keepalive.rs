//! The body of a stream whose headers went out before its first token
//! (`server.sse_keepalive`): an SSE comment every interval while the
//! answer is still being routed, then the answer's own frames.
//!
//! The body owns the routing: a client that leaves drops the body, which
//! drops the routing and with it the upstream call.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use futures_util::{stream, StreamExt as _};
use tokio::time::{Instant, MissedTickBehavior};

/// The comment sent while waiting: SSE clients ignore it, idle timers of
/// proxies and load balancers see traffic.
pub(crate) const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// `: keep-alive` every `every` (the first after `every`) until `answer`
/// resolves, then the body it resolves to.
pub(crate) fn body<A>(every: Duration, answer: A) -> Body
where
    A: Future<Output = Body> + Send + 'static,
{
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    // A client slow to read gets one comment, not a burst of missed ones.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let waiting = Some((Box::pin(answer), ticks));
    let parts = stream::unfold(waiting, |waiting| async move {
        let (mut answer, mut ticks) = waiting?;
        tokio::select! {
            biased;
            body = &mut answer => Some((body, None)),
            _ = ticks.tick() => Some((Body::from(KEEP_ALIVE), Some((answer, ticks)))),
        }
    });
    Body::from_stream(parts.flat_map(Body::into_data_stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use futures_util::Stream;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const ANSWER: &[u8] = b"data: {\"n\":1}\n\ndata: [DONE]\n\n";

    /// Each write of `body` with the (paused) time it came at.
    async fn writes_with_times(body: Body) -> Result<Vec<(Duration, Bytes)>, axum::Error> {
        let started = Instant::now();
        let mut writes = Vec::new();
        let mut data = std::pin::pin!(body.into_data_stream());
        while let Some(write) = next(&mut data).await {
            writes.push((started.elapsed(), write?));
        }
        Ok(writes)
    }

    async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
        stream.next().await
    }

    fn secs(count: u64) -> Duration {
        Duration::from_secs(count)
    }

    #[tokio::test(start_paused = true)]
    async fn comments_every_interval_until_the_answer_then_its_frames() -> TestResult {
        let answer = async {
            tokio::time::sleep(Duration::from_millis(3_500)).await;
            Body::from(ANSWER)
        };
        let writes = writes_with_times(body(secs(1), answer)).await?;
        let keep_alive = Bytes::from_static(KEEP_ALIVE);
        let expected = vec![
            (secs(1), keep_alive.clone()),
            (secs(2), keep_alive.clone()),
            (secs(3), keep_alive),
            (Duration::from_millis(3_500), Bytes::from_static(ANSWER)),
        ];
        assert_eq!(writes, expected);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_ready_before_the_first_interval_has_no_comment() -> TestResult {
        let answer = async {
            tokio::time::sleep(Duration::from_millis(900)).await;
            Body::from(ANSWER)
        };
        let writes = writes_with_times(body(secs(1), answer)).await?;
        assert_eq!(
            writes,
            vec![(Duration::from_millis(900), Bytes::from_static(ANSWER))]
        );
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_after_the_comments_ends_with_the_error_event_and_done() -> TestResult {
        let error = keel_types::ErrorBody::new("every target failed", "upstream_error", None, None);
        let answer = async move {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            Body::from(crate::sse::in_band_error(&error))
        };
        let writes = writes_with_times(body(secs(1), answer)).await?;
        let comments = writes
            .iter()
            .take_while(|(_, write)| write == KEEP_ALIVE)
            .count();
        assert_eq!(comments, 2, "{writes:?}");
        let last = writes
            .last()
            .map(|(_, write)| write.clone())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&last);
        assert!(
            text.starts_with("data: {\"error\":{\"message\":\"every target failed\""),
            "{text}"
        );
        assert!(text.ends_with("\n\ndata: [DONE]\n\n"), "{text}");
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_body_drops_the_pending_answer() -> TestResult {
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        let answer = async move {
            let _held_until_dropped = dropped_tx;
            std::future::pending::<Body>().await
        };
        let mut data = body(secs(1), answer).into_data_stream();
        let first = next(&mut data).await.transpose()?;
        assert_eq!(first, Some(Bytes::from_static(KEEP_ALIVE)));
        drop(data);
        // The sender went with the answer: the receiver sees it closed.
        assert!(dropped_rx.await.is_err());
        Ok(())
    }
}
