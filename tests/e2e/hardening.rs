//! Hostile pods and hostile local users: each test is one attack that once
//! hurt the host, another user or a sibling container, tried again.
#![cfg(target_os = "linux")]

use crate::sandbox::{Walled, cgroups_available, wall_available};
use crate::support::{OtherUser, Workspace, current_uid, free_port, other_user};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A pod with one emptyDir: it needs a private folder in the state folder.
const EMPTY_DIR_POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: scratchy}
spec:
  restartPolicy: Never
  volumes:
  - {name: scratch, emptyDir: {}}
  containers:
  - name: app
    image: '@probe@'
    args: [write, /s/file, data]
    volumeMounts: [{name: scratch, mountPath: /s}]
";

#[test]
fn a_chatty_container_costs_no_more_than_its_log_bound() {
    if !wall_available() {
        return;
    }
    // 1 GiB without a newline. wpod once kept 10,000 pieces of 64 KiB (640
    // MiB) of it in the pod process, outside every container's limit; the
    // pod's cgroup (2 × 32Mi + 256Mi for the runtime) then killed the
    // sibling too.
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  restartPolicy: Never
  containers:
  - name: chatty
    image: '@probe@'
    args: [spew, '1073741824']
    resources: {limits: {memory: 32Mi}}
  - name: sibling
    image: '@probe@'
    args: [sleep, '2000']
    resources: {limits: {memory: 32Mi}}
",
    );
    let output = workspace
        .wpod()
        .args(["run", pod.to_str().unwrap()])
        .stdout(Stdio::null())
        .output()
        .expect("running wpod");
    let run = crate::support::Run::from(output);
    // 0: both containers completed (the sibling's line went to stdout).
    run.expect_code(0);
    assert!(
        run.stderr.contains("[chatty] spewed 1073741824"),
        "{}",
        run.stderr
    );
}

/// Runs the emptyDir pod in `workspace` as root or as `user`.
fn run_scratchy(workspace: &Workspace, user: Option<&OtherUser>) -> crate::support::Run {
    let pod = workspace.path().join("pod.yaml");
    let mut command = workspace.wpod();
    command.args(["run", pod.to_str().unwrap(), "--no-cache"]);
    let mut command = match user {
        Some(user) => user.command(&command),
        None => command,
    };
    command.output().expect("running wpod").into()
}

#[test]
fn a_state_folder_planted_by_another_user_is_refused_and_two_users_run_in_either_order() {
    let Some(user) = other_user() else {
        return;
    };
    let workspace = Workspace::new();
    workspace.pod(EMPTY_DIR_POD);
    // TMPDIR is shared as /tmp is: anyone may create entries.
    std::fs::set_permissions(workspace.tmp(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(workspace.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ours = workspace.state_dir(current_uid());

    // The other user plants a symlink where root's state folder goes...
    let trap = workspace.path().join("trap");
    std::fs::create_dir(&trap).unwrap();
    user.chown(&trap);
    std::os::unix::fs::symlink(&trap, &ours).unwrap();
    std::os::unix::fs::lchown(&ours, Some(user.uid), Some(user.gid)).unwrap();
    let run = run_scratchy(&workspace, None);
    run.expect_code(125);
    assert!(run.stderr.contains("is a symlink"), "{}", run.stderr);
    assert!(run.stderr.contains("XDG_RUNTIME_DIR"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_dir(&trap).unwrap().count(),
        0,
        "root's pod folder landed in the trap"
    );

    // ... or a folder of its own.
    std::fs::remove_file(&ours).unwrap();
    std::fs::create_dir(&ours).unwrap();
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o777)).unwrap();
    user.chown(&ours);
    let run = run_scratchy(&workspace, None);
    run.expect_code(125);
    assert!(
        run.stderr
            .contains(&format!("belongs to uid {}, not to you (uid 0)", user.uid)),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(&ours).unwrap().count(), 0);
    std::fs::remove_dir(&ours).unwrap();

    // Root, then the user, then root again, in one TMPDIR: each in a folder
    // of its own, mode 0700.
    for who in [None, Some(&user), None] {
        let run = run_scratchy(&workspace, who);
        run.expect_code(0);
        assert!(run.stdout.contains("[app] wrote /s/file"), "{run:?}");
    }
    for uid in [current_uid(), user.uid] {
        let meta = std::fs::symlink_metadata(workspace.state_dir(uid)).unwrap();
        assert!(meta.is_dir());
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), uid);
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    }
}

/// Half of the host's memory, as wpod's default ceiling computes it.
fn half_the_host() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024 / 2
}

#[test]
fn a_walled_pod_without_limits_still_has_a_memory_ceiling() {
    if !cgroups_available() {
        return;
    }
    // A pod with no limits once grew to 22 GiB of a 24 GiB host. Its cgroup
    // now holds half of the host's memory; read it from the host's side
    // rather than thrash the host to show it.
    let workspace = Workspace::new();
    let pod = Walled::start(
        &workspace,
        "apiVersion: v1
kind: Pod
metadata: {name: unlimited}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: '@probe@'
    args: [sleep, '60000']
",
        &[],
    );
    // Read from the host, /proc/PID/cgroup gives the host's path.
    let cgroup = pod.read("cgroup");
    let limit_file = cgroup
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let path = path.trim_start_matches('/');
            if controllers.is_empty() {
                Some(Path::new("/sys/fs/cgroup").join(path).join("memory.max"))
            } else if controllers.split(',').any(|c| c == "memory") {
                Some(
                    Path::new("/sys/fs/cgroup/memory")
                        .join(path)
                        .join("memory.limit_in_bytes"),
                )
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("no memory cgroup in {cgroup}"));
    let limit: u64 = std::fs::read_to_string(&limit_file)
        .unwrap_or_else(|e| panic!("{}: {e}", limit_file.display()))
        .trim()
        .parse()
        .unwrap();
    // The kernel rounds the limit down to a page.
    assert_eq!(
        limit,
        half_the_host() / 4096 * 4096,
        "{}",
        limit_file.display()
    );
    let (code, output) = pod.terminate();
    assert_eq!(code, 143, "{output}");
}

#[test]
fn behind_the_wall_the_compile_cache_is_read_only_and_the_supervisor_fills_it() {
    if !wall_available() {
        return;
    }
    // The pod process loads and runs precompiled code from the cache: a pod
    // that could write there could plant code for every later pod.
    let workspace = Workspace::new();
    let cache = workspace.path().join("fresh-cache");
    let mut command = workspace.wpod();
    command.env("WPOD_CACHE_DIR", &cache);
    let pod = Walled::start_with(
        &workspace,
        "apiVersion: v1
kind: Pod
metadata: {name: cached}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: '@probe@'
    args: [sleep, '60000']
",
        &[],
        command,
    );
    let mountinfo = pod.read("mountinfo");
    let mount = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(cache.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no cache mount:\n{mountinfo}"));
    let options = mount.split(' ').nth(5).unwrap();
    assert!(options.starts_with("ro"), "{mount}");
    assert!(!options.contains("noexec"), "{mount}");
    // Compiled before the pod process started: the entry is there.
    let entries = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    assert_eq!(entries, 1, "cache entries in {}", cache.display());
    let (code, output) = pod.terminate();
    assert_eq!(code, 143, "{output}");
    assert!(
        !output.contains("could not write the compile cache"),
        "{output}"
    );
}

#[test]
fn a_descriptor_hog_cannot_starve_its_sibling() {
    // One container opening files in a loop once took every descriptor of
    // the pod's process: its sibling's writes then failed with EIO. Each
    // container now holds at most its own limit (a small one here).
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata:
  name: hog
  annotations: {wpod.dev/descriptor-limit: '300'}
spec:
  restartPolicy: Never
  volumes:
  - {name: d, emptyDir: {}}
  containers:
  - name: hog
    image: '@probe@'
    args: [open-files, /d, '1000000']
    volumeMounts: [{name: d, mountPath: /d}]
  - name: hog-p1
    image: '@probe.p1@'
    args: [open-files, /d, '1000000']
    volumeMounts: [{name: d, mountPath: /d}]
  - name: sibling
    image: busybox
    command: [sh, -c, 'sleep 1; echo still here > /d/sibling; cat /d/sibling']
    volumeMounts: [{name: d, mountPath: /d}]
",
        &["-o", "json", "--isolation=none"],
    );
    let status = run.json();
    let sibling = &crate::support::container(&status, "sibling")["state"]["terminated"];
    assert_eq!(sibling["reason"], "Completed", "{status:#}");
    assert!(
        run.stderr.contains("[sibling] still here"),
        "{}",
        run.stderr
    );
    for hog in ["hog", "hog-p1"] {
        let hog = &crate::support::container(&status, hog)["state"]["terminated"];
        let message = hog["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("more WASI resources (files, sockets, streams) than its limit"),
            "{status:#}"
        );
    }
    run.expect_code(134);
}

#[test]
fn an_empty_dir_on_disk_past_its_size_limit_evicts_the_pod() {
    // A guest once wrote 200 MB into a 20Mi emptyDir on disk. As the kubelet
    // does, the pod is now evicted, with and without the OS wall.
    for isolation in ["--isolation=none", "--isolation=auto"] {
        let workspace = Workspace::new();
        let run = workspace.run_pod(
            "apiVersion: v1
kind: Pod
metadata: {name: filler}
spec:
  restartPolicy: Never
  volumes:
  - {name: scratch, emptyDir: {sizeLimit: 20Mi}}
  containers:
  - name: filler
    image: '@probe@'
    args: [fill, /s/big, '200000000']
    volumeMounts: [{name: scratch, mountPath: /s}]
  - name: sibling
    image: '@probe@'
    args: [sleep, '60000']
",
            &["-o", "json", isolation],
        );
        run.expect_code(137);
        let status = run.json();
        assert_eq!(status["reason"], "Evicted", "{isolation}: {status:#}");
        assert!(
            status["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Usage of EmptyDir volume \"scratch\" exceeds the limit \"20Mi\""),
            "{isolation}: {status:#}"
        );
        let sibling = &crate::support::container(&status, "sibling")["state"]["terminated"];
        assert!(
            sibling["message"]
                .as_str()
                .unwrap_or_default()
                .contains("the pod was evicted"),
            "{isolation}: {status:#}"
        );
        assert!(
            workspace.leftovers().is_empty(),
            "{:?}",
            workspace.leftovers()
        );
    }
}

/// A port nobody listens on now.
/// The ports listening in the network namespace whose `/proc/PID/net/tcp`
/// (and `tcp6`) is `table`.
fn listening_ports(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is `HEXIP:HEXPORT`; state 0A is LISTEN.
            (fields.get(3) == Some(&"0A"))
                .then(|| fields.get(1)?.rsplit(':').next())
                .flatten()
                .and_then(|port| u16::from_str_radix(port, 16).ok())
        })
        .collect()
}

fn assert_own_network_namespace(pod: &Walled) {
    let inside = std::fs::read_link(pod.proc("ns/net")).unwrap();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(inside, host, "the pod shares the host's network namespace");
}

/// Polls `check` every 20 ms for up to a minute (the first walled start
/// compiles its programs first).
fn within_a_minute<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get(address: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn a_host_port_pod_has_a_network_namespace_of_its_own_and_is_still_reachable() {
    if !wall_available() {
        return;
    }
    // wpod once left such pods in the host's network namespace, where every
    // port the pod bound was on the host's loopback. Now: the published
    // port is reached from the host and from a sibling on localhost; the
    // unpublished one (81) exists only in the pod's namespace.
    let workspace = Workspace::new();
    std::fs::create_dir_all(workspace.path().join("www")).unwrap();
    std::fs::write(workspace.path().join("www/index.html"), "published").unwrap();
    let port = free_port();
    let yaml = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: published}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: www, hostPath: {{path: '@ws@/www'}}}}
  containers:
  - name: web
    image: '@httpd@'
    args: [-p, '80', -h, /www]
    ports: [{{containerPort: 80, hostPort: {port}}}]
    volumeMounts: [{{name: www, mountPath: /www}}]
  - name: hidden
    image: '@httpd@'
    args: [-p, '81', -h, /www]
    volumeMounts: [{{name: www, mountPath: /www}}]
  - name: sibling
    image: '@http_get@'
    args: [--retry-ms, '60000', 'http://localhost:80/']
"
    );
    let mut pod = Walled::start(&workspace, &yaml, &["--isolation=required"]);
    assert_own_network_namespace(&pod);
    let published = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let response = within_a_minute(|| http_get(published))
        .expect("the published port answers from the host within a minute");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("published"), "{response}");
    // The hidden server's port, as the pod's namespace has it.
    let inside = within_a_minute(|| {
        let ports = listening_ports(&pod.read("net/tcp"));
        (!ports.is_empty()).then_some(ports)
    })
    .expect("a listener in the pod's namespace within a minute");
    assert!(
        !inside.contains(&port),
        "the published port must listen in the host's namespace, not the pod's"
    );
    let host = listening_ports(&std::fs::read_to_string("/proc/self/net/tcp").unwrap());
    for hidden in &inside {
        assert!(
            !host.contains(hidden),
            "port {hidden}, bound in the pod, listens on the host too"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *hidden)).is_err(),
            "the pod's unpublished port {hidden} is reachable from the host"
        );
    }
    let sibling = pod.wait_for_output("[sibling] published", Duration::from_secs(60));
    let (_, output) = pod.terminate();
    assert!(
        sibling,
        "the sibling reached the published port on localhost:\n{output}"
    );
}

#[test]
fn an_egress_pod_has_a_network_namespace_of_its_own_and_still_reaches_out() {
    if !wall_available() || !crate::support::second_loopback_address() {
        return;
    }
    // The "outside": a server on the host's 127.0.0.2, allowed by the pod's
    // policy; another port there is not.
    let outside = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let allowed = outside.local_addr().unwrap();
    let refused = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let requests = serve_http(outside, "outside");
    // And a UDP echo server there, the same port allowed.
    let echo = std::net::UdpSocket::bind(allowed).unwrap();
    std::thread::spawn(move || {
        let mut packet = [0u8; 1024];
        while let Ok((len, sender)) = echo.recv_from(&mut packet) {
            let _ = echo.send_to(&packet[..len], sender);
        }
    });
    let workspace = Workspace::new();
    let yaml = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: reaching-out
  annotations: {{wpod.dev/egress: '{allowed}'}}
spec:
  restartPolicy: Never
  containers:
  - name: fetch
    image: '@http_get@'
    args: ['http://{allowed}/']
  - name: denied
    image: '@probe@'
    args: [connect, '{refused}']
  - name: datagrams
    image: '@udp_echo@'
    args: [send, '{allowed}', hello, --retry-ms, '60000']
  - name: datagrams-denied
    image: '@udp_echo@'
    args: [send, '{refused}', hello]
  - name: stays
    image: '@probe@'
    args: [sleep, '60000']
",
        refused = refused.local_addr().unwrap()
    );
    let mut pod = Walled::start(&workspace, &yaml, &["--isolation=required"]);
    assert_own_network_namespace(&pod);
    requests
        .recv_timeout(Duration::from_secs(60))
        .expect("the pod's request reached the outside server within a minute");
    let echoed = pod.wait_for_output("[datagrams] reply: hello", Duration::from_secs(60));
    let (_, output) = pod.terminate();
    assert!(echoed, "UDP to the outside, allowed, and back:\n{output}");
    assert!(output.contains("[fetch] outside"), "{output}");
    assert!(
        output.contains("[datagrams-denied] udp_echo: send to")
            && output.contains("PermissionDenied"),
        "{output}"
    );
    assert!(
        output.contains("[denied] connect failed: PermissionDenied"),
        "{output}"
    );
}

/// Answers every HTTP request on `listener` with `body`, in a thread; each
/// request served is told on the channel returned.
fn serve_http(
    listener: std::net::TcpListener,
    body: &'static str,
) -> std::sync::mpsc::Receiver<()> {
    let (served, requests) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = served.send(());
        }
    });
    requests
}

/// A DNS server for the tests on `address`:53 (UDP): every A question is
/// answered with `answer`, every other question with no records.
fn fake_dns_server(socket: std::net::UdpSocket, answer: std::net::Ipv4Addr) {
    std::thread::spawn(move || {
        let mut packet = [0u8; 512];
        while let Ok((len, client)) = socket.recv_from(&mut packet) {
            if len < 12 {
                continue;
            }
            // The question: labels up to a zero byte, then type and class.
            let mut end = 12;
            while end < len && packet[end] != 0 {
                end += usize::from(packet[end]) + 1;
            }
            let question_end = end + 5;
            if question_end > len {
                continue;
            }
            let is_a = packet[end + 1..end + 3] == [0, 1];
            let mut reply = packet[..question_end].to_vec();
            reply[2] = 0x81; // a response, recursion desired
            reply[3] = 0x80; // recursion available, no error
            reply[6..8].copy_from_slice(&[0, u8::from(is_a)]); // answers
            reply[8..12].copy_from_slice(&[0, 0, 0, 0]);
            if is_a {
                // The name (a pointer to the question's), A, IN, a TTL of
                // 60 s, four bytes of address.
                reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                reply.extend_from_slice(&answer.octets());
            }
            let _ = socket.send_to(&reply, client);
        }
    });
}

#[test]
fn a_pod_in_its_own_network_namespace_resolves_names_through_its_dns_config() {
    if !wall_available() || !crate::support::second_loopback_address() {
        return;
    }
    // The resolver of `dnsConfig` on 127.0.0.2:53, which only the test's
    // own DNS server answers; the pod reaches it through the relay in its
    // namespace, then the named server through its egress policy.
    let Ok(dns) = std::net::UdpSocket::bind("127.0.0.2:53") else {
        eprintln!("skipped: binding 127.0.0.2:53 needs root");
        return;
    };
    fake_dns_server(dns, std::net::Ipv4Addr::new(127, 0, 0, 2));
    let server = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = server.local_addr().unwrap().port();
    serve_http(server, "named");
    let workspace = Workspace::new();
    let yaml = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: naming
  annotations: {{wpod.dev/egress: '127.0.0.2:{port}'}}
spec:
  restartPolicy: Never
  dnsPolicy: None
  dnsConfig: {{nameservers: [127.0.0.2], searches: [test]}}
  containers:
  - name: fetch
    image: '@http_get@'
    args: ['http://outside.test:{port}/']
  - name: local
    image: '@probe@'
    args: [resolve, localhost]
  - name: stays
    image: '@probe@'
    args: [sleep, '60000']
"
    );
    let mut pod = Walled::start(&workspace, &yaml, &["--isolation=required"]);
    assert_own_network_namespace(&pod);
    let fetched = pod.wait_for_output("[fetch] named", Duration::from_secs(60));
    // /etc/hosts before DNS, as on the host (the test's DNS server would
    // answer 127.0.0.2 for localhost too).
    let local = pod.wait_for_output("[local] 127.0.0.1", Duration::from_secs(60));
    let (_, output) = pod.terminate();
    assert!(fetched, "{output}");
    assert!(local && !output.contains("[local] 127.0.0.2"), "{output}");
}

#[test]
fn two_users_detached_pods_do_not_see_each_other() {
    let Some(user) = other_user() else {
        return;
    };
    let workspace = Workspace::new();
    std::fs::set_permissions(workspace.tmp(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(workspace.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sleeper = |name: &str| {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: '@probe@'\n    args: [sleep, '600000']\n"
        );
        let path = workspace.write(
            &format!("{name}.yaml"),
            crate::support::expand(&yaml, workspace.path()),
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    };
    let as_user = |args: &[&str]| -> crate::support::Run {
        let mut command = workspace.wpod();
        command.args(args);
        user.command(&command)
            .output()
            .expect("running wpod")
            .into()
    };
    let ours = sleeper("roots");
    let theirs = sleeper("theirs");
    workspace
        .run(&["run", "-d", ours.to_str().unwrap()])
        .expect_code(0);
    as_user(&["run", "-d", theirs.to_str().unwrap()]).expect_code(0);

    let root_sees = workspace.run(&["ps", "-a"]);
    assert!(
        root_sees.stdout.contains("roots") && !root_sees.stdout.contains("theirs"),
        "{root_sees:?}"
    );
    let user_sees = as_user(&["ps", "-a"]);
    assert!(
        user_sees.stdout.contains("theirs") && !user_sees.stdout.contains("roots"),
        "{user_sees:?}"
    );
    // Neither can reach the other's pod by name.
    let stop = as_user(&["stop", "-t", "0", "roots"]);
    stop.expect_code(125);
    assert!(stop.stderr.contains("no detached pod `roots`"), "{stop:?}");
    workspace.run(&["logs", "theirs"]).expect_code(125);

    workspace.run(&["rm", "-f", "roots"]).expect_code(0);
    as_user(&["rm", "-f", "theirs"]).expect_code(0);
    assert!(!workspace.run(&["ps", "-a"]).stdout.contains("roots"));
    assert!(!as_user(&["ps", "-a"]).stdout.contains("theirs"));
}
