//! `udp_echo`: a UDP echo server and client, for testing datagram networking.
//!
//! `udp_echo serve PORT` binds `0.0.0.0:PORT`, prints `listening on udp PORT` and echoes every
//! datagram back to its sender, forever. `udp_echo send ADDR MSG [--retry-ms N]` sends MSG to
//! ADDR (`IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`), waits up to 2 s for a reply and prints
//! `reply: TEXT` (exit 0); without a reply it sends again until N ms (default 2000) have passed,
//! then prints `no reply` (exit 1).

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};
use wpod_guests::exit;

use wpod_guests::error_text;

const REPLY_WAIT: Duration = Duration::from_secs(2);

fn usage() -> ! {
    eprintln!("usage: udp_echo serve PORT\n       udp_echo send ADDR MSG [--retry-ms N]");
    exit(64);
}

fn die(what: &str, err: &io::Error) -> ! {
    eprintln!("udp_echo: {what}: {:?}: {}", err.kind(), error_text(err));
    exit(1);
}

fn serve(port: u16) -> ! {
    let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap_or_else(|e| die("bind", &e));
    let port = socket.local_addr().map_or(port, |a| a.port());
    println!("listening on udp {port}");
    let _ = io::stdout().flush();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to(&buf[..n], from) {
                    eprintln!("udp_echo: send to {from}: {}", error_text(&e));
                }
            }
            Err(e) => {
                eprintln!("udp_echo: receive: {}", error_text(&e));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// `localhost:PORT` is answered here, so that it works without name lookups.
fn target(addr: &str) -> SocketAddr {
    if let Some(port) = addr.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return SocketAddr::from(([127, 0, 0, 1], port));
    }
    match addr.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            eprintln!("udp_echo: {addr}: no address");
            exit(1);
        }
        Err(e) => die(addr, &e),
    }
}

/// Waits until `until` for a datagram; `None` on timeout.
fn receive(socket: &UdpSocket, until: Instant, timeouts: bool) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if now >= until {
            return None;
        }
        if timeouts {
            let left = (until - now).max(Duration::from_millis(1));
            if socket.set_read_timeout(Some(left)).is_err() {
                std::thread::sleep(left);
                return None;
            }
        }
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => return Some(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if !timeouts {
                    // Non-blocking fallback: poll.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // E.g. an ICMP "port unreachable" reported as ConnectionRefused: wait, then retry.
            Err(_) => std::thread::sleep(Duration::from_millis(50).min(until - now)),
        }
    }
}

fn send(addr: &str, message: &str, retry: Duration) -> ! {
    let target = target(addr);
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).unwrap_or_else(|e| die("bind", &e));
    // Prefer blocking reads with a timeout; where the host lacks them, poll non-blocking.
    let timeouts = socket.set_read_timeout(Some(REPLY_WAIT)).is_ok();
    if !timeouts {
        socket
            .set_nonblocking(true)
            .unwrap_or_else(|e| die("set_nonblocking", &e));
    }
    let deadline = Instant::now() + retry;
    loop {
        if let Err(e) = socket.send_to(message.as_bytes(), target) {
            die(&format!("send to {target}"), &e);
        }
        let now = Instant::now();
        let until = (now + REPLY_WAIT).min(deadline.max(now + Duration::from_millis(100)));
        if let Some(reply) = receive(&socket, until, timeouts) {
            println!("reply: {}", String::from_utf8_lossy(&reply));
            exit(0);
        }
        if Instant::now() >= deadline {
            println!("no reply");
            exit(1);
        }
    }
}

fn main() {
    let args = wpod_guests::args();
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let Some(port) = args.get(2).and_then(|p| p.parse().ok()) else {
                usage();
            };
            serve(port);
        }
        Some("send") => {
            let (Some(addr), Some(message)) = (args.get(2), args.get(3)) else {
                usage();
            };
            let retry = match args.get(4..).unwrap_or_default() {
                [] => Duration::from_millis(2000),
                [flag, ms] if flag == "--retry-ms" => match ms.parse() {
                    Ok(ms) => Duration::from_millis(ms),
                    Err(_) => usage(),
                },
                _ => usage(),
            };
            send(addr, message, retry);
        }
        _ => usage(),
    }
}
