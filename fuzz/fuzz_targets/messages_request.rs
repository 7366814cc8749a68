//! A client's `/v1/messages` body, read by the Anthropic front end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = keel_server::messages_request(data) {
        let _ = request.openai_body("upstream");
    }
});
