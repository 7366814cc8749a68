//! The session a request belongs to, for models with `affinity`: the value
//! of the configured header, or of the body's `user` field, hashed with
//! the tenant's name so sessions never cross tenants.

use axum::http::HeaderMap;
use keel_config::AffinityKey;
use keel_router::Router;
use keel_types::ChatRequest;

/// `request`, tagged with its session when its model has `affinity` and
/// the request carries the key (`headers` are the request's, when it came
/// over HTTP; a job run has only its body).
pub fn tag_session(
    router: &Router,
    tenant: &str,
    headers: Option<&HeaderMap>,
    request: ChatRequest,
) -> ChatRequest {
    let Some(key) = router.affinity_key(request.model()) else {
        return request;
    };
    let session = match key {
        AffinityKey::Header(name) => headers
            .and_then(|headers| headers.get(name.as_str()))
            .map(|value| value.as_bytes())
            .filter(|value| !value.is_empty())
            .map(|value| keel_router::session(tenant, value)),
        AffinityKey::User => {
            body_user(&request).map(|user| keel_router::session(tenant, user.as_bytes()))
        }
    };
    request.with_session(session)
}

/// The body's `user` (an Anthropic body passed through as it came:
/// `metadata.user_id`), when it is a non-empty string.
fn body_user(request: &ChatRequest) -> Option<String> {
    let user = match request.endpoint() {
        keel_types::Endpoint::Messages => {
            let metadata = request.raw().parse::<Metadata>("metadata")?.ok()?;
            metadata.user_id?
        }
        _ => request.raw().parse::<String>("user")?.ok()?,
    };
    (!user.is_empty()).then_some(user)
}

/// Anthropic's `metadata`, for its `user_id`.
#[derive(serde::Deserialize)]
struct Metadata {
    user_id: Option<String>,
}
