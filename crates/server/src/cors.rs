//! CORS for browser applications (`server.cors.origins`), off unless
//! configured. A preflight from an allowed origin is answered here, before
//! admission and auth (a browser sends no key with it); every other answer
//! to an allowed origin gets the headers that let the page read it. Another
//! origin gets no CORS headers at all, so the browser keeps the answer from
//! the page.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_config::CorsOrigins;

/// The headers Keel and the official SDKs send; a preflight may ask for
/// others (the SDKs' own `x-stainless-*`), which are allowed too: the
/// origin is the check, and keys travel in headers, never in cookies.
const ALLOWED_HEADERS: &str = "authorization, content-type, x-api-key, anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access, idempotency-key, x-request-id, prefer, cache-control, openai-organization, openai-project";

/// Every method of the API.
const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// The response headers a page may read beyond the safelisted ones.
const EXPOSED_HEADERS: &str = "x-request-id, request-id, x-keel-provider, x-keel-model, x-keel-attempts, x-keel-hedged, x-keel-cache, x-keel-dropped, x-keel-degraded, retry-after, x-should-retry, location, x-ratelimit-limit-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens";

/// How long a browser may reuse a preflight answer, in seconds.
const MAX_AGE: &str = "3600";

/// The allowed origins.
#[derive(Debug)]
struct Cors {
    origins: CorsOrigins,
}

/// `app` with CORS for `origins`, or `app` unchanged when they are off.
pub fn layer(app: axum::Router, origins: &CorsOrigins) -> axum::Router {
    if *origins == CorsOrigins::Off {
        return app;
    }
    let cors = Arc::new(Cors {
        origins: origins.clone(),
    });
    app.layer(axum::middleware::from_fn_with_state(cors, cors_middleware))
}

async fn cors_middleware(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let allowed = cors.allowed_origin(request.headers());
    let Some(origin) = allowed else {
        let mut response = next.run(request).await;
        cors.vary(response.headers_mut());
        return response;
    };
    if is_preflight(&request) {
        return cors.preflight(origin, request.headers());
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    cors.vary(headers);
    response
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

// === impl Cors ===

impl Cors {
    /// The `Access-Control-Allow-Origin` value for this request's `Origin`,
    /// or `None` when it has none or it is not allowed.
    fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        match &self.origins {
            CorsOrigins::Off => None,
            CorsOrigins::Any => Some(HeaderValue::from_static("*")),
            CorsOrigins::Only(origins) => {
                let text = origin.to_str().ok()?;
                origins
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(text))
                    .then(|| origin.clone())
            }
        }
    }

    /// The answer depends on `Origin` unless every origin gets `*`, so
    /// caches must key on it.
    fn vary(&self, headers: &mut HeaderMap) {
        if matches!(self.origins, CorsOrigins::Only(_)) {
            headers.append(header::VARY, HeaderValue::from_static("origin"));
        }
    }

    fn preflight(&self, origin: HeaderValue, request: &HeaderMap) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            allowed_headers(request.get(header::ACCESS_CONTROL_REQUEST_HEADERS)),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        );
        self.vary(headers);
        headers.append(
            header::VARY,
            HeaderValue::from_static("access-control-request-headers"),
        );
        response
    }
}

/// [`ALLOWED_HEADERS`] and any other header names the preflight asks for.
fn allowed_headers(requested: Option<&HeaderValue>) -> HeaderValue {
    let known: Vec<&str> = ALLOWED_HEADERS.split(", ").collect();
    let extra: Vec<String> = requested
        .and_then(|value| value.to_str().ok())
        .into_iter()
        .flat_map(|list| list.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty() && !known.contains(&name.as_str()))
        .collect();
    if extra.is_empty() {
        return HeaderValue::from_static(ALLOWED_HEADERS);
    }
    let list = format!("{ALLOWED_HEADERS}, {}", extra.join(", "));
    HeaderValue::from_str(&list).unwrap_or(HeaderValue::from_static(ALLOWED_HEADERS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preflight_allows_the_known_headers_and_the_ones_asked_for() {
        assert_eq!(allowed_headers(None), ALLOWED_HEADERS);
        let asked = HeaderValue::from_static("Content-Type, X-Stainless-OS,x-stainless-lang");
        assert_eq!(
            allowed_headers(Some(&asked)),
            format!("{ALLOWED_HEADERS}, x-stainless-os, x-stainless-lang").as_str()
        );
    }

    #[test]
    fn only_listed_origins_are_allowed_and_any_gets_a_star() {
        let only = Cors {
            origins: CorsOrigins::Only(vec![String::from("https://app.example")]),
        };
        let mut headers = HeaderMap::new();
        assert_eq!(only.allowed_origin(&headers), None);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(only.allowed_origin(&headers), None);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        assert_eq!(
            only.allowed_origin(&headers),
            Some(HeaderValue::from_static("https://app.example"))
        );
        let any = Cors {
            origins: CorsOrigins::Any,
        };
        assert_eq!(
            any.allowed_origin(&headers),
            Some(HeaderValue::from_static("*"))
        );
    }
}
