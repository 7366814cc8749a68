//! A one-time signal that many futures wait for, cheap to check often.
//!
//! A connection is polled for every frame it writes, and a stream for every
//! event; waiting on a `tokio::sync::watch` there takes its waiters' lock on
//! each poll. A [`Waiter`] reads an atomic flag instead, and hands its waker
//! to the `Notify` only when the waker changes, which for a future polled
//! by one task is once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// Fired once; every [`Waiter`] sees it.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    notify: Arc<Notify>,
}

/// Waits for one [`Signal`].
pub(crate) struct Waiter {
    signal: Arc<Signal>,
    /// Created with the waiter, so a firing after that wakes it.
    notified: Pin<Box<OwnedNotified>>,
    /// The waker `notified` holds.
    waker: Option<Waker>,
}

// === impl Signal ===

impl Signal {
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn waiter(self: &Arc<Self>) -> Waiter {
        Waiter {
            notified: Box::pin(Arc::clone(&self.notify).notified_owned()),
            signal: Arc::clone(self),
            waker: None,
        }
    }
}

// === impl Waiter ===

impl Waiter {
    /// Ready once the signal has fired; otherwise the task is woken when it
    /// fires.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if self
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        match self.notified.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_polled_once_is_woken_when_the_signal_fires() {
        let signal = Arc::new(Signal::default());
        let mut waiter = signal.waiter();
        let waiting = tokio::spawn(async move {
            let mut polls = 0;
            std::future::poll_fn(|cx| {
                polls += 1;
                waiter.poll_fired(cx)
            })
            .await;
            polls
        });
        tokio::task::yield_now().await;
        signal.fire();
        let polls = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .ok()
            .and_then(Result::ok);
        assert_eq!(polls, Some(2), "woken once, by the signal");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_made_after_the_signal_fired_is_ready() {
        let signal = Arc::new(Signal::default());
        signal.fire();
        let mut waiter = signal.waiter();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(waiter.poll_fired(&mut cx).is_ready());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_polled_by_another_waker_is_still_woken() {
        let signal = Arc::new(Signal::default());
        let mut waiter = signal.waiter();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(waiter.poll_fired(&mut cx).is_pending());
        // Then by a task: its waker replaces the no-op one.
        let waiting =
            tokio::spawn(async move { std::future::poll_fn(|cx| waiter.poll_fired(cx)).await });
        tokio::task::yield_now().await;
        signal.fire();
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
                .await
                .is_ok(),
            "never woken"
        );
    }
}
