//! `cargo xtask`: build the guests and images, and run an example pod.
//!
//! - `cargo xtask images`: build the guests and assemble `target/images`.
//! - `cargo xtask run POD.yaml [wpod run flags]`: the same, then build wpod
//!   (release) and run `wpod run POD.yaml` with `WPOD_IMAGE_PATH` set.
//! - `cargo xtask man`: the man pages (`wpod.1`, `wpod-COMMAND.1`) into
//!   `target/man`, from wpod's clap definition (`wpod man --dir`).

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("images") => match images() {
            Ok(dir) => {
                println!("{}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Some("run") if args.len() >= 2 => run(&args[1..]),
        Some("man") => man(),
        _ => {
            eprintln!(
                "usage: cargo xtask images | cargo xtask run POD.yaml [wpod run flags] | cargo xtask man"
            );
            ExitCode::from(2)
        }
    }
}

fn images() -> xtask::Result<std::path::PathBuf> {
    let root = xtask::workspace_root();
    xtask::step("building the guests (Wasm programs) and assembling their images");
    xtask::build_guests(&root)?;
    xtask::build_images(&root)
}

fn run(args: &[String]) -> ExitCode {
    let images = match images() {
        Ok(dir) => dir,
        Err(e) => return fail(&e),
    };
    let root = xtask::workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let wpod = root
        .join("target")
        .join("release")
        .join(format!("wpod{}", std::env::consts::EXE_SUFFIX));
    if wpod.exists() {
        xtask::step("building wpod (release), if anything changed");
    } else {
        xtask::step(
            "first build of wpod (release): about 10 minutes on 2 cores (wasmtime and Cranelift); later builds take seconds",
        );
    }
    let mut build = Command::new(&cargo);
    build
        .current_dir(&root)
        .args(["build", "--release", "-p", "wpod"]);
    if xtask::quiet() {
        build.arg("--quiet");
    }
    let built = build.status();
    if !built.is_ok_and(|s| s.success()) {
        return fail("building wpod failed");
    }
    eprintln!(
        "xtask: WPOD_IMAGE_PATH={} {} run {}",
        images.display(),
        wpod.display(),
        args.join(" ")
    );
    let status = Command::new(wpod)
        .arg("run")
        .args(args)
        .env("WPOD_IMAGE_PATH", &images)
        .status();
    match status {
        Ok(status) => ExitCode::from(status.code().map_or(1, |c| c as u8)),
        Err(e) => fail(&format!("running wpod: {e}")),
    }
}

fn man() -> ExitCode {
    let root = xtask::workspace_root();
    let dir = root.join("target").join("man");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["run", "--quiet", "-p", "wpod", "--", "man", "--dir"])
        .arg(&dir)
        .status();
    match status {
        Ok(status) if status.success() => {
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        _ => fail("writing the man pages failed"),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("xtask: error: {message}");
    ExitCode::FAILURE
}
