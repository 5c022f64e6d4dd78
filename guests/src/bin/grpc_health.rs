//! `grpc_health`: the smallest gRPC server that answers the standard health
//! check (`grpc.health.v1.Health/Check`), for testing gRPC probes.
//!
//! `grpc_health PORT [--not-serving-ms N]` listens on `0.0.0.0:PORT`, prints
//! `listening on PORT`, and answers every call on every HTTP/2 stream with
//! `NOT_SERVING` for the first N ms (default 0), then `SERVING`; it prints
//! `answered SERVING` (or `NOT_SERVING`) per call. One connection at a time.
//!
//! It speaks just enough HTTP/2 for that (RFC 9113): the preface, SETTINGS
//! and their ACK, PING answered, request HEADERS and DATA read and ignored
//! (the method is not checked), and a response of HEADERS (`:status 200`,
//! `content-type: application/grpc`), one DATA frame holding the gRPC
//! message, and trailers (`grpc-status: 0`), all with HPACK literals, so
//! nothing of the peer's header compression needs decoding.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use wpod_guests::{error_text, exit};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn usage() -> ! {
    eprintln!("usage: grpc_health PORT [--not-serving-ms N]");
    exit(64);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .get(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| usage());
    let not_serving = match args.get(2).map(String::as_str) {
        None => Duration::ZERO,
        Some("--not-serving-ms") => args
            .get(3)
            .and_then(|n| n.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_else(|| usage()),
        Some(_) => usage(),
    };
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("grpc_health: bind: {}", error_text(&e));
        exit(1);
    });
    println!("listening on {port}");
    let _ = io::stdout().flush();
    let started = Instant::now();
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        let serving = || started.elapsed() >= not_serving;
        if let Err(error) = serve(connection, &serving) {
            eprintln!("grpc_health: connection: {}", error_text(&error));
        }
    }
}

/// One HTTP/2 connection, until the peer closes it.
fn serve(mut stream: TcpStream, serving: &dyn Fn() -> bool) -> io::Result<()> {
    let mut preface = [0u8; PREFACE.len()];
    stream.read_exact(&mut preface)?;
    if preface != PREFACE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not HTTP/2"));
    }
    frame(&mut stream, SETTINGS, 0, 0, &[])?;
    loop {
        let mut head = [0u8; 9];
        match stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload)?;
        match kind {
            SETTINGS if flags & ACK == 0 => frame(&mut stream, SETTINGS, ACK, 0, &[])?,
            PING if flags & ACK == 0 => frame(&mut stream, PING, ACK, 0, &payload)?,
            GOAWAY => return Ok(()),
            // A call is answered once its request has ended.
            HEADERS | DATA if flags & END_STREAM != 0 => answer(&mut stream, stream_id, serving())?,
            _ => {}
        }
    }
}

/// The response to one `Check` call on `stream_id`.
fn answer(stream: &mut TcpStream, stream_id: u32, serving: bool) -> io::Result<()> {
    // HPACK: `:status: 200` is static entry 8; `content-type` (static name
    // 31) and `grpc-status` are literals without indexing.
    let mut headers = vec![0x88, 0x0f, 0x10, 16];
    headers.extend_from_slice(b"application/grpc");
    frame(stream, HEADERS, END_HEADERS, stream_id, &headers)?;
    // HealthCheckResponse { status = 1 (SERVING) or 2 (NOT_SERVING) }, as a
    // gRPC message: not compressed, 2 bytes long.
    let status = if serving { 1 } else { 2 };
    frame(stream, DATA, 0, stream_id, &[0, 0, 0, 0, 2, 0x08, status])?;
    let mut trailers = vec![0x00, 11];
    trailers.extend_from_slice(b"grpc-status");
    trailers.extend_from_slice(&[1, b'0']);
    frame(
        stream,
        HEADERS,
        END_HEADERS | END_STREAM,
        stream_id,
        &trailers,
    )?;
    println!(
        "answered {}",
        if serving { "SERVING" } else { "NOT_SERVING" }
    );
    let _ = io::stdout().flush();
    Ok(())
}

fn frame(stream: &mut TcpStream, kind: u8, flags: u8, id: u32, payload: &[u8]) -> io::Result<()> {
    let length = (payload.len() as u32).to_be_bytes();
    let mut bytes = Vec::with_capacity(9 + payload.len());
    bytes.extend_from_slice(&length[1..]);
    bytes.extend_from_slice(&[kind, flags]);
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(payload);
    stream.write_all(&bytes)
}
