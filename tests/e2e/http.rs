//! HTTP components (`wasi:http/proxy`): served on their containerPort, one
//! instance per request, to siblings on localhost and to the host on their
//! hostPort; concurrency, traps, memory per instance; outgoing HTTP under
//! the pod's egress policy. WASI 0.3 services (`wasi:http/service`) alike.
//! The `http_proxy` and `http_p3` guests, the `wpod` binary, real sockets;
//! behind the OS wall (the default) and with `--isolation=none`.
#![cfg(unix)]

use crate::support::{Workspace, free_port, isolations};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `wpod run` in the background, its standard error collected; stopped
/// (SIGTERM, then SIGINT) when dropped.
struct Served {
    wpod: Child,
    stderr: Arc<Mutex<String>>,
    port: u16,
}

impl Served {
    /// Runs `yaml` (`@port@` standing for a free hostPort) and waits until
    /// the hostPort answers `/`.
    fn start(workspace: &Workspace, yaml: &str, extra: &[&str]) -> Served {
        let port = free_port();
        let pod = workspace.pod(&yaml.replace("@port@", &port.to_string()));
        let mut wpod = workspace
            .wpod()
            .arg("run")
            .arg(&pod)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wpod");
        let stderr = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(wpod.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(wpod.stdout.take().unwrap()),
        ] {
            let seen = stderr.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    let mut seen = seen.lock().unwrap();
                    seen.push_str(&line);
                    seen.push('\n');
                }
            });
        }
        let mut served = Served { wpod, stderr, port };
        // The first run compiles (a debug wasmtime, other tests on the same
        // cores): a deadline only a failure reaches.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = served.wpod.try_wait() {
                // Let the readers catch up with its last words.
                std::thread::sleep(Duration::from_millis(200));
                panic!("wpod ended ({status}):\n{}", served.output());
            }
            if get(port, "/").is_ok_and(|(status, _)| status == 200) {
                return served;
            }
            assert!(
                Instant::now() < deadline,
                "the hostPort never answered:\n{}",
                served.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn output(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until wpod has printed `text`.
    fn wait_for_output(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = self.output();
            if output.contains(text) {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "no `{text}` in wpod's output:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM: the pod stops gracefully; wpod's exit code and output.
    fn stop(mut self) -> (i32, String) {
        signal(self.wpod.id(), libc::SIGTERM);
        let status = self.wpod.wait().expect("waiting for wpod");
        // The readers end with the pipes.
        std::thread::sleep(Duration::from_millis(100));
        (status.code().unwrap_or(-1), self.output())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.wpod.try_wait() {
            signal(self.wpod.id(), libc::SIGINT);
            let _ = self.wpod.wait();
        }
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid as i32, signal) };
}

/// `GET path` on 127.0.0.1:`port` over HTTP/1.1: the status and body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    exchange(port, "GET", path, "")
}

/// `POST path` with `body` on 127.0.0.1:`port`: the status and body.
fn post(port: u16, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    exchange(port, "POST", path, body)
}

fn exchange(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let length = body.len();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n{body}"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end: {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status: {head:?}")))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(body) } else { body.into() }))
}

/// A chunked body's bytes.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

const WEB: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations: ANNOTATIONS
spec:
  containers:
  - name: web
    image: '@http_proxy@'
    ports: [{name: http, containerPort: 8080, hostPort: @port@, hostIP: 127.0.0.1}, {containerPort: 9090}]
    resources: {limits: {memory: 48Mi}}
";

fn web(annotations: &str) -> String {
    WEB.replace("ANNOTATIONS", annotations)
}

#[test]
fn a_proxy_component_answers_a_sibling_on_localhost_and_the_host_on_its_host_port() {
    for isolation in isolations() {
        let workspace = Workspace::new();
        let yaml = web("{}")
            + "  - name: client
    image: '@http_get@'
    args: ['--retry-ms', '30000', 'http://localhost:8080/']
";
        let served = Served::start(&workspace, &yaml, &[isolation, "-o", "json"]);
        let (status, body) = get(served.port, "/").unwrap();
        assert_eq!((status, body.as_str()), (200, "hello from http_proxy\n"));
        served.wait_for_output("[client] hello from http_proxy");
        let output = served.wait_for_output("[web] serving HTTP on port 8080");
        assert!(!output.contains("failed"), "{isolation}:\n{output}");
        // A graceful stop ends the server by itself: exit 0, not 137.
        let (code, output) = served.stop();
        assert_eq!(code, 143, "{isolation}:\n{output}");
        let json_start = output.find('{').expect("the status as JSON");
        let status: serde_json::Value =
            serde_json::from_str(&output[json_start..output.rfind('}').unwrap() + 1])
                .unwrap_or_else(|e| panic!("{e}:\n{output}"));
        let web = crate::support::container(&status, "web");
        assert_eq!(
            web["state"]["terminated"]["exitCode"], 0,
            "{isolation}: {web:#}"
        );
        assert_eq!(web["restartCount"], 0, "{isolation}: {web:#}");
    }
}

#[test]
fn a_hundred_concurrent_requests_are_served_concurrently() {
    for isolation in isolations() {
        let workspace = Workspace::new();
        let served = Served::start(&workspace, &web("{}"), &[isolation]);
        let port = served.port;
        let started = Instant::now();
        let requests: Vec<_> = (0..100)
            .map(|_| std::thread::spawn(move || get(port, "/sleep?ms=500")))
            .collect();
        for request in requests {
            let (status, body) = request.join().unwrap().unwrap();
            assert_eq!((status, body.as_str()), (200, "slept 500 ms\n"));
        }
        // One after the other they would take 50 s.
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(15),
            "{isolation}: 100 requests of 500 ms took {took:?}"
        );
    }
}

#[test]
fn the_concurrency_annotation_bounds_the_requests_served_at_once() {
    let workspace = Workspace::new();
    let served = Served::start(
        &workspace,
        &web("{wpod.dev/http-concurrency: '2'}"),
        &["--isolation=none"],
    );
    // As `wasmtime serve`, each request's instance takes a slot of a
    // pooling allocator, sized by the annotation.
    served.wait_for_output(
        "[web] serving HTTP on port 8080: at most 2 requests at once, instances from a pool of as many",
    );
    let port = served.port;
    let started = Instant::now();
    let requests: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || get(port, "/sleep?ms=400")))
        .collect();
    for request in requests {
        assert_eq!(request.join().unwrap().unwrap().0, 200);
    }
    // Two at a time: three rounds of 400 ms at least.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1200), "took {took:?}");
}

#[test]
fn a_trapping_request_answers_500_and_the_next_one_is_served() {
    for isolation in isolations() {
        let workspace = Workspace::new();
        let served = Served::start(&workspace, &web("{}"), &[isolation]);
        assert_eq!(get(served.port, "/trap").unwrap().0, 500);
        assert_eq!(
            get(served.port, "/").unwrap(),
            (200, "hello from http_proxy\n".into())
        );
        served.wait_for_output(
            "[web] request GET /trap failed (answered 500): wasm trap: wasm `unreachable` instruction executed",
        );
    }
}

#[test]
fn each_instance_has_the_containers_memory_limit_to_itself() {
    let workspace = Workspace::new();
    let served = Served::start(&workspace, &web("{}"), &["--isolation=none"]);
    let port = served.port;
    // 48Mi each: three instances holding 32 MiB at once all fit.
    let requests: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(port, "/alloc?mb=32&ms=300")))
        .collect();
    for request in requests {
        let (status, body) = request.join().unwrap().unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("allocated 32 MiB"), "{body}");
    }
    // One instance past it dies of it, and says so.
    assert_eq!(get(port, "/alloc?mb=64").unwrap().0, 500);
    served.wait_for_output(
        "[web] request GET /alloc failed (answered 500): its memory limit was reached",
    );
    assert_eq!(get(port, "/").unwrap().0, 200);
}

/// An HTTP server on 127.0.0.2 (the host's loopback, outside every pod's
/// localhost) answering each request `upstream says hi`; its address.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\nconnection: close\r\n\r\nupstream says hi\n",
            );
        }
    });
    address
}

#[test]
fn outgoing_http_follows_the_pods_egress_policy() {
    if !crate::support::second_loopback_address() {
        return;
    }
    let upstream = upstream();
    let fetch = format!("/fetch?url=http://{upstream}/");
    for isolation in isolations() {
        let workspace = Workspace::new();
        // Refused by default, with the sockets' line.
        let served = Served::start(&workspace, &web("{}"), &[isolation]);
        let (status, body) = get(served.port, &fetch).unwrap();
        assert_eq!(
            (status, body.as_str()),
            (502, "fetch failed: ErrorCode::HttpRequestDenied\n"),
            "{isolation}"
        );
        served.wait_for_output(&format!(
            "egress refused: allow it with --allow-egress {upstream}"
        ));
        drop(served);

        // Allowed by the pod's annotation.
        let served = Served::start(
            &workspace,
            &web(&format!("{{wpod.dev/egress: '{upstream}'}}")),
            &[isolation],
        );
        let (status, body) = get(served.port, &fetch).unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "upstream says hi\n"),
            "{isolation}:\n{}",
            served.output()
        );
        // The pod's own server, reached by its own outgoing HTTP on localhost.
        let (status, body) = get(served.port, "/fetch?url=http://localhost:8080/").unwrap();
        assert_eq!((status, body.as_str()), (200, "hello from http_proxy\n"));
    }
}

/// A host-name rule: the pod names the outside host `api.test`
/// (`hostAliases`, its address 127.0.0.2), and `api.test:PORT` lets its
/// outgoing HTTP reach it by that name, and by no other; without the rule,
/// the same request is refused.
#[test]
fn outgoing_http_by_host_name_follows_a_host_name_rule() {
    if !crate::support::second_loopback_address() {
        return;
    }
    let upstream = upstream();
    let port = upstream.port();
    let aliased = |annotations: &str| {
        web(annotations).replace(
            "spec:\n",
            "spec:\n  hostAliases: [{ip: 127.0.0.2, hostnames: [api.test, other.test]}]\n",
        )
    };
    let by_name = format!("/fetch?url=http://api.test:{port}/");
    for isolation in isolations() {
        let workspace = Workspace::new();
        let served = Served::start(&workspace, &aliased("{}"), &[isolation]);
        let (status, body) = get(served.port, &by_name).unwrap();
        assert_eq!(
            (status, body.as_str()),
            (502, "fetch failed: ErrorCode::HttpRequestDenied\n"),
            "{isolation}"
        );
        served.wait_for_output(&format!(
            "egress refused: allow it with --allow-egress api.test:{port}"
        ));
        drop(served);

        let rule = format!("{{wpod.dev/egress: 'api.test:{port}'}}");
        let served = Served::start(&workspace, &aliased(&rule), &[isolation]);
        let (status, body) = get(served.port, &by_name).unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "upstream says hi\n"),
            "{isolation}:\n{}",
            served.output()
        );
        // The same address under another name, or by its address, is not
        // what the rule allows.
        for other in [
            format!("/fetch?url=http://other.test:{port}/"),
            format!("/fetch?url=http://{upstream}/"),
        ] {
            let (status, _) = get(served.port, &other).unwrap();
            assert_eq!(status, 502, "{isolation} {other}:\n{}", served.output());
        }
    }
}

#[test]
fn an_http_component_with_two_unnamed_ports_is_refused_naming_the_field() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: '@http_proxy@'
    ports: [{containerPort: 8080}, {containerPort: 9090}]
",
        &["--isolation=none"],
    );
    run.expect_code(125);
    assert!(
        run.stderr.contains("pod.yaml: (pod `web`) spec.containers[0].ports: the image is an HTTP component (wasi:http/proxy), served on one port, and the container has 2 TCP ports; name the one to serve `http`"),
        "{}",
        run.stderr
    );
}

/// The `web` pod with the WASI 0.3 service `http_p3` in place of `http_proxy`.
fn web_p3(annotations: &str) -> String {
    web(annotations).replace("@http_proxy@", "@http_p3@")
}

#[test]
fn a_wasip3_service_is_served_as_a_proxy_component_is() {
    for isolation in isolations() {
        let workspace = Workspace::new();
        let yaml = web_p3("{}")
            + "  - name: client
    image: '@http_get@'
    args: ['--retry-ms', '30000', 'http://localhost:8080/']
";
        let served = Served::start(&workspace, &yaml, &[isolation, "--wasip3"]);
        let port = served.port;
        assert_eq!(
            get(port, "/").unwrap(),
            (200, "hello from http_p3\n".into())
        );
        served.wait_for_output("[client] hello from http_p3");
        // The request's body streamed in, and back out as the response's.
        let body = "a body the service streams back\n".repeat(1000);
        assert_eq!(post(port, "/echo", &body).unwrap(), (200, body));
        // A trap answers 500, is logged, and the next request is served.
        assert_eq!(get(port, "/trap").unwrap().0, 500);
        served.wait_for_output(
            "[web] request GET /trap failed (answered 500): wasm trap: wasm `unreachable` instruction executed",
        );
        // Instances wait (wasi:clocks 0.3) side by side.
        let started = Instant::now();
        let requests: Vec<_> = (0..20)
            .map(|_| std::thread::spawn(move || get(port, "/sleep?ms=500")))
            .collect();
        for request in requests {
            assert_eq!(
                request.join().unwrap().unwrap(),
                (200, "slept 500 ms\n".into())
            );
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{isolation}: 20 requests of 500 ms took {took:?}"
        );
        // Outgoing HTTP (wasi:http/client@0.3.0) to the pod's own server.
        assert_eq!(
            get(port, "/fetch?url=http://localhost:8080/").unwrap(),
            (200, "hello from http_p3\n".into()),
            "{isolation}:\n{}",
            served.output()
        );
        let (code, output) = served.stop();
        assert_eq!(code, 143, "{isolation}:\n{output}");
    }
}

#[test]
fn outgoing_http_of_a_wasip3_service_follows_the_pods_egress_policy() {
    if !crate::support::second_loopback_address() {
        return;
    }
    let upstream = upstream();
    let fetch = format!("/fetch?url=http://{upstream}/");
    for isolation in isolations() {
        let workspace = Workspace::new();
        let served = Served::start(&workspace, &web_p3("{}"), &[isolation, "--wasip3"]);
        assert_eq!(
            get(served.port, &fetch).unwrap(),
            (502, "fetch failed: ErrorCode::HttpRequestDenied\n".into()),
            "{isolation}"
        );
        served.wait_for_output(&format!(
            "egress refused: allow it with --allow-egress {upstream}"
        ));
        drop(served);
        let served = Served::start(
            &workspace,
            &web_p3(&format!("{{wpod.dev/egress: '{upstream}'}}")),
            &[isolation, "--wasip3"],
        );
        assert_eq!(
            get(served.port, &fetch).unwrap(),
            (200, "upstream says hi\n".into()),
            "{isolation}:\n{}",
            served.output()
        );
    }
}
