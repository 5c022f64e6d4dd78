//! WASI 0.3 (wasip3) components: the `hello_p3` guest, a `wasi:cli/run@0.3.0` command built
//! with the `wasip3` crate, run by the `wpod` binary behind the OS wall (where it can be had)
//! and in wpod's own process: its stdout and stderr (WASI 0.3 streams), environment,
//! arguments, a file written in a preopened hostPath, and its exit code.

use crate::support::{Run, Workspace, container, isolations};

/// Runs `hello_p3 ARGS` as container `app` (with `GREETING=hi` when
/// `greeting`, and the workspace's `data/` folder at `/data`), `-o json`.
fn run_hello_p3(workspace: &Workspace, args: &str, greeting: bool, isolation: &str) -> Run {
    std::fs::create_dir_all(workspace.path().join("data")).unwrap();
    let env = if greeting {
        "    env: [{name: GREETING, value: hi}]\n"
    } else {
        ""
    };
    workspace.run_pod(
        &format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: p3}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: data, hostPath: {{path: '@ws@/data', type: Directory}}}}
  containers:
  - name: app
    image: '@hello_p3@'
    args: {args}
{env}    volumeMounts: [{{name: data, mountPath: /data}}]
"
        ),
        &["-o", "json", "--wasip3", isolation],
    )
}

/// The lines container `app` wrote (on wpod's stderr with `-o json`).
fn app_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter_map(|line| line.strip_prefix("[app] "))
        .collect()
}

#[test]
fn a_wasip3_command_runs_with_its_env_files_and_exit_code() {
    for isolation in isolations() {
        let workspace = Workspace::new();
        let run = run_hello_p3(&workspace, "[/data, '7']", true, isolation);
        run.expect_code(7);
        // Its `main` (the wasi:cli/run@0.2.0 export a wasm32-wasip2 bin also has) would
        // say "ran as a WASI 0.2 command" and exit 3.
        assert_eq!(
            app_lines(&run),
            [
                "hello from wasip3",
                "GREETING=hi",
                "wrote /data/p3.txt",
                "exiting with 7",
            ],
            "{isolation}: {}",
            run.stderr
        );
        let status = run.json();
        let terminated = &container(&status, "app")["state"]["terminated"];
        assert_eq!(terminated["exitCode"], 7, "{isolation}: {status:#}");
        assert_eq!(terminated["reason"], "Error", "{isolation}: {status:#}");
        assert_eq!(
            std::fs::read_to_string(workspace.path().join("data/p3.txt")).unwrap(),
            "written by wasip3\n",
            "{isolation}"
        );
        assert!(workspace.leftovers().is_empty(), "{isolation}");
    }
}

#[test]
fn a_wasip3_command_that_returns_ok_completes() {
    for isolation in isolations() {
        let workspace = Workspace::new();
        let run = run_hello_p3(&workspace, "[]", false, isolation);
        run.expect_code(0);
        assert_eq!(
            app_lines(&run),
            ["hello from wasip3", "GREETING=(unset)", "exiting with 0"],
            "{isolation}: {}",
            run.stderr
        );
        let status = run.json();
        assert_eq!(status["phase"], "Succeeded", "{isolation}: {status:#}");
        let terminated = &container(&status, "app")["state"]["terminated"];
        assert_eq!(terminated["reason"], "Completed", "{isolation}: {status:#}");
        assert!(
            !workspace.path().join("data/p3.txt").exists(),
            "{isolation}"
        );
    }
}

/// Without `--wasip3` the engine has no async ABI: a WASI 0.3 component is
/// refused, and the message says how to run it.
#[test]
fn a_wasip3_command_without_the_flag_says_how_to_run_it() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p3}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: c, image: '@hello_p3@'}\n",
        &["--isolation=none"],
    );
    run.expect_code(126);
    assert!(
        run.stderr.contains("is a WASI 0.3 component (it uses the component model's async ABI); run it with `wpod run --wasip3`"),
        "{run:?}"
    );
}
