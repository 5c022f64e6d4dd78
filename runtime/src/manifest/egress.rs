//! Egress rules (`10.0.0.0/8, 192.0.2.7:443, *`): the text of the
//! `wpod.dev/egress` annotation and of `--allow-egress`, parsed into an
//! [`EgressPolicy`]. `network` applies the policy to each connection.

use std::net::IpAddr;

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
pub(crate) const EGRESS_HINT: &str = "write addresses or CIDRs with an optional port, separated by commas (10.0.0.0/8, 192.0.2.7:443, [2001:db8::1]:80), or * for all";

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
    /// The first rule that is not understood, and why.
    pub fn parse(text: &str) -> Result<EgressPolicy, EgressRuleError> {
        let mut policy = EgressPolicy::default();
        for rule in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            if rule == "*" {
                policy.allow.extend(EgressPolicy::allow_all().allow);
                continue;
            }
            policy
                .allow
                .push(parse_rule(rule).map_err(|reason| EgressRuleError {
                    rule: rule.to_owned(),
                    reason: reason.to_string(),
                })?);
        }
        Ok(policy)
    }
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

    /// The rules `text` parses into, each as `network/prefix:port`, or the
    /// error's reason.
    #[track_caller]
    fn check(text: &str, expected: Result<&[&str], &str>) {
        let parsed = EgressPolicy::parse(text)
            .map(|policy| {
                policy
                    .allow
                    .iter()
                    .map(|rule| {
                        let port = rule.port.map(|p| format!(":{p}")).unwrap_or_default();
                        format!("{}/{}{port}", rule.network, rule.prefix_len)
                    })
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
