//! The host policy: which hosts and addresses outbound requests may reach.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use url::{Host, Url};

use super::ip::{canonical, is_private};
use super::Violation;

/// Which hosts and addresses outbound requests may reach.
///
/// Two independent rules, both off by default:
///
/// * **Allowed hosts.** When the list is not empty, a URL's host must match one of its
///   patterns:
///   * `api.example.com`: exactly that host (ASCII case-insensitive, a trailing dot
///     ignored; internationalised names are compared in their `xn--` form);
///   * `*.example.com`: any subdomain of `example.com` at any depth, but not
///     `example.com` itself (list both to allow both);
///   * `203.0.113.7` or `[2001:db8::7]`: that IP literal in the URL.
///
///   An empty list allows any host.
/// * **Block private IPs.** Refuses every address [`is_private`](super::is_private)
///   classifies as non-public, whether the URL spells it as a literal or a name resolves
///   to it (the latter is checked by [`GuardedResolver`](super::GuardedResolver)).
///
/// **Exemptions** (`exempt_cidr`) punch holes in the private-address rule for addresses
/// you mean to reach: `127.0.0.1/32` for tests against a local server, `10.1.2.0/24` for
/// a deliberate internal service, the address of an outbound proxy. An exempt address
/// still has to come from an allowed host.
///
/// ```
/// use httpower::security::{HostPolicy, Violation};
///
/// let policy = HostPolicy::builder()
///     .allowed_hosts(["api.example.com", "*.stripe.com"])
///     .block_private_ips(true)
///     .exempt_cidr("127.0.0.1/32".parse().unwrap())
///     .build()
///     .unwrap();
///
/// assert!(policy.check_url(&"https://api.stripe.com/v1".parse().unwrap()).is_ok());
/// assert!(matches!(
///     policy.check_url(&"https://stripe.com/".parse().unwrap()),
///     Err(Violation::HostNotAllowed { .. }),
/// ));
/// assert!(policy.check_ip("api.example.com", "10.0.0.1".parse().unwrap()).is_err());
/// assert!(policy.check_ip("api.example.com", "127.0.0.1".parse().unwrap()).is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    allowed: Vec<HostPattern>,
    block_private_ips: bool,
    exempt: Vec<IpNet>,
}

impl HostPolicy {
    /// Starts a policy with nothing enforced.
    pub fn builder() -> HostPolicyBuilder {
        HostPolicyBuilder::default()
    }

    /// Whether the policy enforces anything: an allowed-host list or private-IP blocking.
    /// An inactive policy still refuses non-HTTP schemes in [`check_url`](Self::check_url).
    pub fn is_active(&self) -> bool {
        !self.allowed.is_empty() || self.block_private_ips
    }

    /// Whether private addresses are refused.
    pub fn blocks_private_ips(&self) -> bool {
        self.block_private_ips
    }

    /// Whether `ip` falls in an exempt range (an IPv4-mapped IPv6 address is also checked
    /// as its IPv4 address).
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        let plain = canonical(ip);
        self.exempt
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&plain))
    }

    /// Checks a URL before a request is sent to it, or before a redirect is followed.
    ///
    /// The scheme must be `http` or `https`; the host must be allowed; a host that is an
    /// IP literal is checked against the private-address rule at once (names are checked
    /// when they are resolved).
    pub fn check_url(&self, url: &Url) -> Result<(), Violation> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(Violation::SchemeNotAllowed {
                    scheme: other.to_owned(),
                })
            }
        }
        match url.host() {
            Some(host) => self.check_parsed_host(host),
            None => Err(Violation::MissingHost),
        }
    }

    /// Checks a host as written in a URL authority (`api.example.com`, `10.0.0.1`,
    /// `[::1]`) against the allowed hosts and, for an IP literal, the private-address
    /// rule. A host that does not parse is not allowed.
    pub fn check_host(&self, host: &str) -> Result<(), Violation> {
        match Host::parse(host) {
            Ok(Host::Domain(name)) => self.check_parsed_host(Host::Domain(&name)),
            Ok(Host::Ipv4(ip)) => self.check_parsed_host(Host::Ipv4(ip)),
            Ok(Host::Ipv6(ip)) => self.check_parsed_host(Host::Ipv6(ip)),
            Err(_) => Err(Violation::HostNotAllowed {
                host: host.escape_default().to_string(),
            }),
        }
    }

    /// Checks one address `host` resolved to (or that a URL names) against the
    /// private-address rule and its exemptions. `host` only names the host in the error.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Violation> {
        if self.block_private_ips && is_private(ip) && !self.is_exempt(ip) {
            return Err(Violation::BlockedPrivateIp {
                host: host.to_owned(),
                ip,
            });
        }
        Ok(())
    }

    /// Keeps the addresses `host` resolved to that the policy allows. Fails with the
    /// first refusal when addresses were given and none is allowed.
    pub(super) fn filter_addrs(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Violation> {
        let mut refused = None;
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|addr| match self.check_ip(host, addr.ip()) {
                Ok(()) => true,
                Err(violation) => {
                    refused.get_or_insert(violation);
                    false
                }
            })
            .collect();
        match refused {
            Some(violation) if kept.is_empty() => Err(violation),
            _ => Ok(kept),
        }
    }

    fn check_parsed_host(&self, host: Host<&str>) -> Result<(), Violation> {
        match host {
            Host::Domain(domain) => {
                let name = normalize(domain);
                if !self.allowed.is_empty()
                    && !self
                        .allowed
                        .iter()
                        .any(|pattern| pattern.matches_name(&name))
                {
                    return Err(Violation::HostNotAllowed { host: name });
                }
                Ok(())
            }
            Host::Ipv4(ip) => self.check_literal(IpAddr::V4(ip)),
            Host::Ipv6(ip) => self.check_literal(IpAddr::V6(ip)),
        }
    }

    fn check_literal(&self, ip: IpAddr) -> Result<(), Violation> {
        let shown = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        if !self.allowed.is_empty() && !self.allowed.iter().any(|pattern| pattern.matches_ip(ip)) {
            return Err(Violation::HostNotAllowed { host: shown });
        }
        self.check_ip(&shown, ip)
    }
}

/// Builds a [`HostPolicy`]; see there for what each setting means.
#[derive(Debug, Clone, Default)]
pub struct HostPolicyBuilder {
    allowed: Vec<String>,
    block_private_ips: bool,
    exempt: Vec<IpNet>,
}

impl HostPolicyBuilder {
    /// Adds host patterns to the allowed list (`api.example.com`, `*.example.com`, an IP
    /// literal). Patterns are validated by [`build`](Self::build).
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Adds one host pattern to the allowed list.
    pub fn allowed_host(mut self, host: impl Into<String>) -> Self {
        self.allowed.push(host.into());
        self
    }

    /// Refuses private, loopback, link-local and other non-public addresses (default
    /// off).
    pub fn block_private_ips(mut self, block: bool) -> Self {
        self.block_private_ips = block;
        self
    }

    /// Exempts a range from the private-address rule, so that a local test server or a
    /// deliberate internal service stays reachable.
    pub fn exempt_cidr(mut self, range: IpNet) -> Self {
        self.exempt.push(range);
        self
    }

    /// Exempts several ranges; see [`exempt_cidr`](Self::exempt_cidr).
    pub fn exempt_cidrs(mut self, ranges: impl IntoIterator<Item = IpNet>) -> Self {
        self.exempt.extend(ranges);
        self
    }

    /// Validates the patterns and builds the policy.
    pub fn build(self) -> Result<HostPolicy, InvalidHostPattern> {
        let allowed = self
            .allowed
            .iter()
            .map(|pattern| HostPattern::parse(pattern))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HostPolicy {
            allowed,
            block_private_ips: self.block_private_ips,
            exempt: self.exempt,
        })
    }
}

/// An allowed-host pattern that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allowed host pattern `{pattern}`: {reason}")]
pub struct InvalidHostPattern {
    pattern: String,
    reason: &'static str,
}

impl InvalidHostPattern {
    fn new(pattern: &str, reason: &'static str) -> Self {
        InvalidHostPattern {
            pattern: pattern.escape_default().to_string(),
            reason,
        }
    }

    /// The pattern as given (with control and non-ASCII characters escaped).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        self.reason
    }
}

/// One parsed allowed-host pattern.
#[derive(Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this normalized name.
    Exact(String),
    /// Any name ending in this suffix, which starts with a dot (`.example.com`).
    Subdomains(String),
    /// This IP literal.
    Ip(IpAddr),
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Subdomains(suffix) => write!(f, "*{suffix}"),
            HostPattern::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl HostPattern {
    fn parse(pattern: &str) -> Result<Self, InvalidHostPattern> {
        let text = pattern.trim();
        if text.is_empty() {
            return Err(InvalidHostPattern::new(pattern, "it is empty"));
        }
        if text == "*" {
            return Err(InvalidHostPattern::new(
                pattern,
                "`*` alone is not a pattern; leave the list empty to allow any host",
            ));
        }
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if rest.contains('*') {
            return Err(InvalidHostPattern::new(
                pattern,
                "a wildcard is only allowed as a leading `*.`",
            ));
        }
        if rest.contains(['/', ':', '@', '?', '#']) && !rest.starts_with('[') {
            return Err(InvalidHostPattern::new(
                pattern,
                "give a host name only, without scheme, port or path",
            ));
        }
        let rest = rest.strip_suffix('.').unwrap_or(rest);
        let host = Host::parse(rest)
            .map_err(|_| InvalidHostPattern::new(pattern, "it is not a valid host name"))?;
        match (host, wildcard) {
            (Host::Domain(name), false) => Ok(HostPattern::Exact(normalize(&name))),
            (Host::Domain(name), true) => {
                Ok(HostPattern::Subdomains(format!(".{}", normalize(&name))))
            }
            (Host::Ipv4(ip), false) => Ok(HostPattern::Ip(IpAddr::V4(ip))),
            (Host::Ipv6(ip), false) => Ok(HostPattern::Ip(IpAddr::V6(ip))),
            (Host::Ipv4(_) | Host::Ipv6(_), true) => Err(InvalidHostPattern::new(
                pattern,
                "an IP address cannot have a wildcard",
            )),
        }
    }

    fn matches_name(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == name,
            HostPattern::Subdomains(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
            HostPattern::Ip(_) => false,
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            HostPattern::Ip(allowed) => canonical(*allowed) == canonical(ip),
            HostPattern::Exact(_) | HostPattern::Subdomains(_) => false,
        }
    }
}

/// A domain name as compared: ASCII-lowercased, without a trailing dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn policy(hosts: &[&str]) -> HostPolicy {
        HostPolicy::builder()
            .allowed_hosts(hosts.iter().copied())
            .build()
            .unwrap()
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn empty_policy_allows_any_http_host() {
        let open = HostPolicy::builder().build().unwrap();
        assert!(!open.is_active());
        assert_eq!(open.check_url(&url("http://127.0.0.1/")), Ok(()));
        assert_eq!(open.check_url(&url("https://anything.example/")), Ok(()));
        assert_eq!(
            open.check_url(&url("ftp://example.com/")),
            Err(Violation::SchemeNotAllowed {
                scheme: "ftp".to_owned()
            })
        );
        assert_eq!(
            open.check_url(&url("file:///etc/passwd")),
            Err(Violation::SchemeNotAllowed {
                scheme: "file".to_owned()
            })
        );
        assert_eq!(open.check_ip("h", "10.0.0.1".parse().unwrap()), Ok(()));
    }

    #[test]
    fn host_patterns() {
        let p = policy(&[
            "API.Example.com.",
            "*.stripe.com",
            "10.0.0.5",
            "[2001:db8::5]",
        ]);
        assert!(p.is_active());
        let allowed = [
            "https://api.example.com/",
            "https://API.EXAMPLE.COM/x",
            "https://api.example.com./",
            "https://api.example.com:8443/",
            "https://api.stripe.com/",
            "https://a.b.stripe.com/",
            "http://10.0.0.5/",
            "http://[2001:db8::5]:8080/",
            "http://[::ffff:10.0.0.5]/",
        ];
        for text in allowed {
            assert_eq!(p.check_url(&url(text)), Ok(()), "{text}");
        }
        let refused = [
            ("https://example.com/", "example.com"),
            ("https://evil-api.example.com/", "evil-api.example.com"),
            (
                "https://api.example.com.evil.net/",
                "api.example.com.evil.net",
            ),
            ("https://stripe.com/", "stripe.com"),
            ("https://notstripe.com/", "notstripe.com"),
            ("https://stripe.com.evil.net/", "stripe.com.evil.net"),
            ("http://10.0.0.6/", "10.0.0.6"),
            ("http://[2001:db8::6]/", "[2001:db8::6]"),
            // The decimal spelling of 10.0.0.6 is normalized by URL parsing.
            ("http://167772166/", "10.0.0.6"),
        ];
        for (text, host) in refused {
            assert_eq!(
                p.check_url(&url(text)),
                Err(Violation::HostNotAllowed {
                    host: host.to_owned()
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn internationalised_names_match_in_punycode() {
        let p = policy(&["bücher.example"]);
        assert_eq!(p.check_url(&url("https://BÜCHER.example/")), Ok(()));
        assert_eq!(p.check_url(&url("https://xn--bcher-kva.example/")), Ok(()));
    }

    #[test]
    fn invalid_patterns() {
        for bad in [
            "",
            "  ",
            "*",
            "*.",
            "api.*.com",
            "*.*.com",
            "https://api.example.com",
            "api.example.com:443",
            "api.example.com/path",
            "user@host",
            "*.10.0.0.1",
            "bad host",
        ] {
            let err = HostPolicy::builder().allowed_host(bad).build().unwrap_err();
            assert!(
                err.to_string().contains("invalid allowed host pattern"),
                "{bad}"
            );
        }
        let err = HostPolicy::builder().allowed_host("*").build().unwrap_err();
        assert_eq!(err.pattern(), "*");
        assert!(err.reason().contains("empty"));
    }

    #[test]
    fn private_literals_are_blocked_at_once() {
        let p = HostPolicy::builder()
            .block_private_ips(true)
            .build()
            .unwrap();
        assert!(p.is_active());
        assert!(p.blocks_private_ips());
        for (text, host, ip) in [
            ("http://127.0.0.1/", "127.0.0.1", "127.0.0.1"),
            (
                "http://169.254.169.254/latest",
                "169.254.169.254",
                "169.254.169.254",
            ),
            ("http://[::1]/", "[::1]", "::1"),
            (
                "http://[::ffff:127.0.0.1]/",
                "[::ffff:127.0.0.1]",
                "::ffff:127.0.0.1",
            ),
            ("http://2130706433/", "127.0.0.1", "127.0.0.1"),
            ("http://0x7f.1/", "127.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(
                p.check_url(&url(text)),
                Err(Violation::BlockedPrivateIp {
                    host: host.to_owned(),
                    ip: ip.parse().unwrap()
                }),
                "{text}"
            );
        }
        assert_eq!(p.check_url(&url("http://93.184.216.34/")), Ok(()));
        // Names are left to the resolver.
        assert_eq!(p.check_url(&url("http://localhost/")), Ok(()));
    }

    #[test]
    fn exemptions() {
        let p = HostPolicy::builder()
            .block_private_ips(true)
            .exempt_cidr("127.0.0.1/32".parse().unwrap())
            .exempt_cidrs(["10.1.0.0/16".parse().unwrap()])
            .build()
            .unwrap();
        let ok = |ip: &str| p.check_ip("h", ip.parse().unwrap());
        assert_eq!(ok("127.0.0.1"), Ok(()));
        assert_eq!(ok("::ffff:127.0.0.1"), Ok(()));
        assert_eq!(ok("10.1.200.3"), Ok(()));
        assert!(ok("127.0.0.2").is_err());
        assert!(ok("::1").is_err());
        assert!(ok("10.2.0.1").is_err());
        assert!(p.is_exempt("10.1.0.1".parse().unwrap()));
        assert_eq!(p.check_url(&url("http://127.0.0.1:8080/")), Ok(()));

        // An exempt address must still come from an allowed host.
        let p = HostPolicy::builder()
            .allowed_hosts(["api.example.com"])
            .block_private_ips(true)
            .exempt_cidr("127.0.0.1/32".parse().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            p.check_url(&url("http://127.0.0.1/")),
            Err(Violation::HostNotAllowed {
                host: "127.0.0.1".to_owned()
            })
        );
    }

    #[test]
    fn check_host_strings() {
        let p = HostPolicy::builder()
            .allowed_hosts(["api.example.com", "127.0.0.1"])
            .block_private_ips(true)
            .build()
            .unwrap();
        assert_eq!(p.check_host("API.example.com."), Ok(()));
        assert!(matches!(
            p.check_host("other.example.com"),
            Err(Violation::HostNotAllowed { .. })
        ));
        assert!(matches!(
            p.check_host("127.0.0.1"),
            Err(Violation::BlockedPrivateIp { .. })
        ));
        assert!(matches!(
            p.check_host("bad host\r\n"),
            Err(Violation::HostNotAllowed { host }) if host == "bad host\\r\\n"
        ));
    }

    #[test]
    fn filtering_resolved_addresses() {
        let p = HostPolicy::builder()
            .block_private_ips(true)
            .build()
            .unwrap();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        // Mixed answers keep only the public addresses.
        assert_eq!(
            p.filter_addrs("h", [addr("10.0.0.1:0"), addr("93.184.216.34:0")]),
            Ok(vec![addr("93.184.216.34:0")])
        );
        // All private: the first refusal is the error.
        assert_eq!(
            p.filter_addrs("h", [addr("127.0.0.1:0"), addr("[::1]:0")]),
            Err(Violation::BlockedPrivateIp {
                host: "h".to_owned(),
                ip: "127.0.0.1".parse().unwrap()
            })
        );
        // Nothing to filter is not a violation.
        assert_eq!(p.filter_addrs("h", []), Ok(vec![]));
    }
}
