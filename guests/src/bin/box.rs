//! `box`: a busybox-style multi-call program (`sh`, `cp`, `ls`, `httpd`, ...). The applet is
//! the file name this program runs under (`/bin/sh` → `sh`), or `argv[1]` when run as `box`.

fn main() {
    let args = wpod_guests::args();
    let status = wpod_guests::applets::multicall(&args);
    wpod_guests::exit(status);
}
