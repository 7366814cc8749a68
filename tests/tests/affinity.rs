//! `models.<name>.affinity`: the requests of one session (a header, or the
//! body's `user`) go to the target that served the session before, on
//! `/v1/chat/completions` and `/v1/messages`; when that target fails, the
//! session moves to the one that answered and stays there.

use std::collections::HashSet;

use keel_testkit::{start_gateway, start_mock, FailNext, Faults, Gateway, Mock};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY: &str = "sk-acme";

fn yaml(mock: &Mock) -> String {
    let root = mock.base_url();
    format!(
        "tenants:\n  - {{name: acme, keys: [\"{KEY}\"]}}\n\
         providers:\n\
         \x20 one: {{kind: openai, base_url: {root}, retry: {{attempts: 1}}}}\n\
         \x20 two: {{kind: openai, base_url: {root}, retry: {{attempts: 1}}}}\n\
         \x20 ant-one: {{kind: anthropic, base_url: \"http://{addr}\", api_key: k1, retry: {{attempts: 1}}}}\n\
         \x20 ant-two: {{kind: anthropic, base_url: \"http://{addr}\", api_key: k2, retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 chat:\n\
         \x20   strategy: weighted\n\
         \x20   targets: [{{provider: one, model: gpt-a}}, {{provider: two, model: gpt-b}}]\n\
         \x20   affinity: {{key: \"header:X-Session-Id\", ttl: 10m}}\n\
         \x20 by-user:\n\
         \x20   strategy: weighted\n\
         \x20   targets: [{{provider: one, model: gpt-c}}, {{provider: two, model: gpt-d}}]\n\
         \x20   affinity: {{key: user}}\n\
         \x20 claude:\n\
         \x20   strategy: weighted\n\
         \x20   targets: [{{provider: ant-one, model: claude-a}}, {{provider: ant-two, model: claude-b}}]\n\
         \x20   affinity: {{key: user}}\n",
        addr = mock.addr,
    )
}

async fn setup() -> Result<(Mock, Gateway), Box<dyn std::error::Error>> {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    Ok((mock, gateway))
}

/// The upstream model that answered one chat request.
async fn answered_by(
    gateway: &Gateway,
    model: &str,
    session: Option<&str>,
    user: Option<&str>,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    if let Some(user) = user {
        body["user"] = json!(user);
    }
    let mut request = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body);
    if let Some(session) = session {
        request = request.header("x-session-id", session);
    }
    let response = request.send().await?;
    assert_eq!(response.status(), 200);
    let model = response
        .headers()
        .get("x-keel-model")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(model)
}

#[tokio::test]
async fn each_session_sticks_to_one_target_while_sessions_spread() -> TestResult {
    let (_mock, gateway) = setup().await?;
    let mut firsts = HashSet::new();
    for number in 0..16 {
        let session = format!("session-{number}");
        let first = answered_by(&gateway, "chat", Some(&session), None).await?;
        for _ in 0..8 {
            let again = answered_by(&gateway, "chat", Some(&session), None).await?;
            assert_eq!(again, first, "{session} moved");
        }
        firsts.insert(first);
    }
    // 16 sessions drawn 1:1 all landing on one target: 1 in 32,768.
    assert_eq!(firsts.len(), 2, "sessions were not spread: {firsts:?}");
    let mut unpinned = HashSet::new();
    for _ in 0..40 {
        unpinned.insert(answered_by(&gateway, "chat", None, None).await?);
    }
    assert_eq!(unpinned.len(), 2, "requests without a session stuck");
    Ok(())
}

#[tokio::test]
async fn the_body_user_is_a_session_key_too() -> TestResult {
    let (_mock, gateway) = setup().await?;
    for user in ["ann", "ben", "cat", "dan"] {
        let first = answered_by(&gateway, "by-user", None, Some(user)).await?;
        for _ in 0..8 {
            assert_eq!(
                answered_by(&gateway, "by-user", None, Some(user)).await?,
                first
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_failing_pinned_target_moves_the_session() -> TestResult {
    let (mock, gateway) = setup().await?;
    // A session first answered by gpt-a (each new session is a fair draw).
    let mut session = None;
    for number in 0..64 {
        let candidate = format!("move-{number}");
        if answered_by(&gateway, "chat", Some(&candidate), None).await? == "gpt-a" {
            session = Some(candidate);
            break;
        }
    }
    let session = session.ok_or("no session landed on gpt-a in 64 draws")?;
    let fail = FailNext {
        status: 503,
        count: 1,
        retry_after: None,
        body: None,
    };
    mock.state.set_faults(
        "gpt-a",
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    assert_eq!(
        answered_by(&gateway, "chat", Some(&session), None).await?,
        "gpt-b"
    );
    // gpt-a answers again, but the session stays where it moved.
    for _ in 0..10 {
        assert_eq!(
            answered_by(&gateway, "chat", Some(&session), None).await?,
            "gpt-b"
        );
    }
    Ok(())
}

/// A `/v1/messages` body passed through to Anthropic targets carries its
/// user in `metadata.user_id`; that is the session for `key: user`.
#[tokio::test]
async fn messages_passed_through_pin_by_metadata_user_id() -> TestResult {
    let (_mock, gateway) = setup().await?;
    let ask = |user: &'static str| {
        let gateway_url = gateway.url("/v1/messages");
        async move {
            let response = reqwest::Client::new()
                .post(gateway_url)
                .header("x-api-key", KEY)
                .header("anthropic-version", "2023-06-01")
                .json(&json!({
                    "model": "claude", "max_tokens": 16,
                    "metadata": {"user_id": user},
                    "messages": [{"role": "user", "content": "hi"}],
                }))
                .send()
                .await?;
            let status = response.status();
            let model = response
                .headers()
                .get("x-keel-model")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert_eq!(status, 200, "{}", response.text().await?);
            Ok::<_, reqwest::Error>(model)
        }
    };
    let mut firsts = HashSet::new();
    for user in [
        "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10", "u11", "u12",
    ] {
        let first = ask(user).await?;
        for _ in 0..5 {
            assert_eq!(ask(user).await?, first, "{user} moved");
        }
        firsts.insert(first);
    }
    // 12 users all drawn to one of two targets: 1 in 2,048.
    assert_eq!(firsts.len(), 2, "users were not spread: {firsts:?}");
    Ok(())
}
