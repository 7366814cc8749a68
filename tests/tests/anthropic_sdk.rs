//! The official `openai` and `anthropic` Python SDKs across formats against
//! `keel mock`: the OpenAI SDK served by an Anthropic target, the Anthropic
//! SDK served by an OpenAI target and by an Anthropic one, stream and not,
//! tool calls and tool-result turns included. `scripts/test` installs both
//! SDKs into `.venv` and sets `KEEL_TEST_PYTHON`; without it the test uses
//! `python3`.

#[path = "anthropic/support.rs"]
mod support;

use keel_testkit::TEST_KEY;
use support::{Setup, TestResult, CLAUDE, GPT};

#[tokio::test]
async fn the_official_sdks_get_complete_answers_across_formats() -> TestResult {
    let setup = Setup::start().await?;
    let python = std::env::var("KEEL_TEST_PYTHON").unwrap_or_else(|_| String::from("python3"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/anthropic_sdk_check.py");
    let mock_root = format!("http://{}", setup.mock.addr);
    let output = tokio::process::Command::new(&python)
        .args([
            script,
            &setup.gateway.url(""),
            TEST_KEY,
            &mock_root,
            CLAUDE,
            GPT,
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
    assert!(stdout.contains("14 passed, 0 failed"), "{stdout}");
    Ok(())
}
