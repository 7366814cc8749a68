//! Dispatch against scripted in-process providers on tokio's paused clock:
//! failover, retries, backoff, Retry-After, budgets, each clock, breakers,
//! bulkheads and rate limits. No sockets, no sleeps: time is advanced.

mod cache;
mod controls;
mod failover;
mod hedging;
mod scripted;
mod timeouts;
