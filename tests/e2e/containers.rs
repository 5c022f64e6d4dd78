//! Containers: argv from command/args, env with `$(VAR)` expansion, the
//! working directory, no leak of wpod's environment, tagged output.

use crate::support::Workspace;

fn lines_of(run: &crate::support::Run, container: &str) -> Vec<String> {
    let prefix = format!("[{container}] ");
    run.stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn argv_env_and_working_dir() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: argv}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: '@probe@'
    command: [probe, env]
    args: ['$(GREETING) $(WHO)', '$$(GREETING)', '$(UNDEFINED)']
    workingDir: /work
    env:
    - {name: GREETING, value: hello}
    - {name: WHO, value: 'world of $(GREETING)'}
    - {name: LATER, value: '$(NEXT)'}
    - {name: NEXT, value: next}
",
        &[],
    );
    run.expect_code(0);
    let lines = lines_of(&run, "app");
    let expected = [
        "argc=5",
        "argv[0]=probe",
        "argv[1]=env",
        "argv[2]=hello world of hello",
        "argv[3]=$(GREETING)",
        "argv[4]=$(UNDEFINED)",
        "env GREETING=hello",
        "env LATER=$(NEXT)",
        "env NEXT=next",
        "env WHO=world of hello",
        // FIXME: wpod hands workingDir to the guest as WASI 0.2's initial-cwd,
        // but the wasi-libc in Rust 1.95's std does not read it and starts in
        // `/`. Expect `cwd=/work` once it does.
        "cwd=/",
    ];
    assert_eq!(lines, expected, "{}", run.stderr);
}

#[test]
fn without_command_argv0_is_the_image_file_name() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: argv0}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: '@probe@'\n    args: [env]\n",
        &[],
    );
    run.expect_code(0);
    let lines = lines_of(&run, "app");
    assert_eq!(lines[..3], ["argc=2", "argv[0]=probe.wasm", "argv[1]=env"]);
}

#[test]
fn wpod_environment_does_not_leak() {
    let workspace = Workspace::new();
    let pod = workspace.pod("apiVersion: v1\nkind: Pod\nmetadata: {name: leak}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: '@probe@'\n    args: [env]\n");
    let run: crate::support::Run = workspace
        .wpod()
        .env("SECRET_TOKEN", "hunter2")
        .arg("run")
        .arg(&pod)
        .output()
        .unwrap()
        .into();
    run.expect_code(0);
    let env: Vec<_> = lines_of(&run, "app")
        .into_iter()
        .filter(|l| l.starts_with("env "))
        .collect();
    assert!(env.is_empty(), "the container saw {env:?}");
}

#[test]
fn image_config_supplies_entrypoint_cmd_and_env() {
    let workspace = Workspace::new();
    let run = workspace.run_pod("apiVersion: v1\nkind: Pod\nmetadata: {name: cfg}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: probe\n", &[]);
    run.expect_code(0);
    let lines = lines_of(&run, "app");
    assert_eq!(lines[..3], ["argc=2", "argv[0]=probe", "argv[1]=env"]);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("env PATH=/usr/local/bin")),
        "{lines:?}"
    );
}

#[test]
fn stdout_and_stderr_are_tagged_lines_and_tags_can_be_turned_off() {
    let workspace = Workspace::new();
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: lines}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: talker\n    image: '@probe@'\n    args: [lines, '3']\n";
    let run = workspace.run_pod(yaml, &[]);
    run.expect_code(0);
    assert_eq!(
        run.stdout,
        "[talker] line 1\n[talker] line 2\n[talker] line 3\n"
    );
    assert!(
        run.stderr
            .contains("[talker] err 1\n[talker] err 2\n[talker] err 3\n"),
        "{}",
        run.stderr
    );
    let run = workspace.run_pod(yaml, &["--no-tags"]);
    assert_eq!(run.stdout, "line 1\nline 2\nline 3\n");
}

#[test]
fn two_pods_in_one_manifest_both_run() {
    let workspace = Workspace::new();
    let one = "apiVersion: v1\nkind: Pod\nmetadata: {name: one}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: a, image: '@hello@'}\n";
    let two = one
        .replace("name: one", "name: two")
        .replace("name: a,", "name: b,");
    let run = workspace.run_pod(&format!("{one}---\n{two}"), &["-o", "json"]);
    run.expect_code(0);
    // With -o, stdout holds only the status; the containers' lines go to stderr.
    assert!(
        run.stderr.contains("[a] hello from wpod") && run.stderr.contains("[b] hello from wpod"),
        "{}",
        run.stderr
    );
    let list = run.json();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][1]["metadata"]["name"], "two");
    assert_eq!(list["items"][1]["status"]["phase"], "Succeeded");
}
