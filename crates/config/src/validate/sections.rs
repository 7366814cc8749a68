//! The simple sections: `server`, `database`, `cache`, `jobs`, `webhooks`,
//! `idempotency`, `telemetry`, `redis`.

use std::net::SocketAddr;

use super::Checker;
use crate::error::KeyPath;
use crate::raw::{
    RawCache, RawCors, RawDatabase, RawIdempotency, RawJobs, RawRedis, RawServer, RawTelemetry,
    RawWebhooks,
};
use crate::schema::{
    CacheConfig, CorsOrigins, DatabaseConfig, IdempotencyConfig, JobRetry, JobsConfig, RedisConfig,
    ServerConfig, TelemetryConfig, WebhooksConfig,
};
use crate::SecretString;

/// `redis.timeout` when absent: loopback or same-zone Redis answers in well
/// under a millisecond; ten leave room for a busy instance.
const DEFAULT_REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(10);

/// The longest `redis.timeout`: every admission may wait this long.
const MAX_REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// An origin as browsers send it in `Origin`: `http` or `https`, a host and
/// an optional port, nothing else; lower-cased, as browsers write it.
fn cors_origin(text: &str) -> Option<String> {
    let origin = text.to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal holds colons; its port comes after the `]`.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-.[]:".contains(&byte));
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port > 0));
    (host_ok && port_ok).then_some(origin)
}

/// The most `server.workers`: far more threads than any machine has cores.
const MAX_WORKERS: u64 = 256;

/// Standard Webhooks secrets are `whsec_` followed by base64.
const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

// === impl Checker ===

impl Checker {
    pub(super) fn server(&mut self, raw: Option<RawServer>) -> ServerConfig {
        let defaults = ServerConfig::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let path = KeyPath::root().key("server");
        let admin_key = raw
            .admin_key
            .filter(|key| !key.text().is_empty())
            .map(|key| SecretString::new(key.text()));
        ServerConfig {
            listen: self.listen(raw.listen.as_ref(), &path.key("listen"), defaults.listen),
            max_in_flight: self
                .whole(
                    raw.max_in_flight.as_ref(),
                    &path.key("max_in_flight"),
                    1,
                    u64::from(u32::MAX),
                )
                .unwrap_or(defaults.max_in_flight),
            request_timeout: self.duration(
                raw.request_timeout.as_ref(),
                &path.key("request_timeout"),
                defaults.request_timeout,
            ),
            admin_key,
            shutdown_grace: self
                .any_duration(raw.shutdown_grace.as_ref(), &path.key("shutdown_grace"))
                .unwrap_or(defaults.shutdown_grace),
            max_body: self.size(
                raw.max_body.as_ref(),
                &path.key("max_body"),
                defaults.max_body,
            ),
            metrics_listen: raw.metrics_listen.as_ref().map(|value| {
                self.listen(Some(value), &path.key("metrics_listen"), defaults.listen)
            }),
            body_timeout: self.duration(
                raw.body_timeout.as_ref(),
                &path.key("body_timeout"),
                defaults.body_timeout,
            ),
            max_upstream_body: self.size(
                raw.max_upstream_body.as_ref(),
                &path.key("max_upstream_body"),
                defaults.max_upstream_body,
            ),
            cors: self.cors(raw.cors.as_ref(), &path.key("cors")),
            sse_keepalive: self
                .any_duration(raw.sse_keepalive.as_ref(), &path.key("sse_keepalive"))
                .unwrap_or(defaults.sse_keepalive),
            workers: self.whole(raw.workers.as_ref(), &path.key("workers"), 1, MAX_WORKERS),
        }
    }

    fn cors(&mut self, raw: Option<&RawCors>, path: &KeyPath) -> CorsOrigins {
        let Some(raw) = raw else {
            return CorsOrigins::Off;
        };
        let path = path.key("origins");
        let hint =
            "the origins browsers may call from, such as [\"https://app.example\"], or [\"*\"]";
        let Some(origins) = raw.origins.as_ref() else {
            self.problems.push(&path, format!("required: {hint}"));
            return CorsOrigins::Off;
        };
        let texts: Vec<&str> = origins.0.iter().map(crate::raw::Scalar::text).collect();
        if texts.contains(&"*") {
            if texts.len() > 1 {
                self.problems
                    .push(&path, "\"*\" allows every origin: list nothing beside it");
            }
            return CorsOrigins::Any;
        }
        let mut allowed = Vec::new();
        for (index, text) in texts.into_iter().enumerate() {
            match cors_origin(text) {
                Some(origin) => allowed.push(origin),
                None => self.problems.push(
                    &path.index(index),
                    format!("invalid origin \"{text}\": use scheme://host[:port] with http or https and no path, such as https://app.example, or \"*\""),
                ),
            }
        }
        if allowed.is_empty() {
            CorsOrigins::Off
        } else {
            CorsOrigins::Only(allowed)
        }
    }

    fn listen(
        &mut self,
        value: Option<&crate::raw::Scalar>,
        path: &KeyPath,
        default: SocketAddr,
    ) -> SocketAddr {
        let Some(value) = value else {
            return default;
        };
        match value.text().parse::<SocketAddr>() {
            Ok(address) => address,
            Err(_) => {
                let message = format!(
                    "invalid address \"{}\": use an IP address and a port such as 127.0.0.1:8080 or 0.0.0.0:8080",
                    value.text()
                );
                self.problems.push(path, message);
                default
            }
        }
    }

    pub(super) fn database(&mut self, raw: Option<RawDatabase>) -> DatabaseConfig {
        let Some(url) = raw.and_then(|raw| raw.url) else {
            return DatabaseConfig::default();
        };
        let path = KeyPath::root().key("database").key("url");
        let url = url.text().to_owned();
        let fix = "use sqlite://keel.db or postgres://user:password@host/database";
        // Only the scheme is echoed: the rest of the URL may hold a password.
        let message = match url.split_once(':') {
            Some(("sqlite" | "postgres" | "postgresql", _)) => return DatabaseConfig { url },
            _ if url.is_empty() => format!("must not be empty: {fix}"),
            Some((scheme, _)) if is_scheme(scheme) => {
                format!("unsupported scheme \"{scheme}\": {fix}")
            }
            _ => format!("missing scheme: {fix}"),
        };
        self.problems.push(&path, message);
        DatabaseConfig::default()
    }

    pub(super) fn cache(&mut self, raw: Option<RawCache>) -> CacheConfig {
        let defaults = CacheConfig::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let path = KeyPath::root().key("cache");
        let max_bytes = self.size(
            raw.max_bytes.as_ref(),
            &path.key("max_bytes"),
            defaults.max_bytes,
        );
        let max_entry_bytes = self.size(
            raw.max_entry_bytes.as_ref(),
            &path.key("max_entry_bytes"),
            defaults.max_entry_bytes,
        );
        if max_entry_bytes > max_bytes {
            self.problems.push(
                &path.key("max_entry_bytes"),
                format!("must not exceed cache.max_bytes ({max_bytes} bytes)"),
            );
        }
        CacheConfig {
            max_bytes,
            max_entry_bytes,
            shared: self.boolean(raw.shared.as_ref(), &path.key("shared"), defaults.shared),
        }
    }

    pub(super) fn jobs(&mut self, raw: Option<RawJobs>) -> JobsConfig {
        let defaults = JobsConfig::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let path = KeyPath::root().key("jobs");
        let retry_path = path.key("retry");
        let (base_delay, max_delay) = match raw.retry {
            Some(retry) => (retry.base_delay, retry.max_delay),
            None => (None, None),
        };
        let base_delay = self.duration(
            base_delay.as_ref(),
            &retry_path.key("base_delay"),
            defaults.retry.base_delay,
        );
        let max_delay = self.duration(
            max_delay.as_ref(),
            &retry_path.key("max_delay"),
            defaults.retry.max_delay,
        );
        self.check_delay_order(base_delay, max_delay, &retry_path);
        JobsConfig {
            workers: self
                .whole(raw.workers.as_ref(), &path.key("workers"), 0, 1024)
                .unwrap_or(defaults.workers),
            lease: self.duration(raw.lease.as_ref(), &path.key("lease"), defaults.lease),
            max_attempts: self
                .whole(raw.max_attempts.as_ref(), &path.key("max_attempts"), 1, 100)
                .unwrap_or(defaults.max_attempts),
            retry: JobRetry {
                base_delay,
                max_delay,
            },
            retention: self.duration(
                raw.retention.as_ref(),
                &path.key("retention"),
                defaults.retention,
            ),
        }
    }

    pub(super) fn webhooks(&mut self, raw: Option<RawWebhooks>) -> WebhooksConfig {
        let defaults = WebhooksConfig::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let path = KeyPath::root().key("webhooks");
        let retry_schedule = match raw.retry_schedule {
            None => defaults.retry_schedule,
            Some(list) => {
                let schedule_path = path.key("retry_schedule");
                list.0
                    .iter()
                    .enumerate()
                    .filter_map(|(index, delay)| {
                        self.optional_duration(Some(delay), &schedule_path.index(index))
                    })
                    .collect()
            }
        };
        let allow_private = self.boolean(
            raw.allow_private.as_ref(),
            &path.key("allow_private"),
            defaults.allow_private,
        );
        if allow_private {
            self.warn(String::from(
                "webhooks.allow_private: on: webhooks may reach loopback, private and \
                 cloud metadata addresses (an SSRF risk); keep it off in production",
            ));
        }
        WebhooksConfig {
            secret: self.webhook_secret(raw.secret.as_ref(), &path.key("secret")),
            timeout: self.duration(raw.timeout.as_ref(), &path.key("timeout"), defaults.timeout),
            allow_private,
            retry_schedule,
            disable_after: self.duration(
                raw.disable_after.as_ref(),
                &path.key("disable_after"),
                defaults.disable_after,
            ),
        }
    }

    fn webhook_secret(
        &mut self,
        value: Option<&crate::raw::Scalar>,
        path: &KeyPath,
    ) -> Option<SecretString> {
        let secret = value?.text();
        if secret.trim().is_empty() {
            return None;
        }
        // Several secrets, separated by spaces, sign every message during
        // a rotation (one signature each).
        let valid = secret.split_whitespace().all(|part| {
            part.strip_prefix(WEBHOOK_SECRET_PREFIX)
                .is_some_and(is_base64)
        });
        if valid {
            return Some(SecretString::new(secret));
        }
        self.problems.push(
            path,
            "must be \"whsec_\" followed by base64 (the Standard Webhooks format), \
             e.g. whsec_ plus the output of `openssl rand -base64 32`; several \
             secrets separated by spaces during a rotation",
        );
        None
    }

    pub(super) fn idempotency(&mut self, raw: Option<RawIdempotency>) -> IdempotencyConfig {
        let defaults = IdempotencyConfig::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let path = KeyPath::root().key("idempotency").key("ttl");
        IdempotencyConfig {
            ttl: self.duration(raw.ttl.as_ref(), &path, defaults.ttl),
        }
    }

    pub(super) fn telemetry(&mut self, raw: Option<RawTelemetry>) -> TelemetryConfig {
        let Some(endpoint) = raw.and_then(|raw| raw.otlp_endpoint) else {
            return TelemetryConfig::default();
        };
        let endpoint = endpoint.text().trim().trim_end_matches('/');
        if endpoint.is_empty() {
            return TelemetryConfig::default();
        }
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            let path = KeyPath::root().key("telemetry").key("otlp_endpoint");
            self.problems.push(
                &path,
                format!("must be an http:// or https:// URL (OTLP over HTTP), got \"{endpoint}\""),
            );
            return TelemetryConfig::default();
        }
        TelemetryConfig {
            otlp_endpoint: Some(endpoint.to_owned()),
        }
    }

    /// `redis: {url, expected_instances, timeout}`; an empty `url` (an
    /// unset `${REDIS_URL:-}`) leaves Redis off.
    pub(super) fn redis(&mut self, raw: Option<RawRedis>) -> Option<RedisConfig> {
        let raw = raw?;
        let path = KeyPath::root().key("redis");
        let url = raw
            .url
            .as_ref()
            .map(|url| url.text().to_owned())
            .unwrap_or_default();
        if url.is_empty() {
            return None;
        }
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            let message = format!("must be a redis:// or rediss:// URL, got \"{url}\"");
            self.problems.push(&path.key("url"), message);
            return None;
        }
        let expected_instances = self
            .whole(
                raw.expected_instances.as_ref(),
                &path.key("expected_instances"),
                1,
                1000,
            )
            .unwrap_or(1);
        let timeout_path = path.key("timeout");
        let timeout = self.duration(raw.timeout.as_ref(), &timeout_path, DEFAULT_REDIS_TIMEOUT);
        if timeout > MAX_REDIS_TIMEOUT {
            let message = format!(
                "must be at most {} (a request waits this long when Redis does not answer), got {}",
                crate::units::format_duration(MAX_REDIS_TIMEOUT),
                crate::units::format_duration(timeout)
            );
            self.problems.push(&timeout_path, message);
        }
        Some(RedisConfig {
            url,
            expected_instances,
            timeout,
        })
    }

    /// Records a problem at `<path>.max_delay` when it is below `base_delay`.
    pub(super) fn check_delay_order(
        &mut self,
        base_delay: std::time::Duration,
        max_delay: std::time::Duration,
        path: &KeyPath,
    ) {
        if max_delay < base_delay {
            let message = format!(
                "must be at least base_delay ({}), got {}",
                crate::units::format_duration(base_delay),
                crate::units::format_duration(max_delay)
            );
            self.problems.push(&path.key("max_delay"), message);
        }
    }
}

/// Whether `scheme` looks like a URL scheme (RFC 3986: a letter, then letters,
/// digits, `+`, `-`, `.`).
fn is_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|next| next.is_ascii_alphanumeric() || "+-.".contains(next))
}

/// Whether `text` is non-empty standard base64, padded or not.
fn is_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    let padding = text.len() - body.len();
    let alphabet_ok = body
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    let length_ok = if padding == 0 {
        body.len() % 4 != 1
    } else {
        padding <= 2 && text.len() % 4 == 0
    };
    !body.is_empty() && alphabet_ok && length_ok
}

#[cfg(test)]
mod tests {
    use super::is_base64;

    #[test]
    fn base64_check_accepts_padded_and_unpadded_and_rejects_junk() {
        assert!(is_base64("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert!(is_base64("YWJjZA=="));
        assert!(is_base64("YWJjZA"));
        assert!(!is_base64(""));
        assert!(!is_base64("not base64!"));
        assert!(!is_base64("YWJjZ"));
        assert!(!is_base64("YWJjZA="));
    }
}
