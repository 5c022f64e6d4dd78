//! `sh`: a small POSIX-like shell that runs every command in-process, as an applet, because
//! WASI cannot spawn processes.
//!
//! Supported: lists with newlines, `;`, `&&`, `||`; pipelines `|` (each stage's output is
//! buffered, then fed to the next); `!`; single and double quotes, backslashes; `$VAR`,
//! `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$?`, `$#`, `$@`, `$*`, `$0`..`$9`;
//! `$(...)` and backquotes; field splitting and `* ? [..]` globs on unquoted text;
//! `$((...))` integer arithmetic; `NAME=value` assignments (alone, or before a command for its
//! environment); redirections `>`, `>>`, `<`, `N>`, `N>>`, `N>&M`, here-documents `<<` and
//! `<<-`; `#` comments; `if`/`elif`/`else`, `while`, `until`, `for`, `{ ...; }`; builtins `cd`,
//! `exit`, `export`, `unset`, `set` (`-e`, `-x`, `--`), `shift`, `exec`, `.`/`source`, `read`,
//! `break`, `continue`, `:`, and `trap`/`umask` (accepted, no effect).
//! Not supported: `case`, functions, subshells `( )`, background `&`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, LineWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::applets::{self, Ctx, Io};
use crate::error_text;

mod arith;
mod glob;
mod syntax;

pub use arith::eval_arith;
use glob::has_glob_chars;
pub use glob::{glob, glob_match};
pub use syntax::{
    AndOr, Command, Compound, Connector, Part, Pipeline, Redir, RedirOp, Script, SimpleCommand,
    Word, parse,
};
use syntax::{heredoc_parts, is_name};

/// The `PATH` used when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// Redirections to and from this path work although WASI has no devices.
const DEV_NULL: &str = "/dev/null";

type Out<'a> = Rc<RefCell<dyn Write + 'a>>;
type In<'a> = Rc<RefCell<dyn Read + 'a>>;

/// The open standard streams of a command; clones share the underlying streams.
#[derive(Clone)]
pub struct Fds<'a> {
    stdin: In<'a>,
    stdout: Out<'a>,
    stderr: Out<'a>,
}

impl std::fmt::Debug for Fds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fds")
    }
}

struct SharedOut<'a>(Out<'a>);

impl Write for SharedOut<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

struct SharedIn<'a>(In<'a>);

impl Read for SharedIn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl<'a> Fds<'a> {
    /// Streams that write through an applet's `Io`.
    pub fn from_io<'b>(io: &'a mut Io<'b>) -> Fds<'a> {
        let stdin: In<'a> = Rc::new(RefCell::new(&mut *io.stdin));
        let stdout: Out<'a> = Rc::new(RefCell::new(&mut *io.out));
        let stderr: Out<'a> = Rc::new(RefCell::new(&mut *io.err));
        Fds {
            stdin,
            stdout,
            stderr,
        }
    }

    /// Runs `f` with an `Io` over these streams.
    fn with_io<T>(&self, f: impl FnOnce(&mut Io) -> T) -> T {
        let mut stdin = SharedIn(self.stdin.clone());
        let mut out = SharedOut(self.stdout.clone());
        let mut err = SharedOut(self.stderr.clone());
        let mut io = Io {
            stdin: &mut stdin,
            out: &mut out,
            err: &mut err,
        };
        f(&mut io)
    }

    fn error(&self, msg: impl std::fmt::Display) {
        let _ = writeln!(self.stderr.borrow_mut(), "sh: {msg}");
    }
}

/// The state of one shell: variables, positional parameters and the last status.
#[derive(Debug, Clone)]
pub struct Shell {
    /// Variables that are not exported.
    vars: BTreeMap<String, String>,
    /// Exported variables: the environment of the commands.
    env: BTreeMap<String, String>,
    /// `$0`, `$1`, ...
    positional: Vec<String>,
    status: i32,
    /// Set by `exit`: the status to end with.
    exit: Option<i32>,
    /// Set by `break N` / `continue N` until the loop it concerns sees it.
    flow: Option<Flow>,
    /// How many loops are running (for `break` and `continue`).
    loops: u32,
    /// How many `if`/`while` conditions are running (`set -e` ignores their failures).
    conditions: u32,
    errexit: bool,
    xtrace: bool,
}

/// A pending `break N` or `continue N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Break(u32),
    Continue(u32),
}

impl Shell {
    /// A shell with environment `env` and positional parameters `positional` (`$0` first).
    pub fn new(env: BTreeMap<String, String>, positional: Vec<String>) -> Shell {
        let positional = if positional.is_empty() {
            vec!["sh".to_string()]
        } else {
            positional
        };
        Shell {
            vars: BTreeMap::new(),
            env,
            positional,
            status: 0,
            exit: None,
            flow: None,
            loops: 0,
            conditions: 0,
            errexit: false,
            xtrace: false,
        }
    }

    /// The value of a variable (shell variables shadow the environment).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .or_else(|| self.env.get(name))
            .map(String::as_str)
    }

    fn set_var(&mut self, name: &str, value: String) {
        if let Some(slot) = self.env.get_mut(name) {
            *slot = value;
        } else {
            self.vars.insert(name.to_string(), value);
        }
    }

    fn param(&self, name: &str) -> Option<String> {
        match name {
            "?" => Some(self.status.to_string()),
            "#" => Some((self.positional.len() - 1).to_string()),
            "@" | "*" => Some(self.positional[1..].join(" ")),
            // No processes: the shell is "process" 1, and there are no background jobs.
            "$" => Some("1".to_string()),
            "!" => None,
            n if n.chars().all(|c| c.is_ascii_digit()) => n
                .parse::<usize>()
                .ok()
                .and_then(|i| self.positional.get(i).cloned()),
            n => self.var(n).map(str::to_string),
        }
    }

    /// Expands a word into fields: parameter and command substitution, field splitting of
    /// unquoted results, globbing of words with unquoted glob characters.
    fn expand(&mut self, word: &Word, fds: &Fds) -> Vec<String> {
        let mut fields = Vec::new();
        let mut cur = String::new();
        // Whether `cur` is a field even if empty (it holds quoted text).
        let mut live = false;
        let mut globbing = false;
        self.expand_parts(
            &word.0,
            fds,
            &mut fields,
            &mut cur,
            &mut live,
            &mut globbing,
        );
        if live || !cur.is_empty() {
            fields.push(cur);
        }
        if !globbing {
            return fields;
        }
        fields
            .into_iter()
            .flat_map(|field| {
                let matches = if has_glob_chars(&field) {
                    glob(&field)
                } else {
                    Vec::new()
                };
                if matches.is_empty() {
                    vec![field]
                } else {
                    matches
                }
            })
            .collect()
    }

    fn expand_parts(
        &mut self,
        parts: &[Part],
        fds: &Fds,
        fields: &mut Vec<String>,
        cur: &mut String,
        live: &mut bool,
        globbing: &mut bool,
    ) {
        for part in parts {
            let (value, quoted) = match part {
                Part::Lit { text, quoted } => {
                    cur.push_str(text);
                    *live |= *quoted || !text.is_empty();
                    *globbing |= !quoted && has_glob_chars(text);
                    continue;
                }
                Part::Param {
                    name,
                    quoted,
                    default,
                } => {
                    let value = self.param(name);
                    if let Some((colon, default)) = default {
                        let use_default = match &value {
                            None => true,
                            Some(v) => *colon && v.is_empty(),
                        };
                        if use_default {
                            self.expand_parts(default, fds, fields, cur, live, globbing);
                            continue;
                        }
                    }
                    if name == "@" && *quoted {
                        // "$@": one field per positional parameter.
                        for (i, arg) in self.positional[1..].iter().enumerate() {
                            if i > 0 {
                                fields.push(std::mem::take(cur));
                            }
                            cur.push_str(arg);
                            *live = true;
                        }
                        continue;
                    }
                    (value.unwrap_or_default(), *quoted)
                }
                Part::Subst { script, quoted } => (self.substitute(script, fds), *quoted),
                Part::Arith { expr, quoted } => (self.arithmetic(expr, fds), *quoted),
            };
            if quoted {
                cur.push_str(&value);
                *live = true;
                continue;
            }
            // Field splitting on blanks (the default IFS).
            let is_blank = |c: char| c == ' ' || c == '\t' || c == '\n';
            if value.starts_with(is_blank) && (*live || !cur.is_empty()) {
                fields.push(std::mem::take(cur));
                *live = false;
            }
            for (i, piece) in value.split(is_blank).filter(|p| !p.is_empty()).enumerate() {
                if i > 0 {
                    fields.push(std::mem::take(cur));
                }
                cur.push_str(piece);
                *live = true;
                *globbing |= has_glob_chars(piece);
            }
            if value.ends_with(is_blank) && (*live || !cur.is_empty()) {
                fields.push(std::mem::take(cur));
                *live = false;
            }
        }
    }

    /// Expands a word into one string, without field splitting or globbing (assignments,
    /// redirection targets, here-documents).
    fn expand_one(&mut self, word: &Word, fds: &Fds) -> String {
        let quoted: Vec<Part> = word
            .0
            .iter()
            .map(|part| match part.clone() {
                Part::Lit { text, .. } => Part::Lit { text, quoted: true },
                Part::Param { name, default, .. } => Part::Param {
                    name,
                    quoted: true,
                    default,
                },
                Part::Arith { expr, .. } => Part::Arith { expr, quoted: true },
                Part::Subst { script, .. } => Part::Subst {
                    script,
                    quoted: true,
                },
            })
            .collect();
        let mut fields = Vec::new();
        let (mut cur, mut live, mut globbing) = (String::new(), false, false);
        self.expand_parts(
            &quoted,
            fds,
            &mut fields,
            &mut cur,
            &mut live,
            &mut globbing,
        );
        fields.push(cur);
        fields.join(" ")
    }

    /// `$(script)`: runs `script` in a copy of this shell and returns its output without
    /// trailing newlines.
    fn substitute(&mut self, script: &str, fds: &Fds) -> String {
        let buf = Rc::new(RefCell::new(Vec::new()));
        let stdout: Out = buf.clone();
        let sub_fds = Fds {
            stdin: fds.stdin.clone(),
            stdout,
            stderr: fds.stderr.clone(),
        };
        let mut sub = self.clone();
        sub.exit = None;
        let cwd = std::env::current_dir().ok();
        self.status = match parse(script) {
            Ok(parsed) => sub.run(&parsed, &sub_fds),
            Err(msg) => {
                fds.error(msg);
                2
            }
        };
        if let Some(cwd) = cwd {
            let _ = std::env::set_current_dir(cwd);
        }
        let out = buf.borrow();
        let mut text = String::from_utf8_lossy(&out).into_owned();
        text.truncate(text.trim_end_matches('\n').len());
        text
    }

    /// `$((expr))`: parameters and substitutions in `expr` are expanded first; an error is
    /// reported and counts as 0.
    fn arithmetic(&mut self, expr: &str, fds: &Fds) -> String {
        let expanded = match heredoc_parts(expr) {
            Ok(parts) => self.expand_one(&Word(parts), fds),
            Err(msg) => {
                fds.error(msg);
                return "0".into();
            }
        };
        let lookup = |name: &str| self.var(name).map(str::to_string);
        match eval_arith(&expanded, &lookup) {
            Ok(value) => value.to_string(),
            Err(msg) => {
                fds.error(format!("arithmetic: {msg}: {expr}"));
                "0".into()
            }
        }
    }

    /// Whether `exit`, `break` or `continue` stops what runs.
    fn interrupted(&self) -> bool {
        self.exit.is_some() || self.flow.is_some()
    }

    /// Runs a parsed script; returns the status of its last command (or of `exit`).
    pub fn run(&mut self, script: &Script, fds: &Fds) -> i32 {
        for and_or in script {
            let (status, last) = self.run_and_or(and_or, fds);
            self.status = status;
            if self.interrupted() {
                break;
            }
            if self.errexit && self.conditions == 0 && status != 0 && last {
                self.exit = Some(status);
                break;
            }
        }
        self.exit.unwrap_or(self.status)
    }

    /// Runs an and-or list; also says whether its status came from its last pipeline (which
    /// is when `set -e` applies).
    fn run_and_or(&mut self, and_or: &AndOr, fds: &Fds) -> (i32, bool) {
        let mut status = self.run_pipeline(&and_or.first, fds);
        let mut last = and_or.rest.is_empty() && !and_or.first.negate;
        for (i, (connector, pipeline)) in and_or.rest.iter().enumerate() {
            if self.interrupted() {
                break;
            }
            let run = match connector {
                Connector::And => status == 0,
                Connector::Or => status != 0,
            };
            if run {
                status = self.run_pipeline(pipeline, fds);
                last = i + 1 == and_or.rest.len() && !pipeline.negate;
            }
        }
        (status, last)
    }

    fn run_pipeline(&mut self, pipeline: &Pipeline, fds: &Fds) -> i32 {
        let mut input: Option<Vec<u8>> = None;
        let mut status = 0;
        let count = pipeline.commands.len();
        for (i, command) in pipeline.commands.iter().enumerate() {
            let mut stage = fds.clone();
            if let Some(data) = input.take() {
                let stdin: In = Rc::new(RefCell::new(Cursor::new(data)));
                stage.stdin = stdin;
            }
            // No concurrency without threads: a stage's output is collected, then fed to the
            // next stage as its input.
            let buffer = (i + 1 < count).then(|| Rc::new(RefCell::new(Vec::new())));
            if let Some(buffer) = &buffer {
                let stdout: Out = buffer.clone();
                stage.stdout = stdout;
            }
            status = self.run_command(command, &stage);
            if let Some(buffer) = buffer {
                input = Some(std::mem::take(&mut *buffer.borrow_mut()));
            }
            if self.interrupted() {
                break;
            }
        }
        if pipeline.negate {
            status = i32::from(status == 0);
        }
        self.status = status;
        status
    }

    fn run_command(&mut self, command: &Command, fds: &Fds) -> i32 {
        let (compound, redirs) = match command {
            Command::Simple(simple) => return self.run_simple(simple, fds),
            Command::Compound(compound, redirs) => (compound, redirs),
        };
        let mut stage = fds.clone();
        let mut files: Vec<Rc<RefCell<LineWriter<File>>>> = Vec::new();
        for redir in redirs {
            if let Err(msg) = self.redirect(redir, &mut stage, &mut files) {
                fds.error(msg);
                self.status = 1;
                return 1;
            }
        }
        let status = match compound {
            Compound::Group(body) => self.run(body, &stage),
            Compound::If {
                branches,
                otherwise,
            } => self.run_if(branches, otherwise.as_ref(), &stage),
            Compound::Loop {
                until,
                condition,
                body,
            } => self.run_while(*until, condition, body, &stage),
            Compound::For { name, words, body } => {
                let values = match words {
                    Some(words) => words.iter().flat_map(|w| self.expand(w, &stage)).collect(),
                    None => self.positional[1..].to_vec(),
                };
                self.run_for(name, values, body, &stage)
            }
        };
        for file in files {
            if let Err(err) = file.borrow_mut().flush() {
                fds.error(format!("write error: {}", error_text(&err)));
            }
        }
        self.status = status;
        status
    }

    /// Runs a condition: `set -e` does not apply to it.
    fn condition(&mut self, script: &Script, fds: &Fds) -> i32 {
        self.conditions += 1;
        let status = self.run(script, fds);
        self.conditions -= 1;
        status
    }

    fn run_if(
        &mut self,
        branches: &[(Script, Script)],
        otherwise: Option<&Script>,
        fds: &Fds,
    ) -> i32 {
        for (condition, body) in branches {
            let status = self.condition(condition, fds);
            if self.interrupted() {
                return status;
            }
            if status == 0 {
                return self.run(body, fds);
            }
        }
        otherwise.map_or(0, |body| self.run(body, fds))
    }

    /// Runs a loop body; says whether the loop goes on (after `break`, `exit` it doesn't).
    fn loop_body(&mut self, body: &Script, fds: &Fds) -> bool {
        self.loops += 1;
        self.run(body, fds);
        self.loops -= 1;
        match self.flow.take() {
            Some(Flow::Break(n)) => {
                // `break 2` also ends the loop around this one.
                self.flow = (n > 1).then_some(Flow::Break(n - 1));
                false
            }
            Some(Flow::Continue(n)) if n > 1 => {
                self.flow = Some(Flow::Continue(n - 1));
                false
            }
            Some(Flow::Continue(_)) => true,
            None => self.exit.is_none(),
        }
    }

    fn run_while(&mut self, until: bool, condition: &Script, body: &Script, fds: &Fds) -> i32 {
        let mut status = 0;
        loop {
            let test = self.condition(condition, fds);
            if self.interrupted() || (test == 0) == until {
                return status;
            }
            let go_on = self.loop_body(body, fds);
            status = self.status;
            if !go_on {
                return status;
            }
        }
    }

    fn run_for(&mut self, name: &str, values: Vec<String>, body: &Script, fds: &Fds) -> i32 {
        let mut status = 0;
        for value in values {
            self.set_var(name, value);
            let go_on = self.loop_body(body, fds);
            status = self.status;
            if !go_on {
                break;
            }
        }
        status
    }

    fn run_simple(&mut self, command: &SimpleCommand, fds: &Fds) -> i32 {
        let mut argv = Vec::new();
        for word in &command.words {
            argv.extend(self.expand(word, fds));
        }
        let mut assigns = Vec::new();
        for (name, word) in &command.assigns {
            assigns.push((name.clone(), self.expand_one(word, fds)));
        }
        let mut stage = fds.clone();
        let mut files: Vec<Rc<RefCell<LineWriter<File>>>> = Vec::new();
        for redir in &command.redirs {
            if let Err(msg) = self.redirect(redir, &mut stage, &mut files) {
                fds.error(msg);
                self.status = 1;
                return 1;
            }
        }
        let status = if argv.is_empty() {
            for (name, value) in assigns {
                self.set_var(&name, value);
            }
            // `$?` stays what a command substitution in the assignment made it.
            if command.assigns.is_empty() {
                0
            } else {
                self.status
            }
        } else {
            if self.xtrace {
                let _ = writeln!(stage.stderr.borrow_mut(), "+ {}", argv.join(" "));
            }
            self.exec(&argv, assigns, &stage)
        };
        let _ = stage.stdout.borrow_mut().flush();
        for file in files {
            if let Err(err) = file.borrow_mut().flush() {
                fds.error(format!("write error: {}", error_text(&err)));
            }
        }
        self.status = status;
        status
    }

    fn redirect<'a>(
        &mut self,
        redir: &Redir,
        fds: &mut Fds<'a>,
        files: &mut Vec<Rc<RefCell<LineWriter<File>>>>,
    ) -> Result<(), String> {
        match &redir.op {
            RedirOp::Write | RedirOp::Append => {
                if !matches!(redir.fd, 1 | 2) {
                    return Err(format!("{}: only `>' on 1 and 2 is supported", redir.fd));
                }
                let name = self.expand_one(&redir.target, fds);
                if name == DEV_NULL {
                    let sink: Out = Rc::new(RefCell::new(io::sink()));
                    return set_out(fds, redir.fd, sink);
                }
                let append = redir.op == RedirOp::Append;
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .append(append)
                    .truncate(!append)
                    .open(&name)
                    .map_err(|e| format!("{name}: {}", error_text(&e)))?;
                let file = Rc::new(RefCell::new(LineWriter::new(file)));
                files.push(file.clone());
                set_out(fds, redir.fd, file)
            }
            RedirOp::Read => {
                if redir.fd != 0 {
                    return Err(format!("{}: only `<' on 0 is supported", redir.fd));
                }
                let name = self.expand_one(&redir.target, fds);
                if name == DEV_NULL {
                    fds.stdin = Rc::new(RefCell::new(io::empty()));
                    return Ok(());
                }
                let file = File::open(&name).map_err(|e| format!("{name}: {}", error_text(&e)))?;
                fds.stdin = Rc::new(RefCell::new(file));
                Ok(())
            }
            RedirOp::HereDoc(body) => {
                if redir.fd != 0 {
                    return Err(format!("{}: only `<<' on 0 is supported", redir.fd));
                }
                let text = self.expand_one(body, fds);
                fds.stdin = Rc::new(RefCell::new(Cursor::new(text.into_bytes())));
                Ok(())
            }
            RedirOp::Dup(target) => {
                let out = match target {
                    1 => fds.stdout.clone(),
                    2 => fds.stderr.clone(),
                    n => return Err(format!("{n}: bad file descriptor")),
                };
                set_out(fds, redir.fd, out)
            }
        }
    }

    /// Runs a builtin or a command; `assigns` go to the command's environment.
    fn exec(&mut self, argv: &[String], assigns: Vec<(String, String)>, fds: &Fds) -> i32 {
        let args = &argv[1..];
        match argv[0].as_str() {
            ":" | "trap" | "umask" => 0,
            "cd" => self.cd(args, fds),
            "exit" => {
                let status = match args.first() {
                    None => self.status,
                    Some(n) => match n.parse::<i32>() {
                        Ok(n) => n & 0xff,
                        Err(_) => {
                            fds.error(format!("exit: {n}: numeric argument required"));
                            2
                        }
                    },
                };
                self.exit = Some(status);
                status
            }
            "export" => {
                for arg in args {
                    let (name, value) = match arg.split_once('=') {
                        Some((name, value)) => (name, Some(value.to_string())),
                        None => (arg.as_str(), None),
                    };
                    if !is_name(name) {
                        fds.error(format!("export: {name}: bad variable name"));
                        return 1;
                    }
                    let value = value
                        .or_else(|| self.vars.remove(name))
                        .or_else(|| self.env.get(name).cloned())
                        .unwrap_or_default();
                    self.vars.remove(name);
                    self.env.insert(name.to_string(), value);
                }
                0
            }
            "unset" => {
                for name in args {
                    self.vars.remove(name);
                    self.env.remove(name);
                }
                0
            }
            "set" => self.set(args, fds),
            "shift" => {
                let n = args.first().and_then(|n| n.parse().ok()).unwrap_or(1);
                if n >= self.positional.len() {
                    fds.error("shift: can't shift that many");
                    return 1;
                }
                self.positional.drain(1..1 + n);
                0
            }
            "exec" => {
                // Nothing to replace: the command runs, then the shell ends with its status.
                if args.is_empty() {
                    return 0;
                }
                let status = self.exec(args, assigns, fds);
                self.exit = Some(status);
                status
            }
            "." | "source" => self.source(args, fds),
            "break" | "continue" => {
                let n = match args.first().map(|n| n.parse::<u32>()) {
                    None => 1,
                    Some(Ok(n)) if n > 0 => n,
                    Some(_) => {
                        fds.error(format!("{}: bad number", argv[0]));
                        return 1;
                    }
                };
                if self.loops > 0 {
                    let n = n.min(self.loops);
                    self.flow = Some(if argv[0] == "break" {
                        Flow::Break(n)
                    } else {
                        Flow::Continue(n)
                    });
                }
                0
            }
            "read" => self.read(args, fds),
            _ => {
                let mut ctx = Ctx {
                    env: self.env.clone(),
                };
                ctx.env.extend(assigns);
                fds.with_io(|io| run_command(&mut ctx, argv, io))
            }
        }
    }

    /// `read [-r] [NAME...]`: reads a line from standard input into variables (the last one
    /// takes the rest of the line; without names, `REPLY` takes it all). Status 1 at the end of
    /// the input.
    fn read(&mut self, args: &[String], fds: &Fds) -> i32 {
        let raw = args.first().is_some_and(|a| a == "-r");
        let names = if raw { &args[1..] } else { args };
        // Byte by byte: what follows the line must stay in the input for later commands.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        let mut eof = false;
        loop {
            match fds.stdin.borrow_mut().read(&mut byte) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) if byte[0] == b'\n' => {
                    if !raw && line.last() == Some(&b'\\') {
                        line.pop(); // A backslash-newline continues the line.
                        continue;
                    }
                    break;
                }
                Ok(_) => line.push(byte[0]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    fds.error(format!("read: {}", error_text(&err)));
                    return 1;
                }
            }
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if !raw {
            let mut unescaped = String::with_capacity(text.len());
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => unescaped.extend(chars.next()),
                    c => unescaped.push(c),
                }
            }
            text = unescaped;
        }
        if names.is_empty() {
            self.set_var("REPLY", text);
        } else {
            let mut rest = text.trim_matches([' ', '\t']);
            for (i, name) in names.iter().enumerate() {
                let value = if i + 1 == names.len() {
                    std::mem::take(&mut rest)
                } else {
                    let (field, tail) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
                    rest = tail.trim_start_matches([' ', '\t']);
                    field
                };
                self.set_var(name, value.to_string());
            }
        }
        i32::from(eof && line.is_empty())
    }

    fn cd(&mut self, args: &[String], fds: &Fds) -> i32 {
        let dir = match args.first() {
            Some(dir) => dir.clone(),
            None => self.var("HOME").unwrap_or("/").to_string(),
        };
        match std::env::set_current_dir(&dir) {
            Ok(()) => {
                if let Ok(cwd) = std::env::current_dir() {
                    self.set_var("PWD", cwd.to_string_lossy().into_owned());
                }
                0
            }
            Err(err) => {
                fds.error(format!("cd: can't cd to {dir}: {}", error_text(&err)));
                1
            }
        }
    }

    fn set(&mut self, args: &[String], fds: &Fds) -> i32 {
        if args.is_empty() {
            let mut all: BTreeMap<&String, &String> = self.env.iter().collect();
            all.extend(self.vars.iter());
            let mut out = fds.stdout.borrow_mut();
            for (name, value) in all {
                let _ = writeln!(out, "{name}='{}'", value.replace('\'', "'\\''"));
            }
            return 0;
        }
        for (i, arg) in args.iter().enumerate() {
            if arg == "--" {
                self.positional.truncate(1);
                self.positional.extend(args[i + 1..].iter().cloned());
                return 0;
            }
            let (on, flags) = if let Some(flags) = arg.strip_prefix('-') {
                (true, flags)
            } else if let Some(flags) = arg.strip_prefix('+') {
                (false, flags)
            } else {
                self.positional.truncate(1);
                self.positional.extend(args[i..].iter().cloned());
                return 0;
            };
            for flag in flags.chars() {
                match flag {
                    'e' => self.errexit = on,
                    'x' => self.xtrace = on,
                    // Accepted for scripts that ask for them; nothing to change here.
                    'u' | 'o' | 'f' => {}
                    _ => {
                        fds.error(format!("set: illegal option -{flag}"));
                        return 2;
                    }
                }
            }
        }
        0
    }

    fn source(&mut self, args: &[String], fds: &Fds) -> i32 {
        let Some(name) = args.first() else {
            fds.error(".: filename argument required");
            return 2;
        };
        let path = if name.contains('/') {
            PathBuf::from(name)
        } else {
            find_in_path(name, self.var("PATH")).unwrap_or_else(|| PathBuf::from(name))
        };
        let text = match fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(err) => {
                fds.error(format!(".: {name}: {}", error_text(&err)));
                return 1;
            }
        };
        match parse(&text) {
            Ok(script) => self.run(&script, fds),
            Err(msg) => {
                fds.error(format!("{name}: {msg}"));
                2
            }
        }
    }
}

/// Points output descriptor `fd` (1 or 2) of `fds` at `out`.
fn set_out<'a>(fds: &mut Fds<'a>, fd: u32, out: Out<'a>) -> Result<(), String> {
    match fd {
        1 => fds.stdout = out,
        2 => fds.stderr = out,
        _ => return Err(format!("{fd}: unsupported file descriptor")),
    }
    Ok(())
}

/// Looks a command name up in the directories of `path` (or [`DEFAULT_PATH`]).
pub fn find_in_path(name: &str, path: Option<&str>) -> Option<PathBuf> {
    path.unwrap_or(DEFAULT_PATH)
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|candidate| candidate.is_file())
}

/// The applet a program file stands for: its file name without a `.wasm` suffix.
pub fn applet_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".wasm").unwrap_or(base)
}

/// Runs a command as the shell does: an applet by name, else a program file found by path or
/// in `PATH`. A Wasm program file runs as the applet its file name names (busybox-style
/// links to `box`); a text file runs as a shell script.
pub fn run_command(ctx: &mut Ctx, argv: &[String], io: &mut Io) -> i32 {
    let name = argv[0].as_str();
    if !name.contains('/')
        && let Some(applet) = applets::lookup(name)
    {
        return applet(ctx, argv, io);
    }
    let found = if name.contains('/') {
        Some(PathBuf::from(name)).filter(|p| p.exists())
    } else {
        find_in_path(name, ctx.env.get("PATH").map(String::as_str))
    };
    let Some(path) = found else {
        let _ = writeln!(io.err, "sh: {name}: not found");
        return 127;
    };
    let mut head = [0u8; 4];
    let read = File::open(&path).and_then(|mut file| {
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    });
    match read {
        Err(err) => {
            let _ = writeln!(io.err, "sh: {name}: {}", error_text(&err));
            126
        }
        Ok(4) if &head == b"\0asm" => {
            let program = applet_name(&path.to_string_lossy()).to_string();
            if program == "box" && argv.len() > 1 {
                return run_command(ctx, &argv[1..], io);
            }
            match applets::lookup(&program) {
                Some(applet) => applet(ctx, argv, io),
                None => {
                    let _ = writeln!(
                        io.err,
                        "sh: {name}: cannot execute a Wasm program from a shell (no process spawning in WASI)"
                    );
                    126
                }
            }
        }
        Ok(_) => {
            // Like exec(2) of a script: `$0` is the path that was found.
            let mut argv = argv.to_vec();
            argv[0] = path.to_string_lossy().into_owned();
            run_script_file(ctx, &path, &argv, io)
        }
    }
}

/// Runs a script file in a new shell (a "sub-shell": its variables and working directory do
/// not leak back). `argv[0]` becomes `$0`.
pub fn run_script_file(ctx: &mut Ctx, path: &Path, argv: &[String], io: &mut Io) -> i32 {
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => {
            let _ = writeln!(io.err, "sh: {}: {}", path.display(), error_text(&err));
            return 127;
        }
    };
    run_text(ctx, &text, argv.to_vec(), io)
}

/// Runs script text in a new shell with positional parameters `positional`.
fn run_text(ctx: &mut Ctx, text: &str, positional: Vec<String>, io: &mut Io) -> i32 {
    let mut shell = Shell::new(ctx.env.clone(), positional);
    run_text_in(&mut shell, text, io)
}

fn run_text_in(shell: &mut Shell, text: &str, io: &mut Io) -> i32 {
    // A `#!` line is a comment anyway; dropping it keeps odd interpreter lines harmless.
    let text = if text.starts_with("#!") {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        text
    };
    let script = match parse(text) {
        Ok(script) => script,
        Err(msg) => {
            let _ = writeln!(io.err, "sh: {msg}");
            return 2;
        }
    };
    let cwd = std::env::current_dir().ok();
    let status = {
        let fds = Fds::from_io(io);
        let status = shell.run(&script, &fds);
        let _ = fds.stdout.borrow_mut().flush();
        let _ = fds.stderr.borrow_mut().flush();
        status
    };
    if let Some(cwd) = cwd {
        let _ = std::env::set_current_dir(cwd);
    }
    status
}

/// The `sh` applet: `sh [-ex] -c SCRIPT [ARG0 ARGS...]`, `sh [-ex] FILE [ARGS...]`, or `sh`
/// reading the script from standard input.
pub fn sh_main(ctx: &mut Ctx, args: &[String], io: &mut Io) -> i32 {
    let mut command_mode = false;
    let (mut errexit, mut xtrace) = (false, false);
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        if arg == "--" {
            i += 1;
            break;
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            break;
        };
        for flag in flags.chars() {
            match flag {
                'c' => command_mode = true,
                'e' => errexit = true,
                'x' => xtrace = true,
                // Login/interactive/stdin flags change nothing here.
                'l' | 'i' | 's' => {}
                _ => {
                    let _ = writeln!(io.err, "sh: illegal option -{flag}");
                    return 2;
                }
            }
        }
        i += 1;
    }
    let (text, positional) = if command_mode {
        let Some(script) = args.get(i) else {
            let _ = writeln!(io.err, "sh: -c requires an argument");
            return 2;
        };
        let positional = if args.len() > i + 1 {
            args[i + 1..].to_vec()
        } else {
            vec![args[0].clone()]
        };
        (script.clone(), positional)
    } else if let Some(file) = args.get(i) {
        match fs::read(file) {
            Ok(bytes) => (
                String::from_utf8_lossy(&bytes).into_owned(),
                args[i..].to_vec(),
            ),
            Err(err) => {
                let _ = writeln!(io.err, "sh: can't open '{file}': {}", error_text(&err));
                return 127;
            }
        }
    } else {
        let mut bytes = Vec::new();
        if let Err(err) = io.stdin.read_to_end(&mut bytes) {
            let _ = writeln!(io.err, "sh: standard input: {}", error_text(&err));
            return 1;
        }
        (
            String::from_utf8_lossy(&bytes).into_owned(),
            vec![args[0].clone()],
        )
    };
    let mut shell = Shell::new(ctx.env.clone(), positional);
    shell.errexit = errexit;
    shell.xtrace = xtrace;
    run_text_in(&mut shell, &text, io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `src` in a fresh shell with `env`; returns (status, stdout, stderr).
    fn run(src: &str, env: &[(&str, &str)]) -> (i32, String, String) {
        run_with(src, env, vec!["sh".into()])
    }

    fn run_with(src: &str, env: &[(&str, &str)], positional: Vec<String>) -> (i32, String, String) {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut shell = Shell::new(env, positional);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin: &[u8] = b"line one\nline two\n";
        let mut io = Io {
            stdin: &mut stdin,
            out: &mut out,
            err: &mut err,
        };
        let status = run_text_in(&mut shell, src, &mut io);
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn stdout(src: &str) -> String {
        let (status, out, err) = run(src, &[("HOME", "/home/u"), ("PATH", "/nonexistent")]);
        assert!(err.is_empty(), "stderr for {src:?}: {err}");
        let _ = status;
        out
    }

    #[test]
    fn heredocs() {
        let (status, out, _) = run("X=world\ncat <<EOF\nhello $X\n\\$X\nEOF\necho after", &[]);
        assert_eq!(status, 0);
        assert_eq!(out, "hello world\n$X\nafter\n");
        let out = stdout("cat <<'EOF'\n$HOME\nEOF");
        assert_eq!(out, "$HOME\n");
        let out = stdout("cat <<-END\n\tindented\n\tEND\n");
        assert_eq!(out, "indented\n");
    }

    #[test]
    fn echo_and_expansion() {
        assert_eq!(stdout("echo hello   world"), "hello world\n");
        assert_eq!(
            stdout("echo \"$HOME\" ${HOME}x $NOPE."),
            "/home/u /home/ux .\n"
        );
        assert_eq!(
            stdout("echo ${NOPE:-def ault} ${HOME:-no}"),
            "def ault /home/u\n"
        );
        assert_eq!(
            stdout("E=; echo x${E:-colon}x x${E-nocolon}x"),
            "xcolonx xx\n"
        );
        assert_eq!(stdout("echo '$HOME' \\$HOME"), "$HOME $HOME\n");
        assert_eq!(stdout("echo a\"\"b '' x"), "ab  x\n");
    }

    #[test]
    fn compound_commands() {
        assert_eq!(
            stdout("if false; then echo a; elif true; then echo b; else echo c; fi"),
            "b\n"
        );
        assert_eq!(stdout("if false; then echo a; else echo c; fi"), "c\n");
        assert_eq!(stdout("if false; then echo a; fi; echo $?"), "0\n");
        assert_eq!(
            stdout("i=0\nwhile [ $i -lt 3 ]\ndo\n  echo $i\n  i=$((i + 1))\ndone"),
            "0\n1\n2\n"
        );
        assert_eq!(
            stdout("i=0; until [ $i -ge 2 ]; do i=$((i+1)); done; echo $i"),
            "2\n"
        );
        assert_eq!(
            stdout("for x in a 'b c' d; do echo \"[$x]\"; done"),
            "[a]\n[b c]\n[d]\n"
        );
        assert_eq!(stdout("set -- p q; for x; do echo $x; done"), "p\nq\n");
        assert_eq!(
            stdout(
                "for i in 1 2 3 4; do [ $i = 2 ] && continue; [ $i = 4 ] && break; echo $i; done"
            ),
            "1\n3\n"
        );
        assert_eq!(
            stdout(
                "for i in 1 2; do for j in a b; do [ $j = b ] && continue 2; echo $i$j; done; echo never; done"
            ),
            "1a\n2a\n"
        );
        assert_eq!(
            stdout("while true; do while true; do break 2; done; echo never; done; echo out"),
            "out\n"
        );
        assert_eq!(stdout("{ echo a; echo b; } | wc -l"), "2\n");
        assert_eq!(stdout("if true; then if true; then echo in; fi fi"), "in\n");
        let (status, out, _) = run(
            "set -e; if false; then :; fi; while false; do :; done; echo ok",
            &[],
        );
        assert_eq!((status, out.as_str()), (0, "ok\n"));
        let (status, out, _) = run("for i in 1 2 3; do echo $i; exit 7; done", &[]);
        assert_eq!((status, out.as_str()), (7, "1\n"));
    }

    #[test]
    fn compound_redirections_and_read() {
        let dir = std::env::temp_dir().join(format!("wpod-sh-loop-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let out = stdout(&format!(
            "for i in 1 2; do echo line $i; done > {d}/f\n\
             while read -r a b; do echo \"<$b|$a>\"; done < {d}/f\n\
             read x < {d}/f; echo \"x=$x\""
        ));
        assert_eq!(out, "<1|line>\n<2|line>\nx=line 1\n");
        assert_eq!(
            stdout("read one two; echo \"$two/$one\"; read; echo \"$REPLY\""),
            "one/line\nline two\n"
        );
        let (status, _, _) = run("read a; read b; read c", &[]);
        assert_eq!(status, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn split_unquoted_variables_only() {
        assert_eq!(stdout("V=' a  b '; set -- $V; echo $#"), "2\n");
        assert_eq!(stdout("V=' a  b '; set -- \"$V\"; echo $#"), "1\n");
        assert_eq!(stdout("V='a b'; set -- x$V; echo $# $1"), "2 xa\n");
        assert_eq!(stdout("E=; set -- $E; echo $#"), "0\n");
        assert_eq!(stdout("E=; set -- \"$E\"; echo $#"), "1\n");
    }

    #[test]
    fn positional_parameters() {
        let (_, out, _) = run_with(
            "echo $0 $# $1 $2; set -- \"$@\"; echo $#; shift; echo $1",
            &[],
            vec!["prog".into(), "one two".into(), "three".into()],
        );
        assert_eq!(out, "prog 2 one two three\n2\nthree\n");
    }

    #[test]
    fn status_and_connectors() {
        assert_eq!(stdout("false; echo $?; true; echo $?"), "1\n0\n");
        assert_eq!(stdout("false && echo no || echo yes"), "yes\n");
        assert_eq!(stdout("true && echo yes || echo no"), "yes\n");
        assert_eq!(stdout("! false && echo negated"), "negated\n");
        let (status, _, _) = run("true; false", &[]);
        assert_eq!(status, 1);
        let (status, out, _) = run("echo a; exit 3; echo b", &[]);
        assert_eq!((status, out.as_str()), (3, "a\n"));
        let (status, out, _) = run("set -e; false || echo ok; false; echo not", &[]);
        assert_eq!((status, out.as_str()), (1, "ok\n"));
    }

    #[test]
    fn not_found_and_errors() {
        let (status, _, err) = run("nosuchcommand x", &[("PATH", "/nonexistent")]);
        assert_eq!(status, 127);
        assert_eq!(err, "sh: nosuchcommand: not found\n");
        let (status, _, err) = run("cat /nonexistent/file", &[]);
        assert_eq!(status, 1);
        assert!(err.starts_with("cat: /nonexistent/file: "), "{err}");
        let (status, _, err) = run("echo 'x", &[]);
        assert_eq!(status, 2);
        assert!(err.starts_with("sh: "));
    }

    #[test]
    fn pipes_and_substitution() {
        assert_eq!(stdout("echo hi | cat"), "hi\n");
        assert_eq!(stdout("cat | wc -l"), "2\n");
        assert_eq!(stdout("seq 5 | tail -n 2 | head -n 1"), "4\n");
        assert_eq!(stdout("X=$(echo sub; echo two); echo \"$X\""), "sub\ntwo\n");
        assert_eq!(stdout("echo `echo back` $(echo a  b)"), "back a b\n");
        assert_eq!(stdout("echo \"$(false)$?\""), "1\n");
    }

    #[test]
    fn redirections_to_files() {
        let dir = std::env::temp_dir().join(format!("wpod-sh-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let (status, out, err) = run(
            &format!(
                "echo one > {d}/f; echo two >> {d}/f; cat < {d}/f; \
                 cat {d}/missing 2> {d}/err; cat {d}/missing > {d}/both 2>&1; \
                 echo to-err 1>&2"
            ),
            &[],
        );
        assert_eq!(status, 0);
        assert_eq!(out, "one\ntwo\n");
        assert_eq!(err, "to-err\n");
        let (status, out, err) = run(
            "echo gone > /dev/null; cat /nonexistent 2>/dev/null; cat </dev/null",
            &[],
        );
        assert_eq!((status, out.as_str(), err.as_str()), (0, "", ""));
        assert!(
            fs::read_to_string(dir.join("err"))
                .unwrap()
                .starts_with("cat: ")
        );
        assert!(
            fs::read_to_string(dir.join("both"))
                .unwrap()
                .starts_with("cat: ")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn globs_expand_unquoted_words() {
        let dir = std::env::temp_dir().join(format!("wpod-glob-{}", std::process::id()));
        fs::create_dir_all(dir.join("sub")).unwrap();
        for name in ["b.txt", "a.txt", "c.log", ".hidden.txt", "sub/d.txt"] {
            fs::write(dir.join(name), "").unwrap();
        }
        let d = dir.display().to_string();
        assert_eq!(
            glob(&format!("{d}/*.txt")),
            vec![format!("{d}/a.txt"), format!("{d}/b.txt")]
        );
        assert_eq!(
            glob(&format!("{d}/*/d.txt")),
            vec![format!("{d}/sub/d.txt")]
        );
        assert!(glob(&format!("{d}/*.none")).is_empty());
        assert_eq!(
            stdout(&format!("echo {d}/*.log '{d}/*.log' {d}/*.none")),
            format!("{d}/c.log {d}/*.log {d}/*.none\n")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exported_variables_reach_commands() {
        let (_, out, _) = run("A=1; export B=2; C=3 env", &[("PATH", "/p")]);
        assert_eq!(out, "B=2\nC=3\nPATH=/p\n");
        let (_, out, _) = run("A=1; export A; unset PATH; env", &[("PATH", "/p")]);
        assert_eq!(out, "A=1\n");
    }

    #[test]
    fn script_files_and_wasm_links() {
        let dir = std::env::temp_dir().join(format!("wpod-run-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("script"), "#!/bin/sh\necho script $1 $0\nexit 4\n").unwrap();
        fs::write(dir.join("cp"), b"\0asm\x01\0\0\0").unwrap();
        fs::write(dir.join("box.wasm"), b"\0asm\x01\0\0\0").unwrap();
        fs::write(dir.join("other.wasm"), b"\0asm\x01\0\0\0").unwrap();
        let path = dir.display().to_string();
        let env = [("PATH", path.as_str())];

        let (status, out, _) = run("script arg; echo $?", &env);
        assert_eq!(
            (status, out.as_str()),
            (0, &*format!("script arg {path}/script\n4\n"))
        );
        let (status, out, _) = run(&format!("{path}/box.wasm echo via box"), &env);
        assert_eq!((status, out.as_str()), (0, "via box\n"));
        let (status, _, err) = run(&format!("{path}/cp"), &env);
        assert_eq!(status, 1);
        assert!(err.starts_with("cp: "), "{err}");
        let (status, _, err) = run("other.wasm", &env);
        assert_eq!(status, 126);
        assert_eq!(
            err,
            "sh: other.wasm: cannot execute a Wasm program from a shell (no process spawning in WASI)\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sh_applet_modes() {
        let mut ctx = Ctx::default();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin: &[u8] = b"echo from stdin";
        let args: Vec<String> = ["sh", "-c", "echo $0 $1; exit 5", "zero", "one"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut io = Io {
            stdin: &mut stdin,
            out: &mut out,
            err: &mut err,
        };
        assert_eq!(sh_main(&mut ctx, &args, &mut io), 5);
        assert_eq!(sh_main(&mut ctx, &["sh".to_string()], &mut io), 0);
        assert_eq!(String::from_utf8(out).unwrap(), "zero one\nfrom stdin\n");
    }

    #[test]
    fn arithmetic_expansion() {
        assert_eq!(
            stdout("i=4; echo $((i * $i)) \"$(( (i + 1) % 3 ))\""),
            "16 2\n"
        );
        let (_, out, err) = run("echo $((1/0))", &[]);
        assert_eq!(out, "0\n");
        assert!(err.contains("division by zero"), "{err}");
    }
}
