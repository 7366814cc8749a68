//! The API as hyper serves it: `POST /v1/chat/completions`, the route
//! nearly every request takes, called straight through its steps, and
//! every other request through axum's router.
//!
//! The direct path runs what the router's route runs, in the same order:
//! `observe` (the request id, the span, the metrics), admission (`shed`,
//! with the idempotency keys), then the handler's extractors and the
//! handler. Through the router, a plain request paid for the route's
//! lookup, and each of its two `from_fn` layers cloned a boxed service
//! and boxed a future of its own: about 4,500 instructions a request,
//! one in fifteen of Keel's own (`bench/README.md`). The route stays in
//! the router too, which answers it when CORS is on (its layer wraps
//! every route) and answers its other methods (405).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};

use crate::extract::ChatBody;
use crate::{AppState, Tenant};

/// What a step of the chain runs inside it: the rest of the chain.
/// axum's [`Next`] on the router's routes, the next step on the chat
/// route's direct path.
pub(crate) trait Inner: Send {
    fn run(self, request: Request) -> impl Future<Output = Response> + Send;
}

impl Inner for Next {
    fn run(self, request: Request) -> impl Future<Output = Response> + Send {
        Next::run(self, request)
    }
}

/// The HTTP API as one hyper service.
#[derive(Clone)]
pub struct Api {
    router: TowerToHyperService<axum::Router>,
    /// Set when `POST /v1/chat/completions` takes the direct path.
    chat: Option<Arc<AppState>>,
}

// === impl Api ===

impl Api {
    /// The whole API for `state`: the chat route direct unless `cors`
    /// (the router wrapped by `crate::with_cors`) must see it.
    pub fn new(state: Arc<AppState>, cors: &keel_config::CorsOrigins) -> Self {
        let direct = *cors == keel_config::CorsOrigins::Off;
        let router = crate::with_cors(crate::app(state.clone()), cors);
        Self {
            router: TowerToHyperService::new(router),
            chat: direct.then_some(state),
        }
    }
}

/// Any router, every request through it (the metrics listener, tests).
impl From<axum::Router> for Api {
    fn from(router: axum::Router) -> Self {
        Self {
            router: TowerToHyperService::new(router),
            chat: None,
        }
    }
}

type Direct = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for Api {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<TowerToHyperServiceFuture<axum::Router, http::Request<Incoming>>, Direct>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        match &self.chat {
            Some(state) if is_chat(&request) => {
                let state = state.clone();
                Either::Right(Box::pin(async move {
                    Ok(chat(state, request.map(Body::new)).await)
                }))
            }
            _ => Either::Left(self.router.call(request)),
        }
    }
}

/// `POST /v1/chat/completions`, as the router matches it (the path exactly).
fn is_chat<B>(request: &http::Request<B>) -> bool {
    request.method() == Method::POST && request.uri().path() == crate::routes::CHAT_PATH
}

/// The chat route's steps, as `crate::routes::app` layers them.
async fn chat(state: Arc<AppState>, request: Request) -> Response {
    let admitted = Admitted {
        state: state.clone(),
    };
    crate::request_id::observe(state, request, admitted).await
}

/// Admission, then the handler.
struct Admitted {
    state: Arc<AppState>,
}

impl Inner for Admitted {
    fn run(self, request: Request) -> impl Future<Output = Response> + Send {
        let handler = Completions {
            state: self.state.clone(),
        };
        crate::shed::admit(self.state, request, handler)
    }
}

/// `crate::chat::completions` with its extractors, as axum's handler runs
/// them: the parts' first, the body's last, a refusal as its response.
struct Completions {
    state: Arc<AppState>,
}

impl Inner for Completions {
    async fn run(self, request: Request) -> Response {
        let (mut parts, body) = request.into_parts();
        let tenant = match Tenant::from_request_parts(&mut parts, &self.state).await {
            Ok(tenant) => tenant,
            Err(refused) => return refused.into_response(),
        };
        let request = Request::from_parts(parts, body);
        let body = match ChatBody::from_request(request, &self.state).await {
            Ok(body) => body,
            Err(refused) => return refused.into_response(),
        };
        crate::chat::completions(tenant, State(self.state), body)
            .await
            .into_response()
    }
}
