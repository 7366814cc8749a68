//! The `keel` binary as a user runs it: `check` on the shipped and on broken
//! configurations, and `--version`.

use std::process::Command;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn keel(args: &[&str], envs: &[(&str, &str)]) -> std::io::Result<std::process::Output> {
    keel_in(env!("CARGO_MANIFEST_DIR"), args, envs)
}

/// `keel` run in `dir`, with none of the variables the shipped file reads.
fn keel_in(
    dir: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> std::io::Result<std::process::Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command.args(args).current_dir(dir);
    for name in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "LOCAL_OPENAI_API_KEY",
        "KEEL_CONFIG",
        "KEEL_WEBHOOK_SECRET",
    ] {
        command.env_remove(name);
    }
    command.envs(envs.iter().copied()).output()
}

#[test]
fn check_accepts_the_shipped_configuration_and_summarises_it() -> TestResult {
    let output = keel(&["check", "../../providers.yaml"], &[])?;
    let stdout = String::from_utf8(output.stdout)?;
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("providers.yaml: ok"), "{stdout}");
    assert!(
        stdout.contains("demo [ordered] -> demo/keel-demo-1"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("providers.openai: disabled: environment variable OPENAI_API_KEY is not set"),
        "{stdout}"
    );
    let output = keel(
        &["check", "../../providers.yaml"],
        &[("OPENAI_API_KEY", "sk-test")],
    )?;
    assert!(!String::from_utf8(output.stdout)?.contains("providers.openai: disabled"));
    Ok(())
}

/// The first line `keel check` prints: which file it read.
fn checked_file(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn check_finds_its_file_like_the_other_commands() -> TestResult {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let positional = keel_in(repo, &["check", "examples/failover.yaml"], &[])?;
    assert_eq!(checked_file(&positional), "examples/failover.yaml: ok");
    let flag = keel_in(repo, &["check", "--config", "examples/failover.yaml"], &[])?;
    assert_eq!(checked_file(&flag), "examples/failover.yaml: ok");
    let from_env = keel_in(
        repo,
        &["check"],
        &[("KEEL_CONFIG", "examples/failover.yaml")],
    )?;
    assert_eq!(checked_file(&from_env), "examples/failover.yaml: ok");
    let default = keel_in(repo, &["check"], &[])?;
    assert_eq!(checked_file(&default), "providers.yaml: ok");
    let both = keel_in(repo, &["check", "a.yaml", "--config", "b.yaml"], &[])?;
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    Ok(())
}

#[test]
fn check_says_whether_webhooks_are_signed_as_job_submission_does() -> TestResult {
    let shipped = keel(&["check", "../../providers.yaml"], &[])?;
    let stdout = String::from_utf8(shipped.stdout)?;
    assert!(
        stdout.contains("\nwebhooks   signed with webhooks.secret,"),
        "{stdout}"
    );
    // examples/failover.yaml has no webhooks.secret: a job with a webhook is
    // refused at submit, and check says so in the refusal's own words.
    let unsigned = keel(&["check", "../../examples/failover.yaml"], &[])?;
    let stdout = String::from_utf8(unsigned.stdout)?;
    let refusal = keel_queue::SubmitError::WebhooksDisabled.to_string();
    let reason = refusal.trim_start_matches("webhook.url: ");
    assert!(
        stdout.contains(&format!("\nwebhooks   off: {reason}")),
        "{reason:?} not in:\n{stdout}"
    );
    Ok(())
}

#[test]
fn check_warns_that_private_webhook_addresses_are_allowed() -> TestResult {
    let dir = std::env::temp_dir().join(format!("keel-cli-private-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("private.yaml");
    std::fs::write(
        &file,
        "providers:\n  demo: {kind: mock}\nmodels:\n  demo: {targets: [{provider: demo, model: m}]}\nwebhooks: {allow_private: true}\n",
    )?;
    let output = keel(&["check", &file.to_string_lossy()], &[])?;
    std::fs::remove_dir_all(&dir)?;
    let stdout = String::from_utf8(output.stdout)?;
    assert!(
        stdout.contains("warning: webhooks.allow_private: on: webhooks may reach loopback, private and cloud metadata addresses (an SSRF risk)"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn check_names_the_key_path_of_every_problem_and_exits_2() -> TestResult {
    let dir = std::env::temp_dir().join(format!("keel-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("broken.yaml");
    std::fs::write(
        &file,
        "providers:\n  openai: {kind: openai, timeouts: {connect: soon}}\nmodels:\n  chat-large:\n    targets:\n      - {provider: openai, model: gpt-4o}\n      - {provider: opnai, model: gpt-4o}\n",
    )?;
    let output = keel(&["check", &file.to_string_lossy()], &[])?;
    let stderr = String::from_utf8(output.stderr)?;
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"models.chat-large.targets[1].provider: unknown provider "opnai""#),
        "{stderr}"
    );
    assert!(
        stderr.contains("providers.openai.timeouts.connect: invalid duration"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() -> TestResult {
    // A port in use makes `serve` log its warnings and an error, then exit.
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dir = std::env::temp_dir().join(format!("keel-cli-colour-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("taken.yaml");
    std::fs::write(
        &file,
        format!(
            "server: {{listen: \"{}\"}}\nproviders:\n  demo: {{kind: mock}}\nmodels:\n  demo: {{targets: [{{provider: demo, model: m}}]}}\n",
            taken.local_addr()?
        ),
    )?;
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--config", &file.to_string_lossy()])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .output()?;
    std::fs::remove_dir_all(&dir)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert!(stderr.contains("WARN"), "no warning logged:\n{stderr}");
    assert!(stderr.contains("ERROR"), "no error logged:\n{stderr}");
    assert!(
        !stderr.contains("\u{1b}["),
        "colour codes in a pipe:\n{stderr:?}"
    );
    Ok(())
}

#[test]
fn version_prints_the_package_version() -> TestResult {
    let output = keel(&["--version"], &[])?;
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout)?.trim(),
        format!("keel {}", env!("CARGO_PKG_VERSION"))
    );
    Ok(())
}
