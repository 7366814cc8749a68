//! Test helpers: a `keel mock` upstream and a Keel gateway, each on an
//! ephemeral 127.0.0.1 port, and a small SSE parser for assertions.
//! Used only from `[dev-dependencies]`.

mod process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub use keel_mock::{FailNext, Faults, MockState, ModelStats, MODELS_LIST};
pub use keel_redis::testing::RedisServer;
pub use keel_testbase::{golden, TestDatabase};
pub use process::{ConfigFile, KeelProcess};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running mock upstream.
pub struct Mock {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its fault plans and counters.
    pub state: MockState,
    _task: JoinHandle<std::io::Result<()>>,
}

/// A running gateway.
pub struct Gateway {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

/// The API key of the tenant in [`yaml_with_targets`].
pub const TEST_KEY: &str = "sk-test-key";

/// A configuration with one tenant (key [`TEST_KEY`]), one OpenAI-kind
/// provider per `(name, base_url)`, and a model `chat` whose targets are
/// those providers in order, each serving the upstream model `gpt-mock`.
/// Each provider gets one try (`retry.attempts: 1`), so an attempt count in
/// a test is the number of targets tried; retries have their own tests.
pub fn yaml_with_targets(providers: &[(&str, &str)]) -> String {
    let mut yaml = format!("tenants:\n  - name: test\n    keys: [\"{TEST_KEY}\"]\nproviders:\n");
    for (name, base_url) in providers {
        yaml.push_str(&format!("  {name}:\n    kind: openai\n    base_url: {base_url}\n    timeouts: {{connect: 1s}}\n    retry: {{attempts: 1}}\n"));
    }
    yaml.push_str("models:\n  chat:\n    targets:\n");
    for (name, _) in providers {
        yaml.push_str(&format!("      - {{provider: {name}, model: gpt-mock}}\n"));
    }
    yaml
}

/// Starts a mock upstream on 127.0.0.1:0.
pub async fn start_mock() -> std::io::Result<Mock> {
    let state = MockState::new();
    let (addr, task) = keel_mock::spawn_local(state.clone()).await?;
    Ok(Mock {
        addr,
        state,
        _task: task,
    })
}

/// Starts a gateway from YAML on 127.0.0.1:0 (`server.listen` is ignored).
/// `${VAR}` references resolve against `vars` only, never the process env.
pub async fn start_gateway(
    yaml: &str,
    vars: &[(&str, &str)],
) -> Result<Gateway, Box<dyn std::error::Error>> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut loaded = keel_config::load_str(yaml, &vars)?;
    // Tests must neither share nor leave behind the default ./keel.db.
    if loaded.config.database.url == "sqlite://keel.db" {
        loaded.config.database.url = String::from("sqlite::memory:");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (shutdown, signal) = oneshot::channel();
    let task = tokio::spawn(keel::start(Arc::new(loaded.config), listener, async move {
        let _ = signal.await;
    }));
    Ok(Gateway {
        addr,
        shutdown: Some(shutdown),
        task,
    })
}

// === impl Mock ===

impl Mock {
    /// The OpenAI API root of this mock, for a provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

// === impl Gateway ===

impl Gateway {
    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends the shutdown signal and waits for the server to finish draining.
    pub async fn shut_down(mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await.map_err(std::io::Error::other)?
    }

    /// Sends the shutdown signal without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits for the server task to end.
    pub async fn finished(mut self) -> std::io::Result<()> {
        (&mut self.task).await.map_err(std::io::Error::other)?
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `tests/sdk/<script>` with `args` under the test Python
/// (`KEEL_TEST_PYTHON`, which `scripts/test` points at the `.venv` holding
/// the official SDKs; `python3` otherwise) and returns what it printed; an
/// error carries its output when it failed.
pub async fn sdk_check(script: &str, args: Vec<String>) -> Result<String, String> {
    let python = std::env::var("KEEL_TEST_PYTHON").unwrap_or_else(|_| String::from("python3"));
    let path = format!("{}/../../tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let installs = "tests/sdk/requirements.txt";
    run_script(python, path, args, script, installs).await
}

/// Runs `tests/clients/<script>` with `args`, a Python script under the
/// test Python (`KEEL_TEST_PYTHON`) or a `.mjs` one under `node`
/// (`KEEL_TEST_NODE`, else `node`; its packages are `tests/clients/
/// node_modules`, which `scripts/test` installs), and returns what it
/// printed; an error carries its output when it failed or could not start.
pub async fn client_check(script: &str, args: Vec<String>) -> Result<String, String> {
    let program = if script.ends_with(".mjs") {
        std::env::var("KEEL_TEST_NODE").unwrap_or_else(|_| String::from("node"))
    } else {
        std::env::var("KEEL_TEST_PYTHON").unwrap_or_else(|_| String::from("python3"))
    };
    let path = format!(
        "{}/../../tests/clients/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let installs = "tests/sdk/requirements.txt and tests/clients/package-lock.json";
    run_script(program, path, args, script, installs).await
}

/// Runs `program path args…` off the async threads; its standard output,
/// or an error with both outputs that names what `scripts/test` installs.
async fn run_script(
    program: String,
    path: String,
    args: Vec<String>,
    script: &str,
    installs: &str,
) -> Result<String, String> {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .arg(&path)
            .args(&args)
            .output()
            .map_err(|error| format!("cannot run {program}: {error}"))
    })
    .await
    .map_err(|error| error.to_string())??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{script} failed (run scripts/test, which installs {installs}):\n{stdout}\n{stderr}"
        ));
    }
    Ok(stdout)
}

/// A response header as text; empty when it is absent or not text.
pub fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

/// The `data:` payloads of an SSE body, in order (`[DONE]` included).
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|frame| {
            let lines: Vec<&str> = frame
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        })
        .collect()
}

/// A JSON value with the fields that differ per response (`id`, `created`,
/// `system_fingerprint` and tool call ids) removed, for comparing two answers.
pub fn without_volatile_fields(mut value: serde_json::Value) -> serde_json::Value {
    strip(&mut value);
    value
}

fn strip(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for key in ["id", "created", "system_fingerprint"] {
                map.remove(key);
            }
            map.values_mut().for_each(strip);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}
