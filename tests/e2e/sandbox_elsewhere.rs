//! The OS wall where it does not exist (macOS, Windows): the same flags, a
//! documented no-op. The wall itself is tested on Linux (`sandbox.rs`).
#![cfg(not(target_os = "linux"))]

use crate::support::Workspace;

const HELLO: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: hello}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: app, image: '@hello@'}\n";

#[test]
fn auto_runs_without_the_wall_and_required_refuses() {
    eprintln!(
        "note: the OS wall tests need Linux and the signal tests Unix; here the wall's absence is checked"
    );
    let workspace = Workspace::new();
    let run = workspace.run_pod(HELLO, &["--isolation", "auto"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("[app] hello from wpod"),
        "{}",
        run.stdout
    );
    let run = workspace.run_pod(HELLO, &["--isolation", "required"]);
    run.expect_code(125);
    assert!(run.stderr.contains("wpod: error:"), "{}", run.stderr);
    let run = workspace.run_pod(HELLO, &["--isolation", "none"]);
    run.expect_code(0);
}
