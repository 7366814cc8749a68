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
    (
        20_261_206_000_005,
        "tenant_queued_index",
        include_str!("../../../../migrations/postgres/20261206000005_tenant_queued_index.sql"),
    ),
    (
        20_261_206_000_006,
        "job_cost",
        include_str!("../../../../migrations/postgres/20261206000006_job_cost.sql"),
    ),
    (
        20_261_206_000_007,
        "background_responses",
        include_str!("../../../../migrations/postgres/20261206000007_background_responses.sql"),
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
    (
        20_261_206_000_005,
        "tenant_queued_index",
        include_str!("../../../../migrations/sqlite/20261206000005_tenant_queued_index.sql"),
    ),
    (
        20_261_206_000_006,
        "job_cost",
        include_str!("../../../../migrations/sqlite/20261206000006_job_cost.sql"),
    ),
    (
        20_261_206_000_007,
        "background_responses",
        include_str!("../../../../migrations/sqlite/20261206000007_background_responses.sql"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `migrations/<backend>/` is embedded, under the version
    /// and description its name gives, in order: a migration added to the
    /// directory but not here would silently never run.
    #[test]
    fn every_migration_file_is_embedded() -> std::io::Result<()> {
        for (backend, embedded) in [("postgres", POSTGRES), ("sqlite", SQLITE)] {
            let dir = format!("{}/../../migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
            let mut files: Vec<String> = std::fs::read_dir(dir)?
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".sql"))
                .collect();
            files.sort();
            let names: Vec<String> = embedded
                .0
                .iter()
                .map(|(version, description, _)| format!("{version}_{description}.sql"))
                .collect();
            assert_eq!(names, files, "{backend}");
        }
        Ok(())
    }
}
