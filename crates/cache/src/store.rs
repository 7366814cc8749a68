//! The entries: a moka cache weighed in bytes, each entry with its own TTL
//! and stale window.
//!
//! moka evicts an entry once its TTL and stale window have both passed (or
//! when the byte bound needs the room); whether a stored entry is fresh,
//! stale or too old for the request's `max-age` is decided here at lookup,
//! from `tokio::time::Instant`, so tests move time with a paused clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use tokio::time::Instant;

use crate::Key;

/// What an entry costs beyond the bytes its value reports: the key, the
/// entry's fields and moka's own bookkeeping (its node, the access-order
/// deque entries and the hash table slot), rounded up.
const ENTRY_OVERHEAD: u64 = 320;

/// The block an allocation of `bytes` takes. Keel's allocator (mimalloc,
/// like jemalloc) hands out blocks in four size classes per power of two,
/// so a 50 KiB answer holds a 56 KiB block: charging the block keeps
/// `max_bytes` a bound on the memory the entries really hold.
fn block_size(bytes: u64) -> u64 {
    if bytes <= 64 {
        return bytes.next_multiple_of(8);
    }
    bytes.next_multiple_of(1 << (bytes.ilog2() - 2))
}

/// How big the cache may grow.
#[derive(Clone, Copy, Debug)]
pub struct StorePolicy {
    /// The bound on the sum of entry weights.
    pub max_bytes: u64,
    /// A value bigger than this is not stored.
    pub max_entry_bytes: u64,
}

/// One stored answer.
#[derive(Debug)]
pub struct Entry<V> {
    /// What was stored.
    pub value: V,
    /// The public model it answers (for purging one model's entries).
    pub model: Arc<str>,
    /// When it was stored.
    pub stored_at: Instant,
    /// How long it is fresh.
    pub ttl: Duration,
    /// How long past `ttl` it may still be served when the model is down.
    pub stale_if_error: Duration,
    weight: u32,
}

/// The byte-bounded store of answers of type `V`.
pub struct PromptCache<V> {
    entries: moka::future::Cache<Key, Arc<Entry<V>>>,
    policy: StorePolicy,
    evictions: Arc<AtomicU64>,
}

/// Tells moka each entry's own lifetime: its TTL plus its stale window.
struct Lifetime;

impl<V: Send + Sync + 'static> moka::Expiry<Key, Arc<Entry<V>>> for Lifetime {
    fn expire_after_create(
        &self,
        _key: &Key,
        entry: &Arc<Entry<V>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        // An entry filled from a shared level arrives already aged.
        let lifetime = entry.ttl.saturating_add(entry.stale_if_error);
        Some(lifetime.saturating_sub(entry.stored_at.elapsed()))
    }
}

// === impl Entry ===

impl<V> Entry<V> {
    /// How long ago it was stored.
    pub fn age(&self) -> Duration {
        self.stored_at.elapsed()
    }

    /// Fresh: within its TTL, and no older than `max_age` when one is given.
    pub fn is_fresh(&self, max_age: Option<Duration>) -> bool {
        let age = self.age();
        age < self.ttl && max_age.is_none_or(|max_age| age <= max_age)
    }

    /// Past its TTL but within its stale window.
    pub fn is_stale_but_usable(&self) -> bool {
        let age = self.age();
        age >= self.ttl && age < self.ttl.saturating_add(self.stale_if_error)
    }

    /// What the entry counts for against `max_bytes`.
    pub fn weight(&self) -> u32 {
        self.weight
    }
}

/// How long an entry is fresh and then usable when upstreams fail, and
/// how old it already is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// Fresh this long after it was first stored.
    pub ttl: Duration,
    /// Then usable this long when every target fails.
    pub stale_if_error: Duration,
    /// Time since it was first stored.
    pub age: Duration,
}

// === impl PromptCache ===

impl<V: Send + Sync + 'static> PromptCache<V> {
    /// An empty store; `on_evict` is called once for each entry removed to
    /// make room (not for expiry, replacement or purges).
    pub fn new(policy: StorePolicy) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let entries = moka::future::Cache::builder()
            .max_capacity(policy.max_bytes)
            .weigher(|_key, entry: &Arc<Entry<V>>| entry.weight)
            .expire_after(Lifetime)
            .eviction_listener(move |_key, _entry, cause| {
                if cause == RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            entries,
            policy,
            evictions,
        }
    }

    /// The entry of `key`, whatever its freshness (the caller decides).
    pub async fn get(&self, key: &Key) -> Option<Arc<Entry<V>>> {
        self.entries.get(key).await
    }

    /// Stores `value` (which reports `bytes` of its own) under `key` for
    /// `ttl` plus `stale_if_error`. `false` when it is over the entry cap
    /// and was not stored.
    pub async fn insert(
        &self,
        key: Key,
        model: Arc<str>,
        value: V,
        bytes: usize,
        ttl: Duration,
        stale_if_error: Duration,
    ) -> bool {
        let lifetime = Lifetimes {
            ttl,
            stale_if_error,
            age: Duration::ZERO,
        };
        self.insert_aged(key, model, value, bytes, lifetime).await
    }

    /// [`Self::insert`] for a value that was stored `lifetime.age` ago
    /// elsewhere (a shared level): it is as fresh as it was there.
    pub async fn insert_aged(
        &self,
        key: Key,
        model: Arc<str>,
        value: V,
        bytes: usize,
        lifetime: Lifetimes,
    ) -> bool {
        let Lifetimes {
            ttl,
            stale_if_error,
            age,
        } = lifetime;
        let bytes = bytes as u64;
        if bytes > self.policy.max_entry_bytes {
            return false;
        }
        let weight =
            u32::try_from(block_size(bytes).saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX);
        let entry = Entry {
            value,
            model,
            stored_at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            ttl,
            stale_if_error,
            weight,
        };
        self.entries.insert(key, Arc::new(entry)).await;
        true
    }

    /// Removes every entry, or only those of one public model; returns how
    /// many were removed.
    pub async fn purge(&self, model: Option<&str>) -> u64 {
        let keys: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, entry)| model.is_none_or(|model| &*entry.model == model))
            .map(|(key, _)| *key)
            .collect();
        let mut removed = 0;
        for key in keys {
            if self.entries.remove(&key).await.is_some() {
                removed += 1;
            }
        }
        removed
    }

    /// Entries and their summed weight, after moka has applied the pending
    /// evictions (so the figures respect the bound).
    pub async fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks().await;
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    /// Entries evicted to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// The bound on the sum of weights.
    pub fn max_bytes(&self) -> u64 {
        self.policy.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> Result<Key, serde_json::Error> {
        let text = n.to_string();
        Key::new("chat", "m", crate::KeyScope::Shared, [("n", text.as_str())])
    }

    fn cache(max_bytes: u64) -> PromptCache<Vec<u8>> {
        PromptCache::new(StorePolicy {
            max_bytes,
            max_entry_bytes: 1000,
        })
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// (fresh, fresh under max-age=10 s, stale but usable) of key 1's entry.
    async fn check(
        cache: &PromptCache<Vec<u8>>,
    ) -> Result<Option<(bool, bool, bool)>, serde_json::Error> {
        let entry = cache.get(&key(1)?).await;
        Ok(entry.map(|entry| {
            (
                entry.is_fresh(None),
                entry.is_fresh(Some(Duration::from_secs(10))),
                entry.is_stale_but_usable(),
            )
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_is_fresh_for_its_ttl_then_stale_for_its_window(
    ) -> Result<(), serde_json::Error> {
        let cache = cache(1 << 20);
        assert!(
            cache
                .insert(key(1)?, Arc::from("m"), vec![1], 1, MINUTE, MINUTE)
                .await
        );
        let entry = cache.get(&key(1)?).await;
        let entry = entry.as_deref().map(|entry| entry.value.clone());
        assert_eq!(entry, Some(vec![1]));
        assert_eq!(check(&cache).await?, Some((true, true, false)));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            check(&cache).await?,
            Some((true, false, false)),
            "older than max-age=10"
        );
        tokio::time::advance(Duration::from_secs(49)).await;
        assert_eq!(
            check(&cache).await?,
            Some((false, false, true)),
            "at the TTL: stale"
        );
        tokio::time::advance(MINUTE).await;
        assert_eq!(
            check(&cache).await?,
            Some((false, false, false)),
            "past the stale window"
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_entry_over_the_cap_is_not_stored() -> Result<(), serde_json::Error> {
        let cache = cache(1 << 20);
        assert!(
            !cache
                .insert(key(1)?, Arc::from("m"), vec![0; 1001], 1001, MINUTE, MINUTE)
                .await
        );
        assert!(cache.get(&key(1)?).await.is_none());
        assert!(
            cache
                .insert(key(1)?, Arc::from("m"), vec![0; 1000], 1000, MINUTE, MINUTE)
                .await
        );
        Ok(())
    }

    /// Sizes round up to the next of four classes per power of two.
    #[test]
    fn an_entry_is_charged_its_allocators_block() {
        for (bytes, block) in [
            (0, 0),
            (1, 8),
            (64, 64),
            (65, 80),
            (1000, 1024),
            (1025, 1280),
            (50 * 1024, 56 * 1024),
            (64 * 1024, 64 * 1024),
            (64 * 1024 + 1, 80 * 1024),
        ] {
            assert_eq!(super::block_size(bytes), block, "{bytes}");
        }
    }

    /// Three times the bound inserted: the weighed size never exceeds it and
    /// the oldest entries were evicted to make room.
    #[tokio::test]
    async fn the_byte_bound_holds_under_three_times_its_size() -> Result<(), serde_json::Error> {
        let max_bytes = 100 * (1000 + ENTRY_OVERHEAD);
        let cache = cache(max_bytes);
        for n in 0..300 {
            cache
                .insert(key(n)?, Arc::from("m"), vec![0; 1000], 1000, MINUTE, MINUTE)
                .await;
            let (_, bytes) = cache.usage().await;
            assert!(bytes <= max_bytes, "{bytes} > {max_bytes} after {n}");
        }
        let (entries, _) = cache.usage().await;
        assert!(entries <= 100, "{entries}");
        assert!(cache.evictions() >= 200, "{}", cache.evictions());
        Ok(())
    }

    #[tokio::test]
    async fn purge_removes_all_or_one_models_entries() -> Result<(), serde_json::Error> {
        let cache = cache(1 << 20);
        for n in 0..6 {
            let model = if n % 2 == 0 { "even" } else { "odd" };
            cache
                .insert(key(n)?, Arc::from(model), vec![], 0, MINUTE, MINUTE)
                .await;
        }
        assert_eq!(cache.purge(Some("even")).await, 3);
        assert!(cache.get(&key(0)?).await.is_none());
        assert!(cache.get(&key(1)?).await.is_some());
        assert_eq!(cache.purge(None).await, 3);
        assert_eq!(cache.usage().await.0, 0);
        Ok(())
    }
}
