//! Dispatch against scripted in-process providers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{stream, FutureExt, StreamExt};
use keel_providers::{Completion, Provider, ProviderError, Reply, StreamEvent};
use keel_types::{ChatRequest, ErrorBody};

use crate::{Answer, ModelRoute, RouteError, RouteTable, Router, Target};

/// What a scripted provider does on every call.
#[derive(Clone, Copy)]
enum Script {
    Answer,
    Status(u16),
    Refused,
    StreamThenCut,
    StreamOk,
}

struct Scripted {
    name: &'static str,
    script: Script,
    calls: AtomicU32,
}

impl Provider for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    fn chat(&self, _request: Arc<ChatRequest>, _model: Arc<str>) -> BoxFuture<'static, Result<Reply, ProviderError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let provider = self.name.to_owned();
        let chunk = |token| Ok(StreamEvent::Chunk { data: Bytes::from_static(b"{}"), token, usage: None });
        let outcome = match self.script {
            Script::Answer => Ok(Reply::Complete(Completion { body: Bytes::from(self.name), usage: None })),
            Script::Status(status) => {
                Err(ProviderError::Status { provider, status, body: ErrorBody::new("no", "t", None, None), retry_after: None })
            }
            Script::Refused => Err(ProviderError::Connect { provider, detail: String::from("refused") }),
            Script::StreamThenCut => {
                let events = vec![chunk(false), Err(ProviderError::Truncated { provider })];
                Ok(Reply::Stream(stream::iter(events).boxed()))
            }
            Script::StreamOk => Ok(Reply::Stream(stream::iter(vec![chunk(false), chunk(true), Ok(StreamEvent::Done)]).boxed())),
        };
        async move { outcome }.boxed()
    }
}

fn provider(name: &'static str, script: Script) -> Arc<Scripted> {
    Arc::new(Scripted { name, script, calls: AtomicU32::new(0) })
}

fn target(provider: &Arc<Scripted>) -> Target {
    Target { provider_name: Arc::from(provider.name), model: Arc::from("up"), provider: provider.clone() }
}

fn router(models: Vec<(&str, Vec<&Arc<Scripted>>, Vec<&str>)>) -> Router {
    let routes = models
        .into_iter()
        .map(|(name, targets, fallback)| ModelRoute {
            name: name.to_owned(),
            targets: targets.into_iter().map(target).collect(),
            fallback: fallback.into_iter().map(str::to_owned).collect(),
        })
        .collect();
    Router::new(RouteTable::new(routes))
}

fn request(stream: bool) -> Arc<ChatRequest> {
    let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#);
    match ChatRequest::parse(body.as_bytes()) {
        Ok(request) => Arc::new(request),
        Err(error) => panic!("test request is invalid: {error}"),
    }
}

#[tokio::test]
async fn a_5xx_or_refused_connection_moves_on_to_the_next_target() -> Result<(), RouteError> {
    for first in [Script::Status(503), Script::Refused, Script::Status(429)] {
        let (bad, good) = (provider("bad", first), provider("good", Script::Answer));
        let routed = router(vec![("m", vec![&bad, &good], vec![])]).dispatch(request(false)).await?;
        assert_eq!(&*routed.provider, "good");
        assert_eq!(routed.attempts, 2);
        assert_eq!(bad.calls.load(Ordering::SeqCst), 1);
    }
    Ok(())
}

#[tokio::test]
async fn a_client_error_is_returned_at_once() {
    let (bad, good) = (provider("bad", Script::Status(400)), provider("good", Script::Answer));
    let result = router(vec![("m", vec![&bad, &good], vec![])]).dispatch(request(false)).await;
    assert!(matches!(result, Err(RouteError::Rejected { attempts: 1, .. })));
    assert_eq!(good.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_stream_failing_before_its_first_token_fails_over_and_the_winner_keeps_its_head() -> Result<(), RouteError> {
    let (cut, good) = (provider("cut", Script::StreamThenCut), provider("good", Script::StreamOk));
    let routed = router(vec![("m", vec![&cut, &good], vec![])]).dispatch(request(true)).await?;
    assert_eq!(&*routed.provider, "good");
    let Answer::Stream { head, rest } = routed.answer else { panic!("expected a stream") };
    assert_eq!(head.len(), 2, "role chunk and first token");
    assert_eq!(rest.collect::<Vec<_>>().await.len(), 1, "only Done is left");
    Ok(())
}

#[tokio::test]
async fn fallback_models_are_tried_after_every_target_failed() -> Result<(), RouteError> {
    let (bad, small) = (provider("bad", Script::Status(500)), provider("small", Script::Answer));
    let routed = router(vec![("m", vec![&bad], vec!["s"]), ("s", vec![&small], vec!["m"])]).dispatch(request(false)).await?;
    assert_eq!((&*routed.provider, routed.attempts), ("small", 2));
    Ok(())
}

#[tokio::test]
async fn exhaustion_reports_the_last_failure_and_every_attempt() {
    let (a, b) = (provider("a", Script::Status(502)), provider("b", Script::Refused));
    let result = router(vec![("m", vec![&a, &b], vec![])]).dispatch(request(false)).await;
    assert!(matches!(result, Err(RouteError::Exhausted { attempts: 2, last: ProviderError::Connect { .. }, .. })));
}

#[tokio::test]
async fn unknown_models_and_models_without_targets_are_named() {
    let table = router(vec![("m", vec![], vec![])]);
    let Err(error) = table.dispatch(request(false)).await else { panic!("no targets must fail") };
    assert_eq!(error.to_string(), "the model 'm' has no enabled provider (set the provider's api_key)");
    assert!(matches!(router(vec![]).dispatch(request(false)).await, Err(RouteError::UnknownModel { .. })));
}
