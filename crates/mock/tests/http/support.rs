//! Helpers: start a mock, send requests, read SSE, wait for counters.

use std::net::SocketAddr;
use std::time::Duration;

use keel_mock::{spawn_local, MockState, ModelStats};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A mock served on a random local port, stopped on drop.
pub struct Mock {
    pub state: MockState,
    pub client: reqwest::Client,
    address: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl Mock {
    pub async fn start() -> Self {
        let state = MockState::new();
        let (address, task) = spawn_local(state.clone()).await.unwrap();
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .unwrap();
        Self {
            state,
            client,
            address,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn openai(&self, body: Value) -> reqwest::Response {
        let url = self.url("/v1/chat/completions");
        self.client.post(url).json_body(&body).send().await.unwrap()
    }

    pub async fn responses(&self, body: Value) -> reqwest::Response {
        let url = self.url("/v1/responses");
        self.client.post(url).json_body(&body).send().await.unwrap()
    }

    pub async fn anthropic(&self, body: Value) -> reqwest::Response {
        let url = self.url("/v1/messages");
        let request = self
            .client
            .post(url)
            .header("anthropic-version", "2023-06-01");
        request.json_body(&body).send().await.unwrap()
    }

    /// Polls the counters of `model` until `done` holds, failing after 5 s.
    pub async fn wait_for_stats(
        &self,
        model: &str,
        done: impl Fn(&ModelStats) -> bool,
    ) -> ModelStats {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stats = self.state.stats(model);
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "counters of {model} never matched: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses a complete SSE body.
pub fn parse_sse(body: &str) -> Vec<SseEvent> {
    body.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(parse_event)
        .collect()
}

fn parse_event(block: &str) -> SseEvent {
    let mut event = SseEvent {
        event: None,
        data: String::new(),
    };
    for line in block.lines() {
        if let Some(name) = line.strip_prefix("event: ") {
            event.event = Some(name.to_owned());
        } else if let Some(data) = line.strip_prefix("data: ") {
            event.data.push_str(data);
        } else {
            panic!("unexpected SSE line {line:?}");
        }
    }
    event
}

/// Reads a whole SSE response body.
pub async fn read_sse(response: reqwest::Response) -> Vec<SseEvent> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    parse_sse(&response.text().await.unwrap())
}

/// Reads SSE events one at a time, as they arrive.
pub struct SseReader {
    pub response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next complete event; `Ok(None)` at a clean end, `Err` when the connection broke.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, reqwest::Error> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).unwrap();
                return Ok(Some(parse_event(block.trim_end_matches('\n'))));
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// Reads events until the stream ends or breaks; returns them and whether it broke.
    pub async fn read_to_end(&mut self) -> (Vec<SseEvent>, bool) {
        let mut events = Vec::new();
        loop {
            match self.next().await {
                Ok(Some(event)) => events.push(event),
                Ok(None) => return (events, false),
                Err(_) => return (events, true),
            }
        }
    }
}

/// Parses an event's data as JSON.
pub fn json(event: &SseEvent) -> Value {
    serde_json::from_str(&event.data)
        .unwrap_or_else(|error| panic!("bad JSON in {event:?}: {error}"))
}

/// The Anthropic event names of a stream.
pub fn names(events: &[SseEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event.event.as_deref().unwrap_or(""))
        .collect()
}

/// JSON request bodies without reqwest's `json` feature.
pub trait RequestJson {
    fn json_body(self, body: &Value) -> Self;
}

impl RequestJson for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
    }
}

/// JSON response bodies without reqwest's `json` feature.
pub trait ResponseJson {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T;
}

impl ResponseJson for reqwest::Response {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T {
        let bytes = self.bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("bad JSON {bytes:?}: {error}"))
    }
}
