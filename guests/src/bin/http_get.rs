//! `http_get`: the curl role for tests and probes.
//!
//! `http_get [-I] [--retry-ms N] URL` fetches an `http://` URL and prints the body (or, with
//! `-I`, sends HEAD and prints the status line and headers). Exit status as curl's with `-f`:
//! 0 for a status below 400, 22 for an HTTP error status, 7 if the connection failed, 6 if the
//! host name did not resolve, 3 for a malformed URL, 8 for a malformed response, 56 if
//! receiving failed. `--retry-ms N` retries refused connections for up to N ms (every 50 ms).
//! curl's `-s`, `-S` and `-f` (alone or combined, as in `-fsS`) are accepted and ignored.

use std::io::{self, Write};
use std::time::{Duration, Instant};
use wpod_guests::exit;

use wpod_guests::error_text;
use wpod_guests::http_client::{self, Url};

fn usage(message: &str) -> ! {
    eprintln!("http_get: {message}\nusage: http_get [-I] [--retry-ms N] http://HOST[:PORT]/PATH");
    exit(2);
}

fn main() {
    let args = wpod_guests::args();
    let mut head = false;
    let mut retry = Duration::ZERO;
    let mut url = None;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-I" | "--head" => head = true,
            "--retry-ms" => {
                let ms = rest
                    .next()
                    .unwrap_or_else(|| usage("--retry-ms needs a value"));
                let ms: u64 = ms.parse().unwrap_or_else(|_| usage("bad --retry-ms value"));
                retry = Duration::from_millis(ms);
            }
            a if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| "sSf".contains(c)) => {
            }
            a if a.starts_with('-') => usage(&format!("unknown option '{a}'")),
            a if url.is_none() => url = Some(a.to_string()),
            a => usage(&format!("unexpected argument '{a}'")),
        }
    }
    let url = url.unwrap_or_else(|| usage("missing URL"));
    let url = Url::parse(&url).unwrap_or_else(|message| {
        eprintln!("http_get: {message}");
        exit(3);
    });
    if let Err(e) = url.addrs() {
        eprintln!(
            "http_get: could not resolve host {}: {}",
            url.host,
            error_text(&e)
        );
        exit(6);
    }

    let deadline = Instant::now() + retry;
    let mut stream = loop {
        match http_client::connect(&url) {
            Ok(stream) => break stream,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                eprintln!(
                    "http_get: connect to {} port {} failed: {:?}: {}",
                    url.host,
                    url.port,
                    e.kind(),
                    error_text(&e)
                );
                exit(7);
            }
        }
    };

    let method = if head { "HEAD" } else { "GET" };
    let response =
        http_client::send_request(&mut stream, &url, method, &[], &[]).unwrap_or_else(|e| {
            eprintln!("http_get: {:?}: {}", e.kind(), error_text(&e));
            exit(if e.kind() == io::ErrorKind::InvalidData {
                8
            } else {
                56
            });
        });
    let mut out = io::stdout().lock();
    if head {
        let _ = out.write_all(&response.head);
    }
    if response.status >= 400 {
        let _ = out.flush();
        eprintln!(
            "http_get: The requested URL returned error: {}",
            response.status
        );
        exit(22);
    }
    if !head {
        let _ = out.write_all(&response.body);
    }
    let _ = out.flush();
}
