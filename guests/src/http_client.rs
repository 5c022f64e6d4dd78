//! A minimal HTTP/1.1 client over `std::net::TcpStream` (one request per connection), for
//! `http_get` and the log shipper.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};

use crate::http::{self, MAX_HEAD};

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host name or IP address, without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://host[:port][/path]`; the host may be a name, an IPv4 address or a
    /// bracketed IPv6 address.
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if authority.contains('@') {
            return Err(format!("{url}: user information is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: unclosed '['"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| format!("{url}: bad port"))?,
                    ),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p.parse().map_err(|_| format!("{url}: bad port '{p}'"))?,
        };
        Ok(Url {
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The socket addresses to try. `localhost` is answered here (IPv4 first, like most
    /// resolvers), so that it works where the host grants no name lookups.
    pub fn addrs(&self) -> io::Result<Vec<SocketAddr>> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Ok(vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), self.port),
            ]);
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

/// Connects to the first address of `url` that accepts; the error is the last one seen.
pub fn connect(url: &Url) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no addresses");
    for addr in url.addrs()? {
        match TcpStream::connect(addr) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// A response: status, head as received, headers and body (de-chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The status line and header lines as received, with the blank line that ends them.
    pub head: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parses a response head at the front of `buf`: (status, headers, head length).
pub fn parse_response_head(buf: &[u8]) -> http::Parse<(u16, Vec<(String, String)>)> {
    let Some((lines, used)) = http::split_head(buf) else {
        return if buf.len() > MAX_HEAD {
            http::Parse::Invalid("response head too large")
        } else {
            http::Parse::Incomplete
        };
    };
    let status_line = String::from_utf8_lossy(lines[0]);
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return http::Parse::Invalid("malformed status line");
    };
    if !version.starts_with("HTTP/1.") {
        return http::Parse::Invalid("not an HTTP/1.x response");
    }
    let Ok(status) = code.parse::<u16>() else {
        return http::Parse::Invalid("malformed status code");
    };
    match http::parse_headers(&lines[1..]) {
        Ok(headers) => http::Parse::Done((status, headers), used),
        Err(why) => http::Parse::Invalid(why),
    }
}

/// Decodes a complete chunked body; `Ok(None)` if `buf` does not hold all of it yet.
pub fn decode_chunked(buf: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(nl) = buf[at..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[at..at + nl]);
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| "malformed chunk size")?;
        at += nl + 1;
        if size == 0 {
            // Trailers, then a blank line; all that matters is that the body is complete.
            let rest = &buf[at..];
            let complete = rest.starts_with(b"\r\n")
                || rest.starts_with(b"\n")
                || http::split_head(rest).is_some();
            return Ok(complete.then_some(body));
        }
        let Some(chunk) = buf.get(at..at + size) else {
            return Ok(None);
        };
        body.extend_from_slice(chunk);
        at += size;
        if buf[at..].starts_with(b"\r\n") {
            at += 2;
        } else if buf[at..].starts_with(b"\n") {
            at += 1;
        } else if buf.len() - at < 2 {
            return Ok(None);
        } else {
            return Err("chunk not followed by a line end");
        }
    }
}

/// Connects, sends one request with `Connection: close` and reads the whole response.
pub fn request(
    url: &Url,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut stream = connect(url)?;
    send_request(&mut stream, url, method, headers, body)
}

/// Sends one request with `Connection: close` on `stream` and reads the whole response.
pub fn send_request(
    stream: &mut TcpStream,
    url: &Url,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut out = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: wpod-guest\r\nAccept: */*\r\nConnection: close\r\n",
        url.path,
        url.host_header()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut message = out.into_bytes();
    message.extend_from_slice(body);
    stream.write_all(&message)?;
    stream.flush()?;
    read_response(stream, method == "HEAD")
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Reads a response from `stream` (which the server closes after it, or delimits).
pub fn read_response(stream: &mut dyn Read, head_only: bool) -> io::Result<Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut eof = false;
    let mut fill = |buf: &mut Vec<u8>, eof: &mut bool| -> io::Result<()> {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            *eof = true;
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    let ((status, headers), head_len) = loop {
        match parse_response_head(&buf) {
            http::Parse::Done(head, used) => break (head, used),
            http::Parse::Invalid(why) => return Err(invalid(why)),
            http::Parse::Incomplete if eof => {
                return Err(invalid("connection closed before the response head"));
            }
            http::Parse::Incomplete => fill(&mut buf, &mut eof)?,
        }
    };
    let head = buf[..head_len].to_vec();
    let mut rest = buf.split_off(head_len);
    let no_body = head_only || status / 100 == 1 || status == 204 || status == 304;
    let chunked =
        http::header(&headers, "Transfer-Encoding").is_some_and(|v| http::has_token(v, "chunked"));
    let length = http::header(&headers, "Content-Length").and_then(|v| v.parse::<usize>().ok());
    let body = if no_body {
        Vec::new()
    } else if chunked {
        loop {
            if let Some(body) = decode_chunked(&rest).map_err(invalid)? {
                break body;
            }
            if eof {
                return Err(invalid("connection closed inside a chunked body"));
            }
            fill(&mut rest, &mut eof)?;
        }
    } else if let Some(length) = length {
        while rest.len() < length && !eof {
            fill(&mut rest, &mut eof)?;
        }
        if rest.len() < length {
            return Err(invalid("connection closed before the end of the body"));
        }
        rest.truncate(length);
        rest
    } else {
        while !eof {
            fill(&mut rest, &mut eof)?;
        }
        rest
    };
    Ok(Response {
        status,
        head,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://localhost:8080/a/b?c=d#frag").unwrap();
        assert_eq!(
            u,
            Url {
                host: "localhost".into(),
                port: 8080,
                path: "/a/b?c=d".into()
            }
        );
        assert_eq!(u.host_header(), "localhost:8080");
        let u = Url::parse("http://127.0.0.1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 80, "/")
        );
        assert_eq!(u.host_header(), "127.0.0.1");
        let u = Url::parse("http://[::1]:9200/_bulk").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9200, "/_bulk")
        );
        assert_eq!(u.host_header(), "[::1]:9200");
        let u = Url::parse("http://h?x=1").unwrap();
        assert_eq!(u.path, "/?x=1");

        assert!(Url::parse("https://x/").is_err());
        assert!(Url::parse("http:///x").is_err());
        assert!(Url::parse("http://x:99999/").is_err());
        assert!(Url::parse("http://[::1/").is_err());
    }

    #[test]
    fn resolves_localhost_and_literals_without_dns() {
        let u = Url::parse("http://localhost:81/").unwrap();
        let addrs = u.addrs().unwrap();
        assert_eq!(addrs[0], "127.0.0.1:81".parse().unwrap());
        assert_eq!(addrs[1], "[::1]:81".parse().unwrap());
        let u = Url::parse("http://[::1]:82/").unwrap();
        assert_eq!(u.addrs().unwrap(), vec!["[::1]:82".parse().unwrap()]);
    }

    #[test]
    fn reads_length_delimited_chunked_and_eof_bodies() {
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"hello");
        assert_eq!(resp.head, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");

        let mut r: &[u8] =
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (201, &b"hello world"[..])
        );

        let mut r: &[u8] = b"HTTP/1.0 404 Not Found\r\n\r\nuntil eof";
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (404, &b"until eof"[..])
        );

        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n";
        let resp = read_response(&mut r, true).unwrap();
        assert!(resp.body.is_empty());

        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort";
        assert!(read_response(&mut r, false).is_err());
        let mut r: &[u8] = b"garbage\r\n\r\n";
        assert!(read_response(&mut r, false).is_err());
    }

    #[test]
    fn chunked_decoding_needs_the_last_chunk() {
        assert_eq!(decode_chunked(b"3\r\nabc\r\n"), Ok(None));
        assert_eq!(decode_chunked(b"3\r\nabc\r\n0\r\n"), Ok(None));
        assert_eq!(
            decode_chunked(b"3\r\nabc\r\n0\r\n\r\n"),
            Ok(Some(b"abc".to_vec()))
        );
        assert_eq!(
            decode_chunked(b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
            Ok(Some(b"abc".to_vec()))
        );
        assert!(decode_chunked(b"zz\r\n").is_err());
    }
}
