//! Session affinity: the requests of one session go to the target that
//! served the session's previous request, so the provider's own prompt
//! cache keeps hitting, while that target answers. A session is a hash of
//! the tenant and a value the front end read from the request (a header or
//! the body's `user`); the pins are per model, bounded by `max_sessions`
//! (least recently used first out) and forgotten `ttl` after their last use.
//!
//! A pin only puts its target first in the plan: a pinned target whose
//! breaker is open, whose bulkhead is full or which fails is left like any
//! other, and the target that answers instead becomes the pin.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use keel_config::AffinityKey;
use tokio::time::Instant;

use crate::Target;

/// Pins are kept in this many shards, each behind its own lock, so
/// concurrent requests of different sessions rarely wait on each other.
const SHARDS: usize = 16;

/// One model's session pins.
pub struct Affinity {
    /// Where the front end reads a request's session from.
    pub key: AffinityKey,
    ttl: Duration,
    per_shard: usize,
    shards: Box<[Mutex<Shard>]>,
}

/// The pins of some sessions, with their order of last use.
#[derive(Default)]
struct Shard {
    pins: HashMap<u64, Pin>,
    /// Use stamp → session, oldest first: the eviction order.
    by_use: BTreeMap<u64, u64>,
    next_stamp: u64,
}

/// Where a session goes, and when it last went there.
struct Pin {
    provider: Arc<str>,
    model: Arc<str>,
    used: Instant,
    stamp: u64,
}

/// The session of `value` (an affinity key's value) for `tenant`: a keyed
/// hash, so two tenants sending the same value have different sessions and
/// a client cannot aim at another session's pin without knowing its value.
pub fn session(tenant: &str, value: &[u8]) -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut hasher = KEYS
        .get_or_init(std::collections::hash_map::RandomState::new)
        .build_hasher();
    tenant.hash(&mut hasher);
    value.hash(&mut hasher);
    hasher.finish()
}

// === impl Affinity ===

impl Affinity {
    /// Pins read from `key`, each lasting `ttl` after its last use, at most
    /// `max_sessions` of them.
    pub fn new(key: AffinityKey, ttl: Duration, max_sessions: usize) -> Self {
        let shards = SHARDS.min(max_sessions.max(1));
        Self {
            key,
            ttl,
            // Rounded down, so all shards together never hold more.
            per_shard: (max_sessions / shards).max(1),
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
    }

    /// Moves the target `session` is pinned to (when it is in `plan` and
    /// the pin has not expired) to the front of `plan`.
    pub(crate) fn lead_with_pin(&self, session: u64, plan: &mut [&Target]) {
        let now = Instant::now();
        let mut shard = self.shard(session);
        let Some(pin) = shard.pins.get(&session) else {
            return;
        };
        if now.saturating_duration_since(pin.used) >= self.ttl {
            shard.remove(session);
            return;
        }
        let pinned = plan.iter().position(|target| pin.is(target));
        if let Some(position) = pinned {
            plan[..=position].rotate_right(1);
        }
    }

    /// Pins `session` to `target`, which has just answered it.
    pub(crate) fn pin(&self, session: u64, target: &Target) {
        let now = Instant::now();
        let mut shard = self.shard(session);
        shard.remove(session);
        if shard.pins.len() >= self.per_shard {
            shard.evict_oldest();
        }
        let stamp = shard.next_stamp;
        shard.next_stamp += 1;
        shard.by_use.insert(stamp, session);
        shard.pins.insert(
            session,
            Pin {
                provider: target.provider_name.clone(),
                model: target.model.clone(),
                used: now,
                stamp,
            },
        );
    }

    /// Sessions pinned now (expired pins included until they are next
    /// looked at or pushed out).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).pins.len()).sum()
    }

    /// Whether no session is pinned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, session: u64) -> std::sync::MutexGuard<'_, Shard> {
        // The session is a hash already: its high bits pick the shard.
        let index = (session >> 32) as usize % self.shards.len();
        lock(&self.shards[index])
    }
}

// === impl Shard ===

impl Shard {
    fn remove(&mut self, session: u64) {
        if let Some(pin) = self.pins.remove(&session) {
            self.by_use.remove(&pin.stamp);
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, session)) = self.by_use.pop_first() {
            self.pins.remove(&session);
        }
    }
}

// === impl Pin ===

impl Pin {
    fn is(&self, target: &Target) -> bool {
        self.provider == target.provider_name && self.model == target.model
    }
}

/// The shard, even if a thread panicked while holding it (each step leaves
/// the map and the order consistent).
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
