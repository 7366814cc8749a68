//! Tenant authentication by bearer key. Keys are held only as SHA-256
//! digests and compared in constant time. A key that verified is
//! remembered by a keyed 128-bit fingerprint (never the key itself), so
//! SHA-256 runs once per key, not once per request.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, RwLock};

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
    /// Keys that verified, by fingerprint. Only a key that matched a
    /// digest goes in, so it holds at most one entry per configured key.
    verified: RwLock<HashMap<u128, Arc<str>, BuildHasherDefault<Fingerprinted>>>,
    /// Two independently keyed SipHash instances (random keys per
    /// process): a fingerprint cannot be computed, or a collision with a
    /// verified key searched for, without them.
    fingerprint_keys: (RandomState, RandomState),
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
        Self {
            entries,
            ..Self::default()
        }
    }

    /// The tenant whose key this is: a key seen before by its fingerprint,
    /// any other by [`Tenants::verify`].
    pub fn authenticate(&self, key: &str) -> Option<Tenant> {
        let fingerprint = self.fingerprint(key);
        if let Ok(verified) = self.verified.read() {
            if let Some(name) = verified.get(&fingerprint) {
                return Some(Tenant { name: name.clone() });
            }
        }
        let tenant = self.verify(key)?;
        if let Ok(mut verified) = self.verified.write() {
            verified.insert(fingerprint, tenant.name.clone());
        }
        Some(tenant)
    }

    /// How many keys are remembered as verified.
    #[cfg(test)]
    fn verified_keys(&self) -> usize {
        self.verified.read().map_or(0, |verified| verified.len())
    }

    /// A 128-bit fingerprint of `key` under this process's secret keys.
    fn fingerprint(&self, key: &str) -> u128 {
        let (high, low) = &self.fingerprint_keys;
        (u128::from(high.hash_one(key)) << 64) | u128::from(low.hash_one(key))
    }

    /// The tenant whose key's digest this is. Every stored digest is
    /// compared, so the time taken does not depend on which key matched.
    fn verify(&self, key: &str) -> Option<Tenant> {
        let digest = key_digest(key);
        let mut found = None;
        for (name, stored) in &self.entries {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(name.clone());
            }
        }
        found.map(|name| Tenant { name })
    }
}

/// Hashes a fingerprint for its map as the fingerprint's own low bits: it
/// is a keyed hash already, so hashing it again would only cost time.
#[derive(Default)]
struct Fingerprinted(u64);

impl Hasher for Fingerprinted {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        // Truncation intended: the low half of a uniformly random value.
        self.0 = value as u64;
    }

    fn finish(&self) -> u64 {
        self.0
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
    headers.get(crate::headers::X_API_KEY)?.to_str().ok()
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

    #[test]
    fn only_keys_that_verified_are_remembered_so_the_cache_is_bounded_by_the_keys() {
        let acme = key_digest("sk-acme");
        let second = key_digest("sk-acme-2");
        let tenants = Tenants::new([("acme", &[acme, second][..])]);
        for attempt in 0..2_000 {
            assert!(tenants
                .authenticate(&format!("sk-guess-{attempt}"))
                .is_none());
        }
        assert_eq!(
            tenants.verified_keys(),
            0,
            "a refused key is never remembered"
        );
        for _ in 0..100 {
            for key in ["sk-acme", "sk-acme-2"] {
                let tenant = tenants.authenticate(key).map(|tenant| tenant.name);
                assert_eq!(tenant, Some(Arc::from("acme")));
            }
            assert!(tenants.authenticate("sk-acme ").is_none());
        }
        assert_eq!(tenants.verified_keys(), 2, "one entry per configured key");
    }

    #[test]
    fn fingerprints_differ_between_processes_keys_and_inputs() {
        let (one, other) = (Tenants::default(), Tenants::default());
        assert_ne!(one.fingerprint("sk-acme"), other.fingerprint("sk-acme"));
        assert_ne!(one.fingerprint("sk-acme"), one.fingerprint("sk-acmf"));
        assert_eq!(one.fingerprint("sk-acme"), one.fingerprint("sk-acme"));
    }
}
