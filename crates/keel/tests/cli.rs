//! The `keel` binary as a user runs it: `check` on the shipped and on broken
//! configurations, and `--version`.

use std::process::Command;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn keel(args: &[&str], envs: &[(&str, &str)]) -> std::io::Result<std::process::Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for name in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "LOCAL_OPENAI_API_KEY",
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
fn version_prints_the_package_version() -> TestResult {
    let output = keel(&["--version"], &[])?;
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout)?.trim(),
        format!("keel {}", env!("CARGO_PKG_VERSION"))
    );
    Ok(())
}
