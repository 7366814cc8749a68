//! The prompt cache, LLM-agnostic: it knows request bodies only as JSON and
//! answers only as values of a type the caller picks.
//!
//! - [`key`]: the cache key, a versioned SHA-256 of the endpoint, the public
//!   model, the tenant (unless the cache is shared) and the canonical form of
//!   the request body (keys sorted at every depth, one spelling per number,
//!   a short deny-list of fields that do not change the answer).
//! - [`store`]: a moka cache weighed in bytes, each entry with its own TTL
//!   and stale window, entries over a per-entry cap refused.
//! - [`flight`]: single flight: the first of identical concurrent misses
//!   publishes what it receives, the others replay it from the start and
//!   then follow it live; the publisher learns when nobody listens any more.

pub mod flight;
pub mod key;
pub mod store;

pub use flight::{Flights, Joined, Publisher, Subscriber};
pub use key::{canonical_body, Key, KeyScope, IGNORED_FIELDS};
pub use store::{Entry, Lifetimes, PromptCache, StorePolicy};
