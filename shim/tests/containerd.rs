//! The shim under a real containerd (Debian's 1.6, with its CRI plugin): a
//! private containerd per test, images the tests build and import, and the
//! two ways containerd is driven: `ctr run`, and the CRI API as the kubelet
//! speaks it. Linux only (containerd's runtime v2 shims are).
#![cfg(target_os = "linux")]

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};
use support::cri::{self, Cri};
use support::{Containerd, RUNTIME, component, oci_image, pss_kib};

/// `ctr run --runtime io.containerd.wpod.v1` of an imported image holding a
/// wasip2 hello: its output comes back through containerd's FIFOs, the run
/// exits 0, and its shim is gone after `--rm`.
#[test]
fn ctr_run_prints_the_guest_output() {
    let containerd = Containerd::start();
    let image = import_hello(&containerd);
    let output = containerd.ctr(&["run", "--rm", "--runtime", RUNTIME, image, "hello-ctr"]);
    assert!(
        output.status.success(),
        "ctr run failed: {}\n--- containerd's log\n{}",
        String::from_utf8_lossy(&output.stderr),
        containerd.log()
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello from wpod\n");
    let listed = containerd.ctr(&["containers", "ls", "-q"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "");
    containerd.assert_nothing_left();
}

/// A pod through containerd's CRI plugin, as the kubelet drives it: a
/// sandbox with runtime handler `wpod`, then two Wasm containers in it
/// sharing a host folder: one writes a file there and serves the folder on
/// the pod's localhost, the other reads that file and writes its own, which
/// a program exec'd in it fetches from the first over localhost; a second
/// folder, mounted read-only, cannot be written; both containers in the one
/// shim of the sandbox; then the sandbox stopped and removed, with nothing
/// left.
#[test]
fn cri_runs_a_pod_of_two_containers_in_one_shim() {
    let containerd = Containerd::start();
    import_tools(&containerd);
    let shared = containerd.dir.join("shared");
    std::fs::create_dir(&shared).expect("the shared folder");
    // A folder both containers see read-only (as a configMap volume is).
    let config = containerd.dir.join("config");
    std::fs::create_dir(&config).expect("the read-only folder");
    std::fs::write(config.join("setting"), "on\n").expect("a file in the read-only folder");
    let logs = containerd.dir.join("logs");
    let port = free_port();
    let mut walled = Vec::new();
    // The kubelet's cgroup of the pod, which the pod process goes below.
    let cgroup_parent =
        support::CgroupParent::new(&format!("wpod-shim-test-{}", std::process::id()));
    let mut pod_cgroup = String::new();

    block_on(async {
        let mut cri = Cri::connect(containerd.address.clone()).await;
        // The pod uses the node's network, as `hostNetwork: true` does: no
        // CNI plugin is needed, and its containers meet on the shim's
        // localhost, which is the host's here.
        let network = cri::NAMESPACE_NODE;
        let mut sandbox_config = cri::sandbox_config("pair", &logs, network);
        if let Some(linux) = sandbox_config.linux.as_mut() {
            linux.cgroup_parent = cgroup_parent.path.clone();
        }
        let started = Instant::now();
        let sandbox_id = cri
            .run_sandbox(&sandbox_config)
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", containerd.log()));
        let mounts = vec![
            cri::Mount {
                container_path: "/data".into(),
                host_path: shared.display().to_string(),
                readonly: false,
            },
            cri::Mount {
                container_path: "/config".into(),
                host_path: config.display().to_string(),
                readonly: true,
            },
        ];
        let mut ids = Vec::new();
        for (name, script) in [
            (
                "web",
                format!(
                    "echo written-by-web > /data/web.txt && httpd -q -p {port} -a 127.0.0.1 -h /data"
                ),
            ),
            (
                "client",
                "until test -e /data/web.txt; do sleep 0.05; done; cat /data/web.txt; \
                 echo written-by-client > /data/client.txt; sleep infinity"
                    .to_owned(),
            ),
        ] {
            let command = vec!["/bin/sh".to_owned(), "-c".to_owned(), script];
            let container = cri::container_config(name, TOOLS, command, mounts.clone(), network);
            let id = cri
                .start_container(&sandbox_id, &sandbox_config, container)
                .await
                .unwrap_or_else(|e| panic!("container {name}: {e}\n{}", containerd.log()));
            ids.push(id);
        }
        let second_running = started.elapsed();
        let (web, client) = (ids[0].clone(), ids[1].clone());

        // The client read the web container's file in the shared folder,
        // and wrote its own there.
        let deadline = Instant::now() + Duration::from_secs(60);
        let client_log = loop {
            let log = std::fs::read_to_string(logs.join("client.log")).unwrap_or_default();
            // The kubelet's log format: `TIME stdout F LINE`.
            if log
                .lines()
                .any(|line| line.ends_with(" stdout F written-by-web"))
                && shared.join("client.txt").exists()
            {
                break log;
            }
            assert!(
                Instant::now() < deadline,
                "the client did not read web.txt within 60 s: {:?}\n--- its log\n{log}\n--- containerd\n{}",
                cri.container_status(&client).await,
                containerd.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // A program exec'd in the client's container (as `kubectl exec` and
        // exec probes do) reaches the web container on the pod's localhost,
        // which serves it the client's file from the shared folder.
        let exec = cri
            .exec_sync(
                &client,
                &[
                    "/bin/http_get",
                    "--retry-ms",
                    "30000",
                    &format!("http://127.0.0.1:{port}/client.txt"),
                ],
                || containerd.log(),
            )
            .await;
        assert_eq!(
            (
                exec.exit_code,
                String::from_utf8_lossy(&exec.stdout).into_owned()
            ),
            (0, "written-by-client\n".to_owned()),
            "the exec's stderr: {}\n--- the client's log\n{client_log}",
            String::from_utf8_lossy(&exec.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(shared.join("web.txt")).expect("web.txt in the shared folder"),
            "written-by-web\n"
        );
        // The read-only mount is read-only: the file reads, a write fails.
        let script = "cat /config/setting; echo changed > /config/setting";
        let exec = cri
            .exec_sync(&web, &["/bin/sh", "-c", script], || containerd.log())
            .await;
        assert_eq!(String::from_utf8_lossy(&exec.stdout), "on\n");
        assert_ne!(exec.exit_code, 0, "a write to a read-only mount succeeded");
        assert_eq!(
            std::fs::read_to_string(config.join("setting")).expect("the read-only file"),
            "on\n"
        );
        for id in [&web, &client] {
            let status = cri.container_status(id).await;
            assert_eq!(status.state, cri::CONTAINER_RUNNING, "{status:?}");
        }
        // What the kubelet reads for `kubectl top`: the Wasm memory the
        // container holds, and the CPU time spent in it.
        let stats: cri::ContainerStatsResponse = cri
            .expect("ContainerStats", cri::container(&web), || containerd.log())
            .await;
        let stats = stats.stats.expect("the web container's stats");
        let memory = stats.memory.and_then(|m| m.usage_bytes).map(|v| v.value);
        let cpu = stats
            .cpu
            .and_then(|c| c.usage_core_nano_seconds)
            .map(|v| v.value);
        assert!(
            memory.is_some_and(|bytes| bytes > 0) && cpu.is_some_and(|nanos| nanos > 0),
            "memory {memory:?}, cpu {cpu:?}"
        );

        // Both containers are guests of one shim process: the sandbox's.
        let shims = containerd.shims();
        assert_eq!(shims.len(), 1, "shims of the pod: {shims:?}");
        // They run in the pod's walled process (its helper, the shim's
        // child, and PID 1 of the pod's namespaces, the helper's child),
        // behind the OS wall. The shim's other children, if any, compile
        // programs outside the wall (Cranelift's tier, in the background).
        let descendants = support::descendants(shims[0]);
        let named = |pid: &u32| support::process_name(*pid);
        walled = support::walled_processes(shims[0]);
        assert_eq!(
            walled.len(),
            2,
            "the shim's descendants: {:?}",
            descendants
                .iter()
                .map(|pid| (pid, named(pid)))
                .collect::<Vec<_>>()
        );
        assert!(
            descendants
                .iter()
                .all(|pid| walled.contains(pid) || named(pid) == "wpod compile"),
            "the shim's descendants: {:?}",
            descendants
                .iter()
                .map(|pid| (pid, named(pid)))
                .collect::<Vec<_>>()
        );
        // The pod's cgroup is the sandbox's (`cgroupsPath`: the kubelet's
        // cgroup of the pod, then the sandbox's id), in every hierarchy.
        pod_cgroup = format!("{}/{sandbox_id}", cgroup_parent.path);
        for pid in &walled {
            let wall = support::wall_of(*pid);
            assert!(
                wall.iter().all(|(_, holds)| *holds),
                "process {pid}: {wall:#?}"
            );
            let cgroups = support::cgroups_of(*pid);
            assert!(
                cgroups.contains(&pod_cgroup),
                "process {pid} is not in {pod_cgroup}: {cgroups:?}"
            );
        }
        let walled_pss: u64 = walled.iter().filter_map(|pid| pss_kib(*pid)).sum();
        eprintln!(
            "figures: RunPodSandbox to the second container running: {:.1} ms; Pss with both containers running: shim {} KiB, its walled pod process {} KiB",
            second_running.as_secs_f64() * 1000.0,
            pss_kib(shims[0]).unwrap_or(0),
            walled_pss
        );

        // As the kubelet stops a container: SIGTERM, which asks the guest to
        // end (`/run/wpod/terminating`; `sleep` does not look), then after
        // the grace period SIGKILL, which interrupts it: exit 137.
        let stopping = Instant::now();
        let stop = cri::StopContainerRequest {
            container_id: client.clone(),
            timeout: 1,
        };
        let _: cri::Empty = cri.expect("StopContainer", stop, || containerd.log()).await;
        let status = cri.container_status(&client).await;
        assert_eq!(
            (status.state, status.exit_code),
            (cri::CONTAINER_EXITED, 137),
            "{status:?}"
        );
        assert!(
            stopping.elapsed() < Duration::from_secs(20),
            "{:?}",
            stopping.elapsed()
        );

        // As the kubelet removes a pod: the sandbox stopped (and with it
        // its containers), then removed.
        let _: cri::Empty = cri
            .expect("StopPodSandbox", cri::sandbox(&sandbox_id), || {
                containerd.log()
            })
            .await;
        for id in [&web, &client] {
            let status = cri.container_status(id).await;
            assert_eq!(status.state, cri::CONTAINER_EXITED, "{status:?}");
        }
        let _: cri::Empty = cri
            .expect("RemovePodSandbox", cri::sandbox(&sandbox_id), || {
                containerd.log()
            })
            .await;

        // Nothing left: no sandbox, no container, no shim, no mount.
        let sandboxes: cri::ListPodSandboxResponse = cri
            .call("ListPodSandbox", cri::Empty {})
            .await
            .expect("ListPodSandbox");
        assert_eq!(sandboxes.items, vec![]);
        let containers: cri::ListContainersResponse = cri
            .call("ListContainers", cri::Empty {})
            .await
            .expect("ListContainers");
        assert_eq!(containers.containers, vec![]);
    });
    containerd.assert_nothing_left();
    // Nor the pod's walled process, nor its cgroup.
    for pid in walled {
        assert!(
            !Path::new("/proc").join(pid.to_string()).exists(),
            "the pod's process {pid} is left"
        );
    }
    let left: Vec<_> = cgroup_parent
        .dirs()
        .into_iter()
        .map(|dir| dir.join(pod_cgroup.rsplit('/').next().unwrap_or_default()))
        .filter(|dir| dir.exists())
        .collect();
    assert_eq!(
        left,
        Vec::<std::path::PathBuf>::new(),
        "the pod's cgroup is left"
    );
}

/// The image of the CRI tests' containers: the `box` guest as `/bin/sh` and
/// `/bin/httpd` (its applets), `http_get`, and the HTTP component
/// `http_proxy`.
const TOOLS: &str = "docker.io/wpod-test/tools:latest";

/// Imports, for the CRI plugin (namespace `k8s.io`), the sandbox image it
/// is configured with (`pause`, which the shim never reads) and [`TOOLS`].
fn import_tools(containerd: &Containerd) {
    let pause = oci_image(
        "docker.io/wpod-test/pause:latest",
        &[("/pause", b"the sandbox runs nothing\n".to_vec())],
        &["/pause"],
    );
    containerd.import("k8s.io", &pause, "pause");
    let shell = std::fs::read(component("box")).expect("the box guest");
    let http_get = std::fs::read(component("http_get")).expect("the http_get guest");
    let http_proxy = std::fs::read(component("http_proxy")).expect("the http_proxy guest");
    let tools = oci_image(
        TOOLS,
        &[
            ("/bin/sh", shell.clone()),
            ("/bin/httpd", shell),
            ("/bin/http_get", http_get),
            ("/bin/http_proxy", http_proxy),
        ],
        &["/bin/sh"],
    );
    containerd.import("k8s.io", &tools, TOOLS);
}

/// Imports an image holding the wasip2 hello at `/hello.wasm`, its
/// entrypoint, into containerd's `default` namespace; returns its name.
fn import_hello(containerd: &Containerd) -> &'static str {
    let hello = std::fs::read(component("hello")).expect("the hello guest");
    let image = "docker.io/wpod-test/hello:latest";
    containerd.import(
        "default",
        &oci_image(image, &[("/hello.wasm", hello)], &["/hello.wasm"]),
        image,
    );
    image
}

/// Runs `future` on a tokio runtime made for it (the CRI client's).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A pod with a network of its own, as most pods have: the CRI plugin makes
/// a network namespace and asks CNI (a bridge, here) for an address; the
/// shim joins that namespace, so a container serves on the pod's address
/// and its localhost there, and not on the host's; an HTTP component is
/// served on the port the kubelet's annotation gives. After removal the
/// namespace is gone.
#[test]
fn a_pod_on_a_cni_network_serves_on_its_own_address() {
    let bridge = format!("wpodtest{}", std::process::id() % 100_000);
    let (containerd, _bridge) = Containerd::start_with_cni(&bridge, "10.247.31.0/24");
    import_tools(&containerd);
    let logs = containerd.dir.join("logs");
    let port = free_port();
    block_on(async {
        let mut cri = Cri::connect(containerd.address.clone()).await;
        let sandbox_config = cri::sandbox_config("cni", &logs, cri::NAMESPACE_POD);
        let sandbox_id = cri
            .run_sandbox(&sandbox_config)
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", containerd.log()));
        let command = vec![
            "/bin/httpd".to_owned(),
            "-q".into(),
            "-p".into(),
            port.to_string(),
            "-h".into(),
            "/".into(),
        ];
        let web = cri::container_config("web", TOOLS, command, vec![], cri::NAMESPACE_POD);
        cri.start_container(&sandbox_id, &sandbox_config, web)
            .await
            .unwrap_or_else(|e| panic!("container web: {e}\n{}", containerd.log()));
        // An HTTP component, served on its port: the kubelet gives the
        // container's `ports` as an annotation, which the CRI plugin passes
        // on for this runtime (`container_annotations`).
        let api_port = free_port();
        let mut api = cri::container_config(
            "api",
            TOOLS,
            vec!["/bin/http_proxy".into()],
            vec![],
            cri::NAMESPACE_POD,
        );
        api.annotations.insert(
            "io.kubernetes.container.ports".into(),
            format!(r#"[{{"name":"http","containerPort":{api_port},"protocol":"TCP"}}]"#),
        );
        cri.start_container(&sandbox_id, &sandbox_config, api)
            .await
            .unwrap_or_else(|e| panic!("container api: {e}\n{}", containerd.log()));
        let status: cri::PodSandboxStatusResponse = cri
            .expect("PodSandboxStatus", cri::sandbox(&sandbox_id), || {
                containerd.log()
            })
            .await;
        let ip: std::net::IpAddr = status
            .status
            .and_then(|status| status.network)
            .and_then(|network| network.ip.parse().ok())
            .expect("the pod's address");
        let netns = containerd.sandbox_netns(&sandbox_id);
        // The pod's walled process keeps the pod's network namespace (the
        // one CNI set up, which the shim joined): the OS wall makes none.
        let shims = containerd.shims();
        assert_eq!(shims.len(), 1, "{shims:?}");
        let walled = support::walled_processes(shims[0]);
        assert_eq!(walled.len(), 2, "the pod's processes: {walled:?}");
        let pod_network = std::fs::metadata(&netns)
            .map(|m| m.ino())
            .expect("the pod's netns");
        for pid in &walled {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("its netns");
            assert_eq!(
                theirs.display().to_string(),
                format!("net:[{pod_network}]"),
                "process {pid}"
            );
            assert!(support::wall_of(*pid).iter().all(|(_, holds)| *holds));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for address in [
            std::net::SocketAddr::new(ip, port),
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        ] {
            while !support::connects_in(&netns, address) {
                assert!(
                    Instant::now() < deadline,
                    "nothing serves on {address} in the pod's network\n{}",
                    containerd.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let api = std::net::SocketAddr::new(ip, api_port);
        let body = loop {
            if let Some(body) = support::http_get_in(&netns, api, "/") {
                break body;
            }
            assert!(
                Instant::now() < deadline,
                "the HTTP component does not answer on {api}\n{}",
                containerd.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(body.trim_end(), "hello from http_proxy");
        assert!(
            std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(500)
            )
            .is_err(),
            "the pod's server is reachable on the host's localhost"
        );
        cri.stop_and_remove(&sandbox_id)
            .await
            .unwrap_or_else(|e| panic!("removing the sandbox: {e}\n{}", containerd.log()));
        assert!(!netns.exists(), "{} is left", netns.display());
    });
    containerd.assert_nothing_left();
}

/// A task whose spec names a network namespace to join (as the CRI plugin
/// names the pod's, made by CNI) runs in it: the shim joined it before any
/// thread started, so a guest's server is reached there and not from the
/// host's network.
#[test]
fn a_task_runs_in_the_network_namespace_its_spec_names() {
    let containerd = Containerd::start();
    let namespace = support::NetworkNamespace::new(&format!("wpod-shim-{}", std::process::id()));
    let shell = std::fs::read(component("box")).expect("the box guest");
    let image = "docker.io/wpod-test/httpd:latest";
    containerd.import(
        "default",
        &oci_image(image, &[("/bin/httpd", shell)], &["/bin/httpd"]),
        image,
    );
    let port = free_port();
    let with_ns = format!("network:{}", namespace.path.display());
    let port_arg = port.to_string();
    let output = containerd.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--with-ns",
        &with_ns,
        image,
        "web-ns",
        "/bin/httpd",
        "-q",
        "-p",
        &port_arg,
        "-a",
        "127.0.0.1",
        "-h",
        "/",
    ]);
    assert!(
        output.status.success(),
        "ctr run -d: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        containerd.log()
    );
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !namespace.connects(address) {
        assert!(
            Instant::now() < deadline,
            "the guest's server is not reachable in its network namespace\n{}",
            containerd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_err(),
        "the guest's server is reachable from the host's network"
    );
    assert_eq!(containerd.shims().len(), 1);
    for args in [
        &["tasks", "kill", "-s", "SIGKILL", "web-ns"][..],
        &["tasks", "delete", "web-ns"][..],
    ] {
        // `delete` right after `kill` may find the task still stopping.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let output = containerd.ctr(args);
            if output.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ctr {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        containerd
            .ctr(&["containers", "rm", "web-ns"])
            .status
            .success()
    );
    containerd.assert_nothing_left();
}

/// A container whose program is not in its image does not start, and the
/// error that comes back through containerd names the program and where it
/// was looked for; nothing is left.
#[test]
fn a_missing_program_is_refused_by_name() {
    let containerd = Containerd::start();
    let image = import_hello(&containerd);
    let output = containerd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        image,
        "missing",
        "/bin/nothing",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "ctr run succeeded: {stderr}");
    assert!(
        stderr.contains("/bin/nothing"),
        "the error does not name the program: {stderr}"
    );
    // The task ended (127, as `wpod run` ends for a program not found), so
    // `ctr run --rm` could delete it and its container.
    let listed = containerd.ctr(&["containers", "ls", "-q"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "");
    containerd.assert_nothing_left();
}

/// Runs `/bin/sh -c SCRIPT` with `ctr run -d` as task `id`, in an image
/// holding the `box` guest as `/bin/sh`, and returns the shim's PID and its
/// pod's walled processes (the helper and PID 1 of the pod's namespaces)
/// once the container runs.
fn run_detached(containerd: &Containerd, id: &str, script: &str) -> (u32, Vec<u32>) {
    let shell = std::fs::read(component("box")).expect("the box guest");
    let image = "docker.io/wpod-test/box:latest";
    containerd.import(
        "default",
        &oci_image(image, &[("/bin/sh", shell)], &["/bin/sh"]),
        image,
    );
    let output = containerd.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        image,
        id,
        "/bin/sh",
        "-c",
        script,
    ]);
    assert!(
        output.status.success(),
        "ctr run -d: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        containerd.log()
    );
    let shims = containerd.shims();
    assert_eq!(shims.len(), 1, "{shims:?}");
    let walled = support::walled_processes(shims[0]);
    assert_eq!(walled.len(), 2, "the pod's processes: {walled:?}");
    (shims[0], walled)
}

/// Waits (up to 20 s) until `ready` holds, failing with `what` and
/// containerd's log.
fn wait_until(containerd: &Containerd, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} within 20 s\n{}",
            containerd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// When the pod's walled process dies (killed here, as the OOM killer of a
/// cgroup would kill it), its containers end with 137, as processes killed
/// with their pod's do, and the shim cleans up after them: the task is
/// deleted, its shim ends, nothing is left.
#[test]
fn a_killed_pod_process_ends_its_containers_with_137() {
    let containerd = Containerd::start();
    let (_, walled) = run_detached(&containerd, "sleeper", "sleep infinity");
    let pid_one = walled
        .iter()
        .copied()
        .find(|pid| support::process_name(*pid) != "wpod pod-init")
        .expect("PID 1 of the pod's namespaces");
    support::kill(pid_one, rustix::process::Signal::KILL);
    wait_until(&containerd, "the task did not stop", || {
        let tasks = containerd.ctr(&["tasks", "ls"]);
        String::from_utf8_lossy(&tasks.stdout)
            .lines()
            .any(|line| line.starts_with("sleeper") && line.contains("STOPPED"))
    });
    // ctr says the exit status (and exits 0).
    let deleted = containerd.ctr(&["tasks", "delete", "sleeper"]);
    let said = String::from_utf8_lossy(&deleted.stderr);
    assert!(
        deleted.status.success() && said.contains("exit code 137"),
        "ctr tasks delete: {said}"
    );
    assert!(
        containerd
            .ctr(&["containers", "rm", "sleeper"])
            .status
            .success()
    );
    containerd.assert_nothing_left();
    for pid in walled {
        assert!(
            !Path::new("/proc").join(pid.to_string()).exists(),
            "the pod's process {pid} is left"
        );
    }
}

/// A shim killed (`kill -9`) takes its pod's walled process with it, and
/// containerd's clean-up of the dead shim (its `delete`) removes the pod's
/// folder and mounts: nothing is left.
#[test]
fn a_killed_shim_takes_its_pod_process_and_leaves_nothing() {
    let containerd = Containerd::start();
    let (shim, walled) = run_detached(&containerd, "orphan", "sleep infinity");
    support::kill(shim, rustix::process::Signal::KILL);
    wait_until(
        &containerd,
        "the pod's processes outlived their shim",
        || {
            walled
                .iter()
                .all(|pid| !Path::new("/proc").join(pid.to_string()).exists())
        },
    );
    // containerd finds the shim dead, runs its `delete` and removes the
    // task; the container is then removed as usual.
    wait_until(
        &containerd,
        "containerd did not clean up the dead shim",
        || {
            containerd.ctr(&["tasks", "delete", "orphan"]);
            let tasks = containerd.ctr(&["tasks", "ls", "-q"]);
            String::from_utf8_lossy(&tasks.stdout).trim().is_empty()
        },
    );
    assert!(
        containerd
            .ctr(&["containers", "rm", "orphan"])
            .status
            .success()
    );
    containerd.wait_no_shims();
    wait_until(&containerd, "mounts are left", || {
        containerd.mounts().is_empty()
    });
    containerd.assert_no_pod_folders();
}
