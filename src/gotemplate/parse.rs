//! Go `text/template` source to a tree: delimiters `{{ }}` with the `-`
//! trim markers, comments, pipelines, variables, and the control actions
//! `if`/`else if`/`with`/`range`/`break`/`continue`.

use super::TemplateError;
use super::funcs;

#[derive(Debug)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Break,
    Continue,
}

#[derive(Debug)]
pub struct Branch {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub otherwise: Vec<Node>,
}

#[derive(Debug)]
pub struct Pipe {
    /// `$x :=` (or `$i, $e :=` in a range), or `$x =` when `assign`.
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Vec<Arg>>,
}

/// One operand: a term and the fields chained onto it (`$x.A.B`,
/// `(pipe).A`; `.A.B` is the dot with the chain `A`, `B`).
#[derive(Debug)]
pub struct Arg {
    pub term: Term,
    pub chain: Vec<String>,
}

#[derive(Debug)]
pub enum Term {
    Dot,
    Var(String),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Sub(Box<Pipe>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dot,
    Field(String),
    Var(String),
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Comma,
}

/// A token and whether space came before it (`.A.B` is one operand,
/// `.A .B` two).
#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    spaced: bool,
}

/// Deepest nesting of control actions and parentheses one template may
/// have, so that parsing and running stay within a thread's stack.
const MAX_DEPTH: usize = 100;

enum Item {
    Text(String),
    Action { tokens: Vec<Token>, line: usize },
}

pub fn parse(source: &str) -> Result<Vec<Node>, TemplateError> {
    let items = lex(source)?;
    let mut parser = Parser {
        items: items.into_iter().peekable(),
        line: 1,
    };
    let (list, end) = parser.list(0)?;
    match end {
        End::Eof => Ok(list),
        End::Close => Err(parser.error("unexpected {{end}}")),
        End::Else(_) => Err(parser.error("unexpected {{else}}")),
    }
}

fn error(line: usize, message: impl std::fmt::Display) -> TemplateError {
    TemplateError(format!("line {line}: {message}"))
}

fn lex(source: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = source;
    let mut line = 1;
    let mut trim_next = false;
    loop {
        let Some(start) = rest.find("{{") else {
            let text = if trim_next { rest.trim_start() } else { rest };
            if !text.is_empty() {
                items.push(Item::Text(text.to_string()));
            }
            return Ok(items);
        };
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner = &rest[start + 2..];
        // `{{- ` trims the text before it; the `-` needs a space after it,
        // or `{{-3}}` would be a trim.
        if let Some(after) = inner.strip_prefix('-')
            && after.starts_with([' ', '\t', '\r', '\n'])
        {
            text = text.trim_end();
            inner = after;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        line += rest[..start].matches('\n').count();
        let action_line = line;
        let (tokens, consumed, trim) = if let Some(comment) = inner.trim_start().strip_prefix("/*")
        {
            let Some(close) = comment.find("*/") else {
                return Err(error(action_line, "unclosed comment"));
            };
            let after = &comment[close + 2..];
            let (trim, rest_after) = if let Some(r) = after.strip_prefix(" -}}") {
                (true, r)
            } else if let Some(r) = after.strip_prefix("}}") {
                (false, r)
            } else {
                return Err(error(action_line, "comment ends before closing delimiter"));
            };
            (None, inner.len() - rest_after.len(), trim)
        } else {
            let (tokens, consumed, trim) = tokens(inner, action_line)?;
            (Some(tokens), consumed, trim)
        };
        line += inner[..consumed].matches('\n').count();
        if let Some(tokens) = tokens {
            items.push(Item::Action {
                tokens,
                line: action_line,
            });
        }
        trim_next = trim;
        rest = &inner[consumed..];
    }
}

/// The tokens of one action, the bytes up to and including its `}}`, and
/// whether it ended with the trim marker ` -}}`.
fn tokens(s: &str, line: usize) -> Result<(Vec<Token>, usize, bool), TemplateError> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut spaced = true;
    loop {
        let Some(&c) = bytes.get(i) else {
            return Err(error(line, "unclosed action"));
        };
        if c.is_ascii_whitespace() {
            if s[i..].trim_start().starts_with("-}}") {
                let at = i + (s[i..].len() - s[i..].trim_start().len());
                return Ok((out, at + 3, true));
            }
            i += 1;
            spaced = true;
            continue;
        }
        if s[i..].starts_with("}}") {
            return Ok((out, i + 2, false));
        }
        let start = i;
        let tok = match c {
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b'(' => {
                i += 1;
                Tok::Open
            }
            b')' => {
                i += 1;
                Tok::Close
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b':' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'"' => {
                let (text, len) = quoted(&s[i..], line)?;
                i += len;
                Tok::Str(text)
            }
            b'`' => {
                let Some(end) = s[i + 1..].find('`') else {
                    return Err(error(line, "unterminated raw quoted string"));
                };
                i += end + 2;
                Tok::Str(s[start + 1..i - 1].to_string())
            }
            b'\'' => {
                let (text, len) = quoted(&s[i..], line)?;
                i += len;
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(ch), None) => Tok::Int(ch as i64),
                    _ => return Err(error(line, "malformed character constant")),
                }
            }
            b'.' if bytes.get(i + 1).is_some_and(|b| is_word(*b)) => {
                i += 1;
                let end = word_end(bytes, i);
                let name = &s[i..end];
                i = end;
                Tok::Field(name.to_string())
            }
            b'.' => {
                i += 1;
                Tok::Dot
            }
            b'$' => {
                let end = word_end(bytes, i + 1);
                i = end;
                Tok::Var(s[start..end].to_string())
            }
            b'0'..=b'9' | b'-' | b'+' => {
                let end = word_end(bytes, i + 1);
                let end = number_end(bytes, end);
                i = end;
                number(&s[start..end]).ok_or_else(|| {
                    error(line, format!("bad number syntax: {:?}", &s[start..end]))
                })?
            }
            c if is_word(c) => {
                let end = word_end(bytes, i);
                i = end;
                Tok::Ident(s[start..end].to_string())
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(error(line, format!("unexpected {ch:?} in command")));
            }
        };
        out.push(Token { tok, spaced });
        spaced = false;
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn word_end(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| is_word(*b)) {
        i += 1;
    }
    i
}

/// A float's fraction and exponent: `1.5`, `1e-3`.
fn number_end(bytes: &[u8], mut i: usize) -> usize {
    while let Some(&b) = bytes.get(i) {
        let exponent_sign =
            (b == b'-' || b == b'+') && matches!(bytes.get(i - 1), Some(b'e' | b'E'));
        if b == b'.' || exponent_sign || is_word(b) {
            i += 1;
        } else {
            break;
        }
    }
    i
}

fn number(text: &str) -> Option<Tok> {
    let clean = text.replace('_', "");
    let (negative, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let radix = |prefix: &[&str], radix| {
        prefix
            .iter()
            .find_map(|p| digits.strip_prefix(p))
            .and_then(|d| i64::from_str_radix(d, radix).ok())
    };
    let magnitude = radix(&["0x", "0X"], 16)
        .or_else(|| radix(&["0o", "0O"], 8))
        .or_else(|| radix(&["0b", "0B"], 2))
        .or_else(|| {
            // Go reads a leading 0 as octal.
            (digits.len() > 1 && digits.starts_with('0'))
                .then(|| i64::from_str_radix(&digits[1..], 8).ok())
                .flatten()
        })
        .or_else(|| digits.parse::<i64>().ok());
    if let Some(m) = magnitude {
        return Some(Tok::Int(if negative { -m } else { m }));
    }
    if digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        let f: f64 = digits.parse().ok()?;
        return Some(Tok::Float(if negative { -f } else { f }));
    }
    None
}

/// A Go interpreted string or character literal at the start of `s`: its
/// value and its length in bytes.
fn quoted(s: &str, line: usize) -> Result<(String, usize), TemplateError> {
    let quote = s.chars().next().unwrap_or('"');
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, i + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                let mut hex = |n: usize| -> Result<char, TemplateError> {
                    let digits: String = (0..n)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    u32::from_str_radix(&digits, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| error(line, "invalid escape in quoted string"))
                };
                out.push(match e {
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    'x' => hex(2)?,
                    'u' => hex(4)?,
                    'U' => hex(8)?,
                    _ => return Err(error(line, format!("unknown escape sequence \\{e}"))),
                });
            }
            c => out.push(c),
        }
    }
    Err(error(line, "unterminated quoted string"))
}

enum End {
    Eof,
    Close,
    /// `{{else}}`, or the tokens after `else` (`if …`, `with …`).
    Else(Vec<Token>),
}

struct Parser {
    items: std::iter::Peekable<std::vec::IntoIter<Item>>,
    line: usize,
}

impl Parser {
    fn error(&self, message: impl std::fmt::Display) -> TemplateError {
        error(self.line, message)
    }

    /// Nodes up to `{{end}}`, `{{else …}}` or the end of the template.
    fn list(&mut self, depth: usize) -> Result<(Vec<Node>, End), TemplateError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} actions")));
        }
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (tokens, line) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action { tokens, line } => (tokens, line),
            };
            self.line = line;
            let tokens = tokens.into_iter();
            let keyword = match tokens.as_slice().first() {
                Some(Token {
                    tok: Tok::Ident(word),
                    ..
                }) => Some(word.clone()),
                None => return Err(self.error("missing value for command")),
                _ => None,
            };
            let rest = |t: std::vec::IntoIter<Token>| t.skip(1).collect::<Vec<_>>();
            match keyword.as_deref() {
                Some("end") => {
                    if tokens.len() > 1 {
                        return Err(self.error("unexpected tokens after end"));
                    }
                    return Ok((nodes, End::Close));
                }
                Some("else") => return Ok((nodes, End::Else(rest(tokens)))),
                Some("if") => nodes.push(Node::If(self.branch(rest(tokens), "if", depth)?)),
                Some("with") => nodes.push(Node::With(self.branch(rest(tokens), "with", depth)?)),
                Some("range") => {
                    nodes.push(Node::Range(self.branch(rest(tokens), "range", depth)?))
                }
                Some(word @ ("break" | "continue")) => {
                    if tokens.len() > 1 {
                        return Err(self.error(format!("unexpected tokens after {word}")));
                    }
                    nodes.push(if word == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                Some(word @ ("define" | "template" | "block")) => {
                    return Err(self.error(format!(
                        "{{{{{word}}}}} is not supported in commit message templates"
                    )));
                }
                _ => {
                    let tokens: Vec<Token> = tokens.collect();
                    nodes.push(Node::Action(self.pipe(&tokens, true, depth)?));
                }
            }
        }
        Ok((nodes, End::Eof))
    }

    fn branch(
        &mut self,
        tokens: Vec<Token>,
        keyword: &str,
        depth: usize,
    ) -> Result<Branch, TemplateError> {
        if tokens.is_empty() {
            return Err(self.error(format!("missing value for {keyword}")));
        }
        let pipe = self.pipe(&tokens, true, depth)?;
        if keyword == "range" && pipe.assign {
            return Err(self.error("range can only declare variables, not assign them"));
        }
        let (list, end) = self.list(depth + 1)?;
        let otherwise = match end {
            End::Eof => return Err(self.error(format!("unexpected EOF in {keyword}"))),
            End::Close => Vec::new(),
            End::Else(rest) if rest.is_empty() => {
                let (otherwise, end) = self.list(depth + 1)?;
                if !matches!(end, End::Close) {
                    return Err(self.error(format!("expected end after else in {keyword}")));
                }
                otherwise
            }
            // `{{else if …}}` / `{{else with …}}`: an if (with) inside the
            // else branch that shares this one's {{end}}.
            End::Else(rest) => {
                let chained = match rest.first().map(|t| &t.tok) {
                    Some(Tok::Ident(word)) if word == keyword && keyword != "range" => word.clone(),
                    _ => {
                        return Err(
                            self.error(format!("unexpected tokens after else in {keyword}"))
                        );
                    }
                };
                let inner = self.branch(rest.into_iter().skip(1).collect(), &chained, depth + 1)?;
                vec![if keyword == "if" {
                    Node::If(inner)
                } else {
                    Node::With(inner)
                }]
            }
        };
        Ok(Branch {
            pipe,
            list,
            otherwise,
        })
    }

    /// `[decl :=] cmd | cmd …`.
    fn pipe(&self, tokens: &[Token], declare: bool, depth: usize) -> Result<Pipe, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} parentheses")));
        }
        let mut decl = Vec::new();
        let mut assign = false;
        let mut rest = tokens;
        if declare {
            // `$x :=`, `$x =`, `$i, $e :=`.
            let mut i = 0;
            let mut names = Vec::new();
            while let Some(Token {
                tok: Tok::Var(v), ..
            }) = rest.get(i)
            {
                names.push(v.clone());
                match rest.get(i + 1).map(|t| &t.tok) {
                    Some(Tok::Comma) if names.len() == 1 => i += 2,
                    Some(Tok::Declare) => {
                        decl = names;
                        rest = &rest[i + 2..];
                        break;
                    }
                    Some(Tok::Assign) => {
                        decl = names;
                        assign = true;
                        rest = &rest[i + 2..];
                        break;
                    }
                    _ => break,
                }
            }
        }
        if rest.is_empty() {
            return Err(self.error("missing value for command"));
        }
        let mut cmds = Vec::new();
        // `|` at depth 0 separates commands; one pass, however long the
        // action.
        let mut parens = 0i32;
        for cmd in rest.split(|t| {
            match t.tok {
                Tok::Open => parens += 1,
                Tok::Close => parens -= 1,
                _ => {}
            }
            t.tok == Tok::Pipe && parens == 0
        }) {
            cmds.push(self.command(cmd, depth)?);
        }
        if cmds.iter().any(Vec::is_empty) {
            return Err(self.error("missing command in pipeline"));
        }
        Ok(Pipe { decl, assign, cmds })
    }

    fn command(&self, tokens: &[Token], depth: usize) -> Result<Vec<Arg>, TemplateError> {
        let mut args = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let token = &tokens[i];
            let term = match &token.tok {
                Tok::Dot => Term::Dot,
                Tok::Field(name) => {
                    args.push(Arg {
                        term: Term::Dot,
                        chain: vec![name.clone()],
                    });
                    i += 1;
                    self.chain(tokens, &mut i, &mut args);
                    continue;
                }
                Tok::Var(v) => Term::Var(v.clone()),
                Tok::Str(s) => Term::Str(s.clone()),
                Tok::Int(n) => Term::Int(*n),
                Tok::Float(f) => Term::Float(*f),
                Tok::Ident(word) => match word.as_str() {
                    "true" => Term::Bool(true),
                    "false" => Term::Bool(false),
                    "nil" => Term::Nil,
                    name if funcs::exists(name) => Term::Func(name.to_string()),
                    name => return Err(self.error(format!("function {name:?} not defined"))),
                },
                Tok::Open => {
                    let close = matching_close(tokens, i)
                        .ok_or_else(|| self.error("unclosed left paren"))?;
                    let inner = self.pipe(&tokens[i + 1..close], true, depth + 1)?;
                    i = close;
                    Term::Sub(Box::new(inner))
                }
                Tok::Close => return Err(self.error("unexpected right paren")),
                Tok::Pipe | Tok::Comma | Tok::Declare | Tok::Assign => {
                    return Err(self.error(format!("unexpected {:?} in operand", token.tok)));
                }
            };
            args.push(Arg {
                term,
                chain: Vec::new(),
            });
            i += 1;
            self.chain(tokens, &mut i, &mut args);
        }
        Ok(args)
    }

    /// Fields written right after an operand, without space: `$x.A.B`.
    fn chain(&self, tokens: &[Token], i: &mut usize, args: &mut [Arg]) {
        while let Some(Token {
            tok: Tok::Field(name),
            spaced: false,
        }) = tokens.get(*i)
        {
            if let Some(last) = args.last_mut() {
                last.chain.push(name.clone());
            }
            *i += 1;
        }
    }
}

fn matching_close(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}
