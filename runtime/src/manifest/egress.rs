//! Egress rules (`10.0.0.0/8, 192.0.2.7:443, api.example.com:443,
//! *.example.com, *`): the text of the `wpod.dev/egress` annotation and of
//! `--allow-egress`, parsed into an [`EgressPolicy`]. `network` applies the
//! policy to each connection.
//!
//! Address rules hold for every connection out. Host-name rules hold only
//! where the name is known, that is for outgoing HTTP (`wasi:http`): a raw
//! socket connects to an address, which no name rule can vouch for.

use std::net::IpAddr;

/// Where containers may connect outside their pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Allowed destinations by address; with `hosts` empty too, no egress
    /// at all.
    pub allow: Vec<EgressRule>,
    /// Allowed destinations by host name (outgoing HTTP only).
    pub hosts: Vec<HostRule>,
}

/// One destination allowed by name: `api.example.com` (that name) or
/// `*.example.com` (any name below `example.com`, not `example.com` itself),
/// with an optional port. Names are kept in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// The name, or the suffix after `*.` for a wildcard.
    pub name: String,
    /// Whether the rule is `*.name`.
    pub wildcard: bool,
    pub port: Option<u16>,
}

impl HostRule {
    /// Whether a request to `host` (a name, any case) on `port` is allowed.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|allowed| allowed != port) {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if self.wildcard {
            host.strip_suffix(self.name.as_str())
                .is_some_and(|label| label.len() > 1 && label.ends_with('.'))
        } else {
            host == self.name
        }
    }
}

/// One allowed destination: an address range and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    pub network: IpAddr,
    pub prefix_len: u8,
    pub port: Option<u16>,
}

/// An egress rule that is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{rule}` is not an egress rule ({reason}); {EGRESS_HINT}")]
pub struct EgressRuleError {
    /// The rule as written.
    pub rule: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why one rule is not understood: an [`EgressRuleError`]'s `reason`.
#[derive(Debug, thiserror::Error)]
enum RuleProblem {
    /// The text after `:` is not a port number, or is 0.
    #[error("`{0}` is not a port number from 1 to 65535")]
    Port(String),
    /// `[` opens an IPv6 address that no `]` closes.
    #[error("a `[` without its `]`")]
    UnclosedBracket,
    /// Something other than `:port` follows `]`.
    #[error("`{0}` after `]`; write `]:port`")]
    AfterBracket(String),
    /// Neither an address nor `address/prefix length`.
    #[error("`{0}` is not an IP address or a CIDR")]
    Address(String),
    /// The text after `/` is not a number from 0 to 255.
    #[error("`{0}` is not a prefix length")]
    PrefixLength(String),
    /// The prefix is longer than the address.
    #[error("the prefix length {prefix_len} is more than the address's {max} bits")]
    PrefixTooLong { prefix_len: u8, max: u8 },
}

/// How to write egress rules, for messages.
pub(crate) const EGRESS_HINT: &str = "write addresses or CIDRs with an optional port, separated by commas (10.0.0.0/8, 192.0.2.7:443, [2001:db8::1]:80), host names for HTTP (api.example.com:443, *.example.com), or * for all";

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
            hosts: Vec::new(),
        }
    }

    /// Whether nothing at all is allowed.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.hosts.is_empty()
    }

    /// Adds `other`'s rules to these.
    pub fn extend(&mut self, other: &EgressPolicy) {
        self.allow.extend(other.allow.iter().cloned());
        self.hosts.extend(other.hosts.iter().cloned());
    }

    /// Parses a comma-separated list of `CIDR[:port]` / `IP[:port]` rules
    /// (`10.0.0.0/8, 192.168.1.5:443, [::1]:80`, `*` for everything).
    ///
    /// # Errors
    ///
    /// The first rule that is not understood, and why.
    pub fn parse(text: &str) -> Result<EgressPolicy, EgressRuleError> {
        let mut policy = EgressPolicy::default();
        for rule in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            if rule == "*" {
                policy.allow.extend(EgressPolicy::allow_all().allow);
                continue;
            }
            let error = |reason: RuleProblem| EgressRuleError {
                rule: rule.to_owned(),
                reason: reason.to_string(),
            };
            match parse_rule(rule) {
                Ok(parsed) => policy.allow.push(parsed),
                Err(RuleProblem::Address(address)) => match parse_host_rule(rule) {
                    Some(host) => policy.hosts.push(host.map_err(error)?),
                    None => return Err(error(RuleProblem::Address(address))),
                },
                Err(problem) => return Err(error(problem)),
            }
        }
        Ok(policy)
    }
}

/// A host-name rule (`api.example.com:443`, `*.example.com`), `None` if
/// `rule` does not look like one: a host name has at least two labels of
/// letters, digits and `-`, and its last label is not a number (so that a
/// mistyped address is not taken for a name).
fn parse_host_rule(rule: &str) -> Option<Result<HostRule, RuleProblem>> {
    let (name, port) = match rule.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (rule, None),
    };
    let (name, wildcard) = match name.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (name, false),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let last_is_number = labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if labels.len() < 2 || !labels.iter().all(label_ok) || last_is_number || name.len() > 253 {
        return None;
    }
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => return Some(Err(RuleProblem::Port(text.to_owned()))),
        },
    };
    Some(Ok(HostRule {
        name,
        wildcard,
        port,
    }))
}

fn parse_rule(rule: &str) -> Result<EgressRule, RuleProblem> {
    let port = |text: &str| match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(Some(port)),
        _ => Err(RuleProblem::Port(text.to_owned())),
    };
    let (address, port) = if let Some(rest) = rule.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or(RuleProblem::UnclosedBracket)?;
        match after {
            "" => (address, None),
            _ => match after.strip_prefix(':') {
                Some(number) => (address, port(number)?),
                None => return Err(RuleProblem::AfterBracket(after.to_owned())),
            },
        }
    } else if rule.matches(':').count() == 1 {
        let (address, number) = rule.split_once(':').unwrap_or((rule, ""));
        (address, port(number)?)
    } else {
        (rule, None)
    };
    let not_an_address = || RuleProblem::Address(address.to_owned());
    let (network, prefix_len) = match address.split_once('/') {
        Some((ip, len)) => {
            let ip: IpAddr = ip.parse().map_err(|_| not_an_address())?;
            let len: u8 = len
                .parse()
                .map_err(|_| RuleProblem::PrefixLength(len.to_owned()))?;
            (ip, len)
        }
        None => {
            let ip: IpAddr = address.parse().map_err(|_| not_an_address())?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if network.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(RuleProblem::PrefixTooLong { prefix_len, max });
    }
    Ok(EgressRule {
        network,
        prefix_len,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules `text` parses into, each as `network/prefix:port` (or
    /// `name:port`), or the error's reason.
    #[track_caller]
    fn check(text: &str, expected: Result<&[&str], &str>) {
        let parsed = EgressPolicy::parse(text)
            .map(|policy| {
                let hosts = policy.hosts.iter().map(|rule| {
                    let port = rule.port.map(|p| format!(":{p}")).unwrap_or_default();
                    let star = if rule.wildcard { "*." } else { "" };
                    format!("{star}{}{port}", rule.name)
                });
                policy
                    .allow
                    .iter()
                    .map(|rule| {
                        let port = rule.port.map(|p| format!(":{p}")).unwrap_or_default();
                        format!("{}/{}{port}", rule.network, rule.prefix_len)
                    })
                    .chain(hosts)
                    .collect::<Vec<_>>()
            })
            .map_err(|error| error.reason);
        let expected = expected
            .map(|rules| rules.iter().map(|rule| rule.to_string()).collect())
            .map_err(str::to_owned);
        assert_eq!(parsed, expected, "{text:?}");
    }

    #[test]
    fn rules() {
        check("", Ok(&[]));
        check(" , ", Ok(&[]));
        check("10.0.0.0/8", Ok(&["10.0.0.0/8"]));
        check("192.0.2.7:443", Ok(&["192.0.2.7/32:443"]));
        check("10.0.0.0/8:53", Ok(&["10.0.0.0/8:53"]));
        check("2001:db8::/32", Ok(&["2001:db8::/32"]));
        check("[2001:db8::1]:80", Ok(&["2001:db8::1/128:80"]));
        check("[::1]", Ok(&["::1/128"]));
        check("*", Ok(&["0.0.0.0/0", "::/0"]));
        check(
            "10.0.0.0/8, 192.0.2.7:443",
            Ok(&["10.0.0.0/8", "192.0.2.7/32:443"]),
        );
    }

    #[test]
    fn host_names() {
        check("api.example.com:443", Ok(&["api.example.com:443"]));
        check("*.Example.COM", Ok(&["*.example.com"]));
        check("a.test., 10.0.0.1", Ok(&["10.0.0.1/32", "a.test"]));
        check(
            "api.example.com:https",
            Err("`https` is not a port number from 1 to 65535"),
        );
        check(
            "10.0.0.300",
            Err("`10.0.0.300` is not an IP address or a CIDR"),
        );
        check(
            "under_score.test",
            Err("`under_score.test` is not an IP address or a CIDR"),
        );
        let policy = EgressPolicy::parse("api.example.com:443, *.example.org").unwrap();
        let allowed = |host: &str, port| policy.hosts.iter().any(|rule| rule.matches(host, port));
        assert!(allowed("api.example.com", 443));
        assert!(allowed("API.example.com.", 443));
        assert!(!allowed("api.example.com", 80));
        assert!(!allowed("x.api.example.com", 443));
        assert!(allowed("a.example.org", 80));
        assert!(allowed("a.b.example.org", 80));
        assert!(!allowed("example.org", 80));
        assert!(!allowed("badexample.org", 80));
    }

    #[test]
    fn errors() {
        check(
            "10.0.0.0/99",
            Err("the prefix length 99 is more than the address's 32 bits"),
        );
        check(
            "::/129",
            Err("the prefix length 129 is more than the address's 128 bits"),
        );
        check("nonsense", Err("`nonsense` is not an IP address or a CIDR"));
        check(
            "10.0.0.1:http",
            Err("`http` is not a port number from 1 to 65535"),
        );
        check(
            "10.0.0.1:0",
            Err("`0` is not a port number from 1 to 65535"),
        );
        check("10.0.0.1:", Err("`` is not a port number from 1 to 65535"));
        check("10.0.0.0/x", Err("`x` is not a prefix length"));
        check("[::1", Err("a `[` without its `]`"));
        check("[::1]80", Err("`80` after `]`; write `]:port`"));
        check("*:80", Err("`*` is not an IP address or a CIDR"));
    }

    #[test]
    fn the_error_names_the_rule_and_says_how() {
        let error = EgressPolicy::parse("10.0.0.0/8, 10.0.0.0/99").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "`10.0.0.0/99` is not an egress rule (the prefix length 99 is more than the address's 32 bits); {EGRESS_HINT}"
            )
        );
    }
}
