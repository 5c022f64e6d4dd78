//! `ambassador`: the ambassador container of the ambassador pattern (Burns and
//! Oppenheimer, HotCloud 2016). The app talks plain HTTP to `localhost:PORT`;
//! the ambassador forwards each request to the real backend, which the app
//! never needs to know about.
//!
//! `ambassador LISTEN_PORT UPSTREAM_HOST:PORT` prints `forwarding :PORT to
//! UPSTREAM` once listening, then for each connection reads one request
//! (head and `Content-Length` body), sends it upstream with
//! `Connection: close`, and copies the response back until the backend
//! closes (a refused connection to the backend, still starting, is tried
//! again for up to 5 s). WASI has no threads: connections are served one at a time, which
//! suits a request/response protocol.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use wpod_guests::{error_text, exit};

fn main() {
    let args = wpod_guests::args();
    let (Some(port), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: ambassador LISTEN_PORT UPSTREAM_HOST:PORT");
        exit(2);
    };
    let listener = match TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap_or(0))) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("ambassador: bind :{port}: {}", error_text(&err));
            exit(1);
        }
    };
    println!("forwarding :{port} to {upstream}");
    let _ = io::stdout().flush();
    for client in listener.incoming() {
        let result = client.and_then(|client| forward(client, upstream));
        if let Err(err) = result {
            eprintln!("ambassador: {}", error_text(&err));
        }
    }
}

fn forward(mut client: TcpStream, upstream: &str) -> io::Result<()> {
    // Read the request head (WASI has no `try_clone`, so no BufReader over a
    // clone: a plain buffer, read until the blank line).
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0; 4096];
        let read = client.read(&mut chunk)?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let text = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut head = String::new();
    let mut content_length = 0usize;
    for line in text.split("\r\n").filter(|line| !line.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        // The ambassador decides how it talks to the backend.
        if !lower.starts_with("connection:") {
            head.push_str(line);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut body = buffer[head_end..].to_vec();
    while body.len() < content_length {
        let mut chunk = [0; 4096];
        let read = client.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    // The backend (another pod) may still be starting: refused connections
    // are tried again for a few seconds, as a client library would.
    let mut tries = 0;
    let mut backend = loop {
        match TcpStream::connect(upstream) {
            Ok(stream) => break stream,
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(error) => return Err(error),
        }
    };
    backend.write_all(head.as_bytes())?;
    backend.write_all(&body)?;
    io::copy(&mut backend, &mut client)?;
    println!(
        "forwarded {} to {upstream}",
        text.lines().next().unwrap_or_default()
    );
    let _ = io::stdout().flush();
    Ok(())
}
