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
    let mock_root = format!("http://{}", setup.mock.addr);
    let args = vec![
        setup.gateway.url(""),
        TEST_KEY.to_owned(),
        mock_root,
        CLAUDE.to_owned(),
        GPT.to_owned(),
    ];
    let stdout = keel_testkit::sdk_check("anthropic_sdk_check.py", args).await?;
    assert!(stdout.contains("14 passed, 0 failed"), "{stdout}");
    Ok(())
}
