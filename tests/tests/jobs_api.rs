//! The async job API end to end, on both stores: submit → 202 → poll →
//! succeeded; `Prefer: respond-async`; validation at submit; tenant
//! isolation; cancel; retries after upstream 503; exhaustion; idempotent
//! submission; signed webhooks with retries; the SSRF refusal. Each test
//! runs once on SQLite and once on Postgres (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each on a database of its own.

#[path = "jobs/support.rs"]
#[allow(dead_code, reason = "shared by the job test crates; each uses a part")]
#[macro_use]
mod support;

use std::time::Duration;

use keel_testkit::{FailNext, Faults};
use serde_json::{json, Value};
use support::{
    chat_request, verify, Options, Receiver, Setup, Store, TestResult, ACME, GLOBEX, SECRET,
};

both_stores!(
    jq1_submit_is_202_with_a_committed_job_that_succeeds_with_a_chat_completion,
    prefer_respond_async_turns_a_chat_completion_into_a_job,
    invalid_submissions_are_400_at_submit_and_create_no_job,
    another_tenants_job_is_404,
    cancel_of_a_running_job_aborts_its_upstream_call,
    jq4_a_job_is_retried_after_upstream_503_then_succeeds,
    jq4_a_job_that_keeps_failing_fails_after_max_attempts_with_the_last_error,
    id1_id3_jq1_idempotent_submission_replays_and_rejects_another_body,
    jq1_fifty_concurrent_submissions_with_one_key_create_one_job,
    list_is_newest_first_with_cursor_and_status_filter,
    wh1_webhook_is_signed_and_delivered_with_the_job_object,
    wh2_webhook_is_retried_after_two_500s_with_a_stable_id,
    wh4_a_private_webhook_url_is_refused_at_submit,
    wh2_a_redirect_is_a_failure_not_followed_and_410_stops_retries,
    wh3_a_disabled_endpoint_gets_no_calls_until_a_failed_webhook_is_redelivered,
    readyz_reports_the_store,
    jobs_count_against_the_tenant_rate_limit_and_wait_instead_of_failing,
);

async fn jq1_submit_is_202_with_a_committed_job_that_succeeds_with_a_chat_completion(
    store: Store,
) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let response = setup
        .submit(
            ACME,
            &json!({"request": chat_request(), "metadata": {"batch": "7"}}),
        )
        .await?;
    assert_eq!(response.status(), 202);
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or("no Location")?;
    let job: Value = response.json().await?;
    let id = job["id"].as_str().ok_or("no id")?;
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(
        (job["object"].as_str(), job["model"].as_str()),
        (Some("job"), Some("chat"))
    );
    assert_eq!(job["metadata"], json!({"batch": "7"}));
    for field in [
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "attempts",
        "result",
        "error",
        "webhook",
    ] {
        assert!(job.get(field).is_some(), "job object lacks {field}: {job}");
    }
    // The job is visible the moment 202 is back: it was committed first.
    let polled = setup
        .http
        .get(setup.gateway.url(&location))
        .bearer_auth(ACME)
        .send()
        .await?;
    assert_eq!(polled.status(), 200);
    let done = setup.wait_final(id).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["object"], "chat.completion");
    assert!(done["result"]["choices"][0]["message"]["content"].is_string());
    assert_eq!(done["attempts"], 1);
    assert!(done["finished_at"].as_i64() >= done["created_at"].as_i64());
    let final_poll = setup
        .http
        .get(setup.gateway.url(&location))
        .bearer_auth(ACME)
        .send()
        .await?;
    assert!(
        final_poll.headers().get("retry-after").is_none(),
        "no Retry-After once final"
    );
    assert_eq!(setup.mock.state.stats("gpt-mock").completed, 1);
    Ok(())
}

async fn prefer_respond_async_turns_a_chat_completion_into_a_job(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let response = setup
        .http
        .post(setup.gateway.url("/v1/chat/completions"))
        .bearer_auth(ACME)
        .header("prefer", "respond-async")
        .json(&json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response
            .headers()
            .get("preference-applied")
            .and_then(|v| v.to_str().ok()),
        Some("respond-async")
    );
    assert!(response.headers().get("location").is_some());
    let job: Value = response.json().await?;
    let done = setup.wait_final(job["id"].as_str().ok_or("id")?).await?;
    // A job's answer is one JSON document even when the request asked for a stream.
    assert_eq!(
        (done["status"].as_str(), done["result"]["object"].as_str()),
        (Some("succeeded"), Some("chat.completion")),
        "{done}"
    );
    Ok(())
}

async fn invalid_submissions_are_400_at_submit_and_create_no_job(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let cases = [
        (
            json!({"request": {"model": "nope", "messages": [{"role": "user", "content": "x"}]}}),
            "request.model",
        ),
        (json!({"request": {"model": "chat"}}), "request.messages"),
        (
            json!({"request": {"model": "chat", "messages": []}, "extra": 1}),
            "",
        ),
        (json!({"webhook": {"url": "http://example.com"}}), ""),
        (
            json!({"request": chat_request(), "metadata": [1]}),
            "metadata",
        ),
        (
            json!({"request": chat_request(), "webhook": {"url": "ftp://example.com/x"}}),
            "webhook.url",
        ),
    ];
    for (body, param) in cases {
        let response = setup.submit(ACME, &body).await?;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await?;
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        if !param.is_empty() {
            assert_eq!(error["error"]["param"], param, "{error}");
        }
    }
    let unauthenticated = setup
        .http
        .post(setup.gateway.url("/v1/jobs"))
        .json(&json!({"request": chat_request()}))
        .send()
        .await?;
    assert_eq!(unauthenticated.status(), 401);
    let list: Value = setup
        .http
        .get(setup.gateway.url("/v1/jobs"))
        .bearer_auth(ACME)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["data"], json!([]));
    Ok(())
}

async fn another_tenants_job_is_404(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let job: Value = setup
        .submit(ACME, &json!({"request": chat_request()}))
        .await?
        .json()
        .await?;
    let id = job["id"].as_str().ok_or("id")?;
    let (status, body) = setup.job(GLOBEX, id).await?;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "job_not_found");
    let cancel = setup
        .http
        .post(setup.gateway.url(&format!("/v1/jobs/{id}/cancel")))
        .bearer_auth(GLOBEX)
        .send()
        .await?;
    assert_eq!(cancel.status(), 404);
    let list: Value = setup
        .http
        .get(setup.gateway.url("/v1/jobs"))
        .bearer_auth(GLOBEX)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["data"], json!([]));
    let (status, _) = setup.job(ACME, id).await?;
    assert_eq!(status, 200);
    Ok(())
}

async fn cancel_of_a_running_job_aborts_its_upstream_call(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 30_000,
            ..Faults::default()
        },
    );
    let job: Value = setup
        .submit(ACME, &json!({"request": chat_request()}))
        .await?
        .json()
        .await?;
    let id = job["id"].as_str().ok_or("id")?;
    let running = setup.wait_for(id, |job| job["status"] == "running").await?;
    assert_eq!(running["attempts"], 1);
    let response = setup
        .http
        .get(setup.gateway.url(&format!("/v1/jobs/{id}")))
        .bearer_auth(ACME)
        .send()
        .await?;
    assert!(
        response.headers().get("retry-after").is_some(),
        "Retry-After while running"
    );
    // Wait until the upstream has the request, then cancel.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while setup.mock.state.stats("gpt-mock").requests == 0 && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancel = setup
        .http
        .post(setup.gateway.url(&format!("/v1/jobs/{id}/cancel")))
        .bearer_auth(ACME)
        .send()
        .await?;
    assert_eq!(cancel.status(), 200);
    let cancelled: Value = cancel.json().await?;
    assert_eq!(cancelled["status"], "cancelled");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while setup.mock.state.stats("gpt-mock").cancelled == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream call was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Cancelling again is fine; a finished job is left alone (409).
    let again = setup
        .http
        .post(setup.gateway.url(&format!("/v1/jobs/{id}/cancel")))
        .bearer_auth(ACME)
        .send()
        .await?;
    assert_eq!(again.status(), 200);
    setup.mock.state.set_faults("gpt-mock", Faults::default());
    let done: Value = setup
        .submit(ACME, &json!({"request": chat_request()}))
        .await?
        .json()
        .await?;
    let done_id = done["id"].as_str().ok_or("id")?;
    assert_eq!(setup.wait_final(done_id).await?["status"], "succeeded");
    let conflict = setup
        .http
        .post(setup.gateway.url(&format!("/v1/jobs/{done_id}/cancel")))
        .bearer_auth(ACME)
        .send()
        .await?;
    assert_eq!(conflict.status(), 409);
    let (_, still) = setup.job(ACME, id).await?;
    assert_eq!(
        still["status"], "cancelled",
        "a cancelled job stays cancelled"
    );
    Ok(())
}

async fn jq4_a_job_is_retried_after_upstream_503_then_succeeds(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let fail = FailNext {
        status: 503,
        count: 2,
        ..FailNext::default()
    };
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    let job: Value = setup
        .submit(ACME, &json!({"request": chat_request()}))
        .await?
        .json()
        .await?;
    let done = setup.wait_final(job["id"].as_str().ok_or("id")?).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["result"]["object"], "chat.completion");
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 3);
    Ok(())
}

async fn jq4_a_job_that_keeps_failing_fails_after_max_attempts_with_the_last_error(
    store: Store,
) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let fail = FailNext {
        status: 503,
        count: 1000,
        ..FailNext::default()
    };
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    let job: Value = setup
        .submit(ACME, &json!({"request": chat_request()}))
        .await?
        .json()
        .await?;
    let done = setup.wait_final(job["id"].as_str().ok_or("id")?).await?;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempts"], 3);
    assert!(done["result"].is_null());
    assert_eq!(done["error"]["type"], "server_error");
    assert!(
        done["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("503")),
        "{done}"
    );
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 3);
    Ok(())
}

async fn id1_id3_jq1_idempotent_submission_replays_and_rejects_another_body(
    store: Store,
) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let body = json!({"request": chat_request()});
    let send = |key: &'static str, tenant: &'static str, body: Value| {
        let request = setup
            .http
            .post(setup.gateway.url("/v1/jobs"))
            .bearer_auth(tenant)
            .header("idempotency-key", key)
            .json(&body);
        async move { request.send().await }
    };
    let first = send("key-1", ACME, body.clone()).await?;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.text().await?;
    let replay = send("key-1", ACME, body.clone()).await?;
    assert_eq!(replay.status(), 202);
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert!(replay.headers().get("location").is_some());
    assert_eq!(
        replay.text().await?,
        first_body,
        "ID-1: the replay is byte-identical"
    );
    let other = send(
        "key-1",
        ACME,
        json!({"request": chat_request(), "metadata": {"x": 1}}),
    )
    .await?;
    assert_eq!(other.status(), 422, "ID-3: another body with the same key");
    // ID-4: the key is scoped per tenant.
    let globex: Value = send("key-1", GLOBEX, body.clone()).await?.json().await?;
    let first_job: Value = serde_json::from_str(&first_body)?;
    assert_ne!(globex["id"], first_job["id"]);
    let too_long = setup
        .http
        .post(setup.gateway.url("/v1/jobs"))
        .bearer_auth(ACME)
        .header("idempotency-key", "k".repeat(256))
        .json(&body)
        .send()
        .await?;
    assert_eq!(too_long.status(), 400, "ID-4: keys over 255 characters");
    let list: Value = setup
        .http
        .get(setup.gateway.url("/v1/jobs"))
        .bearer_auth(ACME)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    Ok(())
}

async fn jq1_fifty_concurrent_submissions_with_one_key_create_one_job(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = setup
            .http
            .post(setup.gateway.url("/v1/jobs"))
            .bearer_auth(ACME)
            .header("idempotency-key", "same")
            .json(&json!({"request": chat_request()}));
        sends.spawn(async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.json::<Value>().await?))
        });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(result) = sends.join_next().await {
        let (status, job) = result??;
        assert_eq!(status, 202, "{job}");
        ids.insert(job["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(ids.len(), 1, "every response names the one job");
    let list: Value = setup
        .http
        .get(setup.gateway.url("/v1/jobs"))
        .bearer_auth(ACME)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    Ok(())
}

async fn list_is_newest_first_with_cursor_and_status_filter(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let job: Value = setup
            .submit(ACME, &json!({"request": chat_request()}))
            .await?
            .json()
            .await?;
        ids.push(job["id"].as_str().ok_or("id")?.to_owned());
    }
    for id in &ids {
        setup.wait_final(id).await?;
    }
    let get = |query: String| {
        let request = setup
            .http
            .get(setup.gateway.url(&format!("/v1/jobs{query}")))
            .bearer_auth(ACME);
        async move { request.send().await?.json::<Value>().await }
    };
    let page = get(String::from("?limit=2")).await?;
    assert_eq!(page["object"], "list");
    assert_eq!(page["has_more"], true);
    let names = |page: &Value| {
        page["data"]
            .as_array()
            .map(|jobs| {
                jobs.iter()
                    .filter_map(|job| job["id"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(&page), vec![ids[2].clone(), ids[1].clone()]);
    let rest = get(format!("?limit=2&after={}", ids[1])).await?;
    assert_eq!(
        (names(&rest), rest["has_more"].as_bool()),
        (vec![ids[0].clone()], Some(false))
    );
    assert_eq!(
        names(&get(String::from("?status=succeeded")).await?).len(),
        3
    );
    assert_eq!(names(&get(String::from("?status=queued")).await?).len(), 0);
    let bad = setup
        .http
        .get(setup.gateway.url("/v1/jobs?status=done"))
        .bearer_auth(ACME)
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    Ok(())
}

async fn wh1_webhook_is_signed_and_delivered_with_the_job_object(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let receiver = Receiver::start(vec![]).await?;
    let job: Value = setup
        .submit(
            ACME,
            &json!({"request": chat_request(), "webhook": {"url": receiver.url}}),
        )
        .await?
        .json()
        .await?;
    let id = job["id"].as_str().ok_or("id")?;
    assert_eq!(
        job["webhook"],
        json!({"url": receiver.url, "status": "pending", "attempts": 0, "last_error": null})
    );
    let received = receiver.wait_for(1).await?;
    verify(SECRET, &received[0])?;
    assert_eq!(
        received[0]
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok()),
        Some(id)
    );
    let payload: Value = serde_json::from_str(&received[0].body)?;
    assert_eq!(
        (payload["id"].as_str(), payload["status"].as_str()),
        (Some(id), Some("succeeded"))
    );
    assert_eq!(payload["result"]["object"], "chat.completion");
    let done = setup
        .wait_for(id, |job| job["webhook"]["status"] == "delivered")
        .await?;
    assert_eq!(done["webhook"]["attempts"], 1);
    let metrics = setup
        .http
        .get(setup.gateway.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for line in [
        r#"keel_queue_jobs{state="succeeded"} 1"#,
        r#"keel_webhook_deliveries_total{outcome="delivered"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    // A tampered body no longer verifies.
    let mut tampered = received[0].clone();
    tampered.body.push(' ');
    assert!(verify(SECRET, &tampered).is_err());
    Ok(())
}

async fn wh2_webhook_is_retried_after_two_500s_with_a_stable_id(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let receiver = Receiver::start(vec![500, 500]).await?;
    let job: Value = setup
        .submit(
            ACME,
            &json!({"request": chat_request(), "webhook": {"url": receiver.url}}),
        )
        .await?
        .json()
        .await?;
    let id = job["id"].as_str().ok_or("id")?;
    let done = setup
        .wait_for(id, |job| job["webhook"]["status"] == "delivered")
        .await?;
    assert_eq!(done["webhook"]["attempts"], 3, "{done}");
    assert!(done["webhook"]["last_error"].is_null());
    let received = receiver.requests();
    assert_eq!(received.len(), 3);
    for request in &received {
        verify(SECRET, request)?;
        assert_eq!(
            request
                .headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok()),
            Some(id),
            "webhook-id is stable across retries"
        );
    }
    Ok(())
}

async fn wh4_a_private_webhook_url_is_refused_at_submit(store: Store) -> TestResult {
    let setup = Setup::start(
        store,
        Options {
            allow_private: false,
            ..Options::default()
        },
    )
    .await?;
    let receiver = Receiver::start(vec![]).await?;
    for url in [
        receiver.url.clone(),
        String::from("http://169.254.169.254/latest/meta-data"),
        String::from("http://[::ffff:127.0.0.1]/x"),
        String::from("http://localhost:1/x"),
    ] {
        let response = setup
            .submit(
                ACME,
                &json!({"request": chat_request(), "webhook": {"url": url}}),
            )
            .await?;
        assert_eq!(response.status(), 400, "{url}");
        let error: Value = response.json().await?;
        assert_eq!(error["error"]["param"], "webhook.url", "{error}");
    }
    let list: Value = setup
        .http
        .get(setup.gateway.url("/v1/jobs"))
        .bearer_auth(ACME)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["data"], json!([]));
    assert!(receiver.requests().is_empty());
    Ok(())
}

async fn wh2_a_redirect_is_a_failure_not_followed_and_410_stops_retries(
    store: Store,
) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let redirecting = Receiver::start(vec![302]).await?;
    let job: Value = setup
        .submit(
            ACME,
            &json!({"request": chat_request(), "webhook": {"url": redirecting.url}}),
        )
        .await?
        .json()
        .await?;
    let done = setup
        .wait_for(job["id"].as_str().ok_or("id")?, |job| {
            job["webhook"]["status"] == "delivered"
        })
        .await?;
    assert_eq!(
        done["webhook"]["attempts"], 2,
        "the 302 counted as a failed attempt: {done}"
    );
    assert_eq!(redirecting.requests().len(), 2);
    let gone = Receiver::start(vec![410]).await?;
    let job: Value = setup
        .submit(
            ACME,
            &json!({"request": chat_request(), "webhook": {"url": gone.url}}),
        )
        .await?
        .json()
        .await?;
    let failed = setup
        .wait_for(job["id"].as_str().ok_or("id")?, |job| {
            job["webhook"]["status"] == "failed"
        })
        .await?;
    assert_eq!(failed["webhook"]["attempts"], 1, "{failed}");
    assert!(
        failed["webhook"]["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("410")),
        "{failed}"
    );
    assert_eq!(gone.requests().len(), 1);
    Ok(())
}

/// WH-3 (with WH-2's "410 disables the endpoint at once"): after a 410 the
/// endpoint gets no more calls, so the next job's webhook fails at once;
/// failed webhooks are listed by `webhook_status=failed` and redelivered by
/// hand with their original `webhook-id`, which enables the endpoint again.
async fn wh3_a_disabled_endpoint_gets_no_calls_until_a_failed_webhook_is_redelivered(
    store: Store,
) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let receiver = Receiver::start(vec![410]).await?;
    let with_webhook = json!({"request": chat_request(), "webhook": {"url": receiver.url}});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let job: Value = setup.submit(ACME, &with_webhook).await?.json().await?;
        let id = job["id"].as_str().ok_or("id")?.to_owned();
        let failed = setup
            .wait_for(&id, |job| job["webhook"]["status"] == "failed")
            .await?;
        assert_eq!(failed["webhook"]["attempts"], 1, "{failed}");
        ids.push(id);
    }
    assert_eq!(
        receiver.requests().len(),
        1,
        "the disabled endpoint got no call for the second job"
    );
    let second = setup.job(ACME, &ids[1]).await?.1;
    assert!(
        second["webhook"]["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("disabled")),
        "{second}"
    );
    let failed: Value = setup
        .http
        .get(setup.gateway.url("/v1/jobs?webhook_status=failed"))
        .bearer_auth(ACME)
        .send()
        .await?
        .json()
        .await?;
    let listed: Vec<&str> = failed["data"]
        .as_array()
        .ok_or("data")?
        .iter()
        .filter_map(|job| job["id"].as_str())
        .collect();
    assert_eq!(listed, vec![ids[1].as_str(), ids[0].as_str()]);
    for (redelivered, id) in ids.iter().enumerate() {
        let response = setup
            .http
            .post(
                setup
                    .gateway
                    .url(&format!("/v1/jobs/{id}/webhook/redeliver")),
            )
            .bearer_auth(ACME)
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        let job: Value = response.json().await?;
        assert_eq!(job["webhook"]["status"], "pending", "{job}");
        let delivered = setup
            .wait_for(id, |job| job["webhook"]["status"] == "delivered")
            .await?;
        assert_eq!(delivered["webhook"]["attempts"], 1, "{delivered}");
        assert_eq!(receiver.requests().len(), redelivered + 2);
    }
    let webhook_ids: Vec<String> = receiver
        .requests()
        .iter()
        .filter_map(|request| {
            request
                .headers
                .get("webhook-id")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        webhook_ids,
        vec![ids[0].clone(), ids[0].clone(), ids[1].clone()],
        "a redelivery keeps the webhook-id of the first delivery"
    );
    let foreign = setup
        .http
        .post(
            setup
                .gateway
                .url(&format!("/v1/jobs/{}/webhook/redeliver", ids[0])),
        )
        .bearer_auth(GLOBEX)
        .send()
        .await?;
    assert_eq!(foreign.status(), 404);
    let plain: Value = setup
        .submit(ACME, &json!({"request": chat_request()}))
        .await?
        .json()
        .await?;
    let plain_id = plain["id"].as_str().ok_or("id")?;
    setup.wait_final(plain_id).await?;
    let no_webhook = setup
        .http
        .post(
            setup
                .gateway
                .url(&format!("/v1/jobs/{plain_id}/webhook/redeliver")),
        )
        .bearer_auth(ACME)
        .send()
        .await?;
    assert_eq!(no_webhook.status(), 409);
    let body: Value = no_webhook.json().await?;
    assert_eq!(body["error"]["code"], "webhook_not_redeliverable");
    Ok(())
}

/// A job run is admitted by its tenant's limits like a live request: with
/// `rpm: 6` (a burst of 6, then one every 10 s) six of seven jobs run at
/// once, the seventh waits queued (its attempt not counted) while a live
/// request of the same tenant gets 429, then runs when a token is back.
async fn jobs_count_against_the_tenant_rate_limit_and_wait_instead_of_failing(
    store: Store,
) -> TestResult {
    let options = Options {
        acme_limits: Some("{rpm: 6}"),
        ..Options::default()
    };
    let setup = Setup::start(store, options).await?;
    let mut ids = Vec::new();
    for _ in 0..7 {
        let job: Value = setup
            .submit(ACME, &json!({"request": chat_request()}))
            .await?
            .json()
            .await?;
        ids.push(job["id"].as_str().ok_or("id")?.to_owned());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let succeeded = loop {
        let mut succeeded = Vec::new();
        for id in &ids {
            if setup.job(ACME, id).await?.1["status"] == "succeeded" {
                succeeded.push(id.clone());
            }
        }
        if succeeded.len() >= 6 || tokio::time::Instant::now() > deadline {
            break succeeded;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(succeeded.len(), 6, "the burst of 6, no more");
    let waiting = ids
        .iter()
        .find(|id| !succeeded.contains(id))
        .ok_or("the seventh job")?;
    // A deferred run is released within moments of its claim.
    let job = setup
        .wait_for(waiting, |job| job["status"] == "queued")
        .await?;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_i64()),
        (Some("queued"), Some(0)),
        "over the limit, the job waits without spending an attempt: {job}"
    );
    let live = setup
        .http
        .post(setup.gateway.url("/v1/chat/completions"))
        .bearer_auth(ACME)
        .json(&chat_request())
        .send()
        .await?;
    assert_eq!(live.status(), 429, "the jobs spent the tenant's requests");
    let done = setup
        .wait_for(waiting, |job| job["status"] == "succeeded")
        .await?;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 7);
    Ok(())
}

async fn readyz_reports_the_store(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let response = setup.http.get(setup.gateway.url("/readyz")).send().await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(body["status"], "ready");
    Ok(())
}
