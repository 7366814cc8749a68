//! `tenants:`: names, API keys (hashed at load) and limits.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::Checker;
use crate::error::KeyPath;
use crate::raw::{RawTenant, ScalarList};
use crate::schema::{Tenant, TenantLimits};

const KEY_HASH_PREFIX: &str = "sha256:";

/// Which tenant first used each key hash, and at which path; keys must
/// identify one tenant.
type KeyOwners = HashMap<[u8; 32], String>;

// === impl Checker ===

impl Checker {
    pub(super) fn tenants(&mut self, raw: Vec<Option<RawTenant>>) -> Vec<Tenant> {
        if raw.is_empty() {
            self.warn(
                "tenants: none configured; every request will be rejected with 401".to_owned(),
            );
        }
        let section = KeyPath::root().key("tenants");
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut key_owners = KeyOwners::new();
        let mut tenants = Vec::with_capacity(raw.len());
        for (index, tenant) in raw.into_iter().enumerate() {
            let Some(tenant) = tenant else {
                continue;
            };
            let path = section.index(index);
            let name = self.text(tenant.name.as_ref(), &path.key("name"), "the tenant's name");
            if let Some(name) = &name {
                if let Some(first) = names.insert(name.clone(), index) {
                    let message = format!("duplicate tenant \"{name}\" (also tenants[{first}])");
                    self.problems.push(&path.key("name"), message);
                }
            }
            let owner = name.clone().unwrap_or_else(|| format!("tenants[{index}]"));
            let key_hashes = self.tenant_keys(&tenant, &path, &owner, &mut key_owners);
            let limits = self.tenant_limits(&tenant, &path);
            if let Some(name) = name {
                tenants.push(Tenant {
                    name,
                    key_hashes,
                    limits,
                });
            }
        }
        tenants
    }

    fn tenant_keys(
        &mut self,
        tenant: &RawTenant,
        path: &KeyPath,
        owner: &str,
        key_owners: &mut KeyOwners,
    ) -> Vec<[u8; 32]> {
        let found = self.hash_tenant_keys(tenant, path);
        let mut unique = Vec::with_capacity(found.len());
        for (key_path, digest) in found {
            match key_owners.get(&digest) {
                Some(first) if first != owner => {
                    let message = format!("key is already used by tenant \"{first}\"");
                    self.problems.push(&key_path, message);
                }
                Some(_) => {}
                None => {
                    key_owners.insert(digest, owner.to_owned());
                    unique.push(digest);
                }
            }
        }
        unique
    }

    /// Every valid key of a tenant as a SHA-256 digest, with its path.
    fn hash_tenant_keys(&mut self, tenant: &RawTenant, path: &KeyPath) -> Vec<(KeyPath, [u8; 32])> {
        let empty = ScalarList::default();
        let keys = tenant.keys.as_ref().unwrap_or(&empty);
        let hashes = tenant.key_hashes.as_ref().unwrap_or(&empty);
        if keys.0.is_empty() && hashes.0.is_empty() {
            self.problems.push(
                path,
                "at least one key is required: add keys: [...] or key_hashes: [\"sha256:<hex>\"]",
            );
        }
        let mut found = Vec::new();
        for (index, key) in keys.0.iter().enumerate() {
            let key_path = path.key("keys").index(index);
            if key.text().is_empty() {
                self.problems.push(
                    &key_path,
                    "key is empty: set the variable or remove the entry",
                );
                continue;
            }
            found.push((key_path, Sha256::digest(key.text().as_bytes()).into()));
        }
        for (index, hash) in hashes.0.iter().enumerate() {
            let hash_path = path.key("key_hashes").index(index);
            match parse_key_hash(hash.text()) {
                Some(digest) => found.push((hash_path, digest)),
                None => self.problems.push(
                    &hash_path,
                    "invalid key hash: expected \"sha256:\" followed by 64 hex digits \
                     (e.g. the output of `printf %s \"$KEY\" | sha256sum`)",
                ),
            }
        }
        found
    }

    fn tenant_limits(&mut self, tenant: &RawTenant, path: &KeyPath) -> TenantLimits {
        let Some(limits) = &tenant.limits else {
            return TenantLimits::default();
        };
        let path = path.key("limits");
        TenantLimits {
            rpm: self.whole(
                limits.rpm.as_ref(),
                &path.key("rpm"),
                1,
                u64::from(u32::MAX),
            ),
            tpm: self.whole(limits.tpm.as_ref(), &path.key("tpm"), 1, u64::MAX),
            max_in_flight: self.whole(
                limits.max_in_flight.as_ref(),
                &path.key("max_in_flight"),
                1,
                u64::from(u32::MAX),
            ),
            max_queued_jobs: self.whole(
                limits.max_queued_jobs.as_ref(),
                &path.key("max_queued_jobs"),
                1,
                u64::MAX,
            ),
        }
    }
}

/// `sha256:<64 hex digits>` (hex in either case) to the digest.
fn parse_key_hash(text: &str) -> Option<[u8; 32]> {
    let prefix = text.get(..KEY_HASH_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(KEY_HASH_PREFIX) {
        return None;
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&text[KEY_HASH_PREFIX.len()..], &mut digest).ok()?;
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::parse_key_hash;

    #[test]
    fn key_hashes_accept_either_hex_case_and_reject_wrong_lengths() {
        let lower = format!("sha256:{}", "ab".repeat(32));
        let upper = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(parse_key_hash(&lower), Some([0xab; 32]));
        assert_eq!(parse_key_hash(&upper), Some([0xab; 32]));
        assert_eq!(parse_key_hash(&format!("sha256:{}", "ab".repeat(31))), None);
        assert_eq!(parse_key_hash(&"ab".repeat(32)), None);
        assert_eq!(parse_key_hash("sha256:zz"), None);
    }
}
