//! `server.workers`: HTTP served by several threads, each running a
//! single-threaded tokio runtime of its own, as nginx runs one worker process
//! per core. Every worker accepts from the one listening socket, so a worker
//! busy with its connections leaves new ones to the others (one socket per
//! worker with `SO_REUSEPORT` would hash a connection to a worker whatever
//! its load). The application state (limits, breakers, cache, metrics) is the
//! one shared `Arc` every worker's router holds, exactly as under the
//! multi-threaded runtime.
//!
//! Each worker sends upstream requests through its own connection pools
//! (`keel_providers::set_http_worker`), so a stream's chunks stay on one
//! thread from the upstream socket to the client's.
//!
//! Other connections a worker opens (to the database, say) are driven by
//! that worker's runtime and may be used by other threads, so every runtime
//! lives until the gateway is done: the workers' runtimes are released when
//! [`HttpWorkers`] is dropped, after the job workers stopped.

use std::io;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt as _;
use keel_server::{Connections, Cutoff};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// The HTTP worker threads, serving from the moment they are spawned.
pub(crate) struct HttpWorkers {
    /// Tells every worker to stop accepting and drain.
    stop: watch::Sender<bool>,
    /// Each worker's result once its connections have drained.
    served: Vec<oneshot::Receiver<io::Result<()>>>,
    /// Lets the runtimes go (on drop).
    release: watch::Sender<bool>,
}

/// What one worker thread needs.
struct Worker {
    index: usize,
    listener: std::net::TcpListener,
    app: keel_server::Api,
    stop: watch::Receiver<bool>,
    release: watch::Receiver<bool>,
    grace: Duration,
    cutoff: Cutoff,
    connections: Connections,
}

// === impl HttpWorkers ===

impl HttpWorkers {
    /// Starts `count` workers serving `app` from `listener`. The open
    /// connection cap is split between them.
    pub(crate) fn spawn(
        count: usize,
        listener: TcpListener,
        app: keel_server::Api,
        grace: Duration,
        cutoff: Cutoff,
        connections: Connections,
    ) -> io::Result<Self> {
        let count = count.max(1);
        let listener = listener.into_std()?;
        let (stop, stop_rx) = watch::channel(false);
        let (release, release_rx) = watch::channel(false);
        let connections = Connections {
            max: connections.max.div_ceil(count).max(1),
            ..connections
        };
        let mut served = Vec::with_capacity(count);
        for index in 0..count {
            let worker = Worker {
                index,
                listener: listener.try_clone()?,
                app: app.clone(),
                stop: stop_rx.clone(),
                release: release_rx.clone(),
                grace,
                cutoff: cutoff.clone(),
                connections,
            };
            let (done, result) = oneshot::channel();
            // Detached: the thread ends once released (see `Drop`).
            std::thread::Builder::new()
                .name(format!("keel-http-{index}"))
                .spawn(move || worker.run(done))?;
            served.push(result);
        }
        Ok(Self {
            stop,
            served,
            release,
        })
    }

    /// Serves until `shutdown` resolves (or a worker fails), then waits for
    /// every worker to drain; the first error wins.
    pub(crate) async fn serve(&mut self, shutdown: BoxFuture<'static, ()>) -> io::Result<()> {
        let mut results: futures_util::stream::FuturesUnordered<_> =
            self.served.drain(..).collect();
        let first = tokio::select! {
            () = shutdown => None,
            Some(result) = results.next() => Some(result),
        };
        let _ = self.stop.send(true);
        let mut outcome = Ok(());
        for result in first.into_iter().chain(results.collect::<Vec<_>>().await) {
            let result = result.unwrap_or_else(|_| {
                Err(io::Error::other(
                    "an HTTP worker thread stopped unexpectedly",
                ))
            });
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }
}

impl Drop for HttpWorkers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.release.send(true);
    }
}

// === impl Worker ===

impl Worker {
    /// The thread's body: a runtime serving until told to stop, kept alive
    /// until released.
    fn run(self, done: oneshot::Sender<io::Result<()>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = done.send(Err(error));
                return;
            }
        };
        let Self {
            index,
            listener,
            app,
            mut stop,
            mut release,
            grace,
            cutoff,
            connections,
        } = self;
        // Pool 0 is the other threads' (health checks, job workers).
        keel_providers::set_http_worker(index + 1);
        runtime.block_on(async move {
            let served = match TcpListener::from_std(listener) {
                Ok(listener) => {
                    let stopped = async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    };
                    keel_server::serve(listener, app, stopped, grace, cutoff, connections).await
                }
                Err(error) => Err(error),
            };
            let _ = done.send(served);
            let _ = release.wait_for(|release| *release).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    use axum::routing::get;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// `count` workers serving `app` on a free port, and its URL.
    async fn serve_app(count: usize, app: axum::Router) -> io::Result<(HttpWorkers, String)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let workers = HttpWorkers::spawn(
            count,
            listener,
            app.into(),
            Duration::from_secs(1),
            Cutoff::new(),
            Connections::default(),
        )?;
        Ok((workers, url))
    }

    /// While one worker's thread is blocked inside a request, a new
    /// connection is accepted and answered by another worker's thread.
    #[tokio::test]
    async fn a_blocked_worker_leaves_new_connections_to_the_others() -> TestResult {
        let (started, first_started) = mpsc::channel::<()>();
        let started = Arc::new(Mutex::new(Some(started)));
        let app = axum::Router::new().route(
            "/",
            get(move || {
                let started = started.clone();
                async move {
                    let first = started.lock().ok().and_then(|mut slot| slot.take());
                    if let Some(started) = first {
                        let _ = started.send(());
                        // Holds this worker's only thread, as a request that
                        // never yields would.
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    std::thread::current().name().unwrap_or("").to_owned()
                }
            }),
        );
        let (mut workers, url) = serve_app(2, app).await?;
        let first = tokio::spawn(reqwest::get(url.clone()));
        tokio::task::spawn_blocking(move || first_started.recv_timeout(Duration::from_secs(10)))
            .await??;
        let second = reqwest::get(url).await?.text().await?;
        let first = first.await??.text().await?;
        assert!(first.starts_with("keel-http-"), "{first}");
        assert!(second.starts_with("keel-http-"), "{second}");
        assert_ne!(first, second, "the blocked worker answered both");
        workers.serve(Box::pin(async {})).await?;
        Ok(())
    }

    /// `serve` returns once every worker has drained, and a new connection
    /// is refused after that.
    #[tokio::test]
    async fn serve_returns_after_every_worker_stopped_accepting() -> TestResult {
        let app = axum::Router::new().route("/", get(|| async { "ok" }));
        let (mut workers, url) = serve_app(3, app).await?;
        assert_eq!(reqwest::get(&url).await?.text().await?, "ok");
        workers.serve(Box::pin(async {})).await?;
        drop(workers);
        let refused = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        assert!(
            refused.is_err(),
            "a connection was accepted after serve returned"
        );
        Ok(())
    }
}
