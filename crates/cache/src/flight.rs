//! Single flight: identical concurrent misses make one upstream call.
//!
//! The first request for a key becomes the leader and gets a [`Publisher`];
//! it (or a task it spawns) pushes every item it receives. Each request for
//! the key, the leader's own client included, reads through a
//! [`Subscriber`]: first the items already published, then each new one as
//! it comes, so no follower misses the start of a stream or sees items of
//! two different answers. The publisher learns when the last subscriber has
//! gone ([`Publisher::abandoned`]), so one leaving client does not cancel
//! the call while another still listens, and the last one leaving does.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// The flights in progress, by key.
pub struct Flights<K, T> {
    inner: Arc<Mutex<HashMap<K, Arc<Flight<T>>>>>,
}

/// One flight: what has been published so far, and a signal that wakes
/// subscribers when more is. The signal's receiver count is the number of
/// subscribers.
struct Flight<T> {
    published: Mutex<Published<T>>,
    signal: watch::Sender<()>,
}

struct Published<T> {
    items: Vec<T>,
    finished: bool,
}

/// How a request joined a flight.
pub enum Joined<K: Eq + Hash + Clone, T> {
    /// It started the flight: it publishes, and reads like everyone else.
    Leader(Publisher<K, T>, Subscriber<T>),
    /// The flight was already under way.
    Follower(Subscriber<T>),
}

/// The leader's handle. Dropping it finishes the flight.
pub struct Publisher<K: Eq + Hash + Clone, T> {
    key: K,
    flight: Arc<Flight<T>>,
    flights: Arc<Mutex<HashMap<K, Arc<Flight<T>>>>>,
}

/// One reader of a flight, from its first item.
pub struct Subscriber<T> {
    flight: Arc<Flight<T>>,
    next: usize,
    signal: watch::Receiver<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data
    // (every critical section is a push, a flag or a map edit).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl Flights ===

impl<K: Eq + Hash + Clone, T: Clone> Flights<K, T> {
    /// No flights.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
        }
    }

    /// Joins the flight of `key`, starting it when there is none.
    pub fn join(&self, key: K) -> Joined<K, T> {
        let mut flights = lock(&self.inner);
        if let Some(flight) = flights.get(&key) {
            return Joined::Follower(Subscriber::of(flight.clone()));
        }
        let (signal, _) = watch::channel(());
        let flight = Arc::new(Flight {
            published: Mutex::new(Published {
                items: Vec::new(),
                finished: false,
            }),
            signal,
        });
        flights.insert(key.clone(), flight.clone());
        let subscriber = Subscriber::of(flight.clone());
        let publisher = Publisher {
            key,
            flight,
            flights: self.inner.clone(),
        };
        Joined::Leader(publisher, subscriber)
    }

    /// Flights in progress.
    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    /// Whether no flight is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Default for Flights<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Publisher ===

impl<K: Eq + Hash + Clone, T> Publisher<K, T> {
    /// Publishes one item to every subscriber, present and future.
    pub fn push(&self, item: T) {
        lock(&self.flight.published).items.push(item);
        self.flight.signal.send_replace(());
    }

    /// Resolves once no subscriber is left; from then on nobody can join
    /// this flight (a new request starts a new one), so the caller may stop.
    pub async fn abandoned(&self) {
        loop {
            self.flight.signal.closed().await;
            // Joining subscribes under the map's lock: checking under it too
            // means nobody joins between this check and the removal.
            let mut flights = lock(&self.flights);
            if self.flight.signal.receiver_count() == 0 {
                self.leave(&mut flights);
                return;
            }
        }
    }

    /// Removes this flight from the map (if it is still there) so later
    /// requests start afresh: after a flight ends, the store answers them.
    fn leave(&self, flights: &mut HashMap<K, Arc<Flight<T>>>) {
        if flights
            .get(&self.key)
            .is_some_and(|current| Arc::ptr_eq(current, &self.flight))
        {
            flights.remove(&self.key);
        }
    }
}

impl<K: Eq + Hash + Clone, T> Drop for Publisher<K, T> {
    fn drop(&mut self) {
        self.leave(&mut lock(&self.flights));
        lock(&self.flight.published).finished = true;
        self.flight.signal.send_replace(());
    }
}

// === impl Subscriber ===

impl<T: Clone> Subscriber<T> {
    fn of(flight: Arc<Flight<T>>) -> Self {
        let signal = flight.signal.subscribe();
        Self {
            flight,
            next: 0,
            signal,
        }
    }

    /// The next item: one already published, or the next one to be.
    /// `None` once the publisher is gone and every item has been read.
    pub async fn next(&mut self) -> Option<T> {
        loop {
            {
                let published = lock(&self.flight.published);
                if let Some(item) = published.items.get(self.next) {
                    self.next += 1;
                    return Some(item.clone());
                }
                if published.finished {
                    return None;
                }
                self.signal.mark_unchanged();
            }
            // The sender lives in the flight we hold, so this only ends by
            // a change; a change between the check and here is not lost
            // (it marks the receiver changed).
            if self.signal.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The items as a stream.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = T> + Send
    where
        T: Send + 'static,
    {
        futures_util::stream::unfold(self, |mut subscriber| async move {
            let item = subscriber.next().await?;
            Some((item, subscriber))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt as _;

    use super::*;

    fn lead(flights: &Flights<u8, u32>) -> (Publisher<u8, u32>, Subscriber<u32>) {
        match flights.join(1) {
            Joined::Leader(publisher, subscriber) => (publisher, subscriber),
            Joined::Follower(_) => panic!("a second flight for the key"),
        }
    }

    fn follow(flights: &Flights<u8, u32>) -> Subscriber<u32> {
        match flights.join(1) {
            Joined::Follower(subscriber) => subscriber,
            Joined::Leader(..) => panic!("a follower started its own flight"),
        }
    }

    /// A follower that joins mid-flight reads everything from the start and
    /// then the rest live; every reader sees the same items once, in order.
    #[tokio::test(start_paused = true)]
    async fn late_followers_replay_from_the_start_then_follow_live() {
        let flights = Flights::new();
        let (publisher, leader) = lead(&flights);
        publisher.push(1);
        publisher.push(2);
        let early = follow(&flights);
        let producer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            publisher.push(3);
            tokio::time::sleep(Duration::from_millis(10)).await;
            publisher.push(4);
            drop(publisher);
        });
        tokio::time::sleep(Duration::from_millis(15)).await;
        let late = follow(&flights);
        let readers = [leader, early, late]
            .map(|reader| tokio::spawn(reader.into_stream().collect::<Vec<_>>()));
        for reader in readers {
            assert_eq!(reader.await.ok(), Some(vec![1, 2, 3, 4]));
        }
        assert!(producer.await.is_ok());
        assert!(flights.is_empty(), "a finished flight leaves the map");
    }

    /// The publisher is told only when the last subscriber leaves, and a
    /// request after that starts a new flight.
    #[tokio::test(start_paused = true)]
    async fn abandoned_waits_for_the_last_subscriber() {
        let flights = Flights::new();
        let (publisher, leader) = lead(&flights);
        let follower = follow(&flights);
        let abandoned = tokio::spawn(async move {
            publisher.abandoned().await;
            publisher
        });
        drop(leader);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!abandoned.is_finished(), "the follower still listens");
        drop(follower);
        let publisher = abandoned.await;
        assert!(publisher.is_ok());
        assert!(flights.is_empty());
        let (_new, _reader) = lead(&flights);
        drop(publisher);
        assert_eq!(
            flights.len(),
            1,
            "the old publisher leaves the new flight alone"
        );
    }
}
