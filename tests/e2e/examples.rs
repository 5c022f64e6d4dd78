//! The examples, end to end, as a person would try them: start the pod from
//! its folder's manifest, wait until it is ready, check what the example's
//! README promises (curl through the hostPort, the sidecar's output), stop
//! it with Ctrl-C and check that nothing is left behind.

use crate::support::{Run, Workspace, guests};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `wpod run` of an example, its output collected as it comes.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

// The first run in a fresh clone compiles every image with a debug build of
// wasmtime, while the other tests do the same on the same cores: a deadline
// that only a failure reaches, not a timing.
const DEADLINE: Duration = Duration::from_secs(120);

impl Running {
    /// Starts `examples/NAME/pod.yaml`, with `edit` applied to its text.
    fn start(workspace: &Workspace, name: &str, edit: impl Fn(String) -> String) -> Running {
        let source = guests().root.join("examples").join(name).join("pod.yaml");
        let manifest = workspace.write(
            &format!("{name}.yaml"),
            edit(std::fs::read_to_string(source).unwrap()),
        );
        let mut child = workspace
            .wpod()
            .arg("run")
            .arg(&manifest)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Running { child, lines }
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line satisfies `ready`; fails at once if wpod exits.
    fn wait_for_line(&mut self, ready: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while !self.output().iter().any(|l| ready(l)) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "wpod exited ({status}) before it was ready; output:\n{}",
                    self.output().join("\n")
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "not ready in time; output:\n{}",
                self.output().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C twice (the second does not wait for the grace period), then
    /// the exit code must be 130 and no scratch folder left.
    #[cfg(unix)]
    fn interrupt(mut self, workspace: &Workspace) -> Vec<String> {
        for _ in 0..2 {
            let status = std::process::Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(200));
        }
        let code = self.child.wait().unwrap().code();
        assert_eq!(code, Some(130), "output:\n{}", self.output().join("\n"));
        assert!(
            workspace.leftovers().is_empty(),
            "left behind: {:?}",
            workspace.leftovers()
        );
        self.output()
    }

    /// Without Unix signals there is no Ctrl-C to send from a test: the
    /// process is ended, and the clean-up check is left to the Unix runs.
    #[cfg(not(unix))]
    fn interrupt(mut self, _workspace: &Workspace) -> Vec<String> {
        eprintln!(
            "note: no Ctrl-C can be sent on this OS; clean-up after Ctrl-C is checked on Unix"
        );
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.output()
    }
}

/// GET `path` on 127.0.0.1:`port` until the answer contains `expected`.
fn curl_until(port: u16, path: &str, expected: &str) -> String {
    let start = Instant::now();
    loop {
        let response = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        });
        if let Ok(response) = &response
            && response.contains(expected)
        {
            return response.clone();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no {expected:?} at :{port}{path}; last answer: {response:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn share_volume_nginx_serves_what_ubuntu_wrote() {
    let workspace = Workspace::new();
    // The article's hostPath, /var/data, becomes a folder of this test's.
    let data = workspace.path().join("var-data");
    let mut pod = Running::start(&workspace, "share-volume", |yaml| {
        yaml.replace("/var/data", data.to_str().unwrap())
    });
    // Ready when this pod's server says so (not whatever answers on 8080).
    pod.wait_for_line(|l| l == "[nginx-container] listening on 0.0.0.0:80");
    let response = curl_until(8080, "/", "Hello from the ubuntu container");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    pod.interrupt(&workspace);
    assert_eq!(
        std::fs::read_to_string(data.join("index.html")).unwrap(),
        "Hello from the ubuntu container\n"
    );
}

#[test]
fn deployment_serves_the_configmaps_page_from_its_pod() {
    let workspace = Workspace::new();
    // Its own hostPort: share-volume's test has 8080 at the same time.
    let mut pod = Running::start(&workspace, "deployment", |yaml| {
        yaml.replace("hostPort: 8080", "hostPort: 8090")
    });
    pod.wait_for_line(|l| l == "[nginx-container] listening on 0.0.0.0:80");
    let response = curl_until(8090, "/", "served by ubuntu-and-nginx-");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("Hello from a ConfigMap\nserved by ubuntu-and-nginx-"),
        "{response}"
    );
    pod.interrupt(&workspace);
}

#[test]
fn javaweb_init_container_copies_the_war_for_tomcat() {
    let workspace = Workspace::new();
    let mut pod = Running::start(&workspace, "javaweb", |yaml| yaml);
    pod.wait_for_line(|l| l == "[tomcat] listening on 0.0.0.0:8080");
    let response = curl_until(8001, "/sample/", "Sample \"Hello, World\" Application");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let output = pod.interrupt(&workspace);
    assert!(
        output.iter().any(|l| l == "[tomcat] GET /sample/ 200 359"),
        "{output:?}"
    );
}

#[test]
fn log_sidecar_forwards_every_line_and_the_pod_completes() {
    let workspace = Workspace::new();
    let mut pod = Running::start(&workspace, "log-sidecar", |yaml| yaml);
    // The sidecar is asked to end once the app is done: it forwards the
    // last line, and the pod completes by itself.
    let status = pod.child.wait().unwrap();
    // The reader thread may still hold the last lines for a moment.
    let done = |output: &[String]| {
        output
            .iter()
            .any(|l| l == "[log-collector] [app.log] app done")
    };
    let started = Instant::now();
    while !done(&pod.output()) && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = pod.output();
    assert_eq!(status.code(), Some(0), "{output:?}");
    assert!(done(&output), "{output:?}");
    assert!(
        workspace.leftovers().is_empty(),
        "{:?}",
        workspace.leftovers()
    );
    for i in 1..=5 {
        assert!(
            output
                .iter()
                .any(|l| l.starts_with("[log-collector] [app.log] ")
                    && l.ends_with(&format!(" request {i} handled"))),
            "line {i} missing: {output:?}"
        );
    }
}

#[test]
fn ambassador_forwards_the_apps_localhost_calls_to_the_backend() {
    if !crate::support::second_loopback_address() {
        return;
    }
    let workspace = Workspace::new();
    let mut pod = Running::start(&workspace, "ambassador", |yaml| yaml);
    pod.wait_for_line(|l| l == "[app] <h1>Welcome to nginx (wpod)</h1>");
    let output = pod.interrupt(&workspace);
    assert!(
        output
            .iter()
            .any(|l| l == "[ambassador] forwarded GET / HTTP/1.1 to 127.0.0.2:18081"),
        "{output:?}"
    );
}

/// Runs `examples/NAME/pod.yaml` as it is, to its end.
fn run_to_end(workspace: &Workspace, name: &str) -> Run {
    let manifest = guests().root.join("examples").join(name).join("pod.yaml");
    workspace
        .wpod()
        .arg("run")
        .arg(manifest)
        .output()
        .unwrap()
        .into()
}

#[test]
fn http_sidecar_app_calls_its_wasi_http_sidecar_over_localhost() {
    let workspace = Workspace::new();
    let run = run_to_end(&workspace, "http-sidecar");
    run.expect_code(0);
    assert_eq!(
        run.stdout,
        "[app] GET http://localhost:8080/: 200\n[app] hello from http_proxy\n\
         [app] GET http://localhost:8080/sleep?ms=20: 200\n[app] slept 20 ms\n",
        "{run:?}"
    );
    assert!(
        run.stderr.contains("[greeter] serving HTTP on port 8080"),
        "{run:?}"
    );
}

#[test]
fn adapter_turns_the_apps_stats_into_prometheus_text() {
    let workspace = Workspace::new();
    let run = run_to_end(&workspace, "adapter");
    run.expect_code(0);
    let adapter: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("[adapter] "))
        .collect();
    assert_eq!(
        adapter,
        [
            "# TYPE app_requests gauge",
            "app_requests 1024",
            "# TYPE app_errors gauge",
            "app_errors 3",
            "# TYPE app_latency_ms gauge",
            "app_latency_ms 12"
        ]
    );
}

#[test]
fn init_handoff_runs_as_the_readme_says() {
    let workspace = Workspace::new();
    let run = run_to_end(&workspace, "init-handoff");
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "[prepare] wrote /work/greeting.txt",
            "[app] app sees:",
            "[app] prepared by the init container"
        ]
    );
    assert!(workspace.leftovers().is_empty());
}

#[test]
fn registry_runs_the_hello_its_readme_pushes_to_a_registry_on_loopback() {
    let Some(registry) = crate::registry::Registry::start() else {
        return;
    };
    let workspace = Workspace::new();
    // The README's registry is at localhost:5000; this test's, at a free
    // port of its own.
    let reference = format!("{}/wpod/hello:v1", registry.address);
    let hello = crate::support::component("hello");
    let push = Run::from(
        workspace
            .wpod()
            .arg("push")
            .arg(&hello)
            .arg(&reference)
            .output()
            .unwrap(),
    );
    push.expect_code(0);
    assert!(push.stdout.starts_with("sha256:"), "{}", push.stdout);
    let manifest = std::fs::read_to_string(guests().root.join("examples/registry/pod.yaml"))
        .unwrap()
        .replace("localhost:5000", &registry.address);
    let manifest = workspace.write("registry.yaml", manifest);
    let run = Run::from(workspace.wpod().arg("run").arg(&manifest).output().unwrap());
    run.expect_code(0);
    assert_eq!(
        run.stdout, "[hello] hello from wpod\n",
        "the README's output"
    );
}

#[test]
fn example_manifests_differ_from_the_article_only_in_images_and_ports() {
    // The article's two manifests, as it printed them (images aside).
    let share_volume = include_str!("../../examples/share-volume/pod.yaml");
    for line in [
        "name: ubuntu-and-nginx-share-volume",
        "restartPolicy: Never",
        "path: /var/data",
        "mountPath: /usr/share/nginx/html",
        "mountPath: /pod-data",
        r#"command: ["/bin/sh"]"#,
        r#"args: ["-c", "echo Hello from the ubuntu container > /pod-data/index.html"]"#,
    ] {
        assert!(share_volume.contains(line), "share-volume lost {line:?}");
    }
    let javaweb = include_str!("../../examples/javaweb/pod.yaml");
    for line in [
        "image: geektime/sample:v2",
        r#"command: ["cp", "/sample.war", "/app"]"#,
        "image: geektime/tomcat:7.0",
        r#"command: ["sh","-c","/root/apache-tomcat-7.0.42-v2/bin/start.sh"]"#,
        "containerPort: 8080",
        "hostPort: 8001",
        "emptyDir: {}",
    ] {
        assert!(javaweb.contains(line), "javaweb lost {line:?}");
    }
}
