//! The official `openai` Python SDK, pointed at Keel as an application would
//! point it, gets exactly what the upstream sent: content, usage, tool calls,
//! streaming and not. `scripts/test` installs the SDK into `.venv` and sets
//! `KEEL_TEST_PYTHON`; without it the test uses `python3`.

use keel_testkit::{start_gateway, start_mock, yaml_with_targets, TEST_KEY};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::test]
async fn the_official_openai_sdk_gets_what_the_upstream_sent() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("first", &mock.base_url())]), &[]).await?;
    let args = vec![
        gateway.url("/v1"),
        TEST_KEY.to_owned(),
        mock.base_url(),
        String::from("gpt-mock"),
    ];
    let stdout = keel_testkit::sdk_check("openai_sdk_check.py", args).await?;
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");
    Ok(())
}
