//! The pod's network: a port space of its own, hostPort, and egress.
//!
//! Every pod has its own port space on every OS, without a network
//! namespace: a guest's bind to loopback or to "all addresses" on port P is
//! carried out on the host as a bind to loopback on a free port, and the
//! pod's [`PortSpace`] remembers P. A guest connecting to localhost:P is
//! connected to that host port; localhost ports the pod has not bound are
//! refused, so pods never see each other's (or the host's) listeners, and a
//! guest may "bind" port 80 without privileges. A port with a `hostPort` is
//! bound on the host at hostIP:hostPort directly: accepted connections reach
//! the guest's own socket, with no proxy and no copy loop.
//!
//! The pod's localhost is 127.0.0.1 and ::1 (and the name `localhost`). The
//! rest of 127.0.0.0/8 is the host's own loopback, such as a resolver at
//! 127.0.0.53: reaching it is egress, like any other host address.
//!
//! The guest sees its own addresses throughout (`local-address` answers
//! `0.0.0.0:80`, not the host's port). Anything that is not loopback is
//! egress and follows the pod's [`EgressPolicy`]; `hostNetwork: true` turns
//! all of this off and uses the host's network as it is.
//!
//! The mechanism: wpod shadows the functions of wasmtime-wasi's
//! `wasi:sockets/tcp` and `wasi:sockets/udp` that carry an address
//! (start-bind, start-connect / stream, send, receive, local-address,
//! remote-address), rewrites the address and calls wasmtime-wasi's own
//! implementation; the rest of the socket stack is wasmtime-wasi's.
//!
//! Behind the OS wall every pod but a `hostNetwork` one has a network
//! namespace of its own, holding only `lo`: the port space above lives in
//! it, so unpublished ports cannot be reached from the host at all. What
//! must be in the host's namespace comes from outside, through
//! [`HostSockets`]: the supervisor binds each published port before the pod
//! starts and hands the bound socket in when the guest binds that port, and
//! hands in a fresh socket of the host's namespace for each allowed
//! connection out (egress, or a sibling reaching a published port). The
//! guest's own socket is not replaced: the host's socket takes its place
//! under the same descriptor ([`adopt`]), before wasmtime-wasi registers it
//! with tokio (at `listen` or `connect`), so wasmtime-wasi's state and
//! streams are untouched and there is no relay or copy loop.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::SocketResult;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpSocketAddress, Network};
use wasmtime_wasi::p2::bindings::sockets::tcp::HostTcpSocket;
use wasmtime_wasi::p2::bindings::sockets::udp::{
    HostIncomingDatagramStream, HostOutgoingDatagramStream, HostUdpSocket, IncomingDatagram,
    IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream,
};
use wasmtime_wasi::p2::{TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

pub use crate::manifest::{EgressPolicy, EgressRule, HostRule};

// The policy is parsed with the manifest (`crate::manifest`, which reads the
// `wpod.dev/egress` annotation); what it allows is decided here.
impl EgressPolicy {
    pub(crate) fn allows(&self, addr: &SocketAddr) -> bool {
        self.allow.iter().any(|rule| rule.matches(addr))
    }
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

/// The pod's localhost: 127.0.0.1 and ::1 (an IPv4-mapped one included).
fn is_pod_localhost(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
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

/// What one pod's containers may reach, and the pod's port space.
#[derive(Debug, Clone)]
pub(crate) struct PodNetwork {
    pub pod: Arc<str>,
    pub host_network: bool,
    pub egress: Arc<EgressPolicy>,
    pub ports: Arc<PortSpace>,
    /// Set in a network namespace of the pod's own: where sockets of the
    /// host's namespace come from.
    pub host_sockets: Option<Arc<dyn HostSockets>>,
    /// UDP to outside the pod's namespace: the relays, pod-wide.
    pub udp_egress: Arc<Mutex<UdpEgress>>,
    /// The pod's `hostAliases`, which outgoing HTTP resolves first.
    pub host_aliases: Arc<[crate::manifest::HostAlias]>,
    /// This container's outgoing datagram streams (by resource) and the
    /// guest socket's address each sends from; see [`PodNetwork::for_container`].
    pub udp_streams: Arc<Mutex<HashMap<u32, SocketAddr>>>,
}

/// UDP to outside a pod's network namespace. Each (guest socket, outside
/// peer) pair gets a proxy socket on the pod's loopback, where the guest's
/// datagrams for the peer are sent instead, and a socket of the host's
/// namespace connected to the peer (the supervisor checks the egress policy
/// before it connects it); a task relays between the two until neither has
/// carried a datagram for [`UDP_IDLE`]. The guest sees the peer's address
/// throughout (`receive`, `remote-address`).
#[derive(Debug, Default)]
pub(crate) struct UdpEgress {
    /// (guest socket's address, peer) -> the proxy's address.
    proxies: HashMap<(SocketAddr, SocketAddr), SocketAddr>,
    /// Proxy address -> peer.
    peers: HashMap<SocketAddr, SocketAddr>,
}

/// How long a UDP relay with no traffic lives (a NAT's UDP timeout).
const UDP_IDLE: std::time::Duration = std::time::Duration::from_secs(180);

/// Sockets of the host's network namespace for a pod in a namespace of its
/// own: the OS wall's supervisor gives them, each one checked against what
/// the pod may do (its published ports, its egress policy).
pub(crate) trait HostSockets: std::fmt::Debug + Send + Sync {
    /// The TCP socket bound at the host address published for the pod's
    /// `container_port` (bound, not listening).
    fn published(&self, container_port: u16) -> std::io::Result<rustix::fd::OwnedFd>;
    /// A fresh TCP socket (non-blocking, unbound) of `to`'s family, for the
    /// pod to connect to `to`.
    fn connecting(&self, to: SocketAddr) -> std::io::Result<rustix::fd::OwnedFd>;
    /// A UDP socket (non-blocking) connected to `to`.
    fn datagrams_to(&self, to: SocketAddr) -> std::io::Result<rustix::fd::OwnedFd>;
    /// As [`HostSockets::connecting`], for an outgoing HTTP request to
    /// `host`, which the pod resolved to `to` (a host-name rule may allow it).
    fn connecting_for_host(
        &self,
        to: SocketAddr,
        host: &str,
    ) -> std::io::Result<rustix::fd::OwnedFd>;
}

/// The container ports of `pod` published with a TCP `hostPort`, where the
/// host listens for them (hostIP, else all addresses).
pub(crate) fn published_ports(pod: &crate::manifest::PodSpec) -> Vec<Published> {
    use crate::manifest::Protocol;
    let groups = [
        ("spec.initContainers", &pod.init_containers),
        ("spec.containers", &pod.containers),
    ];
    let mut published = Vec::new();
    for (group, containers) in groups {
        for (c, container) in containers.iter().enumerate() {
            for (p, port) in container.ports.iter().enumerate() {
                let Some(host_port) = port.host_port.filter(|_| port.protocol == Protocol::Tcp)
                else {
                    continue;
                };
                let ip = port.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                published.push(Published {
                    container_port: port.container_port,
                    host: SocketAddr::new(ip, host_port),
                    field: format!("{group}[{c}].ports[{p}].hostPort"),
                });
            }
        }
    }
    published
}

/// A published port: where the host listens for a container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    pub container_port: u16,
    pub host: SocketAddr,
    /// Its field path, e.g. `spec.containers[0].ports[0].hostPort`.
    pub field: String,
}

/// Why a hostPort cannot be published.
#[derive(Debug, thiserror::Error)]
#[error("{field}: hostPort {host}: {source}; free the port or choose another hostPort")]
pub struct PortError {
    /// The hostPort's field path.
    pub field: String,
    pub host: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The pod's TCP ports: what the guests bound, and where that is on the host.
#[derive(Debug, Default)]
pub(crate) struct PortSpace {
    table: Mutex<PortTable>,
}

#[derive(Debug, Default)]
struct PortTable {
    tcp: Ports,
    udp: Ports,
    /// Container port -> published host address, with the socket that holds
    /// it (bound, not listening) from pod start until the guest binds it.
    published: HashMap<u16, (SocketAddr, Option<std::net::TcpListener>)>,
}

/// One protocol's ports of the pod.
#[derive(Debug, Default)]
struct Ports {
    /// Guest port -> the host address it is bound at.
    bound: HashMap<u16, SocketAddr>,
    /// Host address -> guest port, for answering `local-address`.
    by_host: HashMap<SocketAddr, u16>,
    /// Guest ports bound outside the pod's network namespace (published
    /// ports, held by sockets of the host's namespace).
    outside: HashSet<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

impl PortTable {
    fn ports(&mut self, transport: Transport) -> &mut Ports {
        match transport {
            Transport::Tcp => &mut self.tcp,
            Transport::Udp => &mut self.udp,
        }
    }
}

impl Ports {
    /// Whether the socket bound at `guest_port` has gone (the guest closed
    /// it): its host address can be bound again.
    fn released(&mut self, transport: Transport, guest_port: u16) -> bool {
        let Some(host) = self.bound.get(&guest_port).copied() else {
            return true;
        };
        if self.outside.contains(&guest_port) {
            // Not to be tried from inside the pod's namespace: the host's
            // bind of it, on the guest's next bind, tells.
            return true;
        }
        let free = match transport {
            Transport::Tcp => reserve(host).is_ok(),
            Transport::Udp => std::net::UdpSocket::bind(host).is_ok(),
        };
        if free {
            self.bound.remove(&guest_port);
            self.by_host.remove(&host);
        }
        free
    }

    fn record(&mut self, guest_port: u16, host: SocketAddr, outside: bool) {
        self.bound.insert(guest_port, host);
        self.by_host.insert(host, guest_port);
        if outside {
            self.outside.insert(guest_port);
        } else {
            self.outside.remove(&guest_port);
        }
    }
}

impl PortSpace {
    /// Reserves each hostPort now, so that a port in use is an error before
    /// any container starts.
    pub(crate) fn publish(ports: &[Published]) -> Result<PortSpace, PortError> {
        let mut table = PortTable::default();
        for port in ports {
            let reservation = reserve(port.host).map_err(|source| PortError {
                field: port.field.clone(),
                host: port.host,
                source,
            })?;
            table
                .published
                .insert(port.container_port, (port.host, Some(reservation)));
        }
        Ok(PortSpace {
            table: Mutex::new(table),
        })
    }

    /// The port space of a pod whose published ports are held outside its
    /// network namespace (by [`HostSockets`]): nothing is reserved here.
    pub(crate) fn published_elsewhere(ports: &[Published]) -> PortSpace {
        let mut table = PortTable::default();
        for port in ports {
            table
                .published
                .insert(port.container_port, (port.host, None));
        }
        PortSpace {
            table: Mutex::new(table),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PortTable> {
        self.table.lock().expect("port table poisoned")
    }
}

/// `socket` listening, non-blocking (as tokio wants it).
fn listening(socket: std::net::TcpListener) -> std::io::Result<std::net::TcpListener> {
    rustix::net::listen(&socket, 1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Holds a host port without listening on it (a bound socket, never
/// `listen`ed, so no connection is ever accepted and dropped by it).
/// SO_REUSEADDR on Unix, as servers there use, so that connections of an
/// earlier server left in TIME_WAIT do not count as "in use"; a listening
/// socket still does. (On Windows the flag would mean port stealing.)
pub(crate) fn reserve(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use rustix::net::{AddressFamily, SocketType, bind, socket};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let socket = socket(family, SocketType::STREAM, None)?;
    #[cfg(unix)]
    rustix::net::sockopt::set_socket_reuseaddr(&socket, true)?;
    bind(&socket, &addr)?;
    Ok(std::net::TcpListener::from(socket))
}

impl PodNetwork {
    fn loopback_for(addr: &SocketAddr) -> IpAddr {
        if addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }
    }

    /// `start-bind`: loopback and "all addresses" become a host port of the
    /// pod's own; other addresses (egress rules permitting) are bound as asked.
    pub(crate) async fn tcp_start_bind(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        requested: IpSocketAddress,
    ) -> SocketResult<()> {
        let requested_addr: SocketAddr = requested.into();
        let ip = canonical(requested_addr.ip());
        if self.host_network || !(is_pod_localhost(ip) || ip.is_unspecified()) {
            return HostTcpSocket::start_bind(view, this, network, requested).await;
        }
        let guest_port = requested_addr.port();
        let loopback = SocketAddr::new(PodNetwork::loopback_for(&requested_addr), 0);
        let (host_addr, published) = {
            let mut table = self.ports.lock();
            if guest_port != 0
                && table.tcp.bound.contains_key(&guest_port)
                && !table.tcp.released(Transport::Tcp, guest_port)
            {
                return Err(ErrorCode::AddressInUse.into());
            }
            match table.published.get_mut(&guest_port) {
                // The reservation is given up just before the guest's bind.
                Some((host, reservation))
                    if ip.is_unspecified()
                        || host.ip().is_loopback()
                        || host.ip().is_unspecified() =>
                {
                    reservation.take();
                    (*host, true)
                }
                _ => (loopback, false),
            }
        };
        let rep = this.rep();
        match &self.host_sockets {
            // The published port is held outside the pod's namespace: the
            // guest's socket is bound in the pod (to find it by its address),
            // then the host's bound socket takes its place.
            Some(host_sockets) if published => {
                HostTcpSocket::start_bind(
                    view,
                    Resource::new_borrow(rep),
                    network,
                    loopback.into(),
                )
                .await?;
                let socket = host_sockets.published(guest_port)?;
                adopt_tcp(view, rep, socket)?;
            }
            _ => {
                HostTcpSocket::start_bind(
                    view,
                    Resource::new_borrow(rep),
                    network,
                    host_addr.into(),
                )
                .await?
            }
        }
        let actual: SocketAddr =
            HostTcpSocket::local_address(view, Resource::new_borrow(rep))?.into();
        let guest_port = if guest_port == 0 {
            actual.port()
        } else {
            guest_port
        };
        let outside = published && self.host_sockets.is_some();
        self.ports.lock().tcp.record(guest_port, actual, outside);
        tracing::debug!(pod = %self.pod, guest_port, host = %actual, outside, "tcp bound");
        Ok(())
    }

    /// `start-connect`: localhost:P reaches what the pod bound at P, and
    /// nothing else on the host's loopback. In a network namespace of the
    /// pod's own, a connection that must leave it (egress, or a published
    /// port, which is bound outside) is made from a socket of the host's
    /// namespace that takes the guest's socket's place.
    pub(crate) async fn tcp_start_connect(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        remote: IpSocketAddress,
    ) -> SocketResult<()> {
        let remote_addr: SocketAddr = remote.into();
        if self.host_network {
            return HostTcpSocket::start_connect(view, this, network, remote);
        }
        let (target, outside) = if is_pod_localhost(remote_addr.ip()) {
            let target = self.host_target(Transport::Tcp, remote_addr)?;
            let outside = self.ports.lock().tcp.outside.contains(&remote_addr.port());
            (target, outside)
        } else {
            (remote_addr, true)
        };
        // A refused address keeps the guest's socket: wasmtime-wasi refuses
        // it below, through the pod's address check, which logs why.
        if let Some(host_sockets) = self.host_sockets.as_ref().filter(|_| outside)
            && self.permits(&target, false)
        {
            let rep = this.rep();
            if HostTcpSocket::local_address(view, Resource::new_borrow(rep)).is_err() {
                let loopback = SocketAddr::new(PodNetwork::loopback_for(&target), 0);
                HostTcpSocket::start_bind(
                    view,
                    Resource::new_borrow(rep),
                    Resource::new_borrow(network.rep()),
                    loopback.into(),
                )
                .await?;
                HostTcpSocket::finish_bind(view, Resource::new_borrow(rep))?;
            }
            let socket = host_sockets.connecting(target)?;
            adopt_tcp(view, rep, socket)?;
        }
        HostTcpSocket::start_connect(view, this, network, target.into())
    }

    /// `local-address`: the guest's own port, not the host's.
    pub(crate) fn tcp_local_address(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<TcpSocket>,
    ) -> SocketResult<IpSocketAddress> {
        let local = HostTcpSocket::local_address(view, this)?;
        Ok(self.guest_view(Transport::Tcp, local.into()).into())
    }

    /// `remote-address`: a peer inside the pod shows its guest port.
    pub(crate) fn tcp_remote_address(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<TcpSocket>,
    ) -> SocketResult<IpSocketAddress> {
        let remote = HostTcpSocket::remote_address(view, this)?;
        Ok(self.guest_view(Transport::Tcp, remote.into()).into())
    }

    /// Where a pod-local address is on the host; `ConnectionRefused` for a
    /// port the pod has not bound. Other addresses are returned as they are.
    fn host_target(&self, transport: Transport, guest: SocketAddr) -> SocketResult<SocketAddr> {
        if self.host_network || !is_pod_localhost(guest.ip()) {
            return Ok(guest);
        }
        let bound = self
            .ports
            .lock()
            .ports(transport)
            .bound
            .get(&guest.port())
            .copied();
        let Some(host) = bound else {
            return Err(ErrorCode::ConnectionRefused.into());
        };
        let ip = if host.ip().is_unspecified() || host.ip().is_loopback() {
            guest.ip()
        } else {
            host.ip()
        };
        Ok(SocketAddr::new(ip, host.port()))
    }

    /// A host address as the guest knows it: its own port for the pod's sockets.
    fn guest_view(&self, transport: Transport, host: SocketAddr) -> SocketAddr {
        if self.host_network {
            return host;
        }
        match self.ports.lock().ports(transport).by_host.get(&host) {
            Some(guest_port) => SocketAddr::new(host.ip(), *guest_port),
            None => host,
        }
    }

    /// A TCP connection from wpod itself to the pod's own port `port` (a
    /// probe's): to where the pod bound it, in the pod's namespace, or
    /// through a socket of the host's namespace for a published port held
    /// there. Refused for a port the pod has not bound, as a guest would be.
    pub(crate) async fn connect_to_pod(&self, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        let guest = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        if self.host_network {
            return tokio::net::TcpStream::connect(guest).await;
        }
        let (bound, outside) = {
            let table = self.ports.lock();
            (
                table.tcp.bound.get(&port).copied(),
                table.tcp.outside.contains(&port),
            )
        };
        let Some(host) = bound else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("nothing in the pod listens on port {port}"),
            ));
        };
        let target = if host.ip().is_unspecified() {
            SocketAddr::new(PodNetwork::loopback_for(&host), host.port())
        } else {
            host
        };
        match &self.host_sockets {
            Some(host_sockets) if outside => {
                let socket = std::net::TcpStream::from(host_sockets.connecting(target)?);
                tokio::net::TcpSocket::from_std_stream(socket)
                    .connect(target)
                    .await
            }
            _ => tokio::net::TcpStream::connect(target).await,
        }
    }

    /// A listening socket for wpod's own server on the pod's port `port`
    /// (an HTTP component's, see `crate::http`), bound as a guest's bind of
    /// all addresses on that port would be: on loopback at a free host port,
    /// or at the published address for a port with a `hostPort` (behind the
    /// OS wall, the supervisor's socket of the host's namespace). Siblings
    /// reach it at localhost:`port`, probes through [`PodNetwork::connect_to_pod`].
    pub(crate) fn listen(&self, port: u16) -> std::io::Result<std::net::TcpListener> {
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        if self.host_network {
            return listening(reserve(unspecified)?);
        }
        let published = {
            let mut table = self.ports.lock();
            if table.tcp.bound.contains_key(&port) && !table.tcp.released(Transport::Tcp, port) {
                return Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
            }
            table
                .published
                .get_mut(&port)
                .map(|(host, reservation)| (*host, reservation.take()))
        };
        let (socket, outside) = match (published, &self.host_sockets) {
            (Some(_), Some(host_sockets)) => (
                std::net::TcpListener::from(host_sockets.published(port)?),
                true,
            ),
            (Some((_, Some(reserved))), None) => (reserved, false),
            (Some((host, None)), None) => (reserve(host)?, false),
            (None, _) => (
                reserve(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))?,
                false,
            ),
        };
        let socket = listening(socket)?;
        let actual = socket.local_addr()?;
        self.ports.lock().tcp.record(port, actual, outside);
        tracing::debug!(pod = %self.pod, port, host = %actual, outside, "http server bound");
        Ok(socket)
    }

    /// A TCP connection from wpod itself on behalf of a guest's outgoing
    /// HTTP request to `host` (the name in its URL) at `to`, one of the
    /// addresses `host` resolves to. The pod's localhost reaches the pod's
    /// own ports; anything else is egress, allowed by an address rule, or by
    /// a host-name rule for `host` (checked by the caller, and behind the OS
    /// wall again by the supervisor). `PermissionDenied` when refused.
    pub(crate) async fn connect_for_http(
        &self,
        host: &str,
        to: SocketAddr,
        allowed_by_name: bool,
    ) -> std::io::Result<tokio::net::TcpStream> {
        if self.host_network {
            return tokio::net::TcpStream::connect(to).await;
        }
        if is_pod_localhost(to.ip()) {
            return self.connect_to_pod(to.port()).await;
        }
        if !allowed_by_name && !self.permits(&to, false) {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        match &self.host_sockets {
            Some(host_sockets) => {
                let socket = std::net::TcpStream::from(host_sockets.connecting_for_host(to, host)?);
                tokio::net::TcpSocket::from_std_stream(socket)
                    .connect(to)
                    .await
            }
            None => tokio::net::TcpStream::connect(to).await,
        }
    }

    /// This network for one more container: the same pod, its own map of
    /// datagram streams (resource numbers are per container).
    pub(crate) fn for_container(&self) -> PodNetwork {
        PodNetwork {
            udp_streams: Arc::default(),
            ..self.clone()
        }
    }

    /// Whether UDP to `peer` leaves the pod's network namespace through a
    /// relay (see [`UdpEgress`]).
    fn udp_leaves(&self, peer: &SocketAddr) -> bool {
        self.host_sockets.is_some() && !self.host_network && !is_pod_localhost(peer.ip())
    }

    /// Where the guest socket at `guest` sends datagrams meant for `peer`,
    /// outside the pod's namespace: the relay's proxy, made on first use.
    fn udp_proxy(&self, guest: SocketAddr, peer: SocketAddr) -> SocketResult<SocketAddr> {
        if !self.egress.allows(&peer) {
            tracing::warn!(
                pod = %self.pod,
                address = %peer,
                "egress refused: allow it with --allow-egress {peer} or the pod annotation wpod.dev/egress"
            );
            return Err(ErrorCode::AccessDenied.into());
        }
        let mut egress = self.udp_egress.lock().expect("udp egress poisoned");
        if let Some(proxy) = egress.proxies.get(&(guest, peer)) {
            return Ok(*proxy);
        }
        let host_sockets = self.host_sockets.as_ref().ok_or(ErrorCode::NotSupported)?;
        let outside = std::net::UdpSocket::from(host_sockets.datagrams_to(peer)?);
        let proxy =
            std::net::UdpSocket::bind(SocketAddr::new(PodNetwork::loopback_for(&guest), 0))?;
        proxy.set_nonblocking(true)?;
        let proxy_addr = proxy.local_addr()?;
        let outside = tokio::net::UdpSocket::from_std(outside)?;
        let proxy = tokio::net::UdpSocket::from_std(proxy)?;
        egress.proxies.insert((guest, peer), proxy_addr);
        egress.peers.insert(proxy_addr, peer);
        tokio::spawn(relay_datagrams(
            proxy,
            outside,
            guest,
            self.udp_egress.clone(),
            (guest, peer),
        ));
        tracing::debug!(pod = %self.pod, %guest, %peer, proxy = %proxy_addr, "udp relay");
        Ok(proxy_addr)
    }

    /// The peer the guest knows for an address it received from.
    fn udp_peer_of(&self, address: SocketAddr) -> Option<SocketAddr> {
        // Only a pod in its own namespace has relays.
        self.host_sockets.as_ref()?;
        let egress = self.udp_egress.lock().expect("udp egress poisoned");
        egress.peers.get(&address).copied()
    }

    /// UDP `start-bind`: as for TCP, without publishing (a UDP hostPort is
    /// refused when the manifest is read).
    pub(crate) async fn udp_start_bind(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<UdpSocket>,
        network: Resource<Network>,
        requested: IpSocketAddress,
    ) -> SocketResult<()> {
        let requested_addr: SocketAddr = requested.into();
        let ip = canonical(requested_addr.ip());
        if self.host_network || !(is_pod_localhost(ip) || ip.is_unspecified()) {
            return HostUdpSocket::start_bind(view, this, network, requested).await;
        }
        let guest_port = requested_addr.port();
        {
            let mut table = self.ports.lock();
            if guest_port != 0
                && table.udp.bound.contains_key(&guest_port)
                && !table.udp.released(Transport::Udp, guest_port)
            {
                return Err(ErrorCode::AddressInUse.into());
            }
        }
        let rep = this.rep();
        let host_addr = SocketAddr::new(PodNetwork::loopback_for(&requested_addr), 0);
        HostUdpSocket::start_bind(view, Resource::new_borrow(rep), network, host_addr.into())
            .await?;
        let actual: SocketAddr =
            HostUdpSocket::local_address(view, Resource::new_borrow(rep))?.into();
        let guest_port = if guest_port == 0 {
            actual.port()
        } else {
            guest_port
        };
        self.ports.lock().udp.record(guest_port, actual, false);
        tracing::debug!(pod = %self.pod, guest_port, host = %actual, "udp bound");
        Ok(())
    }

    /// UDP `stream`: a pod-local remote address is connected at its host
    /// port; an outside one, from a pod in its own namespace, at its relay.
    pub(crate) async fn udp_stream(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<UdpSocket>,
        remote: Option<IpSocketAddress>,
    ) -> SocketResult<(
        Resource<IncomingDatagramStream>,
        Resource<OutgoingDatagramStream>,
    )> {
        let rep = this.rep();
        let local: Option<SocketAddr> =
            HostUdpSocket::local_address(view, Resource::new_borrow(rep))
                .ok()
                .map(Into::into);
        let remote = match remote.map(SocketAddr::from) {
            None => None,
            Some(peer) if self.udp_leaves(&peer) => {
                let local = local.ok_or(ErrorCode::InvalidState)?;
                Some(self.udp_proxy(local, peer)?.into())
            }
            Some(remote) => Some(self.host_target(Transport::Udp, remote)?.into()),
        };
        let (incoming, outgoing) = HostUdpSocket::stream(view, this, remote).await?;
        if let Some(local) = local.filter(|_| self.host_sockets.is_some()) {
            let mut streams = self.udp_streams.lock().expect("udp streams poisoned");
            if streams.len() >= 1024 {
                // Forget the streams the guest has dropped.
                streams.retain(|rep, _| {
                    view.table
                        .get(&Resource::<OutgoingDatagramStream>::new_borrow(*rep))
                        .is_ok()
                });
            }
            streams.insert(outgoing.rep(), local);
        }
        Ok((incoming, outgoing))
    }

    /// UDP `send`: each datagram to a pod-local address goes to its host
    /// port. A datagram to a pod-local port nobody in the pod has bound is
    /// dropped, as the network drops a datagram to a closed port; it never
    /// reaches the host's own port of that number. The batch is sent up to
    /// such a datagram (wasmtime-wasi allows one `send` per `check-send`),
    /// and a batch that starts with one reports it as sent.
    pub(crate) fn udp_send(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<OutgoingDatagramStream>,
        datagrams: Vec<OutgoingDatagram>,
    ) -> SocketResult<u64> {
        let mut rewritten = Vec::with_capacity(datagrams.len());
        let local = self
            .udp_streams
            .lock()
            .expect("udp streams poisoned")
            .get(&this.rep())
            .copied();
        for datagram in datagrams {
            let remote_address = match datagram.remote_address.map(SocketAddr::from) {
                None => None,
                Some(peer) if self.udp_leaves(&peer) => {
                    let Some(local) = local else {
                        return Err(ErrorCode::InvalidState.into());
                    };
                    match self.udp_proxy(local, peer) {
                        Ok(proxy) => Some(proxy.into()),
                        Err(error) if rewritten.is_empty() => return Err(error),
                        Err(_) => break,
                    }
                }
                Some(remote) => match self.host_target(Transport::Udp, remote) {
                    Ok(target) => Some(target.into()),
                    Err(_) if rewritten.is_empty() => return Ok(1),
                    Err(_) => break,
                },
            };
            rewritten.push(OutgoingDatagram {
                data: datagram.data,
                remote_address,
            });
        }
        HostOutgoingDatagramStream::send(view, this, rewritten)
    }

    /// UDP `receive`: senders inside the pod show their guest port.
    pub(crate) fn udp_receive(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<IncomingDatagramStream>,
        max_results: u64,
    ) -> SocketResult<Vec<IncomingDatagram>> {
        let mut datagrams = HostIncomingDatagramStream::receive(view, this, max_results)?;
        for datagram in &mut datagrams {
            let sender: SocketAddr = datagram.remote_address.into();
            datagram.remote_address = self
                .udp_peer_of(sender)
                .unwrap_or_else(|| self.guest_view(Transport::Udp, sender))
                .into();
        }
        Ok(datagrams)
    }

    /// UDP `local-address`: the guest's own port.
    pub(crate) fn udp_local_address(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<UdpSocket>,
    ) -> SocketResult<IpSocketAddress> {
        let local = HostUdpSocket::local_address(view, this)?;
        Ok(self.guest_view(Transport::Udp, local.into()).into())
    }

    /// UDP `remote-address`: a peer inside the pod shows its guest port.
    pub(crate) fn udp_remote_address(
        &self,
        view: &mut WasiSocketsCtxView<'_>,
        this: Resource<UdpSocket>,
    ) -> SocketResult<IpSocketAddress> {
        let remote: SocketAddr = HostUdpSocket::remote_address(view, this)?.into();
        Ok(self
            .udp_peer_of(remote)
            .unwrap_or_else(|| self.guest_view(Transport::Udp, remote))
            .into())
    }
}

impl PodNetwork {
    /// Whether a guest may bind (or listen at) `addr`, or connect or send
    /// to it. Binding is local: loopback, all addresses, or a published
    /// hostIP; everything else is egress.
    pub(crate) fn permits(&self, addr: &SocketAddr, binding: bool) -> bool {
        let ip = canonical(addr.ip());
        if self.host_network || is_pod_localhost(ip) {
            return true;
        }
        if binding {
            return ip.is_unspecified()
                || self
                    .ports
                    .lock()
                    .published
                    .values()
                    .any(|(host, _)| host.ip() == addr.ip());
        }
        // The pod's own published ports (a sibling reaching one at its
        // hostIP) are the pod's, not egress.
        self.egress.allows(addr)
            || self
                .ports
                .lock()
                .published
                .values()
                .any(|(host, _)| host == addr)
    }
}

/// One UDP relay (see [`UdpEgress`]): datagrams from the guest's socket at
/// `guest` to the proxy go to the peer, the peer's to the guest, until
/// [`UDP_IDLE`] passes without either; then the relay is forgotten.
async fn relay_datagrams(
    proxy: tokio::net::UdpSocket,
    outside: tokio::net::UdpSocket,
    guest: SocketAddr,
    egress: Arc<Mutex<UdpEgress>>,
    key: (SocketAddr, SocketAddr),
) {
    let mut from_guest = vec![0u8; 65_536];
    let mut from_peer = vec![0u8; 65_536];
    loop {
        let carried = tokio::time::timeout(UDP_IDLE, async {
            tokio::select! {
                received = proxy.recv_from(&mut from_guest) => {
                    if let Ok((len, sender)) = received && sender == guest {
                        let _ = outside.send(&from_guest[..len]).await;
                    }
                }
                received = outside.recv(&mut from_peer) => {
                    // A refused datagram is reported here: nothing to carry.
                    if let Ok(len) = received {
                        let _ = proxy.send_to(&from_peer[..len], guest).await;
                    }
                }
            }
        })
        .await;
        if carried.is_err() {
            break;
        }
    }
    let mut egress = egress.lock().expect("udp egress poisoned");
    if let Some(proxy) = egress.proxies.remove(&key) {
        egress.peers.remove(&proxy);
    }
}

/// Puts `socket` (of the host's network namespace) in the place of the
/// guest's TCP socket `rep`, which must be bound and neither listening nor
/// connecting, so that wasmtime-wasi has not yet registered it with tokio.
fn adopt_tcp(
    view: &mut WasiSocketsCtxView<'_>,
    rep: u32,
    socket: rustix::fd::OwnedFd,
) -> SocketResult<()> {
    let local: SocketAddr = HostTcpSocket::local_address(view, Resource::new_borrow(rep))?.into();
    adopt(local, socket).map_err(|error| {
        tracing::warn!(%local, %error, "could not hand the guest a socket of the host's network");
        error.into()
    })
}

/// wasmtime-wasi does not expose a socket's descriptor: the guest's socket
/// is found by its bound address and `socket` takes its descriptor (see
/// `sandbox::sys::replace_socket_bound_at`). Only behind the OS wall.
#[cfg(target_os = "linux")]
fn adopt(local: SocketAddr, socket: rustix::fd::OwnedFd) -> std::io::Result<()> {
    crate::sandbox::sys::replace_socket_bound_at(local, socket)
}

#[cfg(not(target_os = "linux"))]
fn adopt(_local: SocketAddr, _socket: rustix::fd::OwnedFd) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// A store whose guest's sockets go through the pod's network (the
/// container's WASI state).
pub(crate) trait PodSockets {
    fn pod_network(&self) -> PodNetwork;
    fn sockets(&mut self) -> WasiSocketsCtxView<'_>;
}

/// The WASI version whose `wasi:sockets/tcp` wasmtime-wasi 48 defines; guests
/// importing an older 0.2 version are linked to it by semver.
const TCP_INTERFACE: &str = "wasi:sockets/tcp@0.2.12";
const UDP_INTERFACE: &str = "wasi:sockets/udp@0.2.12";

/// Replaces the address-carrying functions of `wasi:sockets/tcp` and `udp`
/// with the pod network's (see the module docs), which rewrite the address
/// and call wasmtime-wasi's own.
pub(crate) fn shadow_sockets<T: PodSockets + Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::TcpSocket;
    use wasmtime_wasi::p2::bindings::sockets::network::{IpSocketAddress, Network};
    linker.allow_shadowing(true);
    let mut tcp = linker.instance(TCP_INTERFACE)?;
    tcp.func_wrap_async(
        "[method]tcp-socket.start-bind",
        |mut store, (this, network, address): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)| {
            Box::new(async move {
                let state: &mut T = store.data_mut();
                let pod_network = state.pod_network();
                lower(pod_network.tcp_start_bind(&mut state.sockets(), this, network, address).await)
            })
        },
    )?;
    tcp.func_wrap_async(
        "[method]tcp-socket.start-connect",
        |mut store, (this, network, address): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)| {
            Box::new(async move {
                let state: &mut T = store.data_mut();
                let pod_network = state.pod_network();
                lower(pod_network.tcp_start_connect(&mut state.sockets(), this, network, address).await)
            })
        },
    )?;
    tcp.func_wrap(
        "[method]tcp-socket.local-address",
        |mut store, (this,): (Resource<TcpSocket>,)| {
            let state: &mut T = store.data_mut();
            let pod_network = state.pod_network();
            lower(pod_network.tcp_local_address(&mut state.sockets(), this))
        },
    )?;
    tcp.func_wrap(
        "[method]tcp-socket.remote-address",
        |mut store, (this,): (Resource<TcpSocket>,)| {
            let state: &mut T = store.data_mut();
            let pod_network = state.pod_network();
            lower(pod_network.tcp_remote_address(&mut state.sockets(), this))
        },
    )?;
    shadow_udp(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The same for `wasi:sockets/udp`.
fn shadow_udp<T: PodSockets + Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::UdpSocket;
    use wasmtime_wasi::p2::bindings::sockets::network::{IpSocketAddress, Network};
    use wasmtime_wasi::p2::bindings::sockets::udp::{
        IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream,
    };
    let mut udp = linker.instance(UDP_INTERFACE)?;
    udp.func_wrap_async(
        "[method]udp-socket.start-bind",
        |mut store, (this, network, address): (Resource<UdpSocket>, Resource<Network>, IpSocketAddress)| {
            Box::new(async move {
                let state: &mut T = store.data_mut();
                let pod_network = state.pod_network();
                lower(pod_network.udp_start_bind(&mut state.sockets(), this, network, address).await)
            })
        },
    )?;
    udp.func_wrap_async(
        "[method]udp-socket.stream",
        |mut store, (this, remote): (Resource<UdpSocket>, Option<IpSocketAddress>)| {
            Box::new(async move {
                let state: &mut T = store.data_mut();
                let pod_network = state.pod_network();
                lower(
                    pod_network
                        .udp_stream(&mut state.sockets(), this, remote)
                        .await,
                )
            })
        },
    )?;
    udp.func_wrap(
        "[method]udp-socket.local-address",
        |mut store, (this,): (Resource<UdpSocket>,)| {
            let state: &mut T = store.data_mut();
            let pod_network = state.pod_network();
            lower(pod_network.udp_local_address(&mut state.sockets(), this))
        },
    )?;
    udp.func_wrap(
        "[method]udp-socket.remote-address",
        |mut store, (this,): (Resource<UdpSocket>,)| {
            let state: &mut T = store.data_mut();
            let pod_network = state.pod_network();
            lower(pod_network.udp_remote_address(&mut state.sockets(), this))
        },
    )?;
    udp.func_wrap(
        "[method]outgoing-datagram-stream.send",
        |mut store,
         (this, datagrams): (Resource<OutgoingDatagramStream>, Vec<OutgoingDatagram>)| {
            let state: &mut T = store.data_mut();
            let pod_network = state.pod_network();
            lower(pod_network.udp_send(&mut state.sockets(), this, datagrams))
        },
    )?;
    udp.func_wrap(
        "[method]incoming-datagram-stream.receive",
        |mut store, (this, max_results): (Resource<IncomingDatagramStream>, u64)| {
            let state: &mut T = store.data_mut();
            let pod_network = state.pod_network();
            lower(pod_network.udp_receive(&mut state.sockets(), this, max_results))
        },
    )?;
    Ok(())
}

/// Turns wasmtime-wasi's socket result into what the component sees: an
/// error code for the guest, or a trap.
fn lower<T>(
    result: wasmtime_wasi::p2::SocketResult<T>,
) -> wasmtime::Result<(Result<T, wasmtime_wasi::p2::bindings::sockets::network::ErrorCode>,)> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(error) => Ok((Err(error.downcast()?),)),
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
