//! Dispatch against scripted in-process providers on tokio's paused clock:
//! failover, retries, backoff, health checks, Retry-After, budgets, each clock, breakers,
//! bulkheads, rate limits and routing strategies. No sockets, no sleeps:
//! time is advanced.

mod affinity;
mod cache;
mod context_window;
mod controls;
mod failover;
mod health;
mod hedging;
mod scripted;
mod strategies;
mod timeouts;
