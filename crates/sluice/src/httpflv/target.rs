//! Which stream an HTTP-FLV request asks for: the winshining fork's query
//! (`?app=A&stream=S[&port=P]`, nginx-http-flv-module's `ngx_http_flv_live_handler`) or the path
//! `/APP/NAME.flv`. Pure parsing; the names are checked later by the policy
//! ([`crate::untrusted::stream_name`]).

use std::sync::Arc;

use axum::http::StatusCode;

use crate::form::percent_decode;
use crate::server::ServerCtx;

/// A stream asked for over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The application.
    pub app: String,
    /// The stream name (may be empty in the query form, as the fork allows; the policy refuses it).
    pub name: String,
    /// The rest of the query, as RTMP players' stream arguments reach callbacks and signed keys.
    pub args: String,
    /// `port=`: the RTMP server block listening on it; `None` is the first block.
    pub port: Option<u16>,
}

/// Why a request names no stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Neither `?app=` nor a `/APP/NAME.flv` path.
    #[error("not an FLV stream URL (use /APP/NAME.flv or ?app=APP&stream=NAME)")]
    NotFlv,
    /// The query form without `app` (nginx-http-flv-module answers 500; the request is at fault).
    #[error("missing app in the query (?app=APP&stream=NAME)")]
    MissingApp,
    /// `port=` that is not a port number.
    #[error("bad port in the query")]
    BadPort,
}

impl TargetError {
    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            TargetError::NotFlv => StatusCode::NOT_FOUND,
            TargetError::MissingApp | TargetError::BadPort => StatusCode::BAD_REQUEST,
        }
    }
}

impl Target {
    /// The stream `path` (normalized, decoded) and `query` (raw) ask for: the query form when the
    /// query names `app` or `stream`, else the path form.
    pub fn parse(path: &str, query: &str) -> Result<Target, TargetError> {
        let (mut app, mut stream, mut port, mut rest) = (None, None, None, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "app" => app = Some(percent_decode(value)),
                "stream" => stream = Some(percent_decode(value)),
                "port" => port = Some(value.parse::<u16>().map_err(|_| TargetError::BadPort)?),
                _ => rest.push(pair),
            }
        }
        let args = rest.join("&");
        if app.is_some() || stream.is_some() {
            let app = app.filter(|a| !a.is_empty()).ok_or(TargetError::MissingApp)?;
            return Ok(Target { app, name: stream.unwrap_or_default(), args, port });
        }
        let (app, name) = path
            .strip_suffix(".flv")
            .and_then(|p| p.strip_prefix('/'))
            .and_then(|p| p.rsplit_once('/'))
            .filter(|(app, name)| !app.is_empty() && !name.is_empty())
            .ok_or(TargetError::NotFlv)?;
        Ok(Target { app: app.to_owned(), name: name.to_owned(), args, port })
    }

    /// The server block that plays it: the one listening on `port`, or the first one.
    pub fn server<'a>(&self, servers: &'a [Arc<ServerCtx>]) -> Option<&'a Arc<ServerCtx>> {
        match self.port {
            None => servers.first(),
            Some(port) => servers.iter().find(|s| s.conf.listen.iter().any(|a| a.port() == port)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(app: &str, name: &str, args: &str, port: Option<u16>) -> Target {
        Target { app: app.into(), name: name.into(), args: args.into(), port }
    }

    #[test]
    fn the_path_form_names_app_and_stream() {
        assert_eq!(Target::parse("/live/cam.flv", ""), Ok(target("live", "cam", "", None)));
        assert_eq!(
            Target::parse("/live/cam.flv", "token=x&port=1936"),
            Ok(target("live", "cam", "token=x", Some(1936)))
        );
        // An application name with a slash, as nginx-rtmp allows.
        assert_eq!(Target::parse("/a/b/cam.flv", ""), Ok(target("a/b", "cam", "", None)));
        for bad in ["/cam.flv", "/live/.flv", "/live/cam", "/", "//cam.flv"] {
            assert_eq!(Target::parse(bad, ""), Err(TargetError::NotFlv), "{bad}");
        }
    }

    #[test]
    fn the_query_form_is_the_winshining_forks() {
        assert_eq!(Target::parse("/live", "app=live&stream=cam"), Ok(target("live", "cam", "", None)));
        assert_eq!(
            Target::parse("/x", "port=1935&app=my%20app&stream=c+d&e=1&st=abc"),
            Ok(target("my app", "c d", "e=1&st=abc", Some(1935)))
        );
        // A missing stream is "" (the policy refuses the name); a missing app is the client's fault.
        assert_eq!(Target::parse("/live", "app=live"), Ok(target("live", "", "", None)));
        assert_eq!(Target::parse("/live", "stream=cam"), Err(TargetError::MissingApp));
        assert_eq!(Target::parse("/live", "app=&stream=cam"), Err(TargetError::MissingApp));
        assert_eq!(Target::parse("/live", "app=a&port=99999"), Err(TargetError::BadPort));
        assert_eq!(TargetError::MissingApp.status(), StatusCode::BAD_REQUEST);
    }
}
