//! Preparing a pod: every container's image and program found, programs
//! compiled (each distinct one once, in parallel), volumes and network
//! planned; every check that can fail before a container runs.

use super::{PodOptions, Runtime};
use crate::container::{self, ContainerPlan, ContainerUsage, PodMemory, Program};
use crate::image::{Image, ImageError, ImagePath};
use crate::manifest::{ContainerSpec, PodSpec};
use crate::network::{EgressPolicy, PodNetwork};
use crate::status::{ContainerStatus, PodPhase, PodStatus, Timestamp};
use crate::volume::Volumes;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl Runtime {
    pub(super) async fn plan_containers(
        &self,
        pod: &PodSpec,
        options: &PodOptions,
        volumes: &Volumes,
        network: &PodNetwork,
    ) -> Result<Vec<ContainerPlan>> {
        let image_error = |container: &ContainerSpec, source| image_error(pod, container, source);
        // Resolve every container's image and program first (cheap), ...
        let resolved: Vec<_> =
            resolve_containers(pod, &pod.base_dir, &options.image_path, &options.registries)?
                .into_iter()
                .map(|r| (r.spec, r.image, r.argv, r.env, r.working_dir, r.program))
                .collect();
        // ... then compile each distinct program once, in parallel. One
        // compiled before is loaded and linked right here: a blocking task
        // (a thread to start) would cost more than the load.
        let mut programs = HashMap::new();
        let mut compiling: HashMap<
            PathBuf,
            tokio::task::JoinHandle<std::result::Result<Program, ImageError>>,
        > = HashMap::new();
        for (spec, _, _, _, _, program) in &resolved {
            if compiling.contains_key(program) || programs.contains_key(program) {
                continue;
            }
            if let Some(compiled) = self.inner.compiler.cached(program) {
                let linked = self.inner.link(&spec.image, program, &compiled);
                programs.insert(program.clone(), linked);
                continue;
            }
            let inner = self.inner.clone();
            let (reference, path) = (spec.image.clone(), program.clone());
            compiling.insert(
                program.clone(),
                tokio::task::spawn_blocking(move || {
                    let compiled = inner.compiler.compile(&reference, &path)?;
                    inner.link(&reference, &path, &compiled)
                }),
            );
        }
        for (path, task) in compiling {
            let linked = task
                .await
                .map_err(|e| Error::Engine(format!("compile task failed: {e}")))?;
            programs.insert(path, linked);
        }
        let pod_memory = Arc::new(match pod.memory_limit {
            _ if !options.memory_ceiling => PodMemory::new(None, "none in this process"),
            Some(bytes) => PodMemory::new(
                Some(bytes),
                crate::sandbox::MemorySource::Annotation.explain(),
            ),
            None => PodMemory::new(
                container::host_memory_share(),
                crate::sandbox::MemorySource::HostShare.explain(),
            ),
        });
        let mut plans = Vec::new();
        for (spec, image, argv, env, working_dir, program) in resolved {
            let path = program;
            let program = match programs.get(&path).expect("compiled above") {
                Ok(program) => program.clone(),
                Err(_) => {
                    // Report the error against the first container that uses it.
                    let error = programs
                        .remove(&path)
                        .expect("present")
                        .err()
                        .expect("an error");
                    return Err(image_error(spec, error));
                }
            };
            let preopens = volumes
                .preopens(spec, image.rootfs.as_deref())
                .map_err(|source| Error::volume(pod, source))?;
            let (program, http) = match program {
                Program::Http(_) => {
                    let concurrency = pod
                        .http_concurrency
                        .unwrap_or(crate::http::DEFAULT_HTTP_CONCURRENCY);
                    let port = http_port(pod, spec)?;
                    let pooled = self.inner.pooled_http(&path, &program, concurrency);
                    let serving = crate::http::Serving {
                        port,
                        concurrency,
                        pooled: pooled.is_some(),
                    };
                    (pooled.map_or(program, Program::Http), Some(serving))
                }
                program => (program, None),
            };
            plans.push(ContainerPlan {
                name: spec.name.clone(),
                argv,
                env,
                working_dir,
                preopens: preopens.into(),
                usage: Arc::new(ContainerUsage::new(spec.resources.memory_limit)),
                pod_memory: pod_memory.clone(),
                descriptor_limit: pod
                    .descriptor_limit
                    .unwrap_or(container::DEFAULT_DESCRIPTOR_LIMIT),
                program,
                source: path,
                http,
                network: network.clone(),
                probes: super::Probes::of(spec),
                sidecar: spec.sidecar,
                config_error: spec.config_error.clone(),
                stdin: options.attach_stdin && spec.stdin,
                stdin_once: spec.stdin_once,
                post_start: spec.post_start.clone(),
                pre_stop: spec.pre_stop.clone(),
                run_dir: volumes.run_dir(&spec.name).map(Path::to_owned),
                reference: spec.image.clone(),
                image,
            });
        }
        Ok(plans)
    }
}

/// The port an HTTP component of `pod` is served on: its TCP
/// `containerPort` named `http`, else its only one.
fn http_port(pod: &PodSpec, container: &ContainerSpec) -> Result<u16> {
    let tcp: Vec<_> = container
        .ports
        .iter()
        .filter(|port| port.protocol == crate::manifest::Protocol::Tcp)
        .collect();
    if let Some(named) = tcp.iter().find(|port| port.name.as_deref() == Some("http")) {
        return Ok(named.container_port);
    }
    let problem = match tcp.as_slice() {
        [only] => return Ok(only.container_port),
        [] => "the image is an HTTP component (wasi:http/proxy), which is served on a port; give the container a TCP containerPort".to_owned(),
        several => format!(
            "the image is an HTTP component (wasi:http/proxy), served on one port, and the container has {} TCP ports; name the one to serve `http`",
            several.len()
        ),
    };
    let position = |list: &[ContainerSpec]| list.iter().position(|c| std::ptr::eq(c, container));
    let field = match (position(&pod.init_containers), position(&pod.containers)) {
        (Some(index), _) => format!("spec.initContainers[{index}].ports"),
        (_, Some(index)) => format!("spec.containers[{index}].ports"),
        _ => "ports".into(),
    };
    Err(Error::HttpPort {
        pod: pod.name.clone(),
        container: container.name.clone(),
        field,
        problem,
    })
}

/// One container's image and program, found on disk (no Wasm read yet).
pub(crate) struct Resolved<'a> {
    pub spec: &'a ContainerSpec,
    pub image: Image,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// The Wasm file that runs: the image's `.wasm`, or the program that
    /// `command[0]` (or the image's entrypoint) names inside its rootfs.
    pub program: PathBuf,
}

/// Finds every container's image and program, relative to `base_dir` and
/// along `image_path`: the one resolution, used by [`Runtime::start`] and by
/// the OS wall's supervisor (which binds the images into the pod's root and
/// compiles what the cache lacks).
pub(crate) fn resolve_containers<'a>(
    pod: &'a PodSpec,
    base_dir: &std::path::Path,
    image_path: &ImagePath,
    registries: &crate::registry::Registries,
) -> Result<Vec<Resolved<'a>>> {
    pod.all_containers()
        .map(|spec| resolve_container(pod, spec, base_dir, image_path, registries))
        .collect()
}

/// One container of `pod`: its image found and the program that runs.
pub(crate) fn resolve_container<'a>(
    pod: &PodSpec,
    spec: &'a ContainerSpec,
    base_dir: &std::path::Path,
    image_path: &ImagePath,
    registries: &crate::registry::Registries,
) -> Result<Resolved<'a>> {
    let image = Image::resolve(&spec.image, base_dir, image_path, registries)
        .map_err(|e| image_error(pod, spec, e))?;
    let image_name = image
        .wasm_file
        .as_ref()
        .and_then(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.image.clone());
    let (mut argv, env, working_dir) = ContainerPlan::command_line(spec, &image, &image_name);
    let program = image
        .program(&spec.image, &mut argv, &working_dir)
        .map_err(|e| image_error(pod, spec, e))?;
    Ok(Resolved {
        spec,
        image,
        argv,
        env,
        working_dir,
        program,
    })
}

/// An image error of one of `pod`'s containers, with its field path
/// (`spec.initContainers[0].image`).
pub(crate) fn image_error(pod: &PodSpec, container: &ContainerSpec, source: ImageError) -> Error {
    let position = |list: &[ContainerSpec]| list.iter().position(|c| std::ptr::eq(c, container));
    let field = match (position(&pod.init_containers), position(&pod.containers)) {
        (Some(index), _) => format!("spec.initContainers[{index}].image"),
        (_, Some(index)) => format!("spec.containers[{index}].image"),
        _ => "image".into(),
    };
    Error::Image {
        pod: pod.name.clone(),
        container: container.name.clone(),
        field,
        source: Box::new(source),
    }
}

/// The pod's egress policy (its `wpod.dev/egress` annotation, parsed and
/// checked with the manifest) plus the run's.
pub(super) fn pod_egress(pod: &PodSpec, extra: &EgressPolicy) -> Result<EgressPolicy> {
    let mut egress = extra.clone();
    egress.extend(&pod.egress);
    Ok(egress)
}

pub(crate) fn initial_status(pod: &PodSpec) -> PodStatus {
    let waiting = |spec: &ContainerSpec, reason: &str| {
        ContainerStatus::waiting(&spec.name, &spec.image, reason)
    };
    let mut status = PodStatus {
        phase: PodPhase::Pending,
        start_time: Some(Timestamp::now()),
        reason: None,
        message: None,
        conditions: Vec::new(),
        init_container_statuses: pod
            .init_containers
            .iter()
            .map(|c| waiting(c, "PodInitializing"))
            .collect(),
        container_statuses: pod
            .containers
            .iter()
            .map(|c| waiting(c, "PodInitializing"))
            .collect(),
    };
    status.refresh_conditions();
    status
}
