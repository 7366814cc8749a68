//! Keel as a real child process (`keel serve --config FILE`), for tests of
//! what only separate processes show: a kill mid-job, instances sharing a
//! database or a Redis.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `keel serve` child process, killed when dropped.
pub struct KeelProcess {
    /// The child.
    pub child: Child,
    /// Where it serves.
    pub addr: SocketAddr,
}

/// A configuration file in the temp directory, removed when dropped.
pub struct ConfigFile(PathBuf);

// === impl KeelProcess ===

impl KeelProcess {
    /// Starts `binary serve --config <config>` and waits (at most 20 s) for
    /// its "keel is serving" line, which names the address it listens on.
    pub async fn start(
        binary: &str,
        config: &ConfigFile,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(config.path())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line()).await?;
            let Some(line) = line? else {
                return Err("keel exited before serving".into());
            };
            if let Some(rest) = line.split("listen=").nth(1) {
                let text: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
                    .collect();
                break text.parse::<SocketAddr>()?;
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, addr })
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends signal `name` (`TERM`, `KILL`) to the process.
    pub fn signal(&self, name: &str) -> Result<(), Box<dyn std::error::Error>> {
        let pid = self.child.id().ok_or("no pid")?;
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{name} failed").into())
        }
    }
}

// === impl ConfigFile ===

impl ConfigFile {
    /// Writes `yaml` to a fresh file named after `prefix`.
    pub fn write(prefix: &str, yaml: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{:016x}.yaml", unique()));
        std::fs::write(&path, yaml)?;
        Ok(Self(path))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A number no other file of this run has.
fn unique() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or_default()
        ^ u64::from(std::process::id())
        ^ fastrand::u64(..)
}
