//! The request table: each OpenAI request feature × each provider kind →
//! the exact upstream request (method, path, headers and body), against a
//! capturing HTTP server on 127.0.0.1. Golden files live in
//! `tests/fixtures/golden/<kind>/<feature>.http`; run with `KEEL_BLESS=1`
//! to rewrite them after an intended change, then review the diff.

mod capture;
mod messages;
mod table;
