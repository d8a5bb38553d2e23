//! Signed stream keys and static publish keys: access control with no callback backend (a
//! sluice extension; nginx-rtmp users have asked for it for years).
//!
//! | directive | where | what |
//! |---|---|---|
//! | `auth_secret SECRET` | rtmp, server, application | HMAC key of signed stream keys |
//! | `auth publish\|play\|both\|off` | rtmp, server, application | what needs a token once `auth_secret` is set (`publish`) |
//! | `publish_key STREAM SECRET` | rtmp, server, application | `STREAM` is published only as `STREAM?key=SECRET` |
//!
//! A signed key is the query `?expires=UNIX&token=T` on the stream name, where `UNIX` is the
//! expiry time in seconds since 1970 and
//!
//! ```text
//! T = base64url_nopad(HMAC-SHA256(SECRET, "ACTION\nAPP\nNAME\nUNIX"))
//! ```
//!
//! with `ACTION` `publish` or `play`, `APP` the application and `NAME` the stream name without
//! its query, joined by newlines (`publish\nlive\nstream\n1767225600`). The action is signed so
//! that a viewer's play token cannot publish (and a publisher's key handed to players cannot
//! be reused to publish elsewhere); newlines cannot occur in any of the parts, so no two
//! different requests share a signed string. `sluice token` prints such URLs. Tokens and keys
//! are compared in constant time. The query may also come with the application
//! (`rtmp://host/live?key=...`), where some tools put it.
//!
//! When a stream needs a token or has a `publish_key`, either one that is valid lets it in.

use crate::form::percent_decode;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{AccessConf, Action};
use crate::untrusted::for_log;

/// Query argument carrying the expiry time.
pub const EXPIRES_ARG: &str = "expires";
/// Query argument carrying the signature.
pub const TOKEN_ARG: &str = "token";
/// Query argument carrying a static publish key.
pub const KEY_ARG: &str = "key";

/// Why a client's credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A token is required and none was given.
    #[error("no token: add ?{EXPIRES_ARG}=UNIX&{TOKEN_ARG}=... (see `sluice token`)")]
    MissingToken,
    /// `expires` is not a number of seconds.
    #[error("malformed \"{EXPIRES_ARG}\" value {0:?}")]
    BadExpires(String),
    /// The token has expired.
    #[error("token expired {0} s ago")]
    Expired(u64),
    /// The signature does not match (wrong secret, other stream or tampered expiry).
    #[error("wrong token")]
    BadToken,
    /// A valid token, but signed for the other action (a play token used to publish).
    #[error("token is for {signed}, not {asked}")]
    WrongAction {
        /// What the token was signed for.
        signed: &'static str,
        /// What the client asked to do.
        asked: &'static str,
    },
    /// The stream has a `publish_key` and no key was given.
    #[error("no publish key: publish to {0}?{KEY_ARG}=SECRET")]
    MissingKey(String),
    /// The key given is not the stream's.
    #[error("wrong publish key for {0}")]
    BadKey(String),
}

impl AuthError {
    /// True for failures of the signed-token scheme (as opposed to publish keys).
    pub fn is_token(&self) -> bool {
        !matches!(self, AuthError::MissingKey(_) | AuthError::BadKey(_))
    }
}

/// How a client was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOk {
    /// Nothing is required for this stream and action.
    NotRequired,
    /// A valid signed token.
    Token,
    /// The stream's publish key.
    PublishKey,
}

/// The signed string: `ACTION\nAPP\nNAME\nEXPIRES`.
pub fn signed_string(action: Action, app: &str, name: &str, expires: u64) -> String {
    format!("{}\n{app}\n{name}\n{expires}", action.as_str())
}

/// The token allowing `action` on `app/name` until `expires` (seconds since 1970).
pub fn sign(secret: &str, action: Action, app: &str, name: &str, expires: u64) -> String {
    base64url(&mac(secret, action, app, name, expires).finalize().into_bytes())
}

fn mac(secret: &str, action: Action, app: &str, name: &str, expires: u64) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signed_string(action, app, name, expires).as_bytes());
    mac
}

/// The query to append to a stream name: `expires=..&token=..`.
pub fn token_query(secret: &str, action: Action, app: &str, name: &str, expires: u64) -> String {
    format!("{EXPIRES_ARG}={expires}&{TOKEN_ARG}={}", sign(secret, action, app, name, expires))
}

/// Checks `?expires=..&token=..` in `args` for `action` on `app/name` at time `now` (seconds
/// since 1970).
pub fn verify_token(
    secret: &str,
    action: Action,
    app: &str,
    name: &str,
    args: &str,
    now: u64,
) -> Result<(), AuthError> {
    let (Some(expires), Some(token)) = (query_arg(args, EXPIRES_ARG), query_arg(args, TOKEN_ARG)) else {
        return Err(AuthError::MissingToken);
    };
    let expires_at: u64 = match expires.parse() {
        Ok(n) if expires.bytes().all(|b| b.is_ascii_digit()) => n,
        // The client's text goes into the refusal's log line: escaped and capped.
        _ => return Err(AuthError::BadExpires(for_log(&expires).into_owned())),
    };
    let Some(sig) = base64url_decode(&token) else { return Err(AuthError::BadToken) };
    // `verify_slice` compares in constant time.
    if mac(secret, action, app, name, expires_at).verify_slice(&sig).is_err() {
        // Only to say why: the client holds this token already, so naming its action tells
        // it nothing new, and saves a user hours of "wrong token".
        let other = match action {
            Action::Publish => Action::Play,
            Action::Play => Action::Publish,
        };
        return match mac(secret, other, app, name, expires_at).verify_slice(&sig) {
            Ok(()) => Err(AuthError::WrongAction { signed: other.as_str(), asked: action.as_str() }),
            Err(_) => Err(AuthError::BadToken),
        };
    }
    if now > expires_at {
        return Err(AuthError::Expired(now - expires_at));
    }
    Ok(())
}

/// Checks a client's credentials for `action` on `app/name`. `args` is the stream name's
/// query, `connect_args` the query that came with the application (either may carry them).
pub fn authorize(
    conf: &AccessConf,
    action: Action,
    app: &str,
    name: &str,
    args: &str,
    connect_args: &str,
    now: u64,
) -> Result<AuthOk, AuthError> {
    let key = match action {
        Action::Publish => conf.publish_keys.iter().find(|(stream, _)| stream == name).map(|(_, k)| k.as_str()),
        Action::Play => None,
    };
    let secret = conf.auth_secret.as_deref().filter(|_| conf.auth.covers(action));
    if key.is_none() && secret.is_none() {
        return Ok(AuthOk::NotRequired);
    }
    // The stream name's query first; the application's when the stream's has no credentials.
    let pick = |arg: &str| if query_arg(args, arg).is_some() { args } else { connect_args };
    let mut first_error = None;
    if let Some(expected) = key {
        match query_arg(pick(KEY_ARG), KEY_ARG) {
            Some(given) if ct_eq(given.as_bytes(), expected.as_bytes()) => return Ok(AuthOk::PublishKey),
            Some(_) => first_error = Some(AuthError::BadKey(for_log(name).into_owned())),
            None => first_error = Some(AuthError::MissingKey(for_log(name).into_owned())),
        }
    }
    if let Some(secret) = secret {
        match verify_token(secret, action, app, name, pick(TOKEN_ARG), now) {
            Ok(()) => return Ok(AuthOk::Token),
            // A key that was given but wrong says more than a token that was not given.
            Err(AuthError::MissingToken) if matches!(first_error, Some(AuthError::BadKey(_))) => {}
            Err(e) => first_error = Some(e),
        }
    }
    Err(first_error.unwrap_or(AuthError::MissingToken))
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guess was right. Lengths are not secret.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The value of `key` in a query string (`a=1&key=x`), percent-decoded; the first one wins.
pub fn query_arg(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 4648, 5).
pub fn base64url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64url without padding (trailing `=` tolerated); `None` when malformed.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = B64URL.iter().position(|&x| x == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        for i in 0..bytes {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthScope, Config};

    const NOW: u64 = 1_767_225_600;

    fn conf(body: &str) -> AccessConf {
        let text = format!("rtmp {{ server {{ application live {{ {body} }} }} }}");
        Config::parse(&text, "t").unwrap().servers[0].apps[0].access.clone()
    }

    #[test]
    fn base64url_round_trips_and_matches_rfc4648() {
        // RFC 4648, 10 (base64url differs only in `-_`, and padding is dropped).
        for (plain, enc) in
            [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")]
        {
            assert_eq!(base64url(plain.as_bytes()), enc);
            assert_eq!(base64url_decode(enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url_decode("Zg=="), Some(b"f".to_vec()));
        assert_eq!(base64url_decode("Z"), None);
        assert_eq!(base64url_decode("Zm9v+A"), None);
    }

    #[test]
    fn token_is_hmac_sha256_of_action_app_name_expires() {
        // Computed independently, as README shows: printf 'publish\nlive\nstream\n1767225600'
        // | openssl dgst -sha256 -hmac s3cret -binary | basenc --base64url | tr -d '='
        assert_eq!(signed_string(Action::Publish, "live", "stream", NOW), "publish\nlive\nstream\n1767225600");
        assert_eq!(signed_string(Action::Play, "live", "stream", NOW), "play\nlive\nstream\n1767225600");
        assert_eq!(
            sign("s3cret", Action::Publish, "live", "stream", NOW),
            "jYdDkE56-b6JQ7RRaOVhgw86utE-_Ikkee8zvu7_K_w"
        );
        assert_eq!(sign("s3cret", Action::Play, "live", "stream", NOW), "U3DwaYMZ1Kf1z4XQr9UO81C43rIBB8setF4oa1SNWQA");
    }

    #[test]
    fn valid_tokens_pass_until_they_expire() {
        let q = token_query("s3cret", Action::Publish, "live", "cam", NOW + 60);
        let check = |args: &str, now: u64| verify_token("s3cret", Action::Publish, "live", "cam", args, now);
        assert_eq!(check(&q, NOW), Ok(()));
        assert_eq!(check(&q, NOW + 60), Ok(()));
        assert_eq!(check(&q, NOW + 61), Err(AuthError::Expired(1)));
        // Other query arguments around it do not matter.
        assert_eq!(check(&format!("a=1&{q}&b=2"), NOW), Ok(()));
    }

    #[test]
    fn tokens_are_bound_to_their_action() {
        let play = token_query("s3cret", Action::Play, "live", "cam", NOW + 60);
        let publish = token_query("s3cret", Action::Publish, "live", "cam", NOW + 60);
        let verify = |action, args: &str| verify_token("s3cret", action, "live", "cam", args, NOW);
        assert_eq!(verify(Action::Play, &play), Ok(()));
        assert_eq!(verify(Action::Publish, &publish), Ok(()));
        assert_eq!(verify(Action::Publish, &play), Err(AuthError::WrongAction { signed: "play", asked: "publish" }));
        assert_eq!(verify(Action::Play, &publish), Err(AuthError::WrongAction { signed: "publish", asked: "play" }));
        assert_eq!(
            AuthError::WrongAction { signed: "play", asked: "publish" }.to_string(),
            "token is for play, not publish"
        );
        // The old scheme's string ("live/cam:UNIX") signs neither action.
        let old = base64url(&{
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"s3cret").unwrap();
            m.update(format!("live/cam:{}", NOW + 60).as_bytes());
            m.finalize().into_bytes()
        });
        let old = format!("expires={}&token={old}", NOW + 60);
        assert_eq!(verify(Action::Publish, &old), Err(AuthError::BadToken));
        assert_eq!(verify(Action::Play, &old), Err(AuthError::BadToken));
        // With `auth both`, a viewer's token lets it watch and nothing more.
        let c = conf("auth_secret s3cret; auth both;");
        assert_eq!(authorize(&c, Action::Play, "live", "cam", &play, "", NOW), Ok(AuthOk::Token));
        let refused = authorize(&c, Action::Publish, "live", "cam", &play, "", NOW);
        assert_eq!(refused, Err(AuthError::WrongAction { signed: "play", asked: "publish" }));
        assert!(refused.unwrap_err().is_token());
        assert_eq!(authorize(&c, Action::Publish, "live", "cam", "", &play, NOW).map_err(|e| e.is_token()), Err(true));
    }

    #[test]
    fn tampered_tokens_fail() {
        let expires = NOW + 60;
        let token = sign("s3cret", Action::Publish, "live", "cam", expires);
        let check = |secret: &str, app: &str, name: &str, args: &str| {
            verify_token(secret, Action::Publish, app, name, args, NOW)
        };
        let good = format!("expires={expires}&token={token}");
        assert_eq!(check("other", "live", "cam", &good), Err(AuthError::BadToken));
        assert_eq!(check("s3cret", "live", "cam2", &good), Err(AuthError::BadToken));
        assert_eq!(check("s3cret", "vod", "cam", &good), Err(AuthError::BadToken));
        // Pushing the expiry out breaks the signature.
        let later = format!("expires={}&token={token}", expires + 3600);
        assert_eq!(check("s3cret", "live", "cam", &later), Err(AuthError::BadToken));
        let mut flipped = token.clone().into_bytes();
        flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
        let flipped = format!("expires={expires}&token={}", String::from_utf8(flipped).unwrap());
        assert_eq!(check("s3cret", "live", "cam", &flipped), Err(AuthError::BadToken));
        let short = format!("expires={expires}&token={}", &token[..20]);
        assert_eq!(check("s3cret", "live", "cam", &short), Err(AuthError::BadToken));
        assert_eq!(
            check("s3cret", "live", "cam", &format!("expires=soon&token={token}")),
            Err(AuthError::BadExpires("soon".into()))
        );
        assert_eq!(
            check("s3cret", "live", "cam", &format!("expires=-1&token={token}")),
            Err(AuthError::BadExpires("-1".into()))
        );
        // What the client sent reaches the log line of the refusal escaped and capped.
        let long = format!("expires=1\n{}&token={token}", "9".repeat(100_000));
        let Err(AuthError::BadExpires(shown)) = check("s3cret", "live", "cam", &long) else { panic!() };
        assert!(shown.starts_with("1\\n99") && shown.len() < 300, "{} bytes", shown.len());
        assert_eq!(check("s3cret", "live", "cam", "key=x"), Err(AuthError::MissingToken));
        assert_eq!(check("s3cret", "live", "cam", &format!("token={token}")), Err(AuthError::MissingToken));
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn query_args_are_decoded() {
        assert_eq!(query_arg("a=1&key=s%20x&key=2", "key"), Some("s x".into()));
        assert_eq!(query_arg("flag&b=", "flag"), Some(String::new()));
        assert_eq!(query_arg("a=%zz%", "a"), Some("%zz%".into()));
        assert_eq!(query_arg("", "a"), None);
    }

    #[test]
    fn auth_scope_decides_what_needs_a_token() {
        let c = conf("auth_secret s3cret;");
        assert_eq!(c.auth, AuthScope::Publish);
        assert_eq!(authorize(&c, Action::Publish, "live", "x", "", "", NOW), Err(AuthError::MissingToken));
        assert_eq!(authorize(&c, Action::Play, "live", "x", "", "", NOW), Ok(AuthOk::NotRequired));
        let c = conf("auth_secret s3cret; auth both;");
        assert_eq!(authorize(&c, Action::Play, "live", "x", "", "", NOW), Err(AuthError::MissingToken));
        let q = token_query("s3cret", Action::Play, "live", "x", NOW + 5);
        assert_eq!(authorize(&c, Action::Play, "live", "x", &q, "", NOW), Ok(AuthOk::Token));
        // The token may come with the application instead (`rtmp://host/live?expires=..`).
        assert_eq!(authorize(&c, Action::Play, "live", "x", "", &q, NOW), Ok(AuthOk::Token));
        let c = conf("auth_secret s3cret; auth off;");
        assert_eq!(authorize(&c, Action::Publish, "live", "x", "", "", NOW), Ok(AuthOk::NotRequired));
        let err = Config::parse("rtmp { server { application a { auth play; } } }", "t").unwrap_err();
        assert!(err.to_string().contains("\"auth\" needs \"auth_secret\""), "{err}");
    }

    #[test]
    fn publish_keys_guard_their_streams() {
        let c = conf("publish_key studio hunter2; publish_key backup other;");
        let ok = authorize(&c, Action::Publish, "live", "studio", "key=hunter2", "", NOW);
        assert_eq!(ok, Ok(AuthOk::PublishKey));
        assert_eq!(
            authorize(&c, Action::Publish, "live", "studio", "key=hunter3", "", NOW),
            Err(AuthError::BadKey("studio".into()))
        );
        assert_eq!(
            authorize(&c, Action::Publish, "live", "studio", "", "", NOW),
            Err(AuthError::MissingKey("studio".into()))
        );
        assert_eq!(
            authorize(&c, Action::Publish, "live", "backup", "key=hunter2", "", NOW),
            Err(AuthError::BadKey("backup".into()))
        );
        // Unlisted streams and players need nothing.
        assert_eq!(authorize(&c, Action::Publish, "live", "other", "", "", NOW), Ok(AuthOk::NotRequired));
        assert_eq!(authorize(&c, Action::Play, "live", "studio", "", "", NOW), Ok(AuthOk::NotRequired));
        // OBS with the key in the server URL: rtmp://host/live?key=hunter2
        assert_eq!(authorize(&c, Action::Publish, "live", "studio", "", "key=hunter2", NOW), Ok(AuthOk::PublishKey));
    }

    #[test]
    fn key_or_token_either_is_enough() {
        let c = conf("auth_secret s3cret; publish_key studio hunter2;");
        let token = token_query("s3cret", Action::Publish, "live", "studio", NOW + 5);
        assert_eq!(authorize(&c, Action::Publish, "live", "studio", &token, "", NOW), Ok(AuthOk::Token));
        assert_eq!(authorize(&c, Action::Publish, "live", "studio", "key=hunter2", "", NOW), Ok(AuthOk::PublishKey));
        assert_eq!(
            authorize(&c, Action::Publish, "live", "studio", "key=bad", "", NOW),
            Err(AuthError::BadKey("studio".into()))
        );
        let expired = token_query("s3cret", Action::Publish, "live", "studio", NOW - 5);
        assert_eq!(authorize(&c, Action::Publish, "live", "studio", &expired, "", NOW), Err(AuthError::Expired(5)));
    }
}
