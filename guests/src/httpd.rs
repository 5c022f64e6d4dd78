//! `httpd`: a static-file HTTP/1.1 server (the nginx role), which also serves the static
//! content of `.war` archives (the tomcat role).
//!
//! Rust's std has no threads on WASI, so connections are served one at a time; a keep-alive
//! connection is served until the client closes it, it asks for `Connection: close`, or it
//! idles for [`IDLE_TIMEOUT`] (where the host supports socket read timeouts).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::error_text;
use crate::http::{self, Parse, Request, TargetPath};
use crate::war::Archive;

/// How long a keep-alive connection may idle before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Files up to this size are sent with their head in a single write.
const SMALL_FILE: u64 = 1024 * 1024;
/// Files up to this size are kept in memory, to answer with one `stat` instead of an open,
/// reads and a close; at most `CACHE_BYTES` in all.
const CACHED_FILE: u64 = 256 * 1024;
const CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Only files last modified at least this long ago are cached: a file rewritten with the same
/// length within the file system's timestamp granularity would otherwise go unnoticed.
const SETTLED: Duration = Duration::from_secs(2);

/// Command-line settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub addr: String,
    pub port: u16,
    pub root: PathBuf,
    pub quiet: bool,
}

/// Parses `[-p PORT] [-a ADDR] [-h DIR] [-q]` (`args[0]` is the program name). Busybox's
/// `-f` (foreground) is accepted and ignored: this server never daemonizes.
pub fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut config = Config {
        addr: "0.0.0.0".into(),
        port: 80,
        root: PathBuf::from("."),
        quiet: false,
    };
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("option {arg} needs a value"))
        };
        match arg.as_str() {
            "-p" => {
                let port = value()?;
                config.port = port.parse().map_err(|_| format!("bad port '{port}'"))?;
            }
            "-a" => config.addr = value()?,
            "-h" => config.root = PathBuf::from(value()?),
            "-q" => config.quiet = true,
            "-f" => {}
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(config)
}

/// Runs the server; returns only on a startup error (status 1, or 64 for bad arguments).
pub fn main(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let config = match parse_args(args) {
        Ok(config) => config,
        Err(message) => {
            let _ = writeln!(
                err,
                "httpd: {message}\nusage: httpd [-p PORT] [-a ADDR] [-h DIR] [-q]"
            );
            return 64;
        }
    };
    let listener = match TcpListener::bind((config.addr.as_str(), config.port)) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = writeln!(
                err,
                "httpd: bind {}:{}: {}",
                config.addr,
                config.port,
                error_text(&e)
            );
            return 1;
        }
    };
    let port = listener.local_addr().map_or(config.port, |a| a.port());
    let _ = writeln!(out, "listening on {}:{port}", config.addr);
    let _ = out.flush();
    let mut server = Server {
        config,
        wars: HashMap::new(),
        files: HashMap::new(),
        cached_bytes: 0,
        response: Vec::with_capacity(64 * 1024),
        body: Vec::with_capacity(64 * 1024),
    };
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = server.serve(stream, out)
                    && !matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::UnexpectedEof
                    )
                {
                    let _ = writeln!(err, "httpd: connection: {}", error_text(&e));
                }
            }
            Err(e) => {
                let _ = writeln!(err, "httpd: accept: {}", error_text(&e));
                // Don't spin if accepting keeps failing (e.g. out of descriptors).
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A response body.
enum Body {
    /// Bytes in `Server::body`.
    Buffered,
    /// A large file, streamed after the head.
    File(File, u64),
}

/// A response to send.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Body,
    location: Option<String>,
    /// Close the connection after this response.
    close: bool,
}

/// A cached file's content and the size and modification time it had.
struct CachedFile {
    len: u64,
    modified: SystemTime,
    content: Vec<u8>,
}

/// An unpacked archive and the size and modification time of the file it came from.
struct CachedWar {
    len: u64,
    modified: Option<SystemTime>,
    archive: Rc<Archive>,
}

struct Server {
    config: Config,
    wars: HashMap<PathBuf, CachedWar>,
    files: HashMap<PathBuf, CachedFile>,
    cached_bytes: usize,
    /// Reused buffers: the response being built, and a buffered body.
    response: Vec<u8>,
    body: Vec<u8>,
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Server {
    /// Serves requests on one connection until it closes.
    fn serve(&mut self, mut stream: TcpStream, log: &mut dyn Write) -> io::Result<()> {
        // Both are best effort: not every WASI host supports these socket options.
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        loop {
            let (request, used) = loop {
                match http::parse_request(&buf) {
                    Parse::Done(request, used) => break (request, used),
                    Parse::Invalid(_) => {
                        let reply = self.text_reply(400, "Bad Request", true);
                        return self.send(&mut stream, None, reply, log);
                    }
                    Parse::Incomplete => match stream.read(&mut chunk) {
                        Ok(0) => return Ok(()),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if is_timeout(&e) => return Ok(()),
                        Err(e) => return Err(e),
                    },
                }
            };
            buf.drain(..used);

            // Skip a request body (nothing here uses one) so the next request parses.
            let mut body_left = match request.body_length() {
                Ok(len) => len,
                Err(_) => {
                    let reply = self.text_reply(400, "Bad Request", true);
                    return self.send(&mut stream, Some(&request), reply, log);
                }
            };
            let buffered = body_left.min(buf.len() as u64) as usize;
            buf.drain(..buffered);
            body_left -= buffered as u64;
            while body_left > 0 {
                let want = body_left.min(chunk.len() as u64) as usize;
                match stream.read(&mut chunk[..want])? {
                    0 => return Ok(()),
                    n => body_left -= n as u64,
                }
            }

            let mut reply = self.respond(&request);
            reply.close |= !request.keep_alive();
            let close = reply.close;
            self.send(&mut stream, Some(&request), reply, log)?;
            if close {
                return Ok(());
            }
        }
    }

    /// Sends `reply` (only its head for HEAD) and logs it.
    fn send(
        &mut self,
        stream: &mut TcpStream,
        request: Option<&Request>,
        reply: Reply,
        log: &mut dyn Write,
    ) -> io::Result<()> {
        let head_only = request.is_some_and(|r| r.method == "HEAD");
        let length = match &reply.body {
            Body::Buffered => self.body.len() as u64,
            Body::File(_, len) => *len,
        };
        let mut extra: Vec<(&str, &str)> = Vec::new();
        if let Some(location) = &reply.location {
            extra.push(("Location", location));
        }
        if reply.status == 405 {
            extra.push(("Allow", "GET, HEAD"));
        }
        self.response.clear();
        http::write_response_head(
            &mut self.response,
            reply.status,
            Some(reply.content_type),
            length,
            !reply.close,
            &extra,
        );
        let mut sent = 0;
        match reply.body {
            _ if head_only => stream.write_all(&self.response)?,
            Body::Buffered => {
                self.response.extend_from_slice(&self.body);
                stream.write_all(&self.response)?;
                sent = length;
            }
            Body::File(file, len) => {
                stream.write_all(&self.response)?;
                let copied = io::copy(&mut file.take(len), stream)?;
                sent = copied;
                if copied < len {
                    // The file shrank while being sent: the length promised can't be kept.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    ));
                }
            }
        }
        if !self.config.quiet {
            let (method, target) = request.map_or(("-", "-"), |r| (&r.method, &r.target));
            let _ = writeln!(log, "{method} {target} {} {sent}", reply.status);
            let _ = log.flush();
        }
        Ok(())
    }

    /// A small text/html body in `self.body`.
    fn text_reply(&mut self, status: u16, text: &str, close: bool) -> Reply {
        self.body.clear();
        let _ = writeln!(
            self.body,
            "<html><head><title>{status} {text}</title></head><body><h1>{status} {text}</h1></body></html>"
        );
        Reply {
            status,
            content_type: "text/html",
            body: Body::Buffered,
            location: None,
            close,
        }
    }

    fn redirect(&mut self, target: &TargetPath) -> Reply {
        let mut location = format!("{}/", target.raw_path);
        if let Some(query) = &target.query {
            location.push('?');
            location.push_str(query);
        }
        let mut reply = self.text_reply(301, "Moved Permanently", false);
        reply.location = Some(location);
        reply
    }

    fn respond(&mut self, request: &Request) -> Reply {
        if request.method != "GET" && request.method != "HEAD" {
            return self.text_reply(405, "Method Not Allowed", true);
        }
        let target = match http::parse_target(&request.target) {
            Ok(target) => target,
            Err(status) => return self.text_reply(status, http::reason(status), false),
        };
        if let Some(reply) = self.lookup(&target) {
            return reply;
        }
        // Like tomcat: what no file, directory or web application claims belongs to the ROOT
        // web application (`ROOT/` or `ROOT.war`), if there is one.
        if target.segments.first().is_none_or(|first| first != "ROOT") {
            let mut rooted = target.clone();
            rooted.segments.insert(0, "ROOT".to_string());
            if let Some(reply) = self.lookup(&rooted) {
                return reply;
            }
        }
        self.text_reply(404, "Not Found", false)
    }

    /// Answers from the document root: a file, a directory's index or listing, or a web
    /// application archive's content. `None` if nothing is there, and instead of a listing of
    /// the document root itself when a ROOT web application exists (it answers instead).
    fn lookup(&mut self, target: &TargetPath) -> Option<Reply> {
        let mut path = self.config.root.clone();
        path.extend(&target.segments);
        if target.trailing_slash {
            // A directory's index, with one `stat` (the common case: `GET /`).
            let index = path.join("index.html");
            if let Some(meta) = fs::metadata(&index).ok().filter(|m| m.is_file()) {
                return Some(self.file_reply(&index, "index.html", &meta));
            }
        }
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                if !target.trailing_slash {
                    return Some(self.redirect(target));
                }
                if target.segments.is_empty() && self.has_root_webapp() {
                    return None;
                }
                Some(self.dir_listing(&path, target))
            }
            Ok(meta) => {
                let name = target.segments.last().map_or("", String::as_str);
                Some(self.file_reply(&path, name, &meta))
            }
            Err(_) => self.war_reply(target),
        }
    }

    fn has_root_webapp(&self) -> bool {
        self.config.root.join("ROOT").is_dir() || self.config.root.join("ROOT.war").is_file()
    }

    /// Answers with the file at `path`, whose metadata (just read) is `meta`.
    fn file_reply(&mut self, path: &Path, name: &str, meta: &fs::Metadata) -> Reply {
        let content_type = http::mime_type(name);
        let ok = Reply {
            status: 200,
            content_type,
            body: Body::Buffered,
            location: None,
            close: false,
        };
        let modified = meta.modified().ok();
        if let Some(cached) = self.files.get(path)
            && cached.len == meta.len()
            && Some(cached.modified) == modified
        {
            self.body.clear();
            self.body.extend_from_slice(&cached.content);
            return ok;
        }
        let opened = File::open(path).and_then(|file| {
            let len = file.metadata()?.len();
            Ok((file, len))
        });
        let (mut file, len) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return self.text_reply(403, "Forbidden", false);
            }
            Err(_) => return self.text_reply(404, "Not Found", false),
        };
        if len > SMALL_FILE {
            return Reply {
                status: 200,
                content_type,
                body: Body::File(file, len),
                location: None,
                close: false,
            };
        }
        self.body.clear();
        if file.read_to_end(&mut self.body).is_err() {
            return self.text_reply(500, "Internal Server Error", false);
        }
        let settled = modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age >= SETTLED);
        if let Some(modified) = modified.filter(|_| settled && len <= CACHED_FILE) {
            if self.cached_bytes + self.body.len() > CACHE_BYTES {
                self.files.clear();
                self.cached_bytes = 0;
            }
            self.cached_bytes += self.body.len();
            let old = self.files.insert(
                path.to_path_buf(),
                CachedFile {
                    len: meta.len(),
                    modified,
                    content: self.body.clone(),
                },
            );
            self.cached_bytes -= old.map_or(0, |old| old.content.len());
        }
        ok
    }

    fn listing_reply(&mut self, title: &str, entries: &[(String, bool)]) -> Reply {
        let title = http::html_escape(title);
        self.body.clear();
        let _ = writeln!(
            self.body,
            "<html><head><title>Index of {title}</title></head><body><h1>Index of {title}</h1><ul>"
        );
        for (name, is_dir) in entries {
            let slash = if *is_dir { "/" } else { "" };
            let _ = writeln!(
                self.body,
                "<li><a href=\"{}{slash}\">{}{slash}</a></li>",
                http::html_escape(&http::percent_encode_path(name)),
                http::html_escape(name)
            );
        }
        self.body.extend_from_slice(b"</ul></body></html>\n");
        Reply {
            status: 200,
            content_type: "text/html",
            body: Body::Buffered,
            location: None,
            close: false,
        }
    }

    fn dir_listing(&mut self, dir: &Path, target: &TargetPath) -> Reply {
        let Ok(read) = fs::read_dir(dir) else {
            return self.text_reply(403, "Forbidden", false);
        };
        let mut entries: Vec<(String, bool)> = read
            .filter_map(|e| e.ok())
            .map(|e| {
                let is_dir = e.path().is_dir();
                (e.file_name().to_string_lossy().into_owned(), is_dir)
            })
            .collect();
        entries.sort();
        let title = http::percent_decode(&target.raw_path).unwrap_or_default();
        self.listing_reply(&title, &entries)
    }

    /// Serves `/NAME/...` from `ROOT/NAME.war` when `ROOT/NAME` does not exist.
    fn war_reply(&mut self, target: &TargetPath) -> Option<Reply> {
        let (app, inner) = target.segments.split_first()?;
        if app.ends_with(".war") || fs::symlink_metadata(self.config.root.join(app)).is_ok() {
            return None;
        }
        let war_path = self.config.root.join(format!("{app}.war"));
        let meta = fs::metadata(&war_path).ok().filter(|m| m.is_file())?;
        let archive = match self.load_war(&war_path, &meta) {
            Ok(archive) => archive,
            Err(_) => return Some(self.text_reply(500, "Internal Server Error", false)),
        };
        // Like a servlet container: the archive's private directories are never served.
        if inner.first().is_some_and(|first| {
            first.eq_ignore_ascii_case("WEB-INF") || first.eq_ignore_ascii_case("META-INF")
        }) {
            return Some(self.text_reply(404, "Not Found", false));
        }
        let inner_path = inner.join("/");
        if let Some(content) = archive.file(&inner_path) {
            self.body.clear();
            self.body.extend_from_slice(content);
            return Some(Reply {
                status: 200,
                content_type: http::mime_type(&inner_path),
                body: Body::Buffered,
                location: None,
                close: false,
            });
        }
        if !archive.is_dir(&inner_path) {
            return Some(self.text_reply(404, "Not Found", false));
        }
        if !target.trailing_slash {
            return Some(self.redirect(target));
        }
        let index = if inner_path.is_empty() {
            "index.html".to_string()
        } else {
            format!("{inner_path}/index.html")
        };
        if let Some(content) = archive.file(&index) {
            self.body.clear();
            self.body.extend_from_slice(content);
            return Some(Reply {
                status: 200,
                content_type: "text/html",
                body: Body::Buffered,
                location: None,
                close: false,
            });
        }
        let entries: Vec<(String, bool)> = archive
            .list(&inner_path)
            .into_iter()
            .filter(|(name, _)| {
                !(inner_path.is_empty()
                    && (name.eq_ignore_ascii_case("WEB-INF")
                        || name.eq_ignore_ascii_case("META-INF")))
            })
            .collect();
        let title = format!("/{app}/{inner_path}");
        Some(self.listing_reply(&title, &entries))
    }

    /// The unpacked archive at `path`, from the cache while the file is unchanged.
    fn load_war(&mut self, path: &Path, meta: &fs::Metadata) -> Result<Rc<Archive>, String> {
        let modified = meta.modified().ok();
        if let Some(cached) = self.wars.get(path)
            && cached.len == meta.len()
            && cached.modified == modified
        {
            return Ok(cached.archive.clone());
        }
        let data = fs::read(path).map_err(|e| error_text(&e))?;
        let archive = Rc::new(Archive::parse(&data)?);
        self.wars.insert(
            path.to_path_buf(),
            CachedWar {
                len: meta.len(),
                modified,
                archive: archive.clone(),
            },
        );
        Ok(archive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Shutdown};

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_arguments() {
        let config = parse_args(&args(&["httpd"])).unwrap();
        assert_eq!(
            config,
            Config {
                addr: "0.0.0.0".into(),
                port: 80,
                root: PathBuf::from("."),
                quiet: false
            }
        );
        let config = parse_args(&args(&[
            "httpd",
            "-p",
            "8080",
            "-a",
            "127.0.0.1",
            "-h",
            "/www",
            "-q",
        ]))
        .unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.addr, "127.0.0.1");
        assert_eq!(config.root, PathBuf::from("/www"));
        assert!(config.quiet);
        assert!(parse_args(&args(&["httpd", "-p"])).is_err());
        assert!(parse_args(&args(&["httpd", "-p", "x"])).is_err());
        assert!(parse_args(&args(&["httpd", "-z"])).is_err());
    }

    /// Serves `requests` (raw bytes, sent in one go then half-closed) from `root` over a real
    /// loopback connection; returns what came back and the access log.
    fn exchange(root: &Path, requests: &[u8]) -> (String, String) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(requests).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut server = Server {
            config: Config {
                addr: "127.0.0.1".into(),
                port: addr.port(),
                root: root.to_path_buf(),
                quiet: false,
            },
            wars: HashMap::new(),
            files: HashMap::new(),
            cached_bytes: 0,
            response: Vec::new(),
            body: Vec::new(),
        };
        let mut log = Vec::new();
        server.serve(stream, &mut log).unwrap();
        drop(server);
        let mut response = Vec::new();
        client.read_to_end(&mut response).unwrap();
        (
            String::from_utf8_lossy(&response).into_owned(),
            String::from_utf8(log).unwrap(),
        )
    }

    fn site(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("wpod-httpd-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("docs")).unwrap();
        fs::create_dir_all(root.join("empty dir")).unwrap();
        fs::write(root.join("index.html"), "<h1>home</h1>").unwrap();
        fs::write(root.join("docs/a b.txt"), "spaced").unwrap();
        root
    }

    #[test]
    fn serves_files_with_keep_alive() {
        let root = site("files");
        let (response, log) = exchange(
            &root,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD /docs/a%20b.txt HTTP/1.1\r\n\r\nGET /docs/a%20b.txt HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        let expected = "HTTP/1.1 200 OK\r\nServer: wpod-httpd\r\nContent-Type: text/html\r\n\
            Content-Length: 13\r\nConnection: keep-alive\r\n\r\n<h1>home</h1>\
            HTTP/1.1 200 OK\r\nServer: wpod-httpd\r\nContent-Type: text/plain\r\n\
            Content-Length: 6\r\nConnection: keep-alive\r\n\r\n\
            HTTP/1.1 200 OK\r\nServer: wpod-httpd\r\nContent-Type: text/plain\r\n\
            Content-Length: 6\r\nConnection: close\r\n\r\nspaced";
        assert_eq!(response, expected);
        assert_eq!(
            log,
            "GET / 200 13\nHEAD /docs/a%20b.txt 200 0\nGET /docs/a%20b.txt 200 6\n"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn errors_redirects_and_listings() {
        let root = site("errors");
        let status = |request: &str| {
            let (response, _) = exchange(&root, request.as_bytes());
            response
        };
        assert!(status("GET /missing HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(status("GET /../etc/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let post = status("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n"));
        assert!(status("garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let redirect = status("GET /docs?x=1 HTTP/1.1\r\n\r\n");
        assert!(redirect.starts_with("HTTP/1.1 301 "), "{redirect}");
        assert!(redirect.contains("\r\nLocation: /docs/?x=1\r\n"));
        let listing = status("GET /docs/ HTTP/1.0\r\n\r\n");
        assert!(listing.starts_with("HTTP/1.1 200 OK"), "{listing}");
        assert!(listing.contains("Connection: close"));
        assert!(
            listing.contains("<a href=\"a%20b.txt\">a b.txt</a>"),
            "{listing}"
        );
        let empty = status("GET /empty%20dir/ HTTP/1.1\r\n\r\n");
        assert!(empty.contains("Index of /empty dir/"), "{empty}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn root_web_application_answers_what_nothing_else_claims() {
        let root = std::env::temp_dir().join(format!("wpod-httpd-root-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("ROOT/sub")).unwrap();
        fs::create_dir_all(root.join("other")).unwrap();
        fs::write(root.join("ROOT/index.html"), "root app").unwrap();
        fs::write(root.join("ROOT/page.txt"), "page").unwrap();
        fs::write(root.join("other/index.html"), "other app").unwrap();
        let get = |path: &str| {
            let request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
            exchange(&root, request.as_bytes()).0
        };
        assert!(get("/").ends_with("\r\n\r\nroot app"));
        assert!(get("/page.txt").ends_with("\r\n\r\npage"));
        assert!(get("/other/").ends_with("\r\n\r\nother app"));
        assert!(get("/sub").contains("Location: /sub/\r\n"));
        assert!(get("/missing").starts_with("HTTP/1.1 404"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn serves_war_contents() {
        let root = site("war");
        let zip = crate::war::tests::build_zip(&[
            ("index.html", b"<h1>war home</h1>", true),
            ("static/app.js", b"console.log(1)", false),
            ("WEB-INF/web.xml", b"<web-app/>", true),
        ]);
        fs::write(root.join("app.war"), &zip).unwrap();
        let get = |path: &str| {
            let request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
            exchange(&root, request.as_bytes()).0
        };
        let home = get("/app/");
        assert!(home.starts_with("HTTP/1.1 200 OK"), "{home}");
        assert!(home.ends_with("\r\n\r\n<h1>war home</h1>"));
        let js = get("/app/static/app.js");
        assert!(js.contains("Content-Type: application/javascript"), "{js}");
        assert!(js.ends_with("console.log(1)"));
        assert!(get("/app").contains("Location: /app/\r\n"));
        assert!(get("/app/static").contains("Location: /app/static/\r\n"));
        assert!(get("/app/static/").contains("app.js</a>"));
        assert!(get("/app/WEB-INF/web.xml").starts_with("HTTP/1.1 404"));
        assert!(get("/app/missing").starts_with("HTTP/1.1 404"));
        let archive = get("/app.war");
        assert!(archive.contains("Content-Type: application/java-archive"));
        fs::write(root.join("bad.war"), "not a zip").unwrap();
        assert!(get("/bad/").starts_with("HTTP/1.1 500"));
        fs::remove_dir_all(&root).unwrap();
    }
}
