//! A one-purpose HTTP/1.1 server: records each request it receives and
//! answers every one with the same canned response.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One request as the upstream saw it.
#[derive(Debug)]
pub struct Captured {
    /// `POST /path?query`.
    pub request_line: String,
    /// Lower-case header names and values, sorted, without `host` and
    /// `content-length` (which vary with the port and body).
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// A running capture server.
pub struct Capture {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The requests, in arrival order.
    pub requests: mpsc::UnboundedReceiver<Captured>,
}

/// Starts a server that answers every request with `status` and the JSON `body`.
pub async fn start(status: u16, body: &'static str) -> std::io::Result<Capture> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (sender, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let _ = serve(socket, status, body, &sender).await;
            });
        }
    });
    Ok(Capture { addr, requests })
}

/// Reads one request, records it, then answers: a client that got the
/// answer finds its request already recorded.
async fn serve(
    mut socket: TcpStream,
    status: u16,
    body: &str,
    sender: &mpsc::UnboundedSender<Captured>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body_bytes = buffer[head_end + 4..].to_vec();
    while body_bytes.len() < length {
        let mut chunk = [0u8; 4096];
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body_bytes.extend_from_slice(&chunk[..read]);
    }
    headers.retain(|(name, _)| name != "host" && name != "content-length");
    headers.sort();
    let _ = sender.send(Captured {
        request_line,
        headers,
        body: body_bytes,
    });
    let response = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}
