//! Tenant authentication by bearer key. Keys are held only as SHA-256
//! digests and compared in constant time.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// The tenants and the digests of their keys.
#[derive(Default)]
pub struct Tenants {
    entries: Vec<(Arc<str>, [u8; 32])>,
}

/// The tenant a request authenticated as.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// The tenant's name.
    pub name: Arc<str>,
}

// === impl Tenants ===

impl Tenants {
    /// Tenants from `(name, key digests)` pairs.
    pub fn new<'a>(tenants: impl IntoIterator<Item = (&'a str, &'a [[u8; 32]])>) -> Self {
        let mut entries = Vec::new();
        for (name, digests) in tenants {
            let name: Arc<str> = Arc::from(name);
            entries.extend(digests.iter().map(|digest| (name.clone(), *digest)));
        }
        Self { entries }
    }

    /// The tenant whose key this is. Every stored digest is compared, so the
    /// time taken does not depend on which key matched.
    pub fn authenticate(&self, key: &str) -> Option<Tenant> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for (name, stored) in &self.entries {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(name.clone());
            }
        }
        found.map(|name| Tenant { name })
    }
}

/// A caller that presented `server.admin_key`. Without an admin key
/// configured the admin routes do not exist (404).
#[derive(Clone, Copy, Debug)]
pub struct Admin;

/// The SHA-256 digest of a key, as keys are held.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if state.admin_key.is_none() {
            return Err(ApiError::NotFound {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
            });
        }
        check_admin(state, &parts.headers).map(|()| Admin)
    }
}

/// Whether the request presents `server.admin_key` (`Ok` when none is set).
pub(crate) fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_key else {
        return Ok(());
    };
    let key = bearer_key(headers).ok_or(ApiError::Unauthorized)?;
    if bool::from(key_digest(key).ct_eq(expected)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Reads the bearer key; `/v1/messages` callers may send `x-api-key` instead.
fn presented_key(parts: &Parts) -> Option<&str> {
    let headers = &parts.headers;
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        return bearer_key(headers);
    }
    headers.get("x-api-key")?.to_str().ok()
}

/// The key of `Authorization: Bearer <key>`.
fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

impl FromRequestParts<Arc<AppState>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // Admission (`shed`) authenticated the request already.
        if let Some(tenant) = parts.extensions.get::<Tenant>() {
            return Ok(tenant.clone());
        }
        let key = presented_key(parts).ok_or(ApiError::Unauthorized)?;
        state
            .tenants
            .authenticate(key)
            .ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_keys_authenticate() {
        let acme: [u8; 32] = Sha256::digest(b"sk-acme").into();
        let globex: [u8; 32] = Sha256::digest(b"sk-globex").into();
        let tenants = Tenants::new([("acme", &[acme][..]), ("globex", &[globex][..])]);
        assert_eq!(
            tenants.authenticate("sk-acme").map(|t| t.name),
            Some(Arc::from("acme"))
        );
        assert_eq!(
            tenants.authenticate("sk-globex").map(|t| t.name),
            Some(Arc::from("globex"))
        );
        assert!(tenants.authenticate("sk-acm").is_none());
        assert!(tenants.authenticate("").is_none());
    }
}
