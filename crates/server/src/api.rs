//! The API as hyper serves it: the four routes that carry model traffic
//! (`POST` chat completions, messages, responses, embeddings) called
//! straight through their steps, every other request through axum's
//! router.
//!
//! A direct route runs what its route in the router runs, in the same
//! order and with the same code: the outermost step (`routes::outermost`:
//! the request id, the span, the metrics, Anthropic's error shape on
//! `/v1/messages`), admission (`shed::admit`, with the idempotency keys),
//! then the handler, called by axum's own `Handler::call` with its
//! extractors. Through the router, a plain request paid for the route's
//! lookup, and each of its two `from_fn` layers cloned a boxed service and
//! boxed a future of its own: about a tenth of Keel's instructions and a
//! third of its allocations a request (`bench/README.md`). The routes stay
//! in the router too, which serves them when CORS is on (its layer wraps
//! every route) and answers their other methods (405).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};

use crate::routes::{CHAT_PATH, EMBEDDINGS_PATH, MESSAGES_PATH, RESPONSES_PATH};
use crate::AppState;

/// What a step of the chain runs inside it: the rest of the chain.
/// axum's [`Next`] on the router's routes, the next step on a direct route.
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
    /// Set when the model routes are served directly.
    direct: Option<Arc<AppState>>,
}

// === impl Api ===

impl Api {
    /// The whole API for `state`: the model routes direct unless `cors`
    /// (the router wrapped by `crate::with_cors`) must see them.
    pub fn new(state: Arc<AppState>, cors: &keel_config::CorsOrigins) -> Self {
        let direct = *cors == keel_config::CorsOrigins::Off;
        let router = crate::with_cors(crate::app(state.clone()), cors);
        Self {
            router: TowerToHyperService::new(router),
            direct: direct.then_some(state),
        }
    }
}

/// Any router, every request through it (the metrics listener, tests).
impl From<axum::Router> for Api {
    fn from(router: axum::Router) -> Self {
        Self {
            router: TowerToHyperService::new(router),
            direct: None,
        }
    }
}

type DirectFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for Api {
    type Response = Response;
    type Error = Infallible;
    type Future =
        Either<TowerToHyperServiceFuture<axum::Router, http::Request<Incoming>>, DirectFuture>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let route = Route::of(&request);
        match (&self.direct, route) {
            (Some(state), Some(route)) => {
                let state = state.clone();
                let request = request.map(Body::new);
                Either::Right(Box::pin(
                    async move { Ok(route.serve(state, request).await) },
                ))
            }
            _ => Either::Left(self.router.call(request)),
        }
    }
}

/// A route served directly.
#[derive(Clone, Copy)]
enum Route {
    Chat,
    Messages,
    Responses,
    Embeddings,
}

// === impl Route ===

impl Route {
    /// The route `request` is for, as the router matches it (the path
    /// exactly), if it is served directly.
    fn of<B>(request: &http::Request<B>) -> Option<Self> {
        if request.method() != Method::POST {
            return None;
        }
        match request.uri().path() {
            CHAT_PATH => Some(Self::Chat),
            MESSAGES_PATH => Some(Self::Messages),
            RESPONSES_PATH => Some(Self::Responses),
            EMBEDDINGS_PATH => Some(Self::Embeddings),
            _ => None,
        }
    }

    async fn serve(self, state: Arc<AppState>, request: Request) -> Response {
        match self {
            Self::Chat => steps(state, request, crate::chat::completions).await,
            Self::Messages => steps(state, request, crate::messages::create).await,
            Self::Responses => steps(state, request, crate::responses::create).await,
            Self::Embeddings => steps(state, request, crate::embeddings::create).await,
        }
    }
}

/// A route's steps, as `crate::routes::app` layers them.
async fn steps<H, T>(state: Arc<AppState>, request: Request, handler: H) -> Response
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    let admitted = Admitted(Handled {
        state: state.clone(),
        handler,
        extractors: PhantomData,
    });
    crate::routes::outermost(state, request, admitted).await
}

/// The handler with its extractors, run by axum's `Handler::call`.
struct Handled<H, T> {
    state: Arc<AppState>,
    handler: H,
    extractors: PhantomData<fn() -> T>,
}

impl<H, T> Inner for Handled<H, T>
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    fn run(self, request: Request) -> impl Future<Output = Response> + Send {
        self.handler.call(request, self.state)
    }
}

/// Admission, then the handler.
struct Admitted<H, T>(Handled<H, T>);

impl<H, T> Inner for Admitted<H, T>
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    fn run(self, request: Request) -> impl Future<Output = Response> + Send {
        crate::shed::admit(self.0.state.clone(), request, self.0)
    }
}
