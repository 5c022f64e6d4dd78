//! Test support, in one place: builds the guests and their images once per
//! test run, gives each test a private workspace, and runs the `wpod` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The built guests and images.
pub struct Guests {
    pub root: PathBuf,
    pub images: PathBuf,
}

/// Builds the guests (both targets) and the images, once.
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| {
        let root = xtask::workspace_root();
        xtask::build_guests(&root).unwrap_or_else(|e| panic!("building the guests: {e}"));
        let images =
            xtask::build_images(&root).unwrap_or_else(|e| panic!("assembling the images: {e}"));
        Guests { root, images }
    })
}

/// A guest built for wasm32-wasip2 (a component).
pub fn component(name: &str) -> PathBuf {
    xtask::guest(&guests().root, "wasm32-wasip2", name)
}

/// A guest built for wasm32-wasip1 (a core module).
pub fn module(name: &str) -> PathBuf {
    xtask::guest(&guests().root, "wasm32-wasip1", name)
}

/// The compile cache shared by the tests (warm across runs, like a user's).
pub fn cache_dir() -> PathBuf {
    guests().root.join("target").join("e2e-cache")
}

/// A private folder for one test; the pod's scratch folders go inside it
/// (`TMPDIR`), so a test can check that nothing was left behind.
pub struct Workspace {
    dir: tempfile::TempDir,
}

/// The result of one `wpod` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both outputs unless the run exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "wpod exited {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        let workspace = Workspace {
            dir: tempfile::tempdir().expect("a temp folder"),
        };
        std::fs::create_dir(workspace.tmp()).expect("tmp folder");
        workspace
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The `TMPDIR` of the runs: `wpod/` inside holds the pods' scratch folders.
    pub fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// Scratch folders left in this workspace (should be none after a run).
    pub fn leftovers(&self) -> Vec<String> {
        match std::fs::read_dir(self.tmp().join("wpod")) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes `pod.yaml`, with `@name@` standing for the component `name`
    /// and `@name.p1@` for its core-module build, and `@ws@` for this
    /// workspace's folder.
    pub fn pod(&self, yaml: &str) -> PathBuf {
        self.write("pod.yaml", expand(yaml, self.path()))
    }

    /// `wpod` with a clean environment: only what the test sets.
    pub fn wpod(&self) -> Command {
        let _ = guests();
        let mut command = Command::new(env!("CARGO_BIN_EXE_wpod"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TMPDIR", self.tmp())
            .env("HOME", self.path())
            .env("WPOD_IMAGE_PATH", &guests().images)
            .env("WPOD_CACHE_DIR", cache_dir())
            .current_dir(self.path());
        command
    }

    /// Runs `wpod ARGS` to its end.
    pub fn run(&self, args: &[&str]) -> Run {
        self.wpod()
            .args(args)
            .output()
            .expect("running wpod")
            .into()
    }

    /// `wpod run pod.yaml -o json` after writing `yaml` as the pod.
    pub fn run_pod(&self, yaml: &str, extra: &[&str]) -> Run {
        let pod = self.pod(yaml);
        let mut args = vec!["run", pod.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// Replaces `@guest@`, `@guest.p1@` and `@ws@` in a test's YAML.
pub fn expand(yaml: &str, workspace: &Path) -> String {
    let mut out = String::new();
    let mut parts = yaml.split('@');
    out.push_str(parts.next().unwrap_or_default());
    let mut inside = true;
    for part in parts {
        if inside {
            let replacement = match part {
                "ws" => workspace.display().to_string(),
                name => match name.strip_suffix(".p1") {
                    Some(name) => module(name).display().to_string(),
                    None => component(name).display().to_string(),
                },
            };
            out.push_str(&replacement);
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    out
}

/// The status of one container in `-o json` output.
pub fn container<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .chain(status["containerStatuses"].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no status for container {name} in {status:#}"))
}

/// Whether 127.0.0.2 can be bound (Linux and Windows: all of 127/8 is
/// loopback; macOS has only 127.0.0.1 unless an alias is added). Prints why
/// when it cannot.
pub fn second_loopback_address() -> bool {
    let ok = std::net::TcpListener::bind("127.0.0.2:0").is_ok();
    if !ok {
        eprintln!(
            "skipped: 127.0.0.2 is not a local address here (macOS: `sudo ifconfig lo0 alias 127.0.0.2`)"
        );
    }
    ok
}
