//! HTTP components: a container whose component exports
//! `wasi:http/incoming-handler` (the `wasi:http/proxy` world) is served on
//! its HTTP port, one fresh instance per request ([`serve`]); and outgoing
//! HTTP (`wasi:http/outgoing-handler`) for every component, under the pod's
//! egress policy ([`PodHttp`]).
//!
//! Serving is wpod's own server (hyper, HTTP/1.1 with keep-alive and h2c)
//! listening on the pod's port as a guest's socket server would
//! (`PodNetwork::listen`): siblings reach it on localhost, a `hostPort`
//! publishes it, and behind the OS wall the listening socket is the one the
//! supervisor bound in the host's namespace. Each request instantiates the
//! program's `ProxyPre` in a store of its own (the container's WASI context,
//! its `limits.memory` for that instance alone), at most the container's
//! concurrency limit at once; a request whose instance traps without
//! answering gets a 500, and the trap is reported with the container's name.
//!
//! Outgoing requests are sent by wpod, not by wasmtime-wasi-http's client:
//! the host name of the URL is checked against the pod's host-name rules,
//! each address it resolves to against the address rules, and the
//! connection is made as the pod's own sockets are (the pod's localhost to
//! its own ports; behind the wall through the supervisor's broker). TLS is
//! rustls with the system's roots.

mod outgoing;
mod serve;

pub(crate) use outgoing::PodHttp;
#[cfg(target_os = "linux")]
pub(crate) use outgoing::preload_tls_roots;
pub(crate) use serve::{Instance, Service, serve};

/// An HTTP component ready to instantiate, once per request: a
/// `wasi:http/proxy` component of WASI 0.2 (`incoming-handler`) or a
/// `wasi:http/service` component of WASI 0.3 (`handler`).
pub(crate) enum HttpPre<T: 'static> {
    P2(wasmtime_wasi_http::p2::bindings::ProxyPre<T>),
    P3(wasmtime_wasi_http::p3::bindings::ServicePre<T>),
}

impl<T: 'static> HttpPre<T> {
    /// The component it instantiates.
    pub(crate) fn component(&self) -> &wasmtime::component::Component {
        match self {
            HttpPre::P2(pre) => pre.instance_pre().component(),
            HttpPre::P3(pre) => pre.instance_pre().component(),
        }
    }
}

impl<T> Clone for HttpPre<T> {
    fn clone(&self) -> Self {
        match self {
            HttpPre::P2(pre) => HttpPre::P2(pre.clone()),
            HttpPre::P3(pre) => HttpPre::P3(pre.clone()),
        }
    }
}

/// How many requests one HTTP container serves at once unless the pod's
/// `wpod.dev/http-concurrency` says otherwise; more wait their turn. Each
/// request is an instance with its own memory, so this bounds the
/// container's memory at this many times its `limits.memory`.
pub const DEFAULT_HTTP_CONCURRENCY: usize = 100;

/// What serving an HTTP container needs, worked out with the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Serving {
    /// The container port it is served on.
    pub port: u16,
    /// At most this many requests at once.
    pub concurrency: usize,
    /// Its instances come from a pool of `concurrency` slots (the usual
    /// case), not from one allocation each.
    pub pooled: bool,
}
