//! CORS for browser applications: off by default; with `server.cors`, an
//! allowed origin's preflight is answered before auth and its answers can
//! be read by the page; another origin gets no CORS headers.

use keel_testkit::{start_gateway, start_mock, yaml_with_targets, TEST_KEY};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BODY: &str = r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#;
const APP: &str = "https://app.example";

fn preflight(client: &reqwest::Client, url: &str, origin: &str) -> reqwest::RequestBuilder {
    client
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-stainless-os",
        )
}

#[tokio::test]
async fn an_allowed_origin_gets_its_preflight_and_can_read_the_answer() -> TestResult {
    let mock = start_mock().await?;
    let yaml = format!(
        "server: {{cors: {{origins: [\"{APP}\"]}}}}\n{}",
        yaml_with_targets(&[("up", &mock.base_url())])
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let client = reqwest::Client::new();
    let url = gateway.url("/v1/chat/completions");
    let answer = preflight(&client, &url, APP).send().await?;
    assert_eq!(answer.status(), 204);
    let headers = answer.headers();
    assert_eq!(headers["access-control-allow-origin"], APP);
    assert!(headers["access-control-allow-methods"]
        .to_str()?
        .contains("POST"));
    let allowed = headers["access-control-allow-headers"].to_str()?;
    for name in [
        "authorization",
        "content-type",
        "x-api-key",
        "anthropic-version",
        "anthropic-beta",
        "idempotency-key",
        "x-request-id",
        "x-stainless-os",
    ] {
        assert!(
            allowed.split(", ").any(|item| item == name),
            "{name}: {allowed}"
        );
    }
    assert_eq!(headers["access-control-max-age"], "3600");
    let response = client
        .post(&url)
        .header("origin", APP)
        .bearer_auth(TEST_KEY)
        .body(BODY)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], APP);
    let exposed = response.headers()["access-control-expose-headers"].to_str()?;
    for name in [
        "x-request-id",
        "x-keel-provider",
        "retry-after",
        "x-ratelimit-remaining-requests",
    ] {
        assert!(exposed.contains(name), "{name}: {exposed}");
    }
    let refused = client
        .post(&url)
        .header("origin", APP)
        .body(BODY)
        .send()
        .await?;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        APP,
        "the page can read why it was refused"
    );
    let stranger = preflight(&client, &url, "https://evil.example")
        .send()
        .await?;
    assert!(stranger
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let stranger = client
        .post(&url)
        .header("origin", "https://evil.example")
        .bearer_auth(TEST_KEY)
        .body(BODY)
        .send()
        .await?;
    assert!(stranger
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(
        mock.state.stats("gpt-mock").requests,
        2,
        "preflights never reach the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn every_origin_gets_a_star_when_any_is_allowed() -> TestResult {
    let mock = start_mock().await?;
    let yaml = format!(
        "server: {{cors: {{origins: [\"*\"]}}}}\n{}",
        yaml_with_targets(&[("up", &mock.base_url())])
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let client = reqwest::Client::new();
    let url = gateway.url("/v1/models");
    let answer = preflight(&client, &url, "http://localhost:3000")
        .send()
        .await?;
    assert_eq!(answer.status(), 204);
    assert_eq!(answer.headers()["access-control-allow-origin"], "*");
    Ok(())
}

#[tokio::test]
async fn without_server_cors_there_are_no_cors_headers() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("up", &mock.base_url())]), &[]).await?;
    let client = reqwest::Client::new();
    let url = gateway.url("/v1/chat/completions");
    let answer = preflight(&client, &url, APP).send().await?;
    assert_ne!(answer.status(), 204);
    assert!(answer
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let response = client
        .post(&url)
        .header("origin", APP)
        .bearer_auth(TEST_KEY)
        .body(BODY)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    Ok(())
}
