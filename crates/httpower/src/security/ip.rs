//! Classifying addresses: which ones an outbound request must not reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// IPv4 ranges that are not public unicast destinations.
const V4_BLOCKED: [Ipv4Net; 14] = [
    // "This network" (RFC 791), including the unspecified 0.0.0.0.
    Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8),
    // Private use (RFC 1918).
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8),
    // Shared address space, carrier-grade NAT (RFC 6598).
    Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10),
    // Loopback.
    Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8),
    // Link-local, including the cloud metadata service at 169.254.169.254.
    Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16),
    // Private use (RFC 1918).
    Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12),
    // IETF protocol assignments (RFC 6890), including DS-Lite and NAT64 discovery.
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 0, 0), 24),
    // Documentation, TEST-NET-1 (RFC 5737).
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 2, 0), 24),
    // Private use (RFC 1918).
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16),
    // Benchmarking (RFC 2544).
    Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15),
    // Documentation, TEST-NET-2.
    Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24),
    // Documentation, TEST-NET-3.
    Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24),
    // Multicast.
    Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4),
    // Reserved (RFC 1112), including the limited broadcast 255.255.255.255.
    Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// The IPv6 global unicast space (RFC 4291): everything outside it is special-purpose,
/// reserved or unassigned.
const V6_GLOBAL_UNICAST: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// Ranges inside the global unicast space that are still not public destinations.
const V6_BLOCKED: [Ipv6Net; 3] = [
    // IETF protocol assignments (RFC 2928): Teredo tunnels, benchmarking, ORCHID and
    // a few anycast services, none of which a client should be calling.
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    // Documentation (RFC 3849).
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    // Documentation (RFC 9637).
    Ipv6Net::new_assert(Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
];

/// Whether `ip` is an address an outbound request guarded against SSRF must not reach:
/// anything that is not a public unicast address.
///
/// IPv4: "this network" 0.0.0.0/8, private 10/8, 172.16/12 and 192.168/16, carrier-grade
/// NAT 100.64/10, loopback 127/8, link-local 169.254/16 (where cloud metadata services
/// live), IETF assignments 192.0.0/24, the three documentation ranges, benchmarking
/// 198.18/15, multicast 224/4 and the reserved 240/4 with the broadcast address.
///
/// IPv6: anything outside the global unicast space 2000::/3, which takes in the
/// unspecified and loopback addresses, unique-local fc00::/7, link-local fe80::/10,
/// site-local fec0::/10, multicast ff00::/8, discard-only 100::/64, local-use NAT64
/// 64:ff9b:1::/48 and all unassigned space; and inside it, the IETF assignments 2001::/23
/// (Teredo, benchmarking, ORCHID) and the documentation ranges 2001:db8::/32 and
/// 3fff::/20.
///
/// An IPv6 address that carries an IPv4 address is judged by the IPv4 address, because
/// that is where the packets end up: IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated
/// `::ffff:0:a.b.c.d`, the deprecated IPv4-compatible `::a.b.c.d`, well-known NAT64
/// `64:ff9b::a.b.c.d` and 6to4 `2002:aabb:ccdd::/48`. So `::ffff:127.0.0.1` and
/// `64:ff9b::a9fe:a9fe` (169.254.169.254) are private, and `::ffff:8.8.8.8` is not.
///
/// ```
/// use httpower::security::is_private;
///
/// assert!(is_private("169.254.169.254".parse().unwrap()));
/// assert!(is_private("::ffff:10.0.0.1".parse().unwrap()));
/// assert!(!is_private("93.184.216.34".parse().unwrap()));
/// assert!(!is_private("2606:4700::1111".parse().unwrap()));
/// ```
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    V4_BLOCKED.iter().any(|net| net.contains(&ip))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    match embedded_v4(ip) {
        Some(v4) => is_private_v4(v4),
        None => !V6_GLOBAL_UNICAST.contains(&ip) || V6_BLOCKED.iter().any(|net| net.contains(&ip)),
    }
}

/// The IPv4 address an IPv6 address carries, for the forms that carry one.
pub(super) fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // IPv4-compatible ::a.b.c.d (including :: and ::1) and IPv4-mapped ::ffff:a.b.c.d.
        [0, 0, 0, 0, 0, 0 | 0xffff, hi, lo] => Some(low(hi, lo)),
        // IPv4-translated ::ffff:0:a.b.c.d (RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(low(hi, lo)),
        // Well-known NAT64 prefix 64:ff9b::/96 (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        // 6to4 2002:aabb:ccdd::/48 (RFC 3056).
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// `ip` with an IPv4-mapped IPv6 address turned into its IPv4 address.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn classification_table() {
        let private = [
            // IPv4
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "64:ff9b:1::1",
            "5f00::1",
            "fbff::1",
            "fe7f::1",
            "4000::1",
            "1fff::1",
            // IPv4 embedded in IPv6
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:0:192.168.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
        ];
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "169.255.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.88.99.1",
            "192.167.255.255",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "203.0.114.1",
            "223.255.255.255",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "2001:4860:4860::8888",
            "2001:200::1",
            "3ffe:ffff::1",
            "::ffff:8.8.8.8",
            "::ffff:0:1.1.1.1",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::8.8.8.8",
        ];
        for text in private {
            let ip: IpAddr = text.parse().unwrap();
            assert!(is_private(ip), "{text} should be private");
        }
        for text in public {
            let ip: IpAddr = text.parse().unwrap();
            assert!(!is_private(ip), "{text} should be public");
        }
    }

    #[test]
    fn embedded_addresses() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let v4 = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(embedded_v4(v6("::ffff:1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_v4(v6("::ffff:0:1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_v4(v6("::1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_v4(v6("64:ff9b::1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_v4(v6("2002:102:304::5")), v4("1.2.3.4"));
        assert_eq!(embedded_v4(v6("2606:4700::1")), None);
        assert_eq!(embedded_v4(v6("64:ff9b:1::1.2.3.4")), None);
        assert_eq!(
            canonical("::ffff:1.2.3.4".parse().unwrap()),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }
}
