//! The examples, end to end, as a person would try them: start the pod from
//! its folder's manifest, wait until it is ready, compare what it prints and
//! what curl gets through the hostPort with the samples of its README (see
//! `docs`), stop it with Ctrl-C and check that nothing is left behind.

use crate::docs::{
    assert_prints, assert_prints_per_stream, compare, curl, run_merged, sample, wpod_args,
};
use crate::support::{Run, Workspace, guests};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xtask::readme::Sample;

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
    /// Starts the sample's `cargo xtask run examples/NAME/pod.yaml`, with
    /// `edit` applied to the manifest's text (a copy in the workspace),
    /// stdout and stderr on one pipe as on a terminal.
    fn start(workspace: &Workspace, sample: &Sample, edit: impl Fn(String) -> String) -> Running {
        let mut args = wpod_args(sample);
        let name = std::path::Path::new(&args[1])
            .parent()
            .and_then(|p| p.file_name())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let manifest = workspace.write(
            &format!("{name}.yaml"),
            edit(std::fs::read_to_string(&args[1]).unwrap()),
        );
        args[1] = manifest.display().to_string();
        let (reader, writer) = std::io::pipe().unwrap();
        let mut command = workspace.wpod();
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().unwrap())
            .stderr(writer);
        let child = command.spawn().unwrap();
        // The command holds the pipe's write end too.
        drop(command);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        Running { child, lines }
    }

    /// Waits until wpod has printed as many lines as `sample` shows, then
    /// compares them with it: what the terminal shows before the reader
    /// turns to the README's next step.
    fn expect_sample(&mut self, sample: &Sample) {
        let count = sample.output.lines().count();
        self.wait_for(|lines| lines.len() >= count);
        let printed: String = self.output()[..count]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        assert_prints(sample, &printed);
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until the lines printed so far satisfy `ready`; fails at once
    /// if wpod exits.
    fn wait_for(&mut self, ready: impl Fn(&[String]) -> bool) {
        let start = Instant::now();
        while !ready(&self.output()) {
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

impl Drop for Running {
    /// A test that fails before `interrupt` leaves no pod running (holding
    /// its hostPort for the next test): Ctrl-C twice, then a kill if it is
    /// still there.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        #[cfg(unix)]
        for _ in 0..2 {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(200));
        }
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the sample's `curl` until its answer is the sample's (the server may
/// not serve the page yet), and fails with the last answer's diff.
fn expect_curl(sample: &Sample) {
    let start = Instant::now();
    loop {
        let answer = curl(sample);
        if let Ok(answer) = &answer
            && compare(sample, answer).is_ok()
        {
            return;
        }
        if start.elapsed() > DEADLINE {
            match answer {
                Ok(answer) => assert_prints(sample, &answer),
                Err(e) => panic!("`{}`: {e}", sample.command),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The examples that publish hostPort 8080 take turns: they run their
/// README's manifests as they are.
static PORT_8080: Mutex<()> = Mutex::new(());

#[test]
fn share_volume_nginx_serves_what_ubuntu_wrote() {
    let readme = "examples/share-volume/README.md";
    let _port = PORT_8080.lock().unwrap_or_else(|e| e.into_inner());
    let workspace = Workspace::new();
    // The article's hostPath, /var/data, becomes a folder of this test's.
    let data = workspace.path().join("var-data");
    let run = sample(readme, "cargo xtask run examples/share-volume/pod.yaml");
    let mut pod = Running::start(&workspace, &run, |yaml| {
        yaml.replace("/var/data", data.to_str().unwrap())
    });
    pod.expect_sample(&run);
    expect_curl(&sample(readme, "curl http://127.0.0.1:8080/"));
    let output = pod.interrupt(&workspace);
    assert!(
        output.iter().any(|l| l == "[nginx-container] GET / 200 32"),
        "the README's request line: {output:?}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("index.html")).unwrap(),
        "Hello from the ubuntu container\n"
    );
}

#[test]
fn deployment_serves_the_configmaps_page_from_its_pod() {
    let readme = "examples/deployment/README.md";
    // The manifest as it is: its pods' names come from its template.
    let _port = PORT_8080.lock().unwrap_or_else(|e| e.into_inner());
    let workspace = Workspace::new();
    let run = sample(readme, "cargo xtask run examples/deployment/pod.yaml");
    let mut pod = Running::start(&workspace, &run, |yaml| yaml);
    pod.expect_sample(&run);
    expect_curl(&sample(readme, "curl http://127.0.0.1:8080/"));
    pod.interrupt(&workspace);
}

#[test]
fn javaweb_init_container_copies_the_war_for_tomcat() {
    let readme = "examples/javaweb/README.md";
    let workspace = Workspace::new();
    let run = sample(readme, "cargo xtask run examples/javaweb/pod.yaml");
    let mut pod = Running::start(&workspace, &run, |yaml| yaml);
    pod.expect_sample(&run);
    expect_curl(&sample(readme, "curl -i http://127.0.0.1:8001/sample/"));
    let output = pod.interrupt(&workspace);
    assert!(
        output.iter().any(|l| l == "[tomcat] GET /sample/ 200 359"),
        "{output:?}"
    );
}

#[test]
fn ambassador_forwards_the_apps_localhost_calls_to_the_backend() {
    if !crate::support::second_loopback_address() {
        return;
    }
    let workspace = Workspace::new();
    let run = sample(
        "examples/ambassador/README.md",
        "cargo xtask run examples/ambassador/pod.yaml",
    );
    let mut pod = Running::start(&workspace, &run, |yaml| yaml);
    // Its two pods, and the containers of each, run side by side: each
    // container's lines come in order, the containers' in any.
    let count = run.output.lines().count();
    pod.wait_for(|lines| lines.len() >= count);
    let printed: String = pod.output()[..count]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_prints_per_stream(&run, &printed, |line| {
        line.split(' ').next().unwrap_or_default().to_owned()
    });
    pod.interrupt(&workspace);
}

/// Runs the sample's `cargo xtask run examples/NAME/pod.yaml` to its end.
fn run_to_end(workspace: &Workspace, sample: &Sample) -> crate::docs::Printed {
    let mut command = workspace.wpod();
    command.args(wpod_args(sample));
    run_merged(command)
}

#[test]
fn log_sidecar_forwards_every_line_and_the_pod_completes() {
    let workspace = Workspace::new();
    let run = sample(
        "examples/log-sidecar/README.md",
        "cargo xtask run examples/log-sidecar/pod.yaml",
    );
    // The sidecar is asked to end once the app is done: it forwards the
    // last line, and the pod completes by itself.
    let printed = run_to_end(&workspace, &run);
    assert_eq!(printed.code, 0, "{printed:?}");
    assert_prints(&run, &printed.output);
    assert!(
        workspace.leftovers().is_empty(),
        "{:?}",
        workspace.leftovers()
    );
}

#[test]
fn http_sidecar_app_calls_its_wasi_http_sidecar_over_localhost() {
    let workspace = Workspace::new();
    let run = sample(
        "examples/http-sidecar/README.md",
        "cargo xtask run examples/http-sidecar/pod.yaml",
    );
    let printed = run_to_end(&workspace, &run);
    assert_eq!(printed.code, 0, "{printed:?}");
    assert_prints(&run, &printed.output);
}

#[test]
fn adapter_turns_the_apps_stats_into_prometheus_text() {
    let workspace = Workspace::new();
    let run = sample(
        "examples/adapter/README.md",
        "cargo xtask run examples/adapter/pod.yaml",
    );
    let printed = run_to_end(&workspace, &run);
    assert_eq!(printed.code, 0, "{printed:?}");
    assert_prints(&run, &printed.output);
}

#[test]
fn init_handoff_prints_its_samples() {
    let command = "cargo xtask run examples/init-handoff/pod.yaml";
    let workspace = Workspace::new();
    let run = sample("examples/init-handoff/README.md", command);
    let printed = run_to_end(&workspace, &run);
    assert_eq!(printed.code, 0, "{printed:?}");
    assert_prints(&run, &printed.output);
    // The repository's README shows the same run.
    assert_prints(&sample("README.md", command), &printed.output);
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
    let run = sample(
        "examples/registry/README.md",
        "cargo xtask run examples/registry/pod.yaml",
    );
    let manifest = std::fs::read_to_string(guests().root.join("examples/registry/pod.yaml"))
        .unwrap()
        .replace("localhost:5000", &registry.address);
    let manifest = workspace.write("registry.yaml", manifest);
    let mut command = workspace.wpod();
    command.arg("run").arg(&manifest);
    let printed = run_merged(command);
    assert_eq!(printed.code, 0, "{printed:?}");
    assert_prints(&run, &printed.output);
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
