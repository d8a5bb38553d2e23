//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the header a load
//! balancer writes at the start of each connection it forwards, naming the client it came
//! from. With `listen ... proxy_protocol;` every connection must start with one, and its
//! source address replaces the socket's peer (the balancer) for everything after: access
//! rules, callbacks, logs, stats and the API.
//!
//! This module is sans-IO: [`parse`] looks at the bytes received so far and says how long
//! the header is and whom it names, or that more bytes are needed. [`read`] is the socket
//! side (peek, then read exactly the header's bytes, under a timeout).
//!
//! | Spec | Where |
//! | --- | --- |
//! | proxy-protocol.txt 2.1 (v1 text header: `PROXY TCP4\|TCP6\|UNKNOWN ...\r\n`, 107 bytes at most) | [`parse_v1`] |
//! | proxy-protocol.txt 2.2 (v2 binary header: signature, version/command, family/transport, length, addresses, TLVs) | [`parse_v2`] |
//!
//! What is accepted, and why:
//! - v1 is read strictly: one space between fields, addresses as `std` parses them (no
//!   leading zeros in IPv4 octets, no zone in IPv6), ports in decimal without leading zeros
//!   and at most 65535, `\r\n` within 107 bytes. `UNKNOWN` (the balancer's own health check,
//!   or a family it cannot tell) keeps the socket's peer; what follows it on its line is
//!   ignored, as the spec says.
//! - v2: version 2; command `LOCAL` (health checks: keep the socket's peer) or `PROXY`;
//!   families `AF_INET`, `AF_INET6` over `STREAM` give the source address, `AF_UNSPEC`,
//!   `AF_UNIX` and `DGRAM` keep the socket's peer (as nginx does); undefined values of any
//!   field are refused (the spec says receivers must). TLVs are skipped unread.
//! - A v2 header is at most [`MAX_HEADER`] bytes (16 + length), nginx's
//!   `NGX_PROXY_PROTOCOL_MAX_HEADER`: room for the addresses and the TLVs balancers send
//!   (AWS's VPC endpoint id, Azure's link id, SSL details), far less than the 64 KiB the
//!   length field could claim.
//! - An IPv4-mapped IPv6 source (`::ffff:a.b.c.d`) becomes the IPv4 address, so that
//!   `allow`/`deny` rules written for IPv4 match it.

pub mod read;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, `\r\n` included (proxy-protocol.txt 2.1).
pub const V1_MAX: usize = 107;
/// The longest header accepted, either version (nginx's `NGX_PROXY_PROTOCOL_MAX_HEADER`).
pub const MAX_HEADER: usize = 4096;
/// The 12 bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 2 header's fixed part: signature, version/command, family/transport, length.
const V2_FIXED: usize = 16;
/// A version 1 header's first bytes.
const V1_PREFIX: &[u8] = b"PROXY ";

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// The header's length: the connection's own bytes start after it.
    pub consumed: usize,
    /// The client the header names; `None` when it names none (v1 `UNKNOWN`, v2 `LOCAL`,
    /// unspecified or unix families): the socket's peer stays the client.
    pub source: Option<SocketAddr>,
    /// 1 or 2.
    pub version: u8,
}

/// Why the bytes received are not (yet) a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A header so far: more bytes are needed.
    #[error("incomplete PROXY protocol header")]
    Incomplete,
    /// Neither signature: the peer speaks something else (a client that bypassed the balancer).
    #[error("no PROXY protocol header (the connection does not start with \"PROXY \" or the v2 signature)")]
    Missing,
    /// No `\r\n` within 107 bytes.
    #[error("PROXY v1 header longer than {V1_MAX} bytes")]
    V1TooLong,
    /// A v1 line that breaks the grammar.
    #[error("broken PROXY v1 header: {0}")]
    V1Broken(&'static str),
    /// A v2 version nibble other than 2.
    #[error("PROXY v2 header with version {0} (only 2 exists)")]
    V2Version(u8),
    /// A v2 command other than LOCAL (0) and PROXY (1).
    #[error("PROXY v2 header with undefined command {0}")]
    V2Command(u8),
    /// A v2 address family above 3 or transport above 2.
    #[error("PROXY v2 header with undefined family/transport byte {0:#04x}")]
    V2Family(u8),
    /// A v2 header longer than [`MAX_HEADER`].
    #[error("PROXY v2 header of {0} bytes (at most {MAX_HEADER} accepted)")]
    V2TooLong(usize),
    /// A v2 length too short for the addresses of its family.
    #[error("PROXY v2 header of length {len} is too short for its {family} addresses ({need} bytes)")]
    V2Short {
        /// The length field.
        len: usize,
        /// `AF_INET` or `AF_INET6`.
        family: &'static str,
        /// What the addresses take.
        need: usize,
    },
}

/// Reads the header at the start of `buf` (the connection's first bytes).
///
/// `Err(Error::Incomplete)` means every byte of `buf` belongs to a header not yet complete:
/// a caller may consume them all and wait for more. Any other error is final.
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    match buf.first() {
        None => Err(Error::Incomplete),
        Some(b'\r') => parse_v2(buf),
        Some(_) => parse_v1(buf),
    }
}

/// Whether `buf` starts like `prefix` as far as it goes (`Some(true)`: all of `prefix` is
/// there).
fn starts_like(buf: &[u8], prefix: &[u8]) -> Option<bool> {
    let n = buf.len().min(prefix.len());
    (buf[..n] == prefix[..n]).then_some(n == prefix.len())
}

/// Version 1: `PROXY TCP4 SRC DST SPORT DPORT\r\n`, `PROXY TCP6 ...`, `PROXY UNKNOWN ...\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Parsed, Error> {
    match starts_like(buf, V1_PREFIX) {
        None => return Err(Error::Missing),
        Some(false) => return Err(Error::Incomplete),
        Some(true) => {}
    }
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX { Err(Error::V1TooLong) } else { Err(Error::Incomplete) };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(Error::V1Broken("a line feed without carriage return"));
    }
    let line = std::str::from_utf8(&window[..lf - 1]).map_err(|_| Error::V1Broken("bytes that are not text"))?;
    let consumed = lf + 1;
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.get(1).copied() {
        // The spec: the receiver must ignore anything presented before the CRLF.
        Some("UNKNOWN") => None,
        Some(family @ ("TCP4" | "TCP6")) => Some(v1_source(family, &fields)?),
        _ => return Err(Error::V1Broken("the protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Parsed { consumed, source, version: 1 })
}

/// The source of a `TCP4`/`TCP6` line split at its spaces (destination checked as strictly).
fn v1_source(family: &str, fields: &[&str]) -> Result<SocketAddr, Error> {
    let [_, _, src, dst, sport, dport] = fields else {
        return Err(Error::V1Broken("not six fields separated by single spaces"));
    };
    let ip = |text: &str| -> Result<IpAddr, Error> {
        let parsed = match family {
            "TCP4" => text.parse::<Ipv4Addr>().map(IpAddr::V4),
            _ => text.parse::<Ipv6Addr>().map(IpAddr::V6),
        };
        parsed.map_err(|_| Error::V1Broken("an address that is not of its family"))
    };
    let src = ip(src)?;
    ip(dst)?;
    let sport = v1_port(sport)?;
    v1_port(dport)?;
    Ok(SocketAddr::new(src.to_canonical(), sport))
}

/// A port: decimal, no sign, no leading zero, at most 65535 (proxy-protocol.txt 2.1).
fn v1_port(text: &str) -> Result<u16, Error> {
    let bad = Error::V1Broken("a port that is not a number from 0 to 65535 without leading zeros");
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(bad);
    }
    text.parse().map_err(|_| bad)
}

/// `AF_UNSPEC`, `AF_INET`, `AF_INET6`, `AF_UNIX` (the high nibble of byte 13).
const FAMILIES: u8 = 4;
/// `UNSPEC`, `STREAM`, `DGRAM` (the low nibble of byte 13).
const TRANSPORTS: u8 = 3;
const AF_INET: u8 = 1;
const AF_INET6: u8 = 2;
const STREAM: u8 = 1;
const CMD_LOCAL: u8 = 0;
const CMD_PROXY: u8 = 1;
/// Source and destination addresses, then ports.
const INET_LEN: usize = 4 + 4 + 2 + 2;
const INET6_LEN: usize = 16 + 16 + 2 + 2;

/// Version 2: the signature, then version/command, family/transport, a big-endian length,
/// and that many bytes of addresses and TLVs.
fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    match starts_like(buf, &V2_SIGNATURE) {
        None => return Err(Error::Missing),
        Some(false) => return Err(Error::Incomplete),
        Some(true) => {}
    }
    // Each byte is checked as soon as it is there: garbage is refused without waiting.
    let Some(&ver_cmd) = buf.get(12) else { return Err(Error::Incomplete) };
    if ver_cmd >> 4 != 2 {
        return Err(Error::V2Version(ver_cmd >> 4));
    }
    let command = ver_cmd & 0x0F;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(Error::V2Command(command));
    }
    let Some(&fam_trans) = buf.get(13) else { return Err(Error::Incomplete) };
    let (family, transport) = (fam_trans >> 4, fam_trans & 0x0F);
    if family >= FAMILIES || transport >= TRANSPORTS {
        return Err(Error::V2Family(fam_trans));
    }
    let Some(len) = buf.get(14..16) else { return Err(Error::Incomplete) };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let consumed = V2_FIXED + len;
    if consumed > MAX_HEADER {
        return Err(Error::V2TooLong(consumed));
    }
    let short = |family, need| Error::V2Short { len, family, need };
    // A length too short for the addresses is wrong whatever follows: say so before waiting.
    if command == CMD_PROXY && transport == STREAM {
        match family {
            AF_INET if len < INET_LEN => return Err(short("AF_INET", INET_LEN)),
            AF_INET6 if len < INET6_LEN => return Err(short("AF_INET6", INET6_LEN)),
            _ => {}
        }
    }
    let Some(block) = buf.get(V2_FIXED..consumed) else { return Err(Error::Incomplete) };
    let source = match (command, transport, family) {
        (CMD_PROXY, STREAM, AF_INET) => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([block[8], block[9]])))
        }
        (CMD_PROXY, STREAM, AF_INET6) => {
            let octets: [u8; 16] = block[..16].try_into().unwrap_or_default();
            let ip = IpAddr::V6(Ipv6Addr::from(octets)).to_canonical();
            Some(SocketAddr::new(ip, u16::from_be_bytes([block[32], block[33]])))
        }
        // LOCAL (the balancer's own connection), AF_UNSPEC, AF_UNIX, DGRAM: no address to use.
        _ => None,
    };
    Ok(Parsed { consumed, source, version: 2 })
}

/// A header's first line made printable for a log line (nginx logs a broken header's text):
/// up to the first CR or LF, at most [`V1_MAX`] bytes, control bytes escaped.
pub fn excerpt(buf: &[u8]) -> String {
    let window = &buf[..buf.len().min(V1_MAX)];
    let end = window.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(window.len());
    crate::untrusted::for_log(&String::from_utf8_lossy(&window[..end])).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    /// A v2 header: command, family/transport byte, then the block (addresses and TLVs).
    pub(crate) fn v2(command: u8, fam_trans: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(fam_trans);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn inet(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut b = src.to_vec();
        b.extend_from_slice(&[192, 0, 2, 1]);
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&1935u16.to_be_bytes());
        b
    }

    fn inet6(src: Ipv6Addr, sport: u16) -> Vec<u8> {
        let mut b = src.octets().to_vec();
        b.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&1935u16.to_be_bytes());
        b
    }

    #[test]
    fn v1_tcp4_and_tcp6_name_the_source_and_leave_what_follows() {
        let mut input = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\r\n".to_vec();
        let header_len = input.len();
        input.extend_from_slice(&[3, 0, 0, 0]); // RTMP's C0 and C1 right behind
        let p = parse(&input).unwrap();
        assert_eq!(p, Parsed { consumed: header_len, source: addr("203.0.113.7:56324"), version: 1 });
        let p = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 0 65535\r\n").unwrap();
        assert_eq!(p.source, addr("[2001:db8::7]:0"));
        let p = parse(b"PROXY TCP6 ::ffff:203.0.113.7 ::1 1 2\r\n").unwrap();
        assert_eq!(p.source, addr("203.0.113.7:1"), "IPv4-mapped becomes IPv4");
    }

    #[test]
    fn v1_unknown_keeps_the_peer_and_ignores_the_rest_of_its_line() {
        for h in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", b"PROXY UNKNOWN junk\r\n"] {
            assert_eq!(parse(h), Ok(Parsed { consumed: h.len(), source: None, version: 1 }), "{h:?}");
        }
    }

    #[test]
    fn v1_longest_header_is_accepted_and_one_byte_more_is_not() {
        let src = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        // The spec's worst case: UNKNOWN followed by the longest TCP6 fields.
        let longest = format!("PROXY UNKNOWN {src} {src} 65535 65535\r\n");
        assert_eq!(longest.len(), V1_MAX);
        assert_eq!(parse(longest.as_bytes()).unwrap().consumed, V1_MAX);
        let tcp6 = format!("PROXY TCP6 {src} {src} 65535 65535\r\n");
        assert_eq!(parse(tcp6.as_bytes()).unwrap().source, addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"));
        let mut long = format!("PROXY UNKNOWN {}", "x".repeat(V1_MAX)).into_bytes();
        assert_eq!(parse(&long[..V1_MAX - 1]), Err(Error::Incomplete));
        assert_eq!(parse(&long[..V1_MAX]), Err(Error::V1TooLong));
        long.truncate(V1_MAX - 1);
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse(&long), Err(Error::V1TooLong), "the CRLF ends past byte 107");
    }

    #[test]
    fn v1_broken_lines_are_refused() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\n",
            b"PROXY TCP4 203.0.113.7  192.0.2.1 56324 1935\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935 9\r\n",
            b"PROXY TCP4 203.0.113.07 192.0.2.1 56324 1935\r\n",
            b"PROXY TCP4 2001:db8::7 192.0.2.1 56324 1935\r\n",
            b"PROXY TCP6 203.0.113.7 2001:db8::1 56324 1935\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 056324 1935\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 1935\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 +1 1935\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 \r\n",
            b"PROXY TCP6 fe80::1%1 ::1 1 2\r\n",
            b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
            b"PROXY tcp4 203.0.113.7 192.0.2.1 1 2\r\n",
            b"PROXY \xff\r\n",
        ];
        for h in bad {
            assert!(matches!(parse(h), Err(Error::V1Broken(_))), "{:?}: {:?}", String::from_utf8_lossy(h), parse(h));
        }
    }

    #[test]
    fn other_protocols_are_refused_at_their_first_byte_that_differs() {
        for h in [&[3u8, 0, 0, 0][..], b"GET / HTTP/1.1\r\n", b"PROXX", b"\x16\x03\x01", b"\r\n\r\n\0\r\nQUIX", b"P R"]
        {
            assert_eq!(parse(h), Err(Error::Missing), "{h:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let headers = [
            b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\r\n".to_vec(),
            v2(1, 0x11, &inet([203, 0, 113, 7], 56324)),
            v2(1, 0x21, &inet6("2001:db8::7".parse().unwrap(), 1)),
            v2(0, 0x00, &[]),
        ];
        for h in headers {
            for n in 0..h.len() {
                assert_eq!(parse(&h[..n]), Err(Error::Incomplete), "{h:?} cut at {n}");
            }
            assert_eq!(parse(&h).unwrap().consumed, h.len());
        }
    }

    #[test]
    fn v2_proxy_inet_and_inet6_name_the_source() {
        let mut h = v2(1, 0x11, &inet([203, 0, 113, 7], 56324));
        h.extend_from_slice(b"after");
        assert_eq!(parse(&h), Ok(Parsed { consumed: 28, source: addr("203.0.113.7:56324"), version: 2 }));
        let h = v2(1, 0x21, &inet6("2001:db8::7".parse().unwrap(), 4000));
        assert_eq!(parse(&h), Ok(Parsed { consumed: 52, source: addr("[2001:db8::7]:4000"), version: 2 }));
        let h = v2(1, 0x21, &inet6("::ffff:203.0.113.7".parse().unwrap(), 4000));
        assert_eq!(parse(&h).unwrap().source, addr("203.0.113.7:4000"));
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut block = inet([203, 0, 113, 7], 1);
        // PP2_TYPE_AWS (0xEA) with a VPC endpoint id, then PP2_TYPE_NOOP padding.
        block.extend_from_slice(&[0xEA, 0x00, 0x17, 0x01]);
        block.extend_from_slice(b"vpce-08d2bf15fac5001c9");
        block.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]);
        let h = v2(1, 0x11, &block);
        assert_eq!(parse(&h), Ok(Parsed { consumed: h.len(), source: addr("203.0.113.7:1"), version: 2 }));
    }

    #[test]
    fn v2_local_unspec_unix_and_dgram_keep_the_peer() {
        let unix = [0u8; 216];
        for (command, fam_trans, block) in [
            (0, 0x11, inet([203, 0, 113, 7], 1)), // LOCAL: the addresses are ignored
            (0, 0x00, Vec::new()),
            (1, 0x00, Vec::new()),
            (1, 0x31, unix.to_vec()),
            (1, 0x12, inet([203, 0, 113, 7], 1)),
        ] {
            let h = v2(command, fam_trans, &block);
            assert_eq!(
                parse(&h),
                Ok(Parsed { consumed: h.len(), source: None, version: 2 }),
                "{command} {fam_trans:#x}"
            );
        }
    }

    #[test]
    fn v2_undefined_values_and_short_blocks_are_refused_without_waiting() {
        let mut h = v2(1, 0x11, &inet([203, 0, 113, 7], 1));
        h[12] = 0x11;
        assert_eq!(parse(&h[..13]), Err(Error::V2Version(1)));
        h[12] = 0x22;
        assert_eq!(parse(&h[..13]), Err(Error::V2Command(2)));
        h[12] = 0x21;
        for bad in [0x41, 0x13, 0xF0] {
            h[13] = bad;
            assert_eq!(parse(&h[..14]), Err(Error::V2Family(bad)));
        }
        let h = v2(1, 0x11, &[0; 11]);
        assert_eq!(parse(&h[..16]), Err(Error::V2Short { len: 11, family: "AF_INET", need: 12 }));
        let h = v2(1, 0x21, &[0; 12]);
        assert!(matches!(parse(&h), Err(Error::V2Short { family: "AF_INET6", .. })));
    }

    #[test]
    fn v2_length_is_bounded() {
        let fits = v2(1, 0x11, &[0; MAX_HEADER - V2_FIXED]);
        assert_eq!(parse(&fits).unwrap().consumed, MAX_HEADER);
        let over = v2(1, 0x11, &[0; MAX_HEADER - V2_FIXED + 1]);
        assert_eq!(parse(&over[..16]), Err(Error::V2TooLong(MAX_HEADER + 1)), "refused from the length alone");
        let mut most = v2(0, 0, &[]);
        most[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&most), Err(Error::V2TooLong(V2_FIXED + 65535)));
    }

    #[test]
    fn excerpt_is_the_first_line_made_printable() {
        assert_eq!(excerpt(b"PROXY TCP4 x\r\nmore"), "PROXY TCP4 x");
        assert_eq!(excerpt(b"\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(excerpt(&[b'a'; 500]).len(), V1_MAX);
    }
}
