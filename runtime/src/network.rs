//! The pod's network: which addresses its containers may use.
//!
//! Containers of a pod share the host process, so they already meet on
//! localhost. This module decides, per socket address, what a guest may do:
//! loopback is the pod's own; anything else is egress and follows the pod's
//! [`EgressPolicy`]; `hostNetwork: true` allows everything.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Where containers may connect outside their pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Allowed destinations; empty means no egress at all.
    pub allow: Vec<EgressRule>,
}

/// One allowed destination: an address range and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    pub network: IpAddr,
    pub prefix_len: u8,
    pub port: Option<u16>,
}

impl EgressPolicy {
    /// Everything allowed.
    pub fn allow_all() -> EgressPolicy {
        EgressPolicy {
            allow: vec![
                EgressRule {
                    network: IpAddr::from([0, 0, 0, 0]),
                    prefix_len: 0,
                    port: None,
                },
                EgressRule {
                    network: IpAddr::from([0u16; 8]),
                    prefix_len: 0,
                    port: None,
                },
            ],
        }
    }

    /// Parses a comma-separated list of `CIDR[:port]` / `IP[:port]` rules
    /// (`10.0.0.0/8, 192.168.1.5:443, [::1]:80`, `*` for everything).
    ///
    /// # Errors
    ///
    /// The rule that is not understood, as text.
    pub fn parse(text: &str) -> Result<EgressPolicy, String> {
        let mut policy = EgressPolicy::default();
        for rule in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            if rule == "*" {
                policy.allow.extend(EgressPolicy::allow_all().allow);
                continue;
            }
            policy.allow.push(parse_rule(rule).ok_or_else(|| {
                format!("`{rule}` is not an address rule (write e.g. 10.0.0.0/8 or 192.0.2.7:443)")
            })?);
        }
        Ok(policy)
    }

    pub(crate) fn allows(&self, addr: &SocketAddr) -> bool {
        self.allow.iter().any(|rule| rule.matches(addr))
    }
}

fn parse_rule(rule: &str) -> Option<EgressRule> {
    let (address, port) = if let Some(rest) = rule.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        (
            address,
            after.strip_prefix(':').map(str::parse).transpose().ok()?,
        )
    } else if rule.matches(':').count() == 1 {
        let (address, port) = rule.split_once(':')?;
        (address, Some(port.parse().ok()?))
    } else {
        (rule, None)
    };
    let (network, prefix_len) = match address.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
        None => {
            let ip: IpAddr = address.parse().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if network.is_ipv4() { 32 } else { 128 };
    (prefix_len <= max).then_some(EgressRule {
        network,
        prefix_len,
        port,
    })
}

impl EgressRule {
    fn matches(&self, addr: &SocketAddr) -> bool {
        if self.port.is_some_and(|port| port != addr.port()) {
            return false;
        }
        let ip = canonical(addr.ip());
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix_len)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix_len)
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix_len: u8) -> bool {
    let full = usize::from(prefix_len / 8);
    let rest = prefix_len % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

/// What one pod's containers may reach.
#[derive(Debug, Clone)]
pub(crate) struct PodNetwork {
    pub pod: Arc<str>,
    pub host_network: bool,
    pub egress: Arc<EgressPolicy>,
}

impl PodNetwork {
    /// Whether a guest may bind or connect to `addr`.
    pub(crate) fn permits(&self, addr: &SocketAddr, binding: bool) -> bool {
        let ip = canonical(addr.ip());
        if self.host_network || ip.is_loopback() || (binding && ip.is_unspecified()) {
            return true;
        }
        self.egress.allows(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let policy = EgressPolicy::parse("10.0.0.0/8, 192.0.2.7:443, 2001:db8::/32").unwrap();
        let allowed = |s: &str| policy.allows(&s.parse().unwrap());
        assert!(allowed("10.1.2.3:80"));
        assert!(!allowed("11.1.2.3:80"));
        assert!(allowed("192.0.2.7:443"));
        assert!(!allowed("192.0.2.7:80"));
        assert!(allowed("[2001:db8::1]:80"));
        assert!(EgressPolicy::parse("nonsense").is_err());
        assert!(
            EgressPolicy::parse("*")
                .unwrap()
                .allows(&"8.8.8.8:53".parse().unwrap())
        );
    }
}
