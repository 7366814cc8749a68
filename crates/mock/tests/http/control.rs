//! The `/_mock/` control API.

use keel_mock::ModelStats;
use serde_json::{json, Value};

use crate::support::{Mock, RequestJson, ResponseJson};

#[tokio::test]
async fn put_faults_over_http_applies_and_delete_clears_faults_and_counters() {
    let mock = Mock::start().await;
    let plan = json!({"fail": {"status": 503, "count": 1, "retry_after": "2"}, "chunks": 5});
    let response = mock
        .client
        .put(mock.url("/_mock/faults/org/model-a"))
        .json_body(&plan)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Value = response.json_body().await;
    assert_eq!(echoed["model"], "org/model-a");

    let body = json!({"model": "org/model-a", "messages": [{"role": "user", "content": "hi"}]});
    let response = mock.openai(body.clone()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    let reply: Value = mock.openai(body).await.json_body().await;
    assert_eq!(reply["usage"]["completion_tokens"], 5);

    let one: ModelStats = mock
        .client
        .get(mock.url("/_mock/stats/org/model-a"))
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    assert_eq!(
        one,
        ModelStats {
            requests: 2,
            completed: 1,
            cancelled: 0,
            failed_injected: 1
        }
    );
    let all: Value = mock
        .client
        .get(mock.url("/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    assert_eq!(all["org/model-a"]["failed_injected"], 1);

    let response = mock
        .client
        .delete(mock.url("/_mock/faults"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(mock.state.stats("org/model-a"), ModelStats::default());
    let all: Value = mock
        .client
        .get(mock.url("/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    assert_eq!(all, json!({}));
}

#[tokio::test]
async fn bad_fault_plans_get_a_clear_400() {
    let mock = Mock::start().await;
    let url = mock.url("/_mock/faults/m");
    let cases = [
        ("{nope", "invalid fault plan"),
        (r#"{"stall_after": 3}"#, "unknown field"),
        (r#"{"fail": {"status": 42}}"#, "fail.status"),
        (r#"{"chunk_delay_ms": -1}"#, "invalid value"),
    ];
    for (body, expected) in cases {
        let response = mock.client.put(&url).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json_body().await;
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
}

#[tokio::test]
async fn deleting_one_plan_restores_normal_replies() {
    let mock = Mock::start().await;
    let plan = json!({"fail": {"status": 500, "count": 100}});
    mock.client
        .put(mock.url("/_mock/faults/m"))
        .json_body(&plan)
        .send()
        .await
        .unwrap();
    let body = json!({"model": "m", "messages": []});
    assert_eq!(mock.openai(body.clone()).await.status(), 500);
    mock.client
        .delete(mock.url("/_mock/faults/m"))
        .send()
        .await
        .unwrap();
    assert_eq!(mock.openai(body).await.status(), 200);
}

#[tokio::test]
async fn unknown_paths_get_an_openai_shaped_404() {
    let mock = Mock::start().await;
    let response = mock.client.get(mock.url("/v1/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json_body().await;
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn serve_with_shutdown_returns_once_signalled() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(keel_mock::serve_with_shutdown(
        listener,
        keel_mock::MockState::new(),
        shutdown,
    ));
    let url = format!("http://{address}/v1/models");
    assert_eq!(
        reqwest::Client::new()
            .get(url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stop.send(()).unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    assert!(result.unwrap().unwrap().is_ok());
}

#[tokio::test]
async fn the_request_log_holds_each_api_request_as_it_came_and_delete_forgets_them() {
    let mock = Mock::start().await;
    let body =
        r#"{"model":"m","max_tokens":5, "top_k":3,"messages":[{"role":"user","content":"hi"}]}"#;
    let response = mock
        .client
        .post(mock.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "a")
        .header("anthropic-beta", "b")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let chat = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(mock.openai(chat).await.status(), 200);

    let log: Value = mock
        .client
        .get(mock.url("/_mock/requests"))
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    let requests = log["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["method"], "POST");
    assert_eq!(requests[0]["path"], "/v1/messages");
    assert_eq!(requests[0]["body"], body);
    assert_eq!(requests[0]["body_len"], body.len());
    assert_eq!(requests[0]["headers"]["anthropic-beta"], "a, b");
    assert_eq!(requests[0]["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(requests[1]["path"], "/v1/chat/completions");
    assert_eq!(mock.state.requests().len(), 2);

    // A body over the limit is logged by its length only.
    let big = format!(
        r#"{{"model":"g","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(keel_mock::LOG_MAX_BODY)
    );
    let response = mock
        .client
        .post(mock.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let logged = mock.state.requests();
    assert_eq!(logged.len(), 3);
    assert_eq!(logged[2].body, "");
    assert_eq!(logged[2].body_len, big.len());

    let response = mock
        .client
        .delete(mock.url("/_mock/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(mock.state.requests().is_empty());
}
