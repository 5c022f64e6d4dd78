//! Probes, as the kubelet runs them: a container's `startupProbe` first,
//! then its `readinessProbe` and `livenessProbe` side by side, each
//! `periodSeconds` apart after `initialDelaySeconds` (counted from the
//! container's start), each attempt bounded by `timeoutSeconds`.
//!
//! - startup: passing sets `started` and lets the others begin; failing
//!   `failureThreshold` times in a row restarts the container.
//! - readiness: `successThreshold` passes in a row make the container
//!   `ready`, `failureThreshold` failures in a row make it not ready.
//! - liveness: `failureThreshold` failures in a row restart the container
//!   (as `restartPolicy` allows).
//!
//! The actions reach the pod's own ports ([`PodNetwork::connect_to_pod`]),
//! never the host's: `tcpSocket` opens a connection, `httpGet` sends a
//! `GET` over HTTP/1.1 with hyper, `exec` runs a program from the
//! container's image in the container ([`Execer::exec`]).

use super::exec::{ExecOutput, ExecRequest, Execer};
use crate::log::Stream;
use crate::manifest::{Hook, HttpGet, Probe, ProbeAction};
use crate::network::PodNetwork;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Readiness => "readiness",
            ProbeKind::Liveness => "liveness",
        })
    }
}

/// A container's probes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probes {
    pub startup: Option<Probe>,
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
}

impl Probes {
    pub(crate) fn of(spec: &crate::ContainerSpec) -> Probes {
        Probes {
            startup: spec.startup_probe.clone(),
            readiness: spec.readiness_probe.clone(),
            liveness: spec.liveness_probe.clone(),
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.startup.is_some() || self.readiness.is_some() || self.liveness.is_some()
    }
}

/// What the probes of one running container tell its lifecycle.
pub(super) trait ProbeReport: Send + Sync {
    /// The startup probe passed: the container has started.
    fn started(&self);
    /// The container's readiness changed.
    fn ready(&self, ready: bool, why: Option<&str>);
    /// One attempt failed (not yet past the threshold, or readiness).
    fn failed(&self, kind: ProbeKind, why: &str, in_a_row: u32, threshold: u32);
    /// The container must be restarted: `kind` failed past its threshold;
    /// `grace` is the probe's own grace period, if it has one.
    fn restart(&self, kind: ProbeKind, why: &str, grace: Option<std::time::Duration>);
}

/// Where the probes of one container run.
pub(super) struct Target {
    pub container: String,
    pub network: PodNetwork,
    pub execer: Execer,
    /// When the container's instance started.
    pub started: Instant,
}

/// Runs `probes` for one instance of a container until it is dropped (the
/// instance ends) or the container must restart.
pub(super) async fn watch(probes: Probes, target: Target, report: Arc<dyn ProbeReport>) {
    if let Some(startup) = &probes.startup {
        let mut failures = 0;
        let mut next = target.started + startup.initial_delay;
        loop {
            tokio::time::sleep_until(next).await;
            next = Instant::now() + startup.period;
            match attempt(startup, &target).await {
                Ok(()) => break,
                Err(why) => {
                    failures += 1;
                    if failures >= startup.failure_threshold {
                        report.restart(ProbeKind::Startup, &why, startup.termination_grace_period);
                        return;
                    }
                    report.failed(
                        ProbeKind::Startup,
                        &why,
                        failures,
                        startup.failure_threshold,
                    );
                }
            }
        }
        report.started();
    }
    let readiness = async {
        match &probes.readiness {
            Some(probe) => readiness_loop(probe, &target, report.as_ref()).await,
            None => std::future::pending().await,
        }
    };
    let liveness = async {
        match &probes.liveness {
            Some(probe) => liveness_loop(probe, &target, report.as_ref()).await,
            None => std::future::pending().await,
        }
    };
    // The readiness loop never ends; the liveness loop ends only when the
    // container must restart. Without either, this waits to be dropped.
    tokio::select! {
        () = readiness => {}
        () = liveness => {}
    }
}

async fn readiness_loop(probe: &Probe, target: &Target, report: &dyn ProbeReport) -> ! {
    let (mut passes, mut failures) = (0u32, 0u32);
    let mut ready = false;
    let mut next = (target.started + probe.initial_delay).max(Instant::now());
    loop {
        tokio::time::sleep_until(next).await;
        next = Instant::now() + probe.period;
        match attempt(probe, target).await {
            Ok(()) => {
                failures = 0;
                passes = passes.saturating_add(1);
                if !ready && passes >= probe.success_threshold {
                    ready = true;
                    report.ready(true, None);
                }
            }
            Err(why) => {
                passes = 0;
                failures = failures.saturating_add(1);
                if ready && failures >= probe.failure_threshold {
                    ready = false;
                    report.ready(false, Some(&why));
                } else {
                    report.failed(
                        ProbeKind::Readiness,
                        &why,
                        failures,
                        probe.failure_threshold,
                    );
                }
            }
        }
    }
}

async fn liveness_loop(probe: &Probe, target: &Target, report: &dyn ProbeReport) {
    let mut failures = 0u32;
    let mut next = (target.started + probe.initial_delay).max(Instant::now());
    loop {
        tokio::time::sleep_until(next).await;
        next = Instant::now() + probe.period;
        match attempt(probe, target).await {
            Ok(()) => failures = 0,
            Err(why) => {
                failures += 1;
                if failures >= probe.failure_threshold {
                    report.restart(ProbeKind::Liveness, &why, probe.termination_grace_period);
                    return;
                }
                report.failed(ProbeKind::Liveness, &why, failures, probe.failure_threshold);
            }
        }
    }
}

/// Runs a lifecycle hook to its end (no timeout of its own: a preStop
/// hook is bounded by the grace period); `Err` says why it failed.
pub(super) async fn run_hook(hook: &Hook, target: &Target) -> Result<(), String> {
    match hook {
        Hook::Exec { command } => exec(&target.execer, &target.container, command).await,
        Hook::HttpGet(get) => http_get(&target.network, get).await,
        Hook::Sleep(duration) => {
            tokio::time::sleep(*duration).await;
            Ok(())
        }
    }
}

/// One attempt of `probe`, within its timeout: `Err` says why it failed,
/// in the kubelet's words where it has them.
async fn attempt(probe: &Probe, target: &Target) -> Result<(), String> {
    let run = async {
        match &probe.action {
            ProbeAction::TcpSocket { port } => target
                .network
                .connect_to_pod(*port)
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp localhost:{port}: {e}")),
            ProbeAction::HttpGet(get) => http_get(&target.network, get).await,
            ProbeAction::Exec { command } => exec(&target.execer, &target.container, command).await,
            ProbeAction::Grpc { port, service } => grpc(&target.network, *port, service).await,
        }
    };
    match tokio::time::timeout(probe.timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timed out after {}",
            humantime::format_duration(probe.timeout)
        )),
    }
}

async fn http_get(network: &PodNetwork, get: &HttpGet) -> Result<(), String> {
    let HttpGet {
        path,
        port,
        headers,
    } = get;
    let port = *port;
    use http_body_util::Empty;
    use hyper::header;
    let url = format!("http://localhost:{port}{path}");
    let failed = |e: &dyn std::fmt::Display| format!("Get \"{url}\": {e}");
    let stream = network.connect_to_pod(port).await.map_err(|e| failed(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e))?;
    let connection = tokio::spawn(connection);
    let mut request = hyper::Request::get(path)
        .header(header::HOST, format!("localhost:{port}"))
        .header(header::USER_AGENT, "kube-probe/1.31 (wpod)")
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| failed(&e))?;
    let response = sender.send_request(request).await;
    connection.abort();
    let status = response.map_err(|e| failed(&e))?.status();
    if (200..400).contains(&status.as_u16()) {
        Ok(())
    } else {
        Err(format!(
            "HTTP probe failed with statuscode: {}",
            status.as_u16()
        ))
    }
}

/// Asks the gRPC health service (`grpc.health.v1.Health/Check`) on the
/// pod's `port`, with tonic-health's client over a connection to the pod.
async fn grpc(network: &PodNetwork, port: u16, service: &str) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let network = network.clone();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let network = network.clone();
        async move {
            let stream = network.connect_to_pod(port).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://localhost:{port}"))
        .map_err(|e| e.to_string())?
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("failed to connect service \"localhost:{port}\": {e}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| format!("health rpc failed: {}", status.message()))?;
    let status = response.into_inner().status;
    if status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        let name = ServingStatus::try_from(status)
            .map(|s| s.as_str_name())
            .unwrap_or("UNKNOWN");
        Err(format!("service unhealthy (responded with \"{name}\")"))
    }
}

/// The most of an exec probe's output kept for its failure message (the
/// kubelet keeps 10 KiB).
const EXEC_OUTPUT: usize = 10 * 1024;

async fn exec(execer: &Execer, container: &str, command: &[String]) -> Result<(), String> {
    let output = Arc::new(Collected::default());
    let ended = execer
        .exec(
            ExecRequest {
                container: Some(container.to_owned()),
                command: command.to_vec(),
            },
            output.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
    if ended.exit_code == 0 {
        return Ok(());
    }
    let text = output.text();
    Err(if text.is_empty() {
        format!("command {command:?} exited with {}", ended.exit_code)
    } else {
        text
    })
}

/// An exec probe's output, both streams, up to [`EXEC_OUTPUT`] bytes.
#[derive(Default)]
struct Collected(Mutex<Vec<u8>>);

impl Collected {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }
}

impl ExecOutput for Collected {
    fn write(&self, _: Stream, bytes: &[u8]) {
        if let Ok(mut kept) = self.0.lock() {
            let room = EXEC_OUTPUT.saturating_sub(kept.len());
            kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }
}
