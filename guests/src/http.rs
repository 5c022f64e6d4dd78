//! HTTP/1.x building blocks shared by the server and the client: request parsing, request
//! targets, percent-coding, MIME types and response heads. Pure functions, no I/O.

use std::fmt::Write as _;

/// Longest request or response head (request line plus headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines accepted in one head.
const MAX_HEADERS: usize = 100;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent, e.g. `/a%20b/?q=1`.
    pub target: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// More bytes are needed.
    Incomplete,
    /// The head is malformed; the reason is for logs.
    Invalid(&'static str),
    /// A complete head and the number of bytes it took.
    Done(T, usize),
}

/// Splits the head at the front of `buf` into its lines (without line ends) and returns them
/// with the head's length, or `None` if the blank line that ends it has not arrived yet.
/// Bare `\n` line ends are accepted as well as `\r\n`. Blank lines before the first line are
/// skipped, as RFC 9112 allows.
pub fn split_head(buf: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let end = start + nl;
        let line = buf[start..end]
            .strip_suffix(b"\r")
            .unwrap_or(&buf[start..end]);
        start = end + 1;
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            return Some((lines, start));
        }
        lines.push(line);
    }
    None
}

/// Parses a request head (request line and headers) at the front of `buf`.
pub fn parse_request(buf: &[u8]) -> Parse<Request> {
    let Some((lines, used)) = split_head(buf) else {
        return if buf.len() > MAX_HEAD {
            Parse::Invalid("request head too large")
        } else {
            Parse::Incomplete
        };
    };
    let Ok(first) = std::str::from_utf8(lines[0]) else {
        return Parse::Invalid("request line is not UTF-8");
    };
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parse::Invalid("malformed request line");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Parse::Invalid("malformed method");
    }
    if target.is_empty() {
        return Parse::Invalid("empty request target");
    }
    let minor_version = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Parse::Invalid("unsupported HTTP version"),
    };
    let headers = match parse_headers(&lines[1..]) {
        Ok(headers) => headers,
        Err(why) => return Parse::Invalid(why),
    };
    Parse::Done(
        Request {
            method: method.to_string(),
            target: target.to_string(),
            minor_version,
            headers,
        },
        used,
    )
}

/// Parses `Name: value` header lines.
pub fn parse_headers(lines: &[&[u8]]) -> Result<Vec<(String, String)>, &'static str> {
    if lines.len() > MAX_HEADERS {
        return Err("too many headers");
    }
    let mut headers = Vec::with_capacity(lines.len());
    for line in lines {
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else {
            return Err("header line without a colon");
        };
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err("malformed header name");
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(headers)
}

/// The value of the first header named `name` (case-insensitive).
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether a comma-separated header (like `Connection`) lists `token`.
pub fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the client wants the connection kept open after this request.
    pub fn keep_alive(&self) -> bool {
        match self.header("Connection") {
            Some(v) if has_token(v, "close") => false,
            Some(v) if has_token(v, "keep-alive") => true,
            _ => self.minor_version >= 1,
        }
    }

    /// The length of the request body: `Ok(0)` without `Content-Length`, `Err` if the length is
    /// malformed or the body is chunked (not supported: nothing here needs request bodies).
    pub fn body_length(&self) -> Result<u64, &'static str> {
        if self.header("Transfer-Encoding").is_some() {
            return Err("chunked request bodies are not supported");
        }
        match self.header("Content-Length") {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| "malformed Content-Length"),
        }
    }
}

/// A request target resolved to path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPath {
    /// Decoded, non-empty segments, without `.`.
    pub segments: Vec<String>,
    /// Whether the path ends with `/` (or is `/`).
    pub trailing_slash: bool,
    /// The path as sent (still percent-encoded), for redirects.
    pub raw_path: String,
    /// The query string as sent, without `?`, if any.
    pub query: Option<String>,
}

/// Splits a request target into decoded path segments. Fails with the HTTP status to answer:
/// 400 for a target that is not a path, has invalid percent-encoding or NUL bytes, or has a
/// `..` segment (which could climb out of the document root).
pub fn parse_target(target: &str) -> Result<TargetPath, u16> {
    let target = target.split('#').next().unwrap_or("");
    // Absolute form (`http://host/path`), as sent to proxies.
    let target = match target.find("://") {
        Some(at) if !target.starts_with('/') => {
            let rest = &target[at + 3..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        _ => target,
    };
    let (raw_path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (target, None),
    };
    if !raw_path.starts_with('/') {
        return Err(400);
    }
    let decoded = percent_decode(raw_path).ok_or(400u16)?;
    if decoded.contains('\0') {
        return Err(400);
    }
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(400),
            s => segments.push(s.to_string()),
        }
    }
    Ok(TargetPath {
        segments,
        trailing_slash: decoded.ends_with('/'),
        raw_path: raw_path.to_string(),
        query,
    })
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
/// `+` is kept: it means a space only in form data, not in paths.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but unreserved characters and `/`, for links in listings.
pub fn percent_encode_path(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Content-Type for a file name, by extension (case-insensitive).
pub fn mime_type(name: &str) -> &'static str {
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) if !ext.contains('/') => ext.to_ascii_lowercase(),
        _ => return "application/octet-stream",
    };
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "txt" => "text/plain",
        "css" => "text/css",
        "js" | "mjs" => "application/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "xml" => "application/xml",
        "war" | "jar" => "application/java-archive",
        _ => "application/octet-stream",
    }
}

/// The reason phrase for the status codes these programs use.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Appends a response head to `out`: status line, `Server`, `Content-Type` (if any),
/// `Content-Length`, a `Connection` header, `extra` headers and the blank line.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    content_length: u64,
    keep_alive: bool,
    extra: &[(&str, &str)],
) {
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\nServer: wpod-httpd\r\n",
        reason(status)
    );
    if let Some(content_type) = content_type {
        let _ = write!(head, "Content-Type: {content_type}\r\n");
    }
    let _ = write!(head, "Content-Length: {content_length}\r\n");
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        "Connection: close\r\n"
    });
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf) {
            Parse::Done(req, used) => (req, used),
            other => panic!("not parsed: {other:?}"),
        }
    }

    #[test]
    fn parses_a_request_and_reports_its_length() {
        let buf = b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\nGET /next";
        let (req, used) = done(buf);
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/a%20b?x=1");
        assert_eq!(req.minor_version, 1);
        assert_eq!(req.header("host"), Some("h"));
        assert!(req.keep_alive());
        assert_eq!(&buf[used..], b"GET /next");
    }

    #[test]
    fn incomplete_and_invalid_requests() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parse::Incomplete
        );
        assert_eq!(parse_request(b""), Parse::Incomplete);
        assert!(matches!(parse_request(b"GET /\r\n\r\n"), Parse::Invalid(_)));
        assert!(matches!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n"),
            Parse::Invalid(_)
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"),
            Parse::Invalid(_)
        ));
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(parse_request(&huge), Parse::Invalid(_)));
    }

    #[test]
    fn bare_newlines_and_leading_blank_lines() {
        let (req, used) = done(b"\r\nHEAD /x HTTP/1.0\nA: b\n\n");
        assert_eq!(req.method, "HEAD");
        assert_eq!(used, 25);
        assert!(!req.keep_alive());
    }

    #[test]
    fn keep_alive_rules() {
        let (req, _) = done(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!req.keep_alive());
        let (req, _) = done(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(req.keep_alive());
    }

    #[test]
    fn body_length() {
        let (req, _) = done(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(req.body_length(), Ok(12));
        let (req, _) = done(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(req.body_length().is_err());
        let (req, _) = done(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
        assert!(req.body_length().is_err());
    }

    #[test]
    fn targets_decode_and_reject_dot_dot() {
        let t = parse_target("/a%20b/./c/?q=1#frag").unwrap();
        assert_eq!(t.segments, vec!["a b", "c"]);
        assert!(t.trailing_slash);
        assert_eq!(t.raw_path, "/a%20b/./c/");
        assert_eq!(t.query.as_deref(), Some("q=1"));

        let root = parse_target("/").unwrap();
        assert!(root.segments.is_empty() && root.trailing_slash);

        assert_eq!(parse_target("/a/../b"), Err(400));
        assert_eq!(parse_target("/a/%2e%2e/b"), Err(400));
        assert_eq!(parse_target("/a%2F..%2Fb"), Err(400));
        assert_eq!(parse_target("/bad%zz"), Err(400));
        assert_eq!(parse_target("/nul%00"), Err(400));
        assert_eq!(parse_target("relative"), Err(400));
        assert_eq!(
            parse_target("http://host:8/x/y").unwrap().segments,
            vec!["x", "y"]
        );
    }

    #[test]
    fn percent_coding_round_trips() {
        assert_eq!(percent_decode("a%20b%2Fc+d").as_deref(), Some("a b/c+d"));
        assert_eq!(percent_decode("%E2%9C%93").as_deref(), Some("✓"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%FF"), None);
        assert_eq!(percent_encode_path("a b/ü?.txt"), "a%20b/%C3%BC%3F.txt");
    }

    #[test]
    fn mime_types_by_extension() {
        assert_eq!(mime_type("index.html"), "text/html");
        assert_eq!(mime_type("A.HTM"), "text/html");
        assert_eq!(mime_type("x.txt"), "text/plain");
        assert_eq!(mime_type("s.css"), "text/css");
        assert_eq!(mime_type("app.js"), "application/javascript");
        assert_eq!(mime_type("d.json"), "application/json");
        assert_eq!(mime_type("i.png"), "image/png");
        assert_eq!(mime_type("i.jpg"), "image/jpeg");
        assert_eq!(mime_type("i.jpeg"), "image/jpeg");
        assert_eq!(mime_type("i.gif"), "image/gif");
        assert_eq!(mime_type("i.svg"), "image/svg+xml");
        assert_eq!(mime_type("favicon.ico"), "image/x-icon");
        assert_eq!(mime_type("m.wasm"), "application/wasm");
        assert_eq!(mime_type("f.xml"), "application/xml");
        assert_eq!(mime_type("app.war"), "application/java-archive");
        assert_eq!(mime_type("noext"), "application/octet-stream");
        assert_eq!(mime_type("dir.d/noext"), "application/octet-stream");
        assert_eq!(mime_type("x.bin"), "application/octet-stream");
    }

    #[test]
    fn html_escaping() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn response_head() {
        let mut out = Vec::new();
        write_response_head(&mut out, 404, Some("text/html"), 5, false, &[("X", "y")]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nServer: wpod-httpd\r\nContent-Type: text/html\r\n\
             Content-Length: 5\r\nConnection: close\r\nX: y\r\n\r\n"
        );
    }
}
