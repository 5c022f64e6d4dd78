//! Tiered compilation (`--compiler auto`, the default): a program never
//! compiled runs at once from Winch's code while Cranelift compiles it for
//! later runs; what Winch cannot compile falls back to Cranelift. Real
//! guests, a compile cache of the test's own, with and without the wall.

use crate::support::{Run, Workspace, isolations};

const HELLO: &str = "apiVersion: v1
kind: Pod
metadata: {name: tiered}
spec:
  restartPolicy: Never
  containers:
  - {name: hello, image: '@hello@'}
";

/// `wpod run` of `pod` with its own compile cache and wpod's debug lines.
fn run(
    workspace: &Workspace,
    pod: &std::path::Path,
    cache: &std::path::Path,
    extra: &[&str],
) -> Run {
    let output = workspace
        .wpod()
        .env("WPOD_CACHE_DIR", cache)
        .env("WPOD_LOG", "wpod=debug")
        .arg("run")
        .arg(pod)
        .args(extra)
        .output()
        .unwrap();
    Run::from(output)
}

/// The tiers the cache's file index records (`files/*`, fourth line), and
/// how many compiled artifacts the cache holds.
fn cache_contents(cache: &std::path::Path) -> (Vec<String>, usize) {
    let tiers = std::fs::read_dir(cache.join("files"))
        .unwrap()
        .flatten()
        .map(|entry| {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            text.lines().nth(3).unwrap_or("none").to_owned()
        })
        .collect();
    let artifacts = std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .count();
    (tiers, artifacts)
}

#[test]
fn a_cache_miss_runs_from_winch_and_leaves_cranelifts_artifact_behind() {
    for isolation in isolations() {
        let workspace = Workspace::new();
        let cache = workspace.path().join("cache");
        let pod = workspace.pod(HELLO);
        let first = run(&workspace, &pod, &cache, &[isolation]);
        first.expect_code(0);
        assert!(
            first.stdout.contains("[hello] hello"),
            "{isolation}: {first:?}"
        );
        assert!(
            first.stderr.contains("compiled") && first.stderr.contains("tier=\"winch\""),
            "{isolation}: the first run is not Winch's:\n{}",
            first.stderr
        );
        // Cranelift's artifact replaced Winch's before the run ended.
        assert_eq!(
            cache_contents(&cache),
            (vec!["cranelift".to_owned()], 1),
            "{isolation}:\n{}",
            first.stderr
        );
        let second = run(&workspace, &pod, &cache, &[isolation]);
        second.expect_code(0);
        assert!(
            second
                .stderr
                .contains("loaded from the compile cache program=")
                && second.stderr.contains("tier=\"cranelift\"")
                && !second.stderr.contains("tier=\"winch\""),
            "{isolation}: the second run is not Cranelift's:\n{}",
            second.stderr
        );
    }
}

/// `(module (func (export "_start") return_call 1) (func))`: a tail call,
/// which Winch does not compile (wasmtime 48).
const TAIL_CALL: &[u8] = b"\0asm\x01\0\0\0\
    \x01\x04\x01\x60\0\0\
    \x03\x03\x02\0\0\
    \x07\x0a\x01\x06_start\0\0\
    \x0a\x09\x02\x04\0\x12\x01\x0b\x02\0\x0b";

#[test]
fn a_forced_winch_run_of_a_tail_call_falls_back_to_cranelift_with_a_line() {
    for isolation in isolations() {
        let workspace = Workspace::new();
        let cache = workspace.path().join("cache");
        std::fs::write(workspace.path().join("tail.wasm"), TAIL_CALL).unwrap();
        let pod = workspace.pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: tail}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: app, image: ./tail.wasm}\n",
        );
        let run = run(
            &workspace,
            &pod,
            &cache,
            &[isolation, "--compiler", "winch"],
        );
        run.expect_code(0);
        assert!(
            run.stderr.contains("./tail.wasm: Winch cannot compile")
                && run.stderr.contains("it is compiled by Cranelift instead"),
            "{isolation}:\n{}",
            run.stderr
        );
        assert_eq!(
            cache_contents(&cache),
            (vec!["cranelift".to_owned()], 1),
            "{isolation}"
        );
    }
}

#[test]
fn a_bad_compiler_name_is_refused_naming_the_flag() {
    let workspace = Workspace::new();
    let pod = workspace.pod(HELLO);
    let run = workspace.run(&["run", pod.to_str().unwrap(), "--compiler", "llvm"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--compiler"), "{run:?}");
    let run = Run::from(
        workspace
            .wpod()
            .env("WPOD_COMPILER", "llvm")
            .args(["run", pod.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert!(
        run.stderr
            .contains("WPOD_COMPILER: `llvm` is not a compiler; say auto, cranelift or winch"),
        "{run:?}"
    );
}
