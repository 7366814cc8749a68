//! Joins frames that arrive together into one write.
//!
//! Frames read from an upstream connection are decoded in the same poll
//! that asks for them (the providers drive their connections inline), so
//! when the input has nothing ready the socket has nothing more: what is
//! held is written at once. A stream fed by another task (a follower of the
//! prompt cache's single flight, fed by the leader's task) is handed a
//! burst one frame per turn of that task, so [`coalesce`] tries, the first
//! time its input has nothing ready, yielding to the scheduler
//! (`tokio::task::yield_now`, which lets every other ready task run first)
//! before writing; if a frame came meanwhile, the stream keeps yielding
//! before each write, and frames that arrive during the turns join it; if
//! none did, it never yields again. A lone frame waits a scheduler turn at
//! most, never for more data. (A plain self-wake is not enough: tokio runs
//! the woken task again at once, before the task that would feed it.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;

/// The most bytes joined into one write.
const MAX_WRITE: usize = 64 * 1024;

/// Scheduler turns with no new frame before the held frames are written,
/// in a stream whose frames come from another task.
const IDLE_TURNS: u32 = 2;

/// A frame of a body: written at the end of the write it joins, so a
/// frame that is built from its parts (a `data:` frame around a chunk) is
/// built there, not in a buffer of its own first.
pub trait Frame {
    /// Appends the frame to `out`.
    fn write_to(&self, out: &mut BytesMut);
}

impl Frame for Bytes {
    fn write_to(&self, out: &mut BytesMut) {
        out.extend_from_slice(self);
    }
}

/// Joins frames that are ready together; see the module documentation.
pub fn coalesce<F: Frame, S: Stream<Item = F> + Unpin>(frames: S) -> Coalesce<S> {
    Coalesce {
        frames,
        held: BytesMut::new(),
        pause: None,
        idle_turns: 0,
        yielding: Yielding::Untried,
        ended: false,
    }
}

/// Whether yielding before a write brings more frames to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Yielding {
    /// Not tried yet: the first write with nothing more ready tries it.
    Untried,
    /// A frame came during a yield: the input is fed by another task.
    Pays,
    /// No frame came during the first yield: write at once from now on.
    Wasted,
}

type Pause = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The stream returned by [`coalesce`].
pub struct Coalesce<S> {
    frames: S,
    held: BytesMut,
    /// The yield in progress while frames are held.
    pause: Option<Pause>,
    /// Turns yielded since the last frame came.
    idle_turns: u32,
    yielding: Yielding,
    ended: bool,
}

// === impl Coalesce ===

impl<S> Coalesce<S> {
    fn take(&mut self) -> Poll<Option<Bytes>> {
        self.pause = None;
        self.idle_turns = 0;
        Poll::Ready(Some(self.held.split().freeze()))
    }
}

impl<F: Frame, S: Stream<Item = F> + Unpin> Stream for Coalesce<S> {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if self.ended {
                return if self.held.is_empty() {
                    Poll::Ready(None)
                } else {
                    self.take()
                };
            }
            match Pin::new(&mut self.frames).poll_next(cx) {
                Poll::Ready(Some(frame)) => {
                    frame.write_to(&mut self.held);
                    if self.yielding == Yielding::Untried && self.pause.is_some() {
                        self.yielding = Yielding::Pays;
                    }
                    self.pause = None;
                    self.idle_turns = 0;
                    if self.held.len() >= MAX_WRITE {
                        return self.take();
                    }
                }
                Poll::Ready(None) => self.ended = true,
                Poll::Pending if self.held.is_empty() => return Poll::Pending,
                Poll::Pending if self.yielding == Yielding::Wasted => return self.take(),
                Poll::Pending => {
                    let pause = self
                        .pause
                        .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
                    match pause.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(()) if self.yielding == Yielding::Untried => {
                            self.yielding = Yielding::Wasted;
                            return self.take();
                        }
                        // Everything else had its turns and nothing came: write.
                        Poll::Ready(()) if self.idle_turns + 1 >= IDLE_TURNS => return self.take(),
                        Poll::Ready(()) => {
                            self.idle_turns += 1;
                            self.pause = None;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{stream, StreamExt};

    #[tokio::test(flavor = "current_thread")]
    async fn frames_ready_together_leave_in_one_write() {
        let frames = stream::iter([&b"a"[..], b"b", b"c"].map(Bytes::from_static));
        let writes: Vec<Bytes> = coalesce(frames).collect().await;
        assert_eq!(writes, vec![Bytes::from_static(b"abc")]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_frame_fed_by_another_task_in_the_same_turn_joins_the_write() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
        let feeder = tokio::spawn(async move {
            for frame in ["a", "b", "c"] {
                if sender
                    .send(Bytes::from_static(frame.as_bytes()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let frames = tokio_stream_from(receiver);
        let writes: Vec<Bytes> = coalesce(frames).collect().await;
        let _ = feeder.await;
        assert_eq!(writes.concat(), b"abc");
        assert!(writes.len() < 3, "each frame was written alone: {writes:?}");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_lone_frame_is_not_held_back_waiting_for_more() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
        let mut writes = coalesce(tokio_stream_from(receiver));
        let _ = sender.send(Bytes::from_static(b"a")).await;
        let first = tokio::time::timeout(std::time::Duration::from_millis(1), writes.next()).await;
        assert_eq!(first.ok().flatten(), Some(Bytes::from_static(b"a")));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn once_a_yield_brings_nothing_frames_are_written_without_one() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let mut writes = coalesce(unbounded_stream_from(receiver));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = sender.send(Bytes::from_static(b"a"));
        // First time nothing more is ready: one yield is tried.
        assert!(writes.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(
            writes.poll_next_unpin(&mut cx),
            Poll::Ready(Some(Bytes::from_static(b"a")))
        );
        // Nothing came during it: the next frame is written in the same poll.
        let _ = sender.send(Bytes::from_static(b"b"));
        assert_eq!(
            writes.poll_next_unpin(&mut cx),
            Poll::Ready(Some(Bytes::from_static(b"b")))
        );
        drop(sender);
        assert_eq!(writes.poll_next_unpin(&mut cx), Poll::Ready(None));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn once_a_yield_brings_a_frame_writes_keep_waiting_a_turn() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let mut writes = coalesce(unbounded_stream_from(receiver));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = sender.send(Bytes::from_static(b"a"));
        assert!(writes.poll_next_unpin(&mut cx).is_pending());
        // A frame came during the yield: it joins the write.
        let _ = sender.send(Bytes::from_static(b"b"));
        for _ in 0..IDLE_TURNS {
            assert!(writes.poll_next_unpin(&mut cx).is_pending());
        }
        assert_eq!(
            writes.poll_next_unpin(&mut cx),
            Poll::Ready(Some(Bytes::from_static(b"ab")))
        );
        // And the next frame waits its turns too.
        let _ = sender.send(Bytes::from_static(b"c"));
        assert!(writes.poll_next_unpin(&mut cx).is_pending());
    }

    fn unbounded_stream_from(
        mut receiver: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    ) -> impl Stream<Item = Bytes> + Unpin {
        Box::pin(stream::poll_fn(move |cx| receiver.poll_recv(cx)))
    }

    fn tokio_stream_from(
        mut receiver: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> impl Stream<Item = Bytes> + Unpin {
        Box::pin(stream::poll_fn(move |cx| receiver.poll_recv(cx)))
    }
}
