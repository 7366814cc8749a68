//! A database of a test's own, for the job store suites: a fresh Postgres
//! database (on `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) or a SQLite file in the temp
//! directory. Either is removed when the value is dropped, so tests run in
//! parallel and leave nothing behind.

use std::path::PathBuf;

use sqlx::Connection as _;

/// The Postgres server tests use when `DATABASE_URL` is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database that lives as long as this value.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Postgres { admin: String, name: String },
    Sqlite { path: PathBuf },
}

// === impl TestDatabase ===

impl TestDatabase {
    /// Creates an empty Postgres database.
    pub async fn postgres() -> Result<Self, sqlx::Error> {
        let admin =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| String::from(DEFAULT_POSTGRES_URL));
        let name = format!("keel_test_{:016x}", fastrand::u64(..));
        let mut connection = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await?;
        connection.close().await?;
        let base = admin.split('?').next().unwrap_or(&admin);
        let root = &base[..base.rfind('/').unwrap_or(base.len())];
        Ok(Self {
            url: format!("{root}/{name}"),
            cleanup: Cleanup::Postgres { admin, name },
        })
    }

    /// A SQLite file that does not exist yet.
    pub fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("keel-test-{:016x}.db", fastrand::u64(..)));
        Self {
            url: format!("sqlite://{}", path.display()),
            cleanup: Cleanup::Sqlite { path },
        }
    }

    /// Its `database.url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether it is Postgres.
    pub fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::Postgres { .. })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Postgres { admin, name } => {
                let (admin, name) = (admin.clone(), name.clone());
                // Drop is not async; a thread of its own runs the DROP.
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async {
                        let mut connection = sqlx::PgConnection::connect(&admin).await?;
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut connection)
                            .await?;
                        Ok::<_, sqlx::Error>(())
                    })?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                });
                let _ = dropped.join();
            }
        }
    }
}
