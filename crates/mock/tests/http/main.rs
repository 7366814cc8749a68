//! Black-box tests of the mock over real HTTP on `127.0.0.1:0`.
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod anthropic;
mod control;
mod faults;
mod openai;
mod responses;
mod support;
