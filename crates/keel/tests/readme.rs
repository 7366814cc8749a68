//! The README's walk-through, run as a reader would: its marked blocks
//! (`<!-- readme-test: NAME -->` before a fence) are read from README.md
//! and run with bash and the test Python against the built `keel`, in a
//! directory of their own. Only what a test must change is rewritten:
//! `cargo run --release --` becomes this build's binary and the ports
//! 8080, 8081 and 8090 become free ones (in the blocks and in the copied
//! configuration files alike). If the README's commands stop working, this
//! fails.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// How long one block may run, background work included.
const BLOCK_LIMIT: Duration = Duration::from_secs(120);

/// Variables that would change what the shipped configuration does.
const CLEARED: [&str; 11] = [
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "LOCAL_OPENAI_API_KEY",
    "LOCAL_OPENAI_BASE_URL",
    "KEEL_CONFIG",
    "KEEL_LISTEN",
    "KEEL_DEV_KEY",
    "KEEL_ADMIN_KEY",
    "KEEL_WEBHOOK_SECRET",
    "DATABASE_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// A temporary working directory with the README's files, its port map,
/// and the process groups started in it (killed on drop).
struct Walkthrough {
    dir: PathBuf,
    ports: Vec<(&'static str, String)>,
    groups: Vec<u32>,
}

/// What a finished block printed.
struct Ran {
    stdout: String,
    stderr: String,
}

// === impl Walkthrough ===

impl Walkthrough {
    /// A fresh directory for the test `name`, holding `providers.yaml` and
    /// `examples/failover.yaml`, their ports rewritten.
    fn new(name: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("keel-readme-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("examples"))?;
        let mut ports = Vec::new();
        for readme_port in [":8080", ":8081", ":8090"] {
            ports.push((readme_port, format!(":{}", free_port()?)));
        }
        let walkthrough = Self {
            dir,
            ports,
            groups: Vec::new(),
        };
        for file in ["providers.yaml", "examples/failover.yaml"] {
            let text = std::fs::read_to_string(Path::new(REPO).join(file))?;
            std::fs::write(walkthrough.dir.join(file), walkthrough.rewrite(&text))?;
        }
        Ok(walkthrough)
    }

    /// `text` with this build's binary and this walk-through's ports.
    fn rewrite(&self, text: &str) -> String {
        let mut text = text.replace("cargo run --release --", "\"$KEEL\"");
        for (readme_port, port) in &self.ports {
            text = text.replace(readme_port, port);
        }
        text
    }

    /// The tour gateway's base URL.
    fn gateway(&self) -> String {
        self.rewrite("http://127.0.0.1:8080")
    }

    /// Starts `command` in a process group of its own, in the directory,
    /// with its output in `<name>.out` and `<name>.err` there.
    fn spawn(&mut self, name: &str, command: &mut Command) -> std::io::Result<Child> {
        for variable in CLEARED {
            command.env_remove(variable);
        }
        let child = command
            .current_dir(&self.dir)
            .env("KEEL", env!("CARGO_BIN_EXE_keel"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.join(format!("{name}.out")))?)
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.err")))?)
            .process_group(0)
            .spawn()?;
        self.groups.push(child.id());
        Ok(child)
    }

    /// Runs a bash block to its end (at most [`BLOCK_LIMIT`]); an error
    /// with its output when it fails.
    fn bash(&mut self, name: &str, block: &str) -> Result<Ran, Box<dyn std::error::Error>> {
        let script = format!("set -euo pipefail\n{}", self.rewrite(block));
        let child = self.spawn(name, Command::new("bash").args(["-c", &script]))?;
        self.finish(name, child)
    }

    /// Runs a Python block (at most [`BLOCK_LIMIT`]), followed by `harness`.
    fn python(
        &mut self,
        name: &str,
        block: &str,
        harness: &str,
    ) -> Result<Ran, Box<dyn std::error::Error>> {
        let python = std::env::var("KEEL_TEST_PYTHON").unwrap_or_else(|_| String::from("python3"));
        let script = format!("{}\n{harness}", self.rewrite(block));
        let child = self.spawn(name, Command::new(python).args(["-c", &script]))?;
        self.finish(name, child)
    }

    /// Waits for `child` to exit, then kills whatever it left in its group.
    fn finish(&self, name: &str, mut child: Child) -> Result<Ran, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + BLOCK_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        kill_group(child.id());
        let ran = Ran {
            stdout: std::fs::read_to_string(self.dir.join(format!("{name}.out")))?,
            stderr: std::fs::read_to_string(self.dir.join(format!("{name}.err")))?,
        };
        match status {
            Some(status) if status.success() => Ok(ran),
            Some(status) => Err(ran.failure(name, &format!("exited with {status}"))),
            None => Err(ran.failure(name, &format!("ran longer than {BLOCK_LIMIT:?}"))),
        }
    }

    /// Waits until `GET url` answers 2xx, for at most a minute.
    fn wait_ready(&self, url: &str) -> Result<(), Box<dyn std::error::Error>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let probe = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", url])
                .status()?;
            if probe.success() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(self.dir.join("serve.err")).unwrap_or_default();
        Err(format!("{url} was not ready within a minute; the gateway logged:\n{log}").into())
    }
}

impl Drop for Walkthrough {
    fn drop(&mut self) {
        for group in &self.groups {
            kill_group(*group);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// === impl Ran ===

impl Ran {
    fn failure(&self, name: &str, what: &str) -> Box<dyn std::error::Error> {
        format!(
            "README block {name} {what}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        )
        .into()
    }
}

/// Ends every process of the group led by `leader`.
fn kill_group(leader: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{leader}")])
        .stderr(Stdio::null())
        .status();
}

/// A port free right now on 127.0.0.1.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The README's marked blocks: the body of the fence after each
/// `<!-- readme-test: NAME -->` line.
fn readme_blocks() -> Result<HashMap<String, String>, Box<dyn std::error::Error>> {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md"))?;
    let mut blocks = HashMap::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- readme-test: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().ok_or("a marker at the end of README.md")?;
        if !fence.starts_with("```") {
            return Err(format!("marker {name} is not followed by a fence").into());
        }
        let body: Vec<&str> = lines.by_ref().take_while(|line| *line != "```").collect();
        blocks.insert(name.to_owned(), body.join("\n"));
    }
    Ok(blocks)
}

fn block<'a>(blocks: &'a HashMap<String, String>, name: &str) -> Result<&'a str, String> {
    blocks
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("README.md has no block marked readme-test: {name}"))
}

#[test]
fn the_readme_walkthrough_works_as_written() -> TestResult {
    let blocks = readme_blocks()?;
    let mut walkthrough = Walkthrough::new("tour")?;

    // The gateway of the tour runs in the background, as in its own terminal.
    let serve = walkthrough.rewrite(block(&blocks, "serve")?);
    walkthrough.spawn("serve", Command::new("bash").args(["-c", &serve]))?;
    walkthrough.wait_ready(&format!("{}/readyz", walkthrough.gateway()))?;

    let tour = walkthrough.bash("tour", block(&blocks, "tour")?)?;
    let out = &tour.stdout;
    assert!(out.contains("HTTP/1.1 200 OK"), "no completion:\n{out}");
    assert!(out.contains("x-keel-provider: demo"), "{out}");
    assert!(out.contains(r#""object":"chat.completion""#), "{out}");
    assert!(
        out.contains(r#""object":"chat.completion.chunk""#),
        "no stream:\n{out}"
    );
    assert!(out.contains("data: [DONE]"), "{out}");
    assert!(
        out.contains(r#""status":"succeeded""#),
        "the job did not succeed:\n{out}"
    );
    assert!(walkthrough.dir.join("keel.db").exists(), "no ./keel.db");

    let openai = walkthrough.python("openai-sdk", block(&blocks, "openai-sdk")?, "")?;
    assert!(
        openai
            .stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .count()
            >= 2,
        "{}",
        openai.stdout
    );
    let anthropic = walkthrough.python("anthropic-sdk", block(&blocks, "anthropic-sdk")?, "")?;
    assert!(
        !anthropic.stdout.trim().is_empty(),
        "no text from the Anthropic SDK"
    );

    let failover = walkthrough.bash("failover", block(&blocks, "failover")?)?;
    let out = failover.stdout.to_lowercase();
    assert!(
        out.contains("x-keel-provider: secondary"),
        "no failover:\n{out}"
    );
    assert!(
        out.contains("keel_upstream_attempts_total"),
        "no metrics:\n{out}"
    );
    Ok(())
}

#[test]
fn the_readme_webhook_check_accepts_what_keel_signs_and_nothing_else() -> TestResult {
    let blocks = readme_blocks()?;
    let snippet = block(&blocks, "verify-webhook")?;
    let secret = snippet
        .split('"')
        .find(|part| part.starts_with("whsec_"))
        .ok_or("no whsec_ secret in the snippet")?;
    let shipped = std::fs::read_to_string(Path::new(REPO).join("providers.yaml"))?;
    assert!(
        shipped.contains(secret),
        "the snippet's secret is not the shipped one"
    );

    let key = keel_queue::decode_secret(secret)?;
    let body = r#"{"id":"job_readme","object":"job","status":"succeeded"}"#;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let timestamp = i64::try_from(timestamp)?;
    let signature = keel_queue::signature_header(&[key], "job_readme", timestamp, body);
    let harness = format!(
        r#"
headers = {{"webhook-id": "job_readme", "webhook-timestamp": "{timestamp}", "webhook-signature": "{signature}"}}
print(job_from_delivery(b'{body}', headers)["status"])
try:
    job_from_delivery(b'{body} ', headers)
    print("tampered body accepted")
except WebhookVerificationError:
    print("tampered body refused")
"#
    );
    let mut walkthrough = Walkthrough::new("webhook")?;
    let ran = walkthrough.python("verify-webhook", snippet, &harness)?;
    assert_eq!(
        ran.stdout.lines().collect::<Vec<_>>(),
        ["succeeded", "tampered body refused"],
        "{}",
        ran.stderr
    );
    Ok(())
}
