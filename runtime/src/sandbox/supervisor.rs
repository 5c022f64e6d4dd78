//! The supervisor: `wpod run`, in the host's namespaces. It does what needs
//! the host, in this order:
//! 1. Block SIGINT and SIGTERM (read from a signalfd instead): a Ctrl-C from
//!    now on stops the pods properly instead of killing wpod mid-way.
//! 2. Sweep what killed runs left: pod cgroups and private folders whose
//!    owner pid is gone.
//! 3. Check the user's input for every pod before starting any: images
//!    resolved, hostPaths checked and created (`prepare_host_paths`), so errors
//!    name host paths and exit 125 as they do without the wall.
//! 4. Per pod: its private folder, its [`Plan`], its cgroup; then fork
//!    pod-init, which carries on in `inside.rs` with the pod in memory. It
//!    makes PID 1 of the pod's namespaces our child (`CLONE_PARENT`) and
//!    exits; we wait for PID 1 (on old kernels pod-init waits for it).
//! 5. Poll: messages from the pods, signals, and their exits (SIGCHLD, read
//!    from the same signalfd: no pidfd, so kernels before 5.3 do). A signal
//!    is forwarded to each pod process that handles it (it said `Ready`):
//!    the first stops its pod gracefully, the second at once, a third kills
//!    it; one that is not ready yet is killed (PID 1 of a PID namespace
//!    ignores signals it has no handler for).
//! 6. Clean up: cgroups removed (anything left in them killed), private
//!    folders removed.

use super::broker::Broker;
use super::cgroup::{Hierarchies, PodCgroup};
use super::forker::ForkServer;
use super::protocol::{ErrorReport, Message, Reader, Request};
use super::{
    Isolation, PlanInputs, PodMain, SandboxConfig, SandboxError, SandboxedPod, SandboxedRun, sys,
};
use crate::image::ImagePath;
use crate::job::{Jobs, Step};
use crate::manifest::PodSpec;
use crate::pod::{PodOptions, RuntimeConfig};
use crate::status::{ContainerState, PodPhase, PodStatus, Termination, Timestamp};
use rustix::fd::{AsFd, OwnedFd};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Files bound read-only into pods that share the host's network, for name
/// lookups (only those that exist).
const ETC_FILES: [&str; 2] = ["/etc/hosts", RESOLV_CONF];

/// The host's resolver configuration.
const RESOLV_CONF: &str = "/etc/resolv.conf";

pub(super) fn run(
    config: &SandboxConfig,
    cgroups: Option<&Hierarchies>,
    pods: &[PodSpec],
    jobs: &mut Jobs,
    pod_main: PodMain,
) -> Result<Option<SandboxedRun>, SandboxError> {
    // Errors before any pod is prepared are told against the first.
    let first_pod = || pods.first().map(|p| p.name.clone()).unwrap_or_default();
    // The pod processes are forks of this one: with a second thread, the
    // fork could inherit a lock held mid-way, and the kernel would refuse
    // the user namespace. Refuse plainly instead.
    if let Some(threads) = sys::thread_count().filter(|n| *n > 1) {
        return Err(SandboxError::Supervisor {
            pod: first_pod(),
            what: format!(
                "Sandbox::run needs a process with one thread and this one has {threads}; call it before starting any thread or async runtime"
            ),
            source: std::io::Error::from(std::io::ErrorKind::Unsupported),
        });
    }
    let signals = sys::SignalFd::for_supervisor().map_err(|e| SandboxError::Supervisor {
        pod: first_pod(),
        what: "blocking SIGINT, SIGTERM and SIGCHLD".into(),
        source: e.source,
    })?;
    sweep_stale_folders(&config.options.state_dir);
    if let Some(cgroups) = cgroups {
        cgroups.sweep_stale();
    }
    let mut prepared = Vec::new();
    for pod in pods {
        prepared.push(prepare(config, cgroups, pod)?);
    }
    let (stopped, optimiser) = compile_ahead(&prepared, &signals, config.progress.as_deref());
    if let Some(signal) = stopped {
        return Ok(Some(SandboxedRun {
            pods: Vec::new(),
            signal: Some(signal),
        }));
    }
    // Killed on every way out but the end below (and with the supervisor).
    let mut optimiser = OptimiserGuard(optimiser);
    let mut running = Vec::new();
    let count = prepared.len();
    let mut prepared: Vec<Option<Prepared>> = prepared.into_iter().map(Some).collect();
    let mut server = None;
    for index in 0..count {
        let Some(next) = prepared[index].take() else {
            continue;
        };
        let mut pod = start(next, pod_main, server.as_ref().map(|s| (s, index)))?;
        if running.is_empty() {
            // The first pod process's `unshare` tells whether this kernel
            // allows the wall: wait for it before starting the others.
            if let Some(refused) = pod.wait_for_namespaces() {
                let (part, reason, fix) = super::linux::explain_namespaces(&refused.to_string());
                if config.isolation == Isolation::Required {
                    return Err(SandboxError::Unavailable { part, reason, fix });
                }
                tracing::warn!(
                    "running without the OS wall: {part} unavailable ({reason}); {fix}. (--isolation=none silences this, --isolation=required refuses to run)"
                );
                return Ok(None);
            }
            if count > FORK_SERVER_FROM {
                let started = start_fork_server(&mut prepared, pod_main).map_err(|e| {
                    SandboxError::Supervisor {
                        pod: pod.name.clone(),
                        what: "starting the fork server".into(),
                        source: e,
                    }
                })?;
                server = Some(started);
            }
        }
        running.push(pod);
    }
    // Every pod has started: the server exits.
    drop(server);
    let sink = config.status_sink.as_deref();
    // A Job's next pod: prepared and started as the first ones were (its
    // programs are compiled: they are its first pods' programs).
    let mut spawn =
        |pod: &PodSpec| prepare(config, cgroups, pod).and_then(|p| start(p, pod_main, None));
    let signal = supervise(
        &mut running,
        &signals,
        config.pid_file.as_deref(),
        sink,
        Controller {
            jobs,
            spawn: &mut spawn,
        },
    );
    if let Some(optimiser) = optimiser.0.take() {
        finish_optimising(
            optimiser,
            signal.is_some(),
            &signals,
            config.progress.as_deref(),
        );
    }
    if let Some(pid_file) = &config.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    if let Some((pod, report)) = running
        .iter()
        .find_map(|p| p.failed.clone().map(|r| (p.name.clone(), r)))
    {
        return Err(SandboxError::Inside { pod, report });
    }
    let pods = running
        .iter_mut()
        .map(|pod| {
            let status = pod.final_status(signal.is_some()).clone();
            // The last word, also for a pod process that was killed.
            if let Some(sink) = sink {
                sink.status(&pod.name, &status);
            }
            SandboxedPod {
                name: pod.name.clone(),
                pid: pod.pid,
                status,
            }
        })
        .collect();
    Ok(Some(SandboxedRun { pods, signal }))
}

/// Compiles, in a child process outside the wall, the programs of `pods`
/// that the compile cache lacks, so that the pod processes find every
/// program compiled and the cache can be read-only behind the wall (a pod
/// must not be able to write code that later pods load and run). A child,
/// because compiling starts threads and the supervisor must keep one to
/// fork the pod processes. Ctrl-C stops it at once (the child has the
/// default handlers); the signal that did is returned.
///
/// Tiered (`CompilerChoice::Auto`): the child compiles with Winch, which
/// is quick, and a second child, the optimiser, compiles the same programs
/// with Cranelift while the pods run; it is returned, for
/// [`finish_optimising`] once the pods have ended.
fn compile_ahead(
    pods: &[Prepared],
    signals: &sys::SignalFd,
    progress: Option<&dyn crate::CompileProgress>,
) -> (Option<i32>, Option<Optimiser>) {
    let Some(first) = pods.first() else {
        return (None, None);
    };
    let Some(cache_dir) = first.request.runtime.cache_dir.clone() else {
        return (None, None);
    };
    let wasip3 = first.request.runtime.wasip3;
    let choice = first.request.runtime.compiler;
    let mut missing: Vec<(String, PathBuf)> = Vec::new();
    for (reference, program) in pods.iter().flat_map(|p| &p.programs) {
        if !missing.iter().any(|(_, p)| p == program)
            && !crate::image::looks_cached(&cache_dir, program, choice)
        {
            missing.push((reference.clone(), program.clone()));
        }
    }
    if missing.is_empty() {
        return (None, None);
    }
    let tiered = crate::image::tiered(choice);
    let first_tier = if tiered {
        crate::CompilerChoice::Winch
    } else {
        choice
    };
    let runtime = |compiler| crate::RuntimeConfig {
        cache_dir: Some(cache_dir.clone()),
        wasip3,
        compiler,
    };
    let references: Vec<String> = missing.iter().map(|(r, _)| r.clone()).collect();
    match spawn_compiler(runtime(first_tier), &missing, "wpod compile") {
        Ok(child) => {
            let (status, signal) = wait_compiler(child, &references, signals, progress, false);
            tracing::debug!(
                ?status,
                programs = missing.len(),
                "compiled ahead of the wall"
            );
            if signal.is_some() {
                return (signal, None);
            }
        }
        Err(error) => {
            // The pod processes compile for themselves (without caching).
            tracing::debug!(%error, "could not start the compiler process");
            return (None, None);
        }
    }
    let optimiser = tiered
        .then(|| {
            spawn_compiler(
                runtime(crate::CompilerChoice::Cranelift),
                &missing,
                "wpod optimise",
            )
        })
        .and_then(Result::ok)
        .map(|pid| Optimiser { pid, references });
    (None, optimiser)
}

/// A child compiling with Cranelift what the pods run from Winch's code.
struct Optimiser {
    pid: rustix::process::Pid,
    references: Vec<String>,
}

/// Forks a child that compiles `missing` into the cache and exits.
fn spawn_compiler(
    runtime: crate::RuntimeConfig,
    missing: &[(String, PathBuf)],
    name: &str,
) -> std::io::Result<rustix::process::Pid> {
    let _ = std::io::stdout().flush();
    // SAFETY: `run` checked that this process has one thread, and nothing
    // since started one.
    match unsafe { sys::fork() } {
        Ok(sys::Forked::Child) => {
            // Die with the supervisor, and with the terminal's Ctrl-C.
            let _ = sys::die_with_parent();
            let _ = sys::unblock_signals();
            sys::set_process_name(name);
            if let Ok(runtime) = crate::Runtime::new(runtime) {
                runtime.fill_cache(missing);
            }
            sys::exit_now(0);
        }
        Ok(sys::Forked::Parent(pid)) => Ok(pid),
        Err(error) => Err(error.source),
    }
}

/// Waits for a compiler child, telling `progress` how it goes every 100
/// ms (as `optimising` when `optimising`); a stop (SIGINT, SIGTERM) kills
/// it at once (the temporary file of a cache entry it was writing is never
/// renamed into place). Its status, and the signal that stopped it.
fn wait_compiler(
    pid: rustix::process::Pid,
    references: &[String],
    signals: &sys::SignalFd,
    progress: Option<&dyn crate::CompileProgress>,
    optimising: bool,
) -> (Option<i32>, Option<i32>) {
    let started = std::time::Instant::now();
    let child = pid.as_raw_nonzero().get() as u32;
    let mut ticks = 0u32;
    let outcome = loop {
        if let Some(status) = sys::try_wait(child) {
            break (Some(status), None);
        }
        if let Some(progress) = progress {
            if optimising {
                let elapsed = if ticks == 0 {
                    std::time::Duration::ZERO
                } else {
                    started.elapsed()
                };
                progress.optimising(references, elapsed);
            } else {
                progress.compiling(references, started.elapsed());
            }
        }
        ticks += 1;
        if sys::wait_readable(&[signals.as_fd()], Some(100))[0] {
            let mut stop = None;
            while let Some(signal) = signals.take() {
                if signal == libc::SIGINT || signal == libc::SIGTERM {
                    stop = Some(signal);
                }
            }
            if let Some(signal) = stop {
                sys::send_signal(child, libc::SIGKILL);
                let _ = sys::wait_for(pid);
                break (None, Some(signal));
            }
        }
    };
    if let Some(progress) = progress
        && ticks > 0
    {
        progress.done();
    }
    outcome
}

/// Once the pods have ended: waits for the optimiser to finish (so that
/// the next run finds Cranelift's code), unless the run was stopped, or is
/// stopped meanwhile (then it is killed, and the next run compiles again).
fn finish_optimising(
    optimiser: Optimiser,
    stopped: bool,
    signals: &sys::SignalFd,
    progress: Option<&dyn crate::CompileProgress>,
) {
    let child = optimiser.pid.as_raw_nonzero().get() as u32;
    if stopped {
        sys::send_signal(child, libc::SIGKILL);
        let _ = sys::wait_for(optimiser.pid);
        return;
    }
    let (status, signal) = wait_compiler(
        optimiser.pid,
        &optimiser.references,
        signals,
        progress,
        true,
    );
    tracing::debug!(?status, ?signal, "the optimiser ended");
}

/// Kills the optimiser on every way out of the run that did not wait for it.
struct OptimiserGuard(Option<Optimiser>);

impl Drop for OptimiserGuard {
    fn drop(&mut self) {
        if let Some(optimiser) = self.0.take() {
            sys::send_signal(optimiser.pid.as_raw_nonzero().get() as u32, libc::SIGKILL);
            let _ = sys::wait_for(optimiser.pid);
        }
    }
}

/// A pod checked and planned, not started yet.
struct Prepared {
    name: String,
    /// Each container's image reference and program file.
    programs: Vec<(String, PathBuf)>,
    request: Request,
    cgroup: Option<PodCgroup>,
    folder: PrivateFolder,
    initial: PodStatus,
    /// The pod's socket broker and the pod process's end of it.
    broker: Option<(Broker, OwnedFd)>,
    /// Sockets to the pod's DNS resolvers, for its relay.
    dns_upstreams: Vec<OwnedFd>,
}

fn prepare(
    config: &SandboxConfig,
    cgroups: Option<&Hierarchies>,
    pod: &PodSpec,
) -> Result<Prepared, SandboxError> {
    let required = config.isolation == Isolation::Required;
    let base_dir = absolute(&pod.base_dir);
    let image_path = ImagePath {
        roots: config
            .options
            .image_path
            .roots
            .iter()
            .map(|r| absolute(r))
            .collect(),
    };
    let mut images = Vec::new();
    let mut programs = Vec::new();
    for resolved in
        crate::pod::resolve_containers(pod, &base_dir, &image_path, &config.options.registries)?
    {
        programs.push((resolved.spec.image.clone(), resolved.program));
        if crate::registry::is_registry_reference(&resolved.spec.image) {
            // The store's record of it, which the pod process reads again.
            let store = crate::registry::ImageStore::new(&config.options.registries.store);
            images.push(store.ref_file(&resolved.spec.image));
        }
        match (resolved.image.wasm_file, resolved.image.rootfs) {
            (Some(file), _) => images.push(file),
            (None, Some(rootfs)) => images.push(rootfs.parent().unwrap_or(&rootfs).to_owned()),
            (None, None) => {}
        }
    }
    // The library's own checks and DirectoryOrCreate, on the host's side;
    // emptyDirs are made inside, in the private folder.
    crate::volume::prepare_host_paths(pod).map_err(|source| crate::Error::volume(pod, source))?;
    let cache_dir = config.runtime.cache_dir.as_ref().map(|d| absolute(d)).filter(|dir| {
        crate::image::create_private_dir(dir)
            .map_err(|error| tracing::warn!(dir = %dir.display(), %error, "no compile cache for this run"))
            .is_ok()
    });
    let mut folder = PrivateFolder::new(&absolute(&config.options.state_dir), &pod.name);
    let host_network = super::needs_host_network(pod);
    if let Some(reason) = host_network {
        if required {
            return Err(SandboxError::Unavailable {
                part: format!("a network namespace for pod `{}`", pod.name),
                reason: format!("{reason} asks for the host's network namespace"),
                fix: "run it with --isolation=auto (every other part of the wall stays)".into(),
            });
        }
        tracing::warn!(
            pod = %pod.name,
            "the pod shares the host's network namespace ({reason}); every other part of the OS wall is up"
        );
    }
    // Published ports are bound now (in use: an error before anything
    // starts) and held outside the pod's namespace, as are connections out.
    let broker = if host_network.is_none()
        && (!crate::network::published_ports(pod).is_empty()
            || !pod.egress.is_empty()
            || !config.options.egress.is_empty())
    {
        let (broker, pod_end) = super::broker::Broker::new(pod, &config.options.egress).map_err(
            |error| match error {
                super::broker::BrokerError::Port(source) => {
                    SandboxError::from(crate::Error::Port {
                        pod: pod.name.clone(),
                        source,
                    })
                }
                super::broker::BrokerError::Channel(source) => SandboxError::Supervisor {
                    pod: pod.name.clone(),
                    what: "creating the pod's socket channel".into(),
                    source,
                },
            },
        )?;
        Some((broker, pod_end))
    } else {
        None
    };
    // A pod that may reach out resolves names through a relay in its
    // namespace, to resolvers it can reach only through these sockets.
    let may_reach_out = !pod.egress.is_empty() || !config.options.egress.is_empty();
    if may_reach_out {
        // Outgoing HTTPS trusts the system's roots, which are not inside
        // the wall: read them here, and the pod process inherits them.
        crate::http::preload_tls_roots();
    }
    let resolver = (host_network.is_none() && may_reach_out)
        .then(|| {
            let host = std::fs::read_to_string(RESOLV_CONF).unwrap_or_default();
            super::dns::resolver(pod, &host)
        })
        .flatten();
    let dns_upstreams = match &resolver {
        Some(resolver) => super::dns::upstream_sockets(&resolver.upstreams).map_err(|source| {
            SandboxError::Supervisor {
                pod: pod.name.clone(),
                what: "opening sockets to the pod's DNS resolvers".into(),
                source,
            }
        })?,
        None => Vec::new(),
    };
    let inputs = PlanInputs {
        images,
        cache_dir: cache_dir.clone(),
        state_dir: folder.path.clone(),
        state_on_disk: super::needs_disk_emptydir(pod),
        etc_files: if host_network.is_some() {
            ETC_FILES
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.exists())
                .collect()
        } else {
            // Only `/etc/hosts`, so that `localhost` resolves.
            ETC_FILES[..1]
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.exists())
                .collect()
        },
        net_namespace: host_network.is_none(),
        resolv_conf: resolver.map(|r| r.resolv_conf),
        // The host's names and the pod's aliases, as the kubelet writes a
        // pod's hosts file.
        hosts: (!pod.host_aliases.is_empty()).then(|| {
            let host = std::fs::read_to_string(ETC_FILES[0])
                .unwrap_or_else(|_| "127.0.0.1\tlocalhost\n::1\tlocalhost\n".into());
            host + &crate::manifest::HostAlias::hosts_lines(&pod.host_aliases)
        }),
        writable: config
            .pod_files
            .as_ref()
            .map(|dir| absolute(dir).join(&pod.name)),
    };
    let plan = super::plan(pod, &inputs);
    if plan.private_tmpfs.is_none() {
        folder
            .make_on_host()
            .map_err(|source| SandboxError::Supervisor {
                pod: pod.name.clone(),
                what: "creating the pod's private folder".into(),
                source,
            })?;
    }
    let cgroup = match cgroups.map(|c| c.create(&folder.name, &plan.limits)) {
        None => None,
        Some(Ok(cgroup)) => Some(cgroup),
        Some(Err(reason)) if required => {
            return Err(SandboxError::Unavailable {
                part: format!("a cgroup for pod `{}`", pod.name),
                reason: reason.to_string(),
                fix: "run wpod as root, or in a delegated cgroup".into(),
            });
        }
        Some(Err(reason)) => {
            tracing::warn!(pod = %pod.name, "the pod has no cgroup: {reason}");
            None
        }
    };
    let (outer_uid, outer_gid) = sys::outer_ids();
    let mut inside = pod.clone();
    inside.base_dir = base_dir;
    let request = Request {
        pod: inside,
        plan,
        outer_uid,
        outer_gid,
        options: PodOptions {
            image_path,
            state_dir: folder.path.clone(),
            ..config.options.clone()
        },
        runtime: RuntimeConfig {
            cache_dir,
            wasip3: config.runtime.wasip3,
            compiler: config.runtime.compiler,
        },
        control_socket: config
            .pod_files
            .as_ref()
            .map(|dir| absolute(dir).join(&pod.name).join(crate::control::SOCKET)),
    };
    Ok(Prepared {
        name: pod.name.clone(),
        programs,
        request,
        cgroup,
        folder,
        initial: crate::pod::initial_status(pod),
        broker,
        dns_upstreams,
    })
}

/// A pod process and what we know of it.
struct Running {
    name: String,
    /// pod-init's pid (our child).
    process: u32,
    /// pod-init's status, once reaped.
    init_exited: Option<i32>,
    /// Whether PID 1 is our child too (pod-init made it with `CLONE_PARENT`
    /// and exited), or pod-init's (which then exits with its status).
    supervisor_is_parent: bool,
    /// The read end of the status pipe; `None` after end of file.
    messages: Option<OwnedFd>,
    reader: Reader,
    exited: Option<i32>,
    pid: Option<u32>,
    ready: bool,
    last: PodStatus,
    ended: Option<PodStatus>,
    /// The final status, once taken (see [`Running::final_status`]).
    outcome: Option<PodStatus>,
    failed: Option<ErrorReport>,
    /// Killed before it could handle signals.
    killed: bool,
    /// Answers the pod's requests for sockets of the host's network.
    broker: Option<Broker>,
    // Dropped after the process is gone, in this order.
    cgroup: Option<PodCgroup>,
    /// The pod's cgroup limits, to say which was reached.
    limits: super::Limits,
    _folder: PrivateFolder,
}

/// Runs with more pods than this fork all but the first from a fork server
/// (see `forker.rs`); for fewer, its own fork costs more than sharing its
/// heap saves.
const FORK_SERVER_FROM: usize = 2;

/// Forks the fork server, a copy of this process and of `pods`.
fn start_fork_server(
    pods: &mut Vec<Option<Prepared>>,
    pod_main: PodMain,
) -> std::io::Result<ForkServer> {
    let _ = std::io::stdout().flush();
    let supervisor = std::process::id();
    // SAFETY: `run` checked that this process has one thread, and nothing
    // since started one (the compiler runs in a child of its own).
    let server = unsafe {
        ForkServer::start(
            pods,
            supervisor,
            |pods, index, status| match pods[index].take() {
                Some(prepared) => become_pod_init(prepared, status, supervisor, pod_main),
                None => sys::exit_now(1),
            },
            |pods, index| {
                // Its copies of the pod process's descriptors closed, and
                // nothing freed: a freed chunk is written to, and the pods
                // forked after would find the heap they share strewn with
                // free chunks, and copy a page for each they reuse (at
                // 1,000 pods, the last ones held 3 MiB of heap of their own
                // where the first held 0.7). The broker's end stays open
                // until the server exits.
                if let Some(prepared) = pods[index].as_mut() {
                    if let Some((broker, pod_end)) = prepared.broker.take() {
                        std::mem::forget(broker);
                        drop(pod_end);
                    }
                    for fd in prepared.dns_upstreams.drain(..) {
                        drop(fd);
                    }
                }
            },
        )
    }?;
    tracing::debug!(
        pods = pods.iter().flatten().count(),
        "the run's other pods are forked from a fork server"
    );
    Ok(server)
}

/// Starts a pod's pod-init: forked from here, or from `server`.
fn start(
    prepared: Prepared,
    pod_main: PodMain,
    server: Option<(&ForkServer, usize)>,
) -> Result<Running, SandboxError> {
    let error = |what: &str, source: std::io::Error| SandboxError::Supervisor {
        pod: prepared.name.clone(),
        what: what.into(),
        source,
    };
    let (read, write) = sys::pipe().map_err(|e| error("creating the status pipe", e.source))?;
    // Nothing buffered may be written twice, by us and by the child.
    let _ = std::io::stdout().flush();
    let supervisor = std::process::id();
    let limits = prepared.request.plan.limits;
    let by_server = match server {
        Some((server, index)) => server
            .fork(index, write.as_fd())
            .map_err(|e| error("starting the pod process (fork server)", e))?,
        None => None,
    };
    let process = match by_server {
        Some(pid) => pid,
        None => {
            // SAFETY: `run` checked that this process has one thread, and
            // nothing since started one (the compiler runs in a child of its
            // own).
            let forked = unsafe { sys::fork() };
            match forked.map_err(|e| error("starting the pod process", e.source))? {
                sys::Forked::Child => become_pod_init(prepared, write, supervisor, pod_main),
                sys::Forked::Parent(pid) => pid.as_raw_nonzero().get() as u32,
            }
        }
    };
    drop(write);
    let Prepared {
        name,
        cgroup,
        folder,
        initial,
        broker,
        ..
    } = prepared;
    Ok(Running {
        name,
        process,
        init_exited: None,
        supervisor_is_parent: false,
        messages: Some(read),
        reader: Reader::default(),
        exited: None,
        pid: None,
        ready: false,
        last: initial,
        ended: None,
        outcome: None,
        failed: None,
        killed: false,
        broker: broker.map(|(broker, _)| broker),
        cgroup,
        limits,
        _folder: folder,
    })
}

/// In the child: pod-init of `prepared`. Nothing of the supervisor's is
/// dropped here (pod-init leaves with `exit`).
fn become_pod_init(prepared: Prepared, status: OwnedFd, supervisor: u32, pod_main: PodMain) -> ! {
    let Prepared {
        request,
        cgroup,
        broker,
        dns_upstreams,
        ..
    } = prepared;
    let (_broker, pod_end) = broker.unzip();
    super::inside::pod_init(
        request,
        cgroup.as_ref(),
        status,
        super::inside::Outside {
            broker: pod_end,
            dns_upstreams,
        },
        supervisor,
        pod_main,
    )
}

/// The Jobs of a run, and how to start their next pods.
struct Controller<'a> {
    jobs: &'a mut Jobs,
    spawn: &'a mut dyn FnMut(&PodSpec) -> Result<Running, SandboxError>,
}

impl Controller<'_> {
    /// Carries out what a Job decided: its failed pods' siblings stop
    /// gracefully, its next pods start.
    fn carry_out(&mut self, pods: &mut Vec<Running>, mut step: Step) {
        loop {
            for name in &step.stop {
                if let Some(pod) = pods.iter_mut().find(|p| p.name == *name) {
                    stop_one(pod, libc::SIGTERM);
                }
            }
            let mut next = Step::default();
            for pod in std::mem::take(&mut step.start) {
                match (self.spawn)(&pod) {
                    Ok(running) => pods.push(running),
                    Err(error) => {
                        let more = self.jobs.not_started(&pod.name, &error.to_string());
                        next.start.extend(more.start);
                        next.stop.extend(more.stop);
                    }
                }
            }
            if next.start.is_empty() && next.stop.is_empty() {
                return;
            }
            step = next;
        }
    }
}

/// The poll loop (step 5). Returns the signal that stopped the run.
fn supervise(
    pods: &mut Vec<Running>,
    signals: &sys::SignalFd,
    pid_file: Option<&Path>,
    sink: Option<&dyn crate::StatusSink>,
    mut controller: Controller<'_>,
) -> Option<i32> {
    let mut signal = None;
    let mut signals_seen = 0;
    let mut pid_file_written = false;
    loop {
        // A Job's pod that ended: the Job decides what comes next.
        if !controller.jobs.is_empty() {
            let stopped = signal.is_some();
            let mut steps = Vec::new();
            for pod in pods.iter_mut() {
                if pod.exited.is_some() && pod.messages.is_none() && pod.outcome.is_none() {
                    let status = pod.final_status(stopped).clone();
                    steps.push(controller.jobs.ended(&pod.name, &status));
                }
            }
            for step in steps {
                controller.carry_out(pods, step);
            }
        }
        if pods
            .iter()
            .all(|p| p.exited.is_some() && p.messages.is_none())
        {
            return signal;
        }
        // What to wait on: the signals (SIGCHLD among them), and per pod its
        // messages until their end.
        let mut watched = Vec::new();
        let mut brokers = Vec::new();
        let readable = {
            let mut fds = vec![signals.as_fd()];
            for (index, pod) in pods.iter().enumerate() {
                if let Some(fd) = &pod.messages {
                    fds.push(fd.as_fd());
                    watched.push(index);
                }
            }
            for (index, pod) in pods.iter().enumerate() {
                if let Some(broker) = &pod.broker {
                    fds.push(broker.channel());
                    brokers.push(index);
                }
            }
            sys::wait_readable(&fds, None)
        };
        let (readable, brokers_readable) = readable.split_at(1 + watched.len());
        for (index, readable) in brokers.into_iter().zip(brokers_readable) {
            let pod = &mut pods[index];
            if *readable && !pod.broker.as_mut().is_some_and(Broker::serve) {
                pod.broker = None;
            }
        }
        if readable[0] {
            while let Some(number) = signals.take() {
                if number == libc::SIGCHLD {
                    // Signals coalesce: look at every pod not known to be gone.
                    for pod in pods.iter_mut() {
                        pod.reap();
                    }
                } else {
                    // The first signal stops the pods gracefully and a second
                    // one at once (each pod process does both); a third
                    // kills them: no more waiting.
                    signals_seen += 1;
                    signal.get_or_insert(number);
                    controller.jobs.stop();
                    if signals_seen <= 2 {
                        stop_all(pods, number);
                    } else {
                        for pod in pods.iter_mut() {
                            pod.kill();
                        }
                    }
                }
            }
        }
        let mut failure = false;
        let mut job_steps = Vec::new();
        for (index, readable) in watched.into_iter().zip(&readable[1..]) {
            if !readable {
                continue;
            }
            let pod = &mut pods[index];
            let Some(fd) = &pod.messages else { continue };
            let mut buffer = [0u8; 64 * 1024];
            match rustix::io::read(fd, &mut buffer) {
                Ok(0) | Err(_) => {
                    pod.messages = None;
                    pod.reap();
                }
                Ok(n) => {
                    for message in pod.reader.push(&buffer[..n]) {
                        if let (Some(sink), Message::Status(status) | Message::Ended(status)) =
                            (sink, &message)
                        {
                            sink.status(&pod.name, status);
                        }
                        if let Message::Status(status) = &message {
                            job_steps.push(controller.jobs.status(&pod.name, status));
                        }
                        failure |= pod.handle(message);
                    }
                }
            }
        }
        for step in job_steps {
            controller.carry_out(pods, step);
        }
        if failure && signal.is_none() {
            // One pod could not start: stop the others at once, as the CLI
            // does without the wall (two signals: the first asks a pod to
            // stop gracefully, the second to stop now; two kinds, so that
            // they do not merge into one).
            stop_all(pods, libc::SIGTERM);
            stop_all(pods, libc::SIGINT);
        }
        if !pid_file_written && pods.iter().all(|p| p.ready) {
            pid_file_written = true;
            if let Some(path) = pid_file {
                write_pid_file(path, pods);
            }
        }
    }
}

fn stop_all(pods: &mut [Running], signal: i32) {
    for pod in pods.iter_mut() {
        stop_one(pod, signal);
    }
}

/// Asks one pod to stop (its pod process stops it gracefully on the first
/// signal, at once on a second one); kills a pod process that cannot be
/// asked yet.
fn stop_one(pod: &mut Running, signal: i32) {
    match (pod.ready, pod.pid, pod.exited) {
        (_, _, Some(_)) => {}
        (true, Some(pid), None) => sys::send_signal(pid, signal),
        _ => pod.kill(),
    }
}

impl Running {
    /// Reads the pod process's messages until its namespaces exist (it sent
    /// its PID 1) or it ended; returns the kernel's refusal, if that was it.
    fn wait_for_namespaces(&mut self) -> Option<ErrorReport> {
        while self.pid.is_none() && self.failed.is_none() {
            let Some(fd) = &self.messages else { break };
            let mut buffer = [0u8; 64 * 1024];
            match rustix::io::read(fd, &mut buffer) {
                Ok(0) => self.messages = None,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => self.messages = None,
                Ok(n) => {
                    for message in self.reader.push(&buffer[..n]) {
                        if let Message::NoNamespaces(report) = message {
                            return Some(report);
                        }
                        self.handle(message);
                    }
                }
            }
        }
        None
    }

    /// Takes a message in; true if the pod failed to start.
    fn handle(&mut self, message: Message) -> bool {
        match message {
            Message::Started {
                pid,
                supervisor_is_parent,
            } => {
                self.pid = Some(pid);
                self.supervisor_is_parent = supervisor_is_parent;
                // Its end may have been signalled before this was read.
                self.reap();
            }
            Message::Ready => self.ready = true,
            Message::Status(status) => self.last = status,
            Message::Ended(status) => self.ended = Some(status),
            Message::Failed(report) | Message::NoNamespaces(report) => {
                self.failed = Some(report);
                return true;
            }
        }
        false
    }

    /// Reaps what of the pod's processes has ended, and notes the pod's
    /// end: PID 1's where it is our child, else pod-init's (which waits for
    /// PID 1, or ended before making it).
    fn reap(&mut self) {
        if self.init_exited.is_none() {
            self.init_exited = sys::try_wait(self.process);
        }
        if self.exited.is_some() {
            return;
        }
        self.exited = match self.pid {
            Some(pid) if self.supervisor_is_parent => sys::try_wait(pid),
            Some(_) => self.init_exited,
            // No PID 1 and no more messages: pod-init ended before it.
            None if self.messages.is_none() => self.init_exited,
            // pod-init's `Started` may still be unread: its own end says
            // nothing yet.
            None => None,
        };
    }

    fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        self.killed = true;
        if let Some(pid) = self.pid {
            sys::send_signal(pid, libc::SIGKILL);
        }
        // Not once reaped: its pid may be another process's by now.
        if self.init_exited.is_none() {
            sys::send_signal(self.process, libc::SIGKILL);
        }
    }

    /// The pod's final status: as it reported it, or, if the pod process was
    /// killed (by the cgroup's OOM killer, a signal, a crash), the last one
    /// it reported with every running container terminated, and why.
    fn final_status(&mut self, stopped: bool) -> &PodStatus {
        let status = match self.outcome.take() {
            Some(status) => status,
            None => match self.ended.take() {
                Some(status) => status,
                None => self.killed_status(stopped),
            },
        };
        self.outcome.insert(status)
    }

    /// The last status a killed pod process reported, with every running
    /// container terminated, and why.
    fn killed_status(&self, stopped: bool) -> PodStatus {
        let oom = self.cgroup.as_ref().is_some_and(PodCgroup::oom_killed);
        let ceiling = self.cgroup.as_ref().is_some_and(PodCgroup::limit_reached);
        let (reason, message, exit_code) = if oom && ceiling {
            (
                "OOMKilled",
                format!(
                    "the pod reached its memory ceiling of {} ({}) and the kernel killed the pod process (cgroup {})",
                    self.limits
                        .memory_bytes
                        .map_or_else(|| "?".to_owned(), human_bytes),
                    self.limits.memory_source.explain(),
                    self.cgroup
                        .as_ref()
                        .map(PodCgroup::describe)
                        .unwrap_or_default()
                ),
                137,
            )
        } else if oom {
            (
                "OOMKilled",
                "the host ran out of memory and the kernel's OOM killer chose the pod process (the pod had not reached its ceiling)".to_owned(),
                137,
            )
        } else if stopped || self.killed {
            ("Stopped", "the pod was stopped".to_owned(), 137)
        } else {
            (
                "Error",
                format!(
                    "the pod process ended unexpectedly (status {})",
                    self.exited.unwrap_or(-1)
                ),
                self.exited.unwrap_or(1).max(1),
            )
        };
        let mut status = self.last.clone();
        status.phase = PodPhase::Failed;
        status.reason = Some(reason.into());
        status.message = Some(message.clone());
        let now = Timestamp::now();
        for container in status
            .init_container_statuses
            .iter_mut()
            .chain(status.container_statuses.iter_mut())
        {
            if let ContainerState::Running { started_at } = container.state {
                container.state = ContainerState::Terminated(Termination {
                    exit_code,
                    reason: reason.into(),
                    message: Some(message.clone()),
                    started_at,
                    finished_at: now,
                });
                container.ready = false;
            }
        }
        status.refresh_conditions();
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.kill();
            if let Some(pid) = self.pid.filter(|_| self.supervisor_is_parent) {
                let _ = sys::wait_for_pid(pid);
            }
        }
        if self.init_exited.is_none() {
            let _ = sys::wait_for_pid(self.process);
        }
    }
}

/// One PID a line, written whole (a reader never sees half of it).
fn write_pid_file(path: &Path, pods: &[Running]) {
    let text: String = pods
        .iter()
        .filter_map(|p| p.pid)
        .map(|pid| format!("{pid}\n"))
        .collect();
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let result = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = result {
        tracing::warn!(path = %path.display(), %error, "could not write the pid file");
    }
}

/// The pod's private folder, `<state_dir>/<pod>-<pid>-w<n>`: its state
/// folder inside (its run folders, ConfigMaps and Secrets, emptyDirs).
/// Made on the host, and bound in, only for a pod whose emptyDirs need the
/// disk (see [`super::Plan::private_tmpfs`]); otherwise it is a tmpfs of
/// the pod's own mount namespace, gone with it, and nothing is written to
/// the host. Named like the library's scratch folders, so the same sweep
/// recognises it.
#[derive(Debug)]
struct PrivateFolder {
    path: PathBuf,
    /// Also the name of the pod's cgroup.
    name: String,
    /// Whether it was made on the host (and is removed on drop).
    on_host: bool,
}

impl PrivateFolder {
    fn new(state_dir: &Path, pod: &str) -> PrivateFolder {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{pod}-{}-w{n}", std::process::id());
        PrivateFolder {
            path: state_dir.join(&name),
            name,
            on_host: false,
        }
    }

    /// Makes it on the host, in the checked state folder.
    fn make_on_host(&mut self) -> std::io::Result<()> {
        let state_dir = self.path.parent().unwrap_or(Path::new("/"));
        crate::state::ensure_private_root(state_dir)?;
        crate::state::create_private_child(state_dir, &self.name)?;
        self.on_host = true;
        Ok(())
    }
}

impl Drop for PrivateFolder {
    fn drop(&mut self) {
        if !self.on_host {
            return;
        }
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove the pod's private folder");
        }
    }
}

/// Removes private folders of runs whose wpod is gone (killed with -9).
fn sweep_stale_folders(state_dir: &Path) {
    for path in crate::volume::left_by_dead_processes(state_dir) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// `12Gi`, `96Mi` or `1000000 bytes`, for messages.
fn human_bytes(bytes: u64) -> String {
    match bytes {
        0 => "0".into(),
        b if b % (1 << 30) == 0 => format!("{}Gi", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}Mi", b >> 20),
        b => format!("{b} bytes"),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
