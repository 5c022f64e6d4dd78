//! `probe`: a test guest whose subcommands exercise one capability each (environment, exit
//! codes, files, read-only mounts, memory limits, traps, CPU, time, output, networking).
//! An unknown subcommand prints usage to stderr and exits 64.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;
use wpod_guests::exit;

use wpod_guests::error_text;

const USAGE: &str = "usage: probe env | exit N | primes N | write PATH TEXT | append PATH TEXT | read PATH | \
ls DIR | readonly DIR FILE | grow-memory [--die] | trap | spin | sleep MS | lines N | stat PATH | \
connect HOST:PORT | resolve NAME | spew BYTES | fill PATH BYTES | open-files DIR N";

fn usage() -> ! {
    eprintln!("{USAGE}");
    exit(64);
}

/// Prints `error: ...` to stderr and exits 1.
fn fail(err: &io::Error) -> ! {
    eprintln!("error: {err}");
    exit(1);
}

fn number<T: std::str::FromStr>(text: &str) -> T {
    text.parse().unwrap_or_else(|_| {
        eprintln!("probe: not a number: {text}");
        exit(64);
    })
}

fn main() {
    let args = wpod_guests::args();
    let arg = |i: usize| -> &str { args.get(i).map_or_else(|| usage(), String::as_str) };
    match args.get(1).map(String::as_str).unwrap_or("") {
        "env" => env(&args),
        "exit" => {
            let code: i32 = number(arg(2));
            println!("exiting with {code}");
            let _ = io::stdout().flush();
            exit(code);
        }
        "write" => {
            fs::write(arg(2), arg(3)).unwrap_or_else(|e| fail(&e));
            println!("wrote {}", arg(2));
        }
        "append" => {
            let mut file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(arg(2))
                .unwrap_or_else(|e| fail(&e));
            file.write_all(format!("{}\n", arg(3)).as_bytes())
                .unwrap_or_else(|e| fail(&e));
            println!("appended {}", arg(2));
        }
        "read" => {
            let data = fs::read(arg(2)).unwrap_or_else(|e| fail(&e));
            let mut out = io::stdout().lock();
            out.write_all(&data)
                .and_then(|()| out.flush())
                .unwrap_or_else(|e| fail(&e));
        }
        "ls" => {
            let mut names: Vec<String> = fs::read_dir(arg(2))
                .unwrap_or_else(|e| fail(&e))
                .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<_>>()
                .unwrap_or_else(|e| fail(&e));
            names.sort();
            for name in names {
                println!("{name}");
            }
        }
        "readonly" => exit(readonly(Path::new(arg(2)), arg(3))),
        "grow-memory" => grow_memory(args.get(2).is_some_and(|a| a == "--die")),
        "trap" => {
            println!("about to trap");
            let _ = io::stdout().flush();
            trap();
        }
        "spin" => {
            println!("spinning");
            let _ = io::stdout().flush();
            let mut counter = 0u64;
            loop {
                counter = std::hint::black_box(counter).wrapping_add(1);
            }
        }
        "primes" => {
            // CPU-bound work with a checkable answer (bench/run compares
            // Winch's code with Cranelift's on it): primes below N by trial
            // division.
            let below: u64 = number(arg(2));
            let count = (2..below)
                .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
                .count();
            println!("{count} primes below {below}");
        }
        "sleep" => {
            let ms: u64 = number(arg(2));
            std::thread::sleep(Duration::from_millis(ms));
            println!("slept {ms}");
        }
        "graceful" => {
            // Works (sleeps) until wpod asks it to end, then cleans up.
            println!("working");
            let _ = io::stdout().flush();
            while !std::path::Path::new("/run/wpod/terminating").exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let note = std::path::Path::new(arg(2)).join("cleanup");
            match std::fs::write(&note, "cleaned up\n") {
                Ok(()) => println!("cleaned up"),
                Err(error) => {
                    eprintln!("error: {error}");
                    std::process::exit(1);
                }
            }
        }
        "lines" => {
            let n: u64 = number(arg(2));
            for i in 1..=n {
                println!("line {i}");
                eprintln!("err {i}");
            }
        }
        "spew" => spew(number(arg(2))),
        "fill" => fill(Path::new(arg(2)), number(arg(3))),
        "open-files" => open_files(Path::new(arg(2)), number(arg(3))),
        "stat" => {
            let meta = fs::metadata(arg(2)).ok();
            println!("exists={}", meta.is_some());
            println!("is_dir={}", meta.as_ref().is_some_and(|m| m.is_dir()));
            println!("len={}", meta.as_ref().map_or(0, |m| m.len()));
        }
        "connect" => match TcpStream::connect(arg(2)) {
            Ok(_) => println!("connected"),
            Err(e) => {
                println!("connect failed: {:?}: {}", e.kind(), error_text(&e));
                exit(1);
            }
        },
        "resolve" => match (arg(2), 0u16).to_socket_addrs() {
            Ok(addrs) => {
                for addr in addrs {
                    println!("{}", addr.ip());
                }
            }
            Err(e) => {
                eprintln!("error: {:?}: {}", e.kind(), error_text(&e));
                exit(1);
            }
        },
        other => {
            if !other.is_empty() {
                eprintln!("probe: unknown subcommand '{other}'");
            }
            usage();
        }
    }
}

/// Writes `bytes` of `x` to stdout without a newline (a chatty container).
fn spew(bytes: u64) {
    let chunk = [b'x'; 64 * 1024];
    let mut out = io::stdout().lock();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if let Err(e) = out.write_all(&chunk[..n]) {
            fail(&e);
        }
        left -= n as u64;
    }
    let _ = out.flush();
    eprintln!("spewed {bytes}");
}

/// Writes up to `bytes` into the file at `path`, 1 MiB at a time; prints
/// how much was written and the error that stopped it (`stopped: <kind>:
/// <text>`, or `stopped: none`).
fn fill(path: &Path, bytes: u64) {
    let mut file = File::create(path).unwrap_or_else(|e| fail(&e));
    let chunk = vec![b'f'; 1024 * 1024];
    let mut written = 0u64;
    let mut error = None;
    while written < bytes {
        let n = (bytes - written).min(chunk.len() as u64) as usize;
        match file.write(&chunk[..n]) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    if error.is_none()
        && let Err(e) = file.sync_all()
    {
        error = Some(e);
    }
    println!("written={written}");
    match error {
        Some(e) => {
            println!("stopped: {:?}: {}", e.kind(), error_text(&e));
            exit(1);
        }
        None => println!("stopped: none"),
    }
}

/// Opens up to `n` files in `dir` and keeps them open; prints how many it
/// got and the error that stopped it, then sleeps (holding them) until
/// stopped or for 60 s.
fn open_files(dir: &Path, n: u64) {
    let mut files = Vec::new();
    let mut error = None;
    for i in 0..n {
        match File::create(dir.join(format!("f{}", i % 64))) {
            Ok(file) => files.push(file),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    println!("opened={}", files.len());
    match &error {
        Some(e) => println!("stopped: {:?}: {}", e.kind(), error_text(e)),
        None => println!("stopped: none"),
    }
    let _ = io::stdout().flush();
    std::thread::sleep(Duration::from_secs(60));
}

fn env(args: &[String]) {
    println!("argc={}", args.len());
    for (i, arg) in args.iter().enumerate() {
        println!("argv[{i}]={arg}");
    }
    for (name, value) in wpod_guests::env_vars() {
        println!("env {name}={value}");
    }
    match std::env::current_dir() {
        Ok(dir) => println!("cwd={}", dir.display()),
        Err(_) => println!("cwd=?"),
    }
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

/// Allocates 1 MiB blocks (touching every byte) until refused. With `die`, allocates so that
/// failure aborts (a trap in Wasm), as ordinary programs do.
fn grow_memory(die: bool) {
    const MIB: usize = 1 << 20;
    const CAP_MIB: usize = 4096;
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(CAP_MIB);
    for mib in 1..=CAP_MIB {
        let block = if die {
            vec![1u8; MIB]
        } else {
            let mut block = Vec::new();
            if block.try_reserve_exact(MIB).is_err() {
                println!("refused after {} MiB", mib - 1);
                return;
            }
            block.resize(MIB, 1);
            block
        };
        kept.push(block);
        if mib % 16 == 0 {
            println!("allocated {mib} MiB");
            let _ = io::stdout().flush();
        }
    }
    std::hint::black_box(&kept);
    println!("no limit hit");
}

/// Tries every kind of write under `dir` (FILE is relative to it), prints one line per
/// operation, and returns 0 if all were denied and FILE is unchanged.
fn readonly(dir: &Path, file: &str) -> i32 {
    let path = dir.join(file);
    let original = fs::read(&path).unwrap_or_else(|e| {
        eprintln!("error: read {}: {e}", path.display());
        exit(1);
    });
    let mut allowed = false;
    let mut report = |op: &str, result: io::Result<()>| match result {
        Ok(()) => {
            println!("{op}: ALLOWED");
            allowed = true;
        }
        Err(e) => println!("{op}: denied ({:?})", e.kind()),
    };

    let new_file = dir.join("new-file");
    let created = File::create(&new_file).map(drop);
    if created.is_ok() {
        let _ = fs::remove_file(&new_file);
    }
    report("create", created);

    report(
        "write",
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"X")),
    );
    report(
        "append",
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"X")),
    );
    // Opening with truncation is itself the write.
    report(
        "truncate",
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .map(drop),
    );
    let set_len = File::open(&path).and_then(|f| f.set_len(0)).or_else(|_| {
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
    });
    report("set_len", set_len);

    let renamed = dir.join("renamed");
    let rename = fs::rename(&path, &renamed);
    if rename.is_ok() {
        let _ = fs::rename(&renamed, &path);
    }
    report("rename", rename);

    // Judge the content before `unlink`, which puts the original back if it succeeds.
    let unchanged_so_far = fs::read(&path).is_ok_and(|now| now == original);
    let unlink = fs::remove_file(&path);
    if unlink.is_ok() {
        // Put it back so that the remaining operations still have a file to work on.
        let _ = fs::write(&path, &original);
    }
    report("unlink", unlink);

    let new_dir = dir.join("newdir");
    let mkdir = fs::create_dir(&new_dir);
    if mkdir.is_ok() {
        let _ = fs::remove_dir(&new_dir);
    }
    report("mkdir", mkdir);

    let sub = dir.join("sub");
    if sub.is_dir() {
        let rmdir = fs::remove_dir(&sub);
        if rmdir.is_ok() {
            let _ = fs::create_dir(&sub);
        }
        report("rmdir", rmdir);
    } else {
        println!("rmdir: skipped");
    }

    let link = dir.join("link");
    let hardlink = fs::hard_link(&path, &link);
    if hardlink.is_ok() {
        let _ = fs::remove_file(&link);
    }
    report("hardlink", hardlink);

    let sym = dir.join("sym");
    let symlink = make_symlink(file, &sym);
    if symlink.is_ok() {
        let _ = fs::remove_file(&sym);
    }
    report("symlink", symlink);

    let unchanged = unchanged_so_far && fs::read(&path).is_ok_and(|now| now == original);
    println!(
        "content: {}",
        if unchanged { "unchanged" } else { "CHANGED" }
    );
    i32::from(allowed || !unchanged)
}

/// Creates a symbolic link. `std::os::wasi::fs::symlink_path` is still unstable, but the
/// deprecated, platform-neutral `std::fs::soft_link` is stable and works on WASI too.
#[allow(deprecated)]
fn make_symlink(target: &str, link: &Path) -> io::Result<()> {
    fs::soft_link(target, link)
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_lists_every_subcommand() {
        for sub in [
            "env",
            "exit",
            "readonly",
            "grow-memory",
            "connect",
            "resolve",
        ] {
            assert!(super::USAGE.contains(sub));
        }
    }
}
