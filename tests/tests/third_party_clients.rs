//! Real third-party clients against Keel in front of `keel mock`, each
//! unchanged but for its base URL: LangChain's `ChatOpenAI`, the Vercel AI
//! SDK (`@ai-sdk/openai`, which speaks the Responses API), the `llm` CLI,
//! and the official `anthropic` SDK with prompt caching and extended
//! thinking. Each script checks the client's answers and, from the mock's
//! request log (`/_mock/requests`), that every field the client sent
//! reached the upstream. `scripts/test` installs the Python packages
//! (`tests/sdk/requirements.txt`) and the npm ones (`tests/clients/
//! package-lock.json`); without them these tests fail, naming the command.

use keel_testkit::{client_check, start_gateway, start_mock, Gateway, Mock};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY: &str = "sk-clients";

/// The OpenAI-kind model and its upstream model.
const GPT: (&str, &str) = ("gpt", "gpt-mock");

/// The Anthropic-kind model (its Messages bodies pass through) and its
/// upstream model.
const CLAUDE: (&str, &str) = ("claude", "mock-claude-sonnet");

async fn setup() -> Result<(Mock, Gateway), Box<dyn std::error::Error>> {
    let mock = start_mock().await?;
    let yaml = format!(
        "tenants:\n  - {{name: clients, keys: [\"{KEY}\"]}}\n\
         providers:\n\
         \x20 up: {{kind: openai, base_url: \"{base}\", retry: {{attempts: 1}}}}\n\
         \x20 anthropic: {{kind: anthropic, base_url: \"http://{addr}\", api_key: sk-ant, retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 {gpt}: {{targets: [{{provider: up, model: {gpt_up}}}]}}\n\
         \x20 {claude}: {{targets: [{{provider: anthropic, model: {claude_up}}}]}}\n",
        base = mock.base_url(),
        addr = mock.addr,
        gpt = GPT.0,
        gpt_up = GPT.1,
        claude = CLAUDE.0,
        claude_up = CLAUDE.1,
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    Ok((mock, gateway))
}

/// Runs one client script against a fresh mock and gateway: the API root
/// it is given (`/v1`, or the bare root for the Anthropic SDK), the key,
/// the mock's root and the model pair; returns its output.
async fn run(script: &str, root: &str, (model, upstream): (&str, &str)) -> Result<String, String> {
    let (mock, gateway) = setup().await.map_err(|error| error.to_string())?;
    let args = vec![
        gateway.url(root),
        KEY.to_owned(),
        format!("http://{}", mock.addr),
        model.to_owned(),
        upstream.to_owned(),
    ];
    client_check(script, args).await
}

/// The number of `ok` lines, after checking the script reported no failure.
fn passed(stdout: &str) -> usize {
    assert!(stdout.trim_end().ends_with("0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    stdout
        .lines()
        .filter(|line| line.starts_with("ok "))
        .count()
}

#[tokio::test]
async fn langchain_chat_openai_calls_binds_tools_and_gets_structured_output() -> TestResult {
    let stdout = run("langchain_check.py", "/v1", GPT).await?;
    assert_eq!(passed(&stdout), 13, "{stdout}");
    Ok(())
}

#[tokio::test]
async fn the_vercel_ai_sdk_generates_and_streams_text_and_tool_calls_over_responses() -> TestResult
{
    let stdout = run("vercel_ai_check.mjs", "/v1", GPT).await?;
    assert_eq!(passed(&stdout), 30, "{stdout}");
    Ok(())
}

#[tokio::test]
async fn the_llm_cli_prompts_streamed_and_not() -> TestResult {
    let stdout = run("llm_check.py", "/v1", GPT).await?;
    assert_eq!(passed(&stdout), 7, "{stdout}");
    Ok(())
}

#[tokio::test]
async fn the_anthropic_sdk_sends_cache_control_and_thinking_through_verbatim() -> TestResult {
    let stdout = run("anthropic_cache_thinking_check.py", "", CLAUDE).await?;
    assert_eq!(passed(&stdout), 13, "{stdout}");
    Ok(())
}
