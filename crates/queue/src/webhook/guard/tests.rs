//! WH-4 fixtures (Svix's list plus metadata, ULA, link-local and mapped forms).

use super::*;

const BLOCKED: &[&str] = &[
    "10.254.0.0",
    "192.168.10.65",
    "172.16.10.65",
    "0.1.2.3",
    "0.0.0.0",
    "127.0.0.1",
    "169.254.45.1",
    "255.255.255.255",
    "192.0.2.255",
    "198.51.100.65",
    "203.0.113.6",
    "100.100.0.0",
    "192.0.0.0",
    "192.0.0.255",
    "250.10.20.30",
    "198.18.0.0",
    "169.254.169.254",
    "224.0.0.1",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:0.0.0.1",
    "::127.0.0.1",
    "fc00::1",
    "fd00:ec2::254",
    "fe80::1",
    "ff02::1",
    "2001:db8::1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "::ffff:169.254.169.254",
    // Trust boundary 8: SIIT (::ffff:0:0/96) and NAT64 local use (64:ff9b:1::/48).
    "::ffff:0:7f00:1",
    "::ffff:0:a9fe:a9fe",
    "64:ff9b:1::7f00:1",
    "64:ff9b:1:ffff::808:808",
];

const ALLOWED: &[&str] = &[
    "1.1.1.1",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "8.8.4.4",
    "93.184.216.34",
    "::ffff:0:808:808",
    "64:ff9b::808:808",
];

/// WH-4: every blocked fixture is refused as a literal address.
#[test]
fn wh4_blocked_fixtures_are_refused() -> Result<(), std::net::AddrParseError> {
    for text in BLOCKED {
        let address: IpAddr = text.parse()?;
        assert!(is_blocked(address), "{text} should be blocked");
    }
    Ok(())
}

/// WH-4: public fixtures pass.
#[test]
fn wh4_public_fixtures_are_allowed() -> Result<(), std::net::AddrParseError> {
    for text in ALLOWED {
        let address: IpAddr = text.parse()?;
        assert!(!is_blocked(address), "{text} should be allowed");
    }
    Ok(())
}

/// WH-4: URLs with blocked literal hosts, encoded IPv4 forms, and other
/// schemes are refused before a job is accepted; `localhost` is refused
/// through resolution.
#[tokio::test]
async fn wh4_urls_to_private_hosts_are_refused_before_acceptance() {
    for url in [
        "http://127.0.0.1:9/hook",
        "http://0x7f.1/hook",
        "http://2130706433/hook",
        "http://0177.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://localhost:9/hook",
    ] {
        assert!(
            matches!(check_url(url, false).await, Err(Refused::Private { .. })),
            "{url} should be refused"
        );
    }
    for url in [
        "ftp://example.com/",
        "file:///etc/passwd",
        "not a url",
        "gopher://1.1.1.1/",
    ] {
        assert_eq!(check_url(url, false).await, Err(Refused::NotHttp), "{url}");
    }
    assert_eq!(check_url("http://1.1.1.1/hook", false).await, Ok(()));
    assert_eq!(check_url("http://127.0.0.1:9/hook", true).await, Ok(()));
}

/// WH-5: the resolver inside the client refuses a host with a blocked
/// address, so a connection to it is never opened.
#[tokio::test]
async fn wh5_the_connecting_resolver_refuses_blocked_hosts(
) -> Result<(), Box<dyn std::error::Error>> {
    let name: Name = "localhost".parse()?;
    assert!(GuardedResolver::new(false).resolve(name).await.is_err());
    let name: Name = "localhost".parse()?;
    assert!(GuardedResolver::new(true).resolve(name).await.is_ok());
    Ok(())
}

/// A scripted DNS server: each lookup of any name answers the next entry
/// (the last one for ever), like a rebinding server with TTL 0.
fn scripted_lookup(answers: Vec<Vec<SocketAddr>>) -> Lookup {
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Arc::new(move |_host: String| {
        let index = asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = answers
            .get(index.min(answers.len().saturating_sub(1)))
            .cloned()
            .unwrap_or_default();
        Box::pin(async move { Ok(answer) })
    })
}

/// A loopback listener that counts the connections it accepts.
async fn counting_listener() -> std::io::Result<(
    u16,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    Ok((port, count, task))
}

/// WH-5 with a rebinding DNS server: the host answers a public address to
/// the check made at submit time and 127.0.0.1 to the delivery client; the
/// client's own resolver refuses it, so the loopback listener sees no
/// connection. A host with one public and one blocked record is refused as
/// a whole, not tried on the public one.
#[tokio::test]
async fn wh5_a_rebinding_host_never_reaches_loopback() -> Result<(), Box<dyn std::error::Error>> {
    let (port, connections, listener) = counting_listener().await?;
    let public: SocketAddr = "1.1.1.1:0".parse()?;
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let cases = [
        vec![vec![public], vec![loopback]],
        vec![vec![public, loopback]],
    ];
    for answers in cases {
        let resolver = GuardedResolver::with_lookup(false, scripted_lookup(answers.clone()));
        if answers.len() > 1 {
            let checked = resolver.resolve("hooks.example.com".parse()?).await;
            assert!(
                checked.is_ok(),
                "the first answer (public) passes the submit-time check"
            );
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(2))
            .dns_resolver(Arc::new(resolver))
            .build()?;
        let sent = client
            .post(format!("http://hooks.example.com:{port}/hook"))
            .body("{}")
            .send()
            .await;
        let error = sent.err().ok_or("the delivery was not refused")?;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut refused = false;
        while let Some(current) = source {
            refused |= matches!(
                current.downcast_ref::<Refused>(),
                Some(Refused::Private { .. })
            );
            source = current.source();
        }
        assert!(refused, "refused by the guard: {error}");
    }
    tokio::task::yield_now().await;
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    listener.abort();
    Ok(())
}
