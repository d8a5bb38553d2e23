//! Content-Type by file extension: the location's `types { }`, then sluice's built-in map
//! (what nginx's mime.types says for these, plus the streaming types it lacks), then
//! `default_type`.

use crate::config::Location;

/// The built-in map: lower-case extension → MIME type.
const BUILTIN: &[(&str, &str)] = &[
    // streaming
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("ts", "video/mp2t"),
    ("m4s", "video/iso.segment"),
    ("mp4", "video/mp4"),
    ("m4v", "video/mp4"),
    ("m4a", "audio/mp4"),
    ("aac", "audio/aac"),
    ("key", "application/octet-stream"),
    ("flv", "video/x-flv"),
    ("mpd", "application/dash+xml"),
    ("webm", "video/webm"),
    ("mp3", "audio/mpeg"),
    ("vtt", "text/vtt"),
    // web pages
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("js", "application/javascript"),
    ("mjs", "application/javascript"),
    ("json", "application/json"),
    ("xml", "text/xml"),
    ("xsl", "text/xml"),
    ("txt", "text/plain"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("svg", "image/svg+xml"),
    ("ico", "image/x-icon"),
    ("webp", "image/webp"),
    ("woff2", "font/woff2"),
    ("wasm", "application/wasm"),
];

/// The lower-cased extension of the last segment of `path` (`None` without a dot).
pub(crate) fn extension(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// The Content-Type of `path` in `loc`. An empty `types { }` turns the built-in map off (the
/// nginx idiom for "everything is `default_type`").
pub(crate) fn content_type<'a>(loc: &'a Location, path: &str) -> &'a str {
    let Some(ext) = extension(path) else {
        return &loc.default_type;
    };
    if let Some(types) = &loc.types {
        if let Some(mime) = types.get(&ext) {
            return mime;
        }
        if types.is_empty() {
            return &loc.default_type;
        }
    }
    builtin(&ext).unwrap_or(&loc.default_type)
}

/// The built-in type of a lower-case extension.
fn builtin(ext: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(e, _)| *e == ext).map(|(_, mime)| *mime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpServerConf;

    #[test]
    fn extensions() {
        assert_eq!(extension("/hls/a.M3U8").as_deref(), Some("m3u8"));
        assert_eq!(extension("/a.b/c"), None);
        assert_eq!(extension("/a."), None);
        assert_eq!(extension("/x.tar.gz").as_deref(), Some("gz"));
    }

    #[test]
    fn lookup_order() {
        let mut loc = HttpServerConf::default().fallback;
        assert_eq!(content_type(&loc, "/a.m3u8"), "application/vnd.apple.mpegurl");
        assert_eq!(content_type(&loc, "/a.TS"), "video/mp2t");
        assert_eq!(content_type(&loc, "/a.m4s"), "video/iso.segment");
        assert_eq!(content_type(&loc, "/a.unknown"), "text/plain");
        assert_eq!(content_type(&loc, "/README"), "text/plain");
        loc.types = Some([("ts".to_owned(), "video/x-test".to_owned())].into());
        loc.default_type = "application/octet-stream".into();
        assert_eq!(content_type(&loc, "/a.ts"), "video/x-test", "types first");
        assert_eq!(content_type(&loc, "/a.html"), "text/html", "then the built-in map");
        assert_eq!(content_type(&loc, "/a.bin"), "application/octet-stream", "then default_type");
        loc.types = Some(Default::default());
        assert_eq!(content_type(&loc, "/a.html"), "application/octet-stream", "empty types: default_type only");
    }

    #[test]
    fn builtin_covers_what_hls_and_pages_need() {
        for (ext, mime) in [
            ("mp4", "video/mp4"),
            ("m4a", "audio/mp4"),
            ("key", "application/octet-stream"),
            ("flv", "video/x-flv"),
            ("css", "text/css"),
            ("js", "application/javascript"),
            ("json", "application/json"),
            ("xml", "text/xml"),
            ("png", "image/png"),
            ("jpg", "image/jpeg"),
            ("svg", "image/svg+xml"),
            ("txt", "text/plain"),
        ] {
            assert_eq!(builtin(ext), Some(mime), "{ext}");
        }
    }
}
