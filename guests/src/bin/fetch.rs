//! `fetch URL...`: `GET` each URL with `wasi:http/outgoing-handler` (the host sends it, under
//! the pod's egress policy) and print `GET URL: STATUS` and the body. Exits 1 at the first URL
//! that cannot be fetched or answers other than 2xx. The app of the http-sidecar example.
//!
//! Built for `wasm32-wasip2` only; the `wasm32-wasip1` build is a stub that says so.

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn main() {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        eprintln!("usage: fetch URL...");
        std::process::exit(64);
    }
    for url in urls {
        match wpod_guests::wasi_http::get(&url) {
            Ok((status, body)) => {
                println!("GET {url}: {status}");
                print!("{}", String::from_utf8_lossy(&body));
                if !(200..300).contains(&status) {
                    std::process::exit(1);
                }
            }
            Err(error) => {
                eprintln!("fetch: {url}: {error}");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn main() {
    eprintln!("fetch: needs wasm32-wasip2 (wasi:http)");
    std::process::exit(1);
}
