//! `Range: bytes=...` requests (RFC 9110, 14.1.2 and 14.2): one range is served; several are
//! answered with the whole file, which the RFC allows.

/// What to send for a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// The whole file (no `Range`, a malformed one, another unit, or several ranges).
    Full,
    /// Bytes `start..=end` (206).
    Part {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// No byte of the range exists (416).
    Unsatisfiable,
}

/// Interprets a `Range` header value for a file of `len` bytes.
pub(crate) fn parse(value: &str, len: u64) -> RangeRequest {
    let Some((unit, spec)) = value.trim().split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    match (number(first), number(last)) {
        // `bytes=-N`: the last N bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part { start: len - n.min(len), end: len - 1 }
            }
        }
        // `bytes=A-` and `bytes=A-B`.
        (Some(start), last_byte) if last.is_empty() || last_byte.is_some() => {
            let end = last_byte.unwrap_or(u64::MAX);
            if end < start {
                RangeRequest::Full
            } else if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part { start, end: end.min(len - 1) }
            }
        }
        _ => RangeRequest::Full,
    }
}

/// ASCII digits only (no sign, no spaces), fitting u64.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-99", 1000), Part { start: 0, end: 99 });
        assert_eq!(parse("bytes=100-", 1000), Part { start: 100, end: 999 });
        assert_eq!(parse("bytes=-100", 1000), Part { start: 900, end: 999 });
        assert_eq!(parse("bytes=-5000", 1000), Part { start: 0, end: 999 });
        assert_eq!(parse("bytes=990-5000", 1000), Part { start: 990, end: 999 });
        assert_eq!(parse("Bytes = 1-1", 10), Part { start: 1, end: 1 });
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=2000-3000", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse("bytes=-1", 0), Unsatisfiable);
    }

    #[test]
    fn ignored_forms_serve_everything() {
        for v in
            ["", "bytes", "bytes=", "bytes=-", "bytes=5-1", "items=0-1", "bytes=0-1,5-6", "bytes=a-b", "bytes=+1-2"]
        {
            assert_eq!(parse(v, 1000), Full, "{v:?}");
        }
        assert_eq!(parse("bytes=0-99999999999999999999", 10), Full, "overflow is malformed");
    }
}
