//! The SSRF guard of webhook delivery: which addresses a webhook may reach,
//! and a DNS resolver for the HTTP client that refuses a host when any of
//! its addresses is blocked. Because the check runs inside the client's
//! connector, the address checked is the address connected to: a host that
//! resolves to a public address at submit time and to 127.0.0.1 later is
//! still refused (no DNS-rebinding hole).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not an absolute http(s) URL with a host.
    #[error("the webhook URL must be an absolute http:// or https:// URL")]
    NotHttp,
    /// The host is or resolves to a blocked address.
    #[error("the webhook host {host} resolves to {address}, which is not a public address (set webhooks.allow_private to allow it)")]
    Private {
        /// The host as written.
        host: String,
        /// The blocked address.
        address: IpAddr,
    },
    /// The host did not resolve.
    #[error("the webhook host {0} could not be resolved")]
    Unresolvable(String),
}

/// How a host name becomes addresses: the system resolver, or a scripted
/// one in tests (a DNS-rebinding server, say).
type Lookup =
    Arc<dyn Fn(String) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// The resolver the delivery client uses.
#[derive(Clone)]
pub struct GuardedResolver {
    allow_private: bool,
    lookup: Lookup,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GuardedResolver")
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

/// Whether an address must never be reached by a webhook: loopback,
/// private, link-local (cloud metadata included), shared (CGNAT),
/// multicast, unspecified, broadcast, documentation, benchmarking and
/// reserved ranges, in IPv4 and IPv6, with IPv4 embedded in IPv6
/// (mapped, compatible, NAT64, 6to4) checked as IPv4.
pub fn is_blocked(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => is_blocked_v6(v6),
    }
}

/// Checks a URL before a job is accepted: scheme, then every address its
/// host resolves to (a literal address is checked as it is). Encoded forms
/// such as `http://0x7f.1/` are normalised by the URL parser first.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), Refused> {
    let url = Url::parse(url).map_err(|_| Refused::NotHttp)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::NotHttp);
    }
    let host = url.host_str().ok_or(Refused::NotHttp)?.to_owned();
    if allow_private {
        return Ok(());
    }
    if let Some(address) = literal_address(&url) {
        return check_address(&host, address);
    }
    let addresses = resolve_checked(&system_lookup(), &host, false).await?;
    if addresses.is_empty() {
        return Err(Refused::Unresolvable(host));
    }
    Ok(())
}

/// The address of a URL whose host is a literal IP.
pub fn literal_address(url: &Url) -> Option<IpAddr> {
    // The parser has already normalised IPv4 forms such as `0x7f.1`.
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// `Ok` when `address` may be reached.
pub fn check_address(host: &str, address: IpAddr) -> Result<(), Refused> {
    if is_blocked(address) {
        return Err(Refused::Private {
            host: host.to_owned(),
            address,
        });
    }
    Ok(())
}

// === impl GuardedResolver ===

impl GuardedResolver {
    /// A resolver over the system's; `allow_private` turns the check off.
    pub fn new(allow_private: bool) -> Self {
        Self {
            allow_private,
            lookup: system_lookup(),
        }
    }

    /// A resolver over a lookup of the caller's (tests script DNS with it).
    #[cfg(test)]
    pub(crate) fn with_lookup(allow_private: bool, lookup: Lookup) -> Self {
        Self {
            allow_private,
            lookup,
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (allow_private, lookup) = (self.allow_private, self.lookup.clone());
        Box::pin(async move {
            let addresses = resolve_checked(&lookup, name.as_str(), allow_private).await?;
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

/// How long a host name may take to resolve (at submit time the client
/// waits for it).
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            let lookup = tokio::net::lookup_host((host, 0));
            match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                Ok(addresses) => Ok(addresses?.collect()),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the host did not resolve in time",
                )),
            }
        })
    })
}

/// Resolves `host`; when any address is blocked the host is refused as a
/// whole rather than tried on its other addresses.
async fn resolve_checked(
    lookup: &Lookup,
    host: &str,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Refused> {
    let addresses = lookup(host.to_owned())
        .await
        .map_err(|_| Refused::Unresolvable(host.to_owned()))?;
    if !allow_private {
        for address in &addresses {
            check_address(host, address.ip())?;
        }
    }
    Ok(addresses)
}

fn is_blocked_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    address.is_unspecified()
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

fn is_blocked_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    if let Some(v4) = embedded_v4(address) {
        return is_blocked_v4(v4);
    }
    address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        // NAT64 local use (RFC 8215, 64:ff9b:1::/48): never a public host.
        || (segments[0] == 0x64 && segments[1] == 0xff9b && segments[2] == 1)
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || (segments[0] == 0x2001 && segments[1] == 0)
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), SIIT
/// IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = address.segments();
    let low = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if let Some(v4) = address.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !address.is_loopback() && !address.is_unspecified() {
        return Some(low(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

#[cfg(test)]
mod tests;
