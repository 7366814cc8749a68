//! `keel`: the gateway binary. `serve`, `check`, `mock` and `--version`.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use keel_config::{load_file, Loaded, ProcessEnv};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

// mimalloc instead of glibc's malloc: about a fifth of a request's
// instructions were allocation, and glibc kept the memory of closed streams
// (bench/README.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "An LLM gateway that keeps one slow provider from sinking the ship."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The configuration file [default: $KEEL_CONFIG, else ./providers.yaml]
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print a summary, without starting.
    Check {
        /// The configuration file [default: $KEEL_CONFIG, else ./providers.yaml]
        file: Option<PathBuf>,
        /// The configuration file, as the other commands take it.
        #[arg(long, conflicts_with = "file")]
        config: Option<PathBuf>,
    },
    /// Apply the job store's migrations to `database.url`, then exit.
    Migrate {
        /// The configuration file [default: $KEEL_CONFIG, else ./providers.yaml]
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the wire-faithful OpenAI + Anthropic mock upstream with its fault API.
    Mock {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    if !matches!(cli.command, Command::Serve { .. }) {
        // `serve` starts logging once its configuration says where spans go.
        init_logging(None);
    }
    match cli.command {
        Command::Serve { config } => runtime.block_on(serve(config)),
        Command::Check { file, config } => check(&config_path(file.or(config))),
        Command::Migrate { config } => runtime.block_on(migrate(config)),
        Command::Mock { listen } => runtime.block_on(mock(listen)),
    }
}

async fn migrate(path: Option<PathBuf>) -> ExitCode {
    let Some(loaded) = load(&config_path(path)) else {
        return ExitCode::from(2);
    };
    match keel::migrate(&loaded.config).await {
        Ok(backend) => {
            tracing::info!(backend, "migrations applied");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&format!("database.url: {error}")),
    }
}

fn config_path(path: Option<PathBuf>) -> PathBuf {
    path.or_else(|| std::env::var_os("KEEL_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("providers.yaml"))
}

async fn serve(path: Option<PathBuf>) -> ExitCode {
    let path = config_path(path);
    let Some(loaded) = load(&path) else {
        return ExitCode::from(2);
    };
    let otlp = match keel::otlp::layer(&loaded.config.telemetry) {
        Ok(otlp) => otlp,
        Err(error) => {
            init_logging(None);
            return fail(&error);
        }
    };
    let (span_export, _flush_on_exit) = otlp.unzip();
    init_logging(
        span_export.map(|layer| Box::new(layer) as Box<dyn Layer<Registry> + Send + Sync>),
    );
    if let Some(endpoint) = &loaded.config.telemetry.otlp_endpoint {
        tracing::info!(%endpoint, "exporting spans over OTLP");
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let listener = match tokio::net::TcpListener::bind(loaded.config.server.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            return fail(&format!(
                "server.listen: cannot listen on {}: {error}",
                loaded.config.server.listen
            ))
        }
    };
    match keel::start(Arc::new(loaded.config), listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&format!("keel stopped: {error}")),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let Some(loaded) = load(path) else {
        return ExitCode::from(2);
    };
    let mut out = std::io::stdout().lock();
    let mut text = keel_config::summary(&loaded.config);
    for warning in &loaded.warnings {
        text.push_str(&format!("warning: {warning}\n"));
    }
    let _ = writeln!(out, "{}: ok\n{text}", path.display());
    ExitCode::SUCCESS
}

async fn mock(listen: SocketAddr) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => return fail(&format!("--listen: cannot listen on {listen}: {error}")),
    };
    tracing::info!(%listen, "keel mock upstream is serving (control API under /_mock/)");
    tokio::select! {
        result = keel_mock::serve(listener, keel_mock::MockState::new()) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&format!("keel mock stopped: {error}")),
        },
        () = shutdown_signal() => ExitCode::SUCCESS,
    }
}

/// Loads the configuration, printing every problem (one per line) on failure.
fn load(path: &std::path::Path) -> Option<Loaded> {
    match load_file(path, &ProcessEnv) {
        Ok(loaded) => Some(loaded),
        Err(error) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}: invalid configuration\n{error}",
                path.display()
            );
            None
        }
    }
}

fn fail(message: &str) -> ExitCode {
    tracing::error!("{message}");
    ExitCode::FAILURE
}

/// Logs to stderr at `RUST_LOG` (default `info`); `span_export`, when set,
/// sends the `keel.*` spans over OTLP beside the logs, under its own filter.
fn init_logging(span_export: Option<Box<dyn Layer<Registry> + Send + Sync>>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(span_export)
        .with(logs)
        .init();
}

/// Colours are for a person at a terminal: a pipe, a file or a log
/// collector would keep the escape codes as text. `NO_COLOR` (set and not
/// empty, per no-color.org) turns them off at a terminal too.
fn colour_logs() -> bool {
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    std::io::stderr().is_terminal() && !no_colour
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
