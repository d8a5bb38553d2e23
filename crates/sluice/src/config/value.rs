//! The pieces every directive table shares: the table row type ([`DirectiveSpec`]), the
//! contexts a directive may appear in, and nginx's value syntax (flags, times, sizes, numbers,
//! enums), with nginx's wording for errors.

use std::time::Duration;

use nginx_conf::{Arg, Directive, Span};

/// Bit set of the blocks a directive may appear in (nginx's `NGX_RTMP_*_CONF` flags).
pub mod ctx {
    /// Directly inside `rtmp { }`.
    pub const RTMP: u8 = 1;
    /// Inside `rtmp { server { } }`.
    pub const SERVER: u8 = 2;
    /// Inside `application NAME { }`.
    pub const APP: u8 = 4;
    /// Inside `recorder NAME { }`.
    pub const RECORDER: u8 = 8;
    /// Only meaningful in `http { }` (listed so that using it inside `rtmp` says so).
    pub const HTTP: u8 = 16;
    /// Only meaningful at the top level, outside any block.
    pub const TOP: u8 = 32;
    /// rtmp, server (most connection-level settings).
    pub const RS: u8 = RTMP | SERVER;
    /// rtmp, server, application (settings that applications inherit).
    pub const RSA: u8 = RTMP | SERVER | APP;
    /// rtmp, server, application, recorder (record settings).
    pub const RSAR: u8 = RSA | RECORDER;
}

/// How many arguments a directive takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// Exactly this many.
    Exactly(usize),
    /// From the first to the second number, inclusive.
    Between(usize, usize),
    /// At least this many.
    AtLeast(usize),
}

impl Args {
    fn accepts(self, n: usize) -> bool {
        match self {
            Args::Exactly(k) => n == k,
            Args::Between(lo, hi) => (lo..=hi).contains(&n),
            Args::AtLeast(k) => n >= k,
        }
    }
}

/// What a directive's value looks like (documentation; each module parses its own values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `{ }` block.
    Block,
    /// `on` or `off`.
    Flag,
    /// A time: `500ms`, `30s`, `1m30s`, `1h`; a bare number means seconds, as in nginx.
    Time,
    /// A byte size: `4096`, `64k`, `1m`.
    Size,
    /// A whole number.
    Number,
    /// Free text (a path, a URL, a suffix).
    Text,
    /// One of the listed words.
    OneOf(&'static [&'static str]),
    /// One or more of the listed words.
    SomeOf(&'static [&'static str]),
    /// An address to listen on, with options.
    Listen,
    /// Kept as raw words for a feature sluice does not implement yet.
    Raw,
}

/// One row of a directive table, like an entry of nginx's `ngx_command_t` arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectiveSpec {
    /// The directive's name.
    pub name: &'static str,
    /// Where it may appear: a [`ctx`] bit set.
    pub contexts: u8,
    /// How many arguments it takes.
    pub args: Args,
    /// What its value looks like.
    pub kind: Kind,
    /// Its default when not set anywhere, as written in a config file ("" when none).
    pub default: &'static str,
}

/// Shorthand for table rows.
pub(crate) const fn spec(
    name: &'static str,
    contexts: u8,
    args: Args,
    kind: Kind,
    default: &'static str,
) -> DirectiveSpec {
    DirectiveSpec { name, contexts, args, kind, default }
}

/// A config error before the file name is known: where, and nginx-style wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub span: Span,
    pub message: String,
}

impl Fail {
    pub(crate) fn new(span: Span, message: impl Into<String>) -> Self {
        Fail { span, message: message.into() }
    }
}

/// Checks a directive against its table row: argument count and `;` vs `{ }`.
pub(crate) fn check_shape(spec: &DirectiveSpec, d: &Directive) -> Result<(), Fail> {
    let name = &d.name;
    match (spec.kind == Kind::Block, d.block.is_some()) {
        (true, false) => {
            return Err(Fail::new(d.span, format!("directive \"{name}\" has no opening \"{{\"")));
        }
        (false, true) => {
            let msg = format!("directive \"{name}\" is not terminated by \";\"");
            return Err(Fail::new(d.span, msg));
        }
        _ => {}
    }
    if !spec.args.accepts(d.args.len()) {
        let msg = format!("invalid number of arguments in \"{name}\" directive");
        return Err(Fail::new(d.span, msg));
    }
    Ok(())
}

/// Stores a single-valued setting, refusing a second one at the same level as nginx does.
pub(crate) fn put<T>(slot: &mut Option<T>, value: T, d: &Directive) -> Result<(), Fail> {
    if slot.is_some() {
        return Err(Fail::new(d.span, format!("\"{}\" directive is duplicate", d.name)));
    }
    *slot = Some(value);
    Ok(())
}

/// `invalid value "X" in "NAME" directive, it must be ...`, pointing at the argument.
pub(crate) fn invalid(d: &Directive, arg: &Arg, must: &str) -> Fail {
    let msg = format!("invalid value \"{}\" in \"{}\" directive, it must be {must}", arg.value, d.name);
    Fail::new(arg.span, msg)
}

/// The first argument (tables guarantee it exists before setters run).
pub(crate) fn first(d: &Directive) -> Result<&Arg, Fail> {
    d.args.first().ok_or_else(|| Fail::new(d.span, format!("invalid number of arguments in \"{}\" directive", d.name)))
}

/// `on` / `off` (case-insensitive, like nginx's flag slot).
pub(crate) fn flag(d: &Directive) -> Result<bool, Fail> {
    let arg = first(d)?;
    match arg.value.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(invalid(d, arg, "\"on\" or \"off\"")),
    }
}

/// A time, per nginx's msec slot.
pub(crate) fn time(d: &Directive) -> Result<Duration, Fail> {
    let arg = first(d)?;
    parse_time(&arg.value).ok_or_else(|| invalid(d, arg, "a time like 500ms, 30s or 1m30s"))
}

/// A byte size, per nginx's size slot.
pub(crate) fn size(d: &Directive) -> Result<u64, Fail> {
    let arg = first(d)?;
    parse_size(&arg.value).ok_or_else(|| invalid(d, arg, "a size like 4096, 64k or 1m"))
}

/// A whole number, per nginx's num slot.
pub(crate) fn number(d: &Directive) -> Result<u64, Fail> {
    let arg = first(d)?;
    parse_number(&arg.value).ok_or_else(|| invalid(d, arg, "a whole number"))
}

/// A whole number within `lo..=hi` (u32 fields such as `chunk_size`).
pub(crate) fn number_in(d: &Directive, lo: u64, hi: u64) -> Result<u32, Fail> {
    bounded(d, number(d)?, lo, hi)
}

/// A size within `lo..=hi`.
pub(crate) fn size_in(d: &Directive, lo: u64, hi: u64) -> Result<u32, Fail> {
    bounded(d, size(d)?, lo, hi)
}

fn bounded(d: &Directive, v: u64, lo: u64, hi: u64) -> Result<u32, Fail> {
    let hi = hi.min(u64::from(u32::MAX));
    if (lo..=hi).contains(&v) {
        // `hi` is at most u32::MAX, so this cannot truncate.
        return Ok(v as u32);
    }
    let arg = first(d)?;
    Err(invalid(d, arg, &format!("between {lo} and {hi}")))
}

/// Free text, taken as is.
pub(crate) fn text(d: &Directive) -> Result<String, Fail> {
    Ok(first(d)?.value.clone())
}

/// One of a fixed set of words (nginx's enum slot); the error lists them.
pub(crate) fn one_of<T: Copy>(d: &Directive, arg: &Arg, options: &[(&str, T)]) -> Result<T, Fail> {
    let found = options.iter().find(|(word, _)| arg.value.eq_ignore_ascii_case(word));
    found.map(|&(_, v)| v).ok_or_else(|| invalid(d, arg, &list_words(options.iter().map(|o| o.0))))
}

/// `"a", "b" or "c"`.
fn list_words<'a>(words: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = words.map(|w| format!("\"{w}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// nginx's `ngx_parse_time` in millisecond mode (`ngx_conf_set_msec_slot`): units `w d h m s
/// ms`, each at most once and from largest to smallest, optionally separated by spaces; a
/// trailing number without a unit counts as seconds (so `timeout 60;` is one minute, as in
/// nginx). Overflow is an error.
pub fn parse_time(s: &str) -> Option<Duration> {
    const SEC: u64 = 1000;
    let bytes = s.as_bytes();
    let (mut i, mut step, mut value, mut total, mut valid) = (0, 0u8, 0u64, 0u64, false);
    while i < bytes.len() {
        let c = bytes[i];
        i += 1;
        if c.is_ascii_digit() {
            value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            valid = true;
            continue;
        }
        // Each unit has a rank; ranks must strictly increase, as nginx's `step` does.
        let (rank, unit_ms) = match c {
            b'w' => (1, 7 * 24 * 3600 * SEC),
            b'd' => (2, 24 * 3600 * SEC),
            b'h' => (3, 3600 * SEC),
            b'm' if bytes.get(i) == Some(&b's') => {
                i += 1;
                (6, 1)
            }
            b'm' => (4, 60 * SEC),
            b's' => (5, SEC),
            // nginx treats a space right after a number as "seconds, and nothing smaller".
            b' ' => (7, SEC),
            _ => return None,
        };
        if rank <= step {
            return None;
        }
        step = rank;
        total = total.checked_add(value.checked_mul(unit_ms)?)?;
        value = 0;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    if !valid {
        return None;
    }
    let ms = total.checked_add(value.checked_mul(SEC)?)?;
    Some(Duration::from_millis(ms))
}

/// nginx's `ngx_parse_size`: digits with an optional `k`/`K` (KiB) or `m`/`M` (MiB) suffix.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, scale) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1024),
        b'm' | b'M' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    parse_number(digits)?.checked_mul(scale)
}

/// nginx's `ngx_atoi`: ASCII digits only, no sign, not empty.
pub fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Optimal-string-alignment edit distance (a swap of neighbours counts as one edit), for
/// "did you mean" hints.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn times_follow_nginx_msec_slot() {
        assert_eq!(parse_time("3s"), ms(3000));
        assert_eq!(parse_time("500ms"), ms(500));
        assert_eq!(parse_time("1m"), ms(60_000));
        assert_eq!(parse_time("1h"), ms(3_600_000));
        assert_eq!(parse_time("1d"), ms(86_400_000));
        assert_eq!(parse_time("1w"), ms(604_800_000));
        assert_eq!(parse_time("1m30s"), ms(90_000));
        assert_eq!(parse_time("1m 30s"), ms(90_000));
        assert_eq!(parse_time("1s500ms"), ms(1500));
        assert_eq!(parse_time("0"), ms(0));
        // A bare number is seconds in nginx's msec slot (`keepalive_timeout 75;`).
        assert_eq!(parse_time("60"), ms(60_000));
        assert_eq!(parse_time("1m30"), ms(90_000));
    }

    #[test]
    fn bad_times_are_rejected() {
        for bad in ["", "s", "ms", "1x", "1s1m", "1s1s", "1y", "1M", "-1s", "1.5s", "99999999999999999999"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_follow_nginx_size_slot() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("1K"), Some(1024));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        for bad in ["", "k", "1g", "1.5m", "-1", "1 k", "99999999999999999999m"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn numbers_are_plain_digits() {
        assert_eq!(parse_number("5000000"), Some(5_000_000));
        assert_eq!(parse_number("+1"), None);
        assert_eq!(parse_number("1k"), None);
    }

    #[test]
    fn edit_distance_counts_swaps_once() {
        assert_eq!(edit_distance("chunk_sise", "chunk_size"), 1);
        assert_eq!(edit_distance("recrod", "record"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("live", "live"), 0);
    }

    #[test]
    fn word_lists_read_naturally() {
        assert_eq!(list_words(["on", "copy", "off"].into_iter()), "\"on\", \"copy\" or \"off\"");
        assert_eq!(list_words(["a"].into_iter()), "\"a\"");
    }
}
