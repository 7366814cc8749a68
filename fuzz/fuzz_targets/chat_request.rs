//! A client's chat completion body: parsed, forwarded, and keyed for the cache.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = keel_types::ChatRequest::parse(data) {
        let _ = request.openai_body("upstream");
        let _ = keel_cache::canonical_body(request.raw().fields());
    }
});
