//! `http_p3`: a WASI 0.3 HTTP service: it exports `wasi:http/handler@0.3.0` (the
//! `wasi:http/service` world) through the `wasip3` crate; the host calls its async `handle`
//! once per request, each time in a fresh instance. Routes (anything else: 404):
//!
//! - `/` answers `hello from http_p3` (200);
//! - `/echo` answers with the request's body, streamed back as it arrives (200);
//! - `/trap` executes `unreachable` before answering (the host answers 500);
//! - `/sleep?ms=N` answers `slept N ms` (200) after N ms (`wasi:clocks` 0.3's async wait);
//! - `/fetch?url=http://HOST[:PORT]/PATH` sends `GET URL` with `wasi:http/client@0.3.0` and
//!   answers with the upstream's status and body, or 502 and `fetch failed: ERROR`.
//!
//! Built for `wasm32-wasip2` (see `hello_p3` for why); the `wasm32-wasip1` build is a stub
//! that says so.

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod service {
    use wasip3::http::client;
    use wasip3::http::types::{ErrorCode, Fields, Request, Response, Scheme};
    use wasip3::{wit_future, wit_stream};

    struct Service;

    wasip3::http::service::export!(Service);

    impl wasip3::exports::http::handler::Guest for Service {
        async fn handle(request: Request) -> Result<Response, ErrorCode> {
            let target = request.get_path_with_query().unwrap_or_else(|| "/".into());
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            Ok(match path {
                "/" => text(200, "hello from http_p3\n".into()),
                "/echo" => {
                    // The request's body stream becomes the response's: the host
                    // copies it from the client back to the client.
                    let (_, processed) = wit_future::new(|| Ok(()));
                    let (body, trailers) = Request::consume_body(request, processed);
                    Response::new(Fields::new(), Some(body), trailers).0
                }
                "/trap" => core::arch::wasm32::unreachable(),
                "/sleep" => {
                    let ms = param(query, "ms").and_then(|v| v.parse::<u64>().ok());
                    let ms = ms.unwrap_or(0);
                    wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                    text(200, format!("slept {ms} ms\n"))
                }
                "/fetch" => match fetch(param(query, "url").unwrap_or_default()).await {
                    Ok((status, body)) => bytes(status, body),
                    Err(why) => text(502, format!("fetch failed: {why}\n")),
                },
                _ => text(404, "not found\n".into()),
            })
        }
    }

    fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    fn text(status: u16, body: String) -> Response {
        bytes(status, body.into_bytes())
    }

    /// A response whose body is written by a task of its own: the host reads
    /// it only once `handle` has returned the response.
    fn bytes(status: u16, body: Vec<u8>) -> Response {
        let (mut writer, reader) = wit_stream::new();
        let (_, trailers) = wit_future::new(|| Ok(None));
        let (response, _) = Response::new(Fields::new(), Some(reader), trailers);
        let _ = response.set_status_code(status);
        wasip3::spawn_local(async move {
            writer.write_all(body).await;
        });
        response
    }

    /// `GET url` (plain HTTP): the status and body.
    async fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("not an http:// URL: {url}"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let (_, trailers) = wit_future::new(|| Ok(None));
        let (request, _) = Request::new(Fields::new(), None, trailers, None);
        request
            .set_scheme(Some(&Scheme::Http))
            .and_then(|()| request.set_authority(Some(authority)))
            .and_then(|()| request.set_path_with_query(Some(path)))
            .map_err(|()| format!("bad URL: {url}"))?;
        let response = client::send(request).await.map_err(|e| format!("{e:?}"))?;
        let status = response.get_status_code();
        let (_, processed) = wit_future::new(|| Ok(()));
        let (body, _) = Response::consume_body(response, processed);
        Ok((status, body.collect().await))
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn main() {
    eprintln!("http_p3 is a WASI 0.3 HTTP service: it is served, not run");
    std::process::exit(3);
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn main() {
    eprintln!("http_p3 is a WASI 0.3 HTTP service: build it for wasm32-wasip2");
    std::process::exit(2);
}
