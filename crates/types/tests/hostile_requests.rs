//! Client request bodies under hostile input, in the normal suite:
//! thousands of mutations of a rich chat request. Parsing never panics; what
//! it accepts has a model and forwards as one JSON object; what it refuses
//! says why. `fuzz/` runs the same entry point under `cargo fuzz`.

use keel_types::hostile::mutation;
use keel_types::ChatRequest;

const REQUEST: &str = r#"{"model":"chat","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hé ✓"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"number"}}}}}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":100,"temperature":0.5,"x_unknown":[1,2.5,null]}"#;

#[test]
fn chat_requests_survive_hostile_bytes() {
    let mut accepted = 0;
    for seed in 0..5_000 {
        let body = mutation(REQUEST.as_bytes(), seed);
        match ChatRequest::parse(&body) {
            Ok(request) => {
                accepted += 1;
                assert!(!request.model().is_empty(), "seed {seed}");
                let forwarded = request.openai_body("upstream");
                let value: Result<serde_json::Value, _> = serde_json::from_slice(&forwarded);
                assert!(
                    value.is_ok_and(|value| value["model"] == "upstream"),
                    "seed {seed}: {}",
                    String::from_utf8_lossy(&forwarded)
                );
            }
            Err(error) => assert!(!error.to_string().is_empty(), "seed {seed}"),
        }
    }
    assert!(
        accepted > 100,
        "only {accepted} mutations were still requests"
    );
}
