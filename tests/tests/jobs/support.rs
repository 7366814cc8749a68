//! Shared pieces of the job suites: a gateway on a database of its own, a
//! webhook receiver that records what it gets, an independent Standard
//! Webhooks verifier, and polling with a deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keel_testkit::{start_gateway, start_mock, Gateway, Mock, TestDatabase};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Instantiates each test for both stores.
#[allow(
    unused_macros,
    reason = "shared by the job test crates; each uses a part"
)]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() -> super::TestResult { super::$name(super::Store::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() -> super::TestResult { super::$name(super::Store::Postgres).await })*
        }
    };
}

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The signing secret the suites configure (24 random bytes, base64).
pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const ACME: &str = "sk-acme";
pub const GLOBEX: &str = "sk-globex";

/// A gateway with its mock upstream and database.
pub struct Setup {
    pub mock: Mock,
    pub gateway: Gateway,
    pub http: reqwest::Client,
    pub _database: TestDatabase,
}

/// Which store a suite runs on.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// Options of [`Setup::start`].
pub struct Options {
    pub max_attempts: u32,
    pub allow_private: bool,
    pub lease: &'static str,
    /// `webhooks.secret` (several, space-separated, during a rotation).
    pub secret: &'static str,
    /// acme's `limits:` (YAML flow mapping), if any.
    pub acme_limits: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            allow_private: true,
            lease: "5s",
            secret: SECRET,
            acme_limits: None,
        }
    }
}

impl Setup {
    pub async fn start(store: Store, options: Options) -> Result<Self, Box<dyn std::error::Error>> {
        let database = match store {
            Store::Sqlite => TestDatabase::sqlite(),
            Store::Postgres => TestDatabase::postgres().await?,
        };
        let mock = start_mock().await?;
        let yaml = format!(
            r#"tenants:
  - {{name: acme, keys: ["{ACME}"]{acme_limits}}}
  - {{name: globex, keys: ["{GLOBEX}"]}}
providers:
  first: {{kind: openai, base_url: "{base}", timeouts: {{connect: 1s}}, retry: {{attempts: 1}}}}
models:
  chat: {{targets: [{{provider: first, model: gpt-mock}}]}}
database: {{url: "{url}"}}
jobs: {{workers: 4, lease: {lease}, max_attempts: {max_attempts}, retry: {{base_delay: 10ms, max_delay: 40ms}}}}
webhooks: {{secret: "{secret}", timeout: 2s, allow_private: {allow_private}, retry_schedule: [50ms, 50ms, 50ms]}}
"#,
            base = mock.base_url(),
            url = database.url(),
            lease = options.lease,
            max_attempts = options.max_attempts,
            allow_private = options.allow_private,
            secret = options.secret,
            acme_limits = options
                .acme_limits
                .map(|limits| format!(", limits: {limits}"))
                .unwrap_or_default(),
        );
        let gateway = start_gateway(&yaml, &[]).await?;
        Ok(Self {
            mock,
            gateway,
            http: reqwest::Client::new(),
            _database: database,
        })
    }

    /// POSTs a job for `key`'s tenant.
    pub async fn submit(
        &self,
        key: &str,
        body: &Value,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .post(self.gateway.url("/v1/jobs"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
    }

    /// GETs a job as JSON with its status code.
    pub async fn job(
        &self,
        key: &str,
        id: &str,
    ) -> Result<(StatusCode, Value), Box<dyn std::error::Error>> {
        let response = self
            .http
            .get(self.gateway.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(key)
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    /// Polls a job until `done` holds for it, for at most 15 s.
    pub async fn wait_for(
        &self,
        id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, Box<dyn std::error::Error>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (_, job) = self.job(ACME, id).await?;
            if done(&job) {
                return Ok(job);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("job {id} did not get there in time: {job}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the job is final.
    pub async fn wait_final(&self, id: &str) -> Result<Value, Box<dyn std::error::Error>> {
        self.wait_for(id, |job| {
            matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await
    }
}

/// A chat request for the model `chat`.
pub fn chat_request() -> Value {
    serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}]})
}

/// One webhook request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

/// A webhook receiver on 127.0.0.1:0 that answers the statuses of
/// `script` in turn (then 200) and records every request.
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: Vec<u16>) -> std::io::Result<Self> {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.into_iter()));
        let (log, next) = (received.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (log, next) = (log.clone(), next.clone());
                async move {
                    if let Ok(mut log) = log.lock() {
                        log.push(Received { headers, body });
                    }
                    let status = next
                        .lock()
                        .ok()
                        .and_then(|mut next| next.next())
                        .unwrap_or(200);
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            received,
            _task: task,
        })
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received
            .lock()
            .map(|log| log.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `count` requests arrived (15 s at most).
    pub async fn wait_for(
        &self,
        count: usize,
    ) -> Result<Vec<Received>, Box<dyn std::error::Error>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return Ok(requests);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(
                    format!("the receiver got {} of {count} webhooks", requests.len()).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Verifies a Standard Webhooks signature with an HMAC written out here
/// from SHA-256 (RFC 2104), independent of the gateway's `hmac` crate path:
/// the signature must match and the timestamp be within ±300 s.
pub fn verify(secret: &str, received: &Received) -> Result<(), String> {
    let header = |name: &str| {
        received
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or(format!("no {name} header"))
    };
    let (id, timestamp, signatures) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let sent_at: i64 = timestamp
        .parse()
        .map_err(|_| "webhook-timestamp is not a number")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    if (i64::try_from(now).unwrap_or(i64::MAX) - sent_at).abs() > 300 {
        return Err(String::from("webhook-timestamp outside ±300 s"));
    }
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .map_err(|e| e.to_string())?;
    let expected = format!(
        "v1,{}",
        STANDARD.encode(hmac_sha256(
            &key,
            format!("{id}.{timestamp}.{}", received.body).as_bytes()
        ))
    );
    if signatures.split(' ').any(|signature| signature == expected) {
        Ok(())
    } else {
        Err(format!(
            "signature mismatch: got {signatures}, expected {expected}"
        ))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0_u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[test]
fn the_test_verifier_accepts_the_standard_webhooks_reference_vector() {
    let key = STANDARD
        .decode("C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
        .unwrap_or_default();
    let mac = hmac_sha256(&key, br#"msg_27UH4WbU6Z5A5EzD8u03UvzRbpk.1649367553.{"email":"test@example.com","username":"test_user"}"#);
    assert_eq!(
        STANDARD.encode(mac),
        "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    );
}
