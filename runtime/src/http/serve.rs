//! The server of an HTTP component: hyper (HTTP/1.1 with keep-alive, and
//! h2c, told apart by hyper-util's auto builder) on the container's
//! listening socket, one fresh instance per request.
//!
//! A WASI 0.2 component (`wasi:http/incoming-handler@0.2.x`) is called with
//! an outparam it answers through; a WASI 0.3 one (`wasi:http/handler@0.3.x`)
//! is an async export, called in the store's event loop
//! (`Store::run_concurrent`), which goes on after the response is handed to
//! hyper: the response body is a stream the guest writes from a task that
//! outlives its `handle`, and it only moves while the loop runs. The
//! instance (and its concurrency permit) ends when the guest has no task
//! left.

use crate::http::HttpPre;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

/// Where an instance's answer goes: the response, or `None` for "answer
/// 500" (the guest answered with an error code).
type Answer = tokio::sync::oneshot::Sender<Option<hyper::Response<WasiBody>>>;

/// A future run for one request's instance.
pub(crate) type Instance = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where the instances of an HTTP container come from, and where what
/// happened to them goes: the container's side of serving.
pub(crate) trait Service: Send + Sync + 'static {
    type Data: WasiHttpView + Send + 'static;
    /// A store for one request's instance (the container's WASI context and
    /// limits).
    fn store(&self) -> Result<Store<Self::Data>, String>;
    /// `instance`, as the container runs its guests (its CPU time counted).
    fn run(&self, instance: Instance) -> Instance;
    /// One request's instance ended: with the error that ended it, if any,
    /// and whether it had answered by then.
    fn ended(
        &self,
        store: &Store<Self::Data>,
        request: &str,
        error: Option<wasmtime::Error>,
        responded: bool,
    );
}

/// What every request of one server shares.
struct Shared<S: Service> {
    pre: HttpPre<S::Data>,
    service: Arc<S>,
    permits: Arc<Semaphore>,
    /// The running instances; taken (and so every instance stopped) when the
    /// server ends.
    instances: Mutex<Option<JoinSet<()>>>,
}

/// Serves `listener` until `asked_to_end` is cancelled: then it stops
/// accepting, lets the connections finish what they carry (hyper's graceful
/// shutdown; the caller bounds it by the grace period) and returns. Dropped,
/// it stops at once, every instance with it.
pub(crate) async fn serve<S: Service>(
    listener: std::net::TcpListener,
    pre: HttpPre<S::Data>,
    service: Arc<S>,
    concurrency: usize,
    asked_to_end: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let shared = Arc::new(Shared {
        pre,
        service,
        permits: Arc::new(Semaphore::new(concurrency)),
        instances: Mutex::new(Some(JoinSet::new())),
    });
    // Runs last (declared first): whatever ends the server, its instances end.
    let _stop_instances = StopInstances(shared.clone());
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = asked_to_end.cancelled() => break,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, or a connection reset before it was
                // accepted: the server goes on.
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "http connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Stops a server's instances when it ends.
struct StopInstances<S: Service>(Arc<Shared<S>>);

impl<S: Service> Drop for StopInstances<S> {
    fn drop(&mut self) {
        let instances = self.0.instances.lock().expect("instances poisoned").take();
        drop(instances);
    }
}

/// One request: a fresh instance of the component, which answers it.
async fn handle<S: Service>(
    shared: Arc<Shared<S>>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<WasiBody>, Infallible> {
    let line = format!("{} {}", request.method(), request.uri().path());
    let Ok(permit) = shared.permits.clone().acquire_owned().await else {
        return Ok(answer(503));
    };
    let (sender, response): (Answer, _) = tokio::sync::oneshot::channel();
    let responded = Arc::new(AtomicBool::new(false));
    let instance = {
        let shared = shared.clone();
        let responded = responded.clone();
        async move {
            let _permit = permit;
            let mut store = match shared.service.store() {
                Ok(store) => store,
                Err(why) => {
                    tracing::warn!(request = %line, %why, "cannot make an instance");
                    return;
                }
            };
            let answered = responded.clone();
            let result = match &shared.pre {
                HttpPre::P2(pre) => handle_p2(&mut store, pre, request, sender, answered).await,
                HttpPre::P3(pre) => handle_p3(&mut store, pre, request, sender, answered).await,
            };
            let responded = responded.load(Ordering::Acquire);
            shared.service.ended(&store, &line, result.err(), responded);
        }
    };
    {
        let mut instances = shared.instances.lock().expect("instances poisoned");
        let Some(instances) = instances.as_mut() else {
            return Ok(answer(503));
        };
        while instances.try_join_next().is_some() {}
        instances.spawn(shared.service.run(Box::pin(instance)));
    }
    Ok(match response.await {
        Ok(Some(response)) => response,
        // The guest answered with an error, or ended (trapped) without
        // answering: what `wasmtime serve` answers.
        Ok(None) | Err(_) => answer(500),
    })
}

/// One request to a WASI 0.2 component: `incoming-handler.handle` with an
/// outparam whose answer goes to `sender`.
async fn handle_p2<T: WasiHttpView + Send + 'static>(
    store: &mut Store<T>,
    pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<T>,
    request: hyper::Request<hyper::body::Incoming>,
    sender: Answer,
    answered: Arc<AtomicBool>,
) -> wasmtime::Result<()> {
    let mut http = store.data_mut().http();
    let request = http.new_incoming_request(Scheme::Http, request)?;
    let out = http.new_response_outparam_from_callback(move |response| {
        answered.store(true, Ordering::Release);
        let _ = sender.send(response.ok());
    })?;
    let proxy = pre.instantiate_async(&mut *store).await?;
    proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, request, out)
        .await
}

/// One request to a WASI 0.3 component: `handler.handle`, whose response
/// goes to `sender`; then the store's event loop runs on until the guest
/// has no task left (it may still be writing the body, or doing work after
/// its answer).
async fn handle_p3<T: WasiHttpView + Send + 'static>(
    store: &mut Store<T>,
    pre: &wasmtime_wasi_http::p3::bindings::ServicePre<T>,
    request: hyper::Request<hyper::body::Incoming>,
    sender: Answer,
    answered: Arc<AtomicBool>,
) -> wasmtime::Result<()> {
    let service = pre.instantiate_async(&mut *store).await?;
    let http = store.data_mut().http();
    // `request_body` ends with the request body's transfer (its error, if
    // any); the response carries it, as wasmtime-wasi-http's own handler does.
    let (request, request_body) = wasmtime_wasi_http::p3::Request::from_http(http.hooks, request);
    let request = http.table.push(request)?;
    store
        .run_concurrent(async move |accessor| {
            let response = match service
                .wasi_http_handler()
                .call_handle(accessor, request)
                .await?
            {
                Ok(response) => response,
                Err(_) => {
                    let _ = sender.send(None);
                    return Ok(());
                }
            };
            let response = accessor.with(|mut access| {
                let response = access.get().http().table.delete(response)?;
                response.into_http_with_getter(&mut access, request_body, T::http)
            })?;
            answered.store(true, Ordering::Release);
            let _ = sender.send(Some(response));
            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
            wasmtime::Result::<()>::Ok(())
        })
        .await?
}

/// A response of wpod's own, with an empty body.
fn answer(status: u16) -> hyper::Response<WasiBody> {
    let mut response = hyper::Response::new(
        http_body_util::Empty::new()
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}
