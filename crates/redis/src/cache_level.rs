//! The prompt cache's second level: each instance's in-memory level sits in
//! front, and an entry one instance stores is also written here (same key,
//! same lifetime), so another instance's local miss can be its hit. Values
//! are opaque bytes to this crate; the router encodes its answers.
//!
//! Purges remove the entries here and are published on
//! [`PURGE_CHANNEL`], so every instance empties its local level too.
//! Single flight stays per instance: two instances missing the same key at
//! once make one upstream call each.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt as _;

use crate::RedisLink;

/// Where purges are announced; the payload is the model, or empty for all.
pub const PURGE_CHANNEL: &str = "keel:cache:purge";

/// Keys scanned per `SCAN` call while purging.
const SCAN_BATCH: usize = 500;

/// The shared level.
#[derive(Clone)]
pub struct CacheLevel {
    link: Arc<RedisLink>,
}

/// An entry read from the shared level.
pub struct SharedEntry {
    /// What was stored.
    pub value: Vec<u8>,
    /// How long it lives on in Redis (its freshness and stale window left).
    pub lives_for: Duration,
}

// === impl CacheLevel ===

impl CacheLevel {
    /// The level kept through `link`.
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self { link }
    }

    /// The entry of `key` for public model `model`, when Redis has it and
    /// answers in time.
    pub async fn get(&self, model: &str, key: &str) -> Option<SharedEntry> {
        if !self.link.is_up() {
            return None;
        }
        let name = entry_key(model, key);
        let mut pipeline = redis::pipe();
        pipeline.get(&name).pttl(&name);
        let (value, ttl_ms): (Option<Vec<u8>>, i64) = self.link.query(&pipeline).await?;
        let lives_for = Duration::from_millis(u64::try_from(ttl_ms).ok()?);
        Some(SharedEntry {
            value: value?,
            lives_for,
        })
    }

    /// Stores `value` for `lifetime`, without waiting (a failure only
    /// means other instances miss).
    pub fn put(&self, model: &str, key: &str, value: Vec<u8>, lifetime: Duration) {
        if !self.link.is_up() || lifetime.is_zero() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let name = entry_key(model, key);
        let link = self.link.clone();
        let millis = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        runtime.spawn(async move {
            let mut pipeline = redis::pipe();
            pipeline.pset_ex(name, value, millis).ignore();
            link.query::<()>(&pipeline).await;
        });
    }

    /// Removes every entry of `model` (every entry: `None`) and tells the
    /// other instances to empty their local levels; how many went here.
    pub async fn purge(&self, model: Option<&str>) -> u64 {
        let pattern = match model {
            Some(model) => format!("keel:cache:{}:*", glob_escape(model)),
            None => String::from("keel:cache:*:*"),
        };
        let mut removed = 0;
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::pipe();
            scan.cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            let Some(((next, keys),)): Option<((u64, Vec<String>),)> = self.link.query(&scan).await
            else {
                break;
            };
            if !keys.is_empty() {
                let mut unlink = redis::pipe();
                unlink.cmd("UNLINK").arg(&keys);
                removed += self
                    .link
                    .query::<(u64,)>(&unlink)
                    .await
                    .map_or(0, |(count,)| count);
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let mut publish = redis::pipe();
        publish
            .cmd("PUBLISH")
            .arg(PURGE_CHANNEL)
            .arg(model.unwrap_or(""))
            .ignore();
        self.link.query::<()>(&publish).await;
        removed
    }

    /// Calls `on_purge` with the model (or `None` for all) of every purge
    /// announced by any instance, for as long as the process runs;
    /// resubscribes after Redis comes back.
    pub fn follow_purges(
        &self,
        on_purge: impl Fn(Option<String>) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) {
        let client = self.link.client().clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut subscription) = client.get_async_pubsub().await {
                    if subscription.subscribe(PURGE_CHANNEL).await.is_ok() {
                        let mut messages = subscription.on_message();
                        while let Some(message) = messages.next().await {
                            let model: String = message.get_payload().unwrap_or_default();
                            on_purge((!model.is_empty()).then_some(model)).await;
                        }
                    }
                }
                tokio::time::sleep(crate::PROBE_EVERY).await;
            }
        });
    }
}

/// `keel:cache:<model>:<key>`.
fn entry_key(model: &str, key: &str) -> String {
    format!("keel:cache:{model}:{key}")
}

/// `text` with the glob characters `SCAN MATCH` interprets escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}
