//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
//! with the key decoded from a `whsec_<base64>` secret; several keys (a
//! rotation) give several space-separated signatures. [`verify`] is the
//! receiver's side, for Rust receivers and for Keel's own tests.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing secret that is not `whsec_<base64>`.
#[derive(Debug, thiserror::Error)]
#[error("webhooks.secret: expected whsec_ followed by base64 (e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw)")]
pub struct InvalidSecret;

/// The HMAC key of a `whsec_…` secret (the prefix is optional).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
    if key.is_empty() {
        return Err(InvalidSecret);
    }
    Ok(key)
}

/// The `webhook-signature` value for one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one `v1,…` signature per key, space
/// separated, so receivers holding either the old or the new secret of a
/// rotation accept the message.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    keys.iter()
        .map(|key| sign(key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How far a message's timestamp may be from the receiver's clock
/// (Standard Webhooks' replay window).
pub const TIMESTAMP_TOLERANCE: i64 = 300;

/// Why [`verify`] refused a message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    /// The timestamp is outside ±[`TIMESTAMP_TOLERANCE`] seconds of now.
    #[error("webhook-timestamp is more than 300 s from now")]
    Stale,
    /// No `v1` signature matches.
    #[error("no webhook-signature matches")]
    NoMatch,
}

/// Verifies a received message the way a Standard Webhooks receiver does:
/// the timestamp within ±300 s of `now` (Unix seconds), and any one `v1`
/// signature of the space-separated header made with `key`, compared in
/// constant time.
pub fn verify(
    key: &[u8],
    id: &str,
    timestamp: i64,
    body: &str,
    header: &str,
    now: i64,
) -> Result<(), Unverified> {
    if (now - timestamp).abs() > TIMESTAMP_TOLERANCE {
        return Err(Unverified::Stale);
    }
    let Ok(mut signed) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    signed.update(format!("{id}.{timestamp}.").as_bytes());
    signed.update(body.as_bytes());
    let matches = header
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|candidate| signed.clone().verify_slice(&candidate).is_ok());
    if matches {
        Ok(())
    } else {
        Err(Unverified::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WH-1: the Standard Webhooks known-answer vector.
    #[test]
    fn wh1_signing_the_reference_vector_gives_the_reference_signature() -> Result<(), InvalidSecret>
    {
        let key = decode_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
        let signature = sign(
            &key,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        Ok(())
    }

    /// WH-1: during a rotation both keys sign; a receiver with either key
    /// accepts the message, one with neither does not; timestamps outside
    /// ±300 s are refused even with a valid signature.
    #[test]
    fn wh1_two_secrets_give_two_signatures_and_the_verifier_keeps_the_window(
    ) -> Result<(), InvalidSecret> {
        let old = decode_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
        let new = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
        let other = decode_secret("whsec_dGhpcyBpcyBub3QgdGhlIGtleQ==")?;
        let (id, at, body) = ("job_1", 1_649_367_553, r#"{"id":"job_1"}"#);
        let header = signature_header(&[new.clone(), old.clone()], id, at, body);
        let signatures: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            signatures,
            vec![
                sign(&new, id, at, body).as_str(),
                sign(&old, id, at, body).as_str()
            ]
        );
        assert_eq!(verify(&old, id, at, body, &header, at), Ok(()));
        assert_eq!(verify(&new, id, at, body, &header, at + 300), Ok(()));
        assert_eq!(
            verify(&other, id, at, body, &header, at),
            Err(Unverified::NoMatch)
        );
        assert_eq!(
            verify(&old, id, at, "{}", &header, at),
            Err(Unverified::NoMatch),
            "the bytes signed are the bytes sent"
        );
        assert_eq!(
            verify(&old, id, at, body, &header, at + 301),
            Err(Unverified::Stale)
        );
        assert_eq!(
            verify(&old, id, at, body, &header, at - 301),
            Err(Unverified::Stale)
        );
        Ok(())
    }

    #[test]
    fn a_secret_that_is_not_base64_is_refused() {
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_").is_err());
    }
}
