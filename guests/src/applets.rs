//! Busybox-style applets of the `box` multi-call program. Each applet writes to the streams
//! in its [`Io`] (never to the process's own), so that the shell can redirect it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Display;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error_text;
use crate::timefmt::{Utc, unix_seconds};

/// The standard streams of one applet run.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Io")
    }
}

/// What an applet knows about its caller besides its arguments.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// The exported environment (a shell's view, which may differ from the process's).
    pub env: BTreeMap<String, String>,
}

impl Ctx {
    /// The process's own environment.
    pub fn from_process() -> Ctx {
        Ctx {
            env: crate::env_vars().into_iter().collect(),
        }
    }
}

/// An applet: `args[0]` is its name; returns the exit status.
pub type Applet = fn(&mut Ctx, &[String], &mut Io) -> i32;

/// All applets, sorted by name.
pub const APPLETS: &[(&str, Applet)] = &[
    ("[", test),
    ("basename", basename),
    ("cat", cat),
    ("cp", cp),
    ("date", date),
    ("dirname", dirname),
    ("echo", echo),
    ("env", env),
    ("false", |_, _, _| 1),
    ("head", head),
    ("httpd", httpd),
    ("ls", ls),
    ("mkdir", mkdir),
    ("mv", mv),
    ("pwd", pwd),
    ("rm", rm),
    ("seq", seq),
    ("sh", crate::shell::sh_main),
    ("sleep", sleep),
    ("sort", sort),
    ("tail", tail),
    ("tee", tee),
    ("test", test),
    ("touch", touch),
    ("true", |_, _, _| 0),
    ("wc", wc),
];

/// The applet called `name`.
pub fn lookup(name: &str) -> Option<Applet> {
    APPLETS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| APPLETS[i].1)
}

/// The `box` program: picks the applet by the file name in `args[0]` (without `.wasm`), or by
/// `args[1]` when that name is `box`; runs it on the process's standard streams.
pub fn multicall(args: &[String]) -> i32 {
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let mut io = Io {
        stdin: &mut stdin,
        out: &mut out,
        err: &mut err,
    };
    let status = dispatch(&mut Ctx::from_process(), args, &mut io);
    let _ = io.out.flush();
    let _ = io.err.flush();
    status
}

/// The multi-call dispatch of [`multicall`], on given streams.
pub fn dispatch(ctx: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let name = crate::shell::applet_name(args.first().map_or("box", String::as_str));
    let args = if name == "box" { &args[1..] } else { args };
    let Some(applet_name) = args.first() else {
        let names: Vec<&str> = APPLETS.iter().map(|(n, _)| *n).collect();
        let _ = writeln!(
            io.err,
            "usage: box APPLET [ARGS...], or run box under an applet's name\napplets: {}",
            names.join(" ")
        );
        return 64;
    };
    if applet_name == "--list" {
        for (name, _) in APPLETS {
            let _ = writeln!(io.out, "{name}");
        }
        return 0;
    }
    match lookup(crate::shell::applet_name(applet_name)) {
        Some(applet) => applet(ctx, args, io),
        None => {
            let _ = writeln!(io.err, "box: applet not found: {applet_name}");
            127
        }
    }
}

/// Prints `applet: message` to the applet's stderr; returns status 1.
fn fail(io: &mut Io, applet: &str, message: impl Display) -> i32 {
    let _ = writeln!(io.err, "{applet}: {message}");
    1
}

/// Splits `args[1..]` into option letters (from `-abc` words, up to `--` or the first operand)
/// and operands; an option letter not in `allowed` is an error.
fn options(args: &[String], allowed: &str) -> Result<(String, Vec<String>), char> {
    let mut flags = String::new();
    let mut rest = args.iter().skip(1);
    let mut operands = Vec::new();
    for arg in rest.by_ref() {
        if arg == "--" {
            break;
        }
        match arg.strip_prefix('-') {
            Some(letters) if !letters.is_empty() => {
                for c in letters.chars() {
                    if !allowed.contains(c) {
                        return Err(c);
                    }
                    flags.push(c);
                }
            }
            _ => {
                operands.push(arg.clone());
                break;
            }
        }
    }
    operands.extend(rest.cloned());
    Ok((flags, operands))
}

macro_rules! options_or_fail {
    ($io:expr, $args:expr, $allowed:expr) => {
        match options($args, $allowed) {
            Ok(parsed) => parsed,
            Err(c) => {
                let _ = writeln!($io.err, "{}: invalid option -- '{}'", $args[0], c);
                return 1;
            }
        }
    };
}

/// Opens `name` for reading, `-` meaning standard input (and `/dev/null` nothing: WASI has
/// no devices).
fn open_input<'a>(name: &str, stdin: &'a mut (dyn Read + '_)) -> io::Result<Box<dyn Read + 'a>> {
    if name == "-" {
        Ok(Box::new(stdin))
    } else if name == "/dev/null" {
        Ok(Box::new(io::empty()))
    } else {
        Ok(Box::new(File::open(name)?))
    }
}

fn cat(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (_, mut files) = options_or_fail!(io, args, "u");
    if files.is_empty() {
        files.push("-".into());
    }
    let mut status = 0;
    for name in &files {
        let copied = open_input(name, io.stdin).and_then(|mut input| io::copy(&mut input, io.out));
        if let Err(err) = copied {
            status = fail(io, "cat", format_args!("{name}: {}", error_text(&err)));
        }
    }
    status
}

fn echo(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (mut newline, mut escapes) = (true, false);
    let mut words = &args[1..];
    while let Some(first) = words.first() {
        let Some(flags) = first.strip_prefix('-') else {
            break;
        };
        if flags.is_empty() || !flags.chars().all(|c| matches!(c, 'n' | 'e' | 'E')) {
            break;
        }
        for c in flags.chars() {
            match c {
                'n' => newline = false,
                'e' => escapes = true,
                _ => escapes = false,
            }
        }
        words = &words[1..];
    }
    let mut text = words.join(" ");
    if escapes {
        let (unescaped, stop) = unescape(&text);
        text = unescaped;
        if stop {
            newline = false;
        }
    }
    if newline {
        text.push('\n');
    }
    match io.out.write_all(text.as_bytes()) {
        Ok(()) => 0,
        Err(err) => fail(io, "echo", error_text(&err)),
    }
}

/// Interprets `echo -e` escapes; also says whether `\c` (stop output) was seen.
fn unescape(text: &str) -> (String, bool) {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('e') => out.push('\u{1b}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('\\') => out.push('\\'),
            Some('c') => return (out, true),
            Some(d @ ('0' | 'x')) => {
                let (radix, max) = if d == '0' { (8, 3) } else { (16, 2) };
                let mut digits = String::new();
                while digits.len() < max && chars.peek().is_some_and(|c| c.is_digit(radix)) {
                    digits.extend(chars.next());
                }
                match u32::from_str_radix(&digits, radix) {
                    Ok(n) => out.extend(char::from_u32(n)),
                    Err(_) if d == '0' => out.push('\0'),
                    Err(_) => out.push_str("\\x"),
                }
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    (out, false)
}

/// `cp`: files and, with `-r`/`-R`/`-a`, directories.
fn cp(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (flags, operands) = options_or_fail!(io, args, "rRafpvdL");
    let recursive = flags.contains(['r', 'R', 'a']);
    let force = flags.contains('f');
    let Some((dst, srcs)) = operands.split_last().filter(|(_, srcs)| !srcs.is_empty()) else {
        return fail(io, "cp", "missing file operand");
    };
    let dst = Path::new(dst);
    let into_dir = dst.is_dir();
    if srcs.len() > 1 && !into_dir {
        return fail(
            io,
            "cp",
            format_args!("'{}' is not a directory", dst.display()),
        );
    }
    let mut status = 0;
    for src in srcs {
        let src = Path::new(src);
        let target = if into_dir {
            match src.file_name() {
                Some(name) => dst.join(name),
                None => dst.to_path_buf(),
            }
        } else {
            dst.to_path_buf()
        };
        if let Err(message) = copy_path(src, &target, recursive, force) {
            status = fail(io, "cp", message);
        }
    }
    status
}

fn copy_path(src: &Path, dst: &Path, recursive: bool, force: bool) -> Result<(), String> {
    let described =
        |path: &Path, err: io::Error| format!("{}: {}", path.display(), error_text(&err));
    let meta = fs::metadata(src).map_err(|e| described(src, e))?;
    if meta.is_dir() {
        if !recursive {
            return Err(format!("omitting directory '{}'", src.display()));
        }
        if dst.starts_with(src) {
            return Err(format!(
                "cannot copy a directory, '{}', into itself, '{}'",
                src.display(),
                dst.display()
            ));
        }
        match fs::create_dir(dst) {
            Ok(()) => {}
            Err(_) if dst.is_dir() => {}
            Err(err) => return Err(described(dst, err)),
        }
        let entries = fs::read_dir(src).map_err(|e| described(src, e))?;
        let mut result = Ok(());
        for entry in entries {
            let entry = entry.map_err(|e| described(src, e))?;
            let name = entry.file_name();
            if let Err(message) = copy_path(&src.join(&name), &dst.join(&name), recursive, force) {
                result = Err(message);
            }
        }
        return result;
    }
    match fs::copy(src, dst) {
        Ok(_) => Ok(()),
        Err(_) if force && fs::remove_file(dst).is_ok() => {
            fs::copy(src, dst).map(drop).map_err(|e| described(dst, e))
        }
        Err(err) => Err(described(dst, err)),
    }
}

fn mv(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (_, operands) = options_or_fail!(io, args, "finv");
    let Some((dst, srcs)) = operands.split_last().filter(|(_, srcs)| !srcs.is_empty()) else {
        return fail(io, "mv", "missing file operand");
    };
    let dst = Path::new(dst);
    let into_dir = dst.is_dir();
    if srcs.len() > 1 && !into_dir {
        return fail(
            io,
            "mv",
            format_args!("'{}' is not a directory", dst.display()),
        );
    }
    let mut status = 0;
    for src in srcs {
        let src = Path::new(src);
        let target = match src.file_name() {
            Some(name) if into_dir => dst.join(name),
            _ => dst.to_path_buf(),
        };
        let moved = match fs::rename(src, &target) {
            Err(err) if err.kind() == io::ErrorKind::CrossesDevices => {
                // Different preopened directories can be different file systems.
                copy_path(src, &target, true, true).and_then(|()| {
                    remove_path(src).map_err(|e| format!("{}: {}", src.display(), error_text(&e)))
                })
            }
            Err(err) => Err(format!("{}: {}", src.display(), error_text(&err))),
            Ok(()) => Ok(()),
        };
        if let Err(message) = moved {
            status = fail(io, "mv", message);
        }
    }
    status
}

fn remove_path(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn rm(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (flags, operands) = options_or_fail!(io, args, "rRfiv");
    let recursive = flags.contains(['r', 'R']);
    let force = flags.contains('f');
    if operands.is_empty() && !force {
        return fail(io, "rm", "missing operand");
    }
    let mut status = 0;
    for name in &operands {
        let path = Path::new(name);
        let result = match fs::symlink_metadata(path) {
            Err(err) if force && err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
            Ok(meta) if meta.is_dir() => {
                if recursive {
                    fs::remove_dir_all(path)
                } else {
                    status = fail(io, "rm", format_args!("'{name}' is a directory"));
                    continue;
                }
            }
            Ok(_) => fs::remove_file(path),
        };
        if let Err(err) = result {
            status = fail(io, "rm", format_args!("{name}: {}", error_text(&err)));
        }
    }
    status
}

fn mkdir(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (flags, operands) = options_or_fail!(io, args, "pv");
    if operands.is_empty() {
        return fail(io, "mkdir", "missing operand");
    }
    let mut status = 0;
    for name in &operands {
        let made = if flags.contains('p') {
            fs::create_dir_all(name)
        } else {
            fs::create_dir(name)
        };
        if let Err(err) = made {
            status = fail(io, "mkdir", format_args!("{name}: {}", error_text(&err)));
        }
    }
    status
}

fn touch(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (flags, operands) = options_or_fail!(io, args, "ca");
    if operands.is_empty() {
        return fail(io, "touch", "missing file operand");
    }
    let mut status = 0;
    for name in &operands {
        let touched = if Path::new(name).exists() {
            File::options()
                .append(true)
                .open(name)
                .and_then(|file| file.set_modified(SystemTime::now()))
        } else if flags.contains('c') {
            Ok(())
        } else {
            File::create(name).map(drop)
        };
        if let Err(err) = touched {
            status = fail(io, "touch", format_args!("{name}: {}", error_text(&err)));
        }
    }
    status
}

/// One `ls -l` line.
fn long_line(name: &str, path: &Path, meta: &fs::Metadata) -> String {
    let kind = if meta.is_dir() {
        'd'
    } else if meta.file_type().is_symlink() {
        'l'
    } else {
        '-'
    };
    // WASI has no permission bits (and no reliable read-only flag): show the usual modes.
    let mode = if meta.is_dir() {
        "rwxr-xr-x"
    } else {
        "rw-r--r--"
    };
    let time = meta
        .modified()
        .map(|t| Utc::from_unix(unix_seconds(t)).format("%F %H:%M", 0))
        .unwrap_or_else(|_| "????-??-?? ??:??".into());
    let mut line = format!("{kind}{mode} 1 root root {:>10} {time} {name}", meta.len());
    if let Ok(target) = fs::read_link(path) {
        line.push_str(&format!(" -> {}", target.display()));
    }
    line
}

fn ls(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (flags, mut operands) = options_or_fail!(io, args, "laA1dhF");
    let long = flags.contains('l');
    let all = flags.contains('a');
    let almost_all = flags.contains('A');
    let classify = flags.contains('F');
    if operands.is_empty() {
        operands.push(".".into());
    }
    operands.sort();
    let mut status = 0;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for name in operands {
        match fs::symlink_metadata(&name) {
            Err(err) => status = fail(io, "ls", format_args!("{name}: {}", error_text(&err))),
            Ok(meta) => {
                let is_dir = meta.is_dir() || fs::metadata(&name).is_ok_and(|m| m.is_dir());
                if is_dir && !flags.contains('d') {
                    dirs.push(name);
                } else {
                    files.push((name, meta));
                }
            }
        }
    }
    let show = |io: &mut Io, name: &str, path: &Path, meta: &fs::Metadata| {
        let suffix = if classify && meta.is_dir() { "/" } else { "" };
        let line = if long {
            long_line(name, path, meta)
        } else {
            name.to_string()
        };
        let _ = writeln!(io.out, "{line}{suffix}");
    };
    for (name, meta) in &files {
        show(io, name, Path::new(name), meta);
    }
    let headers = files.len() + dirs.len() > 1;
    for (i, dir) in dirs.iter().enumerate() {
        if headers {
            let gap = if i > 0 || !files.is_empty() { "\n" } else { "" };
            let _ = writeln!(io.out, "{gap}{dir}:");
        }
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                status = fail(io, "ls", format_args!("{dir}: {}", error_text(&err)));
                continue;
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| all || almost_all || !n.starts_with('.'))
            .collect();
        if all {
            names.extend([".".to_string(), "..".to_string()]);
        }
        names.sort();
        for name in names {
            let path = Path::new(dir).join(&name);
            match fs::symlink_metadata(&path) {
                Ok(meta) => show(io, &name, &path, &meta),
                // `..` of a preopened directory may not be reachable in WASI.
                Err(_) if name == ".." => {
                    let _ = writeln!(io.out, "{name}");
                }
                Err(err) => {
                    status = fail(
                        io,
                        "ls",
                        format_args!("{}: {}", path.display(), error_text(&err)),
                    );
                }
            }
        }
    }
    status
}

fn sleep(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    if args.len() < 2 {
        return fail(io, "sleep", "missing operand");
    }
    let mut total = Duration::ZERO;
    for arg in &args[1..] {
        if arg == "infinity" {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let (number, unit) = match arg.char_indices().last() {
            Some((at, c @ ('s' | 'm' | 'h' | 'd'))) => (&arg[..at], c),
            _ => (arg.as_str(), 's'),
        };
        let scale = match unit {
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => 1.0,
        };
        match number.parse::<f64>() {
            Ok(n) if n >= 0.0 && n.is_finite() => total += Duration::from_secs_f64(n * scale),
            _ => return fail(io, "sleep", format_args!("invalid number '{arg}'")),
        }
    }
    std::thread::sleep(total);
    0
}

fn pwd(_: &mut Ctx, _: &[String], io: &mut Io) -> i32 {
    match std::env::current_dir() {
        Ok(dir) => {
            let _ = writeln!(io.out, "{}", dir.display());
            0
        }
        Err(err) => fail(io, "pwd", error_text(&err)),
    }
}

/// `env`: prints the environment, or runs `env [-i] [NAME=VALUE...] COMMAND [ARGS...]`.
fn env(ctx: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let mut rest = &args[1..];
    let mut sub = ctx.clone();
    if rest.first().is_some_and(|a| a == "-i" || a == "-") {
        sub.env.clear();
        rest = &rest[1..];
    }
    while let Some((name, value)) = rest.first().and_then(|a| a.split_once('=')) {
        sub.env.insert(name.to_string(), value.to_string());
        rest = &rest[1..];
    }
    if rest.is_empty() {
        for (name, value) in &sub.env {
            let _ = writeln!(io.out, "{name}={value}");
        }
        return 0;
    }
    crate::shell::run_command(&mut sub, rest, io)
}

/// Parses the line count of `head`/`tail`: `-n N`, `-nN`, `-N`; `+N` (from line N) for tail.
fn line_count(args: &[String], applet: &str) -> Result<(usize, bool, Vec<String>), String> {
    let mut count = 10usize;
    let mut from_start = false;
    let mut files = Vec::new();
    let mut i = 1;
    let parse = |n: &str, from_start: &mut bool| -> Result<usize, String> {
        let n = match n.strip_prefix('+') {
            Some(rest) if applet == "tail" => {
                *from_start = true;
                rest
            }
            _ => n,
        };
        n.parse()
            .map_err(|_| format!("invalid number of lines: '{n}'"))
    };
    while i < args.len() {
        let arg = &args[i];
        if arg == "-n" {
            let n = args
                .get(i + 1)
                .ok_or("option requires an argument -- 'n'")?;
            count = parse(n, &mut from_start)?;
            i += 2;
            continue;
        }
        if let Some(n) = arg.strip_prefix("-n") {
            count = parse(n, &mut from_start)?;
        } else if arg.len() > 1
            && arg[1..].chars().all(|c| c.is_ascii_digit())
            && arg.starts_with('-')
        {
            count = parse(&arg[1..], &mut from_start)?;
        } else if arg == "-F" || arg == "-f" {
            return Err(format!(
                "{arg}: following files is not supported (use logship)"
            ));
        } else {
            files.push(arg.clone());
        }
        i += 1;
    }
    if files.is_empty() {
        files.push("-".into());
    }
    Ok((count, from_start, files))
}

fn head(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    head_or_tail(args, io, "head")
}

fn tail(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    head_or_tail(args, io, "tail")
}

fn head_or_tail(args: &[String], io: &mut Io, applet: &str) -> i32 {
    let (count, from_start, files) = match line_count(args, applet) {
        Ok(parsed) => parsed,
        Err(message) => return fail(io, applet, message),
    };
    let mut status = 0;
    for (i, name) in files.iter().enumerate() {
        if files.len() > 1 {
            let gap = if i > 0 { "\n" } else { "" };
            let _ = writeln!(io.out, "{gap}==> {name} <==");
        }
        let result = match open_input(name, io.stdin) {
            Ok(input) => {
                let mut lines = BufReader::new(input);
                if applet == "head" {
                    copy_lines(&mut lines, io.out, |n| n < count)
                } else if from_start {
                    copy_lines(&mut lines, io.out, |n| n + 1 >= count)
                } else {
                    last_lines(&mut lines, io.out, count)
                }
            }
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            status = fail(io, applet, format_args!("{name}: {}", error_text(&err)));
        }
    }
    status
}

/// Copies the lines whose 0-based index passes `keep` (stopping at the first that fails, if
/// an earlier one passed).
fn copy_lines(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    keep: impl Fn(usize) -> bool,
) -> io::Result<()> {
    let mut line = Vec::new();
    let mut index = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if keep(index) {
            out.write_all(&line)?;
        } else if index > 0 && keep(index - 1) {
            return Ok(());
        }
        index += 1;
    }
}

fn last_lines(input: &mut dyn BufRead, out: &mut dyn Write, count: usize) -> io::Result<()> {
    let mut ring: VecDeque<Vec<u8>> = VecDeque::with_capacity(count.min(4096));
    loop {
        let mut line = Vec::new();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if count == 0 {
            continue;
        }
        if ring.len() == count {
            ring.pop_front();
        }
        ring.push_back(line);
    }
    for line in ring {
        out.write_all(&line)?;
    }
    Ok(())
}

fn wc(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (mut flags, mut files) = options_or_fail!(io, args, "lwc");
    if flags.is_empty() {
        flags = "lwc".into();
    }
    let named = !files.is_empty();
    if files.is_empty() {
        files.push("-".into());
    }
    let mut status = 0;
    let mut totals = [0usize; 3];
    for name in &files {
        let mut data = Vec::new();
        let read = open_input(name, io.stdin).and_then(|mut input| input.read_to_end(&mut data));
        if let Err(err) = read {
            status = fail(io, "wc", format_args!("{name}: {}", error_text(&err)));
            continue;
        }
        let counts = [
            data.iter().filter(|&&b| b == b'\n').count(),
            data.split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .count(),
            data.len(),
        ];
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
        let _ = writeln!(io.out, "{}", wc_line(&flags, counts, named.then_some(name)));
    }
    if files.len() > 1 {
        let _ = writeln!(io.out, "{}", wc_line(&flags, totals, Some("total")));
    }
    status
}

fn wc_line(flags: &str, counts: [usize; 3], name: Option<&str>) -> String {
    let mut fields: Vec<String> = "lwc"
        .chars()
        .zip(counts)
        .filter(|(flag, _)| flags.contains(*flag))
        .map(|(_, count)| count.to_string())
        .collect();
    fields.extend(name.map(str::to_string));
    fields.join(" ")
}

fn date(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let mut format = None;
    for arg in &args[1..] {
        match arg.as_str() {
            "-u" | "--utc" => {}
            "-I" | "--iso-8601" => format = Some("%F".to_string()),
            a if a.starts_with('+') => format = Some(a[1..].to_string()),
            a => return fail(io, "date", format_args!("unsupported argument '{a}'")),
        }
    }
    let secs = unix_seconds(SystemTime::now());
    let now = Utc::from_unix(secs);
    let text = match format {
        Some(format) => now.format(&format, secs),
        None => now.iso8601(),
    };
    let _ = writeln!(io.out, "{text}");
    0
}

fn seq(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let mut numbers = Vec::new();
    for arg in &args[1..] {
        match arg.parse::<i64>() {
            Ok(n) => numbers.push(n),
            Err(_) => return fail(io, "seq", format_args!("invalid number '{arg}'")),
        }
    }
    let (first, step, last) = match numbers.as_slice() {
        [last] => (1, 1, *last),
        [first, last] => (*first, 1, *last),
        [first, step, last] => (*first, *step, *last),
        _ => return fail(io, "seq", "usage: seq [FIRST [INCREMENT]] LAST"),
    };
    if step == 0 {
        return fail(io, "seq", "increment must not be 0");
    }
    let mut out = String::new();
    let mut n = first;
    while (step > 0 && n <= last) || (step < 0 && n >= last) {
        out.push_str(&n.to_string());
        out.push('\n');
        let Some(next) = n.checked_add(step) else {
            break;
        };
        n = next;
    }
    match io.out.write_all(out.as_bytes()) {
        Ok(()) => 0,
        Err(err) => fail(io, "seq", error_text(&err)),
    }
}

/// `sort [-r] [-n] [-u] [FILE...]`: sorts lines (bytewise, or by leading number with `-n`).
fn sort(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (flags, mut files) = options_or_fail!(io, args, "rnu");
    if files.is_empty() {
        files.push("-".into());
    }
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for name in &files {
        let mut data = Vec::new();
        let read = open_input(name, io.stdin).and_then(|mut input| input.read_to_end(&mut data));
        if let Err(err) = read {
            return fail(io, "sort", format_args!("{name}: {}", error_text(&err)));
        }
        if data.last() == Some(&b'\n') {
            data.pop();
        }
        if !data.is_empty() {
            lines.extend(data.split(|&b| b == b'\n').map(<[u8]>::to_vec));
        }
    }
    if flags.contains('n') {
        let key = |line: &[u8]| -> f64 {
            let text = String::from_utf8_lossy(line);
            let text = text.trim_start();
            let end = text
                .char_indices()
                .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
                .map_or(text.len(), |(i, _)| i);
            text[..end].parse().unwrap_or(0.0)
        };
        lines.sort_by(|a, b| key(a).total_cmp(&key(b)).then_with(|| a.cmp(b)));
    } else {
        lines.sort();
    }
    if flags.contains('u') {
        lines.dedup();
    }
    if flags.contains('r') {
        lines.reverse();
    }
    for line in lines {
        if let Err(err) = io
            .out
            .write_all(&line)
            .and_then(|()| io.out.write_all(b"\n"))
        {
            return fail(io, "sort", error_text(&err));
        }
    }
    0
}

/// `tee [-a] [FILE...]`: copies standard input to standard output and to the files.
fn tee(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let (flags, names) = options_or_fail!(io, args, "ai");
    let mut files = Vec::new();
    let mut status = 0;
    for name in &names {
        let opened = File::options()
            .write(true)
            .create(true)
            .append(flags.contains('a'))
            .truncate(!flags.contains('a'))
            .open(name);
        match opened {
            Ok(file) => files.push(file),
            Err(err) => status = fail(io, "tee", format_args!("{name}: {}", error_text(&err))),
        }
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match io.stdin.read(&mut buf) {
            Ok(0) => return status,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return fail(io, "tee", error_text(&err)),
        };
        if let Err(err) = io.out.write_all(&buf[..n]) {
            return fail(io, "tee", error_text(&err));
        }
        for file in &mut files {
            if let Err(err) = file.write_all(&buf[..n]) {
                status = fail(io, "tee", error_text(&err));
            }
        }
    }
}

fn basename(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let Some(path) = args.get(1) else {
        return fail(io, "basename", "missing operand");
    };
    let trimmed = path.trim_end_matches('/');
    let mut base = if trimmed.is_empty() && !path.is_empty() {
        "/"
    } else {
        trimmed.rsplit('/').next().unwrap_or("")
    };
    if let Some(suffix) = args.get(2)
        && base != suffix.as_str()
    {
        base = base.strip_suffix(suffix.as_str()).unwrap_or(base);
    }
    let _ = writeln!(io.out, "{base}");
    0
}

fn dirname(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let Some(path) = args.get(1) else {
        return fail(io, "dirname", "missing operand");
    };
    let trimmed = path.trim_end_matches('/');
    let dir = match trimmed.rsplit_once('/') {
        None if path.starts_with('/') => "/",
        None => ".",
        Some((dir, _)) => match dir.trim_end_matches('/') {
            "" => "/",
            d => d,
        },
    };
    let _ = writeln!(io.out, "{dir}");
    0
}

fn httpd(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    crate::httpd::main(args, io.out, io.err)
}

/// `test EXPR` and `[ EXPR ]`: status 0 if true, 1 if false, 2 on a malformed expression.
fn test(_: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let mut words: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    if args[0] == "[" {
        if words.last() != Some(&"]") {
            let _ = writeln!(io.err, "[: missing ]");
            return 2;
        }
        words.pop();
    }
    match eval_test(&words) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(message) => {
            let _ = writeln!(io.err, "test: {message}");
            2
        }
    }
}

/// Evaluates a `test` expression: `-o` binds looser than `-a`, `!` negates, `( )` group.
pub fn eval_test(words: &[&str]) -> Result<bool, String> {
    fn or(words: &[&str], at: &mut usize) -> Result<bool, String> {
        let mut value = and(words, at)?;
        while words.get(*at) == Some(&"-o") {
            *at += 1;
            value |= and(words, at)?;
        }
        Ok(value)
    }
    fn and(words: &[&str], at: &mut usize) -> Result<bool, String> {
        let mut value = not(words, at)?;
        while words.get(*at) == Some(&"-a") {
            *at += 1;
            value &= not(words, at)?;
        }
        Ok(value)
    }
    fn not(words: &[&str], at: &mut usize) -> Result<bool, String> {
        // `! X` is negation unless `!` is the left side of a binary operator.
        if words.get(*at) == Some(&"!") && !words.get(*at + 1).is_some_and(|w| is_binary(w)) {
            *at += 1;
            return Ok(!not(words, at)?);
        }
        primary(words, at)
    }
    fn is_binary(op: &str) -> bool {
        matches!(
            op,
            "=" | "==" | "!=" | "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge" | "-nt" | "-ot"
        )
    }
    fn primary(words: &[&str], at: &mut usize) -> Result<bool, String> {
        let Some(&first) = words.get(*at) else {
            return Err("argument expected".into());
        };
        if first == "(" && words.len() > *at + 2 {
            *at += 1;
            let value = or(words, at)?;
            if words.get(*at) != Some(&")") {
                return Err("missing )".into());
            }
            *at += 1;
            return Ok(value);
        }
        if let Some(&op) = words.get(*at + 1).filter(|op| is_binary(op)) {
            let Some(&right) = words.get(*at + 2) else {
                return Err(format!("{op}: argument expected"));
            };
            *at += 3;
            return binary(first, op, right);
        }
        if first.len() == 2 && first.starts_with('-') && words.len() > *at + 1 {
            let operand = words[*at + 1];
            *at += 2;
            return unary(first, operand);
        }
        *at += 1;
        Ok(!first.is_empty())
    }
    fn number(text: &str) -> Result<i64, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{text}: integer expression expected"))
    }
    fn binary(left: &str, op: &str, right: &str) -> Result<bool, String> {
        Ok(match op {
            "=" | "==" => left == right,
            "!=" => left != right,
            "-eq" => number(left)? == number(right)?,
            "-ne" => number(left)? != number(right)?,
            "-lt" => number(left)? < number(right)?,
            "-le" => number(left)? <= number(right)?,
            "-gt" => number(left)? > number(right)?,
            "-ge" => number(left)? >= number(right)?,
            _ => {
                let modified = |p: &str| fs::metadata(p).and_then(|m| m.modified()).ok();
                match (modified(left), modified(right)) {
                    (Some(l), Some(r)) if op == "-nt" => l > r,
                    (Some(l), Some(r)) => l < r,
                    _ => false,
                }
            }
        })
    }
    fn unary(op: &str, operand: &str) -> Result<bool, String> {
        let meta = || fs::metadata(operand);
        Ok(match op {
            "-z" => operand.is_empty(),
            "-n" => !operand.is_empty(),
            // WASI has no permission bits: whatever exists counts as readable and so on.
            "-e" | "-r" | "-w" | "-x" => meta().is_ok(),
            "-f" => meta().is_ok_and(|m| m.is_file()),
            "-d" => meta().is_ok_and(|m| m.is_dir()),
            "-s" => meta().is_ok_and(|m| m.len() > 0),
            "-L" | "-h" => fs::symlink_metadata(operand).is_ok_and(|m| m.file_type().is_symlink()),
            _ => return Err(format!("{op}: unary operator expected")),
        })
    }

    if words.is_empty() {
        return Ok(false);
    }
    let mut at = 0;
    let value = or(words, &mut at)?;
    if at != words.len() {
        return Err(format!("{}: unexpected argument", words[at]));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For tests: the path of a fresh scratch directory.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wpod-applet-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `argv` through the dispatcher with `input` on stdin: (status, stdout, stderr).
    fn run(argv: &[&str], input: &str) -> (i32, String, String) {
        let args: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin = input.as_bytes();
        let mut io = Io {
            stdin: &mut stdin,
            out: &mut out,
            err: &mut err,
        };
        let status = dispatch(&mut Ctx::default(), &args, &mut io);
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn out(argv: &[&str]) -> String {
        let (status, out, err) = run(argv, "");
        assert_eq!((status, err.as_str()), (0, ""), "{argv:?}");
        out
    }

    #[test]
    fn applet_table_is_sorted() {
        assert!(APPLETS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(lookup("sh").is_some() && lookup("nope").is_none());
    }

    #[test]
    fn dispatch_by_program_name() {
        assert_eq!(out(&["/bin/echo", "a", "b"]), "a b\n");
        assert_eq!(out(&["echo.wasm", "x"]), "x\n");
        assert_eq!(out(&["box", "echo", "y"]), "y\n");
        assert_eq!(out(&["box.wasm", "true"]), "");
        assert_eq!(run(&["box", "false"], "").0, 1);
        assert_eq!(run(&["box", "nope"], "").0, 127);
        assert_eq!(run(&["box"], "").0, 64);
        assert!(out(&["box", "--list"]).contains("\nsh\n"));
    }

    #[test]
    fn echo_options() {
        assert_eq!(out(&["echo", "-n", "a"]), "a");
        assert_eq!(out(&["echo", "-e", "a\\tb\\n\\x41\\0101"]), "a\tb\nAA\n");
        assert_eq!(out(&["echo", "-e", "stop\\chere"]), "stop");
        assert_eq!(out(&["echo", "a\\nb"]), "a\\nb\n");
        assert_eq!(out(&["echo", "-x", "-n"]), "-x -n\n");
        assert_eq!(out(&["echo"]), "\n");
    }

    #[test]
    fn cat_head_tail_wc_seq() {
        assert_eq!(run(&["cat"], "in\n").1, "in\n");
        assert_eq!(run(&["head", "-n", "2"], "1\n2\n3\n").1, "1\n2\n");
        assert_eq!(run(&["head", "-1"], "1\n2\n3\n").1, "1\n");
        assert_eq!(run(&["tail", "-n", "2"], "1\n2\n3\n").1, "2\n3\n");
        assert_eq!(run(&["tail", "-n1"], "1\n2\n3").1, "3");
        assert_eq!(run(&["tail", "-n", "+2"], "1\n2\n3\n").1, "2\n3\n");
        assert_eq!(run(&["tail", "-n", "0"], "1\n2\n").1, "");
        assert_eq!(run(&["wc", "-l"], "a\nb c\n").1, "2\n");
        assert_eq!(run(&["wc"], "a\nb c\n").1, "2 3 6\n");
        assert_eq!(out(&["seq", "3"]), "1\n2\n3\n");
        assert_eq!(out(&["seq", "2", "4"]), "2\n3\n4\n");
        assert_eq!(out(&["seq", "5", "-2", "1"]), "5\n3\n1\n");
        assert_eq!(out(&["seq", "2", "1"]), "");
        assert_eq!(run(&["seq", "x"], "").0, 1);
    }

    #[test]
    fn sort_and_tee() {
        assert_eq!(run(&["sort"], "b\na\nc\na\n").1, "a\na\nb\nc\n");
        assert_eq!(run(&["sort", "-ru"], "b\na\nc\na\n").1, "c\nb\na\n");
        assert_eq!(run(&["sort", "-n"], "10\n9\n-1\nx\n").1, "-1\nx\n9\n10\n");
        assert_eq!(run(&["sort"], "").1, "");
        let dir = scratch("tee");
        let file = dir.join("copy").display().to_string();
        assert_eq!(run(&["tee", &file], "data\n").1, "data\n");
        assert_eq!(run(&["tee", "-a", &file], "more\n").1, "more\n");
        assert_eq!(fs::read_to_string(&file).unwrap(), "data\nmore\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_expressions() {
        let t = |w: &[&str]| eval_test(w);
        assert_eq!(t(&[]), Ok(false));
        assert_eq!(t(&["x"]), Ok(true));
        assert_eq!(t(&[""]), Ok(false));
        assert_eq!(t(&["-z", ""]), Ok(true));
        assert_eq!(t(&["-n", ""]), Ok(false));
        assert_eq!(t(&["a", "=", "a"]), Ok(true));
        assert_eq!(t(&["a", "!=", "a"]), Ok(false));
        assert_eq!(t(&["!", "a", "=", "b"]), Ok(true));
        assert_eq!(t(&["3", "-gt", "2", "-a", "1", "-eq", "2"]), Ok(false));
        assert_eq!(t(&["3", "-gt", "2", "-o", "1", "-eq", "2"]), Ok(true));
        assert_eq!(t(&["(", "x", "=", "y", ")", "-o", "-n", "z"]), Ok(true));
        assert!(t(&["a", "-eq", "1"]).is_err());
        assert_eq!(t(&["-d", "/"]), Ok(true));
        assert_eq!(t(&["-f", "/"]), Ok(false));
        assert_eq!(t(&["-e", "/nonexistent/x"]), Ok(false));
        assert_eq!(run(&["[", "a", "=", "a", "]"], "").0, 0);
        assert_eq!(run(&["[", "a", "=", "b", "]"], "").0, 1);
        assert_eq!(run(&["[", "a"], "").0, 2);
        assert_eq!(run(&["test", "-d", "/"], "").0, 0);
    }

    #[test]
    fn file_applets() {
        let dir = scratch("files");
        let d = |p: &str| dir.join(p).display().to_string();
        assert_eq!(out(&["mkdir", "-p", &d("a/b/c")]), "");
        assert_eq!(run(&["mkdir", &d("a")], "").0, 1);
        assert_eq!(out(&["touch", &d("a/f1")]), "");
        fs::write(dir.join("a/b/f2"), "two").unwrap();
        assert_eq!(out(&["ls", &d("a")]), "b\nf1\n");
        assert_eq!(out(&["cp", &d("a/b/f2"), &d("copy")]), "");
        assert_eq!(fs::read_to_string(dir.join("copy")).unwrap(), "two");
        assert_eq!(run(&["cp", &d("a"), &d("a2")], "").0, 1);
        assert_eq!(out(&["cp", "-r", &d("a"), &d("a2")]), "");
        assert_eq!(fs::read_to_string(dir.join("a2/b/f2")).unwrap(), "two");
        assert_eq!(out(&["cp", &d("copy"), &d("a/f1"), &d("a2")]), "");
        assert!(dir.join("a2/copy").is_file());
        assert_eq!(out(&["mv", &d("copy"), &d("moved")]), "");
        assert!(!dir.join("copy").exists() && dir.join("moved").is_file());
        assert_eq!(out(&["mv", &d("moved"), &d("a")]), "");
        assert!(dir.join("a/moved").is_file());
        assert_eq!(run(&["rm", &d("a")], "").0, 1);
        assert_eq!(out(&["rm", "-rf", &d("a"), &d("nonexistent")]), "");
        assert!(!dir.join("a").exists());
        let (status, _, err) = run(&["rm", &d("nonexistent")], "");
        assert_eq!(status, 1);
        assert!(err.starts_with("rm: "));
        let listing = out(&["ls", "-la", &d("a2")]);
        assert!(
            listing.contains(" b\n") && listing.contains(" .\n"),
            "{listing}"
        );
        assert!(listing.lines().any(|l| l.starts_with("drwx")), "{listing}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_runs_commands_with_extra_variables() {
        let mut ctx = Ctx::default();
        ctx.env.insert("A".into(), "1".into());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin: &[u8] = b"";
        let mut io = Io {
            stdin: &mut stdin,
            out: &mut out,
            err: &mut err,
        };
        let args: Vec<String> = ["env", "B=2", "env"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(env(&mut ctx, &args, &mut io), 0);
        assert_eq!(String::from_utf8(out).unwrap(), "A=1\nB=2\n");
    }

    #[test]
    fn basename_and_dirname() {
        assert_eq!(out(&["basename", "/a/b.txt", ".txt"]), "b\n");
        assert_eq!(out(&["basename", "/a/b/"]), "b\n");
        assert_eq!(out(&["basename", "/"]), "/\n");
        assert_eq!(out(&["dirname", "/a/b"]), "/a\n");
        assert_eq!(out(&["dirname", "b"]), ".\n");
        assert_eq!(out(&["dirname", "/b"]), "/\n");
    }

    #[test]
    fn date_formats() {
        let iso = out(&["date"]);
        assert_eq!(iso.len(), "2024-01-01T00:00:00Z\n".len());
        assert!(iso.ends_with("Z\n"));
        let secs: i64 = out(&["date", "+%s"]).trim().parse().unwrap();
        assert!(secs > 1_600_000_000);
    }
}
