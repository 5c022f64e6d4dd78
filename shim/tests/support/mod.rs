//! Test support, in one place: the guests, a private containerd started for
//! one test (and everything it made removed when the test ends, passed or
//! not), OCI image tars for `ctr images import`, and the shim processes.

pub mod cri;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The runtime's name in containerd.
pub const RUNTIME: &str = "io.containerd.wpod.v1";

/// A wasip2 guest (built once per test run by xtask).
pub fn component(name: &str) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let root = xtask::workspace_root();
        xtask::build_guests(&root).unwrap_or_else(|e| panic!("building the guests: {e}"));
        root
    });
    xtask::guest(root, "wasm32-wasip2", name)
}

/// Fails the test, saying how to get `program` (Debian's `package`), when
/// it is not installed.
fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed: the shim's tests start a private containerd 1.6+ with its \
         CRI plugin; install Debian's `{package}` package (`apt-get install {package}`), as .ci/run does"
    );
}

/// A containerd of the test's own: its root, state, sockets and config in a
/// temporary folder, the shim's folder first on its PATH. Dropping it kills
/// the shims it started and containerd, unmounts what is left under the
/// folder and removes it.
pub struct Containerd {
    pub dir: PathBuf,
    pub address: PathBuf,
    child: Option<Child>,
    _temp: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Containerd {
        Containerd::start_with(|_| {})
    }

    /// A containerd whose CRI plugin gives pods a CNI network: a bridge
    /// `bridge` with no address of its own (the host gets no route to the
    /// pods, and no forwarding is turned on), with host-local addresses
    /// from `subnet`, through Debian's plugins (containernetworking-plugins).
    /// The bridge is removed when the returned guard drops.
    pub fn start_with_cni(bridge: &str, subnet: &str) -> (Containerd, CniBridge) {
        netns_folder_ready();
        let guard = CniBridge {
            name: bridge.to_owned(),
        };
        let containerd = Containerd::start_with(|dir| {
            let plugins = Path::new("/usr/lib/cni");
            for plugin in ["bridge", "host-local", "loopback"] {
                assert!(
                    plugins.join(plugin).is_file(),
                    "the CNI plugin `{plugin}` is not installed: install Debian's \
                     `containernetworking-plugins` package, as .ci/run does"
                );
                std::os::unix::fs::symlink(plugins.join(plugin), dir.join("cni-bin").join(plugin))
                    .expect("linking a CNI plugin");
            }
            let config = serde_json::json!({
                "cniVersion": "1.0.0",
                "name": "wpod-test",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": false,
                        "ipMasq": false,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{ "subnet": subnet }]],
                            "dataDir": dir.join("cni-ipam"),
                        },
                    },
                    { "type": "loopback" },
                ],
            });
            std::fs::write(
                dir.join("cni-conf").join("10-wpod-test.conflist"),
                config.to_string(),
            )
            .expect("writing the CNI config");
        });
        (containerd, guard)
    }

    /// Starts containerd after `prepare` has written what it wants in the
    /// test's folder.
    fn start_with(prepare: impl FnOnce(&Path)) -> Containerd {
        require("containerd", "containerd");
        require("ctr", "containerd");
        assert!(
            rustix::process::geteuid().is_root(),
            "these tests start a containerd of their own, which must run as root (as .ci/run does)"
        );
        let temp = tempfile::Builder::new()
            .prefix("wpod-shim-")
            .tempdir()
            .expect("a temporary folder");
        let dir = temp.path().to_owned();
        let address = dir.join("containerd.sock");
        for sub in ["cni-conf", "cni-bin", "logs"] {
            std::fs::create_dir_all(dir.join(sub)).expect("creating test folders");
        }
        let config = format!(
            r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/wpod-test/pause:latest"
  disable_cgroup = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{dir}/cni-bin"
    conf_dir = "{dir}/cni-conf"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wpod]
    runtime_type = "{RUNTIME}"
    container_annotations = ["io.kubernetes.container.ports"]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).expect("writing containerd's config");
        prepare(&dir);
        // `WPOD_SHIM` points at another build of the shim (a release
        // build, to measure it); the default is the one cargo built.
        let shim = std::env::var_os("WPOD_SHIM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-wpod-v1")));
        let path = std::env::join_paths(
            std::iter::once(shim.parent().expect("the shim's folder").to_owned()).chain(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
            ),
        )
        .expect("a PATH");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd's log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path)
            // The compile cache the shims share across tests and runs.
            .env("WPOD_CACHE_DIR", cache_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let containerd = Containerd {
            dir,
            address,
            child: Some(child),
            _temp: temp,
        };
        containerd.wait_ready();
        containerd
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.address.exists() && self.ctr(&["version"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 30 s; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr -a ADDRESS ARGS`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.address)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running ctr")
    }

    /// `ctr images import` of an OCI image tar into `namespace`.
    pub fn import(&self, namespace: &str, tar: &[u8], name: &str) {
        let path = self
            .dir
            .join(format!("{}.tar", name.replace(['/', ':'], "_")));
        std::fs::write(&path, tar).expect("writing the image tar");
        let output = self.ctr(&[
            "-n",
            namespace,
            "images",
            "import",
            path.to_str().expect("a UTF-8 path"),
        ]);
        assert!(
            output.status.success(),
            "ctr images import {name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The PIDs of the shim servers serving this containerd (those started
    /// with its address), whatever their sandbox.
    pub fn shims(&self) -> Vec<u32> {
        self.shim_servers()
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
    }

    /// The shim servers of this containerd: PID and socket (`-socket`).
    fn shim_servers(&self) -> Vec<(u32, PathBuf)> {
        let address = self.address.to_string_lossy().into_owned();
        let mut servers = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_shim = args
                .first()
                .is_some_and(|a| a.ends_with("containerd-shim-wpod-v1"));
            let ours = args
                .windows(2)
                .any(|w| w[0] == "-address" && w[1] == address);
            let socket = args
                .windows(2)
                .find(|w| w[0] == "-socket")
                .map(|w| PathBuf::from(w[1].trim_start_matches("unix://")));
            if let (true, true, Some(socket)) = (is_shim, ours, socket) {
                servers.push((pid, socket));
            }
        }
        servers
    }

    /// Waits (up to 20 s) until no shim of this containerd is left.
    pub fn wait_no_shims(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.shims().is_empty() {
            assert!(
                Instant::now() < deadline,
                "shims still running 20 s after their tasks were removed: {:?}\n{}",
                self.shims(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The network namespace the CRI plugin made for a sandbox, as its
    /// bundle's spec names it.
    pub fn sandbox_netns(&self, sandbox_id: &str) -> PathBuf {
        netns_of(&self.bundles().join(sandbox_id))
            .expect("the sandbox's spec names a network namespace")
    }

    /// The network namespaces the CRI plugin made for the sandboxes it
    /// still has (those in /run/netns its tasks' specs name).
    fn sandbox_namespaces(&self) -> Vec<PathBuf> {
        let bundles = std::fs::read_dir(self.bundles())
            .into_iter()
            .flatten()
            .flatten();
        let mut namespaces: Vec<PathBuf> = bundles
            .filter_map(|bundle| netns_of(&bundle.path()))
            .filter(|path| path.starts_with("/run/netns") || path.starts_with("/var/run/netns"))
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }

    /// Where containerd keeps the CRI plugin's task bundles.
    fn bundles(&self) -> PathBuf {
        self.dir.join("state/io.containerd.runtime.v2.task/k8s.io")
    }

    /// Fails unless nothing of the pods is left, once their tasks and
    /// containers are removed: no shim, no mount under the test's folder,
    /// no pod folder.
    pub fn assert_nothing_left(&self) {
        self.wait_no_shims();
        assert_eq!(self.mounts(), Vec::<PathBuf>::new());
        self.assert_no_pod_folders();
    }

    /// Fails unless the pods' folders (`<state>/wpod/...`) are all gone.
    pub fn assert_no_pod_folders(&self) {
        let folders = self.dir.join("state").join("wpod");
        let left: Vec<PathBuf> = std::fs::read_dir(&folders)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        assert_eq!(left, Vec::<PathBuf>::new(), "pod folders left");
    }

    /// The mounts under the test's folder, deepest first.
    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(&self.dir)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Shims first (they are containerd's grandchildren, in their own
        // process groups), then containerd, then what they left mounted.
        // The pods' network namespaces (CNI's, in /run/netns) outlive a
        // containerd killed before it removed its sandboxes.
        let namespaces = self.sandbox_namespaces();
        // A shim killed leaves its socket (in /run/containerd/s, where
        // containerd-shim puts them whatever containerd's root).
        for (pid, socket) in self.shim_servers() {
            kill(pid, rustix::process::Signal::KILL);
            let _ = std::fs::remove_file(socket);
        }
        if let Some(mut child) = self.child.take() {
            kill(child.id(), rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        for mount in mounts_under(&self.dir) {
            let _ = rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::DETACH);
        }
        for namespace in namespaces {
            let _ = rustix::mount::unmount(&namespace, rustix::mount::UnmountFlags::DETACH);
            let _ = std::fs::remove_file(&namespace);
        }
        // `ctr run`'s tasks have the cgroup `/default/<id>` (containerd's
        // namespace, then the task), whose parent the shim makes as runc
        // does and, as runc, leaves: removed here once empty.
        drop(CgroupParent::new("default"));
        // The TempDir removes the folder.
    }
}

/// Makes /run/netns what `ip netns` makes it on first use, once per test
/// run, before any test adds a namespace there: a mount of itself, shared.
/// Were `ip` to make it while the CRI plugin of another test has just bound
/// a pod's namespace there, that namespace would be hidden under the new
/// mount, and could not be removed.
fn netns_folder_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        require("ip", "iproute2");
        let name = format!("wpod-shim-ready-{}", std::process::id());
        for args in [["netns", "add", &name], ["netns", "del", &name]] {
            let output = Command::new("ip").args(args).output().expect("running ip");
            assert!(
                output.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    });
}

/// The network namespace path a bundle's spec names, if any.
fn netns_of(bundle: &Path) -> Option<PathBuf> {
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).ok()?).ok()?;
    spec["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|ns| ns["type"] == "network")
        .and_then(|ns| ns["path"].as_str())
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

pub fn kill(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The mount points at or under `dir` (from /proc/self/mountinfo), deepest
/// first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found
}

/// The compile cache the tests' shims share (warm across runs).
pub fn cache_dir() -> PathBuf {
    xtask::workspace_root()
        .join("target")
        .join("shim-test-cache")
}

/// An OCI image layout as a tar, as `ctr images import` reads it: one layer
/// holding `files` (path in the image, content), an image config with
/// `entrypoint`, labelled for this host's platform (containerd 1.6 unpacks
/// and runs only images of its own platform), named `name` by the
/// `io.containerd.image.name` annotation.
pub fn oci_image(name: &str, files: &[(&str, Vec<u8>)], entrypoint: &[&str]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut layer = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        layer
            .append_data(
                &mut header,
                path.trim_start_matches('/'),
                content.as_slice(),
            )
            .expect("adding a file to the layer");
    }
    let layer = layer.into_inner().expect("the layer");
    let digest = |bytes: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "config": { "Entrypoint": entrypoint },
        "rootfs": { "type": "layers", "diff_ids": [digest(&layer)] },
    }))
    .expect("the config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest(&layer),
            "size": layer.len(),
        }],
    }))
    .expect("the manifest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len(),
            "annotations": { "io.containerd.image.name": name },
        }],
    }))
    .expect("the index");
    let mut out = tar::Builder::new(Vec::new());
    let mut add = |path: String, content: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append_data(&mut header, path, content)
            .expect("adding to the image tar");
    };
    for blob in [&layer, &config, &manifest] {
        add(
            format!("blobs/sha256/{}", &digest(blob)["sha256:".len()..]),
            blob,
        );
    }
    add("index.json".into(), &index);
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    out.into_inner().expect("the image tar")
}

/// The proportional set size of a process, in KiB (`Pss` of
/// /proc/PID/smaps_rollup).
pub fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The descendants of process `pid` (children first), from `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `PID (COMM) STATE PPID ...`: the name may hold spaces.
            let parent = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    found.remove(0);
    found
}

/// The cgroup paths process `pid` is in, one per hierarchy (as
/// `/proc/PID/cgroup` names them from this test's cgroup namespace).
pub fn cgroups_of(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2).map(str::to_owned))
        .collect()
}

/// A cgroup parent of the test's own (as the kubelet's cgroup of a pod),
/// `/NAME` in every v1 hierarchy or in cgroup v2, removed on drop.
pub struct CgroupParent {
    pub path: String,
}

impl CgroupParent {
    pub fn new(name: &str) -> CgroupParent {
        CgroupParent {
            path: format!("/{name}"),
        }
    }

    /// Its directories, where they are (made by the shim).
    pub fn dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|hierarchy| hierarchy.path().join(self.path.trim_start_matches('/')))
            .chain(std::iter::once(
                Path::new("/sys/fs/cgroup").join(self.path.trim_start_matches('/')),
            ))
            .filter(|dir| dir.is_dir())
            .collect()
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for dir in self.dirs() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The pod's walled processes among the shim's descendants, by name: its
/// helper (`wpod pod-init`, the shim's child) and PID 1 of the pod's
/// namespaces (`wpod pod <sandbox>`, the helper's child).
pub fn walled_processes(shim: u32) -> Vec<u32> {
    descendants(shim)
        .into_iter()
        .filter(|pid| process_name(*pid).starts_with("wpod pod"))
        .collect()
}

/// A process's name (`/proc/PID/comm`), empty once it is gone.
pub fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim_end().to_owned())
        .unwrap_or_default()
}

/// What shows that process `pid` runs behind the OS wall, as
/// `(what, holds)`: seccomp's filter mode, no_new_privs, no capabilities,
/// a user and a mount namespace not the host's (this test's), a root
/// without the host's `/etc/shadow`.
pub fn wall_of(pid: u32) -> Vec<(String, bool)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_owned())
            .unwrap_or_default()
    };
    let namespace = |kind: &str, of: &str| std::fs::read_link(format!("/proc/{of}/ns/{kind}")).ok();
    let mut checks = vec![
        (
            format!("Seccomp: {}", field("Seccomp:")),
            field("Seccomp:") == "2",
        ),
        (
            format!("NoNewPrivs: {}", field("NoNewPrivs:")),
            field("NoNewPrivs:") == "1",
        ),
        (
            format!("CapEff: {}", field("CapEff:")),
            field("CapEff:") == "0000000000000000",
        ),
    ];
    for kind in ["user", "mnt"] {
        let (theirs, ours) = (namespace(kind, &pid.to_string()), namespace(kind, "self"));
        checks.push((
            format!("{kind} namespace {theirs:?}, the host's {ours:?}"),
            theirs.is_some() && theirs != ours,
        ));
    }
    let shadow = Path::new("/proc")
        .join(pid.to_string())
        .join("root/etc/shadow");
    checks.push((
        format!("{} absent", shadow.display()),
        Path::new("/etc/shadow").exists() && !shadow.exists(),
    ));
    checks
}

/// A CNI bridge the CRI plugin makes on the host, deleted on drop.
pub struct CniBridge {
    name: String,
}

impl Drop for CniBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

/// A named network namespace (`ip netns add`) with its loopback up, deleted
/// on drop.
pub struct NetworkNamespace {
    name: String,
    pub path: PathBuf,
}

impl NetworkNamespace {
    pub fn new(name: &str) -> NetworkNamespace {
        require("ip", "iproute2");
        netns_folder_ready();
        let ip = |args: &[&str]| {
            let output = Command::new("ip").args(args).output().expect("running ip");
            assert!(
                output.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        ip(&["netns", "add", name]);
        let namespace = NetworkNamespace {
            name: name.to_owned(),
            path: PathBuf::from("/var/run/netns").join(name),
        };
        ip(&["netns", "exec", name, "ip", "link", "set", "lo", "up"]);
        namespace
    }

    /// Whether a TCP connection to `address` succeeds from inside the
    /// namespace.
    pub fn connects(&self, address: std::net::SocketAddr) -> bool {
        connects_in(&self.path, address)
    }
}

/// Whether a TCP connection to `address` succeeds from inside the network
/// namespace at `path`.
pub fn connects_in(path: &Path, address: std::net::SocketAddr) -> bool {
    in_netns(path, move || {
        std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
    })
    .unwrap_or(false)
}

/// The body of `GET path` (HTTP/1.0) to `address`, from inside the network
/// namespace at `path`; `None` if it cannot be had.
pub fn http_get_in(netns: &Path, address: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let request = format!("GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n");
    in_netns(netns, move || {
        let mut stream =
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1);
        (status == Some("200")).then(|| body.to_owned())
    })
    .flatten()
}

/// Runs `work` on a thread of its own that joins the network namespace at
/// `path` first (`setns` moves that thread only); `None` if it cannot.
fn in_netns<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).ok()?;
        use std::os::fd::AsFd;
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .ok()?;
        Some(work())
    })
    .join()
    .ok()
    .flatten()
}

impl Drop for NetworkNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
