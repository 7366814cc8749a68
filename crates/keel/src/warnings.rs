//! Start-up warnings for settings that this build parses and validates but
//! does not act on yet, so nobody believes a control is on when it is not.

use keel_config::Config;

/// One line per configured feature that is not wired yet.
pub fn unwired_features(config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    if !config.slos.is_empty() {
        lines.push(String::from("slos: not reported yet"));
    }
    lines
}
