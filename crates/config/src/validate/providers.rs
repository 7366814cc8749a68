//! `providers:`: kinds, URLs, the api_key rule, limits and resilience policies.

use std::collections::HashMap;
use std::time::Duration;

use super::{Checker, FractionRange};
use crate::error::KeyPath;
use crate::raw::{
    OrderedMap, RawBreaker, RawHealthCheck, RawMaxConcurrent, RawProvider, RawRetry, RawTimeouts,
    Scalar,
};
use crate::schema::{
    BreakerPolicy, HealthCheck, MaxConcurrent, ProviderConfig, ProviderKind, RetryPolicy, Timeouts,
};
use crate::SecretString;

/// `max_tokens` sent to upstreams that require one when the request has none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The most tries per target `retry.attempts` allows.
const MAX_ATTEMPTS: u64 = 10;

/// The bounds of a bare `max_concurrent: adaptive`, and of a `{min, max}`
/// that leaves one out.
const ADAPTIVE_MIN: usize = 1;
const ADAPTIVE_MAX: usize = 1000;

/// The shortest `health_check.interval`.
const MIN_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

// === impl Checker ===

impl Checker {
    pub(super) fn providers(
        &mut self,
        raw: Vec<(String, Option<RawProvider>)>,
        disabled_providers: &HashMap<String, String>,
    ) -> Vec<ProviderConfig> {
        let section = KeyPath::root().key("providers");
        if raw.is_empty() {
            self.problems.push(
                &section,
                "at least one provider is required, e.g. openai: {kind: openai, api_key: ${OPENAI_API_KEY}}",
            );
        }
        let mut providers = Vec::with_capacity(raw.len());
        for (name, provider) in raw {
            let path = section.key(&name);
            if !is_provider_name(&name) {
                let message =
                    format!("invalid provider name \"{name}\": use letters, digits, _, - and .");
                self.problems.push(&path, message);
            }
            let Some(provider) = provider else {
                continue;
            };
            let unset_key = disabled_providers.get(&name).map(String::as_str);
            providers.push(self.provider(name, provider, unset_key, &path));
        }
        providers
    }

    fn provider(
        &mut self,
        name: String,
        raw: RawProvider,
        unset_key: Option<&str>,
        path: &KeyPath,
    ) -> ProviderConfig {
        let kind = self.provider_kind(raw.kind.as_ref(), &path.key("kind"));
        let (api_key, disabled) = self.api_key(kind, raw.api_key.as_ref(), unset_key, path);
        if let Some(reason) = &disabled {
            self.warn(format!("{path}: disabled: {reason}"));
        }
        ProviderConfig {
            name,
            kind: kind.unwrap_or(ProviderKind::Openai),
            base_url: self.base_url(kind, raw.base_url.as_ref(), &path.key("base_url")),
            api_key,
            disabled,
            api_version: self.api_version(kind, raw.api_version.as_ref(), &path.key("api_version")),
            headers: self.headers(raw.headers.as_ref(), &path.key("headers")),
            max_concurrent: self
                .max_concurrent(raw.max_concurrent.as_ref(), &path.key("max_concurrent")),
            rpm: self.whole(raw.rpm.as_ref(), &path.key("rpm"), 1, u64::from(u32::MAX)),
            tpm: self.whole(raw.tpm.as_ref(), &path.key("tpm"), 1, u64::MAX),
            default_max_tokens: self
                .whole(
                    raw.max_tokens.as_ref(),
                    &path.key("max_tokens"),
                    1,
                    u64::from(u32::MAX),
                )
                .unwrap_or(DEFAULT_MAX_TOKENS),
            timeouts: self.timeouts(raw.timeouts.as_ref(), &path.key("timeouts")),
            retry: self.retry(raw.retry.as_ref(), &path.key("retry")),
            breaker: self.breaker(raw.breaker.as_ref(), &path.key("breaker")),
            responses_native: self.responses_mode(
                kind,
                raw.responses.as_ref(),
                &path.key("responses"),
            ),
            drop_unsupported: self.drop_unsupported(kind, raw.drop_unsupported.as_ref(), path),
            health_check: self.health_check(raw.health_check.as_ref(), &path.key("health_check")),
        }
    }

    /// `max_concurrent`: a whole number, `adaptive`, or `{min, max}`.
    fn max_concurrent(
        &mut self,
        raw: Option<&RawMaxConcurrent>,
        path: &KeyPath,
    ) -> Option<MaxConcurrent> {
        let most = u64::from(u32::MAX);
        match raw? {
            RawMaxConcurrent::Scalar(value) if value.text() == "adaptive" => {
                Some(MaxConcurrent::Adaptive {
                    min: ADAPTIVE_MIN,
                    max: ADAPTIVE_MAX,
                })
            }
            RawMaxConcurrent::Scalar(value) if value.text().parse::<i64>().is_err() => {
                let message = format!(
                    "invalid value \"{}\": expected a whole number such as 50, adaptive, or {{min, max}}",
                    value.text()
                );
                self.problems.push(path, message);
                None
            }
            RawMaxConcurrent::Scalar(value) => self
                .whole(Some(value), path, 1, most)
                .map(MaxConcurrent::Fixed),
            RawMaxConcurrent::Adaptive(bounds) => {
                let min = self.whole(bounds.min.as_ref(), &path.key("min"), 1, most);
                let max = self.whole(bounds.max.as_ref(), &path.key("max"), 1, most);
                let (min, max) = (min.unwrap_or(ADAPTIVE_MIN), max.unwrap_or(ADAPTIVE_MAX));
                if min > max {
                    let message = format!("must be at most max ({max}), got {min}");
                    self.problems.push(&path.key("min"), message);
                    return None;
                }
                Some(MaxConcurrent::Adaptive { min, max })
            }
        }
    }

    /// `health_check: {interval}`: at least a second apart, so probes stay
    /// cheap for the upstream and never look like traffic.
    fn health_check(
        &mut self,
        raw: Option<&RawHealthCheck>,
        path: &KeyPath,
    ) -> Option<HealthCheck> {
        let path = path.key("interval");
        let interval = self.required(raw?.interval.as_ref(), &path, "a duration such as 30s")?;
        let interval = self.any_duration(Some(interval), &path)?;
        if interval < MIN_HEALTH_CHECK_INTERVAL {
            let message = format!(
                "must be at least 1s, got {}",
                crate::units::format_duration(interval)
            );
            self.problems.push(&path, message);
            return None;
        }
        Some(HealthCheck { interval })
    }

    /// `responses: translate | native`; native only for the OpenAI kind,
    /// whose API has `/responses`.
    fn responses_mode(
        &mut self,
        kind: Option<ProviderKind>,
        value: Option<&Scalar>,
        path: &KeyPath,
    ) -> bool {
        match value.map(Scalar::text) {
            None | Some("translate") => false,
            Some("native") if kind.is_none_or(|kind| kind == ProviderKind::Openai) => true,
            Some("native") => {
                let kind = kind.map_or("", ProviderKind::as_str);
                self.problems.push(
                    path,
                    format!("native is for kind openai (this provider is {kind}); use translate"),
                );
                false
            }
            Some(other) => {
                self.problems.push(
                    path,
                    format!("unknown mode \"{other}\" (expected one of: translate, native)"),
                );
                false
            }
        }
    }

    /// Only a kind that translates requests has fields to drop; `true`
    /// elsewhere would promise something that never happens.
    fn drop_unsupported(
        &mut self,
        kind: Option<ProviderKind>,
        value: Option<&Scalar>,
        path: &KeyPath,
    ) -> bool {
        let path = path.key("drop_unsupported");
        let drop = self.boolean(value, &path, false);
        match kind {
            Some(kind @ (ProviderKind::Openai | ProviderKind::Azure | ProviderKind::Mock))
                if drop =>
            {
                let message =
                    format!("not used by kind {kind}: it forwards every field as sent; remove it");
                self.problems.push(&path, message);
                false
            }
            _ => drop,
        }
    }

    fn provider_kind(&mut self, value: Option<&Scalar>, path: &KeyPath) -> Option<ProviderKind> {
        let names: Vec<&str> = ProviderKind::ALL.iter().map(|kind| kind.as_str()).collect();
        let value = self.required(value, path, &format!("one of {}", names.join(", ")))?;
        let kind = ProviderKind::from_name(value.text());
        if kind.is_none() {
            let message = format!(
                "unknown kind \"{}\" (expected one of: {})",
                value.text(),
                names.join(", ")
            );
            self.problems.push(path, message);
        }
        kind
    }

    /// An unset variable or an empty value disables the provider;
    /// a missing key is fine only where the upstream may not need one.
    fn api_key(
        &mut self,
        kind: Option<ProviderKind>,
        value: Option<&Scalar>,
        unset_key: Option<&str>,
        path: &KeyPath,
    ) -> (Option<SecretString>, Option<String>) {
        let key_path = path.key("api_key");
        match (kind, value) {
            (Some(ProviderKind::Mock), Some(_)) => {
                self.problems.push(
                    &key_path,
                    "not used by kind mock (it runs in-process); remove it",
                );
                (None, None)
            }
            (_, Some(_)) if unset_key.is_some() => (None, unset_key.map(str::to_owned)),
            (_, Some(key)) if key.text().is_empty() => (None, Some("api_key is empty".to_owned())),
            (_, Some(key)) => (Some(SecretString::new(key.text())), None),
            (Some(kind @ (ProviderKind::Anthropic | ProviderKind::Azure)), None) => {
                let variable = if kind == ProviderKind::Anthropic {
                    "ANTHROPIC_API_KEY"
                } else {
                    "AZURE_OPENAI_API_KEY"
                };
                let message = format!("required for kind {kind}, e.g. api_key: ${{{variable}}}");
                self.problems.push(&key_path, message);
                (None, None)
            }
            (_, None) => (None, None),
        }
    }

    fn base_url(
        &mut self,
        kind: Option<ProviderKind>,
        value: Option<&Scalar>,
        path: &KeyPath,
    ) -> Option<String> {
        let Some(value) = value else {
            if kind == Some(ProviderKind::Azure) {
                self.problems.push(
                    path,
                    "required for kind azure: the resource endpoint, e.g. https://my-resource.openai.azure.com",
                );
            }
            return kind
                .and_then(ProviderKind::default_base_url)
                .map(str::to_owned);
        };
        if kind == Some(ProviderKind::Mock) {
            self.problems.push(
                path,
                "not used by kind mock (it runs in-process); remove it",
            );
            return None;
        }
        let url = value.text();
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if host.is_none_or(|host| host.is_empty() || host.starts_with('/'))
            || url.contains(char::is_whitespace)
        {
            let message = format!("invalid base_url \"{url}\": use an http:// or https:// URL, e.g. https://api.openai.com/v1");
            self.problems.push(path, message);
            return None;
        }
        Some(url.trim_end_matches('/').to_owned())
    }

    fn api_version(
        &mut self,
        kind: Option<ProviderKind>,
        value: Option<&Scalar>,
        path: &KeyPath,
    ) -> Option<String> {
        if kind == Some(ProviderKind::Azure) {
            return self.text(value, path, "the Azure OpenAI api-version, e.g. 2024-10-21");
        }
        if value.is_some() && kind.is_some() {
            self.problems
                .push(path, "only used by kind azure; remove it");
        }
        None
    }

    fn headers(
        &mut self,
        value: Option<&OrderedMap<Scalar>>,
        path: &KeyPath,
    ) -> Vec<(String, String)> {
        let Some(headers) = value else {
            return Vec::new();
        };
        let mut valid = Vec::with_capacity(headers.0.len());
        for (name, header_value) in &headers.0 {
            let header_path = path.key(name);
            if !is_header_name(name) {
                let message = format!("invalid header name \"{name}\": use letters, digits and -");
                self.problems.push(&header_path, message);
            } else if header_value.0.chars().any(|c| c.is_control() && c != '\t') {
                self.problems.push(
                    &header_path,
                    "invalid header value: control characters are not allowed",
                );
            } else {
                valid.push((name.clone(), header_value.text().to_owned()));
            }
        }
        valid
    }

    fn timeouts(&mut self, raw: Option<&RawTimeouts>, path: &KeyPath) -> Timeouts {
        let defaults = Timeouts::default();
        let Some(raw) = raw else {
            return defaults;
        };
        Timeouts {
            connect: self.duration(raw.connect.as_ref(), &path.key("connect"), defaults.connect),
            headers: self.duration(raw.headers.as_ref(), &path.key("headers"), defaults.headers),
            first_token: self.duration(
                raw.first_token.as_ref(),
                &path.key("first_token"),
                defaults.first_token,
            ),
            inactivity: self.duration(
                raw.inactivity.as_ref(),
                &path.key("inactivity"),
                defaults.inactivity,
            ),
            total: self.duration(raw.total.as_ref(), &path.key("total"), defaults.total),
        }
    }

    fn retry(&mut self, raw: Option<&RawRetry>, path: &KeyPath) -> RetryPolicy {
        let defaults = RetryPolicy::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let base_delay = self.duration(
            raw.base_delay.as_ref(),
            &path.key("base_delay"),
            defaults.base_delay,
        );
        let max_delay = self.duration(
            raw.max_delay.as_ref(),
            &path.key("max_delay"),
            defaults.max_delay,
        );
        self.check_delay_order(base_delay, max_delay, path);
        RetryPolicy {
            attempts: self
                .whole(
                    raw.attempts.as_ref(),
                    &path.key("attempts"),
                    1,
                    MAX_ATTEMPTS,
                )
                .unwrap_or(defaults.attempts),
            base_delay,
            max_delay,
            budget_ratio: self.fraction(
                raw.budget_ratio.as_ref(),
                &path.key("budget_ratio"),
                FractionRange::ZeroToOne,
                defaults.budget_ratio,
            ),
        }
    }

    fn breaker(&mut self, raw: Option<&RawBreaker>, path: &KeyPath) -> BreakerPolicy {
        let defaults = BreakerPolicy::default();
        let Some(raw) = raw else {
            return defaults;
        };
        BreakerPolicy {
            failure_rate: self.fraction(
                raw.failure_rate.as_ref(),
                &path.key("failure_rate"),
                FractionRange::AboveZeroUpToOne,
                defaults.failure_rate,
            ),
            window: self.duration(raw.window.as_ref(), &path.key("window"), defaults.window),
            min_requests: self
                .whole(
                    raw.min_requests.as_ref(),
                    &path.key("min_requests"),
                    1,
                    u64::from(u32::MAX),
                )
                .unwrap_or(defaults.min_requests),
            cooldown: self.duration(
                raw.cooldown.as_ref(),
                &path.key("cooldown"),
                defaults.cooldown,
            ),
            half_open_trials: self
                .whole(
                    raw.half_open_trials.as_ref(),
                    &path.key("half_open_trials"),
                    1,
                    u64::from(u32::MAX),
                )
                .unwrap_or(defaults.half_open_trials),
        }
    }
}

/// Provider names appear in metrics labels, headers and `provider/model`.
fn is_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// An HTTP header name (RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

#[cfg(test)]
mod tests {
    use crate::{load_str, ConfigError, MaxConcurrent};

    fn cap(value: &str) -> Result<Option<MaxConcurrent>, ConfigError> {
        let yaml = format!(
            "providers:\n  p: {{kind: openai, api_key: k{value}}}\nmodels:\n  m: {{targets: [{{provider: p, model: x}}]}}"
        );
        let loaded = load_str(&yaml, &std::collections::HashMap::new())?;
        Ok(loaded.config.providers[0].max_concurrent)
    }

    #[test]
    fn max_concurrent_is_fixed_adaptive_or_bounded() -> Result<(), ConfigError> {
        assert_eq!(cap("")?, None);
        assert_eq!(cap(", max_concurrent: 50")?, Some(MaxConcurrent::Fixed(50)));
        let adaptive = |min, max| Some(MaxConcurrent::Adaptive { min, max });
        assert_eq!(cap(", max_concurrent: adaptive")?, adaptive(1, 1000));
        assert_eq!(cap(", max_concurrent: {min: 4, max: 64}")?, adaptive(4, 64));
        assert_eq!(cap(", max_concurrent: {min: 4}")?, adaptive(4, 1000));
        assert_eq!(cap(", max_concurrent: {max: 8}")?, adaptive(1, 8));
        Ok(())
    }
}
