//! The generic SSE body: one event per stream item, timed with tokio timers,
//! cut short as the fault plan says.
//!
//! Each wire format supplies an `SseScript` (which events to send); this
//! module decides when to send them and how the stream ends. The request's
//! `RequestGuard` lives inside the stream, so when hyper drops the body (the
//! client went away, even during a stall) the request counts as cancelled.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;

use crate::faults::Interruption;
use crate::stats::RequestGuard;

/// The events of one streamed reply, in one wire format.
pub(crate) trait SseScript: Send + 'static {
    /// Events sent at once after the response head (role chunk, `message_start`...).
    fn head(&mut self) -> Vec<Bytes>;
    /// The number of content events.
    fn content_len(&self) -> u32;
    /// The content event at `index` (`0..content_len`).
    fn content(&mut self, index: u32) -> Bytes;
    /// Events after the content, the last one terminal (`[DONE]`, `message_stop`).
    fn tail(&mut self) -> Vec<Bytes>;
    /// The in-band error event that ends an interrupted stream.
    fn error_event(&mut self) -> Bytes;
}

/// When the events of a stream go out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Wait before the first content event.
    pub(crate) first_token: Duration,
    /// Wait before each later content event.
    pub(crate) between_chunks: Duration,
    /// Whether each event gets a write of its own.
    pub(crate) write_each: bool,
}

struct Runner {
    script: Box<dyn SseScript>,
    guard: RequestGuard,
    timing: Timing,
    interruption: Option<(u32, Interruption)>,
    phase: Phase,
    pending: VecDeque<Bytes>,
    first_token_due: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Head,
    Content(u32),
    Tail,
    Done,
}

enum Action {
    Send {
        delay: Duration,
        event: Bytes,
        settle: Option<Settle>,
    },
    Stall,
    Drop,
    End,
}

enum Settle {
    Completed,
    FailedInjected,
}

/// Builds an SSE response whose body plays `script`.
pub(crate) fn sse_response(
    script: Box<dyn SseScript>,
    guard: RequestGuard,
    timing: Timing,
    interruption: Option<(u32, Interruption)>,
) -> Response {
    let runner = Runner {
        script,
        guard,
        timing,
        interruption,
        phase: Phase::Start,
        pending: VecDeque::new(),
        first_token_due: true,
    };
    let body = Body::from_stream(stream::unfold(runner, Runner::step));
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, body).into_response()
}

// === impl Runner ===

impl Runner {
    /// Produces the next stream item, sleeping first when the timing says so.
    async fn step(mut self) -> Option<(io::Result<Bytes>, Self)> {
        match self.next_action() {
            Action::Send {
                delay,
                event,
                settle,
            } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                } else if self.timing.write_each {
                    // Pending once: hyper writes out what it holds before
                    // it polls the body for this event.
                    tokio::task::yield_now().await;
                }
                match settle {
                    Some(Settle::Completed) => self.guard.complete(),
                    Some(Settle::FailedInjected) => self.guard.fail_injected(),
                    None => {}
                }
                Some((Ok(event), self))
            }
            Action::Stall => {
                // `self` (and its guard) stays alive until hyper drops the body.
                std::future::pending::<()>().await;
                None
            }
            Action::Drop => {
                self.guard.fail_injected();
                Some((Err(injected_drop().await), self))
            }
            Action::End => None,
        }
    }

    fn next_action(&mut self) -> Action {
        loop {
            match self.phase {
                Phase::Start => {
                    self.pending = self.script.head().into();
                    self.phase = Phase::Head;
                }
                Phase::Head => match self.pending.pop_front() {
                    Some(event) => return send(Duration::ZERO, event, None),
                    None => self.phase = Phase::Content(0),
                },
                Phase::Content(index) => {
                    if let Some(action) = self.content_action(index) {
                        return action;
                    }
                }
                Phase::Tail => {
                    let Some(event) = self.pending.pop_front() else {
                        self.phase = Phase::Done;
                        continue;
                    };
                    // A reply without content still waits for its "first token".
                    let delay = self.take_delay(Duration::ZERO);
                    let settle = self.pending.is_empty().then_some(Settle::Completed);
                    return send(delay, event, settle);
                }
                Phase::Done => return Action::End,
            }
        }
    }

    /// The action at content slot `index`, or `None` once the content is over.
    fn content_action(&mut self, index: u32) -> Option<Action> {
        let len = self.script.content_len();
        if let Some((after, how)) = self.interruption {
            if index == after.min(len) {
                self.phase = Phase::Done;
                return Some(match how {
                    Interruption::Stall => Action::Stall,
                    Interruption::Drop => Action::Drop,
                    Interruption::ErrorEvent => {
                        let delay = self.take_delay(self.timing.between_chunks);
                        send(
                            delay,
                            self.script.error_event(),
                            Some(Settle::FailedInjected),
                        )
                    }
                });
            }
        }
        if index >= len {
            self.pending = self.script.tail().into();
            self.phase = Phase::Tail;
            return None;
        }
        self.phase = Phase::Content(index + 1);
        let delay = self.take_delay(self.timing.between_chunks);
        Some(send(delay, self.script.content(index), None))
    }

    /// The first-token delay for the first event after the head, `otherwise` after that.
    fn take_delay(&mut self, otherwise: Duration) -> Duration {
        if self.first_token_due {
            self.first_token_due = false;
            self.timing.first_token
        } else {
            otherwise
        }
    }
}

/// Waits until hyper has flushed what was sent so far, then returns the
/// error item that makes hyper abort the connection mid-body.
pub(crate) async fn injected_drop() -> io::Error {
    // Returning `Pending` once makes hyper flush its write buffer before it
    // polls the body again, so the client receives everything sent before
    // the drop, as it would from an upstream that dies mid-stream.
    tokio::task::yield_now().await;
    io::Error::other("keel mock: injected connection drop")
}

fn send(delay: Duration, event: Bytes, settle: Option<Settle>) -> Action {
    Action::Send {
        delay,
        event,
        settle,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use axum::body::Body;
    use bytes::Bytes;
    use futures_util::Stream;

    use super::{sse_response, SseScript, Timing};
    use crate::stats::Counters;

    /// Two head events, three content events, one tail event.
    struct Script;

    impl SseScript for Script {
        fn head(&mut self) -> Vec<Bytes> {
            vec![Bytes::from_static(b"h1"), Bytes::from_static(b"h2")]
        }
        fn content_len(&self) -> u32 {
            3
        }
        fn content(&mut self, _index: u32) -> Bytes {
            Bytes::from_static(b"c")
        }
        fn tail(&mut self) -> Vec<Bytes> {
            vec![Bytes::from_static(b"t")]
        }
        fn error_event(&mut self) -> Bytes {
            Bytes::from_static(b"e")
        }
    }

    /// Polls the body until it ends, counting the polls that found nothing
    /// ready: each is where hyper writes out what it holds.
    fn pendings(write_each: bool) -> std::io::Result<(usize, Vec<Bytes>)> {
        let timing = Timing {
            first_token: std::time::Duration::ZERO,
            between_chunks: std::time::Duration::ZERO,
            write_each,
        };
        let guard = Arc::new(Counters::default()).admit();
        let response = sse_response(Box::new(Script), guard, timing, None);
        let mut body = Body::into_data_stream(response.into_body());
        let mut context = Context::from_waker(std::task::Waker::noop());
        let (mut pending, mut events) = (0, Vec::new());
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        let _entered = runtime.enter();
        for _ in 0..100 {
            match std::pin::Pin::new(&mut body).poll_next(&mut context) {
                Poll::Pending => pending += 1,
                Poll::Ready(Some(Ok(event))) => events.push(event),
                Poll::Ready(_) => break,
            }
        }
        Ok((pending, events))
    }

    #[test]
    fn each_event_can_be_made_to_wait_for_its_own_write() -> std::io::Result<()> {
        let (together, events) = pendings(false)?;
        assert_eq!(together, 0, "a burst is ready all at once");
        assert_eq!(events, ["h1", "h2", "c", "c", "c", "t"]);
        let (apart, events) = pendings(true)?;
        assert_eq!(apart, 6, "one pause before each event");
        assert_eq!(events, ["h1", "h2", "c", "c", "c", "t"]);
        Ok(())
    }
}
