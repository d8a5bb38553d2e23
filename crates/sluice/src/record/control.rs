//! nginx-rtmp's control API for recorders (`ngx_rtmp_control_module.c`), served in HTTP
//! locations with `rtmp_control`: `.../record/start?app=APP&name=NAME&rec=REC` opens a
//! recorder's file, `.../record/stop?...` closes it.
//!
//! As in nginx-rtmp: `app` and `name` narrow the streams (all when left out), `rec` names the
//! recorder (the application's own when left out), `addr` and `clientid` narrow the
//! publishers, `srv` is the rtmp server's index. The answer is `200` with the path of the
//! file (of the last stream acted on), `204` when no stream was recorded or the recorder was
//! already started or stopped, and `500` with nginx-rtmp's message (`Recorder not found`,
//! `Undefined method`, `Recorder error`, `Server index out of range`) otherwise.
//!
//! `.../drop/publisher|subscriber|client?srv=&app=&name=&addr=&clientid=` closes the matching
//! publishers, players or both (exact matches, clients in a live stream of server block `srv`
//! only) through the clients registry, and answers `200` with how many as a decimal number;
//! `500 Undefined filter` for another method.
//!
//! `.../redirect/publisher|subscriber|client?newname=NEW&srv=&app=&name=&addr=&clientid=` moves
//! the matching clients to stream `NEW` (a `?` in it starts the new stream's arguments, as in
//! nginx-rtmp): each ends its publish or play and starts it again under the new name through
//! the same path as a client's own `publish`/`play` (access rules, signed keys, `on_publish`/
//! `on_play`). Answers `200` with how many were told. `NEW` is client input: a missing,
//! invalid or over-long one is refused with `500` naming why before any client is touched.

use crate::form::percent_decode;
use crate::untrusted::{self, for_log, redact_query};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use std::path::PathBuf;

use super::{RecordError, Recorders};
use crate::clients::{Clients, Filter, Method};
use crate::config::RtmpControl;

/// Answers a request for `path` in a location with `rtmp_control`; `None` when the path is no
/// control request (the location's files are served then).
pub async fn respond(
    recorders: &Recorders,
    clients: &Clients,
    sections: RtmpControl,
    path: &str,
    query: Option<&str>,
) -> Option<Response> {
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let (method, section) = (parts.next()?, parts.next()?);
    match section {
        "record" if sections.record => Some(record(recorders, method, &Args::parse(query)).await),
        "drop" if sections.drop => Some(drop_clients(clients, recorders.servers(), method, &Args::parse(query))),
        "redirect" if sections.redirect => Some(redirect(clients, recorders.servers(), method, &Args::parse(query))),
        _ => None,
    }
}

async fn record(recorders: &Recorders, method: &str, args: &Args) -> Response {
    let start = match method {
        "start" => true,
        "stop" => false,
        _ => return error("Undefined method"),
    };
    if server_index(args, recorders.servers()).is_none() {
        return error("Server index out of range");
    }
    let recorder = args.get("rec").unwrap_or_default();
    let mut path = None;
    for (key, client) in recorders.publishers(args.get("app"), args.get("name")) {
        if args.get("addr").is_some_and(|a| a != client.addr.ip().to_string()) {
            continue;
        }
        if args.get("clientid").is_some_and(|id| id != client.id.to_string()) {
            continue;
        }
        match start_or_stop(recorders, &key.app, &key.name, recorder, start).await {
            RecordOutcome::Done(p) => path = Some(p),
            // nginx-rtmp: already open or closed is no error, and no path.
            RecordOutcome::Unchanged | RecordOutcome::NotPublished(_) => {}
            RecordOutcome::UnknownRecorder(_) => return error("Recorder not found"),
            RecordOutcome::Failed(e) => return error(&format!("Recorder error: {e}")),
        }
    }
    match path {
        Some(p) => text(StatusCode::OK, &p.display().to_string()),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// What starting or stopping one stream's recorder did: the one reading of [`RecordError`]
/// that both this control API and the JSON API (`crate::api`) answer from.
#[derive(Debug)]
pub(crate) enum RecordOutcome {
    /// The recorder's file was opened or closed: its path.
    Done(PathBuf),
    /// It was open or closed already (nginx-rtmp: no error, and no path).
    Unchanged,
    /// The stream is not published, or its application records nothing.
    NotPublished(RecordError),
    /// The application has no recorder of that name.
    UnknownRecorder(RecordError),
    /// Opening or closing the file failed.
    Failed(RecordError),
}

/// Starts (`start`) or stops recorder `recorder` (`""`: the application's own) of the stream
/// `app`/`name`.
pub(crate) async fn start_or_stop(
    recorders: &Recorders,
    app: &str,
    name: &str,
    recorder: &str,
    start: bool,
) -> RecordOutcome {
    let result =
        if start { recorders.start(app, name, recorder).await } else { recorders.stop(app, name, recorder).await };
    match result {
        Ok(p) => RecordOutcome::Done(p),
        Err(RecordError::AlreadyRecording(_) | RecordError::NotRecording) => RecordOutcome::Unchanged,
        Err(e @ RecordError::NotPublished { .. }) => RecordOutcome::NotPublished(e),
        Err(e @ RecordError::UnknownRecorder(_)) => RecordOutcome::UnknownRecorder(e),
        Err(e @ RecordError::Failed(_)) => RecordOutcome::Failed(e),
    }
}

/// `srv=` (0 when left out) when it names one of the `servers` rtmp server blocks.
fn server_index(args: &Args, servers: usize) -> Option<usize> {
    let srv = args.get("srv").map_or(Some(0), |s| s.parse::<usize>().ok())?;
    (srv < servers.max(1)).then_some(srv)
}

/// nginx-rtmp's `drop`: tell the matching clients to close, answer how many.
fn drop_clients(clients: &Clients, servers: usize, method: &str, args: &Args) -> Response {
    let filter = match filter(servers, method, args) {
        Ok(Some(f)) => f,
        Ok(None) => return text(StatusCode::OK, "0"),
        Err(msg) => return error(msg),
    };
    let count = clients.drop_where(&filter);
    tracing::info!(method = ?filter.method, srv = filter.srv, app = ?filter.app.as_deref().map(for_log), name = ?filter.name.as_deref().map(for_log), count, "control drop");
    text(StatusCode::OK, &count.to_string())
}

/// Longest `newname` arguments (after `?`), nginx-rtmp's `NGX_RTMP_MAX_ARGS`.
const MAX_NEWNAME_ARGS: usize = 512;

/// nginx-rtmp's `redirect`: tell the matching clients to publish or play `newname` instead,
/// answer how many.
fn redirect(clients: &Clients, servers: usize, method: &str, args: &Args) -> Response {
    let filter = match filter(servers, method, args) {
        Ok(f) => f,
        Err(msg) => return error(msg),
    };
    // Checked before any client is looked at (nginx-rtmp only notices a missing one when
    // some client matched): a bad request is a 500 whoever is connected.
    let (name, new_args) = match args.get("newname").map(split_newname) {
        None => return error("newname not specified"),
        Some(Err(why)) => return error(&format!("Bad newname: {why}")),
        Some(Ok(parts)) => parts,
    };
    let Some(filter) = filter else { return text(StatusCode::OK, "0") };
    let count = clients.redirect_where(&filter, name, new_args);
    tracing::info!(method = ?filter.method, srv = filter.srv, app = ?filter.app.as_deref().map(for_log), name = ?filter.name.as_deref().map(for_log), newname = %name, args = %redact_query(new_args), count, "control redirect");
    text(StatusCode::OK, &count.to_string())
}

/// `newname` as nginx-rtmp reads it (`ngx_rtmp_cmd_fill_args`: the name, then the arguments
/// after the first `?`), with the name checked by [`untrusted::stream_name`] (nginx-rtmp cuts
/// a long one at 255 bytes; a cut name is not what was asked, so it is refused here) and the
/// arguments bounded.
fn split_newname(newname: &str) -> Result<(&str, &str), String> {
    let (name, args) = newname.split_once('?').unwrap_or((newname, ""));
    let name = untrusted::stream_name(name).map_err(|e| e.to_string())?;
    if args.len() > MAX_NEWNAME_ARGS {
        return Err(format!("arguments longer than {MAX_NEWNAME_ARGS} bytes"));
    }
    if args.chars().any(char::is_control) {
        return Err("a control character in the arguments".to_owned());
    }
    Ok((name, args))
}

/// The filter of a `drop` or `redirect` request: `Ok(None)` when it can match no one (a
/// `clientid` that is no number: nginx-rtmp compares with `ngx_atoi`'s error value), `Err`
/// with nginx-rtmp's message (a 500) for an unknown method or server.
fn filter(servers: usize, method: &str, args: &Args) -> Result<Option<Filter>, &'static str> {
    let method = match method {
        "publisher" => Method::Publisher,
        "subscriber" => Method::Subscriber,
        "client" => Method::Client,
        _ => return Err("Undefined filter"),
    };
    let Some(srv) = server_index(args, servers) else { return Err("Server index out of range") };
    let clientid = match args.get("clientid").map(str::parse::<u64>) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return Ok(None),
        None => None,
    };
    Ok(Some(Filter {
        method,
        srv,
        app: args.get("app").map(str::to_owned),
        name: args.get("name").map(str::to_owned),
        addr: args.get("addr").map(str::to_owned),
        clientid,
    }))
}

/// nginx-rtmp answers errors with 500; the body says which.
fn error(msg: &str) -> Response {
    text(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], body.to_owned())
        .into_response()
}

/// Query arguments, percent-decoded (`+` is a space, as in forms).
pub(crate) struct Args(Vec<(String, String)>);

impl Args {
    /// The arguments of `query` (none when there is none).
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let pairs = query.unwrap_or_default().split('&').filter(|p| !p.is_empty());
        Args(
            pairs
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_arguments() {
        let a = Args::parse(Some("app=live&name=cam%201&rec=&x&name=second&q=a+b&bad=%zz%4"));
        assert_eq!(a.get("app"), Some("live"));
        assert_eq!(a.get("name"), Some("cam 1"), "the first value wins");
        assert_eq!(a.get("rec"), Some(""));
        assert_eq!(a.get("x"), Some(""));
        assert_eq!(a.get("q"), Some("a b"));
        assert_eq!(a.get("bad"), Some("%zz%4"));
        assert_eq!(a.get("missing"), None);
        assert_eq!(Args::parse(None).get("app"), None);
    }

    #[tokio::test]
    async fn nginx_answers() {
        let r = Recorders::new(1);
        let c = Clients::default();
        let all = RtmpControl { record: true, drop: true, redirect: false };
        let with_redirect = RtmpControl { redirect: true, ..all };
        let respond = |path, query| respond(&r, &c, all, path, query);
        let status = |res: Option<Response>| res.map(|r| r.status().as_u16());
        assert_eq!(status(respond("/control/record/start", Some("app=live&name=x")).await), Some(204));
        assert_eq!(status(respond("/control/record/pause", None).await), Some(500));
        assert_eq!(status(respond("/control/record/start", Some("srv=1")).await), Some(500));
        assert_eq!(status(respond("/control/drop/publisher", None).await), Some(200));
        assert_eq!(status(respond("/control/drop/player", None).await), Some(500), "Undefined filter");
        assert_eq!(status(respond("/control/drop/client", Some("srv=1")).await), Some(500));
        assert_eq!(status(respond("/control/drop/client", Some("srv=x")).await), Some(500));
        assert_eq!(status(respond("/control/redirect/publisher", None).await), None, "not enabled");
        assert_eq!(status(respond("/control/other/x", None).await), None);
        let redirect = |query| super::respond(&r, &c, with_redirect, "/control/redirect/client", Some(query));
        assert_eq!(status(redirect("newname=y").await), Some(200));
        assert_eq!(status(redirect("newname=y?token=1").await), Some(200));
        for bad in ["name=x", "newname=", "newname=../x", "newname=a%2Fb", "newname=..", "newname=a?b%0Ac"] {
            assert_eq!(status(redirect(bad).await), Some(500), "{bad}");
        }
        let long = format!("newname={}", "a".repeat(129));
        assert_eq!(status(redirect(&long).await), Some(500));
        let long_args = format!("newname=a?{}", "k".repeat(513));
        assert_eq!(status(redirect(&long_args).await), Some(500));
        let other = |path| super::respond(&r, &c, with_redirect, path, Some("newname=y"));
        assert_eq!(status(other("/control/redirect/player").await), Some(500), "Undefined filter");
        assert_eq!(status(respond("/", None).await), None);
    }
}
