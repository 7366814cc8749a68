//! Trust boundary 8: the webhook delivery client ignores proxy variables. A
//! proxy would resolve the webhook's host itself, so the address guard would
//! never see the address connected to. This test sets `HTTP_PROXY` for its
//! whole process, so it lives alone in its own test binary.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn tb8_webhook_delivery_ignores_proxy_variables() -> Result<(), Box<dyn std::error::Error>> {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = proxy.local_addr()?.port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = tokio::spawn(async move {
        while let Ok((_socket, _)) = proxy.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let proxy_url = format!("http://127.0.0.1:{port}");
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        // Set before any client is built; this binary's only test.
        std::env::set_var(name, &proxy_url);
    }
    let client = keel_queue::delivery_client(Duration::from_secs(2), false)?;
    let sent = client
        .post("http://localhost:9/hook")
        .body("{}")
        .send()
        .await;
    assert!(sent.is_err(), "a loopback webhook is refused by the guard");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing went to the proxy"
    );
    listener.abort();
    Ok(())
}
