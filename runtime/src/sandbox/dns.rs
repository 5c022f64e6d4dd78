//! Name lookup for a pod in a network namespace of its own that may reach
//! out: its `/etc/resolv.conf` names `127.0.0.1`, where the pod process
//! relays each query, unchanged, to the real resolvers through UDP sockets
//! of the host's namespace that the supervisor connected to them before the
//! pod started (so the pod can send to those resolvers and nowhere else).
//!
//! Which resolvers, searches and options: Kubernetes' `dnsPolicy` and
//! `dnsConfig` ([`crate::manifest::Dns`]) over the host's own
//! `/etc/resolv.conf`. The relay does not read DNS: it only swaps the query
//! id for one of its own (two containers' resolvers may pick the same one)
//! and back. A query asked again (the resolver's retry) goes to the next
//! resolver. DNS over TCP (for an answer too large for UDP) is not relayed.

use crate::manifest::PodSpec;
use rustix::fd::OwnedFd;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the relay listens in the pod's namespace (`resolv.conf` has no
/// port: it must be 53).
pub(crate) const RELAY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);

/// The most resolvers `resolv.conf` uses (glibc's `MAXNS`).
const MAX_NAMESERVERS: usize = 3;

/// How long an unanswered query is remembered.
const FORGET_AFTER: Duration = Duration::from_secs(30);

/// The pod's resolver configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolver {
    /// The real resolvers, each reached at port 53.
    pub upstreams: Vec<IpAddr>,
    /// The pod's `/etc/resolv.conf`: the relay, the searches and options.
    pub resolv_conf: String,
}

/// The pod's resolvers from its `dnsPolicy`/`dnsConfig` and the host's
/// `resolv.conf` text; `None` if that leaves no resolver.
pub(crate) fn resolver(pod: &PodSpec, host_resolv_conf: &str) -> Option<Resolver> {
    let mut upstreams = Vec::new();
    let mut searches = Vec::new();
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    if !pod.dns.policy_none {
        for line in host_resolv_conf.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A scoped IPv6 address (`fe80::1%eth0`) is the host's
                    // link: it is kept out.
                    upstreams.extend(words.next().and_then(|ip| ip.parse::<IpAddr>().ok()));
                }
                Some("search" | "domain") => {
                    searches = words.map(str::to_owned).collect();
                }
                Some("options") => {
                    for option in words {
                        let (name, value) = match option.split_once(':') {
                            Some((name, value)) => (name, Some(value.to_owned())),
                            None => (option, None),
                        };
                        options.retain(|(n, _)| n != name);
                        options.push((name.to_owned(), value));
                    }
                }
                _ => {}
            }
        }
    }
    upstreams.extend(pod.dns.nameservers.iter().copied());
    let mut seen = Vec::new();
    upstreams.retain(|ip| {
        let new = !seen.contains(ip);
        seen.push(*ip);
        new
    });
    upstreams.truncate(MAX_NAMESERVERS);
    if upstreams.is_empty() {
        return None;
    }
    searches.extend(pod.dns.searches.iter().cloned());
    for (name, value) in &pod.dns.options {
        options.retain(|(n, _)| n != name);
        options.push((name.clone(), value.clone()));
    }
    let mut resolv_conf = format!(
        "# wpod: a relay in the pod to {}\nnameserver {}\n",
        upstreams
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        RELAY.ip()
    );
    if !searches.is_empty() {
        resolv_conf.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        let options: Vec<String> = options
            .iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}:{value}"),
                None => name.clone(),
            })
            .collect();
        resolv_conf.push_str(&format!("options {}\n", options.join(" ")));
    }
    Some(Resolver {
        upstreams,
        resolv_conf,
    })
}

/// In the supervisor: a UDP socket of the host's namespace connected to
/// each resolver (connecting a UDP socket sends nothing).
pub(crate) fn upstream_sockets(upstreams: &[IpAddr]) -> std::io::Result<Vec<OwnedFd>> {
    upstreams
        .iter()
        .map(|ip| {
            let resolver = SocketAddr::new(*ip, 53);
            let socket = super::sys::inet_socket(&resolver, rustix::net::SocketType::DGRAM)?;
            rustix::net::connect(&socket, &resolver)?;
            Ok(socket)
        })
        .collect()
}

/// In PID 1, while it may still bind port 53: the relay's socket.
pub(crate) fn relay_socket() -> std::io::Result<OwnedFd> {
    let socket = std::net::UdpSocket::bind(RELAY)?;
    socket.set_nonblocking(true)?;
    Ok(OwnedFd::from(socket))
}

/// A query on its way: who asked, with which id, and where it went.
#[derive(Debug, Clone, Copy)]
struct Pending {
    client: SocketAddr,
    id: u16,
    upstream: usize,
    asked: Instant,
}

/// The relay, on the pod process's tokio runtime, until the process ends.
pub(crate) async fn relay(listener: OwnedFd, upstreams: Vec<OwnedFd>) -> std::io::Result<()> {
    let listener = Arc::new(tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(
        listener,
    ))?);
    let upstreams = upstreams
        .into_iter()
        .map(|fd| tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd)).map(Arc::new))
        .collect::<std::io::Result<Vec<_>>>()?;
    let pending: Arc<Mutex<HashMap<u16, Pending>>> = Arc::default();
    for upstream in &upstreams {
        tokio::spawn(answers(upstream.clone(), listener.clone(), pending.clone()));
    }
    let mut next_id: u16 = rand_id();
    let mut packet = vec![0u8; 65_536];
    loop {
        let (len, client) = listener.recv_from(&mut packet).await?;
        if len < 12 {
            continue;
        }
        let id = u16::from_be_bytes([packet[0], packet[1]]);
        let (ours, upstream) = {
            let mut pending = pending.lock().expect("dns relay poisoned");
            let now = Instant::now();
            pending.retain(|_, p| now.duration_since(p.asked) < FORGET_AFTER);
            // The same query again: the resolver's retry, to the next one.
            let again = pending
                .iter()
                .find(|(_, p)| p.client == client && p.id == id)
                .map(|(ours, p)| (*ours, (p.upstream + 1) % upstreams.len()));
            let (ours, upstream) = again.unwrap_or_else(|| {
                while pending.contains_key(&next_id) {
                    next_id = next_id.wrapping_add(1);
                }
                let ours = next_id;
                next_id = next_id.wrapping_add(1);
                (ours, 0)
            });
            pending.insert(
                ours,
                Pending {
                    client,
                    id,
                    upstream,
                    asked: now,
                },
            );
            (ours, upstream)
        };
        packet[..2].copy_from_slice(&ours.to_be_bytes());
        if let Err(error) = upstreams[upstream].send(&packet[..len]).await {
            tracing::debug!(%error, "dns relay: the resolver is unreachable");
        }
    }
}

/// Answers from one resolver, back to whoever asked.
async fn answers(
    upstream: Arc<tokio::net::UdpSocket>,
    listener: Arc<tokio::net::UdpSocket>,
    pending: Arc<Mutex<HashMap<u16, Pending>>>,
) {
    let mut packet = vec![0u8; 65_536];
    loop {
        let len = match upstream.recv(&mut packet).await {
            Ok(len) if len >= 12 => len,
            // A refused datagram (no resolver there) is reported on the
            // next receive; the resolver's own retry goes elsewhere.
            Ok(_) | Err(_) => continue,
        };
        let ours = u16::from_be_bytes([packet[0], packet[1]]);
        let Some(asked) = pending.lock().expect("dns relay poisoned").remove(&ours) else {
            continue;
        };
        packet[..2].copy_from_slice(&asked.id.to_be_bytes());
        let _ = listener.send_to(&packet[..len], asked.client).await;
    }
}

/// A starting id that differs between runs (the resolver's ids are random;
/// ours only need to be distinct from each other).
fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id()) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ContainerSpec;

    const HOST: &str = "# host\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nsearch corp.example\noptions ndots:2 edns0\n";

    fn pod(dns: crate::manifest::Dns) -> PodSpec {
        let mut pod = PodSpec::builder("p")
            .container(ContainerSpec::new("a", "x.wasm"))
            .build()
            .unwrap();
        pod.dns = dns;
        pod
    }

    #[test]
    fn the_hosts_resolvers_by_default_and_dns_config_adds() {
        let plain = resolver(&pod(Default::default()), HOST).unwrap();
        assert_eq!(
            plain.upstreams,
            ["10.255.255.53".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            plain.resolv_conf.lines().skip(1).collect::<Vec<_>>(),
            [
                "nameserver 127.0.0.1",
                "search corp.example",
                "options ndots:2 edns0"
            ]
        );
        let added = resolver(
            &pod(crate::manifest::Dns {
                policy_none: false,
                nameservers: vec!["10.0.0.10".parse().unwrap()],
                searches: vec!["svc.local".into()],
                options: vec![("ndots".into(), Some("5".into()))],
            }),
            HOST,
        )
        .unwrap();
        assert_eq!(added.upstreams.len(), 2);
        assert!(
            added
                .resolv_conf
                .contains("search corp.example svc.local\n")
        );
        assert!(added.resolv_conf.contains("options edns0 ndots:5\n"));
    }

    #[test]
    fn policy_none_uses_dns_config_alone() {
        let none = resolver(
            &pod(crate::manifest::Dns {
                policy_none: true,
                nameservers: vec!["127.0.0.2".parse().unwrap()],
                ..Default::default()
            }),
            HOST,
        )
        .unwrap();
        assert_eq!(none.upstreams, ["127.0.0.2".parse::<IpAddr>().unwrap()]);
        assert!(!none.resolv_conf.contains("search"));
        assert_eq!(resolver(&pod(Default::default()), "search x\n"), None);
    }
}
