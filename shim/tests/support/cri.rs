//! A client of the Kubernetes CRI (`runtime.v1.RuntimeService`) as the kubelet
//! speaks it to containerd's CRI plugin: the messages the tests use, written
//! with prost's derive from the published `api.proto` (field numbers as
//! there; fields the tests leave out are simply absent), and unary calls over
//! tonic, so no `protoc` is needed to build the tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(string, tag = "3")]
    pub log_directory: String,
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "7")]
    pub annotations: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSandboxSecurityContext {
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
}

/// `NamespaceMode`: `POD` 0, `CONTAINER` 1, `NODE` 2, `TARGET` 3.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    #[prost(int32, tag = "1")]
    pub network: i32,
    #[prost(int32, tag = "2")]
    pub pid: i32,
    #[prost(int32, tag = "3")]
    pub ipc: i32,
}

pub const NAMESPACE_POD: i32 = 0;
pub const NAMESPACE_CONTAINER: i32 = 1;
pub const NAMESPACE_NODE: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerResponse {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
    #[prost(string, tag = "5")]
    pub working_dir: String,
    #[prost(message, repeated, tag = "6")]
    pub envs: Vec<KeyValue>,
    #[prost(message, repeated, tag = "7")]
    pub mounts: Vec<Mount>,
    #[prost(map = "string, string", tag = "9")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "10")]
    pub annotations: HashMap<String, String>,
    #[prost(string, tag = "11")]
    pub log_path: String,
    #[prost(message, optional, tag = "15")]
    pub linux: Option<LinuxContainerConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    #[prost(string, tag = "1")]
    pub image: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mount {
    #[prost(string, tag = "1")]
    pub container_path: String,
    #[prost(string, tag = "2")]
    pub host_path: String,
    #[prost(bool, tag = "3")]
    pub readonly: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerConfig {
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxContainerSecurityContext>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerSecurityContext {
    #[prost(message, optional, tag = "3")]
    pub namespace_options: Option<NamespaceOption>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Seconds between SIGTERM and SIGKILL.
    #[prost(int64, tag = "2")]
    pub timeout: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerIdRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// The request naming container `id` (`StartContainer`, `ContainerStatus`,
/// `ContainerStats`).
pub fn container(id: &str) -> ContainerIdRequest {
    ContainerIdRequest {
        container_id: id.into(),
    }
}

/// The request naming sandbox `id` (`StopPodSandbox`, `RemovePodSandbox`,
/// `PodSandboxStatus`).
pub fn sandbox(id: &str) -> SandboxIdRequest {
    SandboxIdRequest {
        pod_sandbox_id: id.into(),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SandboxIdRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecSyncRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, repeated, tag = "2")]
    pub cmd: Vec<String>,
    /// Seconds; 0 for none.
    #[prost(int64, tag = "3")]
    pub timeout: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecSyncResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub stdout: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub stderr: Vec<u8>,
    #[prost(int32, tag = "3")]
    pub exit_code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<ContainerStatus>,
}

/// `ContainerState`: `CREATED` 0, `RUNNING` 1, `EXITED` 2, `UNKNOWN` 3.
pub const CONTAINER_RUNNING: i32 = 1;
pub const CONTAINER_EXITED: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(int64, tag = "5")]
    pub started_at: i64,
    #[prost(int32, tag = "7")]
    pub exit_code: i32,
    #[prost(string, tag = "10")]
    pub reason: String,
    #[prost(string, tag = "11")]
    pub message: String,
    #[prost(string, tag = "15")]
    pub log_path: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatsResponse {
    #[prost(message, optional, tag = "1")]
    pub stats: Option<ContainerStats>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStats {
    #[prost(message, optional, tag = "2")]
    pub cpu: Option<CpuUsage>,
    #[prost(message, optional, tag = "3")]
    pub memory: Option<MemoryUsage>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CpuUsage {
    #[prost(message, optional, tag = "2")]
    pub usage_core_nano_seconds: Option<UInt64Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MemoryUsage {
    #[prost(message, optional, tag = "2")]
    pub working_set_bytes: Option<UInt64Value>,
    #[prost(message, optional, tag = "4")]
    pub usage_bytes: Option<UInt64Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "5")]
    pub network: Option<PodSandboxNetworkStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxNetworkStatus {
    #[prost(string, tag = "1")]
    pub ip: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxResponse {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<IdOnly>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainersResponse {
    #[prost(message, repeated, tag = "1")]
    pub containers: Vec<IdOnly>,
}

/// A `PodSandbox` or `Container` of a list, read for its id alone.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdOnly {
    #[prost(string, tag = "1")]
    pub id: String,
}

/// A sandbox's config as the kubelet makes it, its logs in `log_directory`;
/// `network` is [`NAMESPACE_NODE`] (`hostNetwork: true`) or
/// [`NAMESPACE_POD`] (a network of the pod's own, from CNI).
pub fn sandbox_config(name: &str, log_directory: &Path, network: i32) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("wpod-shim-test-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        // As the kubelet: a pod on the node's network has the node's name.
        hostname: if network == NAMESPACE_NODE {
            String::new()
        } else {
            name.into()
        },
        log_directory: log_directory.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(network)),
            }),
        }),
        ..Default::default()
    }
}

/// A container's config as the kubelet makes it: `command` from `image`,
/// with `mounts`, its log in `NAME.log`, in the pod's `network` mode.
pub fn container_config(
    name: &str,
    image: &str,
    command: Vec<String>,
    mounts: Vec<Mount>,
    network: i32,
) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
        }),
        command,
        mounts,
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(network)),
            }),
        }),
        ..Default::default()
    }
}

fn namespaces(network: i32) -> NamespaceOption {
    NamespaceOption {
        network,
        pid: NAMESPACE_CONTAINER,
        ipc: NAMESPACE_POD,
    }
}

/// A connection to the CRI plugin's socket (containerd's gRPC address).
pub struct Cri {
    grpc: tonic::client::Grpc<Channel>,
}

impl Cri {
    pub async fn connect(socket: PathBuf) -> Cri {
        // The URI is unused: every connection goes to the socket.
        let channel = Endpoint::from_static("http://cri.invalid")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .expect("connecting to containerd's CRI socket");
        Cri {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    /// One unary call of `runtime.v1.RuntimeService`.
    pub async fn call<Req, Resp>(
        &mut self,
        method: &str,
        request: Req,
    ) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path: http::uri::PathAndQuery = format!("/runtime.v1.RuntimeService/{method}")
            .parse()
            .expect("a method path");
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        self.grpc
            .unary(tonic::Request::new(request), path, codec)
            .await
            .map(tonic::Response::into_inner)
    }

    /// A call that must succeed: a failure panics with the status and what
    /// `context` tells (containerd's log).
    pub async fn expect<Req, Resp>(
        &mut self,
        method: &str,
        request: Req,
        context: impl FnOnce() -> String,
    ) -> Resp
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        match self.call(method, request).await {
            Ok(response) => response,
            Err(status) => panic!("{method}: {status}\n{}", context()),
        }
    }

    /// `ExecSync` of `command` in container `id`, as an exec probe or
    /// `kubectl exec` (a minute at most).
    pub async fn exec_sync(
        &mut self,
        id: &str,
        command: &[&str],
        context: impl FnOnce() -> String,
    ) -> ExecSyncResponse {
        let request = ExecSyncRequest {
            container_id: id.into(),
            cmd: command.iter().map(|word| word.to_string()).collect(),
            timeout: 60,
        };
        self.expect("ExecSync", request, context).await
    }

    /// `RunPodSandbox` with runtime handler `wpod`; the sandbox's id.
    pub async fn run_sandbox(
        &mut self,
        config: &PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let response: RunPodSandboxResponse = self
            .call(
                "RunPodSandbox",
                RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: "wpod".into(),
                },
            )
            .await?;
        Ok(response.pod_sandbox_id)
    }

    /// `CreateContainer` then `StartContainer`; the container's id.
    pub async fn start_container(
        &mut self,
        sandbox_id: &str,
        sandbox: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let created: CreateContainerResponse = self
            .call(
                "CreateContainer",
                CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.into(),
                    config: Some(config),
                    sandbox_config: Some(sandbox.clone()),
                },
            )
            .await?;
        let _: Empty = self
            .call(
                "StartContainer",
                ContainerIdRequest {
                    container_id: created.container_id.clone(),
                },
            )
            .await?;
        Ok(created.container_id)
    }

    /// `StopPodSandbox` then `RemovePodSandbox`.
    pub async fn stop_and_remove(&mut self, sandbox_id: &str) -> Result<(), tonic::Status> {
        for method in ["StopPodSandbox", "RemovePodSandbox"] {
            let _: Empty = self
                .call(
                    method,
                    SandboxIdRequest {
                        pod_sandbox_id: sandbox_id.into(),
                    },
                )
                .await?;
        }
        Ok(())
    }

    pub async fn container_status(&mut self, id: &str) -> ContainerStatus {
        let response: ContainerStatusResponse = self
            .call(
                "ContainerStatus",
                ContainerIdRequest {
                    container_id: id.into(),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"));
        response.status.expect("a status")
    }
}
