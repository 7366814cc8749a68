//! A providers.yaml, loaded and validated.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = keel_config::load_str(text, &std::collections::HashMap::new());
});
