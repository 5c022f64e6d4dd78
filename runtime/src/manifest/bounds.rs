//! Bounds on a manifest's text, checked before the YAML parser sees it.
//!
//! The parser (serde_yaml_ng, over a port of libyaml) spends time quadratic in
//! the nesting depth: 50,000 nested `[` took 50 s, and 200,000 unclosed ones
//! ran for more than 30 s. So the text is first measured in one linear pass
//! over its bytes, which counts how deep it nests and refuses it, naming the
//! line, past [`MAX_NESTING_DEPTH`].
//!
//! The pass knows just enough YAML to count what the parser will nest: flow
//! collections (`[`, `{`), block collections by their indentation, compact
//! sequences (`- - x`); it skips comments, quoted scalars and block scalars
//! (`|`, `>`). Where it cannot tell what the parser will do, it counts: a
//! manifest is refused for nesting too deep rather than let through. So the
//! brackets of a quoted scalar that goes on past its line are counted (and
//! never forgotten): where the quote follows plain text on the line before,
//! as in `a: b\n  'c`, the parser reads it as plain text, ends it at the next
//! line less indented, and nests what comes after.

/// The most bytes a manifest may hold: 4 MiB. The API server refuses a
/// request body over 3 MiB (and etcd an object over 1.5 MiB), so any Pod
/// that `kubectl` can send fits, several to a file, while a runaway file is
/// refused before it is read whole.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// The deepest a manifest may nest: 64 levels, each block mapping, sequence
/// entry and flow collection one level (`spec.containers[0].resources.limits.memory`
/// is 6). Real Pod YAML nests fewer than 20: a Pod read back from the API
/// server with `managedFields` and affinity terms nests 11. serde_yaml_ng's
/// own recursion limit is 128, so its error never shows.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Where a text first nests deeper than allowed: its line, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooDeep {
    pub line: usize,
}

/// Checks that `text` nests at most `limit` levels deep, in one pass.
pub(crate) fn check_depth(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut scan = Scan {
        limit,
        block: Vec::new(),
        flow: 0,
        quoted: 0,
        quote: None,
        block_scalar: None,
    };
    for (index, line) in lines(text.as_bytes()).enumerate() {
        scan.line(line)
            .map_err(|Deep| TooDeep { line: index + 1 })?;
    }
    Ok(())
}

/// The lines of `text` as the parser breaks them: at `\n`, `\r\n`, `\r`,
/// and U+0085, U+2028 and U+2029; a byte order mark that starts a line is
/// skipped, as the parser skips it.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut at = 0;
        let (line, next) = loop {
            match text[at..] {
                [] => break (text, None),
                [b'\n', ..] => break (&text[..at], Some(at + 1)),
                [b'\r', b'\n', ..] => break (&text[..at], Some(at + 2)),
                [b'\r', ..] => break (&text[..at], Some(at + 1)),
                [0xc2, 0x85, ..] => break (&text[..at], Some(at + 2)),
                [0xe2, 0x80, 0xa8 | 0xa9, ..] => break (&text[..at], Some(at + 3)),
                _ => at += 1,
            }
        };
        rest = next.map(|next| &text[next..]);
        Some(line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line))
    })
}

struct Deep;

/// A quoted scalar that goes on past its line.
#[derive(Clone, Copy)]
enum Quote {
    Single,
    Double,
}

/// A block scalar (`|`, `>`): its lines are text, whatever they hold.
#[derive(Clone, Copy)]
struct BlockScalar {
    /// Lines indented less than this end the scalar.
    min_indent: usize,
    /// The indentation of its content, once its first line is seen.
    content_indent: Option<usize>,
    /// The most leading spaces of the empty lines before the first one.
    leading_blank: usize,
}

struct Scan {
    limit: usize,
    /// The open block nodes, each by its key: twice its column, plus one for
    /// a sequence entry (`-`, `?`), which nests in a mapping at its column.
    block: Vec<usize>,
    /// Open flow collections.
    flow: usize,
    /// The brackets left open in quoted scalars that went on past their line.
    quoted: usize,
    quote: Option<Quote>,
    block_scalar: Option<BlockScalar>,
}

impl Scan {
    fn depth(&self) -> usize {
        self.block.len() + self.flow + self.quoted
    }

    /// Counts the brackets of a quoted scalar's text that goes on past its
    /// line, as if they nested (see the module's doc).
    fn quoted_text(&mut self, text: &[u8]) -> Result<(), Deep> {
        for byte in text {
            match byte {
                b'[' | b'{' => {
                    self.quoted += 1;
                    self.check()?;
                }
                b']' | b'}' => self.quoted = self.quoted.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), Deep> {
        if self.depth() > self.limit {
            Err(Deep)
        } else {
            Ok(())
        }
    }

    fn line(&mut self, line: &[u8]) -> Result<(), Deep> {
        let indent = line.iter().take_while(|b| **b == b' ').count();
        let blank = line[indent..].iter().all(|b| matches!(b, b' ' | b'\t'));
        if is_document_marker(line) {
            // A new document: whatever was open before is closed (or, for a
            // quote, an error); only open flow collections are still
            // counted, which never counts less than the parser nests.
            self.block.clear();
            self.quote = None;
            self.block_scalar = None;
            return self.rest(line, 3, true, None);
        }
        if let Some(scalar) = &mut self.block_scalar {
            if blank {
                if scalar.content_indent.is_none() {
                    scalar.leading_blank = scalar.leading_blank.max(indent);
                }
                return Ok(());
            }
            // The parser takes the first line's indentation (at least that
            // of the empty lines before it) for the whole scalar: a line
            // indented less ends it.
            let content = *scalar
                .content_indent
                .get_or_insert(indent.max(scalar.leading_blank));
            if indent >= content.max(scalar.min_indent) {
                return Ok(());
            }
            self.block_scalar = None;
        }
        if let Some(quote) = self.quote {
            return match close_quote(line, 0, quote) {
                Some(end) => {
                    self.quote = None;
                    self.quoted_text(&line[..end])?;
                    self.rest(line, end, false, None)
                }
                None => self.quoted_text(line),
            };
        }
        if self.flow > 0 {
            return self.rest(line, 0, true, None);
        }
        if blank || line[indent] == b'#' {
            return Ok(());
        }
        let node = self.block_nodes(line, indent)?;
        self.rest(line, node, true, Some(node))
    }

    /// Opens the block nodes that start `line` (a mapping key or scalar, or
    /// one or more `- ` entries) and returns where its content starts.
    fn block_nodes(&mut self, line: &[u8], indent: usize) -> Result<usize, Deep> {
        let mut at = indent;
        let mut first = true;
        loop {
            let entry = matches!(line[at], b'-' | b'?' | b':') && separated(line, at + 1);
            let key = 2 * at + usize::from(entry);
            if first {
                while self.block.last().is_some_and(|open| *open >= key) {
                    self.block.pop();
                }
                first = false;
            }
            self.block.push(key);
            self.check()?;
            if !entry {
                return Ok(at);
            }
            at += 1;
            while at < line.len() && line[at] == b' ' {
                at += 1;
            }
            if at >= line.len() || line[at] == b'#' {
                return Ok(at);
            }
        }
    }

    /// Scans `line` from `at` on for flow collections, quotes, comments and
    /// block scalar headers. `node_start`: whether a node may start at `at`;
    /// `block_node`: the column of the block node opened for this line.
    fn rest(
        &mut self,
        line: &[u8],
        mut at: usize,
        mut node_start: bool,
        block_node: Option<usize>,
    ) -> Result<(), Deep> {
        // A quote opens a quoted scalar only where a node may start, and in
        // block context, so do `[`, `{`, `|` and `>`.
        while at < line.len() {
            let byte = line[at];
            match byte {
                b' ' | b'\t' => {}
                b'#' if at == 0 || matches!(line[at - 1], b' ' | b'\t') => return Ok(()),
                b'\'' | b'"' if node_start => {
                    let quote = if byte == b'\'' {
                        Quote::Single
                    } else {
                        Quote::Double
                    };
                    match close_quote(line, at + 1, quote) {
                        Some(end) => {
                            at = end;
                            node_start = false;
                            continue;
                        }
                        None => {
                            self.quote = Some(quote);
                            return self.quoted_text(&line[at + 1..]);
                        }
                    }
                }
                b'[' | b'{' if node_start || self.flow > 0 => {
                    self.flow += 1;
                    self.check()?;
                    node_start = true;
                }
                b']' | b'}' => {
                    self.flow = self.flow.saturating_sub(1);
                    node_start = false;
                }
                b',' if self.flow > 0 => node_start = true,
                b':' if separated(line, at + 1)
                    || self.flow > 0 && line.get(at + 1).is_some_and(|b| b",[]{}".contains(b)) =>
                {
                    node_start = true;
                }
                b'|' | b'>' if node_start && self.flow == 0 => {
                    if block_node == Some(at) {
                        // The scalar is the line's node, not its parent.
                        self.block.pop();
                    }
                    self.block_scalar(line, at);
                    return Ok(());
                }
                // An anchor, alias or tag comes before the node it names.
                b'&' | b'*' | b'!' if node_start => {
                    while at < line.len() && !matches!(line[at], b' ' | b'\t') {
                        at += 1;
                    }
                    continue;
                }
                _ => node_start = false,
            }
            at += 1;
        }
        Ok(())
    }

    /// Starts the block scalar whose header (`|`, `>-`, `|2`) is at `at`.
    fn block_scalar(&mut self, line: &[u8], at: usize) {
        // Content is indented more than the node that holds the scalar.
        let parent = self.block.last().map_or(0, |key| key / 2 + 1);
        // `|2`: two more than the parent's indentation.
        let explicit = line[at + 1..]
            .iter()
            .take_while(|b| !matches!(b, b' ' | b'\t' | b'#'))
            .find(|b| b.is_ascii_digit())
            .map(|digit| usize::from(digit - b'0'));
        // With an indentation indicator the content indentation is known; a
        // larger one than the parser's would only end the scalar sooner, and
        // count more.
        self.block_scalar = Some(BlockScalar {
            min_indent: parent,
            content_indent: explicit.map(|n| (parent + n).saturating_sub(1).max(parent)),
            leading_blank: 0,
        });
    }
}

/// Whether the byte at `at` ends a token: a space, a tab or the line's end.
fn separated(line: &[u8], at: usize) -> bool {
    line.get(at).is_none_or(|b| matches!(b, b' ' | b'\t'))
}

/// `---` or `...` alone or followed by a space: a document starts or ends.
fn is_document_marker(line: &[u8]) -> bool {
    (line.starts_with(b"---") || line.starts_with(b"...")) && separated(line, 3)
}

/// Where the quoted scalar that goes on at `at` ends on `line` (just past its
/// closing quote), or `None` if it goes on past the line.
fn close_quote(line: &[u8], mut at: usize, quote: Quote) -> Option<usize> {
    while at < line.len() {
        match (quote, line[at]) {
            (Quote::Double, b'\\') => at += 2,
            (Quote::Double, b'"') => return Some(at + 1),
            (Quote::Single, b'\'') if line.get(at + 1) == Some(&b'\'') => at += 2,
            (Quote::Single, b'\'') => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth `check_depth` finds in `text`: the smallest limit it passes.
    fn depth(text: &str) -> usize {
        (0..=200)
            .find(|limit| check_depth(text, *limit).is_ok())
            .expect("deeper than 200")
    }

    #[track_caller]
    fn check(text: &str, expected: usize) {
        assert_eq!(depth(text), expected, "{text:?}");
    }

    #[test]
    fn flow_collections() {
        // A line's first node is a level, and each flow collection another.
        check("[]", 2);
        check("[[[]]]", 4);
        check("{a: [1, {b: 2}]}", 4);
        check("a: [b, c]", 2);
        check("[[[", 4);
        check("]]]", 1);
    }

    #[test]
    fn block_collections() {
        check("a: 1\nb: 2\n", 1);
        check("a:\n  b:\n    c: 1\n", 3);
        check("a:\n  b: 1\nc:\n  d: 2\n", 2);
        check("- a\n- b\n", 2);
        check("- - - x\n", 4);
        check("a:\n- b:\n  - c\n", 5);
        check("---\na:\n  b: 1\n---\nc: 1\n", 2);
        check("a:\n\n  # a comment\n  b: 1\n", 2);
    }

    #[test]
    fn a_pod() {
        check(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations: {wpod.dev/egress: '10.0.0.0/8'}\nspec:\n  containers:\n  - name: app\n    image: app.wasm\n    args: [\"--port\", \"80\"]\n    resources:\n      limits:\n        memory: 64Mi\n",
            6,
        );
    }

    /// A Pod as the API server returns it, with `managedFields` and affinity
    /// terms: real Pods nest far less than the limit.
    #[test]
    fn a_pod_from_the_api_server() {
        check(POD_FROM_THE_API_SERVER, 11);
    }

    const POD_FROM_THE_API_SERVER: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-7d4b9c\n  namespace: default\n  labels: {app: web}\n  managedFields:\n  - apiVersion: v1\n    fieldsType: FieldsV1\n    fieldsV1:\n      f:spec:\n        f:affinity:\n          .: {}\n          f:nodeAffinity:\n            .: {}\n            f:requiredDuringSchedulingIgnoredDuringExecution: {}\n        f:containers:\n          k:{\"name\":\"app\"}:\n            .: {}\n            f:resources:\n              .: {}\n              f:limits:\n                .: {}\n                f:memory: {}\n    manager: kubectl-client-side-apply\n    operation: Update\nspec:\n  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - key: kubernetes.io/arch\n            operator: In\n            values:\n            - amd64\n  containers:\n  - name: app\n    image: app.wasm\n    env:\n    - name: A\n      value: b\n    resources:\n      limits: {memory: 64Mi}\n";

    #[test]
    fn a_pod_in_json() {
        check(
            "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\",\n  \"metadata\": {\"name\": \"web\"},\n  \"spec\": {\n    \"containers\": [\n      {\"name\": \"app\", \"image\": \"app.wasm\", \"args\": [\"[\", \"{\"],\n       \"resources\": {\"limits\": {\"memory\": \"64Mi\"}}}\n    ]\n  }\n}\n",
            7,
        );
    }

    #[test]
    fn brackets_in_text_do_not_count() {
        check("a: '[[[['\n", 1);
        check("a: \"[[[[\\\"[[\"\n", 1);
        check("a: 'it''s [[['\n", 1);
        check("a: b[[[[\n", 1);
        check("a: b # [[[[\n", 1);
        check("# [[[[\na: 1\n", 1);
        check("a: \"[x]\n  [y]\"\nb: 1\n", 2);
        check("a: |\n  [[[[\n  {{{{\nb: [1]\n", 2);
        check("a: >-\n\n    [[[[\n    - - - -\nb: 1\n", 1);
        check("- |2\n   [[[[\n- x\n", 2);
    }

    #[test]
    fn what_ends_a_block_scalar_counts() {
        check("a: |\n    text\n  [[[[\n", 6);
        check("a: |\nb: [[\n", 3);
    }

    #[test]
    fn brackets_in_a_quote_past_its_line_count() {
        // The parser reads `b 'c` as plain text and nests at `d`.
        check(&format!("a: b\n  'c\nd: {}\n", "[".repeat(10)), 12);
        check("a: \"[[[\n  [[[[\"\nb: 1\n", 8);
        assert_eq!(
            check_depth(&format!("a: b\n  'c\nd: {}\n", "[".repeat(200_000)), 64),
            Err(TooDeep { line: 3 })
        );
    }

    #[test]
    fn a_quote_inside_plain_text_opens_nothing() {
        check("a: it's [\nb: [[\n", 3);
        check("[a'b, [c]]", 3);
    }

    #[test]
    fn lines_break_as_the_parser_breaks_them() {
        // Each of these once hid 50,000 `[` from the count (0.5 s to parse,
        // release build), and would have hidden any nesting.
        check("\u{feff}[[[[", 5);
        for text in [
            "a:\r  [[[[",
            "a:\r\n  [[[[",
            "a:\u{85}  [[[[",
            "a:\u{2028}  [[[[",
            "a:\u{2029}  [[[[",
        ] {
            check(text, 6);
        }
        let broken: Vec<&[u8]> =
            lines(b"a\nb\r\nc\rd\xc2\x85e\xe2\x80\xa8f\xe2\x80\xa9g").collect();
        assert_eq!(broken, [&b"a"[..], b"b", b"c", b"d", b"e", b"f", b"g"]);
        assert_eq!(lines(b"").count(), 1);
        assert_eq!(lines(b"a\n").count(), 2);
    }

    #[test]
    fn refused_at_the_line_that_goes_too_deep() {
        assert_eq!(
            check_depth("a: 1\nb: [[\n  [[\n", 3),
            Err(TooDeep { line: 3 })
        );
        assert_eq!(
            check_depth(&"[".repeat(200_000), 64),
            Err(TooDeep { line: 1 })
        );
        assert_eq!(
            check_depth(&format!("{}x\n", "- ".repeat(50_000)), 64),
            Err(TooDeep { line: 1 })
        );
    }
}
