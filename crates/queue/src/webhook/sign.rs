//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
//! with the key decoded from a `whsec_<base64>` secret.

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

    #[test]
    fn a_secret_that_is_not_base64_is_refused() {
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_").is_err());
    }
}
