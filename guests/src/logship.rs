//! `logship`: a log-shipping sidecar. Follows every regular file in a directory like
//! `tail -F`, prints each complete line as `[FILE] LINE`, and optionally ships the lines to an
//! Elasticsearch-style `_bulk` endpoint.
//!
//! Rotation is detected without inode numbers (std does not expose them on WASI): a file that
//! shrank was truncated; a path whose metadata no longer matches the open handle's (checked
//! handle, path, handle, so that a concurrent append can't fake it) was replaced. The rest of a
//! replaced file is read from the old handle first, and a new name that matches a replaced
//! file (a rename such as `app.log` → `app.log.1`) continues where that file left off.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error_text;
use crate::http_client::{self, Url};
use crate::json;

/// Most lines kept for shipping while the endpoint is down; older ones are dropped.
pub const MAX_PENDING: usize = 100_000;

/// Command-line settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub dir: PathBuf,
    pub url: Option<Url>,
    pub interval: Duration,
    pub batch: usize,
}

/// Parses `DIR [--url URL] [--interval-ms N] [--batch N]`.
pub fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut dir = None;
    let mut url = None;
    let mut interval = Duration::from_millis(200);
    let mut batch = 100;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("option {arg} needs a value"))
        };
        match arg.as_str() {
            "--url" => url = Some(Url::parse(&value()?)?),
            "--interval-ms" => {
                let v = value()?;
                let ms: u64 = v.parse().map_err(|_| format!("bad interval '{v}'"))?;
                interval = Duration::from_millis(ms.max(1));
            }
            "--batch" => {
                let v = value()?;
                batch = v
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("bad batch size '{v}'"))?;
            }
            a if a.starts_with("--") => return Err(format!("unknown option '{a}'")),
            a if dir.is_none() => dir = Some(PathBuf::from(a)),
            a => return Err(format!("unexpected argument '{a}'")),
        }
    }
    Ok(Config {
        dir: dir.ok_or("missing DIR")?,
        url,
        interval,
        batch,
    })
}

/// The metadata that tells files apart when inode numbers are not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// A followed file.
struct Tail {
    file: File,
    /// Bytes consumed so far (the handle's position).
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

impl Tail {
    fn open(path: &Path, offset: u64) -> io::Result<Tail> {
        let mut file = File::open(path)?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        Ok(Tail {
            file,
            offset,
            partial: Vec::new(),
        })
    }

    /// Reads what was appended; returns the complete lines (without line ends).
    fn read_lines(&mut self) -> io::Result<Vec<String>> {
        let mut data = Vec::new();
        let n = self.file.read_to_end(&mut data)?;
        self.offset += n as u64;
        Ok(split_lines(&mut self.partial, &data))
    }

    /// Reads what is left, including a final line without a line end (the file is being
    /// left behind, so that line will never be completed).
    fn drain(mut self) -> (Vec<String>, u64) {
        let mut lines = self.read_lines().unwrap_or_default();
        if !self.partial.is_empty() {
            lines.push(line_text(&self.partial));
        }
        (lines, self.offset)
    }
}

fn line_text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// Appends `data` to `partial` and takes out the complete lines.
pub fn split_lines(partial: &mut Vec<u8>, data: &[u8]) -> Vec<String> {
    partial.extend_from_slice(data);
    let Some(last_newline) = partial.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    let rest = partial.split_off(last_newline + 1);
    let complete = std::mem::replace(partial, rest);
    complete[..complete.len() - 1]
        .split(|&b| b == b'\n')
        .map(line_text)
        .collect()
}

/// The Elasticsearch bulk body for `(file, line)` pairs.
pub fn bulk_body(lines: &[(String, String)]) -> String {
    let mut body = String::new();
    for (file, line) in lines {
        body.push_str("{\"index\":{}}\n{\"file\":");
        json::push_string(&mut body, file);
        body.push_str(",\"message\":");
        json::push_string(&mut body, line);
        body.push_str("}\n");
    }
    body
}

/// The follower: open files by name and lines waiting to be shipped.
pub struct Follower {
    config: Config,
    tails: BTreeMap<String, Tail>,
    pending: VecDeque<(String, String)>,
    dir_error: Option<String>,
}

impl Follower {
    pub fn new(config: Config) -> Follower {
        Follower {
            config,
            tails: BTreeMap::new(),
            pending: VecDeque::new(),
            dir_error: None,
        }
    }

    /// One poll: reads new lines from every file, prints them, then ships what is pending.
    pub fn poll(&mut self, out: &mut dyn Write, err: &mut dyn Write) {
        let lines = self.collect(err);
        for (file, line) in &lines {
            let _ = writeln!(out, "[{file}] {line}");
        }
        let _ = out.flush();
        if self.config.url.is_some() {
            self.pending.extend(lines);
            if self.pending.len() > MAX_PENDING {
                let dropped = self.pending.len() - MAX_PENDING;
                self.pending.drain(..dropped);
                let _ = writeln!(err, "logship: dropped {dropped} unshipped lines");
            }
            self.ship(out, err);
        }
    }

    /// Reads the new complete lines of all files, in file name order.
    fn collect(&mut self, err: &mut dyn Write) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        let names = match fs::read_dir(&self.config.dir) {
            Ok(entries) => {
                self.dir_error = None;
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            }
            Err(e) => {
                // Report once; the directory may appear later (e.g. a volume filled by
                // another container).
                let message = error_text(&e);
                if self.dir_error.as_deref() != Some(message.as_str()) {
                    let _ = writeln!(err, "logship: {}: {message}", self.config.dir.display());
                    self.dir_error = Some(message);
                }
                Vec::new()
            }
        };

        // Pass 1: files that went away or were replaced. Their rest is read from the old
        // handle, and their final stamp remembered, to recognize them under a new name.
        let mut gone: Vec<(Stamp, u64)> = Vec::new();
        let tracked: Vec<String> = self.tails.keys().cloned().collect();
        for name in tracked {
            let path = self.config.dir.join(&name);
            let replaced = match fs::metadata(&path) {
                Err(_) => true,
                Ok(_) if !names.contains(&name) => true,
                Ok(_) => self.replaced(&name, &path),
            };
            if !replaced {
                continue;
            }
            let Some(tail) = self.tails.remove(&name) else {
                continue;
            };
            let stamp = tail.file.metadata().ok().map(|m| Stamp::of(&m));
            let (rest, offset) = tail.drain();
            lines.extend(rest.into_iter().map(|line| (name.clone(), line)));
            if let Some(stamp) = stamp {
                gone.push((stamp, offset));
            }
        }

        // Pass 2: start new (and replaced) files: from where a renamed file left off, else
        // from the beginning.
        for name in &names {
            if self.tails.contains_key(name) {
                continue;
            }
            let path = self.config.dir.join(name);
            let stamp = fs::metadata(&path).ok().map(|m| Stamp::of(&m));
            let offset = gone
                .iter()
                .position(|(s, _)| Some(*s) == stamp)
                .map_or(0, |i| gone.swap_remove(i).1);
            match Tail::open(&path, offset) {
                Ok(tail) => {
                    self.tails.insert(name.clone(), tail);
                }
                Err(e) => {
                    let _ = writeln!(err, "logship: {}: {}", path.display(), error_text(&e));
                }
            }
        }

        // Pass 3: read what was appended; restart truncated files.
        for (name, tail) in &mut self.tails {
            let path = self.config.dir.join(name);
            if let Ok(meta) = fs::metadata(&path)
                && meta.len() < tail.offset
            {
                let _ = writeln!(err, "logship: {name}: file truncated");
                tail.partial.clear();
                tail.offset = 0;
                if let Err(e) = tail.file.seek(SeekFrom::Start(0)) {
                    let _ = writeln!(err, "logship: {name}: {}", error_text(&e));
                    continue;
                }
            }
            match tail.read_lines() {
                Ok(new) => lines.extend(new.into_iter().map(|line| (name.clone(), line))),
                Err(e) => {
                    let _ = writeln!(err, "logship: {name}: {}", error_text(&e));
                }
            }
        }
        lines
    }

    /// Whether the file at `path` is no longer the one open as `name`.
    fn replaced(&self, name: &str, path: &Path) -> bool {
        let Some(tail) = self.tails.get(name) else {
            return false;
        };
        let handle = || tail.file.metadata().ok().map(|m| Stamp::of(&m));
        let before = handle();
        let at_path = fs::metadata(path).ok().map(|m| Stamp::of(&m));
        let after = handle();
        // If the handle changed in between, a writer is active: judge on the next poll.
        before.is_some() && before == after && at_path != before
    }

    /// Ships pending lines in batches; stops at the first failure (kept for the next poll).
    fn ship(&mut self, out: &mut dyn Write, err: &mut dyn Write) {
        let Some(url) = self.config.url.clone() else {
            return;
        };
        while !self.pending.is_empty() {
            let count = self.pending.len().min(self.config.batch);
            let batch: Vec<(String, String)> = self.pending.iter().take(count).cloned().collect();
            let body = bulk_body(&batch);
            let result = http_client::request(
                &url,
                "POST",
                &[("Content-Type", "application/x-ndjson")],
                body.as_bytes(),
            );
            match result {
                Ok(response) if (200..300).contains(&response.status) => {
                    self.pending.drain(..count);
                    let _ = writeln!(out, "shipped {count} lines");
                    let _ = out.flush();
                }
                Ok(response) => {
                    let _ = writeln!(err, "ship failed: HTTP status {}", response.status);
                    return;
                }
                Err(e) => {
                    let _ = writeln!(err, "ship failed: {:?}: {}", e.kind(), error_text(&e));
                    return;
                }
            }
        }
    }
}

/// The file wpod makes when it asks a container to end (the pod stops):
/// Wasm has no SIGTERM.
pub const TERMINATING: &str = "/run/wpod/terminating";

/// Runs `logship` until asked to end (then forwards what is left and
/// returns 0) or killed; returns 64 on bad arguments.
pub fn main(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let config = match parse_args(args) {
        Ok(config) => config,
        Err(message) => {
            let _ = writeln!(
                err,
                "logship: {message}\nusage: logship DIR [--url http://HOST:PORT/PATH] [--interval-ms N] [--batch N]"
            );
            return 64;
        }
    };
    let interval = config.interval;
    let mut follower = Follower::new(config);
    loop {
        // Asked to end: one last poll, so that the last lines go too.
        let ending = std::path::Path::new(TERMINATING).exists();
        follower.poll(out, err);
        if ending {
            return 0;
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_arguments() {
        let config = parse_args(&args(&["logship", "/logs"])).unwrap();
        assert_eq!(config.dir, PathBuf::from("/logs"));
        assert_eq!(config.interval, Duration::from_millis(200));
        assert_eq!(config.batch, 100);
        assert!(config.url.is_none());
        let config = parse_args(&args(&[
            "logship",
            "--url",
            "http://127.0.0.1:9200/_bulk",
            "/logs",
            "--interval-ms",
            "50",
            "--batch",
            "7",
        ]))
        .unwrap();
        assert_eq!(config.url.unwrap().path, "/_bulk");
        assert_eq!((config.interval.as_millis(), config.batch), (50, 7));
        assert!(parse_args(&args(&["logship"])).is_err());
        assert!(parse_args(&args(&["logship", "a", "b"])).is_err());
        assert!(parse_args(&args(&["logship", "a", "--batch", "0"])).is_err());
        assert!(parse_args(&args(&["logship", "a", "--url", "https://x"])).is_err());
    }

    #[test]
    fn splits_complete_lines_only() {
        let mut partial = Vec::new();
        assert!(split_lines(&mut partial, b"par").is_empty());
        assert_eq!(
            split_lines(&mut partial, b"tial\r\nnext\n\nla"),
            vec!["partial", "next", ""]
        );
        assert_eq!(partial, b"la");
        assert_eq!(split_lines(&mut partial, b"st\n"), vec!["last"]);
        assert!(partial.is_empty());
    }

    #[test]
    fn bulk_body_is_ndjson() {
        let body = bulk_body(&[("app.log".into(), "say \"hi\"\t\\".into())]);
        assert_eq!(
            body,
            "{\"index\":{}}\n{\"file\":\"app.log\",\"message\":\"say \\\"hi\\\"\\t\\\\\"}\n"
        );
    }

    fn poll(follower: &mut Follower) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        follower.poll(&mut out, &mut err);
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn follows_appends_new_files_rotation_and_truncation() {
        let dir = std::env::temp_dir().join(format!("wpod-logship-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("subdir")).unwrap();
        fs::write(dir.join("a.log"), "old 1\nold 2\npart").unwrap();
        let mut follower =
            Follower::new(parse_args(&args(&["logship", dir.to_str().unwrap()])).unwrap());

        assert_eq!(poll(&mut follower).0, "[a.log] old 1\n[a.log] old 2\n");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(dir.join("a.log"))
            .unwrap();
        file.write_all(b"ial\nnew\n").unwrap();
        fs::write(dir.join("b.log"), "b1\n").unwrap();
        assert_eq!(
            poll(&mut follower).0,
            "[a.log] partial\n[a.log] new\n[b.log] b1\n"
        );
        assert_eq!(poll(&mut follower).0, "");

        // Rotation by rename: the rest of the old file is read once, under its old name, and
        // the renamed file is not read again; the new file is read from its start.
        file.write_all(b"last of a\n").unwrap();
        drop(file);
        fs::rename(dir.join("a.log"), dir.join("a.log.1")).unwrap();
        fs::write(dir.join("a.log"), "fresh\n").unwrap();
        let (out, _) = poll(&mut follower);
        assert_eq!(out, "[a.log] last of a\n[a.log] fresh\n");

        // Truncation in place (copytruncate).
        fs::write(dir.join("b.log"), "").unwrap();
        poll(&mut follower);
        fs::write(dir.join("b.log"), "again\n").unwrap();
        assert_eq!(poll(&mut follower).0, "[b.log] again\n");

        // Removal.
        fs::remove_file(dir.join("b.log")).unwrap();
        assert_eq!(poll(&mut follower).0, "");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ship_failure_keeps_lines() {
        let dir = std::env::temp_dir().join(format!("wpod-logship-ship-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("x.log"), "one\ntwo\n").unwrap();
        // A port that nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/_bulk");
        let mut follower = Follower::new(
            parse_args(&args(&["logship", dir.to_str().unwrap(), "--url", &url])).unwrap(),
        );
        let (out, err) = poll(&mut follower);
        assert_eq!(out, "[x.log] one\n[x.log] two\n");
        assert!(err.starts_with("ship failed: "), "{err}");
        assert_eq!(follower.pending.len(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}
