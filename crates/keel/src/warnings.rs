//! Start-up warnings for settings that this build parses and validates but
//! does not act on yet, so nobody believes a control is on when it is not.

use keel_config::Config;

/// One line per configured feature that is not wired yet.
pub fn unwired_features(config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    let per_model = |pick: fn(&keel_config::ModelConfig) -> bool| -> Vec<&str> {
        config
            .models
            .iter()
            .filter(|m| pick(m))
            .map(|m| m.name.as_str())
            .collect()
    };
    for (feature, models) in [("cache", per_model(|m| m.cache.is_some()))] {
        if !models.is_empty() {
            lines.push(format!(
                "models.*.{feature} (set for {}): not active yet",
                models.join(", ")
            ));
        }
    }
    if !config.slos.is_empty() {
        lines.push(String::from("slos: not reported yet"));
    }
    lines
}
