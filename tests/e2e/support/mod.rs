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

    /// The `TMPDIR` of the runs: `wpod-<uid>/` inside holds the pods'
    /// scratch folders.
    pub fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// The state folder of the runs of user `uid` (`$TMPDIR/wpod-<uid>`;
    /// `%TEMP%\\wpod` on Windows).
    pub fn state_dir(&self, uid: u32) -> PathBuf {
        if cfg!(unix) {
            self.tmp().join(format!("wpod-{uid}"))
        } else {
            self.tmp().join("wpod")
        }
    }

    /// Scratch folders left in this workspace (should be none after a run).
    pub fn leftovers(&self) -> Vec<String> {
        match std::fs::read_dir(self.state_dir(current_uid())) {
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

    /// Runs `wpod ARGS` to its end with `input` on its standard input.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Run {
        use std::io::Write as _;
        let mut child = self
            .wpod()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running wpod");
        let mut stdin = child.stdin.take().expect("wpod's stdin");
        // wpod may not read it all (an error first): a closed pipe is fine.
        let _ = stdin.write_all(input);
        drop(stdin);
        child.wait_with_output().expect("waiting for wpod").into()
    }

    /// `wpod run pod.yaml -o json` after writing `yaml` as the pod.
    pub fn run_pod(&self, yaml: &str, extra: &[&str]) -> Run {
        let pod = self.pod(yaml);
        let mut args = vec!["run", pod.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// The user the tests run as.
pub fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        rustix::process::geteuid().as_raw()
    }
    #[cfg(not(unix))]
    {
        0
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

/// A TCP port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How a test runs its pods both ways: in wpod's own process, and behind
/// the OS wall where it can be had.
pub fn isolations() -> Vec<&'static str> {
    #[cfg(target_os = "linux")]
    if crate::sandbox::wall_available() {
        return vec!["--isolation=none", "--isolation=required"];
    }
    vec!["--isolation=none"]
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

/// A second, unprivileged user for tests of what two users may do to each
/// other: `wpod-e2e`, created once (needs root). `None`, after printing why,
/// when the tests do not run as root.
#[cfg(target_os = "linux")]
pub fn other_user() -> Option<OtherUser> {
    if current_uid() != 0 {
        eprintln!("skipped: creating a second user needs root");
        return None;
    }
    let name = "wpod-e2e";
    let exists = Command::new("id")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        // Two tests may race to create it; whoever loses finds it made.
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .status();
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, name]).output().expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no user {name}: useradd failed"))
    };
    Some(OtherUser {
        name: name.into(),
        uid: id("-u"),
        gid: id("-g"),
    })
}

/// See [`other_user`].
#[cfg(target_os = "linux")]
#[derive(Debug, Clone)]
pub struct OtherUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[cfg(target_os = "linux")]
impl OtherUser {
    /// `command` (a `Workspace::wpod()`), run as this user with the same
    /// environment and folder.
    pub fn command(&self, command: &Command) -> Command {
        let mut runuser = Command::new("runuser");
        runuser
            .args(["-u", &self.name, "--"])
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            if let Some(value) = value {
                runuser.env(key, value);
            }
        }
        if let Some(dir) = command.get_current_dir() {
            runuser.current_dir(dir);
        }
        runuser
    }

    pub fn chown(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).unwrap();
    }
}
