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
//!
//! # `include`
//!
//! [`parse_files`] follows `include PATTERN;` anywhere (top level or inside any block), as nginx
//! does: the included files' directives take the `include`'s place. Which files a pattern names
//! is asked of a [`Loader`] (the caller does the file I/O and glob expansion; this crate stays
//! sans-IO). Each included file must be balanced on its own (nginx's rule), a file that is
//! already being read is an include cycle, and the number of files and the include depth are
//! bounded ([`MAX_FILES`], [`MAX_INCLUDE_DEPTH`]). Every [`Span`] says which file it is in.
#![deny(missing_docs, unsafe_code, unreachable_pub)]

use std::fmt;

/// A 1-based position in the source text; columns count characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number (in characters), starting at 1.
    pub col: u32,
    /// Which file: an index into [`Parsed::files`] (0, the main file, for [`parse`]).
    pub file: u32,
}

impl Span {
    /// A position in the main file (file 0).
    pub const fn new(line: u32, col: u32) -> Span {
        Span { line, col, file: 0 }
    }
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
    /// `include` with other than one argument.
    #[error("invalid number of arguments in \"include\" directive")]
    IncludeArgs,
    /// `include ... {`.
    #[error("directive \"include\" is not terminated by \";\"")]
    IncludeBlock,
    /// The [`Loader`] could not read what an `include` names.
    #[error("{0}")]
    Include(String),
    /// An `include` names a file that is already being read.
    #[error("include cycle: \"{0}\" is already being read")]
    IncludeCycle(String),
    /// More than [`MAX_FILES`] files in all.
    #[error("more than {0} configuration files are included")]
    TooManyFiles(usize),
    /// Includes nested more than [`MAX_INCLUDE_DEPTH`] deep.
    #[error("includes are nested more than {0} deep")]
    IncludeTooDeep(usize),
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

/// Parses nginx configuration text into its directives. `include` is not followed here: it
/// stays a directive like any other (see [`parse_files`]).
pub fn parse(text: &str) -> Result<Vec<Directive>, ParseError> {
    let main = Source { name: String::new(), key: String::new(), text: text.to_owned() };
    Parser::new(main, None).run().map(|p| p.directives).map_err(|e| e.error)
}

/// Most configuration files [`parse_files`] reads, the main one included.
pub const MAX_FILES: usize = 1024;
/// Most files being read at once (the main file, a file it includes, a file that one
/// includes...).
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// One configuration file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The name errors show (a path as the user would recognise it).
    pub name: String,
    /// The file's identity, for cycle detection (a canonical path): two includes naming the
    /// same key are the same file.
    pub key: String,
    /// The file's content.
    pub text: String,
}

/// Reads the files that `include` directives name: the I/O side of [`parse_files`].
pub trait Loader {
    /// The files `include PATTERN;` names, in the order nginx reads them. As in nginx, a
    /// pattern with wildcards that matches nothing gives none, and a plain name that cannot be
    /// read is an error, whose message is reported at the `include`.
    fn load(&mut self, pattern: &str) -> Result<Vec<Source>, String>;
}

/// The directives of a main file with its includes followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The directives, includes replaced by what they include.
    pub directives: Vec<Directive>,
    /// The names of the files read, the main file first: [`Span::file`] indexes this.
    pub files: Vec<String>,
}

/// A [`ParseError`] and the name of the file it is in. `Display` is `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}: {error}", error.span)]
pub struct FileError {
    /// The file's name (as its [`Source`] gives it).
    pub file: String,
    /// What went wrong, and where in that file.
    pub error: ParseError,
}

/// Parses `main`, following `include` directives anywhere through `loader`.
pub fn parse_files(main: Source, loader: &mut dyn Loader) -> Result<Parsed, FileError> {
    Parser::new(main, Some(loader)).run()
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

struct Lexer {
    text: String,
    /// Byte offset of the next character.
    at: usize,
    line: u32,
    col: u32,
    file: u32,
}

impl Lexer {
    fn new(text: String, file: u32) -> Self {
        Lexer { text, at: 0, line: 1, col: 1, file }
    }

    fn pos(&self) -> Span {
        Span { line: self.line, col: self.col, file: self.file }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
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
            let Some(c) = self.peek() else {
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
        match self.peek() {
            None => {}
            Some(c) if is_space(c) || c == ';' || c == '{' => {}
            Some(')') => {
                self.bump();
            }
            Some(c) => {
                return Err(ParseError { span: self.pos(), kind: ErrorKind::Unexpected(c) });
            }
        }
        Ok(Arg { value, span })
    }

    fn bare(&mut self, span: Span) -> Arg {
        let mut value = String::new();
        let mut after_dollar = false;
        while let Some(c) = self.peek() {
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

/// A file being read: its lexer, and how many block frames were open when it started (its
/// own blocks must close within it).
struct Input {
    lexer: Lexer,
    key: String,
    base: usize,
}

struct Parser<'l> {
    inputs: Vec<Input>,
    stack: Vec<Frame>,
    words: Vec<Arg>,
    /// `None`: `include` is an ordinary directive.
    loader: Option<&'l mut dyn Loader>,
    files: Vec<String>,
}

impl<'l> Parser<'l> {
    fn new(main: Source, loader: Option<&'l mut dyn Loader>) -> Self {
        let root = Frame { header: None, directives: Vec::new() };
        let input = Input { lexer: Lexer::new(main.text, 0), key: main.key, base: 1 };
        Parser { inputs: vec![input], stack: vec![root], words: Vec::new(), loader, files: vec![main.name] }
    }

    fn run(mut self) -> Result<Parsed, FileError> {
        match self.parse() {
            Ok(directives) => Ok(Parsed { directives, files: self.files }),
            Err(error) => {
                let file = self.files.get(error.span.file as usize).cloned().unwrap_or_default();
                Err(FileError { file, error })
            }
        }
    }

    fn parse(&mut self) -> Result<Vec<Directive>, ParseError> {
        loop {
            let input = self.inputs.last_mut().expect("the main input is never popped");
            match input.lexer.next_token()? {
                Token::Word(arg) => self.words.push(arg),
                Token::Semicolon(span) => {
                    let words = self.take_words(span, ';')?;
                    if self.follows_includes() && words[0].value == "include" {
                        self.include(words)?;
                    } else {
                        self.push(directive(words, None));
                    }
                }
                Token::Open(span) => {
                    let words = self.take_words(span, '{')?;
                    if self.follows_includes() && words[0].value == "include" {
                        return Err(ParseError { span: words[0].span, kind: ErrorKind::IncludeBlock });
                    }
                    self.stack.push(Frame { header: Some(words), directives: Vec::new() });
                }
                Token::Close(span) => self.close(span)?,
                Token::Eof(span) => {
                    self.end_of_input(span)?;
                    if self.inputs.len() == 1 {
                        return Ok(self.stack.pop().map(|f| f.directives).unwrap_or_default());
                    }
                    self.inputs.pop();
                }
            }
        }
    }

    fn follows_includes(&self) -> bool {
        self.loader.is_some()
    }

    /// Starts reading the files `include PATTERN;` names (the last one first, so that they
    /// are read in order from the input stack).
    fn include(&mut self, words: Vec<Arg>) -> Result<(), ParseError> {
        let at = words[0].span;
        let fail = |kind| Err(ParseError { span: at, kind });
        let [_, pattern] = words.as_slice() else { return fail(ErrorKind::IncludeArgs) };
        let loader = self.loader.as_deref_mut().expect("include is followed only with a loader");
        let sources = match loader.load(&pattern.value) {
            Ok(sources) => sources,
            Err(message) => return fail(ErrorKind::Include(message)),
        };
        if self.files.len() + sources.len() > MAX_FILES {
            return fail(ErrorKind::TooManyFiles(MAX_FILES));
        }
        if self.inputs.len() >= MAX_INCLUDE_DEPTH {
            return fail(ErrorKind::IncludeTooDeep(MAX_INCLUDE_DEPTH));
        }
        if let Some(again) = sources.iter().find(|s| self.inputs.iter().any(|i| i.key == s.key)) {
            return fail(ErrorKind::IncludeCycle(again.name.clone()));
        }
        let first = self.files.len();
        self.files.extend(sources.iter().map(|s| s.name.clone()));
        let base = self.stack.len();
        for (i, source) in sources.into_iter().enumerate().rev() {
            let file = u32::try_from(first + i).expect("MAX_FILES fits in u32");
            self.inputs.push(Input { lexer: Lexer::new(source.text, file), key: source.key, base });
        }
        Ok(())
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

    /// The frames open when the current input started: its own blocks are above them.
    fn base(&self) -> usize {
        self.inputs.last().map_or(1, |i| i.base)
    }

    fn close(&mut self, span: Span) -> Result<(), ParseError> {
        if let Some(first) = self.words.first() {
            let kind = ErrorKind::MissingSemicolon(first.value.clone());
            return Err(ParseError { span: first.span, kind });
        }
        if self.stack.len() <= self.base() {
            return Err(ParseError { span, kind: ErrorKind::Unexpected('}') });
        }
        let frame = self.stack.pop().expect("stack holds a block frame above the root");
        let header = frame.header.expect("only the root frame has no header");
        self.push(directive(header, Some(frame.directives)));
        Ok(())
    }

    /// Checks that the current input ends where a file may end.
    fn end_of_input(&self, span: Span) -> Result<(), ParseError> {
        if !self.words.is_empty() {
            return Err(ParseError { span, kind: ErrorKind::EofInDirective });
        }
        if self.stack.len() > self.base() {
            return Err(ParseError { span, kind: ErrorKind::EofInBlock });
        }
        Ok(())
    }
}

/// Builds a directive from its words (at least one: the name).
fn directive(mut words: Vec<Arg>, block: Option<Vec<Directive>>) -> Directive {
    let name = words.remove(0);
    Directive { name: name.value, name_span: name.span, args: words, block, span: name.span }
}

#[cfg(test)]
mod tests;
