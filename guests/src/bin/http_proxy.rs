//! `http_proxy`: a `wasi:http/proxy` component, the web server of the Wasm world: it binds
//! nothing and has no `main` loop; the host calls its `incoming-handler` once per request,
//! each time in a fresh instance. Routes (anything else: 404):
//!
//! - `/` answers `hello from http_proxy` (200);
//! - `/trap` executes `unreachable` before answering (the host answers 500);
//! - `/alloc?mb=N[&ms=M]` allocates N MiB (and holds them M ms), then answers
//!   `allocated N MiB` (200); an allocation the host refuses aborts (a trap: 500);
//! - `/sleep?ms=N` answers `slept N ms` (200) after N ms;
//! - `/fetch?url=URL` sends `GET URL` with `wasi:http/outgoing-handler` and answers with the
//!   upstream's status and body, or 502 and `fetch failed: ERROR` when it cannot be sent.
//!
//! Built for `wasm32-wasip2` only; the `wasm32-wasip1` build is a stub that says so.

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod proxy {
    use std::io::Write;
    use std::time::Duration;
    use wasip2::http::types::{
        Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
    };

    struct Proxy;

    wasip2::http::proxy::export!(Proxy);

    impl wasip2::exports::http::incoming_handler::Guest for Proxy {
        fn handle(request: IncomingRequest, out: ResponseOutparam) {
            let target = request.path_with_query().unwrap_or_else(|| "/".into());
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let number = |name: &str| param(query, name).and_then(|v| v.parse::<u64>().ok());
            match path {
                "/" => respond(out, 200, b"hello from http_proxy\n"),
                "/trap" => core::arch::wasm32::unreachable(),
                "/alloc" => {
                    let mb = number("mb").unwrap_or(1) as usize;
                    // A plain `vec!`: a refused allocation aborts, as an out-of-memory
                    // program would.
                    let held = vec![1u8; mb << 20];
                    std::thread::sleep(Duration::from_millis(number("ms").unwrap_or(0)));
                    let sum: usize = held.iter().step_by(4096).map(|b| usize::from(*b)).sum();
                    let text = format!("allocated {mb} MiB ({sum} pages)\n");
                    respond(out, 200, text.as_bytes());
                }
                "/sleep" => {
                    let ms = number("ms").unwrap_or(0);
                    std::thread::sleep(Duration::from_millis(ms));
                    respond(out, 200, format!("slept {ms} ms\n").as_bytes());
                }
                "/fetch" => match param(query, "url").map(wpod_guests::wasi_http::get) {
                    Some(Ok((status, body))) => respond(out, status, &body),
                    Some(Err(error)) => {
                        respond(out, 502, format!("fetch failed: {error}\n").as_bytes())
                    }
                    None => respond(out, 400, b"fetch needs ?url=\n"),
                },
                _ => respond(out, 404, b"not found\n"),
            }
        }
    }

    /// The value of `name` in a query string (no percent-decoding: the tests' URLs need none).
    fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
        let headers = Fields::new();
        let _ = headers.append("content-type", b"text/plain");
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(status);
        let outgoing = response.body().expect("a response has one body");
        ResponseOutparam::set(out, Ok(response));
        let mut stream = outgoing.write().expect("a body has one stream");
        let _ = stream.write_all(body);
        let _ = stream.flush();
        drop(stream);
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn main() {
    // The component's wasi:cli/run: the host serves the incoming-handler instead.
    eprintln!("http_proxy: a wasi:http/proxy component; serve it (wpod, wasmtime serve)");
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn main() {
    eprintln!("http_proxy: needs wasm32-wasip2 (a wasi:http/proxy component)");
    std::process::exit(1);
}
