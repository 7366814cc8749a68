//! Start-up warnings for settings that this build parses and validates but
//! does not act on yet, so nobody believes a control is on when it is not.

use keel_config::Config;

/// One line per configured feature that is not wired yet.
pub fn unwired_features(config: &Config) -> Vec<String> {
    let mut lines = vec![String::from(
        "providers.*.timeouts (except connect), retry and breaker: parsed but not enforced yet; failover across targets is active",
    )];
    let named = |names: Vec<&str>| names.join(", ");
    let limited: Vec<_> = config.tenants.iter().filter(|t| t.limits.rpm.is_some() || t.limits.tpm.is_some()).map(|t| t.name.as_str()).collect();
    if !limited.is_empty() {
        lines.push(format!("tenants.*.limits (set for {}): not enforced yet", named(limited)));
    }
    let capped: Vec<_> = config.providers.iter().filter(|p| p.max_concurrent.is_some() || p.rpm.is_some() || p.tpm.is_some()).map(|p| p.name.as_str()).collect();
    if !capped.is_empty() {
        lines.push(format!("providers.*.max_concurrent/rpm/tpm (set for {}): not enforced yet", named(capped)));
    }
    let per_model = |pick: fn(&keel_config::ModelConfig) -> bool| -> Vec<&str> {
        config.models.iter().filter(|m| pick(m)).map(|m| m.name.as_str()).collect()
    };
    for (feature, models) in [
        ("hedge", per_model(|m| m.hedge.is_some())),
        ("cache", per_model(|m| m.cache.is_some())),
        ("timeout", per_model(|m| m.timeout.is_some())),
    ] {
        if !models.is_empty() {
            lines.push(format!("models.*.{feature} (set for {}): not active yet", named(models)));
        }
    }
    if !config.slos.is_empty() {
        lines.push(String::from("slos: not reported yet"));
    }
    lines.push(String::from("jobs, webhooks and idempotency: not served yet (POST /v1/jobs answers 404)"));
    lines
}
