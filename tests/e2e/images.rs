//! Images: `.wasm` paths (components and core modules), image directories,
//! and clear errors for what is not a runnable Wasm program.

use crate::support::{Workspace, component, module};

fn pod_with_image(image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: img}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: {image}\n"
    )
}

#[test]
fn component_and_core_module_both_run() {
    for image in [component("hello"), module("hello")] {
        let workspace = Workspace::new();
        let run = workspace.run_pod(&pod_with_image(image.to_str().unwrap()), &[]);
        run.expect_code(0);
        assert_eq!(run.stdout, "[app] hello from wpod\n");
    }
}

#[test]
fn relative_image_path_is_relative_to_the_manifest() {
    let workspace = Workspace::new();
    std::fs::create_dir(workspace.path().join("bin")).unwrap();
    std::fs::copy(component("hello"), workspace.path().join("bin/hello.wasm")).unwrap();
    let pod = workspace.write("manifests/pod.yaml", pod_with_image("../bin/hello.wasm"));
    // Run from another folder: the path must not depend on the current directory.
    let run: crate::support::Run = workspace
        .wpod()
        .arg("run")
        .arg(&pod)
        .current_dir("/")
        .output()
        .unwrap()
        .into();
    run.expect_code(0);
    assert!(run.stdout.contains("hello from wpod"));
}

#[track_caller]
fn check_refused(image_bytes: &[u8], expected: &str) {
    let workspace = Workspace::new();
    workspace.write("image.wasm", image_bytes);
    let run = workspace.run_pod(&pod_with_image("image.wasm"), &[]);
    // `docker run`'s "cannot execute".
    run.expect_code(126);
    // The manifest's file first, then the pod and the field (one error style).
    assert!(run.stderr.contains("pod.yaml: (pod `"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("spec.containers[0].image: image `image.wasm`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(expected),
        "expected {expected:?} in:\n{}",
        run.stderr
    );
}

#[test]
fn text_file_is_refused() {
    check_refused(b"echo hello\n", "is a text file, not a WebAssembly program");
}

#[test]
fn native_executable_is_refused() {
    let native = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let expected = if cfg!(windows) {
        "a native Windows executable"
    } else if cfg!(target_os = "macos") {
        "a native macOS executable"
    } else {
        "a native ELF executable"
    };
    check_refused(&native, expected);
}

#[test]
fn truncated_module_is_refused() {
    let hello = std::fs::read(component("hello")).unwrap();
    check_refused(
        &hello[..hello.len() / 2],
        "is not a valid WebAssembly program",
    );
}

#[test]
fn module_without_start_is_not_a_command() {
    // The smallest valid core module: a header and nothing else.
    check_refused(
        b"\0asm\x01\0\0\0",
        "is not a WASI command: the module exports no `_start` function",
    );
}

#[test]
fn missing_image_is_named_with_where_it_was_looked_for() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(&pod_with_image("missing.wasm"), &[]);
    run.expect_code(127);
    assert!(
        run.stderr
            .contains("image `missing.wasm` not found; looked for"),
        "{}",
        run.stderr
    );
    let run = workspace.run_pod(&pod_with_image("no-such/image:v9"), &[]);
    run.expect_code(127);
    assert!(run.stderr.contains("no-such/image/v9"), "{}", run.stderr);
}

#[test]
fn image_directory_shows_its_files_read_only_at_root() {
    let workspace = Workspace::new();
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: img}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: cat\n    image: probe\n    args: [read, /etc/motd]\n  - name: write\n    image: probe\n    args: [write, /etc/motd, changed]\n";
    let run = workspace.run_pod(yaml, &["-o", "json"]);
    run.expect_code(1);
    let status = run.json();
    assert_eq!(
        crate::support::container(&status, "cat")["state"]["terminated"]["exitCode"],
        0
    );
    assert_eq!(
        crate::support::container(&status, "write")["state"]["terminated"]["exitCode"],
        1
    );
    assert!(
        run.stderr.contains("[cat] inside the probe image"),
        "{run:?}"
    );
}

#[test]
fn second_run_loads_from_the_cache() {
    let workspace = Workspace::new();
    let cache = workspace.path().join("cache");
    let pod = workspace.pod(&pod_with_image(component("hello").to_str().unwrap()));
    let run_once = || -> crate::support::Run {
        workspace
            .wpod()
            .env("WPOD_CACHE_DIR", &cache)
            .env("WPOD_LOG", "wpod=debug")
            .arg("run")
            .arg(&pod)
            .output()
            .unwrap()
            .into()
    };
    let first = run_once();
    first.expect_code(0);
    assert!(first.stderr.contains("compiled"), "{}", first.stderr);
    let artifacts = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .count()
    };
    assert_eq!(artifacts(&cache), 1, "one compiled artifact");
    let second = run_once();
    second.expect_code(0);
    assert!(
        second.stderr.contains("loaded from the compile cache"),
        "{}",
        second.stderr
    );
    assert!(!second.stderr.contains("compiled"), "{}", second.stderr);
    // --no-cache compiles and writes nothing.
    let no_cache: crate::support::Run = workspace
        .wpod()
        .env("WPOD_CACHE_DIR", workspace.path().join("unused"))
        .env("WPOD_LOG", "wpod=debug")
        .args(["run", "--no-cache"])
        .arg(&pod)
        .output()
        .unwrap()
        .into();
    no_cache.expect_code(0);
    assert!(no_cache.stderr.contains("compiled"));
    assert!(!workspace.path().join("unused").exists());
}

#[test]
fn a_changed_wasm_file_is_compiled_again() {
    let workspace = Workspace::new();
    let cache = workspace.path().join("cache");
    let app = workspace.path().join("app.wasm");
    let pod = workspace.pod(&pod_with_image("app.wasm"));
    let run = || -> crate::support::Run {
        workspace
            .wpod()
            .env("WPOD_CACHE_DIR", &cache)
            .arg("run")
            .arg(&pod)
            .output()
            .unwrap()
            .into()
    };
    std::fs::copy(component("hello"), &app).unwrap();
    run().expect_code(0);
    let warm = run();
    warm.expect_code(0);
    assert_eq!(warm.stdout, "[app] hello from wpod\n");
    // Same path, new content: the cache must not answer with the old program.
    std::fs::copy(component("probe"), &app).unwrap();
    let changed = run();
    changed.expect_code(64);
    assert!(
        changed.stderr.contains("exited with code 64"),
        "{}",
        changed.stderr
    );
}
