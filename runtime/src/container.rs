//! Containers: one container is one wasmtime `Store` with its WASI context
//! (argv from `command`/`args`, env, preopens, network, stdio into the pod's
//! logs), run to an exit status.
//!
//! A guest failing is a status, not an error: exiting non-zero, trapping or
//! running out of memory all end in an [`Outcome`]. `Err` is kept for wpod's
//! own failures.

use crate::image::{Compiled, Image};
use crate::manifest::{ContainerSpec, EnvVar};
use crate::network::PodNetwork;
use crate::volume::Preopen;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::cli::StdoutStream;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The linkers, built once per engine: WASI 0.2 and 0.3 for components,
/// WASI preview 1 for core modules.
pub(crate) struct Linkers {
    engine: Engine,
    // Each is built on first use: a pod of components never pays for the
    // preview-1 linker, nor a pod of core modules for the WASI 0.2 one.
    component: std::sync::OnceLock<wasmtime::component::Linker<P2State>>,
    module: std::sync::OnceLock<wasmtime::Linker<P1State>>,
    /// WASI 0.3 is linked (the engine has the async ABI).
    wasip3: bool,
}

impl Linkers {
    pub(crate) fn new(engine: &Engine, wasip3: bool) -> Linkers {
        Linkers {
            engine: engine.clone(),
            wasip3,
            component: Default::default(),
            module: Default::default(),
        }
    }

    /// The engine they link for.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    fn component(&self) -> &wasmtime::component::Linker<P2State> {
        self.component.get_or_init(|| {
            let mut linker = wasmtime::component::Linker::new(&self.engine);
            // WASI 0.2 and 0.3 side by side, as `wasmtime run` links them:
            // their interfaces have different versions (`@0.2.x`, `@0.3.x`),
            // and a component built for wasip3 with Rust's `wasm32-wasip2`
            // imports both (std's own startup is WASI 0.2).
            // WASI 0.3 only when the engine has the async ABI (`--wasip3`).
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)
                .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
                .and_then(|()| match self.wasip3 {
                    true => wasmtime_wasi::p3::add_to_linker(&mut linker)
                        .and_then(|()| wasmtime_wasi_http::p3::add_to_linker(&mut linker)),
                    false => Ok(()),
                })
                .and_then(|()| crate::network::shadow_sockets(&mut linker))
                .expect("wasmtime-wasi's and wpod's definitions never clash");
            linker
        })
    }

    fn module(&self) -> &wasmtime::Linker<P1State> {
        self.module.get_or_init(|| {
            let mut linker = wasmtime::Linker::new(&self.engine);
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut P1State| {
                &mut state.wasi
            })
            .expect("wasmtime-wasi's preview-1 definitions never clash");
            linker
        })
    }

    /// Links a compiled program: every import resolved now, so a program
    /// that is not a WASI command fails before any container starts. A
    /// component that exports `wasi:http/incoming-handler` (WASI 0.2) or
    /// `wasi:http/handler@0.3.x` (WASI 0.3) is an HTTP component, served
    /// rather than run (whether or not it also exports
    /// `wasi:cli/run`, as a `bin` built for `wasm32-wasip2` does). A
    /// component that exports `wasi:cli/run@0.3.x` is a WASI 0.3 command,
    /// run through that export even if it also exports `wasi:cli/run@0.2.x`
    /// (as `wasmtime run` chooses; a wasip3 `bin` built for `wasm32-wasip2`
    /// exports both, the second for its unused `main`).
    pub(crate) fn link(&self, compiled: &Compiled) -> Result<Program, LinkError> {
        match compiled {
            Compiled::Component(component) => {
                let pre = self.component().instantiate_pre(component).map_err(|e| {
                    // wasmtime's own text for an unreleased WASI 0.3 is "wrong
                    // type: function implementation is missing"; say why.
                    let imports = component.component_type();
                    let candidate = imports
                        .imports(&self.engine)
                        .map(|(name, _)| name)
                        .find(|name| is_wasi_p3_candidate(name));
                    match candidate {
                        Some(import) => LinkError::WasiCandidate(import.to_owned()),
                        None => LinkError::Imports(format!("{e:#}")),
                    }
                })?;
                if let Ok(proxy) = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre.clone()) {
                    return Ok(Program::Http(crate::http::HttpPre::P2(proxy)));
                }
                if let Ok(service) = wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone())
                {
                    return Ok(Program::Http(crate::http::HttpPre::P3(service)));
                }
                if let Ok(command) = wasmtime_wasi::p3::bindings::CommandPre::new(pre.clone()) {
                    return Ok(Program::ComponentP3(command));
                }
                CommandPre::new(pre)
                    .map(Program::Component)
                    .map_err(|e| LinkError::NoRun(format!("{e:#}")))
            }
            Compiled::Module(module) => {
                if !matches!(
                    module.get_export("_start"),
                    Some(wasmtime::ExternType::Func(_))
                ) {
                    return Err(LinkError::NoStart);
                }
                self.module()
                    .instantiate_pre(module)
                    .map(Program::Module)
                    .map_err(|e| LinkError::Imports(format!("{e:#}")))
            }
        }
    }
}

/// Why a compiled program is not a WASI command wpod can run. The texts
/// are wasmtime's (its errors carry no type worth keeping apart).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// An import that neither WASI nor wpod defines, or of another type.
    #[error("{0}")]
    Imports(String),
    /// An import of a WASI 0.3 release candidate (`wasi:cli/environment@0.3.0-rc-2026-03-15`),
    /// which no wasmtime of the 48 line implements.
    #[error(
        "it is built for a release candidate of WASI 0.3 (it imports `{0}`), and wpod (wasmtime 48) implements WASI 0.3.0 (and 0.2, and preview 1); rebuild it against WASI 0.3.0 or a later 0.3.x (Rust: the wasip3 crate 0.7 or newer)"
    )]
    WasiCandidate(String),
    #[error(
        "it exports neither wasi:cli/run (0.2 or 0.3) nor a wasi:http handler (0.2's incoming-handler, 0.3's handler) ({0})"
    )]
    NoRun(String),
    #[error("the module exports no `_start` function")]
    NoStart,
}

/// Whether an import names a WASI 0.3 release candidate
/// (`wasi:cli/environment@0.3.0-rc-2025-09-16`). wasmtime's linker matches
/// `0.3.x` versions to one another, so a component importing 0.3.2 links
/// against wasmtime 48's 0.3.0 where the functions it uses are the same; a
/// release candidate's does not (its interfaces are not 0.3.0's).
fn is_wasi_p3_candidate(import: &str) -> bool {
    import.starts_with("wasi:")
        && import
            .split_once('@')
            .is_some_and(|(_, version)| version.starts_with("0.3.") && version.contains('-'))
}

/// A failure of wpod's own while starting a container (a guest failing is
/// an [`Outcome`], not this).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ContainerError {
    #[error("cannot open {} for {guest}: {message}", host.display())]
    Preopen {
        host: std::path::PathBuf,
        guest: String,
        message: String,
    },
}

/// A program ready to instantiate, cheaply, once per container start, in
/// the engine it was compiled for (see [`Program::engine`]).
#[derive(Clone)]
pub(crate) enum Program {
    Component(CommandPre<P2State>),
    /// A WASI 0.3 command (`wasi:cli/run@0.3.x`, an async export).
    ComponentP3(wasmtime_wasi::p3::bindings::CommandPre<P2State>),
    /// A `wasi:http/proxy` component (WASI 0.2) or `wasi:http/service`
    /// component (WASI 0.3): served, one instance per request.
    Http(crate::http::HttpPre<P2State>),
    Module(wasmtime::InstancePre<P1State>),
}

impl Program {
    /// The engine its stores are made in: the runtime's, or one of its
    /// own (an HTTP container's pool, a program compiled by Winch).
    pub(crate) fn engine(&self) -> &Engine {
        match self {
            Program::Component(pre) => pre.instance_pre().engine(),
            Program::ComponentP3(pre) => pre.instance_pre().engine(),
            Program::Http(pre) => pre.component().engine(),
            Program::Module(pre) => pre.module().engine(),
        }
    }
}

/// Everything needed to start one container, worked out once per pod.
pub(crate) struct ContainerPlan {
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// Shared with the instances of an HTTP container, which outlive no
    /// request but are made on tasks of their own.
    pub preopens: Arc<[Preopen]>,
    /// What the container's programs (its own and what `exec` runs in it)
    /// use, against its `limits.memory`.
    pub usage: Arc<ContainerUsage>,
    /// The pod's ceiling, shared by its containers.
    pub pod_memory: Arc<PodMemory>,
    /// The most WASI resources the container may hold at once.
    pub descriptor_limit: usize,
    pub program: Program,
    /// The Wasm file it was compiled from.
    pub source: std::path::PathBuf,
    /// Where and how an HTTP component is served (`Program::Http`).
    pub http: Option<crate::http::Serving>,
    pub network: PodNetwork,
    /// The host folder of its `/run/wpod` (see `volume::TERMINATING`).
    pub run_dir: Option<std::path::PathBuf>,
    /// Why it cannot start, if it cannot (`CreateContainerConfigError`).
    pub config_error: Option<String>,
    /// Reads this process's standard input (`stdin: true` and `wpod run -i`).
    pub stdin: bool,
    /// `stdinOnce`: only the first run does.
    pub stdin_once: bool,
    /// `lifecycle.postStart` and `lifecycle.preStop`.
    pub post_start: Option<crate::manifest::Hook>,
    pub pre_stop: Option<crate::manifest::Hook>,
    /// A native sidecar (an init container with `restartPolicy: Always`).
    pub sidecar: bool,
    /// Its probes (app containers and sidecars).
    pub probes: crate::pod::Probes,
    /// The image as the manifest names it, and as found: `exec` looks up
    /// its programs there.
    pub reference: String,
    pub image: Image,
}

impl ContainerPlan {
    /// argv, env and working directory as the kubelet would compute them.
    pub(crate) fn command_line(
        spec: &ContainerSpec,
        image: &Image,
        image_name: &str,
    ) -> (Vec<String>, Vec<(String, String)>, String) {
        let env = environment(&image.env(), &spec.env);
        let lookup = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let expand_all = |words: &[String]| {
            words
                .iter()
                .map(|word| expand(word, &lookup))
                .collect::<Vec<_>>()
        };
        // As the kubelet and OCI runtimes: `command` replaces the image's
        // entrypoint, `args` its cmd (a command without args drops the cmd);
        // an image without an entrypoint runs its cmd.
        let entrypoint = match (&spec.command, &image.config.entrypoint) {
            (Some(command), _) => expand_all(command),
            (None, Some(entrypoint)) => entrypoint.clone(),
            // A `.wasm` file is its own program: named after its image.
            (None, None) if image.rootfs.is_none() => vec![image_name.to_owned()],
            (None, None) => Vec::new(),
        };
        let args = match (&spec.args, &spec.command) {
            (Some(args), _) => expand_all(args),
            (None, Some(_)) => Vec::new(),
            (None, None) => image.config.cmd.clone().unwrap_or_default(),
        };
        let mut argv: Vec<String> = entrypoint.into_iter().chain(args).collect();
        if argv.is_empty() {
            // An image with neither entrypoint nor cmd: its program is
            // looked for under the image's name.
            argv.push(image_name.to_owned());
        }
        let working_dir = spec
            .working_dir
            .clone()
            .or_else(|| image.config.working_dir.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".into());
        (argv, env, working_dir)
    }
}

/// The image's environment overridden by the container's, each container
/// value expanded against the variables before it, as the kubelet does.
fn environment(image_env: &[(String, String)], container_env: &[EnvVar]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = image_env.to_vec();
    for (index, var) in container_env.iter().enumerate() {
        let earlier = &container_env[..index];
        let defined = |name: &str| {
            earlier
                .iter()
                .any(|e| e.name == name)
                .then(|| {
                    env.iter()
                        .rev()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                })
                .flatten()
        };
        let value = expand(&var.value, &defined);
        env.retain(|(k, _)| *k != var.name);
        env.push((var.name.clone(), value));
    }
    env
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the value when `NAME`
/// is defined and stays as written otherwise; `$$` is an escaped `$`.
pub(crate) fn expand<'a>(text: &str, lookup: &dyn Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match lookup(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// How a container run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub exit_code: i32,
    /// `Completed`, `Error` or `OOMKilled`.
    pub reason: &'static str,
    pub message: Option<String>,
}

/// Exit code of a container that ran out of memory (SIGKILL, as the kernel's
/// OOM killer would leave it).
const OOM_EXIT_CODE: i32 = 137;
/// Exit code of a trapped guest (SIGABRT: `unreachable` is Rust's abort).
const TRAP_EXIT_CODE: i32 = 134;

/// Runs the container once, to its end. Cancel by dropping the future: the
/// store yields at every epoch tick, so even a spinning guest is dropped
/// within a tick. An HTTP component is served until `control.asked_to_end`
/// (then it finishes the requests it has and ends with 0).
pub(crate) async fn run<O: StdoutStream + Clone + Sync + 'static>(
    plan: &ContainerPlan,
    program: &Program,
    stdin: bool,
    stdout: O,
    stderr: O,
    control: &RunControl,
) -> Result<Outcome, ContainerError> {
    if let (Program::Http(pre), Some(serving)) = (program, &plan.http) {
        return serve_http(plan, pre, serving, stdout, stderr, control).await;
    }
    let io = Stdio {
        stdin,
        stdout,
        stderr,
    };
    run_program(plan, program, &plan.argv, io).await
}

/// What the pod gives a container's run besides its plan.
pub(crate) struct RunControl {
    /// Cancelled when the container is asked to end (a graceful stop).
    pub asked_to_end: tokio_util::sync::CancellationToken,
    /// Says something about the container on the pod's log (its events).
    pub event: Arc<dyn Fn(&str) + Send + Sync>,
}

/// Serves an HTTP component on its port until asked to end: each request
/// an instance of its own (see `crate::http`).
async fn serve_http<O: StdoutStream + Clone + Sync + 'static>(
    plan: &ContainerPlan,
    pre: &crate::http::HttpPre<P2State>,
    serving: &crate::http::Serving,
    stdout: O,
    stderr: O,
    control: &RunControl,
) -> Result<Outcome, ContainerError> {
    let listener = match plan.network.listen(serving.port) {
        Ok(listener) => listener,
        Err(error) => {
            return Ok(Outcome {
                exit_code: 1,
                reason: "Error",
                message: Some(format!(
                    "cannot serve HTTP on port {}: {error}",
                    serving.port
                )),
            });
        }
    };
    let instances = if serving.pooled {
        "instances from a pool of as many"
    } else {
        "an instance allocated for each"
    };
    control.event(&format!(
        "serving HTTP on port {}: at most {} requests at once, {instances}",
        serving.port, serving.concurrency
    ));
    let instances = Arc::new(HttpInstances {
        // The program's own: the pooled one of HTTP containers.
        engine: pre.component().engine().clone(),
        name: plan.name.as_str().into(),
        argv: plan.argv.clone(),
        env: plan.env.clone(),
        working_dir: plan.working_dir.clone(),
        preopens: plan.preopens.clone(),
        network: plan.network.clone(),
        descriptor_limit: plan.descriptor_limit,
        memory_limit: plan.usage.memory.limit(),
        usage: plan.usage.clone(),
        pod_memory: plan.pod_memory.clone(),
        stdout,
        stderr,
        event: control.event.clone(),
    });
    let served = crate::http::serve(
        listener,
        pre.clone(),
        instances,
        serving.concurrency,
        control.asked_to_end.clone(),
    )
    .await;
    Ok(match served {
        Ok(()) => Outcome {
            exit_code: 0,
            reason: "Completed",
            message: None,
        },
        Err(error) => Outcome {
            exit_code: 1,
            reason: "Error",
            message: Some(format!("the HTTP server failed: {error}")),
        },
    })
}

impl RunControl {
    fn event(&self, message: &str) {
        (self.event)(message)
    }
}

/// The instances of one HTTP container: what each request's store is made of.
struct HttpInstances<O> {
    engine: Engine,
    name: Arc<str>,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: String,
    preopens: Arc<[Preopen]>,
    network: PodNetwork,
    descriptor_limit: usize,
    /// The container's `limits.memory`, for each instance alone.
    memory_limit: Option<u64>,
    /// The container's usage: all its instances' memory (for `top`, not
    /// limited here) and CPU time.
    usage: Arc<ContainerUsage>,
    pod_memory: Arc<PodMemory>,
    stdout: O,
    stderr: O,
    event: Arc<dyn Fn(&str) + Send + Sync>,
}

impl<O: StdoutStream + Clone + Sync + 'static> crate::http::Service for HttpInstances<O> {
    type Data = P2State;

    fn store(&self) -> Result<Store<P2State>, String> {
        let io = Stdio {
            stdin: false,
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
        };
        let setup = WasiSetup {
            name: &self.name,
            env: &self.env,
            working_dir: &self.working_dir,
            preopens: &self.preopens,
            network: &self.network,
        };
        let mut wasi = build_wasi(&setup, &self.argv, io).map_err(|e| e.to_string())?;
        let limits = MemoryBudget {
            used: 0,
            refused: None,
            container: Arc::new(ContainerUsage::new(self.memory_limit)),
            pod: self.pod_memory.clone(),
            also: Some(self.usage.clone()),
        };
        let network = self.network.for_container();
        let state = P2State {
            wasi: wasi.build(),
            table: descriptor_table(self.descriptor_limit),
            limits,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: crate::http::PodHttp {
                network: network.clone(),
                container: self.name.clone(),
            },
            network,
        };
        Ok(new_store(&self.engine, state))
    }

    fn run(&self, instance: crate::http::Instance) -> crate::http::Instance {
        let usage = self.usage.clone();
        Box::pin(async move { metered(&usage.cpu_nanos, instance).await })
    }

    fn ended(
        &self,
        store: &Store<P2State>,
        request: &str,
        error: Option<wasmtime::Error>,
        responded: bool,
    ) {
        let Some(error) = error else { return };
        let refused = store.data().limits.refused.map(|whose| match whose {
            Refused::Container => "its memory limit was reached: ".to_owned(),
            Refused::Pod => "the pod's memory ceiling was reached: ".to_owned(),
        });
        let answered = if responded {
            "after it had answered"
        } else {
            "answered 500"
        };
        let why = if is_table_full(&error) {
            "it opened more WASI resources than its limit allows".to_owned()
        } else {
            error.root_cause().to_string()
        };
        (self.event)(&format!(
            "request {request} failed ({answered}): {}{why}",
            refused.unwrap_or_default()
        ));
    }
}

/// A run's standard streams: this process's stdin or none, and where
/// stdout and stderr go.
pub(crate) struct Stdio<O> {
    pub stdin: bool,
    pub stdout: O,
    pub stderr: O,
}

/// Runs `program` with `argv` in the container of `plan` (its environment,
/// volumes, network and limits), once, to its end: the container's own
/// program, or one that `exec` runs beside it. Cancel as [`run`].
pub(crate) async fn run_program<O: StdoutStream + 'static>(
    plan: &ContainerPlan,
    program: &Program,
    argv: &[String],
    io: Stdio<O>,
) -> Result<Outcome, ContainerError> {
    let engine = program.engine();
    let wasi = wasi_builder(plan, argv, io)?;
    let network = plan.network.for_container();
    let limits = MemoryBudget {
        used: 0,
        refused: None,
        container: plan.usage.clone(),
        pod: plan.pod_memory.clone(),
        also: None,
    };
    let cpu = &plan.usage.cpu_nanos;
    let result = match program {
        Program::Http(_) => {
            return Ok(Outcome {
                exit_code: 126,
                reason: "Error",
                message: Some(
                    "the program is an HTTP component (wasi:http/proxy): it is served, not run"
                        .into(),
                ),
            });
        }
        Program::Component(pre) => {
            let state = component_state(plan, wasi, limits, network);
            let mut store = new_store(engine, state);
            let result = metered(cpu, async {
                let command = pre.instantiate_async(&mut store).await?;
                command.wasi_cli_run().call_run(&mut store).await
            })
            .await;
            let refused = store.data().limits.refused;
            (result.map(|r| if r.is_ok() { 0 } else { 1 }), refused)
        }
        Program::ComponentP3(pre) => {
            let state = component_state(plan, wasi, limits, network);
            let mut store = new_store(engine, state);
            let result = metered(cpu, async {
                let command = pre.instantiate_async(&mut store).await?;
                // WASI 0.3's `run` is an async export: called inside the
                // store's event loop, which also drives the streams and
                // futures the guest hands the host (stdout, files), and
                // ends when `run` has returned.
                store
                    .run_concurrent(async |store| command.wasi_cli_run().call_run(store).await)
                    .await?
            })
            .await;
            let refused = store.data().limits.refused;
            (result.map(|r| if r.is_ok() { 0 } else { 1 }), refused)
        }
        Program::Module(pre) => {
            let mut wasi = wasi;
            let mut p1 = wasi.build_p1();
            wasmtime_wasi::WasiView::ctx(&mut p1)
                .table
                .set_max_capacity(plan.descriptor_limit);
            let state = P1State { wasi: p1, limits };
            let mut store = new_store(engine, state);
            let result = metered(cpu, async {
                let instance = pre.instantiate_async(&mut store).await?;
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call_async(&mut store, ()).await
            })
            .await;
            let refused = store.data().limits.refused;
            (result.map(|()| 0), refused)
        }
    };
    let refused = result.1.map(|whose| match whose {
        Refused::Container => "memory limit reached".to_owned(),
        Refused::Pod => format!(
            "the pod's memory ceiling ({} bytes: {}) was reached",
            plan.pod_memory.limit, plan.pod_memory.source
        ),
    });
    Ok(outcome(result.0, refused))
}

/// The store data of a container's component (WASI 0.2 or 0.3).
fn component_state(
    plan: &ContainerPlan,
    mut wasi: WasiCtxBuilder,
    limits: MemoryBudget,
    network: PodNetwork,
) -> P2State {
    P2State {
        wasi: wasi.build(),
        table: descriptor_table(plan.descriptor_limit),
        limits,
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        http_hooks: crate::http::PodHttp {
            network: network.clone(),
            container: plan.name.as_str().into(),
        },
        network,
    }
}

fn outcome(result: wasmtime::Result<i32>, memory_refused: Option<String>) -> Outcome {
    let (exit_code, message) = match result {
        Ok(code) => (code, None),
        Err(error) => match error.downcast_ref::<I32Exit>() {
            Some(exit) => (exit.0, None),
            None if is_table_full(&error) => (
                TRAP_EXIT_CODE,
                Some(
                    "the container opened more WASI resources (files, sockets, streams) than its limit allows; raise it with the wpod.dev/descriptor-limit annotation".to_owned(),
                ),
            ),
            None => (TRAP_EXIT_CODE, Some(error.root_cause().to_string())),
        },
    };
    if exit_code != 0
        && let Some(refused) = memory_refused
    {
        let message = format!(
            "{refused}{}",
            message.map(|m| format!(": {m}")).unwrap_or_default()
        );
        return Outcome {
            exit_code: OOM_EXIT_CODE,
            reason: "OOMKilled",
            message: Some(message),
        };
    }
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    Outcome {
        exit_code,
        reason,
        message,
    }
}

/// How many WASI resources (open files and directories, sockets, streams,
/// pollables) one container may hold at once, unless the pod's
/// `wpod.dev/descriptor-limit` says otherwise. All containers of a pod share
/// the process's descriptors, so without a bound one container opening files
/// in a loop would starve its siblings (their writes failing with EIO). An
/// open file takes one to three of them.
pub const DEFAULT_DESCRIPTOR_LIMIT: usize = 4096;

/// A container's resource table, holding at most `limit` entries: past it,
/// wasmtime-wasi traps the guest (WASI 0.2 has no EMFILE to return).
fn descriptor_table(limit: usize) -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(limit);
    table
}

/// Whether a guest was stopped because its resource table was full.
fn is_table_full(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    })
}

fn new_store<T: HasLimits + 'static>(engine: &Engine, state: T) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| state.limits());
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store.set_epoch_deadline(1);
    store.call_hook(crate::epoch::call_hook());
    store
}

fn wasi_builder<O: StdoutStream + 'static>(
    plan: &ContainerPlan,
    argv: &[String],
    io: Stdio<O>,
) -> Result<WasiCtxBuilder, ContainerError> {
    let setup = WasiSetup {
        name: &plan.name,
        env: &plan.env,
        working_dir: &plan.working_dir,
        preopens: &plan.preopens,
        network: &plan.network,
    };
    build_wasi(&setup, argv, io)
}

/// What a container's WASI context is made of, besides argv and stdio.
struct WasiSetup<'a> {
    name: &'a str,
    env: &'a [(String, String)],
    working_dir: &'a str,
    preopens: &'a [Preopen],
    network: &'a PodNetwork,
}

fn build_wasi<O: StdoutStream + 'static>(
    plan: &WasiSetup<'_>,
    argv: &[String],
    io: Stdio<O>,
) -> Result<WasiCtxBuilder, ContainerError> {
    let mut wasi = WasiCtxBuilder::new();
    if io.stdin {
        wasi.stdin(std::io::stdin());
    }
    wasi.args(argv)
        .envs(plan.env)
        .initial_cwd(plan.working_dir)
        .stdout(io.stdout)
        .stderr(io.stderr)
        // File operations run on the calling thread instead of a blocking
        // pool: small-file I/O is 17x faster this way (2% -> 35% of native,
        // measured), and the multi-threaded runtime keeps other pods moving.
        .allow_blocking_current_thread(true)
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(true);
    for preopen in plan.preopens {
        let perms = if preopen.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        wasi.preopened_dir(&preopen.host, &preopen.guest, perms)
            .map_err(|e| ContainerError::Preopen {
                host: preopen.host.clone(),
                guest: preopen.guest.clone(),
                message: format!("{e:#}"),
            })?;
    }
    let network = plan.network.clone();
    let container: Arc<str> = plan.name.into();
    wasi.socket_addr_check(move |addr, used| {
        let binding = matches!(used, SocketAddrUse::TcpBind | SocketAddrUse::TcpListen | SocketAddrUse::UdpBind);
        let permitted = network.permits(&addr, binding);
        if !permitted && !matches!(used, SocketAddrUse::TcpAccept) {
            tracing::warn!(
                pod = %network.pod,
                container = %container,
                address = %addr,
                "egress refused: allow it with --allow-egress {addr} or the pod annotation wpod.dev/egress"
            );
        }
        Box::pin(async move { permitted })
    });
    Ok(wasi)
}

/// The store data of a component, WASI 0.2 or 0.3 (wasmtime-wasi's p3
/// shares p2's `WasiCtx` and `WasiView`).
pub(crate) struct P2State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryBudget,
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: crate::http::PodHttp,
    network: PodNetwork,
}

impl wasmtime_wasi_http::WasiHttpView for P2State {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl crate::network::PodSockets for P2State {
    fn pod_network(&self) -> crate::network::PodNetwork {
        self.network.clone()
    }

    fn sockets(&mut self) -> wasmtime_wasi::sockets::WasiSocketsCtxView<'_> {
        wasmtime_wasi::sockets::WasiSocketsCtxView {
            ctx: self.wasi.sockets(),
            table: &mut self.table,
        }
    }
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The store data of a core module.
pub(crate) struct P1State {
    wasi: WasiP1Ctx,
    limits: MemoryBudget,
}

trait HasLimits: Send {
    fn limits(&mut self) -> &mut dyn ResourceLimiter;
}

impl HasLimits for P2State {
    fn limits(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }
}

impl HasLimits for P1State {
    fn limits(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }
}

/// The default memory ceiling of a pod: half of the host's memory (Linux's
/// `MemTotal`), so that a pod whose containers have no `limits.memory`
/// still cannot take the whole host. `None` where the host's memory is not
/// known (other systems).
pub fn host_memory_share() -> Option<u64> {
    static SHARE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *SHARE.get_or_init(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib: u64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024 / 2)
    })
}

/// The Wasm memory of all of a pod's containers together, against the pod's
/// ceiling: the backstop in the pod process itself (behind the OS wall the
/// pod's cgroup is a second one, which also counts the runtime).
#[derive(Debug)]
pub(crate) struct PodMemory {
    limit: usize,
    used: std::sync::atomic::AtomicUsize,
    /// Why the limit is what it is, for the message when it is reached.
    source: &'static str,
}

impl PodMemory {
    pub(crate) fn new(limit: Option<u64>, source: &'static str) -> PodMemory {
        PodMemory {
            limit: limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)),
            used: std::sync::atomic::AtomicUsize::new(0),
            source,
        }
    }

    /// Takes `bytes` more, unless that passes the ceiling.
    fn reserve(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|next| *next <= self.limit)
            })
            .is_ok()
    }

    /// Counts `bytes` more with no limit (what `top` shows).
    fn take(&self, bytes: usize) {
        self.used
            .fetch_add(bytes, std::sync::atomic::Ordering::AcqRel);
    }

    fn release(&self, bytes: usize) {
        self.used
            .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

impl PodMemory {
    /// The ceiling, if there is one.
    pub(crate) fn limit(&self) -> Option<u64> {
        (self.limit != usize::MAX).then_some(self.limit as u64)
    }

    /// The bytes taken now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Acquire) as u64
    }
}

/// What one container's programs use, counted as they run: the Wasm memory
/// they hold now (against `limits.memory`, which all of them share, as a
/// container's cgroup holds its `exec`s), and the CPU time spent in them.
#[derive(Debug)]
pub(crate) struct ContainerUsage {
    pub memory: PodMemory,
    pub cpu_nanos: AtomicU64,
}

impl ContainerUsage {
    pub(crate) fn new(memory_limit: Option<u64>) -> ContainerUsage {
        ContainerUsage {
            memory: PodMemory::new(memory_limit, "the container's limits.memory"),
            cpu_nanos: AtomicU64::new(0),
        }
    }
}

/// `future`, with the CPU time of each of its polls added to `cpu`: the
/// thread's own clock read around the poll, so only this guest's work (and
/// the host calls it makes on its thread) counts, whichever worker runs it.
async fn metered<F: std::future::Future>(cpu: &AtomicU64, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let before = thread_cpu_nanos();
        let poll = future.as_mut().poll(cx);
        cpu.fetch_add(thread_cpu_nanos().saturating_sub(before), Ordering::Relaxed);
        poll
    })
    .await
}

/// The calling thread's CPU time, in nanoseconds (0 where the system has
/// no such clock).
fn thread_cpu_nanos() -> u64 {
    #[cfg(unix)]
    {
        let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        u64::try_from(time.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(time.tv_nsec).unwrap_or(0)
    }
    #[cfg(not(unix))]
    0
}

/// Whose limit refused a memory growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Container,
    Pod,
}

/// `limits.memory` over all of a container's memories together (wasmtime's
/// own `StoreLimits` caps each memory alone), and the pod's ceiling over all
/// of its containers. A refused growth fails inside the guest
/// (`memory.grow` returns -1); `refused` remembers whose limit it was, so
/// that a guest that then dies is reported as OOMKilled with the reason.
struct MemoryBudget {
    /// What this store's memories take.
    used: usize,
    refused: Option<Refused>,
    container: Arc<ContainerUsage>,
    pod: Arc<PodMemory>,
    /// Where this store's memory is also counted, unlimited: the container
    /// of an HTTP instance, whose `container` is the instance's own budget.
    also: Option<Arc<ContainerUsage>>,
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        if !self.container.memory.reserve(more) {
            self.refused = Some(Refused::Container);
            return Ok(false);
        }
        if !self.pod.reserve(more) {
            self.container.memory.release(more);
            self.refused = Some(Refused::Pod);
            return Ok(false);
        }
        self.used += more;
        if let Some(also) = &self.also {
            also.memory.take(more);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl Drop for MemoryBudget {
    /// The container's memories are gone with its store: give them back.
    fn drop(&mut self) {
        self.container.memory.release(self.used);
        self.pod.release(self.used);
        if let Some(also) = &self.also {
            also.memory.release(self.used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &str) {
        let lookup = |name: &str| match name {
            "A" => Some("alpha"),
            "EMPTY" => Some(""),
            _ => None,
        };
        assert_eq!(expand(text, &lookup), expected, "{text:?}");
    }

    #[test]
    fn wasi_p3_release_candidates() {
        for (import, candidate) in [
            ("wasi:cli/environment@0.3.0-rc-2026-03-15", true),
            ("wasi:http/types@0.3.0-rc-2025-09-16", true),
            ("wasi:cli/environment@0.3.0", false),
            ("wasi:cli/environment@0.3.2", false),
            ("wasi:cli/environment@0.2.0", false),
            ("wasi:cli/environment@0.2.0-rc-2023-12-05", false),
            ("example:app/api@0.3.0-rc-1", false),
            ("wasi:cli/environment", false),
        ] {
            assert_eq!(is_wasi_p3_candidate(import), candidate, "{import}");
        }
    }

    #[test]
    fn expansion() {
        check("$(A)", "alpha");
        check("x-$(A)-y", "x-alpha-y");
        check("$(MISSING)", "$(MISSING)");
        check("$$(A)", "$(A)");
        check("$$$(A)", "$alpha");
        check("$A", "$A");
        check("$(A", "$(A");
        check("$(EMPTY)!", "!");
        check("tail$", "tail$");
    }

    #[test]
    fn env_refers_to_earlier_variables_only() {
        let var = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: value.into(),
        };
        let env = environment(
            &[("PATH".into(), "/bin".into())],
            &[
                var("A", "a"),
                var("B", "$(A)-$(C)"),
                var("C", "c"),
                var("PATH", "$(PATH):/x"),
            ],
        );
        assert_eq!(
            env,
            vec![
                ("A".into(), "a".into()),
                ("B".into(), "a-$(C)".into()),
                ("C".into(), "c".into()),
                ("PATH".into(), "$(PATH):/x".into()),
            ]
        );
    }
}
