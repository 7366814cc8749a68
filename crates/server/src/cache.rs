//! The front ends' side of the prompt cache: the request's `Cache-Control`,
//! its cache plan, the `x-keel-cache` header, and `DELETE /admin/cache`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Json;
use keel_router::{CacheControl, CachePlan, CacheStatus};
use keel_types::{ChatRequest, RawObject};
use serde::Deserialize;

use crate::headers::X_KEEL_CACHE;
use crate::{Admin, AppState};

/// The longest `max-age` honoured; larger values are read as this (a day
/// more than any sensible TTL, and far from any overflow).
const MAX_AGE_CAP: Duration = Duration::from_secs(366 * 24 * 3600);

/// The client's body as the cache keys it: the chat request's own fields,
/// or another front end's original body.
pub(crate) enum KeyedBody<'a> {
    /// `/v1/chat/completions`: the parsed request's fields.
    Chat,
    /// Another format (`/v1/messages`): the body's fields as the client sent them.
    Original(&'a RawObject),
}

/// The request's cache plan, when its model is cached.
pub(crate) fn plan(
    state: &AppState,
    tenant: &str,
    endpoint: &str,
    request: &ChatRequest,
    body: KeyedBody<'_>,
    headers: &HeaderMap,
) -> Option<CachePlan> {
    if !state.router.caches(request.model()) {
        return None;
    }
    let control = cache_control(headers);
    match body {
        KeyedBody::Chat => {
            state
                .router
                .cache_plan(endpoint, tenant, request, request.raw().fields(), control)
        }
        KeyedBody::Original(raw) => {
            state
                .router
                .cache_plan(endpoint, tenant, request, raw.fields(), control)
        }
    }
}

/// Reads `Cache-Control: no-cache, no-store, max-age=N` (case-insensitive,
/// in any order; unknown directives ignored; N in seconds, as HTTP says).
pub(crate) fn cache_control(headers: &HeaderMap) -> CacheControl {
    let mut control = CacheControl::default();
    for value in headers.get_all(axum::http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-cache") {
                control.no_cache = true;
            } else if name.eq_ignore_ascii_case("no-store") {
                control.no_store = true;
            } else if name.eq_ignore_ascii_case("max-age") {
                // An unreadable max-age asks for nothing (RFC 9111 §1.2.2:
                // a recipient treats a malformed delta as invalid).
                if let Some(seconds) = argument.and_then(|text| text.parse::<u64>().ok()) {
                    control.max_age = Some(Duration::from_secs(seconds).min(MAX_AGE_CAP));
                }
            }
        }
    }
    control
}

/// Adds `x-keel-cache` to an answer.
pub(crate) fn mark(response: &mut Response, status: CacheStatus) {
    response
        .headers_mut()
        .insert(X_KEEL_CACHE, HeaderValue::from_static(status.as_str()));
}

/// `DELETE /admin/cache[?model=NAME]`'s query.
#[derive(Deserialize)]
pub(crate) struct PurgeQuery {
    model: Option<String>,
}

/// `DELETE /admin/cache`: empties the prompt cache, or one model's entries.
pub(crate) async fn purge(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
    Query(query): Query<PurgeQuery>,
) -> Json<serde_json::Value> {
    let removed = state.router.purge_cache(query.model.as_deref()).await;
    tracing::info!(
        model = query.model.as_deref().unwrap_or("*"),
        removed,
        "prompt cache purged"
    );
    Json(serde_json::json!({"object": "cache.purge", "model": query.model, "removed": removed}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(values: &[&str]) -> CacheControl {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
            );
        }
        cache_control(&headers)
    }

    #[test]
    fn cache_control_directives_are_read_as_http_says() {
        assert_eq!(control(&[]), CacheControl::default());
        assert_eq!(
            control(&["No-Cache, max-age=30", "no-store"]),
            CacheControl {
                no_cache: true,
                no_store: true,
                max_age: Some(Duration::from_secs(30)),
            }
        );
        assert_eq!(
            control(&["max-age=\"5\""]).max_age,
            Some(Duration::from_secs(5)),
            "seconds, not milliseconds"
        );
        assert_eq!(control(&["max-age=-1, private"]).max_age, None);
        assert_eq!(
            control(&["max-age=999999999999999999999"]).max_age,
            None,
            "beyond u64: invalid, ignored"
        );
        assert_eq!(
            control(&["max-age=18446744073709551615"]).max_age,
            Some(MAX_AGE_CAP)
        );
    }
}
