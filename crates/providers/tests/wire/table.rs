//! Every request fixture through every provider kind, compared with its
//! golden upstream request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_providers::{
    AnthropicProvider, AnthropicSettings, AzureSettings, OpenAiProvider, OpenAiSettings, Provider,
    ProviderError,
};
use keel_testbase::golden::assert_golden;
use keel_types::ChatRequest;

use crate::capture::{self, Captured};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Every kind answers 400, so the adapter returns at once; only the
/// request it sent matters here.
const REFUSAL: &str =
    r#"{"type":"error","error":{"type":"invalid_request_error","message":"captured"}}"#;

/// The extra header every provider is configured with.
const EXTRA: (&str, &str) = ("x-team", "keel");

#[derive(Clone, Copy, Debug)]
enum Kind {
    OpenAi,
    Azure,
    Anthropic,
    /// Anthropic with `drop_unsupported: true`.
    AnthropicDropping,
}

// === impl Kind ===

impl Kind {
    /// The directory of its golden files.
    fn dir(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
            Self::AnthropicDropping => "anthropic_dropping",
        }
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn provider(kind: Kind, base: &str) -> Result<(Arc<dyn Provider>, &'static str), String> {
    let headers = vec![(EXTRA.0.to_owned(), EXTRA.1.to_owned())];
    let connect_timeout = Duration::from_secs(2);
    Ok(match kind {
        Kind::OpenAi => {
            let settings = OpenAiSettings {
                name: "openai".into(),
                base_url: format!("{base}/v1"),
                api_key: Some(keel_types::SecretString::new("sk-openai")),
                headers,
                connect_timeout,
                max_body: 1 << 20,
                pools: 1,
            };
            (Arc::new(OpenAiProvider::new(settings)?), "gpt-4o-mini")
        }
        Kind::Azure => {
            let settings = AzureSettings {
                name: "azure".into(),
                base_url: format!("{base}/"),
                api_version: "2024-10-21".into(),
                api_key: Some(keel_types::SecretString::new("az-key")),
                headers,
                connect_timeout,
                max_body: 1 << 20,
                pools: 1,
            };
            (
                Arc::new(OpenAiProvider::azure(settings)?),
                "gpt-4o-deployment",
            )
        }
        Kind::Anthropic | Kind::AnthropicDropping => {
            let settings = AnthropicSettings {
                name: "anthropic".into(),
                base_url: base.to_owned(),
                api_key: Some(keel_types::SecretString::new("sk-ant")),
                headers,
                default_max_tokens: 4096,
                connect_timeout,
                max_body: 1 << 20,
                pools: 1,
                drop_unsupported: matches!(kind, Kind::AnthropicDropping),
            };
            (
                Arc::new(AnthropicProvider::new(settings)?),
                "claude-sonnet-4-5",
            )
        }
    })
}

/// The upstream request as a small HTTP-like text, or the refusal when the
/// adapter sent nothing; the fields the adapter left out first, when any.
fn render(
    captured: Option<Captured>,
    outcome: Result<(), ProviderError>,
    dropped: &[String],
) -> String {
    let dropped = if dropped.is_empty() {
        String::new()
    } else {
        format!("dropped: {}\n", dropped.join(","))
    };
    dropped
        + &match (captured, outcome) {
            (Some(captured), _) => {
                let mut text = format!("{}\n", captured.request_line.trim_end_matches(" HTTP/1.1"));
                for (name, value) in captured.headers {
                    text.push_str(&format!("{name}: {value}\n"));
                }
                text.push('\n');
                text.push_str(&String::from_utf8_lossy(&captured.body));
                text.push('\n');
                text
            }
            (None, Err(error)) => format!("not sent: {error}\n"),
            (None, Ok(())) => String::from("not sent, yet no error\n"),
        }
}

#[tokio::test]
async fn every_request_feature_reaches_every_provider_kind_as_the_golden_request() -> TestResult {
    let mut features: Vec<PathBuf> = std::fs::read_dir(fixtures().join("requests"))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    features.sort();
    assert!(features.len() >= 30, "{features:?}");
    let mut capture = capture::start(400, REFUSAL).await?;
    let base = format!("http://{}", capture.addr);
    for kind in [
        Kind::OpenAi,
        Kind::Azure,
        Kind::Anthropic,
        Kind::AnthropicDropping,
    ] {
        let (provider, model) = provider(kind, &base)?;
        for feature in &features {
            let request = Arc::new(
                ChatRequest::parse(&std::fs::read(feature)?)
                    .map_err(|error| format!("{}: {error}", feature.display()))?,
            );
            let dropped = provider.dropped_fields(&request);
            let outcome = provider
                .chat(request, keel_providers::UpstreamModel::from(model))
                .await
                .map(|_| ());
            assert!(
                outcome
                    .as_ref()
                    .err()
                    .is_some_and(|error| !error.is_retryable()),
                "{kind:?} {}",
                feature.display()
            );
            let captured = capture.requests.try_recv().ok();
            let name = feature
                .file_stem()
                .and_then(|stem| stem.to_str())
                .ok_or("bad fixture name")?;
            assert_golden(
                fixtures().join(format!("golden/{}/{name}.http", kind.dir())),
                &render(captured, outcome, &dropped),
            )?;
        }
    }
    Ok(())
}

/// The health check of each kind: one GET of its models list with its
/// own auth headers and no body, nothing that costs tokens.
#[tokio::test]
async fn the_health_check_of_every_kind_gets_its_models_list() -> TestResult {
    let mut capture = capture::start(200, r#"{"object":"list","data":[]}"#).await?;
    let base = format!("http://{}", capture.addr);
    let expected = [
        (
            Kind::OpenAi,
            "GET /v1/models",
            ("authorization", "Bearer sk-openai"),
        ),
        (
            Kind::Azure,
            "GET /openai/models?api-version=2024-10-21",
            ("api-key", "az-key"),
        ),
        (Kind::Anthropic, "GET /v1/models", ("x-api-key", "sk-ant")),
    ];
    for (kind, request_line, auth) in expected {
        let (provider, _) = provider(kind, &base)?;
        let probe = provider.health_check().ok_or("no health check")?;
        probe.await?;
        let captured = capture.requests.try_recv()?;
        assert_eq!(
            captured.request_line.trim_end_matches(" HTTP/1.1"),
            request_line,
            "{kind:?}"
        );
        let header = |name: &str| {
            captured
                .headers
                .iter()
                .find(|(header, _)| header == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(header(auth.0), Some(auth.1), "{kind:?}");
        assert_eq!(header(EXTRA.0), Some(EXTRA.1), "{kind:?}");
        assert_eq!(header("content-type"), None, "{kind:?}");
        assert!(captured.body.is_empty(), "{kind:?}");
        if matches!(kind, Kind::Anthropic) {
            assert_eq!(
                header("anthropic-version"),
                Some(keel_providers::ANTHROPIC_VERSION)
            );
        }
    }
    Ok(())
}

/// A failed models list is the provider's failure, classified like a call's.
#[tokio::test]
async fn a_failing_health_check_is_a_classified_error() -> TestResult {
    let capture =
        capture::start(503, r#"{"error":{"message":"down","type":"server_error"}}"#).await?;
    let (provider, _) = provider(Kind::OpenAi, &format!("http://{}", capture.addr))?;
    let outcome = provider.health_check().ok_or("no health check")?.await;
    let error = outcome.err().ok_or("a 503 probe succeeded")?;
    assert_eq!(error.kind(), keel_providers::ErrorKind::Server, "{error}");
    Ok(())
}
