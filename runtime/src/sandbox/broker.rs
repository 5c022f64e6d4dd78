//! Sockets of the host's network namespace for a pod in a namespace of its
//! own (see `crate::network`): the supervisor's side, [`Broker`], holds the
//! pod's published ports from before the pod starts and checks every request
//! against what the pod may do; the pod process's side, [`BrokerClient`], is
//! the pod network's [`HostSockets`].
//!
//! One `SOCK_SEQPACKET` socket pair per pod. A request is one packet:
//! `P <container port>` (the socket bound at that port's published address)
//! or `C <address>` (a fresh socket to connect to the address, which must be
//! allowed egress or one of the pod's own published addresses), or
//! `D <address>` (a UDP socket connected to the address, allowed egress:
//! it can send nowhere else), or `H <address> <host>` (as `C`, for an
//! outgoing HTTP request to `host` that the pod resolved to the address:
//! allowed by the address's rules, or by a host-name rule for `host` if the
//! supervisor's own lookup of `host` gives that address too, so that a pod
//! cannot pass an address off under an allowed name). The answer
//! is one packet: `ok` with the socket attached (`SCM_RIGHTS`), or
//! `err <errno>`. The supervisor answers in its poll loop: making and binding
//! a socket never blocks, and the connection itself is made by the pod.

use crate::manifest::{EgressPolicy, PodSpec};
use crate::network::{HostSockets, PortError, published_ports, reserve};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Mutex;

/// The longest request or answer (`H [v6 address%scope]:port`, then a host
/// name of at most 253 bytes).
const PACKET: usize = 384;

/// The supervisor's side for one pod.
#[derive(Debug)]
pub(crate) struct Broker {
    channel: OwnedFd,
    /// Container port -> its published address, with the socket that holds
    /// it from before the pod starts until the guest first binds the port.
    published: HashMap<u16, (SocketAddr, Option<OwnedFd>)>,
    /// The pod's annotation and the run's `--allow-egress` together.
    egress: EgressPolicy,
    /// The pod's `hostAliases`: its names for addresses, taken before any
    /// lookup.
    aliases: Vec<crate::manifest::HostAlias>,
}

impl Broker {
    /// Binds every published port of `pod` (a port in use is an error now,
    /// before anything starts) and makes the socket pair: the broker, and
    /// the end for the pod process.
    pub(crate) fn new(
        pod: &PodSpec,
        extra_egress: &EgressPolicy,
    ) -> Result<(Broker, OwnedFd), BrokerError> {
        let mut published = HashMap::new();
        for port in published_ports(pod) {
            let socket = reserve(port.host)
                .map(OwnedFd::from)
                .and_then(|socket| prepare(&socket, port.host).map(|()| socket))
                .map_err(|source| {
                    BrokerError::Port(PortError {
                        field: port.field.clone(),
                        host: port.host,
                        source,
                    })
                })?;
            published.insert(port.container_port, (port.host, Some(socket)));
        }
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| BrokerError::Channel(e.into()))?;
        let mut egress = extra_egress.clone();
        egress.extend(&pod.egress);
        Ok((
            Broker {
                channel: ours,
                published,
                egress,
                aliases: pod.host_aliases.clone(),
            },
            theirs,
        ))
    }

    /// What the supervisor polls.
    pub(crate) fn channel(&self) -> BorrowedFd<'_> {
        self.channel.as_fd()
    }

    /// Answers one request. False once the pod process's end is closed.
    pub(crate) fn serve(&mut self) -> bool {
        let mut packet = [0u8; PACKET];
        let received = rustix::net::recv(&self.channel, &mut packet, RecvFlags::DONTWAIT);
        let request = match received {
            Ok((0, _)) => return false,
            Ok((n, _)) => String::from_utf8_lossy(&packet[..n]).into_owned(),
            Err(Errno::AGAIN | Errno::INTR) => return true,
            Err(_) => return false,
        };
        let answer = self.answer(&request);
        if let Err(errno) = &answer {
            tracing::debug!(request, %errno, "host socket refused");
        }
        send(&self.channel, answer).is_ok()
    }

    fn answer(&mut self, request: &str) -> Result<OwnedFd, Errno> {
        if let Some(port) = request.strip_prefix("P ") {
            let port: u16 = port.parse().map_err(|_| Errno::INVAL)?;
            let (host, reserved) = self.published.get_mut(&port).ok_or(Errno::ACCESS)?;
            if let Some(socket) = reserved.take() {
                return Ok(socket);
            }
            // The guest bound it before and closed it (a restarted
            // container): bind it again, which fails while still in use.
            let socket = OwnedFd::from(reserve(*host).map_err(errno)?);
            prepare(&socket, *host).map_err(errno)?;
            Ok(socket)
        } else if let Some(address) = request.strip_prefix("C ") {
            let to: SocketAddr = address.parse().map_err(|_| Errno::INVAL)?;
            if !self.egress.allows(&to) && !self.is_published(&to) {
                return Err(Errno::ACCESS);
            }
            let socket = super::sys::inet_socket(&to, SocketType::STREAM).map_err(errno)?;
            prepare(&socket, to).map_err(errno)?;
            Ok(socket)
        } else if let Some(rest) = request.strip_prefix("H ") {
            let (address, host) = rest.split_once(' ').ok_or(Errno::INVAL)?;
            let to: SocketAddr = address.parse().map_err(|_| Errno::INVAL)?;
            if !self.egress.allows(&to) && !self.is_published(&to) && !self.named(host, &to) {
                return Err(Errno::ACCESS);
            }
            let socket = super::sys::inet_socket(&to, SocketType::STREAM).map_err(errno)?;
            prepare(&socket, to).map_err(errno)?;
            Ok(socket)
        } else if let Some(address) = request.strip_prefix("D ") {
            // Connected here: the pod can send to this peer and no other.
            let to: SocketAddr = address.parse().map_err(|_| Errno::INVAL)?;
            if !self.egress.allows(&to) {
                return Err(Errno::ACCESS);
            }
            let socket = super::sys::inet_socket(&to, SocketType::DGRAM).map_err(errno)?;
            rustix::net::connect(&socket, &to)?;
            Ok(socket)
        } else {
            Err(Errno::INVAL)
        }
    }

    /// Whether a host-name rule allows `host` on `to`'s port, and `host` is
    /// `to`: the supervisor looks the name up itself (in the host's
    /// namespace, as the pod's relay does), so the pod's word for it is not
    /// taken. The lookup blocks this loop while it lasts (a name in
    /// `/etc/hosts`: microseconds; DNS: up to the resolver's timeout).
    fn named(&self, host: &str, to: &SocketAddr) -> bool {
        use std::net::ToSocketAddrs;
        if !self
            .egress
            .hosts
            .iter()
            .any(|rule| rule.matches(host, to.port()))
        {
            return false;
        }
        if let Some(ip) = crate::manifest::HostAlias::lookup(&self.aliases, host) {
            return ip == to.ip();
        }
        match (host, to.port()).to_socket_addrs() {
            Ok(mut addresses) => addresses.any(|address| address.ip() == to.ip()),
            Err(_) => false,
        }
    }

    /// Whether `to` is one of the pod's published ports, as a sibling in
    /// the pod reaches it (at its hostIP, or on loopback when published on
    /// all addresses or on loopback).
    fn is_published(&self, to: &SocketAddr) -> bool {
        self.published.values().any(|(host, _)| {
            host.port() == to.port()
                && (host.ip() == to.ip()
                    || ((host.ip().is_unspecified() || host.ip().is_loopback())
                        && to.ip().is_loopback()))
        })
    }
}

/// What wasmtime-wasi's own sockets have, so that the one handed in behaves
/// the same: non-blocking (tokio needs it), and IPv6-only for IPv6 (the
/// WASI rule).
fn prepare(socket: &OwnedFd, address: SocketAddr) -> std::io::Result<()> {
    rustix::io::ioctl_fionbio(socket, true)?;
    if address.is_ipv6() {
        // Already bound sockets keep what they had: set it where possible.
        let _ = rustix::net::sockopt::set_ipv6_v6only(socket, true);
    }
    Ok(())
}

fn errno(error: std::io::Error) -> Errno {
    error
        .raw_os_error()
        .map(Errno::from_raw_os_error)
        .unwrap_or(Errno::IO)
}

fn send(channel: &OwnedFd, answer: Result<OwnedFd, Errno>) -> rustix::io::Result<usize> {
    match answer {
        Ok(socket) => {
            let fds = [socket.as_fd()];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            control.push(SendAncillaryMessage::ScmRights(&fds));
            rustix::net::sendmsg(
                channel,
                &[IoSlice::new(b"ok")],
                &mut control,
                SendFlags::NOSIGNAL,
            )
        }
        Err(errno) => rustix::net::send(
            channel,
            format!("err {}", errno.raw_os_error()).as_bytes(),
            SendFlags::NOSIGNAL,
        ),
    }
}

/// Why the broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BrokerError {
    #[error(transparent)]
    Port(PortError),
    #[error("creating the pod's socket channel: {0}")]
    Channel(std::io::Error),
}

/// The pod process's side: asks the supervisor, one request at a time.
#[derive(Debug)]
pub(crate) struct BrokerClient {
    channel: Mutex<OwnedFd>,
}

impl BrokerClient {
    pub(crate) fn new(channel: OwnedFd) -> BrokerClient {
        BrokerClient {
            channel: Mutex::new(channel),
        }
    }

    fn ask(&self, request: &str) -> std::io::Result<OwnedFd> {
        let channel = self.channel.lock().expect("broker channel poisoned");
        rustix::net::send(&*channel, request.as_bytes(), SendFlags::NOSIGNAL)?;
        let mut packet = [0u8; PACKET];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            &*channel,
            &mut [IoSliceMut::new(&mut packet)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        if received.flags.contains(ReturnFlags::CTRUNC) {
            return Err(std::io::Error::other("the supervisor's answer was cut"));
        }
        let mut sockets = control.drain().flat_map(|message| match message {
            RecvAncillaryMessage::ScmRights(fds) => fds.collect::<Vec<_>>(),
            _ => Vec::new(),
        });
        let answer = &packet[..received.bytes];
        if answer == b"ok" {
            return sockets
                .next()
                .ok_or_else(|| std::io::Error::other("the supervisor sent no socket"));
        }
        let code = std::str::from_utf8(answer)
            .ok()
            .and_then(|a| a.strip_prefix("err "))
            .and_then(|code| code.parse().ok());
        Err(match code {
            Some(code) => std::io::Error::from_raw_os_error(code),
            // Nothing (the supervisor is gone), or nonsense.
            None => std::io::Error::from(std::io::ErrorKind::ConnectionAborted),
        })
    }
}

impl HostSockets for BrokerClient {
    fn published(&self, container_port: u16) -> std::io::Result<OwnedFd> {
        self.ask(&format!("P {container_port}"))
    }

    fn connecting(&self, to: SocketAddr) -> std::io::Result<OwnedFd> {
        self.ask(&format!("C {to}"))
    }

    fn datagrams_to(&self, to: SocketAddr) -> std::io::Result<OwnedFd> {
        self.ask(&format!("D {to}"))
    }

    fn connecting_for_host(&self, to: SocketAddr, host: &str) -> std::io::Result<OwnedFd> {
        self.ask(&format!("H {to} {host}"))
    }
}
