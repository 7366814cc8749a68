//! The SQL migrations of `migrations/<backend>/`, embedded in the binary so
//! `keel serve` and `keel migrate` need no files beside them.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::{Backend, StoreError};

/// One backend's migrations: (version, description, SQL).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embedded(&'static [(i64, &'static str, &'static str)]);

const POSTGRES: Embedded = Embedded(&[
    (
        20_261_127_000_001,
        "jobs",
        include_str!("../../../../migrations/postgres/20261127000001_jobs.sql"),
    ),
    (
        20_261_127_000_002,
        "notify_from_gateway",
        include_str!("../../../../migrations/postgres/20261127000002_notify_from_gateway.sql"),
    ),
    (
        20_261_127_000_003,
        "webhook_endpoints",
        include_str!("../../../../migrations/postgres/20261127000003_webhook_endpoints.sql"),
    ),
    (
        20_261_127_000_004,
        "idempotency_headers",
        include_str!("../../../../migrations/postgres/20261127000004_idempotency_headers.sql"),
    ),
]);

const SQLITE: Embedded = Embedded(&[
    (
        20_261_127_000_001,
        "jobs",
        include_str!("../../../../migrations/sqlite/20261127000001_jobs.sql"),
    ),
    (
        20_261_127_000_002,
        "notify_from_gateway",
        include_str!("../../../../migrations/sqlite/20261127000002_notify_from_gateway.sql"),
    ),
    (
        20_261_127_000_003,
        "webhook_endpoints",
        include_str!("../../../../migrations/sqlite/20261127000003_webhook_endpoints.sql"),
    ),
    (
        20_261_127_000_004,
        "idempotency_headers",
        include_str!("../../../../migrations/sqlite/20261127000004_idempotency_headers.sql"),
    ),
]);

/// Opens `url` and applies its migrations (`keel migrate`).
pub async fn migrate_url(url: &str) -> Result<Backend, StoreError> {
    let store = super::open(url).await?;
    store.migrate().await?;
    Ok(store.backend())
}

/// The migrator of `backend`.
pub(crate) async fn migrator(backend: Backend) -> Result<Migrator, StoreError> {
    let source = match backend {
        Backend::Postgres => POSTGRES,
        Backend::Sqlite => SQLITE,
    };
    Ok(Migrator::new(source).await?)
}

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}
