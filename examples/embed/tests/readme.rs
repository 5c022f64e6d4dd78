//! The README's sample output, checked: runs this example's binary and
//! compares what it prints with the README's block of `cargo run -p
//! wpod-embed` (read out of the README, the only copy), as tests/e2e/docs.rs
//! does for the other READMEs.

use std::process::Command;

/// Which task prints `line`: a container's output comes through the log
/// sink on that container's task, its events and the pod's through the
/// event loop, and the two containers run side by side. Within each of
/// these the order is fixed; across them it is not.
fn stream(line: &str) -> String {
    if let Some(rest) = line.strip_prefix("  | embedded/") {
        let container = rest.split(':').next().unwrap_or_default();
        return format!("the output of {container}");
    }
    let (first, rest) = line.split_once(' ').unwrap_or((line, ""));
    let event = ["started", "ready: ", "exited ", "restarts in "]
        .iter()
        .any(|e| rest.starts_with(e))
        || first.ends_with(':');
    if event {
        format!("the events of {}", first.trim_end_matches(':'))
    } else {
        "the pod's events and the end".to_owned()
    }
}

#[test]
fn prints_what_its_readme_shows() {
    let root = xtask::workspace_root();
    let sample =
        xtask::readme::sample(&root, "examples/embed/README.md", "cargo run -p wpod-embed");
    let output = Command::new(env!("CARGO_BIN_EXE_wpod-embed"))
        // The compile cache of the end-to-end tests, warm as a user's.
        .env("WPOD_CACHE_DIR", root.join("target").join("e2e-cache"))
        .output()
        .expect("running wpod-embed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wpod-embed failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Each task's lines in the order printed; how they interleave varies.
    xtask::readme::assert_prints_per_stream(&sample, &stdout, stream);
}

#[test]
fn streams_split_the_lines_by_task() {
    assert_eq!(
        stream("  | embedded/writer: wrote /shared/note.txt"),
        "the output of writer"
    );
    assert_eq!(stream("writer ready: true"), "the events of writer");
    assert_eq!(
        stream("greeter exited with 0 (Completed)"),
        "the events of greeter"
    );
    assert_eq!(
        stream("greeter printed: [\"hello from wpod\"]"),
        "the pod's events and the end"
    );
    assert_eq!(stream("pod is Running"), "the pod's events and the end");
}
