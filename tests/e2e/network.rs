//! The pod's network, with real traffic on loopback: containers meet on
//! localhost, every pod has its own port space, hostPort publishes the
//! guest's own socket, egress follows the policy.

use crate::support::{component, free_port, guests};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;
use wpod::{
    ContainerSpec, PodEvent, PodHandle, PodOptions, PodSpec, RestartPolicy, Runtime, RuntimeConfig,
};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(crate::support::cache_dir()),
        wasip3: false,
        compiler: wpod::CompilerChoice::Auto,
    })
    .unwrap()
}

fn options() -> PodOptions {
    PodOptions {
        image_path: wpod::ImagePath {
            roots: vec![guests().images.clone()],
        },
        state_dir: tempfile::tempdir().unwrap().keep(),
        ..PodOptions::default()
    }
}

fn guest(name: &str) -> String {
    component(name).to_str().unwrap().to_owned()
}

/// A web root holding `index.html` with `text`.
fn web_root(text: &str) -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::write(dir.join("index.html"), text).unwrap();
    dir
}

fn server() -> ContainerSpec {
    ContainerSpec::new("server", guest("httpd"))
        .args(["-p", "80", "-h", "/www"])
        .mount("www", "/www", true)
}

fn pod_with_server(name: &str, root: &std::path::Path) -> wpod::PodBuilder {
    PodSpec::builder(name)
        .host_path("www", root, wpod::HostPathType::Directory)
        .container(server())
        .restart_policy(RestartPolicy::Never)
}

/// Waits for `container` to exit and returns its exit code.
async fn exit_of(handle: &mut PodHandle, container: &str) -> i32 {
    let wait = async {
        while let Some(event) = handle.next_event().await {
            if let PodEvent::ContainerExited {
                container: name,
                termination,
            } = event
                && name == container
            {
                return termination.exit_code;
            }
        }
        panic!("the pod ended before {container} exited");
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("container did not exit in 30 s")
}

/// Waits until `container` has printed a line containing `text`.
async fn printed(handle: &PodHandle, container: &str, text: &str) {
    let wait = async {
        while !handle.logs(container).iter().any(|l| l.contains(text)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{container} never printed {text:?}: {:?}",
                handle.logs(container)
            )
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_meet_on_localhost() {
    let root = web_root("served inside the pod");
    // An IPv4 listener is reached over IPv4, an IPv6 one over IPv6, as in a
    // pod's network namespace.
    for (listen, url) in [
        ("0.0.0.0", "http://localhost:80/"),
        ("127.0.0.1", "http://127.0.0.1/"),
        ("::", "http://[::1]:80/"),
    ] {
        let server = ContainerSpec::new("server", guest("httpd"))
            .args(["-p", "80", "-a", listen, "-h", "/www"])
            .mount("www", "/www", true);
        let pod = PodSpec::builder("meet")
            .host_path("www", &root, wpod::HostPathType::Directory)
            .container(server)
            .restart_policy(RestartPolicy::Never)
            .container(ContainerSpec::new("client", guest("http_get")).args([
                "--retry-ms",
                "5000",
                url,
            ]))
            .build()
            .unwrap();
        let mut handle = runtime().start(pod, options()).await.unwrap();
        assert_eq!(
            exit_of(&mut handle, "client").await,
            0,
            "{url}: {:?} / {:?}",
            handle.logs("client"),
            handle.logs("server")
        );
        assert_eq!(handle.logs("client"), ["served inside the pod"], "{url}");
        handle.stop();
        handle.wait().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_listen_on_the_same_port_and_cannot_see_each_other() {
    let runtime = runtime();
    let (a, b) = (web_root("pod a"), web_root("pod b"));
    let mut pod_a = runtime
        .start(pod_with_server("a", &a).build().unwrap(), options())
        .await
        .unwrap();
    let mut pod_b = runtime
        .start(pod_with_server("b", &b).build().unwrap(), options())
        .await
        .unwrap();
    printed(&pod_a, "server", "listening on 0.0.0.0:80").await;
    printed(&pod_b, "server", "listening on 0.0.0.0:80").await;
    // A third pod has no listener of its own on 80: localhost:80 is refused.
    let lonely = PodSpec::builder("c")
        .container(ContainerSpec::new("client", guest("http_get")).args(["http://127.0.0.1:80/"]))
        .restart_policy(RestartPolicy::Never)
        .build()
        .unwrap();
    let status = runtime.run(lonely, options()).await.unwrap();
    // http_get exits 7, curl's "couldn't connect".
    assert_eq!(
        status.container_statuses[0].terminated().unwrap().exit_code,
        7
    );
    // Both servers are still running, each on "its" port 80.
    assert!(
        pod_a.status().phase == wpod::PodPhase::Running
            && pod_b.status().phase == wpod::PodPhase::Running
    );
    pod_a.stop();
    pod_b.stop();
    let _ = (
        exit_of(&mut pod_a, "server").await,
        exit_of(&mut pod_b, "server").await,
    );
}

/// A port nobody listens on now.
fn http_get(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_reaches_the_guest_from_the_host() {
    let port = free_port();
    let root = web_root("published");
    let pod = PodSpec::builder("published")
        .host_path("www", &root, wpod::HostPathType::Directory)
        .container(server().host_port(80, port))
        .restart_policy(RestartPolicy::Never)
        .build()
        .unwrap();
    let handle = runtime().start(pod, options()).await.unwrap();
    printed(&handle, "server", "listening on 0.0.0.0:80").await;
    let response = tokio::task::spawn_blocking(move || http_get(port))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("published"), "{response}");
    handle.stop();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_in_use_fails_before_any_container_starts() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut spec = ContainerSpec::new("server", guest("hello")).host_port(80, port);
    spec.ports[0].host_ip = Some("127.0.0.1".parse().unwrap());
    let pod = PodSpec::builder("busy")
        .container(spec)
        .restart_policy(RestartPolicy::Never)
        .build()
        .unwrap();
    let error = runtime().start(pod, options()).await.unwrap_err();
    assert!(matches!(error, wpod::Error::Port { .. }), "{error}");
    // The OS's words for EADDRINUSE differ; the field and address do not.
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "spec.containers[0].ports[0].hostPort: hostPort 127.0.0.1:{port}: "
        )),
        "{text}"
    );
    assert!(
        text.ends_with("free the port or choose another hostPort"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_is_denied_by_default_and_allowed_by_policy() {
    if !crate::support::second_loopback_address() {
        return;
    }
    // A service on the host's loopback, outside the pod's localhost.
    let service = TcpListener::bind("127.0.0.2:0").unwrap();
    let address = service.local_addr().unwrap();
    let probe = || {
        PodSpec::builder("egress")
            .container(
                ContainerSpec::new("app", guest("probe")).args(["connect", &address.to_string()]),
            )
            .restart_policy(RestartPolicy::Never)
    };

    let mut handle = runtime()
        .start(probe().build().unwrap(), options())
        .await
        .unwrap();
    assert_eq!(exit_of(&mut handle, "app").await, 1);
    assert!(
        handle
            .logs("app")
            .iter()
            .any(|l| l.contains("connect failed: PermissionDenied")),
        "{:?}",
        handle.logs("app")
    );
    handle.wait().await;

    let allowed = probe()
        .annotation("wpod.dev/egress", "127.0.0.2/32")
        .build()
        .unwrap();
    let mut handle = runtime().start(allowed, options()).await.unwrap();
    assert_eq!(
        exit_of(&mut handle, "app").await,
        0,
        "{:?}",
        handle.logs("app")
    );
    handle.wait().await;

    let by_option = PodOptions {
        egress: wpod::EgressPolicy::parse(&address.to_string()).unwrap(),
        ..options()
    };
    let status = runtime()
        .run(probe().build().unwrap(), by_option)
        .await
        .unwrap();
    assert_eq!(
        status.container_statuses[0].terminated().unwrap().exit_code,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_echo_between_containers() {
    let port = free_port().to_string();
    let pod = PodSpec::builder("udp")
        .container(ContainerSpec::new("echo", guest("udp_echo")).args(["serve", &port]))
        .container(ContainerSpec::new("client", guest("udp_echo")).args([
            "send",
            &format!("127.0.0.1:{port}"),
            "ping",
            "--retry-ms",
            "5000",
        ]))
        .restart_policy(RestartPolicy::Never)
        .build()
        .unwrap();
    let mut handle = runtime().start(pod, options()).await.unwrap();
    assert_eq!(
        exit_of(&mut handle, "client").await,
        0,
        "{:?}",
        handle.logs("client")
    );
    assert_eq!(handle.logs("client"), ["reply: ping"]);
    handle.stop();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_ports_are_per_pod_too() {
    // Two pods bind the same UDP port at once (a clash on the host would
    // fail the second bind); each client is answered by its own pod's echo.
    let runtime = runtime();
    let pod = |name: &str| {
        PodSpec::builder(name)
            .container(ContainerSpec::new("echo", guest("udp_echo")).args(["serve", "53"]))
            .container(ContainerSpec::new("client", guest("udp_echo")).args([
                "send",
                "127.0.0.1:53",
                name,
                "--retry-ms",
                "5000",
            ]))
            .restart_policy(RestartPolicy::Never)
            .build()
            .unwrap()
    };
    let mut first = runtime.start(pod("first"), options()).await.unwrap();
    let mut second = runtime.start(pod("second"), options()).await.unwrap();
    assert_eq!(
        exit_of(&mut first, "client").await,
        0,
        "{:?} {:?}",
        first.logs("client"),
        first.logs("echo")
    );
    assert_eq!(
        exit_of(&mut second, "client").await,
        0,
        "{:?} {:?}",
        second.logs("client"),
        second.logs("echo")
    );
    assert_eq!(first.logs("client"), ["reply: first"]);
    assert_eq!(second.logs("client"), ["reply: second"]);
    for handle in [first, second] {
        handle.stop();
        handle.wait().await;
    }
}
