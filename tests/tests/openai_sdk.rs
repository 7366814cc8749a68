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
    let python = std::env::var("KEEL_TEST_PYTHON").unwrap_or_else(|_| String::from("python3"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/openai_sdk_check.py");
    let output = tokio::process::Command::new(&python)
        .args([
            script,
            &gateway.url("/v1"),
            TEST_KEY,
            &mock.base_url(),
            "gpt-mock",
        ])
        .output()
        .await
        .map_err(|error| format!("cannot run {python}: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK check failed (run scripts/test, which installs tests/sdk/requirements.txt):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");
    Ok(())
}
