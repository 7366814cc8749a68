//! Trust boundary 6: the listener's connection cap, crossed. With a cap of
//! three, a fourth connection is closed as soon as it is accepted, and once
//! one of the three goes away a new connection is served again.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(stream: &mut TcpStream) -> std::io::Result<String> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn tb6_connections_over_the_cap_are_closed_and_room_is_reused(
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let connections = keel_server::Connections {
        max: 3,
        header_timeout: Duration::from_secs(10),
    };
    let server = tokio::spawn(keel_server::serve(
        listener,
        app.into(),
        std::future::pending(),
        Duration::ZERO,
        keel_server::Cutoff::new(),
        connections,
    ));
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(address).await?);
    }
    // Give the accept loop time to take the three (a hang guard, not a measure).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = TcpStream::connect(address).await?;
    let refused = get(&mut fourth).await;
    assert!(
        refused.as_ref().map_or(true, |answer| answer.is_empty()),
        "the fourth connection was served: {refused:?}"
    );
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fifth = TcpStream::connect(address).await?;
    let served = get(&mut fifth).await?;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    server.abort();
    Ok(())
}
