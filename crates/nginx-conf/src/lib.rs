//! A sans-IO lexer and parser for nginx configuration syntax.
//!
//! It turns text into a tree of [`Directive`]s with 1-based line/column positions and knows
//! nothing about what any directive means: checking names, contexts and values is the caller's
//! job (sluice's `config` module does it for the `rtmp {}` block).
//!
//! # Grammar
//!
//! The token rules follow nginx's own `ngx_conf_read_token` (nginx `src/core/ngx_conf_file.c`),
//! so that a file nginx accepts yields the same words here:
//!
//! ```text
//! file       = { directive }
//! directive  = word { word } ( ";" | "{" { directive } "}" )
//! word       = quoted | bare
//! quoted     = '"' { char | escape } '"' | "'" { char | escape } "'"
//!              (must be followed by whitespace, ";", "{" or ")", as in nginx)
//! bare       = a run of characters up to whitespace, ";" or "{"
//!              ("${" inside a word does not end it: `${name}` stays one word;
//!               "}", "#", quotes, "$", ":", "/", "?" and "=" inside a word are plain
//!               characters, so `rtmp://host/$app/$name` is one word)
//! escape     = "\" followed by any character; `\"` `\'` `\\` yield the character,
//!              `\t` `\r` `\n` yield tab, CR and LF, any other `\x` is kept as both characters
//! comment    = "#" at the start of a word, up to the end of the line
//! whitespace = space, tab, CR, LF
//! ```
//!
//! The parser is iterative (no recursion), so deeply nested input cannot overflow the stack.
#![deny(missing_docs, unsafe_code, unreachable_pub)]

use std::fmt;
use std::iter::Peekable;
use std::str::Chars;

/// A 1-based position in the source text; columns count characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number (in characters), starting at 1.
    pub col: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One argument of a directive, with quotes removed and escapes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The argument's text.
    pub value: String,
    /// Where the argument starts (its opening quote, if quoted).
    pub span: Span,
}

/// One directive: `name arg...;` or `name arg... { directive... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The directive's name (its first word).
    pub name: String,
    /// Where the name starts.
    pub name_span: Span,
    /// The words after the name.
    pub args: Vec<Arg>,
    /// The directives inside `{ }`, or `None` when the directive ended with `;`.
    pub block: Option<Vec<Directive>>,
    /// Where the directive starts (the same position as `name_span`: a directive starts with
    /// its name; kept separate so callers can report "the directive" vs "its name").
    pub span: Span,
}

impl Directive {
    /// The argument values as string slices.
    pub fn arg_values(&self) -> Vec<&str> {
        self.args.iter().map(|a| a.value.as_str()).collect()
    }
}

/// What went wrong while parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// A character that cannot appear here: `}` with no open block, `;` or `{` with no
    /// directive name, or anything but a separator right after a closing quote.
    #[error("unexpected \"{0}\"")]
    Unexpected(char),
    /// A quote that is never closed.
    #[error("unterminated string")]
    UnterminatedString,
    /// The text ended in the middle of a directive.
    #[error("unexpected end of file, expecting \";\" or \"}}\"")]
    EofInDirective,
    /// The text ended inside a `{ }` block.
    #[error("unexpected end of file, expecting \"}}\"")]
    EofInBlock,
    /// A block was closed while a directive in it still lacked its `;`.
    #[error("directive \"{0}\" has no \";\"")]
    MissingSemicolon(String),
}

/// A syntax error and where it was found. `Display` shows the message only; callers prefix
/// the file name and [`Span`] (`FILE:LINE:COL: message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// Where the error was found.
    pub span: Span,
    /// What the error is.
    pub kind: ErrorKind,
}

/// Parses nginx configuration text into its directives.
pub fn parse(text: &str) -> Result<Vec<Directive>, ParseError> {
    Parser::new(text).run()
}

/// Renders directives back into nginx syntax (4-space indent), quoting words that need it.
/// `parse(&render(d))` gives back `d` except for positions.
pub fn render(directives: &[Directive]) -> String {
    let mut out = String::new();
    render_into(&mut out, directives, 0);
    out
}

fn render_into(out: &mut String, directives: &[Directive], depth: usize) {
    for d in directives {
        out.push_str(&"    ".repeat(depth));
        out.push_str(&quote(&d.name));
        for a in &d.args {
            out.push(' ');
            out.push_str(&quote(&a.value));
        }
        match &d.block {
            None => out.push_str(";\n"),
            Some(children) => {
                out.push_str(" {\n");
                render_into(out, children, depth + 1);
                out.push_str(&"    ".repeat(depth));
                out.push_str("}\n");
            }
        }
    }
}

/// Returns `word` as it must be written so that the lexer reads it back unchanged: bare when
/// that is safe, otherwise double-quoted with `"` and `\` escaped.
pub fn quote(word: &str) -> String {
    let special = |c: char| is_space(c) || matches!(c, ';' | '{' | '}' | '"' | '\'' | '\\' | '#');
    if !word.is_empty() && !word.contains(special) {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Appends the character an escape `\c` stands for (nginx's unescaping rules).
fn push_escape(out: &mut String, c: char) {
    match c {
        '"' | '\'' | '\\' => out.push(c),
        't' => out.push('\t'),
        'r' => out.push('\r'),
        'n' => out.push('\n'),
        other => {
            out.push('\\');
            out.push(other);
        }
    }
}

enum Token {
    Word(Arg),
    Semicolon(Span),
    Open(Span),
    Close(Span),
    Eof(Span),
}

struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    line: u32,
    col: u32,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer { chars: text.chars().peekable(), line: 1, col: 1 }
    }

    fn pos(&self) -> Span {
        Span { line: self.line, col: self.col }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        loop {
            let span = self.pos();
            let Some(&c) = self.chars.peek() else {
                return Ok(Token::Eof(span));
            };
            match c {
                c if is_space(c) => {
                    self.bump();
                }
                '#' => self.skip_comment(),
                ';' | '{' | '}' => {
                    self.bump();
                    return Ok(match c {
                        ';' => Token::Semicolon(span),
                        '{' => Token::Open(span),
                        _ => Token::Close(span),
                    });
                }
                '"' | '\'' => return self.quoted(c, span).map(Token::Word),
                _ => return Ok(Token::Word(self.bare(span))),
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn quoted(&mut self, quote: char, span: Span) -> Result<Arg, ParseError> {
        let unterminated = ParseError { span, kind: ErrorKind::UnterminatedString };
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(unterminated),
                Some('\\') => push_escape(&mut value, self.bump().ok_or_else(|| unterminated.clone())?),
                Some(c) if c == quote => break,
                Some(c) => value.push(c),
            }
        }
        // nginx demands a separator after a closing quote; `)` is allowed (and swallowed, as
        // nginx does) so that `if ($a = "b")` in ignored http blocks still lexes.
        match self.chars.peek() {
            None => {}
            Some(&c) if is_space(c) || c == ';' || c == '{' => {}
            Some(&')') => {
                self.bump();
            }
            Some(&c) => {
                return Err(ParseError { span: self.pos(), kind: ErrorKind::Unexpected(c) });
            }
        }
        Ok(Arg { value, span })
    }

    fn bare(&mut self, span: Span) -> Arg {
        let mut value = String::new();
        let mut after_dollar = false;
        while let Some(&c) = self.chars.peek() {
            // `${var}` is one word even though `{` normally ends a word.
            let var_brace = c == '{' && after_dollar;
            if !var_brace && (is_space(c) || c == ';' || c == '{') {
                break;
            }
            self.bump();
            after_dollar = c == '$';
            if c == '\\' {
                match self.bump() {
                    Some(next) => push_escape(&mut value, next),
                    None => value.push('\\'),
                }
            } else {
                value.push(c);
            }
        }
        Arg { value, span }
    }
}

/// A block being filled: its directives so far and the header of the directive that opened it
/// (`None` for the file itself).
struct Frame {
    header: Option<Vec<Arg>>,
    directives: Vec<Directive>,
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    stack: Vec<Frame>,
    words: Vec<Arg>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let root = Frame { header: None, directives: Vec::new() };
        Parser { lexer: Lexer::new(text), stack: vec![root], words: Vec::new() }
    }

    fn run(mut self) -> Result<Vec<Directive>, ParseError> {
        loop {
            match self.lexer.next_token()? {
                Token::Word(arg) => self.words.push(arg),
                Token::Semicolon(span) => {
                    let words = self.take_words(span, ';')?;
                    self.push(directive(words, None));
                }
                Token::Open(span) => {
                    let words = self.take_words(span, '{')?;
                    self.stack.push(Frame { header: Some(words), directives: Vec::new() });
                }
                Token::Close(span) => self.close(span)?,
                Token::Eof(span) => return self.finish(span),
            }
        }
    }

    /// Takes the words of the directive that `c` ends; a directive needs at least a name.
    fn take_words(&mut self, span: Span, c: char) -> Result<Vec<Arg>, ParseError> {
        if self.words.is_empty() {
            return Err(ParseError { span, kind: ErrorKind::Unexpected(c) });
        }
        Ok(std::mem::take(&mut self.words))
    }

    fn push(&mut self, d: Directive) {
        // The root frame is never popped, so the stack is never empty.
        if let Some(top) = self.stack.last_mut() {
            top.directives.push(d);
        }
    }

    fn close(&mut self, span: Span) -> Result<(), ParseError> {
        if let Some(first) = self.words.first() {
            let kind = ErrorKind::MissingSemicolon(first.value.clone());
            return Err(ParseError { span: first.span, kind });
        }
        if self.stack.len() == 1 {
            return Err(ParseError { span, kind: ErrorKind::Unexpected('}') });
        }
        let frame = self.stack.pop().expect("stack holds a block frame above the root");
        let header = frame.header.expect("only the root frame has no header");
        self.push(directive(header, Some(frame.directives)));
        Ok(())
    }

    fn finish(mut self, span: Span) -> Result<Vec<Directive>, ParseError> {
        if !self.words.is_empty() {
            return Err(ParseError { span, kind: ErrorKind::EofInDirective });
        }
        if self.stack.len() > 1 {
            return Err(ParseError { span, kind: ErrorKind::EofInBlock });
        }
        Ok(self.stack.pop().map(|f| f.directives).unwrap_or_default())
    }
}

/// Builds a directive from its words (at least one: the name).
fn directive(mut words: Vec<Arg>, block: Option<Vec<Directive>>) -> Directive {
    let name = words.remove(0);
    Directive { name: name.value, name_span: name.span, args: words, block, span: name.span }
}

#[cfg(test)]
mod tests;
