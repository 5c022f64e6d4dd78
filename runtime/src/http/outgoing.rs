//! Outgoing HTTP (`wasi:http/outgoing-handler`): wpod sends each request
//! itself, so that the pod's egress policy holds by host name as well as by
//! address, and the connection is made as the pod's sockets are.

use crate::network::PodNetwork;
use http_body_util::BodyExt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The `wasi:http` hooks of one container: what it may reach.
pub(crate) struct PodHttp {
    pub network: PodNetwork,
    pub container: Arc<str>,
}

/// What `send_request` gives back: the response, and the connection's own
/// future (its end, or its error), which wasmtime-wasi-http drives.
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

impl WasiHttpHooks for PodHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _constructed: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<Sent, Error>> + Send> {
        let network = self.network.clone();
        let container = self.container.clone();
        Box::new(send(network, container, request, options))
    }
}

/// How long to wait for a connection, the first byte, or the next one,
/// unless the guest's `request-options` say otherwise (as
/// wasmtime-wasi-http's own client).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

async fn send(
    network: PodNetwork,
    container: Arc<str>,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let uri = request.uri();
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);

    let literal = host.parse::<IpAddr>().ok();
    // The pod's own names first (`hostAliases`), as its /etc/hosts has them.
    let aliased = crate::manifest::HostAlias::lookup(&network.host_aliases, &host);
    let addresses: Vec<SocketAddr> = match literal.or(aliased) {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => tokio::time::timeout(
            connect_timeout,
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| Error::DnsTimeout)?
        .map_err(|_| Error::DnsError {
            rcode: Some("address not available".into()),
            info_code: None,
        })?
        .collect(),
    };
    // A host-name rule vouches for the name; the addresses must each be
    // allowed otherwise (or be the pod's own).
    let allowed_by_name = literal.is_none()
        && network
            .egress
            .hosts
            .iter()
            .any(|rule| rule.matches(&host, port));
    let mut refused = None;
    let mut failed = None;
    let mut stream = None;
    for address in addresses {
        let connecting = network.connect_for_http(&host, address, allowed_by_name);
        match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(Ok(connected)) => {
                stream = Some(connected);
                break;
            }
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                refused = Some(address);
            }
            Ok(Err(error)) => failed = Some(error),
            Err(_) => return Err(Error::ConnectionTimeout),
        }
    }
    let stream = match (stream, refused, failed) {
        (Some(stream), _, _) => stream,
        (None, Some(address), _) => {
            tracing::warn!(
                pod = %network.pod,
                container = %container,
                address = %address,
                host = %host,
                "egress refused: allow it with --allow-egress {host}:{port} or the pod annotation wpod.dev/egress"
            );
            return Err(Error::HttpRequestDenied);
        }
        (None, None, Some(error)) => return Err(Error::Connect(error)),
        (None, None, None) => return Err(Error::DestinationNotFound),
    };
    let _ = stream.set_nodelay(true);
    let io: Box<dyn Io> = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let connector = tokio_rustls::TlsConnector::from(tls_config()?);
        Box::new(connector.connect(name, stream).await.map_err(Error::Tls)?)
    } else {
        Box::new(stream)
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // The request line carries the path only (the authority is in `Host`).
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    // The connection is driven on a task of its own while the response
    // comes, and after, while its body is read.
    let connection = wasmtime_wasi::runtime::spawn(connection);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    Ok((
        response,
        Box::new(async move { connection.await.map_err(Error::from) }),
    ))
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// The TLS client configuration: rustls with ring, trusting the system's
/// roots (read once per process).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no trusted root certificates found on this system ({} errors)",
                    found.errors.len()
                ));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
                })
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|why| Error::InternalError(Some(why)))
}

/// Reads the system's roots now, where they can be read: the OS wall's
/// supervisor calls it before it forks the pod process (whose root holds no
/// `/etc/ssl`), which inherits them.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn preload_tls_roots() {
    let _ = tls_config();
}
