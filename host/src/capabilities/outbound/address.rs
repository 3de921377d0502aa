//! Outbound by address, not by name: the ranges a function may not reach unless its allowlist names the address,
//! and how a name becomes the addresses a connection will use. Pure but for the system resolver.
//!
//! A name the allowlist lets through may still resolve to the node's own services (loopback), its network
//! (private, shared, link-local, unique-local ranges) or the cloud's metadata service (169.254.169.254): the
//! classic way out of a sandbox by name. So every address a connection would use is checked after resolution, and
//! the connection goes to exactly the addresses checked (never resolved again, so a name cannot change its answer
//! between the check and the connect).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{OnceLock, RwLock};

/// Why an address is out of reach unless named: the rule a refusal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectedRange {
    CloudMetadata,
    Loopback,
    Unspecified,
    Private,
    Shared,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Broadcast,
}

impl std::fmt::Display for ProtectedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProtectedRange::CloudMetadata => "cloud metadata service",
            ProtectedRange::Loopback => "loopback",
            ProtectedRange::Unspecified => "unspecified address",
            ProtectedRange::Private => "private network (RFC 1918)",
            ProtectedRange::Shared => "shared address space (RFC 6598)",
            ProtectedRange::LinkLocal => "link-local",
            ProtectedRange::UniqueLocal => "unique-local (RFC 4193)",
            ProtectedRange::Multicast => "multicast",
            ProtectedRange::Broadcast => "broadcast",
        })
    }
}

/// The protected range `ip` is in, if any. An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is judged as the
/// IPv4 address it is.
pub fn protected_range(ip: IpAddr) -> Option<ProtectedRange> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => protected_v4(v4),
        IpAddr::V6(v6) => protected_v6(v6),
    }
}

fn protected_v4(ip: Ipv4Addr) -> Option<ProtectedRange> {
    let [a, b, ..] = ip.octets();
    Some(if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(169, 254, 170, 2) {
        ProtectedRange::CloudMetadata
    } else if ip.is_loopback() {
        ProtectedRange::Loopback
    } else if ip.is_unspecified() || a == 0 {
        ProtectedRange::Unspecified
    } else if ip.is_private() {
        ProtectedRange::Private
    } else if a == 100 && (64..128).contains(&b) {
        ProtectedRange::Shared
    } else if ip.is_link_local() {
        ProtectedRange::LinkLocal
    } else if ip.is_multicast() {
        ProtectedRange::Multicast
    } else if ip.is_broadcast() {
        ProtectedRange::Broadcast
    } else {
        return None;
    })
}

fn protected_v6(ip: Ipv6Addr) -> Option<ProtectedRange> {
    // AWS's IPv6 metadata endpoint.
    let metadata = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    Some(if ip == metadata {
        ProtectedRange::CloudMetadata
    } else if ip.is_loopback() {
        ProtectedRange::Loopback
    } else if ip.is_unspecified() {
        ProtectedRange::Unspecified
    } else if ip.is_unicast_link_local() {
        ProtectedRange::LinkLocal
    } else if ip.is_unique_local() {
        ProtectedRange::UniqueLocal
    } else if ip.is_multicast() {
        ProtectedRange::Multicast
    } else {
        return None;
    })
}

/// An allowlist entry that names addresses: an IP (with a port, or meaning the scheme's default port), a range in
/// CIDR form (any port), or `localhost` (which can only mean loopback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NamedAddresses {
    Ip { ip: IpAddr, port: Option<u16> },
    Range { network: IpAddr, prefix: u8 },
    Loopback { port: Option<u16> },
}

impl NamedAddresses {
    /// The addresses `entry` names, if it names any (a host name names none).
    pub(super) fn parse(entry: &str) -> Option<Self> {
        if let Some((network, prefix)) = entry.split_once('/') {
            let network: IpAddr = bare_host(network).parse().ok()?;
            let prefix: u8 = prefix.parse().ok()?;
            let bits = if network.is_ipv4() { 32 } else { 128 };
            return (prefix <= bits).then_some(NamedAddresses::Range { network: network.to_canonical(), prefix });
        }
        if let Ok(address) = entry.parse::<SocketAddr>() {
            return Some(NamedAddresses::Ip { ip: address.ip().to_canonical(), port: Some(address.port()) });
        }
        if let Ok(ip) = bare_host(entry).parse::<IpAddr>() {
            return Some(NamedAddresses::Ip { ip: ip.to_canonical(), port: None });
        }
        let (host, port) = match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse().ok()?)),
            None => (entry, None),
        };
        host.eq_ignore_ascii_case("localhost").then_some(NamedAddresses::Loopback { port })
    }

    /// Whether this entry names `address` (`default_port` is what an entry without a port means).
    pub(super) fn names(&self, address: SocketAddr, default_port: u16) -> bool {
        let ip = address.ip().to_canonical();
        match *self {
            NamedAddresses::Ip { ip: named, port } => named == ip && port.unwrap_or(default_port) == address.port(),
            NamedAddresses::Range { network, prefix } => in_range(ip, network, prefix),
            NamedAddresses::Loopback { port } => ip.is_loopback() && port.unwrap_or(default_port) == address.port(),
        }
    }
}

fn in_range(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

/// Names the host operator pinned to addresses (`[outbound] resolve` in the host config): they resolve to these,
/// never through DNS. For names a private network gives, and for tests, which must not depend on outside DNS.
fn pinned() -> &'static RwLock<HashMap<String, Vec<IpAddr>>> {
    static PINNED: OnceLock<RwLock<HashMap<String, Vec<IpAddr>>>> = OnceLock::new();
    PINNED.get_or_init(RwLock::default)
}

/// Pins each name of `names` to its addresses (see [`pinned`]), replacing any earlier pin of the same name.
pub fn pin_names(names: impl IntoIterator<Item = (String, Vec<IpAddr>)>) {
    let mut pinned = pinned().write().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (name, addresses) in names {
        pinned.insert(name.to_ascii_lowercase(), addresses);
    }
}

/// `host` without the brackets a URI puts around an IPv6 address (`[::1]` is `::1`).
pub(super) fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The addresses a connection to `host:port` would use: the IP itself, a pinned name's addresses, or what the
/// system resolver answers.
pub(super) async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let bare = bare_host(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let pinned =
        pinned().read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&bare.to_ascii_lowercase()).cloned();
    if let Some(addresses) = pinned {
        return Ok(addresses.into_iter().map(|ip| SocketAddr::new(ip, port)).collect());
    }
    Ok(tokio::net::lookup_host((bare, port)).await?.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(ip: &str) -> Option<ProtectedRange> {
        protected_range(ip.parse().expect("an IP"))
    }

    #[test]
    fn the_ranges_a_function_may_not_reach_by_name() {
        assert_eq!(range("169.254.169.254"), Some(ProtectedRange::CloudMetadata));
        assert_eq!(range("fd00:ec2::254"), Some(ProtectedRange::CloudMetadata));
        assert_eq!(range("127.0.0.1"), Some(ProtectedRange::Loopback));
        assert_eq!(range("127.3.2.1"), Some(ProtectedRange::Loopback));
        assert_eq!(range("::1"), Some(ProtectedRange::Loopback));
        assert_eq!(range("::ffff:127.0.0.1"), Some(ProtectedRange::Loopback), "IPv4 written as IPv6");
        assert_eq!(range("0.0.0.0"), Some(ProtectedRange::Unspecified));
        assert_eq!(range("::"), Some(ProtectedRange::Unspecified));
        for private in ["10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1"] {
            assert_eq!(range(private), Some(ProtectedRange::Private), "{private}");
        }
        assert_eq!(range("100.64.0.1"), Some(ProtectedRange::Shared));
        assert_eq!(range("169.254.1.1"), Some(ProtectedRange::LinkLocal));
        assert_eq!(range("fe80::1"), Some(ProtectedRange::LinkLocal));
        assert_eq!(range("fd12:3456::1"), Some(ProtectedRange::UniqueLocal));
        assert_eq!(range("224.0.0.1"), Some(ProtectedRange::Multicast));
        assert_eq!(range("255.255.255.255"), Some(ProtectedRange::Broadcast));
        for public in ["93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "8.8.8.8"] {
            assert_eq!(range(public), None, "{public}");
        }
    }

    #[test]
    fn an_entry_names_an_address_a_range_or_loopback_and_a_host_name_names_none() {
        let at = |s: &str| s.parse::<SocketAddr>().expect("an address");
        let ip = NamedAddresses::parse("127.0.0.1:9000").expect("an address entry");
        assert!(ip.names(at("127.0.0.1:9000"), 80));
        assert!(!ip.names(at("127.0.0.1:9001"), 80), "another port is not named");
        assert!(ip.names(at("[::ffff:127.0.0.1]:9000"), 80));
        let bare = NamedAddresses::parse("10.0.0.7").expect("an address entry");
        assert!(bare.names(at("10.0.0.7:443"), 443) && !bare.names(at("10.0.0.7:8443"), 443));
        let range = NamedAddresses::parse("10.0.0.0/8").expect("a range");
        assert!(range.names(at("10.200.3.4:5432"), 80) && !range.names(at("11.0.0.1:80"), 80));
        let v6 = NamedAddresses::parse("fd00::/8").expect("a v6 range");
        assert!(v6.names(at("[fd12::1]:80"), 80) && !v6.names(at("10.0.0.1:80"), 80));
        let everything = NamedAddresses::parse("0.0.0.0/0").expect("a range");
        assert!(everything.names(at("169.254.169.254:80"), 80));
        let localhost = NamedAddresses::parse("localhost:8080").expect("loopback");
        assert!(localhost.names(at("127.0.0.1:8080"), 80) && localhost.names(at("[::1]:8080"), 80));
        assert!(!localhost.names(at("127.0.0.1:8081"), 80));
        assert_eq!(
            NamedAddresses::parse("[::1]:8080"),
            Some(NamedAddresses::Ip { ip: "::1".parse().unwrap(), port: Some(8080) })
        );
        for name in ["api.example.com", "api.example.com:443", "*", "10.0.0.0/33", "localhost:x"] {
            assert_eq!(NamedAddresses::parse(name), None, "{name}");
        }
    }

    #[tokio::test]
    async fn a_pinned_name_resolves_to_its_addresses_without_dns() {
        pin_names([("Pinned.Test".to_owned(), vec!["169.254.169.254".parse().unwrap(), "10.0.0.1".parse().unwrap()])]);
        let addresses = resolve("pinned.test", 8080).await.expect("pinned");
        assert_eq!(addresses, [at("169.254.169.254:8080"), at("10.0.0.1:8080")]);
        assert_eq!(resolve("[::1]", 80).await.expect("a literal"), [at("[::1]:80")]);

        fn at(s: &str) -> SocketAddr {
            s.parse().expect("an address")
        }
    }
}
