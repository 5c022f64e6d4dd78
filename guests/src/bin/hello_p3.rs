//! `hello_p3`: a WASI 0.3 (wasip3) command. It exports `wasi:cli/run@0.3.0` (an `async`
//! function) through the `wasip3` crate and does its work with WASI 0.3's interfaces only:
//! streams for stdout and files, `wasi:filesystem@0.3.0` for the preopens.
//!
//! `hello_p3 [DIR [CODE]]`:
//! - prints `hello from wasip3` and `GREETING=<value>` (`GREETING` from its environment,
//!   `(unset)` without it) to stdout;
//! - with `DIR`, the guest path of a preopened folder, writes `written by wasip3` to
//!   `DIR/p3.txt` and prints `wrote DIR/p3.txt`;
//! - says `exiting with CODE` on stderr and exits with `CODE` (0 without it) through
//!   `wasi:cli/exit#exit-with-code`.
//!
//! Rust 1.95 has no `wasm32-wasip3` target with a prebuilt std, so this is built for
//! `wasm32-wasip2`, whose linker also exports `wasi:cli/run@0.2.0` for `main`. A host that
//! runs WASI 0.3 (as `wasmtime run` does) calls `run@0.3.0`; `main` below is only reached by a
//! host that runs it as WASI 0.2, and says so, exiting 3, so a test cannot mistake one for
//! the other. The `wasm32-wasip1` build is a stub that says it needs wasip2.

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod p3 {
    use wasip3::cli::{environment, exit, stderr, stdout};
    use wasip3::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    use wasip3::wit_stream;

    struct HelloP3;

    wasip3::cli::command::export!(HelloP3);

    impl wasip3::exports::cli::run::Guest for HelloP3 {
        async fn run() -> Result<(), ()> {
            let args = environment::get_arguments();
            let greeting = environment::get_environment()
                .into_iter()
                .find(|(name, _)| name == "GREETING")
                .map_or_else(|| "(unset)".to_owned(), |(_, value)| value);
            let mut out = format!("hello from wasip3\nGREETING={greeting}\n");
            if let Some(dir) = args.get(1) {
                match write_file(dir, "p3.txt", b"written by wasip3\n").await {
                    Ok(()) => out.push_str(&format!("wrote {dir}/p3.txt\n")),
                    Err(why) => {
                        print(
                            Stream::Stderr,
                            format!("cannot write {dir}/p3.txt: {why}\n"),
                        )
                        .await;
                        return Err(());
                    }
                }
            }
            print(Stream::Stdout, out).await;
            let code: u8 = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(0);
            print(Stream::Stderr, format!("exiting with {code}\n")).await;
            if code != 0 {
                exit::exit_with_code(code);
            }
            Ok(())
        }
    }

    enum Stream {
        Stdout,
        Stderr,
    }

    /// Writes `text` through a WASI 0.3 stream, and waits until the host has it.
    async fn print(to: Stream, text: String) {
        let (mut writer, reader) = wit_stream::new();
        let done = match to {
            Stream::Stdout => stdout::write_via_stream(reader),
            Stream::Stderr => stderr::write_via_stream(reader),
        };
        let left = writer.write_all(text.into_bytes()).await;
        drop(writer);
        let _ = done.await;
        debug_assert!(left.is_empty());
    }

    /// Creates `name` in the preopened folder whose guest path is `dir`.
    async fn write_file(dir: &str, name: &str, contents: &[u8]) -> Result<(), String> {
        let preopens = wasip3::filesystem::preopens::get_directories();
        let Some((folder, _)) = preopens.into_iter().find(|(_, path)| path == dir) else {
            return Err(format!("{dir} is not a preopened folder"));
        };
        let file = folder
            .open_at(
                PathFlags::empty(),
                name.to_owned(),
                OpenFlags::CREATE | OpenFlags::TRUNCATE,
                DescriptorFlags::WRITE,
            )
            .await
            .map_err(|e| format!("open: {e:?}"))?;
        let (mut writer, reader) = wit_stream::new();
        let done = file.write_via_stream(reader, 0);
        let left = writer.write_all(contents.to_vec()).await;
        drop(writer);
        if !left.is_empty() {
            return Err(format!("{} bytes not written", left.len()));
        }
        done.await.map_err(|e| format!("write: {e:?}"))
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn main() {
    eprintln!("hello_p3 ran as a WASI 0.2 command: the host did not call wasi:cli/run@0.3.0");
    std::process::exit(3);
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn main() {
    eprintln!("hello_p3 is a WASI 0.3 command: build it for wasm32-wasip2");
    std::process::exit(2);
}
