//! The READMEs' sample output, checked against the commands': every block of
//! README.md and examples/*/README.md that shows a command (`$ COMMAND`) and
//! the lines it prints is run by a test and compared with what it prints, or
//! is listed in [`NOT_RUN`] with why. The tests read each block out of its
//! README (`xtask::readme`), so that the README is the only copy.
//!
//! Commands map to what the test can run:
//! - `cargo xtask run X [FLAGS]` is the built `wpod run ROOT/X [FLAGS]` (this
//!   test binary's `wpod`, with the tests' image path): xtask only builds
//!   the images and wpod first, and what that build prints is not part of a
//!   sample. stdout and stderr go to one pipe, in the order wpod writes
//!   them, as on a terminal.
//! - `curl [-i] URL` is one HTTP/1.1 GET of that URL, its body (and with `-i`
//!   its status line and headers) compared.
//! - `cargo run -p wpod-embed` is checked by the embed example's own test
//!   (examples/embed/tests/readme.rs), which can run that binary.
//!
//! The comparison is snapbox's: `[..]` in a sample matches any text within a
//! line, a line `...` any lines; RFC 3339 times are redacted on both sides,
//! so that a sample shows a real one.

use std::io::Read as _;
use std::process::{Command, Stdio};
use xtask::readme::Sample;
pub use xtask::readme::{assert_prints, assert_prints_per_stream, compare};

/// Which test checks each sample: `(README, command, test)`.
const CHECKED: &[(&str, &str, &str)] = &[
    (
        "README.md",
        "cargo xtask run examples/init-handoff/pod.yaml",
        "examples::init_handoff_prints_its_samples",
    ),
    (
        "examples/init-handoff/README.md",
        "cargo xtask run examples/init-handoff/pod.yaml",
        "examples::init_handoff_prints_its_samples",
    ),
    (
        "examples/adapter/README.md",
        "cargo xtask run examples/adapter/pod.yaml",
        "examples::adapter_turns_the_apps_stats_into_prometheus_text",
    ),
    (
        "examples/http-sidecar/README.md",
        "cargo xtask run examples/http-sidecar/pod.yaml",
        "examples::http_sidecar_app_calls_its_wasi_http_sidecar_over_localhost",
    ),
    (
        "examples/log-sidecar/README.md",
        "cargo xtask run examples/log-sidecar/pod.yaml",
        "examples::log_sidecar_forwards_every_line_and_the_pod_completes",
    ),
    (
        "examples/registry/README.md",
        "cargo xtask run examples/registry/pod.yaml",
        "examples::registry_runs_the_hello_its_readme_pushes_to_a_registry_on_loopback",
    ),
    (
        "examples/share-volume/README.md",
        "cargo xtask run examples/share-volume/pod.yaml",
        "examples::share_volume_nginx_serves_what_ubuntu_wrote",
    ),
    (
        "examples/share-volume/README.md",
        "curl http://127.0.0.1:8080/",
        "examples::share_volume_nginx_serves_what_ubuntu_wrote",
    ),
    (
        "examples/deployment/README.md",
        "cargo xtask run examples/deployment/pod.yaml",
        "examples::deployment_serves_the_configmaps_page_from_its_pod",
    ),
    (
        "examples/deployment/README.md",
        "curl http://127.0.0.1:8080/",
        "examples::deployment_serves_the_configmaps_page_from_its_pod",
    ),
    (
        "examples/javaweb/README.md",
        "cargo xtask run examples/javaweb/pod.yaml",
        "examples::javaweb_init_container_copies_the_war_for_tomcat",
    ),
    (
        "examples/javaweb/README.md",
        "curl -i http://127.0.0.1:8001/sample/",
        "examples::javaweb_init_container_copies_the_war_for_tomcat",
    ),
    (
        "examples/ambassador/README.md",
        "cargo xtask run examples/ambassador/pod.yaml",
        "examples::ambassador_forwards_the_apps_localhost_calls_to_the_backend",
    ),
    (
        "examples/embed/README.md",
        "cargo run -p wpod-embed",
        "wpod-embed's tests/readme.rs: prints_what_its_readme_shows",
    ),
];

/// Samples no test runs, and why: `(README, command, why)`.
const NOT_RUN: &[(&str, &str, &str)] = &[];

/// The repository's root.
fn root() -> std::path::PathBuf {
    xtask::workspace_root()
}

/// The sample of `command` in `readme`.
pub fn sample(readme: &str, command: &str) -> Sample {
    assert!(
        CHECKED
            .iter()
            .any(|(r, c, _)| *r == readme && *c == command),
        "{readme}: `{command}` is checked: list it in docs::CHECKED"
    );
    xtask::readme::sample(&root(), readme, command)
}

/// `wpod`'s arguments for a sample's `cargo xtask run X [FLAGS]`.
pub fn wpod_args(sample: &Sample) -> Vec<String> {
    let words: Vec<&str> = sample.command.split_whitespace().collect();
    let ["cargo", "xtask", "run", manifest, flags @ ..] = words.as_slice() else {
        panic!(
            "{}:{}: `{}` is not `cargo xtask run`",
            sample.readme, sample.line, sample.command
        );
    };
    let mut args = vec![
        "run".to_owned(),
        root().join(manifest).display().to_string(),
    ];
    args.extend(flags.iter().map(|f| f.to_string()));
    args
}

/// A run's exit code and its output, stdout and stderr as one stream.
#[derive(Debug)]
pub struct Printed {
    pub code: i32,
    pub output: String,
}

/// Runs `command` to its end with stdout and stderr on one pipe, as a
/// terminal shows them.
pub fn run_merged(mut command: Command) -> Printed {
    let (mut reader, writer) = std::io::pipe().expect("a pipe");
    command
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("a pipe"))
        .stderr(writer);
    let mut child = command.spawn().expect("starting the command");
    // The command holds the pipe's write end too: without dropping it, the
    // read below would never see the end.
    drop(command);
    let mut output = String::new();
    reader
        .read_to_string(&mut output)
        .expect("reading the output");
    let status = child.wait().expect("waiting for the command");
    Printed {
        code: status.code().unwrap_or(-1),
        output,
    }
}

/// The HTTP/1.1 GET of a sample's `curl [-i] URL`: what curl would print
/// (the body; with `-i`, the status line and headers first), or the error.
pub fn curl(sample: &Sample) -> std::io::Result<String> {
    use std::io::Write as _;
    let words: Vec<&str> = sample.command.split_whitespace().collect();
    let (include, url) = match words.as_slice() {
        ["curl", url] => (false, *url),
        ["curl", "-i", url] => (true, *url),
        _ => panic!(
            "{}:{}: `{}` is not `curl [-i] URL`",
            sample.readme, sample.line, sample.command
        ),
    };
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let response = response.replace("\r\n", "\n");
    if include {
        return Ok(response);
    }
    match response.split_once("\n\n") {
        Some((_, body)) => Ok(body.to_owned()),
        None => Err(std::io::Error::other(format!(
            "no end of the head in {response:?}"
        ))),
    }
}

#[test]
fn every_sample_is_checked_or_said_not_to_be() {
    let mut samples = Vec::new();
    for readme in xtask::readme::readmes(&root()).unwrap() {
        samples.extend(xtask::readme::samples(&root(), &readme).unwrap());
    }
    let listed = |readme: &str, command: &str| {
        CHECKED
            .iter()
            .map(|(r, c, _)| (r, c))
            .chain(NOT_RUN.iter().map(|(r, c, _)| (r, c)))
            .filter(|(r, c)| **r == readme && **c == command)
            .count()
    };
    for sample in &samples {
        assert_eq!(
            listed(&sample.readme, &sample.command),
            1,
            "{}:{}: the sample of `{}` must be checked by a test (docs::CHECKED) \
             or said not to be, with why (docs::NOT_RUN), once",
            sample.readme,
            sample.line,
            sample.command
        );
    }
    for (readme, command) in CHECKED
        .iter()
        .map(|(r, c, _)| (r, c))
        .chain(NOT_RUN.iter().map(|(r, c, _)| (r, c)))
    {
        assert!(
            samples
                .iter()
                .any(|s| s.readme == *readme && s.command == *command),
            "{readme} has no sample of `{command}` any more: remove it from docs::CHECKED or NOT_RUN"
        );
    }
}

#[test]
fn a_sample_that_differs_fails() {
    let sample = Sample {
        readme: "README.md".into(),
        line: 1,
        command: "wpod run pod.yaml".into(),
        output: "[app] 2026-11-27T12:00:00Z\n[app] hello [..]\n...\n".into(),
    };
    // Times and wildcards match...
    assert_prints(
        &sample,
        "[app] 2031-01-02T03:04:05Z\n[app] hello wpod\n[app] more\n",
    );
    // ...but a line that differs does not.
    let differs = std::panic::catch_unwind(|| assert_prints(&sample, "[app] hello wpod\n"));
    assert!(differs.is_err());
    // Nor does an order that differs within one stream.
    let sample = Sample {
        output: "[a] 1\n[b] 1\n[a] 2\n".into(),
        ..sample
    };
    let tag = |l: &str| l.split(' ').next().unwrap_or_default().to_owned();
    assert_prints_per_stream(&sample, "[b] 1\n[a] 1\n[a] 2\n", tag);
    let differs = std::panic::catch_unwind(|| {
        assert_prints_per_stream(&sample, "[a] 2\n[b] 1\n[a] 1\n", tag)
    });
    assert!(differs.is_err());
}
