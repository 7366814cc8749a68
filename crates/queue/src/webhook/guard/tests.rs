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
];

const ALLOWED: &[&str] = &[
    "1.1.1.1",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "8.8.4.4",
    "93.184.216.34",
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
