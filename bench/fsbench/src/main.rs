//! `fsbench DIR [MIB] [FILES]`: times file I/O inside DIR and prints one `name=milliseconds`
//! line per phase. The program times itself, so start-up is not counted.
//!
//! Phases, in order (defaults: 64 MiB, 5,000 files):
//! - `seq_write`: creates `DIR/fsbench-big.bin` and writes MIB MiB to it in 1 MiB writes;
//! - `seq_read`: reads it back in 1 MiB reads (checked);
//! - `small_create`: creates `DIR/fsbench-small/` and FILES files of 1 KiB in it;
//! - `small_read`: opens and reads each of them to the end (checked).
//!
//! Nothing is fsynced: the figures are those of the page cache, which is what the interface
//! between the program and the host kernel costs. Everything it made is removed at the end.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

const CHUNK: usize = 1 << 20;
const SMALL: usize = 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: fsbench DIR [MIB] [FILES]");
        std::process::exit(64);
    };
    let mib: usize = args.get(2).map_or(64, |a| a.parse().expect("MIB"));
    let files: usize = args.get(3).map_or(5000, |a| a.parse().expect("FILES"));
    let dir = Path::new(dir);
    let big = dir.join("fsbench-big.bin");
    let small = dir.join("fsbench-small");
    let _ = fs::remove_file(&big);
    let _ = fs::remove_dir_all(&small);

    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let started = Instant::now();
    let mut file = fs::File::create(&big).expect("create the big file");
    for _ in 0..mib {
        file.write_all(&chunk).expect("write");
    }
    drop(file);
    report("seq_write", started);

    let started = Instant::now();
    let mut file = fs::File::open(&big).expect("open the big file");
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0usize;
    loop {
        let read = file.read(&mut buffer).expect("read");
        if read == 0 {
            break;
        }
        total += read;
    }
    report("seq_read", started);
    assert_eq!(total, mib * CHUNK, "read back what was written");

    let started = Instant::now();
    fs::create_dir(&small).expect("mkdir");
    let content = &chunk[..SMALL];
    for i in 0..files {
        let mut file = fs::File::create(small.join(format!("f{i}"))).expect("create a small file");
        file.write_all(content).expect("write a small file");
    }
    report("small_create", started);

    let started = Instant::now();
    let mut total = 0usize;
    for i in 0..files {
        let mut file = fs::File::open(small.join(format!("f{i}"))).expect("open a small file");
        buffer.clear();
        total += file.read_to_end(&mut buffer).expect("read a small file");
    }
    report("small_read", started);
    assert_eq!(total, files * SMALL, "read back what was written");

    fs::remove_file(&big).expect("remove the big file");
    fs::remove_dir_all(&small).expect("remove the small files");
}

fn report(phase: &str, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{phase}={ms:.3}");
    let _ = out.flush();
}
