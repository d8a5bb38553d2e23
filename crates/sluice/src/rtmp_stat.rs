//! nginx-rtmp's statistics page (`rtmp_stat`): the XML tree of `ngx_rtmp_stat_module`
//! (and the winshining fork's JSON with `rtmp_stat_format json`), made from a
//! [`crate::stats::Snapshot`].

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;

use crate::config::Location;
use crate::http::{status_response, HttpState};

/// Answer a request to a location this module handles.
pub async fn respond(state: &HttpState, loc: &Location, path: &str, req: Request) -> Response {
    let _ = (state, loc, path, req);
    status_response(StatusCode::NOT_IMPLEMENTED)
}
