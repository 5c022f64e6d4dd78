//! `containerd-shim-wpod-v1`: a containerd runtime v2 shim that runs a
//! Kubernetes pod's Wasm containers with wpod, one shim process per pod.
//!
//! containerd starts the binary with `start` for each new task; [`WpodShim`]
//! answers with the address of the shim that already holds the task's pod
//! sandbox (the CRI annotation `io.kubernetes.cri.sandbox-id`), or starts
//! that shim (containerd-shim's `spawn`, grouped by the sandbox id), so
//! every container of a pod lands in one process, as wpod's pod process is
//! one. There, [`service`] serves containerd's task API: each container is a
//! one-container pod in the pod's walled process ([`pod`], wpod's
//! [`wpod::pod_host`]), reading its program, args, env and mounts from its
//! OCI bundle ([`bundle`]), its output going to containerd's FIFOs
//! ([`stdio`]).
//!
//! The pod's network is the shim process's: when the CRI plugin made a
//! network namespace for the pod, the shim joins it before any thread
//! starts ([`netns`]); the walled process keeps it, and every container
//! uses it as a `hostNetwork` wpod pod does, so the pod's containers meet
//! on its localhost.
//!
//! Where to read next: `docs/kubernetes.md` (installing and configuring it),
//! [`task::TaskService`] (the task API), [`service::Service`] (what it does), [`bundle::Bundle`] (what of an
//! OCI spec is honoured).

#![cfg(target_os = "linux")]

pub mod bundle;
pub mod netns;
pub mod pod;
pub mod process;
pub mod service;
pub mod stdio;
pub mod task;

use async_trait::async_trait;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::{ExitSignal, Shim, spawn};
use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::{Config, Flags, StartOpts};
use std::sync::Arc;

/// The runtime's name in containerd (`runtime_type`), for which containerd
/// runs the binary `containerd-shim-wpod-v1`.
pub const RUNTIME_NAME: &str = "io.containerd.wpod.v1";

/// The environment variable through which `start` tells the shim server it
/// spawns which network namespace to join (read by the binary's `main`
/// before it starts any thread).
pub const NETNS_ENV: &str = "WPOD_SHIM_NETNS";

/// The shim: containerd-shim calls it for `start`, `delete` and to serve.
pub struct WpodShim {
    id: String,
    namespace: String,
    exit: Arc<ExitSignal>,
}

impl std::fmt::Debug for WpodShim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WpodShim")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Shim for WpodShim {
    type T = task::TaskService;

    async fn new(_runtime_id: &str, args: &Flags, config: &mut Config) -> Self {
        // The shim's children (the pod's walled process, compilers) are
        // each reaped by the thread that started it.
        config.no_reaper = true;
        WpodShim {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // containerd runs `start` in the task's bundle.
        let bundle = std::env::current_dir().map_err(|e| {
            containerd_shim::Error::Other(format!("cannot read the bundle's folder: {e}"))
        })?;
        let (grouping, netns) = bundle::peek(&bundle, &opts.id)
            .map_err(|e| containerd_shim::Error::InvalidArgument(e.to_string()))?;
        let netns = netns.map(|path| path.display().to_string());
        let vars: Vec<(&str, &str)> = netns
            .as_deref()
            .map(|path| vec![(NETNS_ENV, path)])
            .unwrap_or_default();
        // The first task of a sandbox starts the server; the next ones are
        // served by it, at the address derived from the sandbox id. Found
        // here, the server is not spawned again only to find its socket
        // taken (containerd-shim's `spawn` would do that, and exit).
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
        let serving = address
            .strip_prefix("unix://")
            .is_some_and(|path| std::os::unix::net::UnixStream::connect(path).is_ok());
        let address = if serving {
            address
        } else {
            spawn(opts, &grouping, vars).await?
        };
        containerd_shim::asynchronous::util::write_str_to_file("address", &address).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // containerd calls this when a shim died without deleting a task:
        // the pod's walled process died with the shim (PR_SET_PDEATHSIG),
        // and containerd unmounts the bundle's rootfs; what is left is the
        // task's place in the pod folder, and, for the sandbox's own task,
        // the pod folder itself.
        if let Ok(bundle) = std::env::current_dir()
            && let Ok((sandbox_id, _)) = bundle::peek(&bundle, &self.id)
            && let Ok(folder) = pod::folder_for(&bundle, &sandbox_id)
        {
            if let Some(namespace) = bundle.parent().and_then(|p| p.file_name()) {
                pod::ContainerDir::new(&folder, &namespace.to_string_lossy(), &self.id).remove();
            }
            if sandbox_id == self.id {
                pod::tear_down(&folder);
                if let Some(path) = bundle::peek_cgroups_path(&bundle) {
                    wpod::pod_host::HostCgroup::remove(&path);
                }
            }
        }
        Ok(DeleteResponse {
            exit_status: 137,
            exited_at: MessageField::some(Timestamp::now()),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        task::TaskService(Arc::new(service::Service::new(
            &self.namespace,
            publisher,
            self.exit.clone(),
        )))
    }
}
