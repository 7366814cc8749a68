//! A `redis-server` of a test's own, on a free port of 127.0.0.1, stopped
//! when dropped: tests that stop or restart Redis never touch a shared one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports tried before giving up on starting a server.
const START_ATTEMPTS: usize = 5;

/// A running `redis-server` (needs `redis-server` on the `PATH`).
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

// === impl RedisServer ===

impl RedisServer {
    /// Starts one on a free port and waits until it answers. A port seen
    /// free can be taken before the server binds it (by another test's
    /// server or a connection's local end), so a server that cannot bind
    /// is started again on another port.
    pub fn start() -> std::io::Result<Self> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut server = Self { port, child: None };
            match server.restart() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("redis-server did not start")))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it (its data is gone: it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until this
    /// server (not another one on the port) answers.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited() {
                break;
            }
            if self.answering_pid() == Some(pid) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        Err(std::io::Error::other(format!(
            "redis-server on port {} did not start answering within 10 s",
            self.port
        )))
    }

    /// Whether the server started last has exited (it could not bind).
    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }

    /// The process id of the server answering on the port, if one does.
    fn answering_pid(&self) -> Option<u32> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        stream.write_all(b"INFO server\r\n").ok()?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        while !reply.ends_with(b"\r\n\r\n") && reply.len() < 64 * 1024 {
            let read = stream.read(&mut chunk).ok()?;
            if read == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..read]);
        }
        let reply = String::from_utf8_lossy(&reply);
        let line = reply.lines().find(|line| line.starts_with("process_id:"))?;
        line["process_id:".len()..].trim().parse().ok()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
