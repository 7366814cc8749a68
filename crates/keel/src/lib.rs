//! Wiring: from a validated [`Config`] to a running gateway. The binary's
//! `main` and the end-to-end tests both start Keel through [`start`].

mod jobs;
pub mod otlp;
mod providers;
mod workers;

use std::future::Future;
use std::sync::Arc;

use keel_config::Config;
use keel_router::{RouteTable, Router};
use keel_server::{AppState, TenantLimits, Tenants};
use tokio::net::TcpListener;

pub use jobs::migrate;
pub use providers::build_providers;

/// Builds every component from `config` and serves on `listener` until
/// `shutdown` resolves and in-flight requests have drained (or the grace
/// period ran out).
pub async fn start(
    config: Arc<Config>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let providers = build_providers(&config).await?;
    let metrics = Arc::new(keel_telemetry::Metrics::new());
    let shared = match &config.redis {
        None => keel_redis::Shared::local(),
        Some(redis) => keel_redis::Shared::redis(redis)
            .map_err(|error| std::io::Error::other(format!("redis.url: {error}")))?,
    };
    let router = Arc::new(Router::new(
        RouteTable::from_config(&config, &providers, &shared),
        metrics.clone(),
    ));
    let tenants = Tenants::new(
        config
            .tenants
            .iter()
            .map(|tenant| (tenant.name.as_str(), tenant.key_hashes.as_slice())),
    );
    let limits = Arc::new(
        TenantLimits::kept_in(
            &shared,
            config
                .tenants
                .iter()
                .map(|tenant| (tenant.name.as_str(), tenant.limits.rpm, tenant.limits.tpm)),
        )
        .with_concurrency(config.tenants.iter().map(|tenant| {
            let limits = &tenant.limits;
            (
                tenant.name.as_str(),
                limits.max_in_flight,
                limits.max_queued_jobs,
            )
        })),
    );
    let max_body = usize::try_from(config.server.max_body).unwrap_or(usize::MAX);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.server.max_in_flight));
    let queue = jobs::open_queue(&config, metrics.clone()).await?;
    let handler = Arc::new(jobs::RouterHandler::new(router.clone(), limits.clone()));
    let slos = Arc::new(keel_slo::Slos::new(&config.slos, metrics.clone()));
    let state = Arc::new(AppState {
        router,
        tenants,
        max_body,
        max_upstream_body: usize::try_from(config.server.max_upstream_body).unwrap_or(usize::MAX),
        body_timeout: config.server.body_timeout,
        limits,
        in_flight,
        metrics,
        jobs: Some(queue.clone()),
        admin_key: config
            .server
            .admin_key
            .as_ref()
            .map(|key| keel_server::key_digest(key.expose())),
        metrics_elsewhere: config.server.metrics_listen.is_some(),
        cutoff: keel_server::Cutoff::new(),
        slos,
        sse_keepalive: config.server.sse_keepalive,
        shared,
    });
    let metrics_server = match config.server.metrics_listen {
        Some(address) => Some(serve_metrics(address, state.clone()).await?),
        None => None,
    };
    tracing::info!(listen = %listener.local_addr()?, "keel is serving");
    // Started once nothing else can fail, and stopped with the server.
    let health_checks = tokio::spawn({
        let router = state.router.clone();
        async move { router.run_health_checks().await }
    });
    let grace = config.server.shutdown_grace;
    let cutoff = state.cutoff.clone();
    let connections = connection_limits();
    let app = keel_server::Api::new(state, &config.server.cors);
    let served = match config.server.workers {
        None => {
            jobs::serve_with_workers(&config, queue, handler, shutdown, |signal| {
                keel_server::serve(listener, app, signal, grace, cutoff, connections)
            })
            .await
        }
        Some(count) => {
            let mut workers =
                workers::HttpWorkers::spawn(count, listener, app, grace, cutoff, connections)?;
            tracing::info!(workers = count, "HTTP served by single-threaded workers");
            // The workers' runtimes are released when `workers` drops, after
            // the job workers have stopped too.
            jobs::serve_with_workers(&config, queue, handler, shutdown, |signal| {
                workers.serve(signal)
            })
            .await
        }
    };
    health_checks.abort();
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    served
}

/// Serves `/metrics` alone on `address` (`server.metrics_listen`), without
/// auth, until the returned task is aborted.
async fn serve_metrics(
    address: std::net::SocketAddr,
    state: Arc<AppState>,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = TcpListener::bind(address).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("server.metrics_listen: cannot listen on {address}: {error}"),
        )
    })?;
    tracing::info!(metrics_listen = %listener.local_addr()?, "serving /metrics");
    Ok(tokio::spawn(keel_server::serve(
        listener,
        keel_server::metrics_app(state).into(),
        std::future::pending(),
        std::time::Duration::ZERO,
        keel_server::Cutoff::new(),
        keel_server::Connections {
            max: 64,
            ..keel_server::Connections::default()
        },
    )))
}

/// Raises the soft open-files limit to the hard one and keeps the client
/// connections below it: a proxied stream holds two descriptors (client and
/// upstream), and the store, logs and listeners need a few more, so the
/// listener never runs out and stops serving everyone.
fn connection_limits() -> keel_server::Connections {
    const RESERVED: u64 = 128;
    let (soft, hard) = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(raised) => (
            raised,
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(raised, |(_, hard)| hard),
        ),
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-files limit");
            (1024, 1024)
        }
    };
    let max = usize::try_from(soft.saturating_sub(RESERVED) / 2)
        .unwrap_or(usize::MAX)
        .max(16);
    tracing::info!(
        open_files_soft = soft,
        open_files_hard = hard,
        max_connections = max,
        "open-files limit"
    );
    keel_server::Connections {
        max,
        ..keel_server::Connections::default()
    }
}
