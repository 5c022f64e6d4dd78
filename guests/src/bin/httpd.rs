//! `httpd`: a static-file HTTP/1.1 server that also serves `.war` archives' content
//! (`httpd [-p PORT] [-a ADDR] [-h DIR] [-q]`).

use std::io::{stderr, stdout};

fn main() {
    let args = wpod_guests::args();
    let status = wpod_guests::httpd::main(&args, &mut stdout().lock(), &mut stderr().lock());
    wpod_guests::exit(status);
}
