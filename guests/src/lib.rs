//! Shared code of the wpod guest programs: a small shell with busybox-style applets, an HTTP
//! server and client, a log shipper, and the pure helpers (parsers, formatters) they use.
//!
//! Everything here is plain `std`, so the pure parts are unit-tested on the host target while
//! the programs in `src/bin/` are built for `wasm32-wasip2` and `wasm32-wasip1`.

pub mod applets;
pub mod http;
pub mod http_client;
pub mod httpd;
pub mod json;
pub mod logship;
pub mod shell;
pub mod timefmt;
pub mod war;
#[cfg(all(target_os = "wasi", target_env = "p2"))]
pub mod wasi_http;

use std::io::{self, Write};

/// An I/O error's message without the platform's " (os error N)" suffix, for the
/// `program: file: message` lines that the programs print.
pub fn error_text(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Ends the program with exit status `code`, flushing standard output first.
///
/// With the `exit-with-code` feature on WASI 0.2, a non-zero code goes to the host through
/// `wasi:cli/exit#exit-with-code`; otherwise WASI 0.2 hosts see any failure as 1. On WASI 0.1,
/// wasmtime refuses codes of 126 and up (`proc_exit` traps).
pub fn exit(code: i32) -> ! {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    #[cfg(all(feature = "exit-with-code", target_os = "wasi", target_env = "p2"))]
    if code != 0 {
        wasip2::cli::exit::exit_with_code(code.clamp(1, 255) as u8);
    }
    std::process::exit(code)
}

/// The program's arguments as strings (invalid UTF-8 is replaced, not fatal).
pub fn args() -> Vec<String> {
    std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect()
}

/// The environment as a name-sorted list (invalid UTF-8 is replaced, not fatal).
pub fn env_vars() -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect();
    vars.sort();
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_drops_os_error_suffix() {
        let err = io::Error::from_raw_os_error(2);
        assert!(!error_text(&err).contains("os error"));
        let custom = io::Error::other("plain");
        assert_eq!(error_text(&custom), "plain");
    }
}
