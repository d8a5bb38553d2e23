//! What `include PATTERN;` reads: the file-system side of `nginx_conf::parse_files`.
//!
//! As nginx (`ngx_conf_include`): a relative pattern is resolved against the directory of the
//! main configuration file (nginx's conf prefix when started with `-c FILE`), not against the
//! including file; a pattern with `*`, `?` or `[` is a glob (glob(3) rules: wildcards in any
//! path component, a leading `.` only matched by a literal one, matches sorted) that may match
//! nothing; a plain name that cannot be read is an error.
//!
//! One exception, kept from before sluice read includes: `include mime.types;` (any path
//! ending in `mime.types`) naming a file that does not exist is skipped with a warning,
//! because sluice's built-in MIME map already answers what that file would (a stock nginx.conf
//! copied without its `mime.types` keeps working). When the file exists it is read for real.

use std::path::{Path, PathBuf};

use nginx_conf::{Loader, Source};

/// Reads included files from the file system, relative paths against `prefix`.
pub(crate) struct FsLoader {
    prefix: PathBuf,
}

impl FsLoader {
    /// A loader for the main file `main`: relative includes resolve against its directory.
    pub(crate) fn for_main(main: &Path) -> FsLoader {
        let prefix = main.parent().map(Path::to_path_buf).unwrap_or_default();
        FsLoader { prefix }
    }
}

impl Loader for FsLoader {
    fn load(&mut self, pattern: &str) -> Result<Vec<Source>, String> {
        let path = self.prefix.join(pattern);
        if !is_glob(pattern) {
            if pattern.ends_with("mime.types") && !path.exists() {
                tracing::warn!(
                    "\"include {pattern}\" ignored: {} does not exist; sluice's built-in MIME type map answers",
                    path.display()
                );
                return Ok(Vec::new());
            }
            return read(&path).map(|s| vec![s]);
        }
        let found = glob(&path);
        if found.is_empty() {
            tracing::warn!("\"include {pattern}\" matches no file; ignored");
        }
        found.iter().map(|p| read(p)).collect()
    }
}

/// For configuration given as text (no file): includes read nothing, with a warning.
pub(crate) struct NoFiles;

impl Loader for NoFiles {
    fn load(&mut self, pattern: &str) -> Result<Vec<Source>, String> {
        tracing::warn!("\"include {pattern}\" ignored: the configuration is not read from a file");
        Ok(Vec::new())
    }
}

/// Largest configuration file read (a typo'd include of a video must not fill memory).
const MAX_FILE_BYTES: u64 = 16 << 20;

fn read(path: &Path) -> Result<Source, String> {
    let fail = |e: std::io::Error| format!("open() \"{}\" failed ({e})", path.display());
    let len = std::fs::metadata(path).map_err(fail)?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!("\"{}\" is larger than {} bytes", path.display(), MAX_FILE_BYTES));
    }
    let text = std::fs::read_to_string(path).map_err(fail)?;
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Source { name: path.display().to_string(), key: key.display().to_string(), text })
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The paths matching `pattern` (wildcards in any component), sorted; unreadable
/// directories match nothing.
pub(crate) fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for part in pattern.components() {
        let part = part.as_os_str().to_string_lossy();
        if !is_glob(&part) {
            found.iter_mut().for_each(|p| p.push(&*part));
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let listing = if dir.as_os_str().is_empty() { Path::new(".") } else { dir.as_path() };
            let Ok(entries) = std::fs::read_dir(listing) else { continue };
            let mut names: Vec<String> =
                entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.retain(|n| (!n.starts_with('.') || part.starts_with('.')) && matches(&part, n));
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.exists());
    found.sort();
    found
}

/// glob(3)'s matching of one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!a]` (or `[^a]`),
/// `\x` for a literal `x`. Iterative, with one backtracking point (the last `*`).
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class(&p, pi, n[ni]),
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == n[ni]).then_some(pi + 2),
            Some(&c) => (c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[at] == '['`: the index after the class when it
/// matches. An unclosed `[` is a literal `[`.
fn class(p: &[char], at: usize, c: char) -> Option<usize> {
    let mut i = at + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() && (first || p[i] != ']') {
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    if i >= p.len() {
        return (c == '[').then_some(at + 1);
    }
    (hit != negate).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        assert!(matches("*.conf", "rtmp.conf"));
        assert!(matches("*.conf", ".conf"));
        assert!(!matches("*.conf", "rtmp.conf~"));
        assert!(matches("*", "anything"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("[ab]*", "b.conf"));
        assert!(!matches("[!ab]*", "b.conf"));
        assert!(matches("[a-c]x", "bx"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(!matches("*a*b", "xxaxxbxx"));
        assert!(matches("\\*", "*"));
        assert!(matches("[", "["));
        assert!(matches("[]]", "]"));
    }
}
