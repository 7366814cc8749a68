//! The official `openai` Python SDK, pointed at Keel as an application would
//! point it, gets exactly what the upstream sent: content, usage, tool calls,
//! streaming and not. `scripts/test` installs the SDK into `.venv` and sets
//! `KEEL_TEST_PYTHON`; without it the test uses `python3`.

use keel_testkit::{start_gateway, start_mock, yaml_with_targets, FailNext, Faults, TEST_KEY};

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

/// The SDK retries 5xx twice by default unless told otherwise: a final
/// error must reach Keel once, and so the upstream once.
#[tokio::test]
async fn the_official_openai_sdk_does_not_retry_a_final_error() -> TestResult {
    let mock = start_mock().await?;
    mock.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(FailNext {
                status: 503,
                count: 100,
                retry_after: None,
                body: None,
            }),
            ..Faults::default()
        },
    );
    let gateway = start_gateway(&yaml_with_targets(&[("only", &mock.base_url())]), &[]).await?;
    let args = vec![gateway.url("/v1"), TEST_KEY.to_owned()];
    let stdout = keel_testkit::sdk_check("openai_sdk_final_error_check.py", args).await?;
    assert!(stdout.contains("raised 502"), "{stdout}");
    assert_eq!(mock.state.stats("gpt-mock").requests, 1);
    Ok(())
}
