//! An exec command line, sans-IO: parsed once from the config words ([`Template::parse`]), then
//! resolved for each run against the variables of its trigger ([`Template::resolve`]).
//!
//! nginx-rtmp's rules (`ngx_rtmp_eval.c`, `ngx_rtmp_eval_streams`):
//! - `$var` takes the longest run of ASCII letters after `$`, so `$name_low` is `$name` then
//!   `_low`; `${var}` delimits a name; `\` makes the next character literal; an unknown
//!   variable expands to nothing. The program (first word) is never expanded.
//! - A word starting with `[N]>`, `[N]>>`, `[N]<` or `[N]>&M` is a redirect, applied in order
//!   after stdio is set up, never an argument.
//!
//! Where sluice is stricter, because substituted values come from clients:
//! - Each word becomes exactly one argv element (no shell, no splitting).
//! - Whether a word is a redirect is decided on the word as the operator wrote it, never on
//!   its expansion: a stream named `>x` is an argument like any other.
//! - A substituted value may not hold control characters, may not be longer than
//!   [`MAX_VALUE`] bytes, and may not put a `-` at the start of an argument (it could turn a
//!   positional argument into an option).
//! - In a redirect's file name, every substituted value must be a safe single file name
//!   ([`crate::untrusted::stream_name`]: no `/`, not `.` or `..`), so the file stays in the
//!   directory the operator wrote. Redirects name fds 0, 1 and 2 only.
//!
//! A value that breaks one of these rules makes the whole command refused (the caller logs
//! it); nothing is truncated or rewritten behind the operator's back.

use std::path::PathBuf;

/// Longest value a variable may substitute, in bytes.
pub const MAX_VALUE: usize = 1024;

/// Most words (program included) a command line may have.
pub const MAX_WORDS: usize = 256;

/// One piece of a word: literal text or a variable reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Var(String),
}

/// A word as written, and its pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    raw: String,
    pieces: Vec<Piece>,
}

impl Word {
    fn new(raw: &str) -> Self {
        Word { raw: raw.to_owned(), pieces: pieces(raw) }
    }
}

/// What a redirect does with its fd.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// `N>file`: truncate or create.
    Write(Word),
    /// `N>>file`: append or create.
    Append(Word),
    /// `N<file`: read.
    Read(Word),
    /// `N>&M` (or `N<&M`): a copy of fd M.
    Dup(i32),
}

/// One redirect, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Redirect {
    fd: i32,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Arg(Word),
    Redirect(Redirect),
}

/// A command line as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    program: String,
    items: Vec<Item>,
}

/// A redirect with its file name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Open for writing, truncated (`>`).
    Write(PathBuf),
    /// Open for appending (`>>`).
    Append(PathBuf),
    /// Open for reading (`<`).
    Read(PathBuf),
    /// A copy of this fd (`>&M`).
    Dup(i32),
}

/// What to run: program, arguments, and redirects to apply in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The program, searched on `PATH` unless it holds a `/`.
    pub program: String,
    /// The arguments (without the program).
    pub args: Vec<String>,
    /// `(fd, target)`, in the order written.
    pub redirects: Vec<(i32, Target)>,
}

/// Where variables come from.
pub trait Vars {
    /// The value of `name`; `None` for a variable the trigger does not have (it expands to
    /// nothing, as in nginx-rtmp).
    fn get(&self, name: &str) -> Option<&str>;
}

/// A fixed list of variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values(Vec<(&'static str, String)>);

impl Values {
    /// No variables.
    pub fn new() -> Self {
        Values(Vec::new())
    }

    /// Adds (or replaces) one.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value.into()));
        self
    }
}

impl Vars for Values {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// Why a command line cannot be used (config time).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no program")]
    Empty,
    #[error("more than {MAX_WORDS} words")]
    TooManyWords,
    #[error("redirect \"{0}\" has no file name (write \">FILE\" as one word, without a space)")]
    NoTarget(String),
    #[error("redirect \"{0}\": sluice redirects only fds 0, 1 and 2")]
    BadFd(String),
    #[error("redirect \"{0}\": \">&\" must be followed by 0, 1 or 2")]
    BadDup(String),
}

/// Why a command was not run with these values (run time).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("${0} is longer than {MAX_VALUE} bytes")]
    TooLong(String),
    #[error("${0} contains a control character")]
    Control(String),
    #[error("${0} would start an argument with \"-\"")]
    Dash(String),
    #[error("${0} is not a plain file name, as a redirect's file name needs")]
    UnsafePath(String),
    #[error("a redirect's file name is empty")]
    EmptyPath,
}

impl Template {
    /// `words[0]` is the program, the rest its arguments and redirects.
    pub fn parse(words: &[String]) -> Result<Template, ParseError> {
        let (program, rest) = words.split_first().filter(|(p, _)| !p.is_empty()).ok_or(ParseError::Empty)?;
        if words.len() > MAX_WORDS {
            return Err(ParseError::TooManyWords);
        }
        let items = rest.iter().map(|w| item(w)).collect::<Result<_, _>>()?;
        Ok(Template { program: program.clone(), items })
    }

    /// The program as written.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The variables the words refer to, in order (for config warnings).
    pub fn variables(&self) -> Vec<&str> {
        let words = self.items.iter().filter_map(|i| match i {
            Item::Arg(w) => Some(w),
            Item::Redirect(Redirect { op: Op::Write(w) | Op::Append(w) | Op::Read(w), .. }) => Some(w),
            Item::Redirect(_) => None,
        });
        words
            .flat_map(|w| &w.pieces)
            .filter_map(|p| match p {
                Piece::Var(v) => Some(v.as_str()),
                Piece::Lit(_) => None,
            })
            .collect()
    }

    /// The command to run. `vars: None` runs the words as written, without any expansion
    /// (`exec_static`); redirects still apply.
    pub fn resolve(&self, vars: Option<&dyn Vars>) -> Result<Resolved, ResolveError> {
        let mut out = Resolved { program: self.program.clone(), args: Vec::new(), redirects: Vec::new() };
        for item in &self.items {
            match item {
                Item::Arg(w) => out.args.push(expand(w, vars, Check::Arg)?),
                Item::Redirect(r) => {
                    let path = |w: &Word| -> Result<PathBuf, ResolveError> {
                        let p = expand(w, vars, Check::Path)?;
                        if p.is_empty() {
                            return Err(ResolveError::EmptyPath);
                        }
                        Ok(PathBuf::from(p))
                    };
                    let target = match &r.op {
                        Op::Write(w) => Target::Write(path(w)?),
                        Op::Append(w) => Target::Append(path(w)?),
                        Op::Read(w) => Target::Read(path(w)?),
                        Op::Dup(m) => Target::Dup(*m),
                    };
                    out.redirects.push((r.fd, target));
                }
            }
        }
        Ok(out)
    }
}

/// What a substituted value must satisfy where it lands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Arg,
    Path,
}

fn expand(w: &Word, vars: Option<&dyn Vars>, check: Check) -> Result<String, ResolveError> {
    let Some(vars) = vars else { return Ok(w.raw.clone()) };
    let mut out = String::new();
    for p in &w.pieces {
        match p {
            Piece::Lit(s) => out.push_str(s),
            Piece::Var(name) => {
                let value = vars.get(name).unwrap_or("");
                if value.is_empty() {
                    continue;
                }
                if value.len() > MAX_VALUE {
                    return Err(ResolveError::TooLong(name.clone()));
                }
                if value.chars().any(char::is_control) {
                    return Err(ResolveError::Control(name.clone()));
                }
                if out.is_empty() && value.starts_with('-') && check == Check::Arg {
                    return Err(ResolveError::Dash(name.clone()));
                }
                if check == Check::Path && crate::untrusted::stream_name(value).is_err() {
                    return Err(ResolveError::UnsafePath(name.clone()));
                }
                out.push_str(value);
            }
        }
    }
    Ok(out)
}

/// A word: a redirect when, as written, it starts with digits then `>` or `<`.
fn item(raw: &str) -> Result<Item, ParseError> {
    let digits = raw.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &raw[digits..];
    let (default_fd, after) = match rest.as_bytes().first() {
        Some(b'>') => (1, &rest[1..]),
        Some(b'<') => (0, &rest[1..]),
        _ => return Ok(Item::Arg(Word::new(raw))),
    };
    let fd = match digits {
        0 => default_fd,
        _ => raw[..digits].parse::<i32>().ok().filter(|fd| (0..=2).contains(fd)).ok_or_else(|| bad_fd(raw))?,
    };
    let (append, after) = match (rest.as_bytes()[0], after.strip_prefix('>')) {
        (b'>', Some(a)) => (true, a),
        _ => (false, after),
    };
    if let Some(m) = after.strip_prefix('&') {
        let m = m.parse::<i32>().ok().filter(|m| (0..=2).contains(m)).ok_or_else(|| ParseError::BadDup(raw.into()))?;
        return Ok(Item::Redirect(Redirect { fd, op: Op::Dup(m) }));
    }
    if after.is_empty() {
        return Err(ParseError::NoTarget(raw.into()));
    }
    let w = Word::new(after);
    let op = match (rest.as_bytes()[0], append) {
        (b'<', _) => Op::Read(w),
        (_, true) => Op::Append(w),
        _ => Op::Write(w),
    };
    Ok(Item::Redirect(Redirect { fd, op }))
}

fn bad_fd(raw: &str) -> ParseError {
    ParseError::BadFd(raw.into())
}

/// Splits a word as `ngx_rtmp_eval` reads it.
fn pieces(raw: &str) -> Vec<Piece> {
    #[derive(PartialEq)]
    enum State {
        Normal,
        Escape,
        Name,
        BracedName,
    }
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut name = String::new();
    let mut state = State::Normal;
    let flush_var = |lit: &mut String, name: &mut String, out: &mut Vec<Piece>| {
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(lit)));
        }
        out.push(Piece::Var(std::mem::take(name)));
    };
    for c in raw.chars() {
        match state {
            State::BracedName => {
                if c == '}' {
                    flush_var(&mut lit, &mut name, &mut out);
                    state = State::Normal;
                } else {
                    name.push(c);
                }
                continue;
            }
            State::Name => {
                if c == '{' && name.is_empty() {
                    state = State::BracedName;
                    continue;
                }
                if c.is_ascii_alphabetic() {
                    name.push(c);
                    continue;
                }
                flush_var(&mut lit, &mut name, &mut out);
                state = State::Normal;
            }
            State::Escape => {
                lit.push(c);
                state = State::Normal;
                continue;
            }
            State::Normal => {}
        }
        match c {
            '$' => state = State::Name,
            '\\' => state = State::Escape,
            c => lit.push(c),
        }
    }
    // An unterminated `${...` expands to nothing, a trailing `\` too.
    if state == State::Name {
        flush_var(&mut lit, &mut name, &mut out);
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    fn vars() -> Values {
        Values::new().with("name", "cam").with("app", "src").with("args", "k=v&x=1")
    }

    fn run(line: &str, v: &Values) -> Result<Resolved, ResolveError> {
        Template::parse(&words(line)).unwrap().resolve(Some(v))
    }

    fn args(line: &str) -> Vec<String> {
        run(line, &vars()).unwrap().args
    }

    #[test]
    fn variables_take_letters_only() {
        assert_eq!(args("p $name_low $name-1 $name.flv"), ["cam_low", "cam-1", "cam.flv"]);
        assert_eq!(args("p rtmp://h/$app/$name?$args"), ["rtmp://h/src/cam?k=v&x=1"]);
        assert_eq!(args("p $namelow x$nam"), ["", "x"], "unknown variables expand to nothing");
        assert_eq!(args("p ${name}low ${app}${name}"), ["camlow", "srccam"]);
        assert_eq!(args("p $name$app"), ["camsrc"]);
        assert_eq!(args("p $ a$ $1"), ["", "a", "1"]);
    }

    #[test]
    fn backslash_escapes_and_odd_ends() {
        assert_eq!(args(r"p \$name a\\b \x"), ["$name", r"a\b", "x"]);
        assert_eq!(args(r"p end\ ${name"), ["end", ""], "a trailing backslash and an open brace expand to nothing");
        assert_eq!(args(r"p $name\_x"), ["cam_x"]);
        assert_eq!(args("p ${na_me}"), [""], "braces take any name; this one is unknown");
    }

    #[test]
    fn the_program_is_never_expanded() {
        let r = run("/bin/$name $name", &vars()).unwrap();
        assert_eq!((r.program.as_str(), r.args.as_slice()), ("/bin/$name", &["cam".to_string()][..]));
    }

    #[test]
    fn static_lines_are_not_expanded() {
        let t = Template::parse(&words(r"p $name \x >/tmp/$name.log")).unwrap();
        let r = t.resolve(None).unwrap();
        assert_eq!(r.args, ["$name", r"\x"]);
        assert_eq!(r.redirects, [(1, Target::Write("/tmp/$name.log".into()))]);
    }

    #[test]
    fn redirects_are_taken_out_of_the_arguments() {
        let r = run("p a >/tmp/o 2>>/tmp/e-$name.log <in 2>&1 >&2 1>>&2 0</dev/null b", &vars()).unwrap();
        assert_eq!(r.args, ["a", "b"]);
        assert_eq!(
            r.redirects,
            [
                (1, Target::Write("/tmp/o".into())),
                (2, Target::Append("/tmp/e-cam.log".into())),
                (0, Target::Read("in".into())),
                (2, Target::Dup(1)),
                (1, Target::Dup(2)),
                (1, Target::Dup(2)),
                (0, Target::Read("/dev/null".into())),
            ]
        );
        // Not redirects: `>` not right after the leading digits.
        assert_eq!(args("p a>b -vf=w>h 12x>y"), ["a>b", "-vf=w>h", "12x>y"]);
    }

    #[test]
    fn bad_redirects_are_config_errors() {
        let parse = |l: &str| Template::parse(&words(l)).unwrap_err();
        assert_eq!(parse("p >"), ParseError::NoTarget(">".into()));
        assert_eq!(parse("p 2>>"), ParseError::NoTarget("2>>".into()));
        assert_eq!(parse("p 3>x"), ParseError::BadFd("3>x".into()));
        assert_eq!(parse("p 99999999999999999999>x"), ParseError::BadFd("99999999999999999999>x".into()));
        assert_eq!(parse("p 2>&x"), ParseError::BadDup("2>&x".into()));
        assert_eq!(parse("p 2>&5"), ParseError::BadDup("2>&5".into()));
        assert_eq!(parse("p 2>&$name"), ParseError::BadDup("2>&$name".into()));
        assert_eq!(Template::parse(&[]), Err(ParseError::Empty));
        assert_eq!(Template::parse(&vec!["x".to_string(); MAX_WORDS + 1]), Err(ParseError::TooManyWords));
    }

    #[test]
    fn hostile_values_stay_one_argument() {
        let v = |name: &str| vars().with("name", name);
        for name in ["a b", ">/etc/passwd", "2>&1", "x;rm -rf /", "$(id)", "`id`", "*", "a\"b'c", "${app}", "\\n"] {
            let r = run("p $name x$name", &v(name)).unwrap();
            assert_eq!(r.args, [name.to_string(), format!("x{name}")], "{name:?}");
            assert!(r.redirects.is_empty(), "{name:?} became a redirect");
        }
    }

    #[test]
    fn hostile_values_are_refused() {
        let v = |name: &str| vars().with("name", name);
        assert_eq!(run("p $name", &v("-oX")), Err(ResolveError::Dash("name".into())));
        assert_eq!(
            run("p $args$name", &vars().with("args", "").with("name", "-x")),
            Err(ResolveError::Dash("name".into()))
        );
        assert!(run("p x$name", &v("-oX")).is_ok(), "a dash inside an argument is harmless");
        assert_eq!(run("p $name", &v("a\nb")), Err(ResolveError::Control("name".into())));
        assert_eq!(run("p $name", &v("a\0b")), Err(ResolveError::Control("name".into())));
        assert_eq!(run("p $name", &v(&"x".repeat(MAX_VALUE + 1))), Err(ResolveError::TooLong("name".into())));
        assert!(run("p $name", &v(&"x".repeat(MAX_VALUE))).is_ok());
    }

    #[test]
    fn substituted_redirect_targets_stay_where_the_operator_wrote() {
        let v = |name: &str| vars().with("name", name);
        let r = run("p >/var/log/x/$name.log", &v("cam")).unwrap();
        assert_eq!(r.redirects, [(1, Target::Write("/var/log/x/cam.log".into()))]);
        for bad in ["..", ".", "../../etc/passwd", "a/b", "/etc/passwd", "a\\b"] {
            assert_eq!(run("p >/var/log/x/$name", &v(bad)), Err(ResolveError::UnsafePath("name".into())), "{bad:?}");
            assert_eq!(run("p 2>>$name", &v(bad)), Err(ResolveError::UnsafePath("name".into())), "{bad:?}");
        }
        // `$args` is a query string: with a `/` it cannot name a file.
        assert_eq!(run("p </in/$args", &vars().with("args", "a/b")), Err(ResolveError::UnsafePath("args".into())));
        assert_eq!(run("p >$nosuch", &vars()), Err(ResolveError::EmptyPath));
        // The operator's own slashes and dots are theirs.
        assert!(run("p >../logs/./$name", &v("cam")).is_ok());
    }

    #[test]
    fn variables_lists_references() {
        let t = Template::parse(&words("p $name_low ${app} >$path 2>&1 \\$no")).unwrap();
        assert_eq!(t.variables(), ["name", "app", "path"]);
    }
}
