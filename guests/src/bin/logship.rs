//! `logship`: follows the files of a directory like `tail -F` and ships their lines
//! (`logship DIR [--url http://HOST:PORT/PATH] [--interval-ms N] [--batch N]`).

use std::io::{stderr, stdout};

fn main() {
    let args = wpod_guests::args();
    let status = wpod_guests::logship::main(&args, &mut stdout().lock(), &mut stderr().lock());
    wpod_guests::exit(status);
}
