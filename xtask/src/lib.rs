//! Builds the Wasm guests in `guests/` and assembles them into image
//! directories (`target/images/<name>/<tag>/{image.json,rootfs/}`), the
//! images that the examples and the end-to-end tests run.
//!
//! Used by `cargo xtask` and by the end-to-end tests; never by the `wpod`
//! library, whose users compile no guests.

pub mod readme;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

pub type Result<T> = std::result::Result<T, String>;

/// The Wasm targets the guests are built for.
pub const TARGETS: [&str; 2] = ["wasm32-wasip2", "wasm32-wasip1"];

/// Says what xtask does now, with the time since it started, on stderr.
pub fn step(what: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    eprintln!("xtask: [{:>5.1} s] {what}", elapsed.as_secs_f64());
}

/// Whether cargo's own output (its progress bar, "Compiling" lines) should
/// be hidden: when nobody watches stderr (tests, CI logs), it is noise.
pub fn quiet() -> bool {
    !std::io::stderr().is_terminal()
}

/// The repository's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Where the built guests are: `<dir>/<target>/release/<name>.wasm`.
pub fn guests_target_dir(root: &Path) -> PathBuf {
    root.join("target").join("guests")
}

/// The path of one built guest.
pub fn guest(root: &Path, target: &str, name: &str) -> PathBuf {
    guests_target_dir(root)
        .join(target)
        .join("release")
        .join(format!("{name}.wasm"))
}

/// Adds the Wasm targets with rustup when they are missing: a
/// `rust-toolchain.toml` lists them, but plain `cargo build` does not
/// install a missing target.
pub fn ensure_wasm_targets() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let Ok(installed) = installed else {
        // No rustup: trust the toolchain to have the targets; cargo will say if not.
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&installed.stdout);
    let missing: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: adding Rust targets {}", missing.join(" "));
    let status = Command::new("rustup")
        .args(["target", "add"])
        .args(&missing)
        .status()
        .map_err(|e| format!("running rustup: {e}"))?;
    if !status.success() {
        return Err(format!("`rustup target add {}` failed", missing.join(" ")));
    }
    Ok(())
}

/// Builds every guest for both targets (release). Incremental: a second call
/// with nothing changed takes a fraction of a second.
pub fn build_guests(root: &Path) -> Result<()> {
    ensure_wasm_targets()?;
    if !guests_target_dir(root).join("wasm32-wasip1").exists() {
        step(
            "first build of the guests: about 3 minutes on 2 cores (Rust's std for two Wasm targets); later builds take a second",
        );
    }
    // Components report their real exit status through
    // `wasi:cli/exit#exit-with-code` (stable since WASI 0.2.12, which
    // wasmtime-wasi 48 provides); preview-1 modules need no feature for it.
    for (target, features) in [
        ("wasm32-wasip2", Some("exit-with-code")),
        ("wasm32-wasip1", None),
    ] {
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo
            .current_dir(root.join("guests"))
            .args(["build", "--release", "--target", target])
            .arg("--target-dir")
            .arg(guests_target_dir(root));
        if quiet() {
            cargo.arg("--quiet");
        } else {
            step(&format!("building the guests for {target}"));
        }
        if let Some(features) = features {
            cargo.args(["--features", features]);
        }
        // When called from inside another cargo command (a test, a build
        // script), settings meant for the host build must not leak into the
        // Wasm build.
        for var in [
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cargo.env_remove(var);
        }
        let status = cargo
            .status()
            .map_err(|e| format!("running cargo for the guests: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building the guests for {target} failed (see cargo's output above)"
            ));
        }
    }
    Ok(())
}

/// One image to assemble.
struct ImageRecipe {
    name: &'static str,
    tag: &'static str,
    /// (path in rootfs, guest program) pairs.
    programs: &'static [(&'static str, &'static str)],
    /// (path in rootfs, contents) pairs.
    files: &'static [(&'static str, &'static str)],
    entrypoint: Option<&'static [&'static str]>,
    cmd: Option<&'static [&'static str]>,
    working_dir: Option<&'static str>,
}

/// The applets of `box` that an image's `/bin` holds, busybox-style.
const BOX_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "cp", "ls", "mkdir", "rm", "mv", "touch", "sleep", "true", "false", "pwd",
    "env", "head", "tail", "wc", "date", "test", "seq", "httpd",
];

const TOMCAT_START: &str = "#!/bin/sh\n# The tomcat role: serve the webapps folder (WARs included) on 8080.\nhttpd -p 8080 -h /root/apache-tomcat-7.0.42-v2/webapps\n";

const RECIPES: &[ImageRecipe] = &[
    ImageRecipe {
        name: "hello",
        tag: "latest",
        programs: &[("bin/hello", "hello")],
        files: &[],
        entrypoint: Some(&["/bin/hello"]),
        cmd: None,
        working_dir: None,
    },
    ImageRecipe {
        name: "busybox",
        tag: "latest",
        programs: &[],
        files: &[],
        entrypoint: None,
        cmd: Some(&["sh"]),
        working_dir: None,
    },
    ImageRecipe {
        name: "ubuntu",
        tag: "latest",
        programs: &[],
        files: &[],
        entrypoint: None,
        cmd: Some(&["sh"]),
        working_dir: None,
    },
    ImageRecipe {
        name: "nginx",
        tag: "latest",
        programs: &[("usr/sbin/nginx", "httpd")],
        files: &[(
            "usr/share/nginx/html/index.html",
            "<h1>Welcome to nginx (wpod)</h1>\n",
        )],
        entrypoint: Some(&["nginx"]),
        cmd: Some(&["-p", "80", "-h", "/usr/share/nginx/html"]),
        working_dir: None,
    },
    ImageRecipe {
        name: "geektime/sample",
        tag: "v2",
        programs: &[],
        files: &[],
        entrypoint: None,
        cmd: Some(&["sh"]),
        working_dir: None,
    },
    ImageRecipe {
        name: "geektime/tomcat",
        tag: "7.0",
        programs: &[],
        files: &[
            ("root/apache-tomcat-7.0.42-v2/bin/start.sh", TOMCAT_START),
            (
                "root/apache-tomcat-7.0.42-v2/webapps/ROOT/index.html",
                "<h1>tomcat (wpod)</h1>\n",
            ),
        ],
        entrypoint: None,
        cmd: Some(&["sh", "-c", "/root/apache-tomcat-7.0.42-v2/bin/start.sh"]),
        working_dir: None,
    },
    ImageRecipe {
        name: "logship",
        tag: "latest",
        programs: &[("usr/bin/logship", "logship")],
        files: &[],
        entrypoint: Some(&["logship"]),
        cmd: Some(&["/var/log"]),
        working_dir: None,
    },
    ImageRecipe {
        name: "ambassador",
        tag: "latest",
        programs: &[("usr/bin/ambassador", "ambassador")],
        files: &[],
        entrypoint: Some(&["ambassador"]),
        cmd: None,
        working_dir: None,
    },
    ImageRecipe {
        name: "greeter",
        tag: "latest",
        programs: &[("usr/bin/greeter", "http_proxy")],
        files: &[],
        entrypoint: Some(&["greeter"]),
        cmd: None,
        working_dir: None,
    },
    ImageRecipe {
        name: "fetch",
        tag: "latest",
        programs: &[("usr/bin/fetch", "fetch")],
        files: &[],
        entrypoint: Some(&["fetch"]),
        cmd: None,
        working_dir: None,
    },
    ImageRecipe {
        name: "probe",
        tag: "latest",
        programs: &[
            ("usr/bin/probe", "probe"),
            ("usr/bin/http_get", "http_get"),
            ("usr/bin/udp_echo", "udp_echo"),
        ],
        files: &[("etc/motd", "inside the probe image\n")],
        entrypoint: Some(&["probe"]),
        cmd: Some(&["env"]),
        working_dir: Some("/"),
    },
];

/// Assembles every image under `target/images` from the built guests and
/// returns that folder (the value for `WPOD_IMAGE_PATH`).
pub fn build_images(root: &Path) -> Result<PathBuf> {
    let images = root.join("target").join("images");
    for recipe in RECIPES {
        let dir = images.join(recipe.name).join(recipe.tag);
        let rootfs = dir.join("rootfs");
        if rootfs.exists() {
            std::fs::remove_dir_all(&rootfs)
                .map_err(|e| format!("clearing {}: {e}", rootfs.display()))?;
        }
        let box_wasm = guest(root, "wasm32-wasip2", "box");
        for applet in BOX_APPLETS {
            place(&box_wasm, &rootfs.join("bin").join(applet))?;
        }
        for (path, program) in recipe.programs {
            place(&guest(root, "wasm32-wasip2", program), &rootfs.join(path))?;
        }
        for (path, contents) in recipe.files {
            write(&rootfs.join(path), contents.as_bytes())?;
        }
        if recipe.name == "geektime/sample" {
            let war = sample_war(&root.join("examples").join("javaweb").join("sample-app"))?;
            write(&rootfs.join("sample.war"), &war)?;
        }
        let mut config = serde_json::Map::new();
        let list = |items: &[&str]| {
            serde_json::Value::from(items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        if let Some(entrypoint) = recipe.entrypoint {
            config.insert("Entrypoint".into(), list(entrypoint));
        }
        if let Some(cmd) = recipe.cmd {
            config.insert("Cmd".into(), list(cmd));
        }
        config.insert(
            "Env".into(),
            list(&["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"]),
        );
        if let Some(dir) = recipe.working_dir {
            config.insert("WorkingDir".into(), dir.into());
        }
        let json = serde_json::json!({ "config": config });
        write(
            &dir.join("image.json"),
            serde_json::to_string_pretty(&json)
                .expect("json")
                .as_bytes(),
        )?;
    }
    Ok(images)
}

/// Puts a program into an image: a hard link when possible (the applets of
/// one busybox share their bytes, as on a real image), else a copy.
fn place(program: &Path, at: &Path) -> Result<()> {
    std::fs::create_dir_all(at.parent().expect("inside rootfs"))
        .map_err(|e| format!("{}: {e}", at.display()))?;
    if std::fs::hard_link(program, at).is_ok() {
        return Ok(());
    }
    std::fs::copy(program, at)
        .map(drop)
        .map_err(|e| format!("copying {} to {}: {e}", program.display(), at.display()))
}

fn write(path: &Path, contents: &[u8]) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("has a parent"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

/// Zips the sample web application into a WAR (deflated, like `jar`).
fn sample_war(source: &Path) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut war = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut files = Vec::new();
    collect_files(source, source, &mut files)?;
    files.sort();
    for (name, path) in files {
        war.start_file(name, options).map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        war.write_all(&bytes).map_err(|e| e.to_string())?;
    }
    Ok(war.finish().map_err(|e| e.to_string())?.into_inner())
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(base, &path, out)?;
        } else {
            let name = path
                .strip_prefix(base)
                .expect("below base")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((name, path));
        }
    }
    Ok(())
}
