//! WH-1: webhooks Keel sends (a first attempt that the receiver fails, then
//! the retry) verify with the reference `standardwebhooks` Python library,
//! with either secret of a rotation (two signatures per message).
//! `scripts/test` installs it into `.venv` and sets `KEEL_TEST_PYTHON`;
//! without it the test uses `python3`.

#[path = "jobs/support.rs"]
#[allow(dead_code, reason = "shared by the job test crates; each uses a part")]
mod support;

use serde_json::{json, Value};
use support::{chat_request, Options, Receiver, Setup, Store, TestResult, ACME, SECRET};
use tokio::io::AsyncWriteExt;

/// A new secret first, the old one (the suites' usual) second.
const NEW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROTATION: &str =
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[tokio::test]
async fn wh1_the_reference_standard_webhooks_library_verifies_keel_webhooks() -> TestResult {
    let options = Options {
        secret: ROTATION,
        ..Options::default()
    };
    let setup = Setup::start(Store::Sqlite, options).await?;
    let receiver = Receiver::start(vec![500]).await?;
    let job: Value = setup
        .submit(
            ACME,
            &json!({"request": chat_request(), "webhook": {"url": receiver.url}}),
        )
        .await?
        .json()
        .await?;
    setup
        .wait_for(job["id"].as_str().ok_or("id")?, |job| {
            job["webhook"]["status"] == "delivered"
        })
        .await?;
    let messages: Vec<Value> = receiver
        .requests()
        .iter()
        .map(|request| {
            let headers: serde_json::Map<String, Value> =
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
                    .iter()
                    .filter_map(|name| {
                        Some((
                            (*name).to_owned(),
                            json!(request.headers.get(*name)?.to_str().ok()?),
                        ))
                    })
                    .collect();
            json!({"headers": headers, "body": request.body})
        })
        .collect();
    assert_eq!(messages.len(), 2);
    for message in &messages {
        let signatures = message["headers"]["webhook-signature"]
            .as_str()
            .ok_or("no signature")?;
        assert_eq!(
            signatures.split(' ').count(),
            2,
            "one per secret: {signatures}"
        );
    }
    let python = std::env::var("KEEL_TEST_PYTHON").unwrap_or_else(|_| String::from("python3"));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sdk/standardwebhooks_verify.py"
    );
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {python}: {error}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin
        .write_all(
            json!({"secrets": [NEW_SECRET, SECRET], "messages": messages})
                .to_string()
                .as_bytes(),
        )
        .await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "verification failed (run scripts/test, which installs tests/sdk/requirements.txt):\n{stdout}\n{stderr}");
    assert!(stdout.contains("2 verified with 2 secrets"), "{stdout}");
    Ok(())
}
