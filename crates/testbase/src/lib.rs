//! Test support every Keel crate can use, since it depends on none of
//! them: golden files ([`golden`]) and databases of a test's own
//! ([`TestDatabase`]). Used only from `[dev-dependencies]`; `keel-testkit`
//! re-exports it beside the gateway and mock helpers.

mod db;
pub mod golden;

pub use db::{TestDatabase, DEFAULT_POSTGRES_URL};
