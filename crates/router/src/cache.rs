//! The prompt cache in front of dispatch: the one place every cacheable
//! request (chat, `/v1/messages`, job runs) meets the cache.
//!
//! A front end asks [`Router::cache_plan`] for the request's plan (which
//! key, which `Cache-Control`), serves a fresh entry from
//! [`Router::cached`], and otherwise routes with
//! [`Router::dispatch_with_cache`]: identical concurrent misses share one
//! upstream call (single flight), a complete answer is stored, and when the
//! whole walk fails an entry within its stale window is served instead.
//!
//! The flight runs in a task of its own, so a client that leaves does not
//! cancel the upstream call while another waiter listens; when the last one
//! leaves, the task drops the call. Flights are keyed by the cache key and
//! the stream flag: a stream and a non-stream request for the same answer
//! each make their own call when they overlap (the second one to finish
//! finds the answer stored).

mod answer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt as _};
use keel_cache::{Flights, Joined, Key, KeyScope, PromptCache, Publisher, StorePolicy, Subscriber};
use keel_providers::{Completion, ProviderError, StreamEvent};
use keel_types::ChatRequest;

use crate::{Answer, RouteError, Routed, Router};
use answer::{Assembler, StoredAnswer};

/// `models.<name>.cache`: how long a model's answers stay fresh, and how
/// long past that they may still stand in for an outage.
#[derive(Clone, Copy, Debug)]
pub struct CacheTtl {
    /// Fresh for this long.
    pub ttl: Duration,
    /// Then usable for this long when every target fails.
    pub stale_if_error: Duration,
}

/// `cache:` the store's bounds and scope.
#[derive(Clone, Copy, Debug)]
pub struct CacheSettings {
    /// The bound on the accounted bytes of every entry.
    pub max_bytes: u64,
    /// Answers bigger than this are not stored.
    pub max_entry_bytes: u64,
    /// One entry serves every tenant.
    pub shared: bool,
}

impl Default for CacheSettings {
    /// `cache:` by default: 256 MiB, 1 MiB per entry, per tenant.
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_entry_bytes: 1 << 20,
            shared: false,
        }
    }
}

/// What the request's `Cache-Control` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-cache`: do not serve from the cache (the answer is still stored).
    pub no_cache: bool,
    /// `no-store`: do not store the answer.
    pub no_store: bool,
    /// `max-age=N`: only an entry at most this old will do.
    pub max_age: Option<Duration>,
}

/// How the cache took part in an answer (`x-keel-cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from a fresh entry; no upstream call.
    Hit,
    /// Not in the cache: answered by an upstream (and stored when complete).
    Miss,
    /// The cache was skipped (`no-cache`, or a request it cannot hold).
    Bypass,
    /// Every target failed; served from an entry past its TTL.
    Stale,
}

/// One request's dealings with the cache of its model.
pub struct CachePlan {
    key: Key,
    model: Arc<str>,
    ttl: CacheTtl,
    control: CacheControl,
    /// The request's answer cannot be held whole (n > 1, logprobs, audio,
    /// web search annotations): neither looked up nor stored.
    uncacheable: bool,
}

/// The cache and the flights in progress.
pub(crate) struct ResponseCache {
    store: Arc<PromptCache<StoredAnswer>>,
    /// The level shared with other instances through Redis, when set.
    shared: Option<keel_redis::CacheLevel>,
    flights: Flights<(Key, bool), FlightItem>,
    settings: CacheSettings,
    /// Evictions already added to the metric.
    evictions_exported: AtomicU64,
}

/// What a flight publishes, in order: `Committed` then the stream's events
/// or the `Complete` answer; or `Failed`; or `Stale`.
#[derive(Clone)]
enum FlightItem {
    Committed(Committed),
    Event(Result<StreamEvent, ProviderError>),
    Complete(Completion),
    Failed(RouteError),
    Stale(Arc<keel_cache::Entry<StoredAnswer>>),
}

/// Who answered a flight.
#[derive(Clone)]
struct Committed {
    provider: Arc<str>,
    model: Arc<str>,
    attempts: u32,
    hedged: bool,
    price: Option<keel_config::Price>,
}

type FlightKey = (Key, bool);

// === impl CacheStatus ===

impl CacheStatus {
    /// The `x-keel-cache` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
            Self::Stale => "stale",
        }
    }
}

// === impl CachePlan ===

impl CachePlan {
    /// What an answer that did not come from the cache reports: `bypass`
    /// when the lookup was skipped, else `miss`.
    pub fn status_without_entry(&self) -> CacheStatus {
        if self.uncacheable || self.control.no_cache {
            CacheStatus::Bypass
        } else {
            CacheStatus::Miss
        }
    }

    fn looks_up(&self) -> bool {
        !self.uncacheable && !self.control.no_cache
    }

    fn stores(&self) -> bool {
        !self.uncacheable && !self.control.no_store
    }
}

// === impl ResponseCache ===

impl ResponseCache {
    pub(crate) fn new(settings: CacheSettings, shared: Option<keel_redis::CacheLevel>) -> Self {
        let store = Arc::new(PromptCache::new(StorePolicy {
            max_bytes: settings.max_bytes,
            max_entry_bytes: settings.max_entry_bytes,
        }));
        if let Some(level) = &shared {
            // Another instance's purge empties this instance's level too.
            let local = store.clone();
            level.follow_purges(move |model| {
                let local = local.clone();
                Box::pin(async move {
                    local.purge(model.as_deref()).await;
                })
            });
        }
        Self {
            store,
            shared,
            flights: Flights::new(),
            settings,
            evictions_exported: AtomicU64::new(0),
        }
    }

    /// The entry of `plan` from the shared level, stored in the local one
    /// as old as it is there; `None` when the shared level has none.
    async fn fill_from_shared(
        &self,
        plan: &CachePlan,
    ) -> Option<Arc<keel_cache::Entry<StoredAnswer>>> {
        let level = self.shared.as_ref()?;
        let found = level.get(&plan.model, &plan.key.to_hex()).await?;
        let answer = StoredAnswer::decode(&found.value)?;
        let lifetime = plan.ttl.ttl.saturating_add(plan.ttl.stale_if_error);
        let lifetimes = keel_cache::Lifetimes {
            ttl: plan.ttl.ttl,
            stale_if_error: plan.ttl.stale_if_error,
            age: lifetime.saturating_sub(found.lives_for),
        };
        let bytes = answer.bytes();
        self.store
            .insert_aged(plan.key, plan.model.clone(), answer, bytes, lifetimes)
            .await;
        self.store.get(&plan.key).await
    }

    fn entry_limit(&self) -> usize {
        usize::try_from(self.settings.max_entry_bytes).unwrap_or(usize::MAX)
    }

    async fn store(&self, plan: &CachePlan, answer: StoredAnswer) {
        if let Some(level) = &self.shared {
            if answer.bytes() as u64 <= self.settings.max_entry_bytes {
                let lifetime = plan.ttl.ttl.saturating_add(plan.ttl.stale_if_error);
                level.put(&plan.model, &plan.key.to_hex(), answer.encode(), lifetime);
            }
        }
        let bytes = answer.bytes();
        let stored = self
            .store
            .insert(
                plan.key,
                plan.model.clone(),
                answer,
                bytes,
                plan.ttl.ttl,
                plan.ttl.stale_if_error,
            )
            .await;
        if !stored {
            tracing::debug!(model = %plan.model, bytes, "answer over cache.max_entry_bytes; not stored");
        }
    }
}

// === impl Router ===

impl Router {
    /// Whether `model`'s answers are cached.
    pub fn caches(&self, model: &str) -> bool {
        self.cache.is_some()
            && self
                .table
                .route(model)
                .is_some_and(|route| route.cache.is_some())
    }

    /// The cache plan of a request to `endpoint` for a cached model; `None`
    /// when the model is not cached (or the body cannot be keyed, which
    /// parsing has already ruled out). `fields` are the client's body as
    /// (name, raw JSON) pairs, in the client's own format.
    pub fn cache_plan<'f>(
        &self,
        endpoint: &str,
        tenant: &str,
        request: &ChatRequest,
        fields: impl IntoIterator<Item = (&'f str, &'f str)>,
        control: CacheControl,
    ) -> Option<CachePlan> {
        let cache = self.cache.as_ref()?;
        // Native Responses and Messages answers are the upstream's own
        // objects, with their ids: they are passed through, never stored.
        if matches!(
            request.endpoint(),
            keel_types::Endpoint::Responses | keel_types::Endpoint::Messages
        ) {
            return None;
        }
        let route = self.table.route(request.model())?;
        let ttl = route.cache?;
        let scope = if cache.settings.shared {
            KeyScope::Shared
        } else {
            KeyScope::Tenant(tenant)
        };
        let key = Key::new(endpoint, &route.name, scope, fields).ok()?;
        Some(CachePlan {
            key,
            model: route.name.clone().into(),
            ttl,
            control,
            uncacheable: !whole_answer_fits(request),
        })
    }

    /// A fresh entry for `plan`, rendered for `request` (JSON, or a stream
    /// with the usage chunk when it asked for one); counts the hit.
    pub async fn cached(&self, plan: &CachePlan, request: &ChatRequest) -> Option<Routed> {
        if !plan.looks_up() {
            return None;
        }
        let cache = self.cache.as_ref()?;
        let entry = match cache.store.get(&plan.key).await {
            Some(entry) => entry,
            None => cache.fill_from_shared(plan).await?,
        };
        if !entry.is_fresh(plan.control.max_age) {
            return None;
        }
        self.count_cache(plan, CacheStatus::Hit);
        Some(from_entry(&entry.value, request, CacheStatus::Hit))
    }

    /// Routes a request whose model may be cached: with `plan`, through
    /// single flight, storing a complete answer and falling back to a stale
    /// entry when the walk fails; without, as [`Router::dispatch`].
    pub async fn dispatch_with_cache(
        self: &Arc<Self>,
        request: Arc<ChatRequest>,
        plan: Option<CachePlan>,
    ) -> Result<Routed, RouteError> {
        let (Some(plan), Some(cache)) = (plan, self.cache.as_ref()) else {
            return self.dispatch(request).await;
        };
        let status = plan.status_without_entry();
        if !plan.stores() {
            // Nothing to share: route directly, stale entries still stand in.
            let routed = match self.dispatch(request.clone()).await {
                Ok(routed) => Ok(Routed {
                    cache: Some(status),
                    ..routed
                }),
                Err(error) => match self.stale_entry(&plan, &error).await {
                    Some(entry) => Ok(from_entry(&entry.value, &request, CacheStatus::Stale)),
                    None => Err(error),
                },
            };
            return self.counted(&plan, status, routed);
        }
        let plan = Arc::new(plan);
        let (subscriber, leader) = match cache.flights.join((plan.key, request.stream())) {
            Joined::Leader(publisher, subscriber) => {
                self.spawn_flight(request.clone(), plan.clone(), publisher);
                (subscriber, true)
            }
            Joined::Follower(subscriber) => {
                self.metrics.cache_single_flight_waiters.inc();
                (subscriber, false)
            }
        };
        let routed = read_flight(subscriber, &request, leader, status).await;
        self.counted(&plan, status, routed)
    }

    /// Empties the cache, or one public model's entries, in this instance
    /// and in the shared level (which tells the other instances to empty
    /// theirs); how many went here.
    pub async fn purge_cache(&self, model: Option<&str>) -> u64 {
        let Some(cache) = &self.cache else { return 0 };
        let removed = cache.store.purge(model).await;
        if let Some(level) = &cache.shared {
            level.purge(model).await;
        }
        removed
    }

    /// Sets the cache's gauges and adds new evictions to their counter.
    pub async fn export_cache_gauges(&self) {
        let Some(cache) = &self.cache else { return };
        let (entries, bytes) = cache.store.usage().await;
        self.metrics
            .cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.metrics
            .cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let evictions = cache.store.evictions();
        let before = cache.evictions_exported.swap(evictions, Ordering::Relaxed);
        self.metrics
            .cache_evictions
            .inc_by(evictions.saturating_sub(before));
    }

    /// Runs the leader's walk in a task of its own, publishing as it goes,
    /// until it ends or nobody listens any more.
    fn spawn_flight(
        self: &Arc<Self>,
        request: Arc<ChatRequest>,
        plan: Arc<CachePlan>,
        publisher: Publisher<FlightKey, FlightItem>,
    ) {
        let router = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = router.fly(request, &plan, &publisher) => {}
                // Dropping the walk closes its upstream call.
                () = publisher.abandoned() => {
                    tracing::debug!(model = %plan.model, "every waiter left; the upstream call is dropped");
                }
            }
        });
    }

    async fn fly(
        &self,
        request: Arc<ChatRequest>,
        plan: &CachePlan,
        publisher: &Publisher<FlightKey, FlightItem>,
    ) {
        let Some(cache) = &self.cache else { return };
        let endpoint = request.endpoint();
        let routed = match self.dispatch(request).await {
            Ok(routed) => routed,
            Err(error) => {
                publisher.push(match self.stale_entry(plan, &error).await {
                    Some(entry) => FlightItem::Stale(entry),
                    None => FlightItem::Failed(error),
                });
                return;
            }
        };
        let committed = Committed {
            provider: routed.provider,
            model: routed.model,
            attempts: routed.attempts,
            hedged: routed.hedged,
            price: routed.price,
        };
        publisher.push(FlightItem::Committed(committed.clone()));
        match routed.answer {
            Answer::Complete(completion) => {
                let limit = cache.entry_limit();
                if let Some(answer) = StoredAnswer::from_completion(
                    &completion,
                    endpoint,
                    limit,
                    &committed.provider,
                    &committed.model,
                ) {
                    cache.store(plan, answer).await;
                }
                // An answer written by the leader's front end is the
                // leader's own (a Responses object has its id); each
                // request of the flight writes its own from the body.
                publisher.push(FlightItem::Complete(Completion {
                    written: None,
                    ..completion
                }));
            }
            Answer::Stream { head, rest } => {
                let mut assembler = Some(Assembler::new(cache.entry_limit()));
                let mut events = std::pin::pin!(stream::iter(head.into_iter().map(Ok)).chain(rest));
                while let Some(event) = events.next().await {
                    match &event {
                        Ok(StreamEvent::Done) => {
                            let answer = assembler.take().and_then(|assembler| {
                                assembler.finish(&committed.provider, &committed.model)
                            });
                            // Stored before the end is published, so a request
                            // after the client saw the end finds the entry.
                            if let Some(answer) = answer {
                                cache.store(plan, answer).await;
                            }
                        }
                        Ok(chunk) => {
                            if let Some(assembler) = &mut assembler {
                                assembler.feed(chunk);
                            }
                        }
                        Err(_) => assembler = None,
                    }
                    publisher.push(FlightItem::Event(event));
                }
            }
        }
    }

    /// An entry within its stale window, when `error` is the model being
    /// down (not a refusal of the request itself).
    async fn stale_entry(
        &self,
        plan: &CachePlan,
        error: &RouteError,
    ) -> Option<Arc<keel_cache::Entry<StoredAnswer>>> {
        let model_down = matches!(
            error,
            RouteError::Exhausted { .. }
                | RouteError::Unavailable { .. }
                | RouteError::DeadlineExceeded { .. }
                | RouteError::NoTargets { .. }
        );
        if !model_down || plan.uncacheable || plan.ttl.stale_if_error.is_zero() {
            return None;
        }
        let entry = self.cache.as_ref()?.store.get(&plan.key).await?;
        let usable = entry.is_fresh(None) || entry.is_stale_but_usable();
        usable.then(|| {
            tracing::warn!(model = %plan.model, %error, age_seconds = entry.age().as_secs(), "every target failed; serving a stale cached answer");
            entry
        })
    }

    /// Counts the decision (a stale answer as `stale`) and passes `routed` on.
    fn counted(
        &self,
        plan: &CachePlan,
        status: CacheStatus,
        routed: Result<Routed, RouteError>,
    ) -> Result<Routed, RouteError> {
        let status = match &routed {
            Ok(Routed {
                cache: Some(CacheStatus::Stale),
                ..
            }) => CacheStatus::Stale,
            _ => status,
        };
        self.count_cache(plan, status);
        routed
    }

    /// Counts a request to cached `model` that skipped the cache without a
    /// plan (a body passed through verbatim, whose answer is never stored).
    pub fn count_cache_bypass(&self, model: &str) {
        let labels = keel_telemetry::CacheLabels {
            model: model.to_owned(),
            result: String::from(CacheStatus::Bypass.as_str()),
        };
        self.metrics.cache_requests.get_or_create(&labels).inc();
    }

    fn count_cache(&self, plan: &CachePlan, status: CacheStatus) {
        let labels = keel_telemetry::CacheLabels {
            model: plan.model.to_string(),
            result: String::from(status.as_str()),
        };
        self.metrics.cache_requests.get_or_create(&labels).inc();
    }
}

/// Whether the canonical form holds the request's whole answer: one choice,
/// no logprobs, no audio, no web-search annotations. Other requests are
/// neither looked up nor stored.
fn whole_answer_fits(request: &ChatRequest) -> bool {
    let raw = request.raw();
    let n = raw.parse::<u64>("n").and_then(Result::ok).unwrap_or(1);
    let logprobs = raw
        .parse::<bool>("logprobs")
        .and_then(Result::ok)
        .unwrap_or(false);
    let audio = raw.get("audio").is_some_and(|value| value.get() != "null");
    let web_search = raw
        .get("web_search_options")
        .is_some_and(|value| value.get() != "null");
    n == 1 && !logprobs && !audio && !web_search
}

/// A stored answer, rendered for `request`, as a routed answer.
fn from_entry(answer: &StoredAnswer, request: &ChatRequest, status: CacheStatus) -> Routed {
    let answer_now = if request.stream() {
        Answer::Stream {
            head: answer.events(request.wants_usage_chunk()),
            rest: stream::empty().boxed(),
        }
    } else {
        Answer::Complete(answer.completion())
    };
    Routed {
        provider: answer.provider.clone(),
        model: answer.model.clone(),
        attempts: 0,
        hedged: false,
        cache: Some(status),
        price: None,
        answer: answer_now,
    }
}

/// A flight whose task ended without its answer (its runtime is shutting
/// down): the request is refused as if no target could take it.
fn flight_lost(request: &ChatRequest) -> RouteError {
    RouteError::Unavailable {
        model: request.model().to_owned(),
        retry_after: Duration::from_secs(1),
        attempts: 0,
    }
}

/// Reads a flight as this request's answer: who answered, then the stream
/// (everything from its first event, then live) or the whole completion. A
/// follower made no upstream attempt itself (`x-keel-attempts: 0`).
async fn read_flight(
    mut subscriber: Subscriber<FlightItem>,
    request: &ChatRequest,
    leader: bool,
    status: CacheStatus,
) -> Result<Routed, RouteError> {
    let committed = match subscriber.next().await {
        Some(FlightItem::Committed(committed)) => committed,
        Some(FlightItem::Failed(error)) => return Err(error),
        Some(FlightItem::Stale(entry)) => {
            return Ok(from_entry(&entry.value, request, CacheStatus::Stale))
        }
        Some(FlightItem::Event(_) | FlightItem::Complete(_)) | None => {
            return Err(flight_lost(request))
        }
    };
    let provider = committed.provider.clone();
    let answer = if request.stream() {
        let rest = subscriber
            .into_stream()
            .filter_map(|item| async move {
                match item {
                    FlightItem::Event(event) => Some(event),
                    _ => None,
                }
            })
            .chain(stream::once(async move {
                // Reached only when the flight stopped before its terminal
                // event; the consumer stops reading at the terminal event.
                Err(ProviderError::Truncated {
                    provider: provider.to_string(),
                })
            }));
        Answer::Stream {
            head: Vec::new(),
            rest: rest.boxed(),
        }
    } else {
        loop {
            match subscriber.next().await {
                Some(FlightItem::Complete(completion)) => break Answer::Complete(completion),
                Some(_) => continue,
                None => return Err(flight_lost(request)),
            }
        }
    };
    Ok(Routed {
        provider: committed.provider,
        model: committed.model,
        attempts: if leader { committed.attempts } else { 0 },
        hedged: committed.hedged,
        cache: Some(status),
        price: if leader { committed.price } else { None },
        answer,
    })
}
