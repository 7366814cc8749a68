//! The dashboard in a real headless Chromium (Debian's `chromium`): a
//! person types the admin key, sees a target's breaker closed, and sees it
//! turn open once `keel mock` fails that provider. The browser side is
//! `tests/browser/dashboard_check.py` (Playwright driving the system
//! Chromium); its screenshot is left in the test's output directory.

use keel_testkit::{start_gateway, start_mock};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TENANT: &str = "sk-acme";
const ADMIN: &str = "sk-admin";

/// The script's exit status when Chromium is not installed.
const SKIPPED: i32 = 77;

#[tokio::test]
async fn a_person_sees_the_breaker_open_on_the_dashboard() -> TestResult {
    let mock = start_mock().await?;
    let yaml = format!(
        "server: {{admin_key: {ADMIN}}}\n\
         tenants:\n  - {{name: acme, keys: [\"{TENANT}\"]}}\n\
         providers:\n\
         \x20 primary:\n    kind: openai\n    base_url: {base}\n    retry: {{attempts: 1}}\n\
         \x20   breaker: {{failure_rate: 0.5, window: 60s, min_requests: 4, cooldown: 10m, half_open_trials: 1}}\n\
         \x20 secondary: {{kind: openai, base_url: {base}, retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 chat:\n    targets: [{{provider: primary, model: gpt-primary}}, {{provider: secondary, model: gpt-secondary}}]\n\
         slos:\n  - {{name: chat-availability, model: chat, sli: availability, target: 99.9%, window: 30d}}\n",
        base = mock.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let screenshot = format!("{}/dashboard.png", env!("CARGO_TARGET_TMPDIR"));
    let script = format!("{}/browser/dashboard_check.py", env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("KEEL_TEST_PYTHON").unwrap_or_else(|_| String::from("python3"));
    let args = [
        ("--keel", gateway.url("")),
        ("--admin-key", ADMIN.to_owned()),
        ("--tenant-key", TENANT.to_owned()),
        ("--mock", mock.base_url().trim_end_matches("/v1").to_owned()),
        ("--mock-model", String::from("gpt-primary")),
        ("--public-model", String::from("chat")),
        ("--target", String::from("primary/gpt-primary")),
        ("--screenshot", screenshot.clone()),
    ];
    let mut command = std::process::Command::new(&python);
    command.arg(&script);
    for (flag, value) in &args {
        command.arg(flag).arg(value);
    }
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(SKIPPED) {
        // Without Debian's chromium there is no browser to drive; CI installs it.
        eprintln!("skipped: {stdout}{stderr}");
        return Ok(());
    }
    assert!(
        output.status.success(),
        "the dashboard check failed (scripts/test installs its Python packages):\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.trim(), "ok: breaker closed -> open");
    assert!(
        std::fs::metadata(&screenshot)?.len() > 0,
        "a screenshot at {screenshot}"
    );
    Ok(())
}
