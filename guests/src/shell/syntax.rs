//! The shell's syntax: the tree that a script parses into, its lexer and its parser.

/// A piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text; quoted text is exempt from field splitting and globbing.
    Lit { text: String, quoted: bool },
    /// `$NAME`, `${NAME}`, or `${NAME:-default}` / `${NAME-default}` (`colon`: the default
    /// also replaces an empty value).
    Param {
        name: String,
        quoted: bool,
        default: Option<(bool, Vec<Part>)>,
    },
    /// `$(script)` or `` `script` ``.
    Subst { script: String, quoted: bool },
    /// `$((expression))`.
    Arith { expr: String, quoted: bool },
}

/// A word: the parts that expand into zero or more fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Word(pub Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirOp {
    /// `N> file`
    Write,
    /// `N>> file`
    Append,
    /// `N< file`
    Read,
    /// `N>&M`: make N a copy of M.
    Dup(u32),
    /// `N<< DELIM`: the document's body.
    HereDoc(Word),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redir {
    pub fd: u32,
    pub op: RedirOp,
    /// The file name (empty for `Dup` and `HereDoc`).
    pub target: Word,
}

/// A simple command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimpleCommand {
    pub assigns: Vec<(String, Word)>,
    pub words: Vec<Word>,
    pub redirs: Vec<Redir>,
}

/// A command: simple, or compound with redirections that apply to all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Simple(SimpleCommand),
    Compound(Compound, Vec<Redir>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compound {
    /// `if C; then B; elif C; then B; else E; fi`
    If {
        branches: Vec<(Script, Script)>,
        otherwise: Option<Script>,
    },
    /// `while C; do B; done` (or `until`, which loops while C fails).
    Loop {
        until: bool,
        condition: Script,
        body: Script,
    },
    /// `for NAME [in WORDS]; do B; done` (without `in`: over `"$@"`).
    For {
        name: String,
        words: Option<Vec<Word>>,
        body: Script,
    },
    /// `{ LIST; }`
    Group(Script),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub negate: bool,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    And,
    Or,
}

/// `p1 && p2 || p3 ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndOr {
    pub first: Pipeline,
    pub rest: Vec<(Connector, Pipeline)>,
}

/// A script: and-or lists run one after the other.
pub type Script = Vec<AndOr>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Word),
    Newline,
    Semi,
    And,
    Or,
    Pipe,
    Redir { fd: u32, op: RedirOp },
}

fn push_lit(parts: &mut Vec<Part>, text: &str, quoted: bool) {
    if let Some(Part::Lit {
        text: last,
        quoted: q,
    }) = parts.last_mut()
        && *q == quoted
    {
        last.push_str(text);
        return;
    }
    parts.push(Part::Lit {
        text: text.to_string(),
        quoted,
    });
}

pub(super) fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

struct HereDocPending {
    tok: usize,
    delim: String,
    expand: bool,
    strip_tabs: bool,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    toks: Vec<Tok>,
    heredocs: Vec<HereDocPending>,
}

impl Lexer {
    fn new(src: &str) -> Lexer {
        Lexer {
            chars: src.chars().collect(),
            pos: 0,
            toks: Vec::new(),
            heredocs: Vec::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn tokenize(mut self) -> Result<Vec<Tok>, String> {
        let mut parts: Vec<Part> = Vec::new();
        let mut in_word = false;
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' => {
                    self.pos += 1;
                    self.finish_word(&mut parts, &mut in_word);
                }
                '\n' => {
                    self.pos += 1;
                    self.finish_word(&mut parts, &mut in_word);
                    self.toks.push(Tok::Newline);
                    self.read_heredoc_bodies()?;
                }
                '#' if !in_word => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some('\n') => self.pos += 1, // line continuation
                        Some(next) => {
                            self.pos += 1;
                            push_lit(&mut parts, &next.to_string(), true);
                            in_word = true;
                        }
                        None => {
                            push_lit(&mut parts, "\\", false);
                            in_word = true;
                        }
                    }
                }
                '\'' => {
                    self.pos += 1;
                    let start = self.pos;
                    while self.peek().is_some_and(|c| c != '\'') {
                        self.pos += 1;
                    }
                    if self.peek().is_none() {
                        return Err("unterminated single quote".into());
                    }
                    let text: String = self.chars[start..self.pos].iter().collect();
                    self.pos += 1;
                    push_lit(&mut parts, &text, true);
                    in_word = true;
                }
                '"' => {
                    self.pos += 1;
                    self.double_quoted(&mut parts)?;
                    in_word = true;
                }
                '$' => {
                    match self.dollar(false)? {
                        Some(part) => parts.push(part),
                        None => push_lit(&mut parts, "$", false),
                    }
                    in_word = true;
                }
                '`' => {
                    parts.push(self.backquote(false)?);
                    in_word = true;
                }
                ';' => {
                    if self.peek_at(1) == Some(';') {
                        return Err("syntax error near unexpected token `;;'".into());
                    }
                    self.pos += 1;
                    self.finish_word(&mut parts, &mut in_word);
                    self.toks.push(Tok::Semi);
                }
                '&' => {
                    self.finish_word(&mut parts, &mut in_word);
                    if self.peek_at(1) == Some('&') {
                        self.pos += 2;
                        self.toks.push(Tok::And);
                    } else if self.peek_at(1) == Some('>') {
                        return Err("`&>' is not supported (use `> file 2>&1')".into());
                    } else {
                        return Err(
                            "background jobs (`&') are not supported: WASI cannot run processes"
                                .into(),
                        );
                    }
                }
                '|' => {
                    self.finish_word(&mut parts, &mut in_word);
                    if self.peek_at(1) == Some('|') {
                        self.pos += 2;
                        self.toks.push(Tok::Or);
                    } else {
                        self.pos += 1;
                        self.toks.push(Tok::Pipe);
                    }
                }
                '>' | '<' => {
                    // `2>file`: a word of digits right before the operator is its fd.
                    let fd = match parts.as_slice() {
                        [
                            Part::Lit {
                                text,
                                quoted: false,
                            },
                        ] if text.chars().all(|c| c.is_ascii_digit()) => {
                            let fd = text.parse().map_err(|_| "bad file descriptor")?;
                            parts.clear();
                            in_word = false;
                            Some(fd)
                        }
                        _ => None,
                    };
                    self.finish_word(&mut parts, &mut in_word);
                    self.redirection(c, fd)?;
                }
                '(' | ')' => {
                    return Err(format!(
                        "syntax error near unexpected token `{c}' (subshells are not supported)"
                    ));
                }
                _ => {
                    self.pos += 1;
                    push_lit(&mut parts, &c.to_string(), false);
                    in_word = true;
                }
            }
        }
        self.finish_word(&mut parts, &mut in_word);
        if !self.heredocs.is_empty() {
            // A here-document on the last line, without a newline: its body is empty.
            self.read_heredoc_bodies()?;
        }
        Ok(self.toks)
    }

    fn finish_word(&mut self, parts: &mut Vec<Part>, in_word: &mut bool) {
        if *in_word {
            self.toks.push(Tok::Word(Word(std::mem::take(parts))));
            *in_word = false;
        }
    }

    fn redirection(&mut self, c: char, fd: Option<u32>) -> Result<(), String> {
        self.pos += 1;
        let op = if c == '<' {
            if self.peek() == Some('<') {
                self.pos += 1;
                let strip_tabs = self.peek() == Some('-');
                if strip_tabs {
                    self.pos += 1;
                }
                return self.heredoc_start(fd.unwrap_or(0), strip_tabs);
            }
            RedirOp::Read
        } else {
            match self.peek() {
                Some('>') => {
                    self.pos += 1;
                    RedirOp::Append
                }
                Some('|') => {
                    self.pos += 1;
                    RedirOp::Write
                }
                Some('&') => {
                    self.pos += 1;
                    let start = self.pos;
                    while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.pos += 1;
                    }
                    let digits: String = self.chars[start..self.pos].iter().collect();
                    let target = digits
                        .parse()
                        .map_err(|_| "`>&' needs a file descriptor number".to_string())?;
                    RedirOp::Dup(target)
                }
                _ => RedirOp::Write,
            }
        };
        let default_fd = if c == '<' { 0 } else { 1 };
        self.toks.push(Tok::Redir {
            fd: fd.unwrap_or(default_fd),
            op,
        });
        Ok(())
    }

    fn heredoc_start(&mut self, fd: u32, strip_tabs: bool) -> Result<(), String> {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
        let mut delim = String::new();
        let mut expand = true;
        while let Some(c) = self.peek() {
            match c {
                '\'' | '"' => {
                    expand = false;
                    self.pos += 1;
                    while let Some(q) = self.peek() {
                        self.pos += 1;
                        if q == c {
                            break;
                        }
                        delim.push(q);
                    }
                }
                '\\' => {
                    expand = false;
                    self.pos += 1;
                    if let Some(next) = self.peek() {
                        self.pos += 1;
                        delim.push(next);
                    }
                }
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => break,
                _ => {
                    self.pos += 1;
                    delim.push(c);
                }
            }
        }
        if delim.is_empty() {
            return Err("here-document needs a delimiter".into());
        }
        self.heredocs.push(HereDocPending {
            tok: self.toks.len(),
            delim,
            expand,
            strip_tabs,
        });
        self.toks.push(Tok::Redir {
            fd,
            op: RedirOp::HereDoc(Word::default()),
        });
        Ok(())
    }

    /// Reads the bodies of the here-documents started on the line just ended.
    fn read_heredoc_bodies(&mut self) -> Result<(), String> {
        for doc in std::mem::take(&mut self.heredocs) {
            let mut body = String::new();
            loop {
                if self.peek().is_none() {
                    break; // End of script: the document ends too (as in most shells).
                }
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
                let mut line: String = self.chars[start..self.pos].iter().collect();
                if self.peek() == Some('\n') {
                    self.pos += 1;
                }
                if doc.strip_tabs {
                    line = line.trim_start_matches('\t').to_string();
                }
                if line == doc.delim {
                    break;
                }
                body.push_str(&line);
                body.push('\n');
            }
            let word = if doc.expand {
                Word(heredoc_parts(&body)?)
            } else {
                Word(vec![Part::Lit {
                    text: body,
                    quoted: true,
                }])
            };
            if let Some(Tok::Redir { op, .. }) = self.toks.get_mut(doc.tok) {
                *op = RedirOp::HereDoc(word);
            }
        }
        Ok(())
    }

    /// The inside of `"..."` (the opening quote already consumed).
    fn double_quoted(&mut self, parts: &mut Vec<Part>) -> Result<(), String> {
        // An empty "" still makes a (quoted, empty) field.
        push_lit(parts, "", true);
        loop {
            match self.peek() {
                None => return Err("unterminated double quote".into()),
                Some('"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ ('$' | '`' | '"' | '\\')) => {
                            self.pos += 1;
                            push_lit(parts, &c.to_string(), true);
                        }
                        Some('\n') => self.pos += 1,
                        _ => push_lit(parts, "\\", true),
                    }
                }
                Some('$') => match self.dollar(true)? {
                    Some(part) => parts.push(part),
                    None => push_lit(parts, "$", true),
                },
                Some('`') => parts.push(self.backquote(true)?),
                Some(c) => {
                    self.pos += 1;
                    push_lit(parts, &c.to_string(), true);
                }
            }
        }
    }

    /// A `$` expansion at the cursor; `None` (cursor past the `$`) for a literal `$`.
    fn dollar(&mut self, quoted: bool) -> Result<Option<Part>, String> {
        self.pos += 1;
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| !matches!(c, '}' | ':' | '-')) {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                if !(is_name(&name)
                    || name.chars().all(|c| c.is_ascii_digit()) && !name.is_empty()
                    || matches!(name.as_str(), "?" | "#" | "@" | "*" | "$" | "!"))
                {
                    return Err(format!("bad substitution: ${{{name}...}}"));
                }
                let default = match self.peek() {
                    Some('}') => None,
                    Some(':') if self.peek_at(1) == Some('-') => {
                        self.pos += 2;
                        Some((true, self.until_brace(quoted)?))
                    }
                    Some('-') => {
                        self.pos += 1;
                        Some((false, self.until_brace(quoted)?))
                    }
                    _ => return Err(format!("unsupported substitution: ${{{name}...}}")),
                };
                if self.peek() != Some('}') {
                    return Err("missing `}'".into());
                }
                self.pos += 1;
                Ok(Some(Part::Param {
                    name,
                    quoted,
                    default,
                }))
            }
            Some('(') => {
                if self.peek_at(1) == Some('(') {
                    return self.arithmetic(quoted).map(Some);
                }
                self.pos += 1;
                let start = self.pos;
                let mut depth = 1;
                while depth > 0 {
                    match self.peek() {
                        None => return Err("unterminated `$('".into()),
                        Some('(') => depth += 1,
                        Some(')') => depth -= 1,
                        Some('\\') => self.pos += 1,
                        Some(q @ ('\'' | '"')) => {
                            self.pos += 1;
                            while self.peek().is_some_and(|c| c != q) {
                                if q == '"' && self.peek() == Some('\\') {
                                    self.pos += 1;
                                }
                                self.pos += 1;
                            }
                        }
                        Some(_) => {}
                    }
                    self.pos += 1;
                }
                let script: String = self.chars[start..self.pos - 1].iter().collect();
                Ok(Some(Part::Subst { script, quoted }))
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric())
                {
                    self.pos += 1;
                }
                let name = self.chars[start..self.pos].iter().collect();
                Ok(Some(Part::Param {
                    name,
                    quoted,
                    default: None,
                }))
            }
            Some(c) if c.is_ascii_digit() || matches!(c, '?' | '#' | '@' | '*' | '$' | '!') => {
                self.pos += 1;
                Ok(Some(Part::Param {
                    name: c.to_string(),
                    quoted,
                    default: None,
                }))
            }
            _ => Ok(None),
        }
    }

    /// `$((expression))` with the cursor on the first `(`.
    fn arithmetic(&mut self, quoted: bool) -> Result<Part, String> {
        self.pos += 2;
        let start = self.pos;
        let mut depth = 0;
        loop {
            match self.peek() {
                None => return Err("unterminated `$(('".into()),
                Some('(') => depth += 1,
                Some(')') if depth > 0 => depth -= 1,
                Some(')') if self.peek_at(1) == Some(')') => {
                    let expr = self.chars[start..self.pos].iter().collect();
                    self.pos += 2;
                    return Ok(Part::Arith { expr, quoted });
                }
                Some(')') => return Err("`$((' must end with `))'".into()),
                Some(_) => {}
            }
            self.pos += 1;
        }
    }

    /// The default word of `${NAME:-word}`, up to (not including) the closing brace.
    fn until_brace(&mut self, quoted: bool) -> Result<Vec<Part>, String> {
        let mut parts = Vec::new();
        loop {
            match self.peek() {
                None => return Err("missing `}'".into()),
                Some('}') => return Ok(parts),
                Some('\'') if !quoted => {
                    self.pos += 1;
                    let start = self.pos;
                    while self.peek().is_some_and(|c| c != '\'') {
                        self.pos += 1;
                    }
                    let text: String = self.chars[start..self.pos].iter().collect();
                    self.pos += 1;
                    push_lit(&mut parts, &text, true);
                }
                Some('"') => {
                    self.pos += 1;
                    self.double_quoted(&mut parts)?;
                }
                Some('\\') => {
                    self.pos += 1;
                    if let Some(c) = self.peek() {
                        self.pos += 1;
                        push_lit(&mut parts, &c.to_string(), true);
                    }
                }
                Some('$') => match self.dollar(quoted)? {
                    Some(part) => parts.push(part),
                    None => push_lit(&mut parts, "$", quoted),
                },
                Some(c) => {
                    self.pos += 1;
                    push_lit(&mut parts, &c.to_string(), quoted);
                }
            }
        }
    }

    /// `` `script` `` at the cursor.
    fn backquote(&mut self, quoted: bool) -> Result<Part, String> {
        self.pos += 1;
        let mut script = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated backquote".into()),
                Some('`') => {
                    self.pos += 1;
                    return Ok(Part::Subst { script, quoted });
                }
                Some('\\') if matches!(self.peek_at(1), Some('`' | '\\' | '$')) => {
                    script.push(self.chars[self.pos + 1]);
                    self.pos += 2;
                }
                Some(c) => {
                    script.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

/// The parts of an unquoted here-document body: `$` expansions and backslash escapes of
/// `$`, `` ` `` and `\` are active; everything else is literal.
pub(super) fn heredoc_parts(body: &str) -> Result<Vec<Part>, String> {
    let mut lx = Lexer::new(body);
    let mut parts = Vec::new();
    while let Some(c) = lx.peek() {
        match c {
            '\\' if matches!(lx.peek_at(1), Some('$' | '`' | '\\')) => {
                push_lit(&mut parts, &lx.chars[lx.pos + 1].to_string(), true);
                lx.pos += 2;
            }
            '\\' if lx.peek_at(1) == Some('\n') => lx.pos += 2,
            '$' => match lx.dollar(true)? {
                Some(part) => parts.push(part),
                None => push_lit(&mut parts, "$", true),
            },
            '`' => parts.push(lx.backquote(true)?),
            _ => {
                push_lit(&mut parts, &c.to_string(), true);
                lx.pos += 1;
            }
        }
    }
    Ok(parts)
}

fn tok_text(tok: Option<&Tok>) -> String {
    match tok {
        None => "end of file".into(),
        Some(Tok::Newline) => "newline".into(),
        Some(Tok::Semi) => ";".into(),
        Some(Tok::And) => "&&".into(),
        Some(Tok::Or) => "||".into(),
        Some(Tok::Pipe) => "|".into(),
        Some(Tok::Redir { .. }) => "redirection".into(),
        Some(Tok::Word(word)) => match word.0.as_slice() {
            [Part::Lit { text, .. }] => text.clone(),
            _ => "word".into(),
        },
    }
}

/// Reserved words, recognized where a command starts.
const KEYWORDS: &[&str] = &[
    "if", "then", "elif", "else", "fi", "while", "until", "do", "done", "for", "{", "}",
];

/// The reserved word that `tok` is, if it is an unquoted one.
fn keyword(tok: Option<&Tok>) -> Option<&'static str> {
    let Some(Tok::Word(word)) = tok else {
        return None;
    };
    match word.0.as_slice() {
        [
            Part::Lit {
                text,
                quoted: false,
            },
        ] => KEYWORDS.iter().copied().find(|k| k == text),
        _ => None,
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Tok::Newline) {
            self.pos += 1;
        }
    }

    fn unexpected(&self) -> String {
        format!(
            "syntax error near unexpected token `{}'",
            tok_text(self.peek())
        )
    }

    fn script(&mut self) -> Result<Script, String> {
        let script = self.list(&[])?;
        match self.peek() {
            None => Ok(script),
            Some(_) => Err(self.unexpected()),
        }
    }

    /// And-or lists up to the end or one of the reserved words `ends`.
    fn list(&mut self, ends: &[&str]) -> Result<Script, String> {
        let mut script = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek() {
                None => return Ok(script),
                Some(Tok::Semi) => return Err(self.unexpected()),
                tok if keyword(tok).is_some_and(|k| ends.contains(&k)) => return Ok(script),
                Some(_) => {}
            }
            script.push(self.and_or()?);
            match self.peek() {
                None | Some(Tok::Newline) => {}
                Some(Tok::Semi) => self.pos += 1,
                tok if keyword(tok).is_some_and(|k| ends.contains(&k)) => {}
                Some(_) => return Err(self.unexpected()),
            }
        }
    }

    /// A non-empty list ended by one of `ends` (left unconsumed).
    fn body(&mut self, ends: &[&str]) -> Result<Script, String> {
        let script = self.list(ends)?;
        if script.is_empty() || keyword(self.peek()).is_none() {
            return Err(self.unexpected());
        }
        Ok(script)
    }

    fn expect(&mut self, word: &str) -> Result<(), String> {
        if keyword(self.peek()) == Some(word) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("{} (expected `{word}')", self.unexpected()))
        }
    }

    fn and_or(&mut self) -> Result<AndOr, String> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let connector = match self.peek() {
                Some(Tok::And) => Connector::And,
                Some(Tok::Or) => Connector::Or,
                _ => return Ok(AndOr { first, rest }),
            };
            self.pos += 1;
            self.skip_newlines();
            rest.push((connector, self.pipeline()?));
        }
    }

    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let bang = Word(vec![Part::Lit {
            text: "!".into(),
            quoted: false,
        }]);
        let negate = self.peek() == Some(&Tok::Word(bang));
        if negate {
            self.pos += 1;
        }
        let mut commands = vec![self.command()?];
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            self.skip_newlines();
            commands.push(self.command()?);
        }
        Ok(Pipeline { negate, commands })
    }

    fn command(&mut self) -> Result<Command, String> {
        let compound = match keyword(self.peek()) {
            None => return self.simple_command().map(Command::Simple),
            Some("if") => self.if_clause()?,
            Some(word @ ("while" | "until")) => {
                self.pos += 1;
                let condition = self.body(&["do"])?;
                self.expect("do")?;
                let body = self.body(&["done"])?;
                self.expect("done")?;
                Compound::Loop {
                    until: word == "until",
                    condition,
                    body,
                }
            }
            Some("for") => self.for_clause()?,
            Some("{") => {
                self.pos += 1;
                let body = self.body(&["}"])?;
                self.expect("}")?;
                Compound::Group(body)
            }
            Some(_) => return Err(self.unexpected()),
        };
        let mut redirs = Vec::new();
        while let Some(Tok::Redir { fd, op }) = self.peek().cloned() {
            self.pos += 1;
            redirs.push(self.redirection(fd, op)?);
        }
        Ok(Command::Compound(compound, redirs))
    }

    fn if_clause(&mut self) -> Result<Compound, String> {
        let mut branches = Vec::new();
        let mut otherwise = None;
        self.pos += 1;
        loop {
            let condition = self.body(&["then"])?;
            self.expect("then")?;
            let body = self.body(&["elif", "else", "fi"])?;
            branches.push((condition, body));
            match keyword(self.peek()) {
                Some("elif") => self.pos += 1,
                Some("else") => {
                    self.pos += 1;
                    otherwise = Some(self.body(&["fi"])?);
                    self.expect("fi")?;
                    break;
                }
                _ => {
                    self.expect("fi")?;
                    break;
                }
            }
        }
        Ok(Compound::If {
            branches,
            otherwise,
        })
    }

    fn for_clause(&mut self) -> Result<Compound, String> {
        self.pos += 1;
        let name = match self.peek() {
            Some(Tok::Word(Word(parts))) => match parts.as_slice() {
                [
                    Part::Lit {
                        text,
                        quoted: false,
                    },
                ] if is_name(text) => text.clone(),
                _ => return Err(format!("{}: bad for loop variable", self.unexpected())),
            },
            _ => return Err(self.unexpected()),
        };
        self.pos += 1;
        self.skip_newlines();
        let in_word = Word(vec![Part::Lit {
            text: "in".into(),
            quoted: false,
        }]);
        let mut words = None;
        if self.peek() == Some(&Tok::Word(in_word)) {
            self.pos += 1;
            let mut list = Vec::new();
            while let Some(Tok::Word(word)) = self.peek().cloned() {
                self.pos += 1;
                list.push(word);
            }
            words = Some(list);
        }
        if self.peek() == Some(&Tok::Semi) {
            self.pos += 1;
        }
        self.skip_newlines();
        self.expect("do")?;
        let body = self.body(&["done"])?;
        self.expect("done")?;
        Ok(Compound::For { name, words, body })
    }

    /// The target of a redirection whose operator was just consumed.
    fn redirection(&mut self, fd: u32, op: RedirOp) -> Result<Redir, String> {
        let target = match op {
            RedirOp::Dup(_) | RedirOp::HereDoc(_) => Word::default(),
            _ => match self.peek().cloned() {
                Some(Tok::Word(word)) => {
                    self.pos += 1;
                    word
                }
                _ => return Err(self.unexpected()),
            },
        };
        Ok(Redir { fd, op, target })
    }

    fn simple_command(&mut self) -> Result<SimpleCommand, String> {
        let mut cmd = SimpleCommand::default();
        loop {
            match self.peek().cloned() {
                Some(Tok::Word(word)) => {
                    self.pos += 1;
                    match assignment(&word) {
                        Some(assign) if cmd.words.is_empty() => cmd.assigns.push(assign),
                        _ => cmd.words.push(word),
                    }
                }
                Some(Tok::Redir { fd, op }) => {
                    self.pos += 1;
                    cmd.redirs.push(self.redirection(fd, op)?);
                }
                _ => break,
            }
        }
        if cmd.words.is_empty() && cmd.assigns.is_empty() && cmd.redirs.is_empty() {
            return Err(self.unexpected());
        }
        Ok(cmd)
    }
}

/// `NAME=value` as (name, value word), if `word` is an assignment.
fn assignment(word: &Word) -> Option<(String, Word)> {
    let Some(Part::Lit {
        text,
        quoted: false,
    }) = word.0.first()
    else {
        return None;
    };
    let (name, value) = text.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let mut parts = Vec::new();
    if !value.is_empty() {
        parts.push(Part::Lit {
            text: value.to_string(),
            quoted: false,
        });
    }
    parts.extend(word.0[1..].iter().cloned());
    Some((name.to_string(), Word(parts)))
}

/// Parses a script.
pub fn parse(src: &str) -> Result<Script, String> {
    let toks = Lexer::new(src).tokenize()?;
    Parser { toks, pos: 0 }.script()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(text: &str, quoted: bool) -> Part {
        Part::Lit {
            text: text.into(),
            quoted,
        }
    }

    fn words(cmd: &SimpleCommand) -> Vec<Word> {
        cmd.words.clone()
    }

    fn only_command(src: &str) -> SimpleCommand {
        let script = parse(src).unwrap();
        assert_eq!(script.len(), 1, "{script:?}");
        assert!(script[0].rest.is_empty());
        assert_eq!(script[0].first.commands.len(), 1);
        match &script[0].first.commands[0] {
            Command::Simple(simple) => simple.clone(),
            other => panic!("not a simple command: {other:?}"),
        }
    }

    #[test]
    fn words_quotes_and_escapes() {
        let cmd = only_command(r#"echo 'a b' "c $X d" e\ f"#);
        assert_eq!(
            words(&cmd),
            vec![
                Word(vec![lit("echo", false)]),
                Word(vec![lit("a b", true)]),
                Word(vec![
                    lit("c ", true),
                    Part::Param {
                        name: "X".into(),
                        quoted: true,
                        default: None
                    },
                    lit(" d", true),
                ]),
                Word(vec![lit("e", false), lit(" ", true), lit("f", false)]),
            ]
        );
    }

    #[test]
    fn lists_pipelines_and_connectors() {
        let script = parse("a; b && c || d\n! e | f\n\n# comment\ng # trailing").unwrap();
        assert_eq!(script.len(), 4);
        assert_eq!(script[1].rest.len(), 2);
        assert_eq!(script[1].rest[0].0, Connector::And);
        assert_eq!(script[1].rest[1].0, Connector::Or);
        assert!(script[2].first.negate);
        assert_eq!(script[2].first.commands.len(), 2);
        assert!(matches!(&script[3].first.commands[0], Command::Simple(c) if c.words.len() == 1));
    }

    #[test]
    fn assignments_and_redirections() {
        let cmd = only_command("A=1 B=\"x y\" cmd arg >out 2>&1 <in 2>>log C=notassign");
        assert_eq!(cmd.assigns.len(), 2);
        assert_eq!(cmd.assigns[0].0, "A");
        assert_eq!(cmd.words.len(), 3); // cmd arg C=notassign
        let ops: Vec<(u32, RedirOp)> = cmd.redirs.iter().map(|r| (r.fd, r.op.clone())).collect();
        assert_eq!(
            ops,
            vec![
                (1, RedirOp::Write),
                (2, RedirOp::Dup(1)),
                (0, RedirOp::Read),
                (2, RedirOp::Append),
            ]
        );
        assert_eq!(cmd.redirs[0].target, Word(vec![lit("out", false)]));
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "echo 'open",
            "echo \"open",
            "a &&",
            "| a",
            "a ; ; b",
            "a &",
            "(a)",
            "echo >",
            "echo ${",
            "echo $((1+2)",
            "if true; then echo; fi fi",
            "if true; then fi",
            "while true; do echo x",
            "for 1 in a; do :; done",
            "{ echo a }",
            "then",
            "echo $(unclosed",
            "a ;; b",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
