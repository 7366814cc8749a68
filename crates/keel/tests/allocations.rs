//! Allocations per plain request and per streamed chunk: a guard on the hot
//! path that times nothing. A counting global allocator wraps this process,
//! which runs the gateway (on the test's one-thread runtime) and a client
//! that reuses one buffer; the mock upstream is a `keel mock` process of its
//! own, so its allocations are not counted. Each figure is an average over
//! many requests after a warm-up, and fails the test when it grows more
//! than 10 % over the figure written here: lower the figure when a change
//! takes allocations away, and say why when one must add some.

use std::alloc::System;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Allocations (and reallocations) per plain request, today.
const PER_REQUEST: f64 = 49.5;
/// Allocations per chunk of a stream, today.
const PER_CHUNK: f64 = 1.05;
/// How far either may grow before the test fails.
const MARGIN: f64 = 1.10;

/// Content chunks of the short and the long stream.
const SHORT: u32 = 10;
const LONG: u32 = 110;

struct MockProcess {
    _child: Child,
    addr: SocketAddr,
}

async fn start_mock() -> Result<MockProcess, Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["mock", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(MockProcess {
                _child: child,
                addr,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("keel mock did not start listening within 10 s".into())
}

fn config(mock: SocketAddr) -> String {
    format!(
        "database: {{url: \"sqlite::memory:\"}}\n\
         jobs: {{workers: 0}}\n\
         tenants: [{{name: t, keys: [sk-alloc]}}]\n\
         providers:\n  up: {{kind: openai, base_url: \"http://{mock}/v1\", retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 plain: {{targets: [{{provider: up, model: m-plain}}]}}\n\
         \x20 short: {{targets: [{{provider: up, model: m-short}}]}}\n\
         \x20 long: {{targets: [{{provider: up, model: m-long}}]}}\n"
    )
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer sk-alloc\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn chat(model: &str, stream: bool) -> Vec<u8> {
    post(
        "/v1/chat/completions",
        &format!(
            r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"Say hello."}}]}}"#
        ),
    )
}

/// One keep-alive connection and one buffer, reused for every exchange so
/// the client allocates nothing while counted.
struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            stream: TcpStream::connect(addr).await?,
            buffer: Vec::with_capacity(1 << 20),
        })
    }

    /// Sends `request` and reads its whole response, which must be a 200.
    async fn exchange(&mut self, request: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        loop {
            if self.buffer.len() == self.buffer.capacity() {
                return Err("a response larger than the client's buffer".into());
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return Err("the gateway closed the connection".into());
            }
            if let Some(complete) = whole_response(&self.buffer) {
                return complete;
            }
        }
    }
}

/// `Some` once `bytes` hold a whole response: `Ok` for a 200.
fn whole_response(bytes: &[u8]) -> Option<Result<(), Box<dyn std::error::Error>>> {
    let head_end = bytes.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    let complete = match length {
        Some(length) => bytes.len() >= head_end + length,
        None => bytes.ends_with(b"0\r\n\r\n"),
    };
    if !complete {
        return None;
    }
    Some(if head.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("not a 200: {}", String::from_utf8_lossy(bytes)).into())
    })
}

/// Allocations per exchange of `request`, over `count` after `count / 4`
/// uncounted ones.
async fn allocations(
    client: &mut Client,
    request: &[u8],
    count: u32,
) -> Result<f64, Box<dyn std::error::Error>> {
    for _ in 0..count / 4 {
        client.exchange(request).await?;
    }
    let region = Region::new(GLOBAL);
    for _ in 0..count {
        client.exchange(request).await?;
    }
    let change = region.change();
    Ok((change.allocations + change.reallocations) as f64 / f64::from(count))
}

async fn set_chunks(mock: SocketAddr, model: &str, chunks: u32) -> TestResult {
    let response = reqwest::Client::new()
        .put(format!("http://{mock}/_mock/faults/{model}"))
        .json(&serde_json::json!({ "chunks": chunks }))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(())
}

#[tokio::test]
async fn allocations_per_request_and_per_chunk_stay_within_their_budget() -> TestResult {
    let mock = start_mock().await?;
    set_chunks(mock.addr, "m-short", SHORT).await?;
    set_chunks(mock.addr, "m-long", LONG).await?;
    let no_vars = std::collections::HashMap::<String, String>::new();
    let config = keel_config::load_str(&config(mock.addr), &no_vars)?.config;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(keel::start(Arc::new(config), listener, async move {
        let _ = stopped.await;
    }));
    let mut client = Client::connect(addr).await?;

    let per_request = allocations(&mut client, &chat("plain", false), 400).await?;
    let short = allocations(&mut client, &chat("short", true), 200).await?;
    let long = allocations(&mut client, &chat("long", true), 200).await?;
    let per_chunk = (long - short) / f64::from(LONG - SHORT);

    drop(client);
    let _ = stop.send(());
    gateway.await??;
    assert!(
        per_request <= PER_REQUEST * MARGIN,
        "a plain request made {per_request:.1} allocations; the budget is {PER_REQUEST} + 10 %"
    );
    assert!(
        per_chunk <= PER_CHUNK * MARGIN,
        "a streamed chunk made {per_chunk:.2} allocations; the budget is {PER_CHUNK} + 10 % \
         (a stream of {SHORT} chunks made {short:.1})"
    );
    Ok(())
}
